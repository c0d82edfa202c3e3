package suppress

import (
	"context"
	"io"
	"kiln/policy"
	"log/slog"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"kiln/internal/clock"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// openDB opens a store with the options kiln's shared store uses that
// matter here: every commit synced, no conflict detection.
func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	opts := badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).
		WithMemTableSize(16 << 20).WithNumMemtables(3).WithNumLevelZeroTables(4).WithNumLevelZeroTablesStall(12).
		WithValueLogFileSize(64 << 20).WithCompression(options.None).WithBlockCacheSize(0).
		WithNumCompactors(2).WithDetectConflicts(false).WithMetricsEnabled(false)
	if dir == "" {
		opts = opts.WithInMemory(true)
	}
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

type world struct {
	db  *badger.DB
	clk *clock.Fake
	l   *List
	dir string
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newWorld opens a list on a fresh store in a temporary directory.
func newWorld(t testing.TB, cfg Config) *world {
	t.Helper()
	w := &world{clk: clock.NewFake(t0), dir: t.TempDir()}
	w.db = openDB(t, w.dir)
	l, err := Open(w.db, w.clk, cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	w.l = l
	t.Cleanup(func() {
		w.l.Close()
		w.db.Close()
	})
	return w
}

// reopen closes the list and the store and opens both again.
func (w *world) reopen(t testing.TB, cfg Config) {
	t.Helper()
	w.l.Close()
	if err := w.db.Close(); err != nil {
		t.Fatal(err)
	}
	w.db = openDB(t, w.dir)
	l, err := Open(w.db, w.clk, cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	w.l = l
}

func mustAdd(t testing.TB, l *List, e Entry) Entry {
	t.Helper()
	got, _, err := l.Add(e)
	if err != nil {
		t.Fatalf("Add(%+v): %v", e, err)
	}
	return got
}

func checked(t testing.TB, l *List, account, addr string, now time.Time) (Entry, bool) {
	t.Helper()
	e, ok, err := l.Check(account, addr, now)
	if err != nil {
		t.Fatal(err)
	}
	return e, ok
}

// consistent checks that every entry with an expiry has its index key and
// every index key of an entry points at an entry with that expiry.
func consistent(t testing.TB, db *badger.DB) {
	t.Helper()
	entries := map[string]time.Time{}
	index := map[string]time.Time{}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixEntry, PrefetchValues: true})
		for it.Rewind(); it.ValidForPrefix(prefixEntry); it.Next() {
			scope, addr, _ := splitItemKey(it.Item().Key()[len(prefixEntry):])
			v, _ := it.Item().ValueCopy(nil)
			e, err := decodeEntry(scope, addr, v)
			if err != nil {
				t.Errorf("entry %q: %v", it.Item().Key(), err)
				continue
			}
			if !e.Expires.IsZero() {
				entries[scope+"\x00"+addr] = e.Expires
			}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: prefixExpiry})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(prefixExpiry); it.Next() {
			at, kind, scope, addr, ok := parseExpiryKey(it.Item().Key())
			if !ok {
				t.Errorf("bad index key %q", it.Item().Key())
			}
			if kind == kindEntry {
				if _, dup := index[scope+"\x00"+addr]; dup {
					t.Errorf("two index keys for %q", addr)
				}
				index[scope+"\x00"+addr] = at
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, at := range entries {
		if got, ok := index[k]; !ok || !got.Equal(at) {
			t.Errorf("entry %q expires %v, index says %v (%v)", k, at, got, ok)
		}
	}
	for k := range index {
		if _, ok := entries[k]; !ok {
			t.Errorf("index key for %q without an expiring entry", k)
		}
	}
}

// countPrefix counts the keys under p.
func countPrefix(t testing.TB, db *badger.DB, p []byte) int {
	t.Helper()
	n := 0
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		defer it.Close()
		for it.Rewind(); it.ValidForPrefix(p); it.Next() {
			n++
		}
		return nil
	})
	return n
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

// waitFor polls cond for up to five seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func fullDecision() policy.Decision {
	return policy.Classify(policy.ParseReply("RCPT", "452 4.2.2 Mailbox full"))
}
