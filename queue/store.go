package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"kiln/internal/clock"
)

// Options configure a Store.
type Options struct {
	// Dir holds the spool (Dir/spool). The badger database is passed in
	// separately because other stores share it.
	Dir   string
	Clock clock.Clock
	Log   *slog.Logger
	// MinFreeDisk: Enqueue fails with ErrDiskFull below this many free bytes
	// on Dir's filesystem. Zero turns the guard off.
	MinFreeDisk int64
	// SegmentSize of spool files (default 64 MiB).
	SegmentSize int64
	// MaxAge of a message, used when Enqueue is given no Expires.
	MaxAge time.Duration
}

// Errors returned to callers that must answer a client.
var (
	ErrDiskFull = errors.New("queue: not enough free disk space")
	ErrClosed   = errors.New("queue: closed")
	ErrNotFound = errors.New("queue: no such message")
)

// Store is the durable queue. Its methods are safe for concurrent use.
type Store struct {
	db   *badger.DB
	sp   *spool
	clk  clock.Clock
	log  *slog.Logger
	ids  *idGen
	opts Options
	disk *diskGuard

	reqs    chan *writeReq
	stop    chan struct{}
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool

	commits   atomic.Int64 // batches committed (each one synced)
	committed atomic.Int64 // requests committed
	enqueued  atomic.Int64
	// commitHook, when set (tests only), runs after a batch is durable and
	// before any of its writers is told so.
	commitHook func(n int)

	holds     holdSet
	recovered RecoveryReport
	counts    counts
}

// OpenDB opens the badger database kiln keeps its stores in, tuned for a
// queue: every commit synced (SyncWrites; kiln batches commits itself), small
// memtables, no compression and no block cache, conflict detection off
// because every record has a single writer.
func OpenDB(dir string, log *slog.Logger) (*badger.DB, error) {
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		WithValueLogFileSize(64 << 20).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithNumCompactors(2).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	return db, nil
}

// Open opens the queue on db and recovers it: checks every record, counts
// what the spool holds, makes leased messages due again and removes spool
// segments nothing refers to.
func Open(db *badger.DB, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 5 * 24 * time.Hour
	}
	sp, err := openSpool(filepath.Join(opts.Dir, "spool"), opts.SegmentSize)
	if err != nil {
		return nil, err
	}
	s := &Store{
		db: db, sp: sp, clk: opts.Clock, log: opts.Log, ids: newIDGen(), opts: opts,
		disk: newDiskGuard(opts.Dir, opts.MinFreeDisk),
		reqs: make(chan *writeReq, 1024),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.committer()
	if err := s.holds.load(db); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.recover(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// DB returns the badger database (shared with other stores).
func (s *Store) DB() *badger.DB { return s.db }

// Close stops the committer after it has written everything already asked
// of it. It does not close the database.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.closeMu.Unlock()
	<-s.done
	return s.sp.close()
}

// Enqueue stores a new message and its body and returns once both are on
// disk (fdatasync and a synced commit). It fills in m.ID, Created, Due and
// Expires when they are zero. The message is due at once.
func (s *Store) Enqueue(ctx context.Context, m *Message, body []byte) error {
	if err := s.disk.check(s.clk.Now(), int64(len(body))); err != nil {
		return err
	}
	now := s.clk.Now()
	if m.ID == "" {
		m.ID = s.ids.next(now)
	}
	if m.Created.IsZero() {
		m.Created = now
	}
	if m.Due.IsZero() {
		m.Due = now
	}
	if m.Expires.IsZero() {
		m.Expires = m.Created.Add(s.opts.MaxAge)
	}
	for i := range m.Rcpts {
		if m.Rcpts[i].State == "" {
			m.Rcpts[i].State = RcptPending
		}
	}
	req := &writeReq{done: make(chan error, 1)}
	req.bodies = []pendingBody{{id: m.ID, body: body, ref: &m.Body}}
	req.apply = func(txn *badger.Txn) error { return s.putMessage(txn, m) }
	if err := s.submit(ctx, req); err != nil {
		return err
	}
	s.enqueued.Add(1)
	return nil
}

// NewID returns a fresh message id (for callers that need it before Enqueue).
func (s *Store) NewID() string { return s.ids.next(s.clk.Now()) }

// Save writes the message's current state: its record, and its place in the
// schedule index (Due), lease and hold. It returns once the write is durable.
func (s *Store) Save(m *Message) error {
	return s.SaveMany([]*Message{m})
}

// SaveMany saves several messages in one commit.
func (s *Store) SaveMany(ms []*Message) error {
	if len(ms) == 0 {
		return nil
	}
	req := &writeReq{done: make(chan error, 1)}
	req.apply = func(txn *badger.Txn) error {
		for _, m := range ms {
			if err := s.putMessage(txn, m); err != nil {
				return err
			}
		}
		return nil
	}
	return s.submit(context.Background(), req)
}

// Delete removes a finished (or dropped) message, its index keys and, once
// nothing else refers to its spool segment, its body.
func (s *Store) Delete(m *Message) error {
	req := &writeReq{done: make(chan error, 1)}
	var ref BodyRef
	req.apply = func(txn *badger.Txn) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.deleted {
			return nil
		}
		ref = m.Body
		if err := s.deleteKeys(txn, m); err != nil {
			return err
		}
		m.deleted = true
		s.counts.account(m, true)
		return nil
	}
	req.after = func() {
		if ref.Seg != 0 {
			s.sp.unref(ref)
		}
	}
	return s.submit(context.Background(), req)
}

