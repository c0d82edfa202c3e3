package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/internal/clock"
)

const secret = "test-secret-0123456789"

var t0 = time.Date(2025, 3, 3, 12, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// receiver is a webhook endpoint: it checks every request's signature and
// records what it accepts, per path. fail decides the answer of a request
// before it is recorded: 0 accepts, a status code refuses with it, and -1
// hangs until the client gives up.
type receiver struct {
	t    testing.TB
	clk  clock.Clock
	srv  *httptest.Server
	fail func(path string, n int) int

	mu       sync.Mutex
	got      map[string][]Payload
	batches  map[string][]int
	requests atomic.Int64
	badSig   atomic.Int64
}

func newReceiver(t testing.TB, clk clock.Clock, fail func(string, int) int) *receiver {
	return newReceiverWrapped(t, clk, fail, nil)
}

// newReceiverWrapped puts wrap, if any, in front of the receiver's handler.
func newReceiverWrapped(t testing.TB, clk clock.Clock, fail func(string, int) int, wrap func(http.Handler) http.Handler) *receiver {
	r := &receiver{t: t, clk: clk, fail: fail, got: map[string][]Payload{}, batches: map[string][]int{}}
	var h http.Handler = http.HandlerFunc(r.serve)
	if wrap != nil {
		h = wrap(h)
	}
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	n := int(r.requests.Add(1))
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	// The fake clock runs ahead while requests are in flight: the
	// tolerance here only needs to be bounded, Verify's own test checks it.
	if err := Verify(secret, req.Header.Get(SignatureHeader), body, r.clk.Now(), 24*time.Hour); err != nil {
		r.badSig.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if req.Header.Get(TimestampHeader) == "" || req.Header.Get("Content-Type") != "application/json" {
		r.badSig.Add(1)
	}
	if r.fail != nil {
		switch code := r.fail(req.URL.Path, n); code {
		case 0:
		case -1:
			<-req.Context().Done()
			return
		default:
			http.Error(w, "receiver says no", code)
			return
		}
	}
	var ps []Payload
	if err := json.Unmarshal(body, &ps); err != nil {
		r.t.Errorf("body is not a JSON array of payloads: %v", err)
		http.Error(w, "bad json", 400)
		return
	}
	r.mu.Lock()
	r.got[req.URL.Path] = append(r.got[req.URL.Path], ps...)
	r.batches[req.URL.Path] = append(r.batches[req.URL.Path], len(ps))
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) payloads(path string) []Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[path])
}

func (r *receiver) count(path string) int { return len(r.payloads(path)) }

// pump moves the fake clock a step at a time until done holds; the step
// wakes backoffs and batch waits. Only the overall deadline is real time.
func pump(t testing.TB, clk *clock.Fake, step time.Duration, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		clk.Advance(step)
		time.Sleep(2 * time.Millisecond)
	}
}

