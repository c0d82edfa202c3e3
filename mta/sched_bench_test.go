package mta

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
	"kiln/queue"
	"kiln/warmup"
)

// The scheduler's decision, measured on a real queue: which message goes
// next, with 10,000 (egress, site) keys and a million queued messages.
//
// A decision for mail waiting for capacity is what drainLane does: read the
// head of a lane's wait index (queue.Store.Waiting) and ask the warm-up
// controller (Reserve). A decision for mail that comes due is what a scan
// does: take due messages from the schedule index (queue.Store.Due), find the
// route and site of the recipient's domain in the route cache, and Reserve.
//
//	go test -run '^$' -bench 'Scheduler(LaneHead|DueScan)' -cpu 1 -benchtime 200000x ./mta/
//
// KILN_SCHED_BENCH_N sets the number of queued messages (default 1,000,000;
// 50,000 with -short). Each benchmark fills its queue once through SaveMany
// from a few writers, waits for the store to finish compacting, and reports
// the fill (fill-s, fill-msgs/s, settle-s) and what the queue costs per
// message: heap growth, resident memory growth and disk blocks. Bodies are
// not written: they live in the spool, outside badger and outside memory,
// and add their own size on disk. The decisions of one benchmark leave its
// queue as they found it, so -benchtime should stay below the queue's size.

const (
	benchEgresses = 10
	benchSites    = 1000 // benchEgresses x benchSites (egress, site) keys and lanes
)

func benchN(b *testing.B) int {
	if s := os.Getenv("KILN_SCHED_BENCH_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < benchEgresses*benchSites {
			b.Fatalf("KILN_SCHED_BENCH_N=%q: want a number of at least %d", s, benchEgresses*benchSites)
		}
		return n
	}
	if testing.Short() {
		return 50000
	}
	return 1000000
}

// schedFixture is a queue of n messages spread over the lanes (waiting) or
// the schedule index (due), and a warm-up controller with every key in use.
type schedFixture struct {
	n     int
	clk   *clock.Fake
	db    *badger.DB
	store *queue.Store
	warm  *warmup.Controller
	// lanes[i] is egress i%benchEgresses and site i/benchEgresses.
	lanes  []benchLane
	routes map[string]cachedRoute // recipient domain -> its route, as the scheduler caches it

	fill, settle    time.Duration
	heap, rss, disk float64 // bytes per queued message
	heapFixed       float64 // bytes the empty store and controller take, in all
	keyHeap         float64 // bytes per warm-up key
}

type benchLane struct {
	pool, site, key string
}

func benchSite(i int) string   { return fmt.Sprintf("mx:mx%d.example.net", i) }
func benchDomain(i int) string { return fmt.Sprintf("d%d.example.net", i) }

