package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kiln/internal/fakemx"
)

// kill -9 at random moments of injection and delivery, ten times (three
// with -short, twenty in the full run, KILN_CRASH_KILLS to choose): every
// message that got a 250 is delivered in the end, and the duplicates are no
// more than the messages that could have been in flight when kiln died.
func TestCrashKill9(t *testing.T) {
	kills := 10
	switch {
	case fullRun():
		kills = 20
	case testing.Short():
		kills = 3
	}
	kills = envInt("KILN_CRASH_KILLS", kills)
	w := newWorld(t)
	// A slow MX keeps deliveries in flight when the kill comes.
	dest := w.mx(2, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageData, Delay: 30 * time.Millisecond}}})
	w.domain("dest.test", 2)
	const perDest = 8
	w.delivery = fmt.Sprintf("max_connections_per_destination = %d", perDest)
	d := w.start("")

	var (
		mu    sync.Mutex
		acked = map[string]bool{} // Message-IDs kiln answered 250 for
		seq   atomic.Int64
	)
	inject := func(addr string, stop <-chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("<crash-%d@e2e.test>", seq.Add(1))
			if _, err := submit(addr, "app@sender.test", "r@dest.test", id); err == nil {
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}
	}
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for i := 0; i < kills; i++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := 0; c < 6; c++ {
			wg.Add(1)
			go inject(d.submit, stop, &wg)
		}
		// Kill at a random moment: sometimes mid-injection, sometimes
		// while the backlog is being delivered.
		time.Sleep(time.Duration(100+rnd.IntN(600)) * time.Millisecond)
		if rnd.IntN(3) == 0 {
			close(stop)
			wg.Wait()
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
			d.kill()
		} else {
			d.kill()
			close(stop)
			wg.Wait()
		}
		d.launch()
	}
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n == 0 {
		t.Fatal("nothing was acknowledged")
	}
	waitUntil(t, fmt.Sprintf("all %d acknowledged messages to arrive", n), 120*time.Second, func() bool {
		got := messageIDs(dest.Messages())
		mu.Lock()
		defer mu.Unlock()
		for id := range acked {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // anything redelivered after the restart arrives too
	got := messageIDs(dest.Messages())
	dups := 0
	for id, c := range got {
		if c > 1 {
			dups += c - 1
		}
		if !acked[id] && !strings.HasPrefix(id, "<crash-") {
			t.Errorf("unexpected message %s", id)
		}
	}
	// A message can only be sent twice if it was in flight (sent, 250
	// received, not yet recorded) when kiln died: at most one per open
	// connection per kill.
	if limit := kills * perDest; dups > limit {
		t.Errorf("%d duplicates after %d kills, more than the %d that could have been in flight", dups, kills, limit)
	}
	report(t, "%d kills: %d messages acknowledged, all delivered; %d duplicates (bound %d); %d unacknowledged messages delivered too",
		kills, n, dups, kills*perDest, len(got)-n)
	if os.Getenv("KILN_E2E_VERBOSE") != "" {
		t.Log(d.logTail())
	}
}
