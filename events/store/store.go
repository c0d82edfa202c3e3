// Package store keeps kiln's event log in badger so the HTTP API can answer
// "what happened to this message" and "which events match these filters"
// without a log file to grep.
//
// # Layout
//
// The store shares kiln's one badger database and owns the "ev/" key prefix:
//
//	ev/e/<ts><seq>                   the event: 1 version byte, then JSON
//	ev/i/<kind><value>\x00<ts><seq>  index entry; its value is the event's type
//	ev/seq                           badger sequence for <seq>
//
// <ts> is the event time in unix nanoseconds and <seq> a number unique to the
// database, both 8 big-endian bytes, so every key of one event ends in the same
// 16 bytes and byte order is time order. Index kinds: 'q' kiln's queue id, 'm'
// the Message-ID header, 'a' account, 'r' recipient (lower case), 't' type.
// A value longer than 128 bytes, or holding a NUL, is indexed by its SHA-256;
// every match is checked against the event itself, so that costs nothing in
// correctness. Keeping the type in each index entry lets "account X, type
// bounced" skip non-matching entries without reading the events.
//
// Queries walk one index newest first: the queue id's if given, else the
// Message-ID's, the recipient's, the account's, the single type's, and the
// time-ordered events themselves as a last resort. A time range narrows the
// walk on every index, because every key ends in the time. The cursor of a page
// is the 16-byte suffix of the last key examined, so it continues on any index.
//
// # Writing
//
// Handle, the events.Sink, only copies the event into a buffer; a goroutine
// writes the buffer every FlushEvery (or sooner once BatchSize events wait) in
// one transaction, so thousands of events a second cost a handful of synced
// commits. The event log is best-effort, unlike the queue: events still in the
// buffer are lost if the process dies, and when the disk cannot keep up and
// MaxPending events wait, new ones are dropped, counted (Stats) and logged,
// rather than letting memory grow or slowing delivery. The JSON event log
// (events.Log) remains the complete record for those who need one.
//
// # Retention
//
// A sweep removes events older than Retention (default 30 days) with their
// index entries, at start and then every SweepEvery by the injected clock.
// badger's TTL is not used: it reads the wall clock, and retention would not
// follow a change of configuration.
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/internal/clock"
)

// Options tune a Store. Zero values take the defaults.
type Options struct {
	Clock clock.Clock  // default clock.Real
	Log   *slog.Logger // default slog.Default()
	// Retention is how long events are kept (default 30 days).
	Retention time.Duration
	// SweepEvery is how often expired events are removed (default 1 hour).
	SweepEvery time.Duration
	// FlushEvery is the longest an event waits in memory (default 150ms).
	// It paces disk writes, not decisions, so it runs on the wall clock.
	FlushEvery time.Duration
	// BatchSize events waiting trigger a write before FlushEvery (default 1000).
	BatchSize int
	// MaxPending bounds the buffer (default 100,000 events, some 50 MB);
	// events arriving while it is full are dropped and counted.
	MaxPending int
}

const (
	DefaultRetention  = 30 * 24 * time.Hour
	DefaultSweepEvery = time.Hour
	DefaultFlushEvery = 150 * time.Millisecond
	DefaultBatchSize  = 1000
	DefaultMaxPending = 100_000

	// DefaultLimit and MaxLimit bound a query's page.
	DefaultLimit = 100
	MaxLimit     = 1000
	// maxByMessage bounds ByMessage; Query{ID: id} pages through the rest.
	maxByMessage = 10_000
)

// maxScan bounds the index entries one Query examines, so a filter that
// matches rarely answers quickly with a partial page and a cursor. A variable
// only so the package's tests can lower it.
var maxScan = 50_000

var (
	prefixEvent = []byte("ev/e/")
	prefixIndex = []byte("ev/i/")
	keySeq      = []byte("ev/seq")
)

const (
	kindID        = 'q'
	kindMessageID = 'm'
	kindAccount   = 'a'
	kindRecipient = 'r'
	kindType      = 't'

	recordVersion = 1
	suffixLen     = 16
	maxIndexValue = 128
)

