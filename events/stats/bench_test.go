package stats

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"kiln/events"
	"kiln/internal/clock"
)

// benchEvents is a realistic mix: 47 sites, 19 accounts, 4 egresses, a few
// reasons, one event a millisecond.
func benchEvents(n int) []events.Event {
	types := []string{events.Delivered, events.Delivered, events.Delivered, events.Deferred, events.Bounced}
	reasons := []string{"delivered", "delivered", "delivered", "mailboxfull", "userunknown"}
	evs := make([]events.Event, n)
	for i := range evs {
		k := i % len(types)
		evs[i] = events.Event{
			Time: t0.Add(time.Duration(i) * time.Millisecond), Type: types[k], Reason: reasons[k],
			Site: fmt.Sprintf("site%d", i%47), Account: fmt.Sprintf("acct%d", i%19), Egress: fmt.Sprintf("ip%d", i%4),
			Recipient: fmt.Sprintf("user%d@example.com", i), ID: "0QZ8T00000001",
		}
	}
	return evs
}

// BenchmarkHandle is the cost on the emitting goroutine.
func BenchmarkHandle(b *testing.B) {
	s := open(b, nil, clock.NewFake(t0), Options{})
	evs := benchEvents(4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.Handle(evs[i%len(evs)])
	}
}

// BenchmarkHandleParallel is the same with every core emitting at once.
func BenchmarkHandleParallel(b *testing.B) {
	s := open(b, nil, clock.NewFake(t0), Options{})
	evs := benchEvents(4096)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.Handle(evs[i%len(evs)])
			i++
		}
	})
}

// BenchmarkFlush is one interval's write after a minute of traffic across
// every series of benchEvents (about 400), on a synced database.
func BenchmarkFlush(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	clk := clock.NewFake(t0)
	s := open(b, db, clk, Options{})
	evs := benchEvents(60_000)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for _, e := range evs {
			s.Handle(e)
		}
		b.StartTimer()
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Info().Series), "series")
}

// BenchmarkSeries is a 48-hour chart of one series at the default step,
// and a top-10 of sites over the same range.
func BenchmarkSeries(b *testing.B) {
	clk := clock.NewFake(t0.Add(48 * time.Hour))
	s := open(b, nil, clk, Options{})
	evs := benchEvents(4096)
	for i := range 48 * 60 {
		e := evs[i%len(evs)]
		e.Time = t0.Add(time.Duration(i) * time.Minute)
		s.Handle(e)
	}
	b.Run("series", func(b *testing.B) {
		for range b.N {
			s.Series(Query{Type: events.Delivered, Since: t0})
		}
	})
	b.Run("top", func(b *testing.B) {
		for range b.N {
			s.Top(Query{Type: events.Delivered, By: BySite, Since: t0}, 10)
		}
	})
}

// TestMemory reports what 48 hours of the benchmark's traffic holds in
// memory: every series written every minute of the retention.
func TestMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	clk := clock.NewFake(t0.Add(48 * time.Hour))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := open(t, nil, clk, Options{})
	evs := benchEvents(4096)
	for i := range 48 * 60 * 100 { // 100 events a minute for 48 hours
		e := evs[i%len(evs)]
		e.Time = t0.Add(time.Duration(i) * 600 * time.Millisecond)
		s.Handle(e)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	in := s.Info()
	t.Logf("%d series, %d chunks, %.1f MB in memory", in.Series, in.Chunks, float64(after.HeapAlloc-before.HeapAlloc)/1e6)
}
