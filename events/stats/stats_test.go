package stats

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/internal/clock"
	"kiln/warmup"
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

func open(t testing.TB, db *badger.DB, clk clock.Clock, opts Options) *Stats {
	t.Helper()
	opts.Clock = clk
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	if opts.FlushEvery == 0 {
		opts.FlushEvery = time.Hour // tests flush by hand
	}
	s, err := New(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ev(typ string, at time.Time, reason, site, acct string) events.Event {
	return events.Event{Time: at, Type: typ, Reason: reason, Site: site, Account: acct, Egress: "ip1", Recipient: "a@b.example"}
}

func mustSeries(t *testing.T, s *Stats, q Query) Series {
	t.Helper()
	sr, err := s.Series(q)
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

func TestSeriesPerMinute(t *testing.T) {
	clk := clock.NewFake(t0.Add(10 * time.Minute))
	s := open(t, nil, clk, Options{})
	for i := range 10 {
		for range i + 1 {
			s.Handle(ev(events.Delivered, t0.Add(time.Duration(i)*time.Minute+time.Second), "delivered", "google", "shop"))
		}
	}
	s.Handle(ev(events.Bounced, t0.Add(3*time.Minute), "userunknown", "google", "shop"))
	s.Handle(ev(events.Bounced, t0.Add(4*time.Minute), "userunknown", "mx:mx.example", "news"))
	s.Handle(ev(events.Bounced, t0.Add(4*time.Minute), "blocked", "google", "news"))

	got := mustSeries(t, s, Query{Type: events.Delivered, Since: t0, Until: t0.Add(10 * time.Minute), Step: time.Minute})
	want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if !slices.Equal(got.Points, want) || got.Total != 55 || !got.Start.Equal(t0) || got.Step != 60 {
		t.Fatalf("delivered per minute: %+v", got)
	}
	got = mustSeries(t, s, Query{Type: events.Delivered, Since: t0, Until: t0.Add(10 * time.Minute), Step: 5 * time.Minute})
	if !slices.Equal(got.Points, []uint64{15, 40}) {
		t.Fatalf("delivered per 5 minutes: %v", got.Points)
	}
	got = mustSeries(t, s, Query{Type: events.Delivered, By: BySite, Value: "google", Since: t0, Until: t0.Add(10 * time.Minute), Step: 10 * time.Minute})
	if !slices.Equal(got.Points, []uint64{55}) {
		t.Fatalf("delivered at google: %v", got.Points)
	}
	got = mustSeries(t, s, Query{Type: events.Bounced, By: ByReason, Value: "userunknown", Since: t0, Until: t0.Add(5 * time.Minute), Step: time.Minute})
	if !slices.Equal(got.Points, []uint64{0, 0, 0, 1, 1}) {
		t.Fatalf("userunknown: %v", got.Points)
	}
	top, err := s.Top(Query{Type: events.Bounced, By: ByReason, Since: t0}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(top, []Count{{"userunknown", 2}, {"blocked", 1}}) {
		t.Fatalf("top reasons: %v", top)
	}
	top, _ = s.Top(Query{Type: events.Bounced, By: ByAccount, Since: t0}, 1)
	if !slices.Equal(top, []Count{{"news", 2}}) {
		t.Fatalf("top accounts: %v", top)
	}
	if n, _ := s.Sum(Query{Type: events.Bounced, By: ByEgress, Value: "ip1", Since: t0}); n != 3 {
		t.Fatalf("bounced through ip1: %d", n)
	}
	if got := s.Types(); !slices.Equal(got, []string{events.Bounced, events.Delivered}) {
		t.Fatalf("types: %v", got)
	}
	// A series nobody wrote is all zeros, not an error.
	got = mustSeries(t, s, Query{Type: events.Expired, Since: t0, Until: t0.Add(3 * time.Minute), Step: time.Minute})
	if !slices.Equal(got.Points, []uint64{0, 0, 0}) {
		t.Fatalf("expired: %v", got.Points)
	}
}

func TestQueryErrors(t *testing.T) {
	s := open(t, nil, clock.NewFake(t0), Options{})
	for _, q := range []Query{
		{},
		{Type: "delivered", By: "colour"},
		{Type: "delivered", By: BySite},
		{Type: "delivered", Since: t0, Until: t0},
		{Type: "delivered", Since: t0.Add(-300 * 24 * time.Hour), Until: t0, Step: time.Second},
	} {
		if _, err := s.Series(q); err == nil {
			t.Errorf("%+v: no error", q)
		}
	}
	if _, err := s.Top(Query{Type: "delivered"}, 3); err == nil {
		t.Error("top without a dimension: no error")
	}
}

func TestDefaultStep(t *testing.T) {
	clk := clock.NewFake(t0)
	s := open(t, nil, clk, Options{})
	for _, c := range []struct {
		rng  time.Duration
		step int64
	}{{time.Hour, 60}, {6 * time.Hour, 300}, {24 * time.Hour, 900}, {48 * time.Hour, 1800}, {7 * 24 * time.Hour, 7200}, {30 * 24 * time.Hour, 6 * 3600}} {
		got := mustSeries(t, s, Query{Type: "delivered", Since: t0.Add(-c.rng)})
		if got.Step != c.step || len(got.Points) > 121 {
			t.Errorf("range %v: step %ds, %d points; want step %ds", c.rng, got.Step, len(got.Points), c.step)
		}
	}
}

// TestRollover moves the clock past the minute retention, then past the hour
// retention: minutes give way to hours, hours to nothing, and a reused slot
// never shows the counts of its previous lap.
func TestRollover(t *testing.T) {
	clk := clock.NewFake(t0)
	s := open(t, nil, clk, Options{MinuteKeep: 2 * time.Hour, HourKeep: 48 * time.Hour})
	for i := range 3 {
		s.Handle(ev(events.Deferred, t0.Add(time.Duration(i)*time.Minute), "mailboxfull", "google", "shop"))
	}
	pts := func(since time.Time, n int, step time.Duration) []uint64 {
		return mustSeries(t, s, Query{Type: events.Deferred, Since: since, Until: since.Add(time.Duration(n) * step), Step: step}).Points
	}
	if got := pts(t0, 3, time.Minute); !slices.Equal(got, []uint64{1, 1, 1}) {
		t.Fatalf("fresh: %v", got)
	}
	clk.Advance(2*time.Hour + 30*time.Minute)
	// t0's hour is still within 2h + the current hour: minutes remain.
	if got := pts(t0, 3, time.Minute); !slices.Equal(got, []uint64{1, 1, 1}) {
		t.Fatalf("after 2h30: %v", got)
	}
	clk.Advance(time.Hour)
	// Now t0 is past the minute retention: the query is answered by hours.
	got := mustSeries(t, s, Query{Type: events.Deferred, Since: t0, Until: t0.Add(3 * time.Minute), Step: time.Minute})
	if got.Step != 3600 || !slices.Equal(got.Points, []uint64{3}) {
		t.Fatalf("after 3h30: %+v", got)
	}
	// An event three hours later lands in t0's minute slot (ring of 3
	// hours): the old lap is cleared, not added to.
	s.Handle(ev(events.Deferred, t0.Add(3*time.Hour), "mailboxfull", "google", "shop"))
	if got := pts(t0.Add(3*time.Hour), 3, time.Minute); !slices.Equal(got, []uint64{1, 0, 0}) {
		t.Fatalf("reused slot: %v", got)
	}
	// An event older than the minute ring is still counted by the hour.
	s.Handle(ev(events.Deferred, t0.Add(5*time.Minute), "mailboxfull", "google", "shop"))
	if got := pts(t0, 1, time.Hour); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("late event: %v", got)
	}
	clk.Advance(3 * 24 * time.Hour)
	if got := pts(t0, 4, time.Hour); !slices.Equal(got, []uint64{0, 0, 0, 0}) {
		t.Fatalf("after the hour retention: %v", got)
	}
	s.Flush() // reaps
	if in := s.Info(); in.Series != 0 || in.Chunks != 0 {
		t.Fatalf("after reaping: %+v", in)
	}
}

func TestMaxValues(t *testing.T) {
	clk := clock.NewFake(t0)
	s := open(t, nil, clk, Options{MaxValues: 2})
	for i := range 5 {
		s.Handle(events.Event{Time: t0, Type: events.Delivered, Site: fmt.Sprintf("site%d", i)})
	}
	s.Handle(events.Event{Time: t0, Type: events.Delivered, Site: "site0"})
	top, _ := s.Top(Query{Type: events.Delivered, By: BySite, Since: t0, Until: t0.Add(time.Minute)}, 0)
	if !slices.Equal(top, []Count{{Other, 3}, {"site0", 2}, {"site1", 1}}) {
		t.Fatalf("top: %v", top)
	}
	if in := s.Info(); in.Overflow != 3 {
		t.Fatalf("overflow: %+v", in)
	}
}

func countKeys(t *testing.T, db *badger.DB, p string) int {
	t.Helper()
	n := 0
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(p)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	defer db.Close()
	clk := clock.NewFake(t0)
	s := open(t, db, clk, Options{MinuteKeep: 2 * time.Hour, HourKeep: 48 * time.Hour})
	for i := range 90 {
		s.Handle(ev(events.Delivered, t0.Add(time.Duration(i)*time.Minute), "delivered", "google", "shop"))
	}
	s.Handle(ev(events.Bounced, t0.Add(time.Minute), "userunknown", "google", "shop"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Two hours of minutes and one day of hours per delivered series (4
	// with a value + the total) and one of each for the 5 bounced series.
	if n := countKeys(t, db, "stats/m/"); n != 5*2+5 {
		t.Fatalf("minute chunks stored: %d", n)
	}

	clk.Advance(90 * time.Minute)
	s2 := open(t, db, clk, Options{MinuteKeep: 2 * time.Hour, HourKeep: 48 * time.Hour})
	got := mustSeries(t, s2, Query{Type: events.Delivered, By: ByAccount, Value: "shop", Since: t0, Until: t0.Add(90 * time.Minute), Step: 30 * time.Minute})
	if !slices.Equal(got.Points, []uint64{30, 30, 30}) {
		t.Fatalf("reloaded: %v", got.Points)
	}
	// Adding to a reloaded chunk continues its count.
	s2.Handle(ev(events.Delivered, t0.Add(89*time.Minute), "delivered", "google", "shop"))
	if n, _ := s2.Sum(Query{Type: events.Delivered, Since: t0, Until: t0.Add(2 * time.Hour)}); n != 91 {
		t.Fatalf("after adding: %d", n)
	}
	// Only what changed is written again.
	s2.Close()
	clk.Advance(4 * 24 * time.Hour)
	s3 := open(t, db, clk, Options{MinuteKeep: 2 * time.Hour, HourKeep: 48 * time.Hour})
	if in := s3.Info(); in.Series != 0 {
		t.Fatalf("expired data reloaded: %+v", in)
	}
	if err := s3.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, db, "stats/"); n != 0 {
		t.Fatalf("%d expired records left in the store", n)
	}
}

func TestUnreadableRecordsAreDropped(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	db.Update(func(txn *badger.Txn) error {
		txn.Set([]byte("stats/m/short"), []byte{1})
		txn.Set(chunkKey(kindMinute, floorDiv(t0.Unix(), 3600), key{typ: "delivered"}), []byte{0xff})
		txn.Set([]byte("stats/w/ip1\x00google"), []byte("{"))
		txn.Set([]byte("stats/zz"), nil)
		return nil
	})
	s := open(t, db, clock.NewFake(t0), Options{})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, db, "stats/"); n != 0 {
		t.Fatalf("%d unreadable records left", n)
	}
}

type fakeWarmup struct {
	mu sync.Mutex
	st warmup.Status
}

func (f *fakeWarmup) Status(time.Time) warmup.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeWarmup) set(date string, cap, sent int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = warmup.Status{Date: date, Egress: []warmup.EgressStatus{{Name: "ip1", Sites: []warmup.SiteStatus{
		{Site: "google", Provider: "google", State: warmup.StateRamping, Day: 3, Cap: cap, Sent: sent},
	}}}}
}

func TestWarmupHistory(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	clk := clock.NewFake(t0)
	fw := &fakeWarmup{}
	s := open(t, db, clk, Options{Warmup: fw, DaysKeep: 3})
	for d := range 5 {
		date := t0.AddDate(0, 0, d).Format("2006-01-02")
		fw.set(date, 100*(d+1), 10)
		s.Flush()
		fw.set(date, 100*(d+1), 50*(d+1))
		s.Flush()
		clk.Advance(24 * time.Hour)
	}
	want := []Day{
		{Date: "2025-03-03", Cap: 300, Sent: 150, Day: 3, State: "ramping"},
		{Date: "2025-03-04", Cap: 400, Sent: 200, Day: 3, State: "ramping"},
		{Date: "2025-03-05", Cap: 500, Sent: 250, Day: 3, State: "ramping"},
	}
	h := s.Warmup("")
	if len(h) != 1 || h[0].Egress != "ip1" || h[0].Site != "google" || !slices.Equal(h[0].Days, want) {
		t.Fatalf("history: %+v", h)
	}
	s.Close()
	s2 := open(t, db, clk, Options{})
	if h := s2.Warmup("ip1"); len(h) != 1 || h[0].Provider != "google" || !slices.Equal(h[0].Days, want) {
		t.Fatalf("reloaded history: %+v", h)
	}
	if h := s2.Warmup("ip2"); len(h) != 0 {
		t.Fatalf("other egress: %+v", h)
	}
	// A history whose last day left DaysKeep is forgotten.
	clk.Advance(90 * 24 * time.Hour)
	s2.Flush()
	if h := s2.Warmup(""); len(h) != 0 || countKeys(t, db, "stats/w/") != 0 {
		t.Fatalf("stale history kept: %+v", h)
	}
}

// TestConcurrent runs Handle, queries and flushes together, for the race
// detector, and checks that no event is lost.
func TestConcurrent(t *testing.T) {
	db := openDB(t, t.TempDir())
	defer db.Close()
	clk := clock.NewFake(t0)
	s := open(t, db, clk, Options{})
	var wg sync.WaitGroup
	const workers, each = 4, 2000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s.Handle(ev(events.Delivered, t0.Add(time.Duration(i%120)*time.Second), "delivered", fmt.Sprint("site", i%7), fmt.Sprint("acct", w)))
			}
		}()
	}
	stop := make(chan struct{})
	var rg sync.WaitGroup
	rg.Add(1)
	go func() {
		defer rg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.Series(Query{Type: events.Delivered, Since: t0})
			s.Top(Query{Type: events.Delivered, By: BySite, Since: t0}, 3)
			s.Flush()
		}
	}()
	wg.Wait()
	close(stop)
	rg.Wait()
	if n, _ := s.Sum(Query{Type: events.Delivered, Since: t0, Until: t0.Add(time.Hour)}); n != workers*each {
		t.Fatalf("counted %d, want %d", n, workers*each)
	}
	s.Close()
	s2 := open(t, db, clk, Options{})
	if n, _ := s2.Sum(Query{Type: events.Delivered, By: ByAccount, Value: "acct2", Since: t0, Until: t0.Add(time.Hour)}); n != each {
		t.Fatalf("reloaded %d, want %d", n, each)
	}
}
