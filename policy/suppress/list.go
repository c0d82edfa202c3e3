package suppress

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
)

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("suppression list closed")

// ErrCursor is returned by List for a cursor it did not make.
var ErrCursor = errors.New("invalid cursor")

// List is the suppression list on kiln's shared badger store. It is safe for
// concurrent use; Close stops its writer.
type List struct {
	db  *badger.DB
	clk clock.Clock
	cfg Config
	log *slog.Logger

	mu     sync.RWMutex // guards closed; held for reading while sending on reqs
	closed bool
	reqs   chan *request
	done   chan struct{}

	onChange atomic.Pointer[func(Change)]
}

// Op says what a Change did.
type Op string

const (
	OpAdded    Op = "added"    // a new entry
	OpReplaced Op = "replaced" // a stronger entry replaced one (Prev)
	OpRemoved  Op = "removed"  // removed by Remove
	OpExpired  Op = "expired"  // deleted by a sweep after it expired
)

// Change is one change to the list, for OnChange.
type Change struct {
	Op    Op
	Entry Entry  // the entry added, or the one removed
	Prev  *Entry // the entry replaced (OpReplaced)
}

// Open opens the list on kiln's shared store and starts its writer. A zero
// Config means the defaults; cfg should have passed Validate. log may be nil.
func Open(db *badger.DB, clk clock.Clock, cfg Config, log *slog.Logger) (*List, error) {
	if db == nil {
		return nil, errors.New("suppress: no store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("suppress: %w", err)
	}
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.Default()
	}
	l := &List{db: db, clk: clk, cfg: cfg.withDefaults(), log: log,
		reqs: make(chan *request, 64), done: make(chan struct{})}
	go l.writer()
	return l, nil
}

// Config returns the configuration in force, defaults filled in.
func (l *List) Config() Config { return l.cfg }

// OnChange registers fn to be called after every committed change made by
// Add, Record, SoftFail, Remove and Sweep (an import reports once, in its
// ImportReport, not per row). fn runs on the list's writer goroutine: it must
// return quickly (emit an event, count a metric) and must not write to the
// list, which would wait for itself. Check and List are fine.
func (l *List) OnChange(fn func(Change)) { l.onChange.Store(&fn) }

// Close stops the writer after the writes already asked for. It does not
// close the store.
func (l *List) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.done
	return nil
}

// request is one write for the writer. apply reads and writes through txn
// and may be run again on a fresh transaction (when a batch was too big for
// one), so it must set its results from scratch each time.
type request struct {
	weight  int // rows written, roughly, to bound a batch
	apply   func(txn *badger.Txn, changes *[]Change) error
	changes []Change
	err     error
	done    chan struct{}
}

// maxBatch bounds how much one transaction carries: small enough to stay far
// below badger's transaction limits, large enough that a burst of adds from
// many delivery workers shares one sync.
const maxBatch = 2000

func (l *List) submitAsync(weight int, apply func(*badger.Txn, *[]Change) error) (*request, error) {
	r := &request{weight: max(weight, 1), apply: apply, done: make(chan struct{})}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return nil, ErrClosed
	}
	l.reqs <- r
	return r, nil
}

func (l *List) submit(weight int, apply func(*badger.Txn, *[]Change) error) error {
	r, err := l.submitAsync(weight, apply)
	if err != nil {
		return err
	}
	<-r.done
	return r.err
}

// writer applies requests in arrival order, as many as are waiting in one
// transaction, so concurrent writers share a commit (and its sync). Being the
// only writer, it never races itself: the store is opened without conflict
// detection, and a read-modify-write here needs none.
func (l *List) writer() {
	defer close(l.done)
	var batch []*request
	for r := range l.reqs {
		batch = append(batch[:0], r)
		w := r.weight
	drain:
		for w < maxBatch {
			select {
			case r2, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r2)
				w += r2.weight
			default:
				break drain
			}
		}
		l.commit(batch)
		fn := l.onChange.Load()
		for _, r := range batch {
			if r.err == nil && fn != nil && *fn != nil {
				for _, c := range r.changes {
					l.notify(*fn, c)
				}
			}
			close(r.done)
		}
	}
}

