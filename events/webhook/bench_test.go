package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
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
		Rule: "generic.2xx", Tags: []string{"spring-sale"}, Metadata: map[string]string{"campaign": "42", "list": "7"},
	}
}

// BenchmarkHandle is the cost on the emitting goroutine, the writer running.
func BenchmarkHandle(b *testing.B) {
	db := openDB(b, b.TempDir())
	defer db.Close()
	d, err := New(db, []Config{{Account: "shop", URL: "http://127.0.0.1:1/", Secret: secret}}, Options{Log: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	evs := make([]events.Event, 1024)
	for i := range evs {
		evs[i] = benchEvent(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			d.Handle(evs[i%len(evs)])
			i++
		}
	})
	b.StopTimer()
	d.Flush()
	b.ReportMetric(float64(d.Stats().Dropped), "dropped")
}

// BenchmarkDeliver is the whole path per event: Handle, the outbox write,
// the signed POST of batches of 100 to a loopback receiver, and the delete.
func BenchmarkDeliver(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if Verify(secret, r.Header.Get(SignatureHeader), body, time.Now(), time.Minute) != nil {
			http.Error(w, "bad signature", 401)
			return
		}
		var batch []json.RawMessage
		if json.Unmarshal(body, &batch) != nil {
			http.Error(w, "bad json", 400)
			return
		}
		got.Add(int64(len(batch)))
		w.WriteHeader(204)
	}))
	defer srv.Close()
	db := openDB(b, b.TempDir())
	defer db.Close()
	d, err := New(db, []Config{{Account: "shop", URL: srv.URL, Secret: secret, BatchWait: Duration(time.Millisecond)}},
		Options{Log: quiet(), Clock: clock.Real{}, MaxPending: b.N + 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		d.Handle(benchEvent(i))
	}
	for d.Stats().Endpoints[0].Sent < uint64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	d.Close()
	if got.Load() != int64(b.N) {
		b.Fatalf("receiver got %d of %d", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
