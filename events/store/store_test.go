package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/internal/clock"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func open(t testing.TB, db *badger.DB, clk clock.Clock, opts Options) *Store {
	t.Helper()
	opts.Clock = clk
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fixture writes a known set of events, one a minute from t0:
// two accounts, three messages, several recipients and types.
func fixture(t *testing.T, s *Store) []events.Event {
	t.Helper()
	var evs []events.Event
	add := func(typ, acct, id, rcpt string) {
		evs = append(evs, events.Event{
			Time: t0.Add(time.Duration(len(evs)) * time.Minute), Type: typ, ID: id,
			MessageID: "<" + id + "@app.example>", Account: acct, Recipient: rcpt,
		})
	}
	add(events.Received, "shop", "m1", "")
	add(events.Deferred, "shop", "m1", "Ann@Gmail.example")
	add(events.Delivered, "shop", "m1", "bob@yahoo.example")
	add(events.Received, "news", "m2", "")
	add(events.Bounced, "news", "m2", "ann@gmail.example")
	add(events.Delivered, "shop", "m1", "ann@gmail.example")
	add(events.Received, "shop", "m3", "")
	add(events.Bounced, "shop", "m3", "carl@outlook.example")
	add(events.Complaint, "news", "m2", "dora@gmail.example")
	for _, e := range evs {
		s.Handle(e)
	}
	s.Flush()
	return evs
}

// ids renders events as "type:id:recipient" for compact comparisons.
func ids(evs []events.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s@%d", e.Type, e.Time.Sub(t0)/time.Minute))
	}
	return out
}

func newest(evs []events.Event, keep func(events.Event) bool) []string {
	var out []events.Event
	for i := len(evs) - 1; i >= 0; i-- {
		if keep(evs[i]) {
			out = append(out, evs[i])
		}
	}
	return ids(out)
}