func (l *List) notify(fn func(Change), c Change) {
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("suppression change handler panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	fn(c)
}

// commit runs the batch in one transaction; a batch too big for one is split
// in halves, each committed in turn.
func (l *List) commit(batch []*request) {
	err := l.tryCommit(batch)
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		half := len(batch) / 2
		l.commit(batch[:half])
		l.commit(batch[half:])
		return
	}
	for _, r := range batch {
		r.err = err
		if err != nil {
			r.changes = nil
		}
	}
}

func (l *List) tryCommit(batch []*request) (err error) {
	txn := l.db.NewTransaction(true)
	defer txn.Discard()
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("suppression writer panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("suppress: internal error: %v", p)
		}
	}()
	for _, r := range batch {
		r.changes = r.changes[:0]
		if err := r.apply(txn, &r.changes); err != nil {
			return err
		}
	}
	return txn.Commit()
}

// getEntry reads an entry in txn; found is false when there is none. A
// record that cannot be read is reported and treated as absent, so it is
// overwritten rather than blocking the address forever.
func (l *List) getEntry(txn *badger.Txn, scope, addr string) (e Entry, found bool, err error) {
	item, err := txn.Get(entryKey(scope, addr))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, false, nil
	} else if err != nil {
		return Entry{}, false, err
	}
	err = item.Value(func(v []byte) error {
		e, err = decodeEntry(scope, addr, v)
		return err
	})
	if errors.Is(err, errRecord) {
		l.log.Error("unreadable suppression entry, ignoring it", "scope", scope, "address", addr)
		return Entry{}, false, nil
	}
	return e, err == nil, err
}

// put writes e in place of old (when found), keeping the expiry index in step.
func putEntry(txn *badger.Txn, e Entry, old *Entry) error {
	if old != nil && !old.Expires.IsZero() && !old.Expires.Equal(e.Expires) {
		if err := txn.Delete(expiryKey(old.Expires, kindEntry, old.Scope, old.Address)); err != nil {
			return err
		}
	}
	if err := txn.Set(entryKey(e.Scope, e.Address), encodeEntry(e)); err != nil {
		return err
	}
	if !e.Expires.IsZero() {
		return txn.Set(expiryKey(e.Expires, kindEntry, e.Scope, e.Address), nil)
	}
	return nil
}

func deleteEntry(txn *badger.Txn, e Entry) error {
	if !e.Expires.IsZero() {
		if err := txn.Delete(expiryKey(e.Expires, kindEntry, e.Scope, e.Address)); err != nil {
			return err
		}
	}
	return txn.Delete(entryKey(e.Scope, e.Address))
}

// addInTxn adds a prepared entry unless a stronger one is in place, and
// returns the entry in force and whether e changed the list.
func (l *List) addInTxn(txn *badger.Txn, e Entry, now time.Time, changes *[]Change) (Entry, bool, error) {
	old, found, err := l.getEntry(txn, e.Scope, e.Address)
	if err != nil {
		return Entry{}, false, err
	}
	if found && !old.Expired(now) && !e.stronger(old) {
		return old, false, nil
	}
	var prev *Entry
	if found {
		prev = &old
	}
	if err := putEntry(txn, e, prev); err != nil {
		return Entry{}, false, err
	}
	if changes != nil {
		c := Change{Op: OpAdded, Entry: e}
		if found {
			c.Op, c.Prev = OpReplaced, prev
		}
		*changes = append(*changes, c)
	}
	return e, true, nil
}

// Add puts e on the list and returns the entry in force for its scope and
// address, and whether e changed the list. The address is normalised; an
// empty Source is manual; an empty Reason is the source's default; a zero
// Created is now; a zero Expires is chosen by the Config from the reason
// and source. When an entry is already in place, e replaces it only when the
// old one has expired, when e suppresses for longer, or when e suppresses as
// long from a stronger source (see the package doc); otherwise the old entry
// is returned unchanged, so adding twice is harmless.
func (l *List) Add(e Entry) (Entry, bool, error) { return l.add(e, false) }

