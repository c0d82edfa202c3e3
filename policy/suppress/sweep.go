package suppress

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime/debug"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// sweepChunk is how many due index keys one sweep transaction handles.
const sweepChunk = 1000

// Sweep deletes the entries that have expired at now and the soft-failure
// counts whose window has passed, and returns how many entries it deleted.
// It reads only the expiry index up to now, so a sweep with nothing due
// costs one seek.
func (l *List) Sweep(now time.Time) (int, error) {
	total := 0
	end := binary.BigEndian.AppendUint64(append([]byte(nil), prefixExpiry...), nanos(now)+1)
	for {
		var due [][]byte
		err := l.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixExpiry})
			defer it.Close()
			for it.Seek(prefixExpiry); it.ValidForPrefix(prefixExpiry) && len(due) < sweepChunk; it.Next() {
				k := it.Item().Key()
				if string(k) >= string(end) {
					break
				}
				due = append(due, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(due) == 0 {
			return total, err
		}
		n := 0
		err = l.submit(len(due), func(txn *badger.Txn, ch *[]Change) error {
			n = 0
			for _, k := range due {
				at, kind, scope, addr, ok := parseExpiryKey(k)
				if err := txn.Delete(k); err != nil {
					return err
				}
				if !ok {
					continue
				}
				switch kind {
				case kindEntry:
					e, found, err := l.getEntry(txn, scope, addr)
					if err != nil {
						return err
					}
					if !found || !e.Expires.Equal(at) || !e.Expired(now) {
						continue // replaced since: its own index key stands
					}
					if err := txn.Delete(entryKey(scope, addr)); err != nil {
						return err
					}
					n++
					*ch = append(*ch, Change{Op: OpExpired, Entry: e})
				case kindSoft:
					rec, err := l.readSoft(txn, scope, addr)
					if err != nil {
						return err
					}
					if rec != nil && !rec.newest().Add(l.cfg.SoftFailWindow.D()).After(now) {
						if err := txn.Delete(softKey(scope, addr)); err != nil {
							return err
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if len(due) < sweepChunk {
			return total, nil
		}
	}
}

// Run sweeps at once and then every sweep_interval of the list's clock,
// until ctx is done. A failed sweep is logged and tried again at the next
// interval; a panic is logged and the loop goes on.
func (l *List) Run(ctx context.Context) {
	for {
		l.sweepOnce()
		select {
		case <-ctx.Done():
			return
		case <-l.clk.After(l.cfg.SweepInterval.D()):
		}
	}
}

func (l *List) sweepOnce() {
	defer func() {
		if p := recover(); p != nil {
			l.log.Error("suppression sweep panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	n, err := l.Sweep(l.clk.Now())
	switch {
	case errors.Is(err, ErrClosed):
	case err != nil:
		l.log.Error("suppression sweep failed", "err", err)
	case n > 0:
		l.log.Info("expired suppressions removed", "count", n)
	}
}
