package warmup

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// benchKeys builds a Controller with egresses x sites (egress, site) keys,
// all of them touched once, and measures the heap each key costs.
func benchKeys(b *testing.B, egresses, sites int, warm bool) (*harness, []string, []string, float64) {
	b.Helper()
	cfg := Config{}
	for i := range egresses {
		cfg.Egress = append(cfg.Egress, Egress{Name: fmt.Sprintf("ip%d", i), Source: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255+1), Warm: warm})
	}
	h := newHarness(b, cfg, t0)
	eg := make([]string, egresses)
	for i := range eg {
		eg[i] = cfg.Egress[i].Name
		if !warm {
			// Day 35: caps in the millions, so decisions exercise the spread
			// limiter rather than a used-up cap.
			if err := h.c.SetDay(eg[i], 35, t0); err != nil {
				b.Fatal(err)
			}
		}
	}
	st := make([]string, sites)
	for i := range st {
		st[i] = fmt.Sprintf("mx:mx%d.example.net", i)
	}
	now := t0.Add(9 * time.Hour)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, e := range eg {
		for _, s := range st {
			h.c.Reserve(e, s, 0, now)
		}
	}
	if err := h.c.Flush(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return h, eg, st, float64(after.HeapAlloc-before.HeapAlloc) / float64(egresses*sites)
}

// BenchmarkReserve is the scheduler's hot path: one decision for a
// (pool, site) among 10,000 (egress, site) keys, time moving forward by a
// microsecond per decision.
func BenchmarkReserve(b *testing.B) {
	for _, tc := range []struct {
		name string
		warm bool
	}{{"ramping", false}, {"warm", true}} {
		b.Run(tc.name+"/10000keys", func(b *testing.B) {
			h, eg, st, perKey := benchKeys(b, 10, 1000, tc.warm)
			start := t0.Add(9 * time.Hour)
			ok := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now := start.Add(time.Duration(i) * time.Microsecond)
				if h.c.Reserve(eg[i%len(eg)], st[(i/len(eg))%len(st)], i&3, now).OK {
					ok++
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
			b.ReportMetric(float64(ok)/float64(b.N), "granted/op")
			b.ReportMetric(perKey, "heap-B/key")
		})
	}
}

// BenchmarkReserveParallel asks from every core at once, as many scheduler
// goroutines would.
func BenchmarkReserveParallel(b *testing.B) {
	h, eg, st, _ := benchKeys(b, 10, 1000, false)
	start := t0.Add(9 * time.Hour)
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(seq.Add(1))
			now := start.Add(time.Duration(i) * time.Microsecond)
			h.c.Reserve(eg[i%len(eg)], st[(i/len(eg))%len(st)], 0, now)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkObserve is the per-reply path.
func BenchmarkObserve(b *testing.B) {
	h, eg, st, _ := benchKeys(b, 10, 1000, false)
	start := t0.Add(9 * time.Hour)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.c.Observe(eg[i%len(eg)], st[(i/len(eg))%len(st)], SignalDelivered, start.Add(time.Duration(i)*time.Microsecond))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
}

// BenchmarkSite is the classification of a domain's MX set.
func BenchmarkSite(b *testing.B) {
	h := newHarness(b, Config{}, t0)
	mx := []string{"alt1.gmail-smtp-in.l.google.com.", "gmail-smtp-in.l.google.com."}
	other := []string{"mx2.example.net", "mx1.example.net"}
	b.ReportAllocs()
	for i := range b.N {
		if i&1 == 0 {
			h.c.Site("gmail.com", mx)
		} else {
			h.c.Site("example.net", other)
		}
	}
}