// Store is the event store. It is safe for concurrent use.
type Store struct {
	db   *badger.DB
	opts Options
	clk  clock.Clock
	log  *slog.Logger
	seq  *badger.Sequence

	mu      sync.Mutex
	pending []events.Event
	spare   []events.Event
	closed  bool

	sweepMu sync.Mutex // one sweep at a time
	sweptTo []byte     // where the last sweep stopped; under sweepMu

	kick    chan struct{}
	flushRq chan chan struct{}
	stop    chan struct{}
	done    sync.WaitGroup

	written, dropped, failed, swept, corrupt atomic.Uint64
	lastDropLog                              uint64
	lastDropAt                               time.Time
}

// Stats counts what the store has done since it was opened.
type Stats struct {
	Written uint64 // events committed
	Dropped uint64 // events refused because the buffer was full or the store closed
	Failed  uint64 // events lost to a failed write
	Swept   uint64 // events removed by retention
	Corrupt uint64 // unreadable records skipped by queries
	Pending int    // events waiting in memory
}

// New opens the store on db and starts its writer and its retention sweep.
// Close it before closing db.
func New(db *badger.DB, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.SweepEvery <= 0 {
		opts.SweepEvery = DefaultSweepEvery
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	seq, err := db.GetSequence(keySeq, 4096)
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	s := &Store{
		db: db, opts: opts, clk: opts.Clock, log: opts.Log.With("component", "eventstore"), seq: seq,
		kick: make(chan struct{}, 1), flushRq: make(chan chan struct{}), stop: make(chan struct{}),
	}
	s.done.Add(2)
	go s.writer()
	go s.sweeper()
	return s, nil
}

// Handle buffers e for the writer. It never blocks on the disk.
func (s *Store) Handle(e events.Event) {
	e = cloneEvent(e)
	s.mu.Lock()
	if s.closed || len(s.pending) >= s.opts.MaxPending {
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.pending = append(s.pending, e)
	n := len(s.pending)
	s.mu.Unlock()
	if n >= s.opts.BatchSize {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// cloneEvent copies what e shares with its producer, so the writer never
// reads memory the producer may still change.
func cloneEvent(e events.Event) events.Event {
	if e.Tags != nil {
		e.Tags = slices.Clone(e.Tags)
	}
	if e.Metadata != nil {
		e.Metadata = maps.Clone(e.Metadata)
	}
	if e.Next != nil {
		n := *e.Next
		e.Next = &n
	}
	return e
}

// Flush writes every buffered event before returning.
func (s *Store) Flush() {
	ch := make(chan struct{})
	select {
	case s.flushRq <- ch:
		<-ch
	case <-s.stop:
	}
}

// Close writes what is buffered, stops the sweep and releases the sequence.
// Events handled after Close are dropped.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	s.done.Wait()
	return s.seq.Release()
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	n := len(s.pending)
	s.mu.Unlock()
	return Stats{Written: s.written.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load(),
		Swept: s.swept.Load(), Corrupt: s.corrupt.Load(), Pending: n}
}

func (s *Store) writer() {
	defer s.done.Done()
	t := time.NewTicker(s.opts.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.kick:
		case ch := <-s.flushRq:
			s.flush()
			close(ch)
			continue
		case <-s.stop:
			s.flush()
			return
		}
		s.flush()
	}
}

func (s *Store) recoverPanic(what string) {
	if r := recover(); r != nil {
		s.log.Error("event store panicked", "in", what, "panic", r, "stack", string(debug.Stack()))
	}
}

// flush writes the buffer in one transaction (more if badger says it is too
// big), swapping buffers so Handle never waits for the disk.
func (s *Store) flush() {
	defer s.recoverPanic("writer")
	s.mu.Lock()
	batch := s.pending
	s.pending = s.spare[:0]
	s.mu.Unlock()
	if len(batch) > 0 {
		if err := s.write(batch); err != nil {
			s.failed.Add(uint64(len(batch)))
			s.log.Error("event store write failed; events lost", "events", len(batch), "err", err)
		} else {
			s.written.Add(uint64(len(batch)))
		}
	}
	clear(batch) // drop references to tags and metadata
	s.mu.Lock()
	s.spare = batch[:0]
	s.mu.Unlock()
	s.logDrops()
}

// logDrops reports dropped events at most once every ten seconds.
func (s *Store) logDrops() {
	d := s.dropped.Load()
	if d == s.lastDropLog || time.Since(s.lastDropAt) < 10*time.Second {
		return
	}
	s.log.Warn("event store buffer full or closed; events dropped", "dropped", d-s.lastDropLog, "dropped_total", d)
	s.lastDropLog, s.lastDropAt = d, time.Now()
}

func (s *Store) write(batch []events.Event) error {
	w := newTxnWriter(s.db)
	defer w.discard()
	var key []byte
	for i := range batch {
		e := &batch[i]
		if e.Time.IsZero() {
			e.Time = s.clk.Now()
		}
		n, err := s.seq.Next()
		if err != nil {
			return err
		}
		suffix := makeSuffix(e.Time, n)
		js, err := json.Marshal(e)
		if err != nil {
			return err
		}
		// badger keeps the slices until the commit: no reuse.
		val := append(append(make([]byte, 0, 1+len(js)), recordVersion), js...)
		if err := w.set(append(slices.Clip(prefixEvent), suffix[:]...), val); err != nil {
			return err
		}
		typ := []byte(e.Type)
		for _, ix := range indexesOf(e) {
			key = indexKey(key[:0], ix.kind, ix.value, suffix[:])
			if err := w.set(bytes.Clone(key), typ); err != nil {
				return err
			}
		}
	}
	return w.commit()
}

type indexEntry struct {
	kind  byte
	value string
}

// indexesOf lists the index entries of e.
func indexesOf(e *events.Event) []indexEntry {
	ix := make([]indexEntry, 0, 5)
	add := func(kind byte, v string) {
		if v != "" {
			ix = append(ix, indexEntry{kind, v})
		}
	}
	add(kindID, e.ID)
	add(kindMessageID, e.MessageID)
	add(kindAccount, e.Account)
	add(kindRecipient, strings.ToLower(e.Recipient))
	add(kindType, e.Type)
	return ix
}

func makeSuffix(t time.Time, seq uint64) (b [suffixLen]byte) {
	ns := t.UnixNano()
	if ns < 0 {
		ns = 0
	}
	binary.BigEndian.PutUint64(b[:8], uint64(ns))
	binary.BigEndian.PutUint64(b[8:], seq)
	return b
}

func suffixTime(suffix []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(suffix[:8])))
}

