package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/fakemx"
	"kiln/internal/loadgen"
)

// A restart with a big queue: many connections inject into a kiln whose
// destination is down (a closed port), so everything stays queued; kiln is
// stopped, the destination comes up, and kiln is started again. Every
// acknowledged message is recovered and delivered exactly once. The run
// reports the time until /healthz answers and until the last message
// arrived. 5,000 messages in CI, 100,000 in the full run
// (KILN_RESTART_MESSAGES to choose). The queue retries every second or two,
// so the queue is busy the whole time; KILN_RESTART_RETRY sets kiln's
// retry_first and retry_max instead (the benchmark of a big idle queue uses
// "5m": then the messages wait for their retry after the restart).
func TestRestartWithQueuedMessages(t *testing.T) {
	n := 5000
	if fullRun() {
		n = 100000
	}
	n = envInt("KILN_RESTART_MESSAGES", n)
	w := newWorld(t)
	if r := os.Getenv("KILN_RESTART_RETRY"); r != "" {
		w.queue = fmt.Sprintf("retry_first = %q\nretry_max = %q\n", r, r)
	}
	w.domain("dest.test", 2) // nothing listens there yet
	d := w.start("")
	data := filepath.Join(w.dataDir, "data")
	empty := diskUse(data)

	acked, injected := injectAll(t, loadgen.Config{
		Addr: d.submit, Concurrency: 50, Messages: n, PerConn: 100, Size: 1500,
		Domains: []string{"dest.test"}, Users: 1000, FromDomain: "sender.test", Timeout: 2 * time.Minute,
	})
	var health struct {
		Queue     int
		Recovered struct{ Messages, Leased, Quarantined int }
	}
	waitUntil(t, "every message to be queued", 60*time.Second, func() bool {
		adminJSON(t, d, "", "/healthz", &health)
		return health.Queue == n
	})

	full := diskUse(data)
	fullRSS, fullAnon := rssKiB(d), procStatus(d, "RssAnon:")

	stopStart := time.Now()
	d.stop()
	stopped := time.Since(stopStart)

	// The destination comes up while kiln is stopped, so the delivery
	// time measures kiln, not the minute a dead destination is left alone.
	led := newLedger()
	mx := w.mx(2, fakemx.Config{Discard: true, OnMessage: led.onMessage})
	restart := time.Now()
	d.launch()
	ready := time.Since(restart)
	rss, anon := rssKiB(d), procStatus(d, "RssAnon:")
	adminJSON(t, d, "", "/healthz", &health)
	if health.Recovered.Messages != n || health.Recovered.Quarantined != 0 {
		t.Errorf("recovery found %+v, want %d messages", health.Recovered, n)
	}
	timeout := 5 * time.Minute
	if n > 20000 || w.queue != "" {
		timeout = 30 * time.Minute
	}
	waitUntil(t, fmt.Sprintf("all %d messages to arrive", n), timeout, func() bool {
		_, distinct := led.count()
		return distinct >= n
	})
	delivered := time.Since(restart)
	time.Sleep(time.Second)
	missing, dups := led.reconcile(acked)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged messages never arrived, e.g. %s", len(missing), missing[0])
	}
	if dups > 0 {
		t.Errorf("%d duplicates after a clean stop", dups)
	}
	waitUntil(t, "the queue to empty", 60*time.Second, func() bool {
		adminJSON(t, d, "", "/healthz", &health)
		return health.Queue == 0
	})
	hwm := hwmKiB(d)
	// Disk after the drain, once the spool has let go of its segments and
	// the store has compacted (up to its value-log GC interval).
	drained := diskUse(data)
	if fullRun() {
		deadline := time.Now().Add(6 * time.Minute)
		for drained.spool > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Second)
			drained = diskUse(data)
		}
	}
	report(t, "%d messages of 1.5 KB injected over 50 connections in %v (%.0f/s), destination down; RSS with the queue full %d MiB (%d MiB anonymous; the rest is mostly the store's mapped files); stop took %v; restart: /healthz answered after %v (RSS %d MiB, %d anonymous); all delivered %v after the restart (%.0f/s); %d duplicates; peak RSS %d MiB; disk empty %s, full %s, drained %s; MX stats %+v",
		n, injected.Round(time.Millisecond), float64(n)/injected.Seconds(), fullRSS/1024, fullAnon/1024, stopped.Round(time.Millisecond),
		ready.Round(time.Millisecond), rss/1024, anon/1024, delivered.Round(time.Millisecond), float64(n)/delivered.Seconds(), dups, hwm/1024,
		empty, full, drained, mx.Stats())
}

// disk is what kiln's data directory occupies (allocated blocks, so the
// store's sparse files count for what they hold): the store (envelopes,
// indexes and the event history), the spool (bodies) and the event log.
type disk struct{ store, spool, log int64 }

func (d disk) String() string {
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	return fmt.Sprintf("%.1f MiB (store %.1f, spool %.1f, event log %.1f)", mib(d.store+d.spool+d.log), mib(d.store), mib(d.spool), mib(d.log))
}

func diskUse(dir string) disk {
	blocks := func(root string) int64 {
		var n int64
		filepath.WalkDir(root, func(_ string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return nil
			}
			if fi, err := e.Info(); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					n += st.Blocks * 512
				}
			}
			return nil
		})
		return n
	}
	return disk{store: blocks(filepath.Join(dir, "db")), spool: blocks(filepath.Join(dir, "spool")), log: blocks(filepath.Join(dir, "events.log"))}
}

// injectAll sends cfg.Messages messages with kiln loadgen (the ack log is
// set here) and fails the test unless every one was acknowledged; it returns
// the acknowledged Message-IDs and how long the injection took.
func injectAll(t *testing.T, cfg loadgen.Config) (map[string]bool, time.Duration) {
	t.Helper()
	var acks bytes.Buffer
	var ackMu sync.Mutex
	cfg.AckLog = lockedWriter{&ackMu, &acks}
	start := time.Now()
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	acked := map[string]bool{}
	sc := bufio.NewScanner(&acks)
	for sc.Scan() {
		var e loadgen.AckEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("ack log: %v", err)
		}
		acked[e.MessageID] = true
	}
	if len(acked) != cfg.Messages || rep.Failed > 0 {
		t.Fatalf("%d of %d messages acknowledged (errors %v)", len(acked), cfg.Messages, rep.Errors)
	}
	return acked, took
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// rssKiB and hwmKiB read the daemon's resident memory and its peak from
// /proc (0 where there is no /proc).
func rssKiB(d *daemon) int { return procStatus(d, "VmRSS:") }
func hwmKiB(d *daemon) int { return procStatus(d, "VmHWM:") }

func procStatus(d *daemon, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				v, _ := strconv.Atoi(f[1])
				return v
			}
		}
	}
	return 0
}
