package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kiln/events"
	"kiln/events/stats"
	"kiln/events/store"
	"kiln/internal/clock"
	"kiln/queue"
)

// TestScale measures the dashboard on real stores: a queue of
// DASHBOARD_SCALE messages (two recipients each, one message in three
// waiting in one of six lanes) and an event store of two events per message
// (at most DASHBOARD_SCALE_EVENTS, default 200,000). It reports what one
// count of the queue costs (paid once per QueueRefresh, whatever the number
// of viewers) and the latency of every endpoint. It is a measurement, not a
// check, so it runs only when asked:
//
//	DASHBOARD_SCALE=1000000 go test -run TestScale -v -timeout 1h ./dashboard
func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DASHBOARD_SCALE"))
	if n <= 0 {
		t.Skip("set DASHBOARD_SCALE=1000000 to measure against a queue of a million messages")
	}
	maxEvents := 200_000
	if s := os.Getenv("DASHBOARD_SCALE_EVENTS"); s != "" {
		maxEvents, _ = strconv.Atoi(s)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	db, err := queue.OpenDB(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := queue.Open(db, queue.Options{Dir: dir, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	evs, err := store.New(db, store.Options{Log: quiet, MaxPending: maxEvents + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Close()
	st, err := stats.New(db, stats.Options{Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	lanes := []string{"default|google", "default|yahoo", "default|microsoft", "bulk|google", "bulk|yahoo", "default|mx:mx.example.net"}
	body := []byte("From: news@shop.example\r\nTo: someone@example.com\r\nSubject: spring sale\r\n\r\n" + string(make([]byte, 200)) + "\r\n")
	start := time.Now()
	var next atomic.Int64
	var ids sync.Map
	var wg sync.WaitGroup
	for range 128 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				m := &queue.Message{Account: "shop", From: "news@shop.example", Rcpts: []queue.Rcpt{
					{Addr: fmt.Sprintf("user%d@gmail.example", i)}, {Addr: fmt.Sprintf("user%d@yahoo.example", i)}}}
				if i%3 == 0 {
					m.Rcpts[0].Wait = lanes[(i/3)%len(lanes)]
				}
				if err := q.Enqueue(context.Background(), m, body); err != nil {
					t.Error(err)
					return
				}
				if i%(n/100+1) == 0 {
					ids.Store(i, m.ID)
				}
				if 2*i < maxEvents {
					now := time.Now()
					for _, r := range m.Rcpts {
						e := events.Event{Time: now, Type: events.Delivered, ID: m.ID, Account: "shop", Recipient: r.Addr, Reason: "delivered", Site: "google", Egress: "ip1"}
						evs.Handle(e)
						st.Handle(e)
					}
				}
			}
		}()
	}
	wg.Wait()
	evs.Flush()
	t.Logf("enqueued %d messages in %v; %d events stored", n, time.Since(start).Round(time.Millisecond), evs.Stats().Written)
	var sample []string
	ids.Range(func(_, v any) bool { sample = append(sample, v.(string)); return true })

	h := New(Sources{Stats: st, Warmup: newFakeWarmup(), Events: evs, Queue: q, Suppressions: newFakeSuppressions(), Clock: clock.Real{}},
		Options{Authorize: func(k string) bool { return k == adminKey }, Log: quiet, QueueRefresh: time.Hour})

	// One count of the queue, as the background refresh does it.
	for range 2 {
		c := newQueueCache(h.src, 0, quiet)
		snap := c.get()
		t.Logf("queue count: %d messages, %d held, %d lanes, %d waiting in lanes: %.1f ms", snap.Total, snap.Held, len(snap.Lanes),
			sumWaiting(snap), snap.TookMs)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := &client{t: t, w: &world{srv: srv}, hc: &http.Client{}, key: adminKey}
	paths := map[string]func(int) string{
		"overview 6h":   func(int) string { return "/api/v1/dashboard/overview?range=6h" },
		"overview 30d":  func(int) string { return "/api/v1/dashboard/overview?range=30d" },
		"queues":        func(int) string { return "/api/v1/dashboard/queues" },
		"warmup":        func(int) string { return "/api/v1/dashboard/warmup" },
		"message by id": func(i int) string { return "/api/v1/dashboard/messages?id=" + sample[i%len(sample)] },
		"by recipient": func(i int) string {
			return fmt.Sprintf("/api/v1/dashboard/messages?recipient=user%d@gmail.example", (i*7919)%max(1, maxEvents/2))
		},
	}
	names := make([]string, 0, len(paths))
	for k := range paths {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		var lat []time.Duration
		for i := range 200 {
			t0 := time.Now()
			c.getJSON(paths[name](i), 200, nil)
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		t.Logf("%-14s p50 %8v  p99 %8v  max %8v", name, lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	}
}

func sumWaiting(s *QueueSnapshot) int {
	n := 0
	for _, l := range s.Lanes {
		n += l.Waiting
	}
	return n
}