// indexPrefix appends the prefix of one index value's entries to dst.
func indexPrefix(dst []byte, kind byte, value string) []byte {
	dst = append(dst, prefixIndex...)
	dst = append(dst, kind)
	if len(value) > maxIndexValue || strings.IndexByte(value, 0) >= 0 {
		sum := sha256.Sum256([]byte(value))
		dst = append(dst, 0xff) // never the first byte of a UTF-8 string
		dst = append(dst, sum[:]...)
	} else {
		dst = append(dst, value...)
	}
	return append(dst, 0)
}

func indexKey(dst []byte, kind byte, value string, suffix []byte) []byte {
	return append(indexPrefix(dst, kind, value), suffix...)
}

// txnWriter writes into one transaction and, when badger says it has grown
// too big, commits it and carries on in a new one. The event log does not
// need the batch to be atomic, only cheap.
type txnWriter struct {
	db  *badger.DB
	txn *badger.Txn
}

func newTxnWriter(db *badger.DB) *txnWriter {
	return &txnWriter{db: db, txn: db.NewTransaction(true)}
}

func (w *txnWriter) set(k, v []byte) error {
	return w.do(func(t *badger.Txn) error { return t.Set(k, v) })
}

func (w *txnWriter) delete(k []byte) error {
	return w.do(func(t *badger.Txn) error { return t.Delete(k) })
}

func (w *txnWriter) do(op func(*badger.Txn) error) error {
	err := op(w.txn)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err := w.txn.Commit(); err != nil {
			return err
		}
		w.txn = w.db.NewTransaction(true)
		err = op(w.txn)
	}
	return err
}

func (w *txnWriter) commit() error { return w.txn.Commit() }
func (w *txnWriter) discard()      { w.txn.Discard() }

