package suppress

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Outcome is a final outcome for one recipient of one message, as the
// Breaker counts it.
type Outcome uint8

const (
	Delivered  Outcome = iota + 1 // the remote took it
	HardBounce                    // the address does not exist (Decision.Hard)
	Complaint                     // the recipient complained (feedback loop)
	Other                         // any other final failure: sender-fault bounce, expired, ...
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case HardBounce:
		return "hard-bounce"
	case Complaint:
		return "complaint"
	case Other:
		return "other"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Breaker is the circuit breaker per account (see BreakerConfig for the
// rates it computes). Observe is cheap (a mutex and a few counters) and
// safe for concurrent use. A trip is written to the store, so a tripped
// account stays tripped across a restart until Reset.
type Breaker struct {
	cfg BreakerConfig
	db  *badger.DB
	log *slog.Logger

	mu    sync.Mutex
	accts map[string]*window
	trips map[string]Trip
}

// Trip is why and when an account's breaker tripped.
type Trip struct {
	Account string    `json:"account"`
	Why     string    `json:"why"`
	At      time.Time `json:"at"`
	// The window when it tripped.
	Outcomes    int `json:"outcomes"`
	Delivered   int `json:"delivered"`
	HardBounces int `json:"hard_bounces"`
	Complaints  int `json:"complaints"`
}

// BreakerState is an account's window as the Breaker sees it now.
type BreakerState struct {
	Account     string  `json:"account"`
	Tripped     bool    `json:"tripped"`
	Trip        *Trip   `json:"trip,omitempty"`
	Outcomes    int     `json:"outcomes"`
	Delivered   int     `json:"delivered"`
	HardBounces int     `json:"hard_bounces"`
	Complaints  int     `json:"complaints"`
	BounceRate  float64 `json:"hard_bounce_rate"` // as judged: divided by at least min_sample
	ComplRate   float64 `json:"complaint_rate"`   // as judged: divided by at least complaint_min_sample
}

// window is a ring of an account's last outcomes. compl[i] counts the
// complaints that arrived while slot i was the newest: they leave the window
// with it.
type window struct {
	kinds                       []Outcome
	compl                       []uint16
	pos, n                      int
	delivered, hard, complaints int
	carry                       int // complaints before the first outcome
}

// NewBreaker returns a breaker that keeps its trips in db (nil: in memory
// only) and reads the trips kept there. A zero cfg means the defaults; log
// may be nil.
func NewBreaker(db *badger.DB, cfg BreakerConfig, log *slog.Logger) (*Breaker, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &Breaker{cfg: cfg.withDefaults(), db: db, log: log, accts: map[string]*window{}, trips: map[string]Trip{}}
	if db == nil {
		return b, nil
	}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixTrip, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefixTrip); it.Next() {
			account := string(it.Item().Key()[len(prefixTrip):])
			var t Trip
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &t) })
			if err != nil {
				// Still tripped: a record we cannot read must not let the
				// account send again on its own.
				t = Trip{Why: "tripped before a restart (the record is unreadable)"}
			}
			t.Account = account
			b.trips[account] = t
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("suppress: reading breaker trips: %w", err)
	}
	return b, nil
}

// Config returns the configuration in force, defaults filled in.
func (b *Breaker) Config() BreakerConfig { return b.cfg }

// Observe counts one outcome of account and reports whether this outcome
// tripped the breaker, and why. It is true once per trip: the engine then
// holds the account's queue and emits an event with why. Outcomes of an
// account already tripped are not counted. Call it once per recipient of a
// message when its fate is final (Result.Outcome), and once per complaint.
func (b *Breaker) Observe(account string, o Outcome, now time.Time) (tripped bool, why string) {
	if o < Delivered || o > Other {
		return false, ""
	}
	b.mu.Lock()
	if _, ok := b.trips[account]; ok {
		b.mu.Unlock()
		return false, ""
	}
	w := b.accts[account]
	if w == nil {
		w = &window{kinds: make([]Outcome, b.cfg.Window), compl: make([]uint16, b.cfg.Window)}
		b.accts[account] = w
	}
	w.add(o)
	why = b.judge(w)
	if why == "" {
		b.mu.Unlock()
		return false, ""
	}
	t := Trip{Account: account, Why: why, At: now, Outcomes: w.n, Delivered: w.delivered, HardBounces: w.hard, Complaints: w.complaints}
	b.trips[account] = t
	delete(b.accts, account)
	b.mu.Unlock()
	b.persist(t)
	return true, why
}