func start(t testing.TB, db *badger.DB, cfgs []Config, opts Options) (*Dispatcher, func()) {
	t.Helper()
	if opts.Log == nil {
		opts.Log = quiet()
	}
	d, err := New(db, cfgs, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	return d, func() { cancel(); <-done; d.Close() }
}

// ev makes the n-th event of an account; n travels in the metadata so the
// receiver can check order.
func ev(account, typ string, n int) events.Event {
	return events.Event{Time: t0.Add(time.Duration(n) * time.Second), Type: typ, ID: fmt.Sprintf("q%d", n),
		MessageID: fmt.Sprintf("<%d@%s.example>", n, account), Account: account, Recipient: fmt.Sprintf("r%d@example.net", n),
		Metadata: map[string]string{"n": strconv.Itoa(n)}, Tags: []string{"t"}}
}

func seqOf(ps []Payload) []int {
	var out []int
	for _, p := range ps {
		n, _ := strconv.Atoi(p.Metadata["n"])
		out = append(out, n)
	}
	return out
}

func assertOnceInOrder(t *testing.T, ps []Payload, want []int) {
	t.Helper()
	ids := map[string]bool{}
	for _, p := range ps {
		if ids[p.EventID] {
			t.Errorf("event %s (n=%s) arrived twice", p.EventID, p.Metadata["n"])
		}
		ids[p.EventID] = true
	}
	if got := seqOf(ps); !slices.Equal(got, want) {
		t.Errorf("arrived %v\nwant    %v", got, want)
	}
}

// TestOutageThenRecovery is the acceptance case: the receiver refuses
// connections, then answers 500s, redirects and hangs past the timeout, then
// recovers. Every event arrives exactly once, in order per account; the
// global endpoint gets only what it chose, from every account.
func TestOutageThenRecovery(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, t.TempDir())
	defer db.Close()

	// A port with nothing listening: connections are refused until the
	// receiver starts on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	var phase atomic.Int64 // 0: 500s; 1: redirect; 2: hang; 3: accept
	fails := map[int64]int{0: 500, 1: 302, 2: -1}
	var phaseHits atomic.Int64
	r := &receiver{t: t, clk: clk, got: map[string][]Payload{}, batches: map[string][]int{}}
	r.fail = func(path string, n int) int {
		p := phase.Load()
		if p >= 3 {
			return 0
		}
		if phaseHits.Add(1) >= 4 {
			phaseHits.Store(0)
			phase.Add(1)
		}
		if p == 1 {
			return 302 // http.Error with 302 has no Location: still not followed
		}
		return fails[p]
	}

	url := "http://" + addr
	cfgs := []Config{
		{Account: "a", URL: url + "/a", Secret: secret, BatchSize: 7, Timeout: Duration(time.Second)},
		{Account: "b", URL: url + "/b", Secret: secret, BatchSize: 7, Timeout: Duration(time.Second)},
		{URL: url + "/all", Secret: secret, Events: []string{Bounce}, Timeout: Duration(time.Second)},
	}
	d, stop := start(t, db, cfgs, Options{Clock: clk})
	defer stop()

	types := []string{events.Delivered, events.Bounced, events.Deferred, events.Received}
	var wantA, wantB, wantAll []int
	for n := range 120 {
		acct := []string{"a", "b", "c"}[n%3]
		typ := types[n%len(types)]
		d.Handle(ev(acct, typ, n))
		if typ == events.Received {
			continue // processed is not among the defaults
		}
		switch acct {
		case "a":
			wantA = append(wantA, n)
		case "b":
			wantB = append(wantB, n)
		}
		if typ == events.Bounced {
			wantAll = append(wantAll, n)
		}
	}
	d.Flush()

	// Refused connections for an hour: every endpoint fails again and
	// again as the clock moves through the backoffs.
	pump(t, clk, 30*time.Second, func() bool {
		if clk.Now().Sub(t0) < time.Hour {
			return false
		}
		for _, e := range d.Stats().Endpoints {
			if e.FailedPosts < 10 {
				return false
			}
		}
		return true
	})
	for _, e := range d.Stats().Endpoints {
		if e.Sent != 0 || e.Queued == 0 || e.LastError == "" || e.NextAttempt.IsZero() {
			t.Errorf("while down: %+v", e)
		}
	}

	// The receiver comes up on the same port, failing in its three ways
	// before it accepts.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("could not listen again on %s: %v", addr, err)
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	r.srv.Listener.Close()
	r.srv.Listener = ln
	r.srv.Start()
	defer r.srv.Close()

	pump(t, clk, 30*time.Second, func() bool {
		for _, e := range d.Stats().Endpoints {
			if e.Queued != 0 {
				return false
			}
		}
		return r.count("/a") >= len(wantA) && r.count("/b") >= len(wantB) && r.count("/all") >= len(wantAll)
	})
	d.Flush()
	if phase.Load() < 3 {
		t.Errorf("recovered before the receiver stopped failing")
	}
	assertOnceInOrder(t, r.payloads("/a"), wantA)
	assertOnceInOrder(t, r.payloads("/b"), wantB)
	assertOnceInOrder(t, r.payloads("/all"), wantAll)
	if r.badSig.Load() != 0 {
		t.Errorf("%d requests with a bad signature or headers", r.badSig.Load())
	}
	for _, p := range r.payloads("/a") {
		if p.Account != "a" {
			t.Errorf("account %q at /a", p.Account)
		}
	}
	for _, p := range r.payloads("/all") {
		if p.Event != Bounce || p.BounceType != "soft" {
			t.Errorf("/all got %+v", p)
		}
	}
	r.mu.Lock()
	for path, sizes := range r.batches {
		for _, n := range sizes {
			if n > 7 && path != "/all" {
				t.Errorf("%s: batch of %d over batch_size 7", path, n)
			}
		}
	}
	r.mu.Unlock()
	for _, e := range d.Stats().Endpoints {
		if e.Queued != 0 || e.Failing != 0 || e.FailedPosts == 0 || e.LastSuccess.IsZero() {
			t.Errorf("after recovery: %+v", e)
		}
	}
}

