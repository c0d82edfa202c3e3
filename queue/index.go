package queue

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Due returns up to limit messages whose schedule key lies between from and
// now, earliest first, skipping ids for which skip returns true (the
// scheduler's messages in flight). It walks the schedule index, never the
// whole queue; from lets the caller start past the part of the index it has
// already taken, where deleted keys pile up until compaction removes them.
// Index keys that no longer match their record (left by a crash between two
// commits) are removed on the way; a record that fails its checks is
// quarantined.
func (s *Store) Due(from, now time.Time, limit int, skip func(id string) bool) ([]*Message, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []*Message
	var stale [][]byte
	var corrupt []struct {
		id  string
		err error
	}
	end := schedKey(now, "\xff")
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixSched})
		defer it.Close()
		for it.Seek(schedKey(from, "")); it.ValidForPrefix(prefixSched) && len(out) < limit; it.Next() {
			k := it.Item().Key()
			if bytes.Compare(k, end) > 0 {
				break
			}
			due, id, ok := parseSchedKey(k)
			if !ok {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			if skip != nil && skip(id) {
				continue
			}
			item, err := txn.Get(msgKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			if err != nil {
				return err
			}
			var m *Message
			err = item.Value(func(v []byte) error {
				var derr error
				m, derr = decodeRecord(v)
				return derr
			})
			if errors.Is(err, ErrCorrupt) {
				corrupt = append(corrupt, struct {
					id  string
					err error
				}{id, err})
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			if err != nil {
				return err
			}
			if !m.scheduled() || !m.Due.Equal(due) {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			out = append(out, m)
		}
		return nil
	})
	for _, c := range corrupt {
		s.quarantine(c.id, c.err)
	}
	if len(stale) > 0 {
		s.deleteKeysAsync(stale)
	}
	return out, err
}

// NextDue returns the earliest due time at or after from in the schedule
// index, and false when there is none.
func (s *Store) NextDue(from time.Time) (time.Time, bool) {
	var due time.Time
	found := false
	s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixSched})
		defer it.Close()
		it.Seek(schedKey(from, ""))
		if it.ValidForPrefix(prefixSched) {
			due, _, found = parseSchedKey(it.Item().Key())
		}
		return nil
	})
	return due, found
}

// deleteKeysAsync removes index keys found stale; nobody waits for it.
func (s *Store) deleteKeysAsync(keys [][]byte) {
	req := &writeReq{done: make(chan error, 1)}
	req.apply = func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return
	}
	select {
	case s.reqs <- req:
	default: // busy: the next scan finds them again
	}
}

// quarantine sets a damaged record aside under q/x/ with the reason, and
// removes it from the queue, so it is reported instead of being delivered as
// garbage or silently skipped. An operator can list it with the admin API.
// It does not wait for the write.
func (s *Store) quarantine(id string, reason error) {
	go s.quarantineWait(id, reason)
}

func (s *Store) quarantineWait(id string, reason error) error {
	s.log.Error("queue record is corrupt: quarantined", "id", id, "err", reason)
	req := &writeReq{done: make(chan error, 1)}
	req.apply = func(txn *badger.Txn) error {
		var raw []byte
		item, err := txn.Get(msgKey(id))
		if err == nil {
			raw, _ = item.ValueCopy(nil)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		val := append([]byte(fmt.Sprintf("%s\n%s\n", s.clk.Now().UTC().Format(time.RFC3339), reason)), raw...)
		if err := txn.Set(quarantineKey(id), val); err != nil {
			return err
		}
		for _, k := range [][]byte{msgKey(id), heldKey(id)} {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}
	return s.submit(contextBackground(), req)
}

// Quarantined is a record set aside as corrupt.
type Quarantined struct {
	ID     string `json:"id"`
	When   string `json:"when"`
	Reason string `json:"reason"`
	Bytes  int    `json:"bytes"`
}

// Quarantine lists the records set aside as corrupt.
func (s *Store) Quarantine() ([]Quarantined, error) {
	var out []Quarantined
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixQuarantine, PrefetchValues: true})
		defer it.Close()
		for it.Seek(prefixQuarantine); it.ValidForPrefix(prefixQuarantine); it.Next() {
			q := Quarantined{ID: string(it.Item().Key()[len(prefixQuarantine):])}
			it.Item().Value(func(v []byte) error {
				parts := bytes.SplitN(v, []byte("\n"), 3)
				if len(parts) == 3 {
					q.When, q.Reason, q.Bytes = string(parts[0]), string(parts[1]), len(parts[2])
				}
				return nil
			})
			out = append(out, q)
		}
		return nil
	})
	return out, err
}

// Filter selects messages for listing and for operator actions. Empty fields
// match everything.
type Filter struct {
	ID              string
	Account         string
	SenderDomain    string
	RecipientDomain string
	// State: "" (all), "due", "deferred" (attempted before), "held",
	// "leased", "waiting" (for sending capacity in a lane).
	State string
}