func (s *Store) deleteKeys(txn *badger.Txn, m *Message) error {
	keys := [][]byte{msgKey(m.ID)}
	if m.idxSched {
		keys = append(keys, schedKey(m.idxDue, m.ID))
	}
	if m.idxHeld {
		keys = append(keys, heldKey(m.ID))
	}
	for _, l := range m.idxLanes {
		keys = append(keys, laneKey(l, m))
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// putMessage writes m's record and moves its index keys to match its state:
// a schedule key at Due while it is scheduled (not held, not leased, with a
// recipient that is not waiting in a lane), a held key while held, and a key
// in each lane its recipients wait in. It runs on
// the committer goroutine.
func (s *Store) putMessage(txn *badger.Txn, m *Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.deleted {
		return nil
	}
	rec, err := encodeRecord(m)
	if err != nil {
		return err
	}
	if err := txn.Set(msgKey(m.ID), rec); err != nil {
		return err
	}
	// Remove keys the index held, then add the ones the state needs; within
	// one transaction the last write to a key wins.
	sched := m.scheduled()
	var del, set [][]byte
	if m.idxSched && (!sched || !m.idxDue.Equal(m.Due)) {
		del = append(del, schedKey(m.idxDue, m.ID))
	}
	if sched && (!m.idxSched || !m.idxDue.Equal(m.Due)) {
		set = append(set, schedKey(m.Due, m.ID))
	}
	if m.idxHeld != m.Held {
		if m.Held {
			set = append(set, heldKey(m.ID))
		} else {
			del = append(del, heldKey(m.ID))
		}
	}
	lanes := m.lanes()
	for _, l := range m.idxLanes {
		if !slices.Contains(lanes, l) {
			del = append(del, laneKey(l, m))
		}
	}
	for _, l := range lanes {
		if !slices.Contains(m.idxLanes, l) {
			set = append(set, laneKey(l, m))
		}
	}
	for _, k := range del {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	for _, k := range set {
		if err := txn.Set(k, nil); err != nil {
			return err
		}
	}
	m.idxSched, m.idxDue, m.idxHeld, m.idxLanes = sched, m.Due, m.Held, lanes
	s.counts.account(m, false)
	return nil
}

// ReadBody reads the message's body into buf (grown as needed) and checks it.
func (s *Store) ReadBody(m *Message, buf []byte) ([]byte, error) {
	m.mu.Lock()
	ref := m.Body
	m.mu.Unlock()
	return s.sp.readBody(ref, buf)
}

// Get loads a message by id.
func (s *Store) Get(id string) (*Message, error) {
	var m *Message
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(msgKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			var derr error
			m, derr = decodeRecord(v)
			return derr
		})
	})
	if errors.Is(err, ErrCorrupt) {
		s.quarantine(id, err)
	}
	return m, err
}

// Stats describe the queue.
type Stats struct {
	Enqueued  int64      `json:"enqueued"`
	Commits   int64      `json:"commits"`   // synced batches
	Committed int64      `json:"committed"` // write requests in them
	Spool     SpoolStats `json:"spool"`
}

// Stats returns counters since Open.
func (s *Store) Stats() Stats {
	return Stats{
		Enqueued:  s.enqueued.Load(),
		Commits:   s.commits.Load(),
		Committed: s.committed.Load(),
		Spool:     s.sp.stats(),
	}
}

// badgerLogger routes badger's own log lines into slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) logger() *slog.Logger {
	if b.l == nil {
		return slog.Default()
	}
	return b.l
}
func (b badgerLogger) Errorf(f string, a ...any) {
	b.logger().Error(trimNL(fmt.Sprintf(f, a...)), "component", "store")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.logger().Warn(trimNL(fmt.Sprintf(f, a...)), "component", "store")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.logger().Debug(trimNL(fmt.Sprintf(f, a...)), "component", "store")
}
func (b badgerLogger) Debugf(string, ...any) {}

func trimNL(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// QuarantineMessage sets a message aside whose body cannot be read, with the
// reason, removes it from the schedule and frees its spool space.
func (s *Store) QuarantineMessage(m *Message, reason error) error {
	m.mu.Lock()
	ref, deleted := m.Body, m.deleted
	if !deleted {
		s.counts.account(m, true)
	}
	var stale [][]byte
	if m.idxSched {
		stale = append(stale, schedKey(m.idxDue, m.ID))
	}
	for _, l := range m.idxLanes {
		stale = append(stale, laneKey(l, m))
	}
	m.deleted = true
	m.mu.Unlock()
	if deleted {
		return nil
	}
	if err := s.quarantineWait(m.ID, reason); err != nil {
		return err
	}
	if len(stale) > 0 {
		s.deleteKeysAsync(stale)
	}
	if ref.Seg != 0 {
		s.sp.unref(ref)
	}
	return nil
}