func TestQueryFilters(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	all := fixture(t, s)
	ctx := context.Background()

	cases := []struct {
		name string
		q    Query
		keep func(events.Event) bool
	}{
		{"everything", Query{}, func(events.Event) bool { return true }},
		{"account", Query{Account: "shop"}, func(e events.Event) bool { return e.Account == "shop" }},
		{"type", Query{Types: []string{events.Bounced}}, func(e events.Event) bool { return e.Type == events.Bounced }},
		{"types", Query{Types: []string{events.Bounced, events.Complaint}}, func(e events.Event) bool {
			return e.Type == events.Bounced || e.Type == events.Complaint
		}},
		{"account and type", Query{Account: "shop", Types: []string{events.Delivered}}, func(e events.Event) bool {
			return e.Account == "shop" && e.Type == events.Delivered
		}},
		{"recipient any case", Query{Recipient: "ANN@gmail.EXAMPLE"}, func(e events.Event) bool {
			return strings.EqualFold(e.Recipient, "ann@gmail.example")
		}},
		{"recipient and account", Query{Recipient: "ann@gmail.example", Account: "news"}, func(e events.Event) bool {
			return strings.EqualFold(e.Recipient, "ann@gmail.example") && e.Account == "news"
		}},
		{"queue id", Query{ID: "m1"}, func(e events.Event) bool { return e.ID == "m1" }},
		{"message-id", Query{MessageID: "<m2@app.example>"}, func(e events.Event) bool { return e.ID == "m2" }},
		{"time range", Query{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, func(e events.Event) bool {
			m := e.Time.Sub(t0) / time.Minute
			return m >= 2 && m < 5
		}},
		{"time range on an index", Query{Account: "shop", Since: t0.Add(2 * time.Minute), Until: t0.Add(7 * time.Minute)}, func(e events.Event) bool {
			m := e.Time.Sub(t0) / time.Minute
			return e.Account == "shop" && m >= 2 && m < 7
		}},
		{"no match", Query{Account: "nobody"}, func(events.Event) bool { return false }},
		{"other account's message", Query{ID: "m2", Account: "shop"}, func(events.Event) bool { return false }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, next, err := s.Query(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if next != "" {
				t.Errorf("next = %q on a short page", next)
			}
			want := newest(all, c.keep)
			if !slices.Equal(ids(got), want) {
				t.Errorf("got  %v\nwant %v", ids(got), want)
			}
		})
	}
}

func TestQueryPagination(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	ctx := context.Background()
	// 25 events, several sharing a timestamp, so the cursor must tell
	// apart events of the same instant.
	for i := range 25 {
		acct := "a"
		if i%3 == 0 {
			acct = "b"
		}
		s.Handle(events.Event{Time: t0.Add(time.Duration(i/2) * time.Second), Type: events.Delivered, ID: fmt.Sprint("m", i), Account: acct})
	}
	s.Flush()

	for _, q := range []Query{{Limit: 4}, {Limit: 3, Account: "a"}, {Limit: 2, Types: []string{events.Delivered}}} {
		var seen []string
		q0 := q
		for pages := 0; ; pages++ {
			if pages > 30 {
				t.Fatal("pagination does not end")
			}
			got, next, err := s.Query(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) > q.Limit {
				t.Fatalf("page of %d over limit %d", len(got), q.Limit)
			}
			for _, e := range got {
				seen = append(seen, e.ID)
			}
			if next == "" {
				break
			}
			q.Cursor = next
		}
		var want []string
		for i := 24; i >= 0; i-- {
			if q0.Account == "" || (q0.Account == "b") == (i%3 == 0) {
				want = append(want, fmt.Sprint("m", i))
			}
		}
		// Events of the same second come in reverse order of arrival.
		if !slices.Equal(seen, want) {
			t.Errorf("%+v: pages gave\n%v\nwant\n%v", q0, seen, want)
		}
	}

	if _, _, err := s.Query(ctx, Query{Cursor: "not-a-cursor"}); err != ErrBadCursor {
		t.Errorf("bad cursor: err = %v", err)
	}
}

func TestQueryStopsEarlyOnRareMatches(t *testing.T) {
	old := maxScan
	maxScan = 10
	defer func() { maxScan = old }()
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	for i := range 35 {
		typ := events.Delivered
		if i%10 == 0 {
			typ = events.Bounced
		}
		s.Handle(events.Event{Time: t0.Add(time.Duration(i) * time.Second), Type: typ, ID: fmt.Sprint("m", i), Account: "a"})
	}
	s.Flush()
	// Account index, type checked in the index entry: 35 entries walk in
	// pages of at most 10 examined entries, and every bounce is found once.
	q := Query{Account: "a", Types: []string{events.Bounced}}
	var got []string
	pages := 0
	for {
		evs, next, err := s.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, e := range evs {
			got = append(got, e.ID)
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	if want := []string{"m30", "m20", "m10", "m0"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if pages < 4 {
		t.Errorf("%d pages; the scan bound did not apply", pages)
	}
}

func TestByMessage(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	all := fixture(t, s)
	got, err := s.ByMessage(context.Background(), "m1")
	if err != nil {
		t.Fatal(err)
	}
	var want []events.Event
	for _, e := range all {
		if e.ID == "m1" {
			want = append(want, e)
		}
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Errorf("got %v, want %v (oldest first)", ids(got), ids(want))
	}
	if got[1].Recipient != "Ann@Gmail.example" || got[1].MessageID != "<m1@app.example>" {
		t.Errorf("fields not kept: %+v", got[1])
	}
	if evs, _ := s.ByMessage(context.Background(), "m"); len(evs) != 0 {
		t.Errorf("a prefix of an id matched: %v", ids(evs))
	}
}

func TestEventKeptWhole(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	next := t0.Add(time.Hour)
	tags := []string{"spring"}
	md := map[string]string{"campaign": "42"}
	longID := "<" + strings.Repeat("x", 300) + "@app.example>"
	e := events.Event{
		Time: t0, Type: events.Deferred, ID: "q1", MessageID: longID, Account: "shop", From: "a@shop.example",
		Recipient: "b@c.example", Attempt: 2, RemoteHost: "mx.c.example", RemoteIP: "192.0.2.1", TLS: "TLS1.3",
		Code: 451, Enhanced: "4.7.1", Reply: "451 4.7.1 try later", Reason: "blocked", Rule: "r1", Egress: "e1",
		Site: "c.example", Size: 1234, QueueMs: 5, AttemptMs: 6, Next: &next, Tags: tags, Metadata: md, Detail: "d",
	}
	s.Handle(e)
	// The producer may reuse its slices once Emit returns.
	tags[0] = "changed"
	md["campaign"] = "changed"
	s.Flush()
	got, _, err := s.Query(context.Background(), Query{MessageID: longID})
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	g := got[0]
	if g.Tags[0] != "spring" || g.Metadata["campaign"] != "42" || !g.Next.Equal(next) || g.Reply != e.Reply || g.Code != 451 || g.Size != 1234 {
		t.Errorf("stored %+v", g)
	}
	if got, _, _ := s.Query(context.Background(), Query{MessageID: "<" + strings.Repeat("x", 301) + "@app.example>"}); len(got) != 0 {
		t.Errorf("another long id matched")
	}
}

func TestEventWithoutTimeGetsTheClocks(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	s.Handle(events.Event{Type: events.Received, ID: "q"})
	s.Flush()
	got, _, _ := s.Query(context.Background(), Query{ID: "q"})
	if len(got) != 1 || !got[0].Time.Equal(t0) {
		t.Errorf("got %+v", got)
	}
}

func TestRetentionSweep(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	clk := clock.NewFake(t0)
	// The periodic sweep waits a year here: this test calls Sweep itself.
	s := open(t, db, clk, Options{Retention: 30 * 24 * time.Hour, SweepEvery: 365 * 24 * time.Hour})
	defer s.Close()
	ctx := context.Background()
	for d := range 10 {
		s.Handle(events.Event{Time: t0.Add(time.Duration(d) * 24 * time.Hour), Type: events.Delivered, ID: fmt.Sprint("m", d), Account: "a", Recipient: "x@y.example"})
	}
	s.Flush()

	// Nothing is old enough yet.
	if n, err := s.Sweep(ctx); n != 0 || err != nil {
		t.Fatalf("early sweep removed %d, %v", n, err)
	}
	// Day 33.5: days 0..3 are past 30 days.
	clk.Set(t0.Add(33*24*time.Hour + 12*time.Hour))
	if n, err := s.Sweep(ctx); n != 4 || err != nil {
		t.Fatalf("sweep removed %d, %v; want 4", n, err)
	}
	got, _, _ := s.Query(ctx, Query{})
	if len(got) != 6 || got[len(got)-1].ID != "m4" {
		t.Errorf("left %v", ids(got))
	}
	// Index entries went with their events.
	if got, _ := s.ByMessage(ctx, "m0"); len(got) != 0 {
		t.Errorf("m0 still found by id")
	}
	var indexKeys int
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixIndex})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			indexKeys++
		}
		return nil
	})
	if indexKeys != 6*4 { // id, message-id (none), account, recipient, type
		t.Errorf("%d index keys left, want 24", indexKeys)
	}
}