func (w *window) add(o Outcome) {
	if o == Complaint {
		w.complaints++
		if w.n == 0 {
			w.carry++
			return
		}
		newest := (w.pos + len(w.kinds) - 1) % len(w.kinds)
		if w.compl[newest] < ^uint16(0) {
			w.compl[newest]++
		} else {
			w.complaints-- // saturated: an absurd burst on one slot
		}
		return
	}
	if w.n == len(w.kinds) {
		switch w.kinds[w.pos] {
		case Delivered:
			w.delivered--
		case HardBounce:
			w.hard--
		}
		w.complaints -= int(w.compl[w.pos])
	} else {
		w.n++
	}
	w.kinds[w.pos] = o
	w.compl[w.pos] = uint16(min(w.carry, int(^uint16(0))))
	w.carry = 0
	switch o {
	case Delivered:
		w.delivered++
	case HardBounce:
		w.hard++
	}
	w.pos = (w.pos + 1) % len(w.kinds)
}

// judge returns why the window trips the breaker, or "".
func (b *Breaker) judge(w *window) string {
	c := b.cfg
	if c.HardBounceRate > 0 && w.hard > 0 {
		den := max(w.n, c.MinSample)
		if reached(w.hard, den, c.HardBounceRate) {
			return fmt.Sprintf("hard-bounce rate %s (%d hard bounces in the last %d outcomes%s) reached the limit of %s",
				pct(w.hard, den), w.hard, w.n, floorNote(w.n, c.MinSample, "outcomes"), c.HardBounceRate)
		}
	}
	if c.ComplaintRate > 0 && w.complaints > 0 {
		den := max(w.delivered, c.ComplaintMinSample)
		if reached(w.complaints, den, c.ComplaintRate) {
			return fmt.Sprintf("complaint rate %s (%d complaints for %d deliveries in the last %d outcomes%s) reached the limit of %s",
				pct(w.complaints, den), w.complaints, w.delivered, w.n, floorNote(w.delivered, c.ComplaintMinSample, "deliveries"), c.ComplaintRate)
		}
	}
	return ""
}

// reached reports whether n/den >= r, tolerating the rounding of r ("0.3%"
// is not exactly 3/1000 in binary).
func reached(n, den int, r Rate) bool {
	return float64(n) >= float64(r)*float64(den)-1e-9
}

func pct(n, den int) string { return trimFloat(100*float64(n)/float64(den), 2) + "%" }

func floorNote(have, floor int, what string) string {
	if have >= floor {
		return ""
	}
	return fmt.Sprintf(", counted against a minimum sample of %d %s", floor, what)
}

func (b *Breaker) persist(t Trip) {
	if b.db == nil {
		return
	}
	v, _ := json.Marshal(t)
	err := b.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte(nil), prefixTrip...), t.Account...), v)
	})
	if err != nil {
		b.log.Error("breaker trip not saved: it will not survive a restart", "account", t.Account, "err", err)
	}
}

// Tripped reports whether account's breaker is tripped, and why.
func (b *Breaker) Tripped(account string) (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.trips[account]
	return ok, t.Why
}

// Trips returns the tripped accounts, by account name.
func (b *Breaker) Trips() []Trip {
	b.mu.Lock()
	out := make([]Trip, 0, len(b.trips))
	for _, t := range b.trips {
		out = append(out, t)
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// State returns every account's window and trip, by account name.
func (b *Breaker) State() []BreakerState {
	b.mu.Lock()
	out := make([]BreakerState, 0, len(b.accts)+len(b.trips))
	for a, w := range b.accts {
		out = append(out, BreakerState{Account: a, Outcomes: w.n, Delivered: w.delivered, HardBounces: w.hard,
			Complaints: w.complaints,
			BounceRate: float64(w.hard) / float64(max(w.n, b.cfg.MinSample)),
			ComplRate:  float64(w.complaints) / float64(max(w.delivered, b.cfg.ComplaintMinSample))})
	}
	for a, t := range b.trips {
		t := t
		out = append(out, BreakerState{Account: a, Tripped: true, Trip: &t})
	}
	b.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

// Reset closes account's breaker again with an empty window, and reports
// whether it was tripped. The engine releases the account's queue after it.
func (b *Breaker) Reset(account string) (bool, error) {
	b.mu.Lock()
	_, was := b.trips[account]
	delete(b.trips, account)
	delete(b.accts, account)
	b.mu.Unlock()
	if b.db == nil || !was {
		return was, nil
	}
	err := b.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(append(append([]byte(nil), prefixTrip...), account...))
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return was, fmt.Errorf("suppress: reset breaker of %s: %w", account, err)
	}
	return was, nil
}