// Query selects events. Empty fields do not filter.
type Query struct {
	// Account restricts to one account. The HTTP API must set it from the
	// caller's key for anyone but the admin.
	Account string
	// Types keeps events of any of these types (events.Delivered, ...).
	Types []string
	// Recipient is compared without regard to case.
	Recipient string
	// ID is kiln's queue id; MessageID the Message-ID header.
	ID        string
	MessageID string
	// Since and Until bound the event time: Since <= time < Until.
	Since, Until time.Time
	// Cursor continues from a previous page's next.
	Cursor string
	// Limit is the page size (default 100, at most 1000).
	Limit int
}

// ErrBadCursor is returned for a cursor this store did not make.
var ErrBadCursor = errors.New("invalid cursor")

// Query returns matching events, newest first, and the cursor of the next
// page, "" when there is none. A page may hold fewer than Limit events while
// next is not empty: a query that examines many entries without enough
// matches stops early so it stays fast; ask again with the cursor.
func (s *Store) Query(ctx context.Context, q Query) ([]events.Event, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	var cursor []byte
	if q.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(c) != suffixLen {
			return nil, "", ErrBadCursor
		}
		cursor = c
	}
	types := map[string]bool{}
	for _, t := range q.Types {
		types[t] = true
	}
	var prefix []byte
	switch {
	case q.ID != "":
		prefix = indexPrefix(nil, kindID, q.ID)
	case q.MessageID != "":
		prefix = indexPrefix(nil, kindMessageID, q.MessageID)
	case q.Recipient != "":
		prefix = indexPrefix(nil, kindRecipient, strings.ToLower(q.Recipient))
	case q.Account != "":
		prefix = indexPrefix(nil, kindAccount, q.Account)
	case len(q.Types) == 1:
		prefix = indexPrefix(nil, kindType, q.Types[0])
	default:
		prefix = slices.Clip(prefixEvent)
	}
	primary := bytes.Equal(prefix, prefixEvent)

	// Newest first: seek to the end of the range and walk back.
	seek := append(slices.Clip(prefix), bytes.Repeat([]byte{0xff}, suffixLen)...)
	if !q.Until.IsZero() {
		ns := max(q.Until.UnixNano(), 0)
		until := binary.BigEndian.AppendUint64(slices.Clip(prefix), uint64(ns)) // excludes ts == Until
		if bytes.Compare(until, seek) < 0 {
			seek = until
		}
	}
	if cursor != nil {
		c := append(slices.Clip(prefix), cursor...)
		if bytes.Compare(c, seek) < 0 {
			seek = c
		}
	}

	var out []events.Event
	var next string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: primary, PrefetchSize: 64})
		defer it.Close()
		scanned := 0
		var last []byte
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(prefix)+suffixLen {
				continue // a longer value sharing this prefix
			}
			suffix := k[len(prefix):]
			if cursor != nil && bytes.Equal(suffix, cursor) {
				continue
			}
			if !q.Since.IsZero() && suffixTime(suffix).Before(q.Since) {
				break
			}
			if scanned%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if scanned == maxScan {
				next = base64.RawURLEncoding.EncodeToString(last)
				break
			}
			scanned++
			last = append(last[:0], suffix...)
			var e events.Event
			var ok bool
			if primary {
				e, ok = s.decode(item)
			} else {
				if len(types) > 0 {
					skip := false
					if err := item.Value(func(v []byte) error { skip = !types[string(v)]; return nil }); err != nil {
						return err
					}
					if skip {
						continue
					}
				}
				e, ok = s.get(txn, suffix)
			}
			if !ok || !q.matches(&e, types) {
				continue
			}
			out = append(out, e)
			if len(out) == limit {
				next = base64.RawURLEncoding.EncodeToString(last)
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

func (q *Query) matches(e *events.Event, types map[string]bool) bool {
	return (q.Account == "" || e.Account == q.Account) &&
		(len(types) == 0 || types[e.Type]) &&
		(q.Recipient == "" || strings.EqualFold(e.Recipient, q.Recipient)) &&
		(q.ID == "" || e.ID == q.ID) &&
		(q.MessageID == "" || e.MessageID == q.MessageID) &&
		(q.Since.IsZero() || !e.Time.Before(q.Since)) &&
		(q.Until.IsZero() || e.Time.Before(q.Until))
}

// get reads the event whose keys end in suffix; false if it is gone (swept
// since its index entry was read) or unreadable.
func (s *Store) get(txn *badger.Txn, suffix []byte) (events.Event, bool) {
	item, err := txn.Get(append(slices.Clip(prefixEvent), suffix...))
	if err != nil {
		return events.Event{}, false
	}
	return s.decode(item)
}

func (s *Store) decode(item *badger.Item) (events.Event, bool) {
	var e events.Event
	err := item.Value(func(v []byte) error {
		if len(v) == 0 || v[0] != recordVersion {
			return fmt.Errorf("unknown record version")
		}
		return json.Unmarshal(v[1:], &e)
	})
	if err != nil {
		s.corrupt.Add(1)
		s.log.Warn("unreadable event record skipped", "key", fmt.Sprintf("%x", item.Key()), "err", err)
		return e, false
	}
	return e, true
}

// ByMessage returns the events of kiln's queue id, oldest first: the
// message's history, from which its state per recipient reads off the last
// event of each. It returns at most 10,000; page with Query{ID: id} beyond.
func (s *Store) ByMessage(ctx context.Context, id string) ([]events.Event, error) {
	if id == "" {
		return nil, nil
	}
	prefix := indexPrefix(nil, kindID, id)
	var out []events.Event
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix) && len(out) < maxByMessage; it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefix)+suffixLen {
				continue
			}
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if e, ok := s.get(txn, k[len(prefix):]); ok && e.ID == id {
				out = append(out, e)
			}
		}
		return nil
	})
	return out, err
}