// Match reports whether m passes the filter at time now.
func (f Filter) Match(m *Message, now time.Time) bool {
	if f.ID != "" && m.ID != f.ID {
		return false
	}
	if f.Account != "" && m.Account != f.Account {
		return false
	}
	if f.SenderDomain != "" && Domain(m.From) != lower(f.SenderDomain) {
		return false
	}
	if f.RecipientDomain != "" {
		found := false
		for _, r := range m.Rcpts {
			if !r.State.Done() && r.Domain() == lower(f.RecipientDomain) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	switch f.State {
	case "":
	case "held":
		return m.Held
	case "leased":
		return m.Leased
	case "due":
		return !m.Held && !m.Leased && !m.Due.After(now)
	case "deferred":
		return !m.Held && !m.Leased && m.Attempts > 0 && m.scheduled()
	case "waiting":
		return !m.Held && !m.Leased && len(m.lanes()) > 0
	default:
		return false
	}
	return true
}

// Walk calls fn for every message in id order (creation order) starting after
// the id "after", until fn returns false. Corrupt records are quarantined and
// skipped.
func (s *Store) Walk(after string, fn func(m *Message) bool) error {
	var corrupt []string
	var cerrs []error
	start := msgKey(after)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixMsg, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefixMsg); it.Next() {
			k := it.Item().Key()
			if after != "" && bytes.Equal(k, start) {
				continue
			}
			var m *Message
			err := it.Item().Value(func(v []byte) error {
				var derr error
				m, derr = decodeRecord(v)
				return derr
			})
			if errors.Is(err, ErrCorrupt) {
				corrupt = append(corrupt, string(k[len(prefixMsg):]))
				cerrs = append(cerrs, err)
				continue
			}
			if err != nil {
				return err
			}
			if !fn(m) {
				return nil
			}
		}
		return nil
	})
	for i, id := range corrupt {
		s.quarantine(id, cerrs[i])
	}
	return err
}

// Count returns the number of messages in the queue and how many are held,
// from the in-memory counts.
func (s *Store) Count() (total, held int, err error) {
	c := s.Counts()
	return c.Messages, c.Held, nil
}

// Lanes returns the lanes that have messages waiting in them. It seeks from
// lane to lane rather than walking every waiting message.
func (s *Store) Lanes() ([]string, error) {
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixLane})
		defer it.Close()
		it.Seek(prefixLane)
		for it.ValidForPrefix(prefixLane) {
			rest := it.Item().Key()[len(prefixLane):]
			i := bytes.IndexByte(rest, 0)
			if i < 0 {
				it.Next()
				continue
			}
			lane := string(rest[:i])
			out = append(out, lane)
			it.Seek(append(append(append([]byte(nil), prefixLane...), lane...), 1))
		}
		return nil
	})
	return out, err
}

// Waiting returns up to n messages waiting in lane, highest priority and
// oldest first, skipping ids for which skip returns true. Keys whose message
// no longer waits there are removed on the way.
func (s *Store) Waiting(lane string, n int, skip func(id string) bool) ([]*Message, error) {
	out, _, err := s.WaitingAfter(lane, nil, n, skip)
	return out, err
}

// LaneCursor marks a position in a lane's wait index.
type LaneCursor []byte

// WaitingAfter is Waiting starting after cursor (nil: at the lane's head),
// and returns each message's own cursor. A scheduler that takes a lane's
// messages in order seeks past the ones it took, instead of wading through
// their deleted keys until compaction removes them. A message skip refuses
// is stepped over, but the cursors of the messages after it stay in front of
// it, so it is read again next time.
func (s *Store) WaitingAfter(lane string, after LaneCursor, n int, skip func(id string) bool) ([]*Message, []LaneCursor, error) {
	var out []*Message
	var stale [][]byte
	var keys []LaneCursor
	frozen, freezeAt, lastKey := false, after, after
	prefix := lanePrefix(lane)
	start := prefix
	if len(after) > 0 {
		start = append(append([]byte(nil), after...), 0)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix) && len(out) < n; it.Next() {
			k := it.Item().Key()
			if len(k) < len(prefix)+9 {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			id := string(k[len(prefix)+9:])
			if skip != nil && skip(id) {
				// Messages after this one report the position before it,
				// so a cursor never steps over a message still to take.
				if !frozen {
					frozen, freezeAt = true, lastKey
				}
				continue
			}
			item, err := txn.Get(msgKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			if err != nil {
				return err
			}
			var m *Message
			if err := item.Value(func(v []byte) error {
				var derr error
				m, derr = decodeRecord(v)
				return derr
			}); err != nil {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			if !slices.Contains(m.lanes(), lane) {
				stale = append(stale, it.Item().KeyCopy(nil))
				continue
			}
			out = append(out, m)
			lastKey = it.Item().KeyCopy(nil)
			if frozen {
				keys = append(keys, freezeAt)
			} else {
				keys = append(keys, lastKey)
			}
		}
		return nil
	})
	if len(stale) > 0 {
		s.deleteKeysAsync(stale)
	}
	return out, keys, err
}

// Before reports whether a message of priority prio created at created sorts
// before the cursor in a lane (a newly parked message the cursor has passed).
func (c LaneCursor) Before(lane string, prio int, created time.Time, id string) bool {
	if len(c) == 0 {
		return false
	}
	k := laneKey(lane, &Message{Priority: prio, Created: created, ID: id})
	return bytes.Compare(k, c) < 0
}

// CountWaiting returns how many messages wait in lane, from the in-memory
// counts.
func (s *Store) CountWaiting(lane string) int {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	return s.counts.lanes[lane]
}
