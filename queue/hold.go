package queue

import (
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// HoldRule pauses delivery of the messages it matches. Every field left empty
// matches everything, so an empty rule pauses the whole queue.
type HoldRule struct {
	ID              string    `json:"id"`
	Account         string    `json:"account,omitempty"`
	SenderDomain    string    `json:"sender_domain,omitempty"`
	RecipientDomain string    `json:"recipient_domain,omitempty"`
	Message         string    `json:"message,omitempty"`
	Reason          string    `json:"reason,omitempty"`
	Created         time.Time `json:"created"`
}

// Matches reports whether the rule holds m. A recipient-domain rule holds a
// message while any of its pending recipients is in that domain.
func (r HoldRule) Matches(m *Message) bool {
	if r.Message != "" && r.Message != m.ID {
		return false
	}
	if r.Account != "" && r.Account != m.Account {
		return false
	}
	if r.SenderDomain != "" && !strings.EqualFold(r.SenderDomain, Domain(m.From)) {
		return false
	}
	if r.RecipientDomain != "" {
		for _, rc := range m.Rcpts {
			if !rc.State.Done() && strings.EqualFold(rc.Domain(), r.RecipientDomain) {
				return true
			}
		}
		return false
	}
	return true
}

// same reports whether two rules select the same messages.
func (r HoldRule) same(o HoldRule) bool {
	return r.Message == o.Message && r.Account == o.Account &&
		strings.EqualFold(r.SenderDomain, o.SenderDomain) && strings.EqualFold(r.RecipientDomain, o.RecipientDomain)
}

type holdSet struct {
	mu    sync.RWMutex
	rules []HoldRule
}

func (h *holdSet) load(db *badger.DB) error {
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixHoldRule, PrefetchValues: true})
		defer it.Close()
		for it.Seek(prefixHoldRule); it.ValidForPrefix(prefixHoldRule); it.Next() {
			var r HoldRule
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return err
			}
			h.rules = append(h.rules, r)
		}
		return nil
	})
}

// HoldMatch returns the first rule that holds m.
func (s *Store) HoldMatch(m *Message) (HoldRule, bool) {
	s.holds.mu.RLock()
	defer s.holds.mu.RUnlock()
	for _, r := range s.holds.rules {
		if r.Matches(m) {
			return r, true
		}
	}
	return HoldRule{}, false
}

// HoldRules lists the rules in force.
func (s *Store) HoldRules() []HoldRule {
	s.holds.mu.RLock()
	defer s.holds.mu.RUnlock()
	return append([]HoldRule(nil), s.holds.rules...)
}

// AddHold stores a rule (or returns the existing one selecting the same
// messages). Messages it matches are parked by the scheduler when it next
// takes them.
func (s *Store) AddHold(r HoldRule) (HoldRule, error) {
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	for _, old := range s.holds.rules {
		if old.same(r) {
			return old, nil
		}
	}
	r.ID = s.ids.next(s.clk.Now())
	r.Created = s.clk.Now()
	val, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	req := &writeReq{done: make(chan error, 1)}
	req.apply = func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte(nil), prefixHoldRule...), r.ID...), val)
	}
	if err := s.submit(contextBackground(), req); err != nil {
		return r, err
	}
	s.holds.rules = append(s.holds.rules, r)
	return r, nil
}

// RemoveHolds deletes the rules selecting the same messages as r (all rules
// when all is true) and returns them.
func (s *Store) RemoveHolds(r HoldRule, all bool) ([]HoldRule, error) {
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	var gone, keep []HoldRule
	for _, old := range s.holds.rules {
		if all || old.same(r) || (r.ID != "" && old.ID == r.ID) {
			gone = append(gone, old)
		} else {
			keep = append(keep, old)
		}
	}
	if len(gone) == 0 {
		return nil, nil
	}
	req := &writeReq{done: make(chan error, 1)}
	req.apply = func(txn *badger.Txn) error {
		for _, g := range gone {
			if err := txn.Delete(append(append([]byte(nil), prefixHoldRule...), g.ID...)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := s.submit(contextBackground(), req); err != nil {
		return nil, err
	}
	s.holds.rules = keep
	return gone, nil
}

// HeldIDs lists the ids of held messages.
func (s *Store) HeldIDs() ([]string, error) {
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixHeld})
		defer it.Close()
		for it.Seek(prefixHeld); it.ValidForPrefix(prefixHeld); it.Next() {
			ids = append(ids, string(it.Item().Key()[len(prefixHeld):]))
		}
		return nil
	})
	return ids, err
}