func TestPeriodicSweep(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	clk := clock.NewFake(t0)
	s := open(t, db, clk, Options{Retention: 30 * 24 * time.Hour, SweepEvery: time.Hour})
	defer s.Close()
	ctx := context.Background()
	for d := range 10 {
		s.Handle(events.Event{Time: t0.Add(time.Duration(d) * 24 * time.Hour), Type: events.Delivered, ID: fmt.Sprint("m", d)})
	}
	s.Flush()
	// The sweep runs on the injected clock: once the sweeper sleeps, move
	// to day 45 and wait for it to find everything gone.
	for clk.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Set(t0.Add(45 * 24 * time.Hour))
	deadline := time.Now().Add(30 * time.Second)
	for s.Stats().Swept != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("periodic sweep did not run: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if got, _, _ := s.Query(ctx, Query{}); len(got) != 0 {
		t.Errorf("left %v", ids(got))
	}
}

func TestReopenKeepsEventsAndOrder(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	clk := clock.NewFake(t0)
	s := open(t, db, clk, Options{})
	for i := range 3 {
		s.Handle(events.Event{Time: t0, Type: events.Delivered, ID: "m", Recipient: fmt.Sprint("r", i)})
	}
	// Close writes what is buffered: no Flush.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Handle(events.Event{Time: t0, Type: events.Delivered, ID: "m", Recipient: "late"})
	if s.Stats().Dropped != 1 {
		t.Errorf("an event after Close was not counted as dropped")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openDB(t, dir)
	defer db.Close()
	s = open(t, db, clk, Options{})
	defer s.Close()
	// Same timestamp after the restart: the sequence keeps keys unique.
	for i := 3; i < 5; i++ {
		s.Handle(events.Event{Time: t0, Type: events.Delivered, ID: "m", Recipient: fmt.Sprint("r", i)})
	}
	s.Flush()
	got, err := s.ByMessage(context.Background(), "m")
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []string
	for _, e := range got {
		rcpts = append(rcpts, e.Recipient)
	}
	if want := []string{"r0", "r1", "r2", "r3", "r4"}; !slices.Equal(rcpts, want) {
		t.Errorf("after reopen: %v, want %v", rcpts, want)
	}
}

func TestFullBufferDrops(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	// No flush happens by itself during the test.
	s := open(t, db, clock.NewFake(t0), Options{MaxPending: 5, BatchSize: 1 << 30, FlushEvery: time.Hour})
	defer s.Close()
	for i := range 8 {
		s.Handle(events.Event{Time: t0, Type: events.Received, ID: fmt.Sprint(i)})
	}
	if st := s.Stats(); st.Dropped != 3 || st.Pending != 5 {
		t.Errorf("stats %+v, want 3 dropped and 5 pending", st)
	}
	s.Flush()
	if st := s.Stats(); st.Written != 5 || st.Pending != 0 {
		t.Errorf("stats %+v after flush", st)
	}
	// Room again.
	s.Handle(events.Event{Time: t0, Type: events.Received, ID: "again"})
	s.Flush()
	if got, _, _ := s.Query(context.Background(), Query{ID: "again"}); len(got) != 1 {
		t.Errorf("event after a drain not stored")
	}
}

func TestLargeFlushSpansTransactions(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithSyncWrites(true).WithMemTableSize(1 << 20).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{BatchSize: 1 << 30, FlushEvery: time.Hour})
	defer s.Close()
	const n = 5000 // far more than one transaction of a 1 MB memtable holds
	for i := range n {
		s.Handle(events.Event{Time: t0.Add(time.Duration(i)), Type: events.Delivered, ID: fmt.Sprint("m", i), Account: "a", Recipient: "r@x.example", Reply: strings.Repeat("250 ok ", 10)})
	}
	s.Flush()
	if st := s.Stats(); st.Written != n || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	if got, _, _ := s.Query(context.Background(), Query{ID: "m4321"}); len(got) != 1 {
		t.Errorf("event not found")
	}
}

func TestBusDelivers(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	var bus events.Bus
	bus.Subscribe(s)
	bus.Emit(events.Event{Time: t0, Type: events.Received, ID: "via-bus"})
	s.Flush()
	if got, _ := s.ByMessage(context.Background(), "via-bus"); len(got) != 1 {
		t.Errorf("got %v", got)
	}
}

func TestQueryHonoursContext(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	s := open(t, db, clock.NewFake(t0), Options{})
	defer s.Close()
	fixture(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Query(ctx, Query{}); err != context.Canceled {
		t.Errorf("err = %v", err)
	}
}