// newSchedFixture opens a queue and a controller in a temporary directory
// and fills the queue with n messages, one recipient each, round-robin over
// the lanes: waiting in them, or due at distinct times in the past. owner
// keeps the fixture (its directory and stores) until it ends; b is the
// benchmark that fills it.
func newSchedFixture(b *testing.B, owner testing.TB, n int, waiting bool) *schedFixture {
	b.Helper()
	start := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	f := &schedFixture{n: n, clk: clock.NewFake(start), routes: map[string]cachedRoute{}}
	dir := owner.TempDir()
	runtime.GC()
	heap0 := heapInUse()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	if f.db, err = queue.OpenDB(filepath.Join(dir, "db"), log); err != nil {
		b.Fatal(err)
	}
	owner.Cleanup(func() { f.db.Close() })
	if f.store, err = queue.Open(f.db, queue.Options{Dir: dir, Clock: f.clk, Log: log}); err != nil {
		b.Fatal(err)
	}
	owner.Cleanup(func() { f.store.Close() })

	// The controller: every egress its own pool, on a plan whose one day's
	// cap is far above what the benchmark asks for, so decisions run the
	// spread limiter rather than stop at a used-up cap.
	cfg := warmup.Config{Warmup: warmup.Warmup{Plan: []warmup.Plan{{Name: "bench", Default: []int{10_000_000}}}}}
	for e := range benchEgresses {
		cfg.Egress = append(cfg.Egress, warmup.Egress{Name: fmt.Sprintf("ip%d", e), Source: fmt.Sprintf("10.0.0.%d", e+1),
			Start: start.Format("2006-01-02"), Plan: "bench"})
	}
	if f.warm, err = warmup.New(cfg, f.db, f.clk, nil); err != nil {
		b.Fatal(err)
	}
	owner.Cleanup(func() { f.warm.Close() })
	for s := range benchSites {
		f.routes[benchDomain(s)] = cachedRoute{site: benchSite(s), expires: start.Add(24 * time.Hour)}
		for e := range benchEgresses {
			pool := cfg.Egress[e].Name
			f.lanes = append(f.lanes, benchLane{pool: pool, site: benchSite(s), key: laneKey(pool, benchSite(s))})
		}
	}
	runtime.GC()
	heapOpen := heapInUse()
	for _, l := range f.lanes {
		f.warm.Reserve(l.pool, l.site, 0, start)
	}
	runtime.GC()
	f.keyHeap = float64(heapInUse()-heapOpen) / float64(len(f.lanes))

	// The fill: writers hand SaveMany batches to the queue's committer,
	// which commits them together.
	runtime.GC()
	heap1, rss1 := heapInUse(), rssBytes()
	f.heapFixed = float64(heap1 - heap0)
	t0 := time.Now()
	const batch, writers = 1000, 4
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for wr := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := make([]*queue.Message, 0, batch)
			for lo := wr * batch; lo < n; lo += writers * batch {
				ms = ms[:0]
				for i := lo; i < min(lo+batch, n); i++ {
					ms = append(ms, f.message(i, start, waiting))
				}
				if err := f.store.SaveMany(ms); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	f.fill = time.Since(t0)
	// Let the store finish compacting what the fill wrote, so that the
	// decisions are not measured against the fill's own background work.
	t1 := time.Now()
	settleCPU(2 * time.Minute)
	f.settle = time.Since(t1)
	runtime.GC()
	f.heap = float64(heapInUse()-heap1) / float64(n)
	f.rss = float64(rssBytes()-rss1) / float64(n)
	f.disk = float64(diskBlocks(dir)) / float64(n)
	return f
}

// message i of the fixture: lane i % lanes, created i microseconds after
// start minus a day (so every due time is in the past).
func (f *schedFixture) message(i int, start time.Time, waiting bool) *queue.Message {
	l := f.lanes[i%len(f.lanes)]
	site := (i % len(f.lanes)) / benchEgresses
	created := start.Add(-24 * time.Hour).Add(time.Duration(i) * time.Microsecond)
	m := &queue.Message{
		ID: f.store.NewID(), From: "news@sender.example", MessageID: fmt.Sprintf("<%d@sender.example>", i),
		Created: created, Expires: created.Add(5 * 24 * time.Hour), Due: created, Pool: l.pool,
		Rcpts: []queue.Rcpt{{Addr: fmt.Sprintf("user%d@%s", i, benchDomain(site)), State: queue.RcptPending}},
	}
	if waiting {
		m.Rcpts[0].Wait = l.key
		m.Rcpts[0].Next = start
	}
	return m
}

// takenMsg is a message taken from a lane.
type takenMsg struct {
	m    *queue.Message
	lane string
}

// lease does what the scheduler does with messages it took from a lane:
// their recipients leave the lane, and the lease is saved, which takes them
// out of the lane's index.
func (f *schedFixture) lease(b *testing.B, ms []takenMsg) {
	b.Helper()
	now := f.clk.Now()
	batch := make([]*queue.Message, 0, 1000)
	for i, tk := range ms {
		tk.m.Rcpts[0].Wait, tk.m.Rcpts[0].Next = "", time.Time{}
		tk.m.Leased, tk.m.Due = true, now.Add(leaseTTL)
		batch = append(batch, tk.m)
		if len(batch) == cap(batch) || i == len(ms)-1 {
			if err := f.store.SaveMany(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func (f *schedFixture) report(b *testing.B) {
	b.ReportMetric(f.fill.Seconds(), "fill-s")
	b.ReportMetric(f.settle.Seconds(), "settle-s")
	b.ReportMetric(float64(f.n)/f.fill.Seconds(), "fill-msgs/s")
	b.ReportMetric(f.heap, "heap-B/msg")
	b.ReportMetric(f.rss, "rss-B/msg")
	b.ReportMetric(f.disk, "disk-B/msg")
}

// BenchmarkSchedulerLaneHead is drainLane's decision: the lane's index read
// from the lane's cursor, one message per read (read=1) or sixteen (read=16,
// as drainLane reads), which shares one index seek among several decisions.
func BenchmarkSchedulerLaneHead(b *testing.B) {
	n := benchN(b)
	var f *schedFixture
	for _, ahead := range []int{1, 16} {
		b.Run(fmt.Sprintf("keys=%d/queued=%d/read=%d", benchEgresses*benchSites, n, ahead), func(sb *testing.B) {
			if f == nil {
				f = newSchedFixture(sb, b, n, true)
				f.log(sb)
			}
			benchLaneHead(sb, f, ahead)
		})
	}
}

// BenchmarkSchedulerDueScan is a scan's decision.
func BenchmarkSchedulerDueScan(b *testing.B) {
	n := benchN(b)
	var f *schedFixture
	b.Run(fmt.Sprintf("keys=%d/queued=%d", benchEgresses*benchSites, n), func(sb *testing.B) {
		if f == nil {
			f = newSchedFixture(sb, b, n, false)
			f.log(sb)
		}
		benchDueScan(sb, f)
	})
}

func (f *schedFixture) log(b *testing.B) {
	b.Logf("filled %d messages in %v (%.0f/s), settled in %v: heap %+.0f B/msg (%.1f MB fixed), rss %+.0f B/msg, disk %.0f B/msg; %.0f B of heap per warm-up key",
		f.n, f.fill.Round(time.Millisecond), float64(f.n)/f.fill.Seconds(), f.settle.Round(time.Millisecond), f.heap, f.heapFixed/1e6, f.rss, f.disk, f.keyHeap)
}

// benchLaneHead: drainLane's decision, lane after lane. A granted message
// is in hand (skipped by the next read of its lane, as the scheduler skips
// its active messages) until its lease is saved, which takes it out of the
// lane's index; the leases are saved between rounds of one decision per
// lane, off the clock, as the scheduler saves them off its goroutine.
func benchLaneHead(b *testing.B, f *schedFixture, ahead int) {
	inHand := map[string]bool{}
	skip := func(id string) bool { return inHand[id] }
	var round, saved []takenMsg
	granted, empty := 0, 0
	now := f.clk.Now()
	b.ReportAllocs()
	b.ResetTimer()
	var heads []*queue.Message // read and not yet decided
	var keys []queue.LaneCursor
	cursors := map[string]queue.LaneCursor{} // per lane, as drainLane keeps them
	var l benchLane
	visits := 0
	var cpu cpuClock
	cpu.start()
	for range b.N {
		if len(heads) == 0 {
			// The next lane's turn; after a round of every lane, the
			// leases of the messages taken are saved.
			if visits%len(f.lanes) == 0 && len(round) > 0 {
				b.StopTimer()
				cpu.stop()
				f.lease(b, round)
				saved = append(saved, round...)
				round, inHand = round[:0:0], map[string]bool{}
				cpu.start()
				b.StartTimer()
			}
			l = f.lanes[visits%len(f.lanes)]
			visits++
			var err error
			if heads, keys, err = f.store.WaitingAfter(l.key, cursors[l.key], ahead, skip); err != nil {
				b.Fatal(err)
			}
			if len(heads) == 0 && cursors[l.key] != nil {
				delete(cursors, l.key) // once more from the head
				heads, keys, err = f.store.WaitingAfter(l.key, nil, ahead, skip)
				if err != nil {
					b.Fatal(err)
				}
			}
			if len(heads) == 0 {
				empty++
				continue
			}
		}
		now = now.Add(100 * time.Microsecond)
		m, key := heads[0], keys[0]
		heads, keys = heads[1:], keys[1:]
		if !f.warm.Reserve(l.pool, l.site, m.Priority, now).OK {
			heads = nil // the first refusal ends the lane's turn
			continue
		}
		cursors[l.key] = key
		granted++
		inHand[m.ID] = true
		round = append(round, takenMsg{m, l.key})
	}
	b.StopTimer()
	cpu.stop()
	if empty > b.N/100 {
		b.Fatalf("%d of %d reads found their lane empty: lower -benchtime or raise KILN_SCHED_BENCH_N", empty, b.N)
	}
	// Put the leased messages back in their lanes for the next run (the
	// last round's were never saved leased).
	var back []*queue.Message
	for _, tk := range saved {
		tk.m.Leased, tk.m.Due = false, tk.m.Created
		tk.m.Rcpts[0].Wait, tk.m.Rcpts[0].Next = tk.lane, tk.m.Created
		back = append(back, tk.m)
		if len(back) == 1000 {
			if err := f.store.SaveMany(back); err != nil {
				b.Fatal(err)
			}
			back = back[:0]
		}
	}
	if err := f.store.SaveMany(back); err != nil {
		b.Fatal(err)
	}
	cpu.report(b)
	b.ReportMetric(float64(granted)/float64(b.N), "granted/op")
	f.report(b)
}

// benchDueScan: a scan's decisions. Due takes the next batch from the
// schedule index past the last one taken (the scheduler's low-water mark),
// and every message is routed through the route cache and reserved.
func benchDueScan(b *testing.B, f *schedFixture) {
	const room = 256 // messages per scan
	granted := 0
	now := f.clk.Now()
	var from time.Time
	var batch []*queue.Message
	b.ReportAllocs()
	b.ResetTimer()
	var cpu cpuClock
	cpu.start()
	for range b.N {
		if len(batch) == 0 {
			var err error
			batch, err = f.store.Due(from, now, room, nil)
			if err != nil {
				b.Fatal(err)
			}
			if len(batch) == 0 { // the whole index taken: start again
				from = time.Time{}
				if batch, err = f.store.Due(from, now, room, nil); err != nil || len(batch) == 0 {
					b.Fatalf("nothing due: %v", err)
				}
			}
			from = batch[len(batch)-1].Due.Add(time.Nanosecond)
		}
		m := batch[0]
		batch = batch[1:]
		now = now.Add(100 * time.Microsecond)
		cr, ok := f.routes[queue.Domain(m.Rcpts[0].Addr)]
		if !ok {
			b.Fatalf("no route for %s", m.Rcpts[0].Addr)
		}
		if f.warm.Reserve(m.Pool, cr.site, m.Priority, now).OK {
			granted++
		}
	}
	b.StopTimer()
	cpu.stop()
	cpu.report(b)
	b.ReportMetric(float64(granted)/float64(b.N), "granted/op")
	f.report(b)
}

// cpuClock adds up the CPU time the process spends while it runs: the
// decisions, and whatever the store does meanwhile in the background. On a
// shared machine, decisions per CPU second say what one core can do better
// than decisions per wall-clock second, which count other processes' turns.
type cpuClock struct {
	total, since time.Duration
}

func (c *cpuClock) start() { c.since = cpuTime() }
func (c *cpuClock) stop()  { c.total += cpuTime() - c.since }

func (c *cpuClock) report(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	if c.total > 0 {
		b.ReportMetric(float64(b.N)/c.total.Seconds(), "decisions/cpu-s")
	}
}

// settleCPU waits, at most limit, until the process uses less than a tenth
// of a core over half a second.
func settleCPU(limit time.Duration) {
	deadline := time.Now().Add(limit)
	last := cpuTime()
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		now := cpuTime()
		if now-last < 50*time.Millisecond {
			return
		}
		last = now
	}
}

// cpuTime is the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes is the process's resident set size (Linux), 0 elsewhere.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(fields[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// diskBlocks is the space the files under dir take on disk.
func diskBlocks(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			} else {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
