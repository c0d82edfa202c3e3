package warmup

import (
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
)

// t0 is a Monday at local midnight in UTC; tests in other zones build their
// own.
var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func openDB(tb testing.TB, dir string) *badger.DB {
	tb.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// harness is a Controller on a temporary store with a fake clock, recording
// its events.
type harness struct {
	tb  testing.TB
	cfg Config
	dir string
	db  *badger.DB
	clk *clock.Fake
	c   *Controller

	mu     sync.Mutex
	events []Event
}

func newHarness(tb testing.TB, cfg Config, start time.Time) *harness {
	tb.Helper()
	h := &harness{tb: tb, cfg: cfg, dir: tb.TempDir(), clk: clock.NewFake(start)}
	h.db = openDB(tb, h.dir)
	h.open()
	tb.Cleanup(func() {
		if h.c != nil {
			h.c.Close()
		}
		if h.db != nil {
			h.db.Close()
		}
	})
	return h
}

func (h *harness) open() {
	h.tb.Helper()
	c, err := New(h.cfg, h.db, h.clk, h.record)
	if err != nil {
		h.tb.Fatal(err)
	}
	h.c = c
}

func (h *harness) record(e Event) {
	h.mu.Lock()
	h.events = append(h.events, e)
	h.mu.Unlock()
}

// takeEvents returns the events recorded since the last call.
func (h *harness) takeEvents() []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.events
	h.events = nil
	return e
}

// restart closes the Controller and the store cleanly and opens both again.
func (h *harness) restart() {
	h.tb.Helper()
	if err := h.c.Close(); err != nil {
		h.tb.Fatal(err)
	}
	h.c = nil
	if err := h.db.Close(); err != nil {
		h.tb.Fatal(err)
	}
	h.db = openDB(h.tb, h.dir)
	h.open()
}

// crash drops the Controller without a last flush (as a killed process
// would) and reopens the store.
func (h *harness) crash() {
	h.tb.Helper()
	h.c = nil
	if err := h.db.Close(); err != nil {
		h.tb.Fatal(err)
	}
	h.db = openDB(h.tb, h.dir)
	h.open()
}

// siteStatus finds one (egress, site) in a status snapshot.
func (h *harness) siteStatus(egress, site string, now time.Time) SiteStatus {
	h.tb.Helper()
	for _, e := range h.c.Status(now).Egress {
		if e.Name != egress {
			continue
		}
		for _, s := range e.Sites {
			if s.Site == site {
				return s
			}
		}
	}
	h.tb.Fatalf("no status for %s/%s", egress, site)
	return SiteStatus{}
}

// drain asks for up to demand messages from pool to site between from and
// to, each time at the moment Reserve said to come back, and returns the
// times of the grants.
func drain(c *Controller, pool, site string, prio int, from, to time.Time, demand int) []time.Time {
	var got []time.Time
	t := from
	for t.Before(to) && len(got) < demand {
		d := c.Reserve(pool, site, prio, t)
		if d.OK {
			got = append(got, t)
			continue
		}
		if !d.RetryAt.After(t) {
			t = t.Add(time.Millisecond)
			continue
		}
		t = d.RetryAt
	}
	return got
}

func oneEgress(plan string) Config {
	return Config{
		Egress: []Egress{{Name: "ip1", Source: "192.0.2.1", Plan: plan}},
	}
}

func hasEvent(evs []Event, cause string, to State) bool {
	for _, e := range evs {
		if e.Cause == cause && (to == "" || e.To == to) {
			return true
		}
	}
	return false
}