// addNever adds e without expiry, whatever the config says for its reason
// and source (an operator's "never").
func (l *List) addNever(e Entry) (Entry, bool, error) { return l.add(e, true) }

func (l *List) add(e Entry, never bool) (Entry, bool, error) {
	now := l.clk.Now()
	e, err := l.cfg.prepare(e, now)
	if err != nil {
		return Entry{}, false, err
	}
	if never {
		e.Expires = time.Time{}
	}
	if e.Expired(now) {
		return Entry{}, false, fmt.Errorf("entry for %s expires at %s, which has passed", e.Address, e.Expires.UTC().Format(time.RFC3339))
	}
	var got Entry
	var changed bool
	err = l.submit(1, func(txn *badger.Txn, ch *[]Change) error {
		var err error
		got, changed, err = l.addInTxn(txn, e, now, ch)
		return err
	})
	return got, changed, err
}

// Remove deletes the entry for addr in scope ("" is the global scope) and
// returns it, with false when there was none.
func (l *List) Remove(scope, addr string) (Entry, bool, error) {
	a, err := Normalize(addr)
	if err != nil {
		return Entry{}, false, err
	}
	var got Entry
	var found bool
	err = l.submit(1, func(txn *badger.Txn, ch *[]Change) error {
		var err error
		got, found, err = l.getEntry(txn, scope, a)
		if err != nil || !found {
			return err
		}
		*ch = append(*ch, Change{Op: OpRemoved, Entry: got})
		return deleteEntry(txn, got)
	})
	return got, found, err
}

// RemoveEverywhere deletes addr from every scope and returns the entries
// removed.
func (l *List) RemoveEverywhere(addr string) ([]Entry, error) {
	a, err := Normalize(addr)
	if err != nil {
		return nil, err
	}
	scopes, err := l.Scopes()
	if err != nil {
		return nil, err
	}
	var removed []Entry
	err = l.submit(len(scopes), func(txn *badger.Txn, ch *[]Change) error {
		removed = removed[:0]
		for _, s := range scopes {
			e, found, err := l.getEntry(txn, s, a)
			if err != nil {
				return err
			}
			if !found {
				continue
			}
			if err := deleteEntry(txn, e); err != nil {
				return err
			}
			removed = append(removed, e)
			*ch = append(*ch, Change{Op: OpRemoved, Entry: e})
		}
		return nil
	})
	return removed, err
}

// Check reports whether addr may not be mailed for account: the entry in the
// account's scope, else the one in the global scope, that has not expired at
// now. With match_base_address, an entry for the address without its +tag
// counts too. An address that cannot be normalised is on no list. account
// "" checks the global scope alone.
//
// It is called for every recipient at RCPT time and before every attempt:
// two badger Gets when the address is absent (four with a +tag and
// match_base_address), about a microsecond each.
func (l *List) Check(account, addr string, now time.Time) (Entry, bool, error) {
	a, err := Normalize(addr)
	if err != nil {
		return Entry{}, false, nil
	}
	cands := [2]string{a}
	n := 1
	if l.cfg.MatchBaseAddress {
		if b, ok := baseAddress(a); ok {
			cands[1], n = b, 2
		}
	}
	var got Entry
	var found bool
	err = l.db.View(func(txn *badger.Txn) error {
		scopes := [2]string{account, ""}
		ns := 2
		if account == "" {
			ns = 1
		}
		for _, scope := range scopes[:ns] {
			for _, c := range cands[:n] {
				e, ok, err := l.getEntry(txn, scope, c)
				if err != nil {
					return err
				}
				if ok && !e.Expired(now) {
					got, found = e, true
					return nil
				}
			}
		}
		return nil
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("suppress: check %s: %w", a, err)
	}
	return got, found, nil
}

// Get returns the entry for addr in scope exactly as stored, expired or not.
func (l *List) Get(scope, addr string) (Entry, bool, error) {
	a, err := Normalize(addr)
	if err != nil {
		return Entry{}, false, err
	}
	var e Entry
	var found bool
	err = l.db.View(func(txn *badger.Txn) error {
		e, found, err = l.getEntry(txn, scope, a)
		return err
	})
	return e, found, err
}

// Scopes returns the scopes that hold entries, global ("") first.
func (l *List) Scopes() ([]string, error) {
	var out []string
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry})
		defer it.Close()
		seek := append([]byte(nil), prefixEntry...)
		for it.Seek(seek); it.ValidForPrefix(prefixEntry); it.Seek(seek) {
			scope, _, ok := splitItemKey(it.Item().Key()[len(prefixEntry):])
			if !ok {
				// Not a key of ours: step past it.
				seek = append(it.Item().KeyCopy(nil), 0)
				continue
			}
			out = append(out, scope)
			seek = append(append(append(seek[:0], prefixEntry...), scope...), 1)
		}
		return nil
	})
	return out, err
}