func (s *Store) sweeper() {
	defer s.done.Done()
	for {
		func() {
			defer s.recoverPanic("sweeper")
			if _, err := s.Sweep(context.Background()); err != nil {
				s.log.Error("event retention sweep failed", "err", err)
			}
		}()
		select {
		case <-s.clk.After(s.opts.SweepEvery):
		case <-s.stop:
			return
		}
	}
}

// sweepBatch is how many events one sweep transaction removes.
const sweepBatch = 2000

// Sweep removes the events older than the retention period, with their index
// entries, and returns how many it removed. It runs by itself every
// SweepEvery; calling it directly is safe.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	cutoff := s.clk.Now().Add(-s.opts.Retention)
	end := makeSuffix(cutoff, 0)
	total := 0
	// Start where the last sweep stopped: the keys before it are deleted,
	// and badger would still step over their tombstones until compaction.
	// Events are stamped when they happen, so none arrives behind it.
	start := append(slices.Clip(prefixEvent), s.sweptTo...)
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var keys [][]byte
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEvent, PrefetchValues: true, PrefetchSize: 256})
			defer it.Close()
			for it.Seek(start); it.ValidForPrefix(prefixEvent) && len(keys) < sweepBatch*6; it.Next() {
				item := it.Item()
				k := item.Key()
				if len(k) != len(prefixEvent)+suffixLen {
					continue
				}
				suffix := k[len(prefixEvent):]
				if bytes.Compare(suffix, end[:]) >= 0 {
					break
				}
				keys = append(keys, item.KeyCopy(nil))
				var e events.Event
				err := item.Value(func(v []byte) error {
					if len(v) == 0 || v[0] != recordVersion {
						return fmt.Errorf("unknown record version")
					}
					return json.Unmarshal(v[1:], &e)
				})
				if err != nil {
					// Its index entries cannot be named; queries skip
					// entries whose event is gone, and they are left to
					// occupy a few bytes.
					s.log.Warn("unreadable event record removed by retention", "key", fmt.Sprintf("%x", k), "err", err)
					continue
				}
				for _, ix := range indexesOf(&e) {
					keys = append(keys, indexKey(nil, ix.kind, ix.value, suffix))
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		if len(keys) == 0 {
			if bytes.Compare(s.sweptTo, end[:]) < 0 {
				s.sweptTo = end[:]
			}
			return total, nil
		}
		w := newTxnWriter(s.db)
		n := 0
		for _, k := range keys {
			if bytes.HasPrefix(k, prefixEvent) {
				n++
			}
			if err := w.delete(k); err != nil {
				w.discard()
				return total, err
			}
		}
		if err := w.commit(); err != nil {
			return total, err
		}
		total += n
		s.swept.Add(uint64(n))
	}
}
