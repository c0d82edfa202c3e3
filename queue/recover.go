package queue

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// RecoveryReport says what Open found.
type RecoveryReport struct {
	Messages    int `json:"messages"`
	Leased      int `json:"leased"` // in flight at the crash: due again now
	Quarantined int `json:"quarantined"`
	Segments    int `json:"segments_removed"`
}

// recover runs once at Open: it checks every record's checksum and that its
// body lies inside an existing spool segment (quarantining those that fail),
// counts the references into each segment, makes leased messages due at once,
// and removes segments nothing refers to.
func (s *Store) recover() error {
	var rep RecoveryReport
	type bad struct {
		id  string
		err error
	}
	var bads []bad
	var leased []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixMsg, PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Seek(prefixMsg); it.ValidForPrefix(prefixMsg); it.Next() {
			id := string(it.Item().Key()[len(prefixMsg):])
			// Every record is decoded, not only checked: the in-memory
			// counts (messages, held, pending recipients per domain) start
			// from here.
			var m *Message
			err := it.Item().Value(func(v []byte) error {
				var cerr error
				m, cerr = decodeRecord(v)
				return cerr
			})
			var ref BodyRef
			var wasLeased bool
			if err == nil {
				ref, wasLeased = m.Body, m.Leased
			}
			if err == nil {
				err = s.sp.checkRef(ref)
			}
			if errors.Is(err, ErrCorrupt) {
				bads = append(bads, bad{id, err})
				continue
			}
			if err != nil {
				return err
			}
			s.sp.ref(ref)
			s.counts.seed(m)
			rep.Messages++
			if wasLeased {
				leased = append(leased, id)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue recovery: %w", err)
	}
	for _, b := range bads {
		s.quarantineWait(b.id, b.err)
		rep.Quarantined++
	}

	// Leases left behind belong to attempts the crash interrupted: make
	// those messages due now so they are retried, not forgotten.
	now := s.clk.Now()
	var due []*Message
	for _, id := range leased {
		m, err := s.Get(id)
		if err != nil {
			continue
		}
		m.Leased = false
		if m.Due.After(now) {
			m.Due = now
		}
		due = append(due, m)
	}
	for start := 0; start < len(due); start += 1000 {
		if err := s.SaveMany(due[start:min(start+1000, len(due))]); err != nil {
			return fmt.Errorf("queue recovery: %w", err)
		}
	}
	rep.Leased = len(due)
	rep.Segments = s.sp.dropUnreferenced()
	s.recovered = rep
	s.log.Info("queue recovered", "messages", rep.Messages, "in_flight_at_stop", rep.Leased,
		"quarantined", rep.Quarantined, "spool_segments_removed", rep.Segments)
	return nil
}

// Recovered reports what Open found.
func (s *Store) Recovered() RecoveryReport { return s.recovered }
