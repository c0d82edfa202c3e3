package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"kiln/events"
	"kiln/internal/clock"
)

func benchEvent(i int) events.Event {
	return events.Event{
		Time: t0.Add(time.Duration(i) * time.Millisecond), Type: events.Delivered, ID: fmt.Sprintf("0QZ8T%08d", i/3),
		MessageID: fmt.Sprintf("<%d.campaign@shop.example>", i/3), Account: "shop", From: "news@shop.example",
		Recipient: fmt.Sprintf("user%d@gmail.example", i), Attempt: 1, RemoteHost: "gmail-smtp-in.l.google.example",
		RemoteIP: "192.0.2.25", TLS: "TLS1.3", Code: 250, Enhanced: "2.0.0",
		Reply: "250 2.0.0 OK  1700000000 a1-20020a0000000000000000000000000.123 - gsmtp", Reason: "delivered",
		Rule: "generic.2xx", Egress: "ip1", Site: "gmail.example", QueueMs: 812, AttemptMs: 240,
		Tags: []string{"spring-sale"}, Metadata: map[string]string{"campaign": "42", "list": "7"},
	}
}

// BenchmarkHandle is the cost on the emitting goroutine, with the writer
// draining in the background (drops are reported, not hidden).
func BenchmarkHandle(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	s := open(b, db, clock.Real{}, Options{})
	defer s.Close()
	evs := make([]events.Event, 1024)
	for i := range evs {
		evs[i] = benchEvent(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.Handle(evs[i%len(evs)])
			i++
		}
	})
	b.StopTimer()
	s.Flush()
	b.ReportMetric(float64(s.Stats().Dropped), "dropped")
}

// BenchmarkPersist is the whole cost per event: Handle, encoding, index
// entries and the synced commits, measured up to the last event on disk.
func BenchmarkPersist(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	s := open(b, db, clock.Real{}, Options{MaxPending: b.N + 1})
	defer s.Close()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		s.Handle(benchEvent(i))
	}
	s.Flush()
	b.StopTimer()
	st := s.Stats()
	if st.Written != uint64(b.N) {
		b.Fatalf("stats %+v", st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkQuery pages through one account's bounces among 20,000 events.
func BenchmarkQuery(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	s := open(b, db, clock.Real{}, Options{MaxPending: 1 << 20})
	defer s.Close()
	for i := range 20000 {
		e := benchEvent(i)
		if i%50 == 0 {
			e.Type = events.Bounced
		}
		s.Handle(e)
	}
	s.Flush()
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		evs, _, err := s.Query(ctx, Query{Account: "shop", Types: []string{events.Bounced}, Limit: 100})
		if err != nil || len(evs) != 100 {
			b.Fatal(len(evs), err)
		}
	}
}