// Filter selects entries for List and Export. Fields left empty select
// everything.
type Filter struct {
	// Scope selects one account's entries; Global selects the global
	// scope's. With neither, every scope.
	Scope  string
	Global bool
	Reason string
	Source Source
	// Prefix selects addresses that start with it; Search those that
	// contain it (both are compared with the normalised address, so give
	// them in lower case; "@example.com" finds a domain).
	Prefix string
	Search string
	// Since selects entries created at or after it.
	Since time.Time
}

func (f Filter) scoped() (string, bool) {
	if f.Global {
		return "", true
	}
	return f.Scope, f.Scope != ""
}

// MaxPage is the largest page List returns.
const MaxPage = 10000

// List returns up to limit entries that match f and have not expired at now,
// in the order of scope then address, starting after cursor ("" for the
// first page), and the cursor of the next page ("" when there is no more).
func (l *List) List(f Filter, cursor string, limit int, now time.Time) ([]Entry, string, error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	var start []byte
	if cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || bytes.IndexByte(c, 0) < 0 {
			return nil, "", ErrCursor
		}
		start = append(append(append([]byte(nil), prefixEntry...), c...), 0) // just after it
	}
	prefix := prefixEntry
	if scope, ok := f.scoped(); ok {
		prefix = itemKey(prefixEntry, scope, "")
	}
	seek := prefix
	if f.Prefix != "" {
		if _, ok := f.scoped(); ok {
			seek = append(append([]byte(nil), prefix...), f.Prefix...)
		}
	}
	if start != nil && bytes.Compare(start, seek) > 0 {
		seek = start
	}
	var out []Entry
	next := ""
	err := l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			key := it.Item().Key()
			scope, addr, ok := splitItemKey(key[len(prefixEntry):])
			if !ok {
				continue
			}
			if f.Prefix != "" && !strings.HasPrefix(addr, f.Prefix) {
				if _, scoped := f.scoped(); scoped && addr > f.Prefix {
					break // past the prefix's range in this scope
				}
				continue
			}
			if f.Search != "" && !strings.Contains(addr, f.Search) {
				continue
			}
			var e Entry
			err := it.Item().Value(func(v []byte) error {
				var err error
				e, err = decodeEntry(scope, addr, v)
				return err
			})
			if err != nil {
				if errors.Is(err, errRecord) {
					continue
				}
				return err
			}
			if e.Expired(now) || (f.Reason != "" && e.Reason != f.Reason) ||
				(f.Source != "" && e.Source != f.Source) || (!f.Since.IsZero() && e.Created.Before(f.Since)) {
				continue
			}
			if len(out) == limit {
				last := out[len(out)-1]
				next = base64.RawURLEncoding.EncodeToString([]byte(last.Scope + "\x00" + last.Address))
				return nil
			}
			out = append(out, e)
		}
		return nil
	})
	return out, next, err
}