// TestRestart closes the dispatcher and the database with events in the
// outbox, one POST in flight, and reopens them: nothing is lost, and only the
// batch in flight is sent again, with the same event ids.
func TestRestart(t *testing.T) {
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	db := openDB(t, dir)

	var accept atomic.Bool
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	// The first request the receiver takes is also the one whose answer
	// kiln never sees: the receiver records it, then blocks until the
	// dispatcher has gone.
	wrap := func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			taken := false
			if accept.Load() {
				once.Do(func() { taken = true })
			}
			if !taken {
				inner.ServeHTTP(w, req)
				return
			}
			inner.ServeHTTP(&discardWriter{h: http.Header{}}, req) // records it
			inFlight <- struct{}{}
			<-release
		})
	}
	r := newReceiverWrapped(t, clk, func(string, int) int {
		if accept.Load() {
			return 0
		}
		return 503
	}, wrap)

	cfg := []Config{{Account: "a", URL: r.srv.URL + "/a", Secret: secret, BatchSize: 10}}
	d, stop := start(t, db, cfg, Options{Clock: clk})
	for n := range 25 {
		d.Handle(ev("a", events.Delivered, n))
	}
	d.Flush()
	pump(t, clk, 10*time.Second, func() bool { return d.Stats().Endpoints[0].FailedPosts >= 2 })
	accept.Store(true)
	pump(t, clk, 10*time.Second, func() bool { return len(inFlight) == 1 })
	// Events handled just before the stop are written by Close.
	for n := 25; n < 30; n++ {
		d.Handle(ev("a", events.Delivered, n))
	}
	stop()
	close(release)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	first := r.payloads("/a")
	if len(first) != 10 {
		t.Fatalf("before the restart the receiver took %d events, want the 10 of the batch in flight", len(first))
	}

	db = openDB(t, dir)
	defer db.Close()
	d, stop = start(t, db, cfg, Options{Clock: clk})
	defer stop()
	if q := d.Stats().Endpoints[0].Queued; q != 30 {
		t.Errorf("outbox after restart holds %d, want 30", q)
	}
	for n := 30; n < 35; n++ {
		d.Handle(ev("a", events.Delivered, n))
	}
	d.Flush()
	pump(t, clk, 10*time.Second, func() bool { return r.count("/a") >= 45 && d.Stats().Endpoints[0].Queued == 0 })

	all := r.payloads("/a")
	// The batch in flight arrives twice, with the same ids; then everything
	// else once, in order.
	again := all[10:20]
	for i := range 10 {
		if again[i].EventID != first[i].EventID {
			t.Errorf("resent event %d has a new id", i)
		}
	}
	var want []int
	for n := range 35 {
		want = append(want, n)
	}
	assertOnceInOrder(t, append(slices.Clone(all[:10]), all[20:]...), want)
	if st := d.Stats().Endpoints[0]; st.Queued != 0 {
		t.Errorf("left in the outbox: %+v", st)
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// TestBatching: events wait for a full batch, and a partial one goes once
// its oldest event has waited batch_wait.
func TestBatching(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := newReceiver(t, clk, nil)
	cfg := []Config{{URL: r.srv.URL + "/x", Secret: secret, BatchSize: 10, BatchWait: Duration(time.Minute)}}
	d, err := New(db, cfg, Options{Clock: clk, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for n := range 25 {
		d.Handle(ev("a", events.Delivered, n))
	}
	d.Flush()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Two full batches go at once, without the clock moving.
	deadline := time.Now().Add(60 * time.Second)
	for r.count("/x") < 20 {
		if time.Now().After(deadline) {
			t.Fatal("full batches not sent")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The last five wait for batch_wait on the fake clock.
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	if r.count("/x") != 20 {
		t.Errorf("partial batch sent before batch_wait")
	}
	clk.Advance(time.Minute)
	for r.count("/x") < 25 {
		if time.Now().After(deadline) {
			t.Fatal("partial batch not sent")
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.mu.Lock()
	sizes := slices.Clone(r.batches["/x"])
	r.mu.Unlock()
	if !slices.Equal(sizes, []int{10, 10, 5}) {
		t.Errorf("batches %v, want [10 10 5]", sizes)
	}
	assertOnceInOrder(t, r.payloads("/x"), []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24})
}

// TestRoutingAndFilter: each account's endpoint gets its account's events of
// the chosen types, a global endpoint every account's, and an event nobody
// wants is not even buffered.
func TestRoutingAndFilter(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, t.TempDir())
	defer db.Close()
	r := newReceiver(t, clk, nil)
	cfgs := []Config{
		{Account: "a", URL: r.srv.URL + "/a", Secret: secret, Events: []string{Delivered, Processed}, BatchWait: Duration(time.Millisecond)},
		{Account: "b", URL: r.srv.URL + "/b", Secret: secret, Events: []string{"all"}, BatchWait: Duration(time.Millisecond)},
		{URL: r.srv.URL + "/g", Secret: secret, Events: []string{SpamReport, Unsubscribe}, BatchWait: Duration(time.Millisecond)},
	}
	d, stop := start(t, db, cfgs, Options{Clock: clk})
	defer stop()

	d.Handle(ev("c", events.Delivered, 0)) // nobody: c has no endpoint, g does not take delivered
	d.Handle(ev("a", events.Held, 1))      // nobody: a did not choose held
	if st := d.Stats(); st.Pending != 0 {
		t.Errorf("unwanted events buffered: %+v", st)
	}
	d.Handle(ev("a", events.Received, 2))
	d.Handle(ev("a", events.Delivered, 3))
	d.Handle(ev("a", events.Bounced, 4))
	d.Handle(ev("b", events.Received, 5))
	d.Handle(ev("b", events.Expired, 6))
	d.Handle(ev("c", events.Complaint, 7))
	d.Handle(ev("a", events.Unsubscribe, 8))
	d.Handle(events.Event{Type: "something-new", Account: "b"})
	d.Flush()
	pump(t, clk, time.Second, func() bool {
		return r.count("/a") >= 2 && r.count("/b") >= 2 && r.count("/g") >= 2
	})
	if got := seqOf(r.payloads("/a")); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("/a got %v", got)
	}
	if got := seqOf(r.payloads("/b")); !slices.Equal(got, []int{5, 6}) {
		t.Errorf("/b got %v", got)
	}
	if got := seqOf(r.payloads("/g")); !slices.Equal(got, []int{7, 8}) {
		t.Errorf("/g got %v", got)
	}
	a := r.payloads("/a")
	if a[0].Event != Processed || a[1].Event != Delivered || a[1].QueueID != "q3" || a[1].MessageID != "<3@a.example>" ||
		a[1].Recipient != "r3@example.net" || a[1].Tags[0] != "t" || a[1].Timestamp != t0.Add(3*time.Second).Unix() {
		t.Errorf("/a payloads %+v", a)
	}
}

// TestMaxAge: events an endpoint never acknowledges are given up after
// max_age, and the endpoint carries on with newer ones.
func TestMaxAge(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, t.TempDir())
	defer db.Close()
	var up atomic.Bool
	r := newReceiver(t, clk, func(string, int) int {
		if up.Load() {
			return 0
		}
		return 500
	})
	cfg := []Config{{URL: r.srv.URL + "/x", Secret: secret, MaxAge: Duration(time.Hour), BatchWait: Duration(time.Millisecond)}}
	d, stop := start(t, db, cfg, Options{Clock: clk})
	defer stop()
	for n := range 5 {
		d.Handle(ev("a", events.Bounced, n))
	}
	d.Flush()
	pump(t, clk, time.Minute, func() bool { return d.Stats().Endpoints[0].Expired == 5 })
	if st := d.Stats().Endpoints[0]; st.Queued != 0 || st.Sent != 0 {
		t.Errorf("after max_age: %+v", st)
	}
	up.Store(true)
	d.Handle(ev("a", events.Bounced, 5))
	d.Flush()
	pump(t, clk, time.Minute, func() bool { return r.count("/x") == 1 })
	assertOnceInOrder(t, r.payloads("/x"), []int{5})
}

// TestMaxQueued: an outbox at max_queued drops new events for that
// endpoint only.
func TestMaxQueued(t *testing.T) {
	clk := clock.NewFake(t0)
	db := openDB(t, t.TempDir())
	defer db.Close()
	cfgs := []Config{
		{URL: "http://127.0.0.1:1/small", Secret: secret, MaxQueued: 3},
		{URL: "http://127.0.0.1:1/big", Secret: secret},
	}
	d, err := New(db, cfgs, Options{Clock: clk, Log: quiet()}) // not running: nothing leaves
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for n := range 5 {
		d.Handle(ev("a", events.Bounced, n))
	}
	d.Flush()
	st := d.Stats().Endpoints
	if st[0].Queued != 3 || st[0].Overflow != 2 || st[1].Queued != 5 || st[1].Overflow != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestRemovedEndpointOutboxDiscarded: an endpoint taken out of the config
// leaves no outbox behind; the others keep theirs.
func TestRemovedEndpointOutboxDiscarded(t *testing.T) {
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	db := openDB(t, dir)
	keep := Config{Account: "a", URL: "http://127.0.0.1:1/keep", Secret: secret}
	gone := Config{Account: "a", URL: "http://127.0.0.1:1/gone", Secret: secret}
	d, err := New(db, []Config{keep, gone}, Options{Clock: clk, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for n := range 4 {
		d.Handle(ev("a", events.Bounced, n))
	}
	d.Close()
	d, err = New(db, []Config{keep}, Options{Clock: clk, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if q := d.Stats().Endpoints[0].Queued; q != 4 {
		t.Errorf("kept outbox holds %d", q)
	}
	keys := 0
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixOutbox})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys++
		}
		return nil
	})
	if keys != 4 {
		t.Errorf("%d outbox keys, want the 4 of the kept endpoint", keys)
	}
	d.Close()
	db.Close()
}

func TestCloseDropsLateEventsAndRunAfterClose(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	d, err := New(db, []Config{{URL: "http://127.0.0.1:1/", Secret: secret}}, Options{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	d.Handle(ev("a", events.Bounced, 0))
	if d.Stats().Dropped != 1 {
		t.Errorf("late event not counted")
	}
	if d.Run(context.Background()) == nil {
		t.Errorf("Run after Close succeeded")
	}
	if _, err := New(db, []Config{{URL: "ftp://x/", Secret: secret}}, Options{}); err == nil {
		t.Errorf("New accepted a bad config")
	}
}
