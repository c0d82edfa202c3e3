package queue

import (
	"sort"
	"sync"
)

// counts are the queue's totals kept in memory, changed wherever records are
// written and deleted and seeded by recovery, so that health checks, metrics
// and the dashboard never scan a queue of a million messages to count it.
type counts struct {
	mu      sync.Mutex
	total   int
	held    int
	domains map[string]int // pending recipients per recipient domain
	lanes   map[string]int // messages waiting per lane
}

// pendingDomains lists the domains of the pending recipients, one entry per
// recipient.
func (m *Message) pendingDomains() []string {
	var out []string
	for i := range m.Rcpts {
		if !m.Rcpts[i].State.Done() {
			out = append(out, m.Rcpts[i].Domain())
		}
	}
	return out
}

// account moves the counts from what the message was counted as to what it
// is now. The caller holds the message's lock.
func (c *counts) account(m *Message, gone bool) {
	var doms, lanes []string
	if !gone {
		doms, lanes = m.pendingDomains(), m.lanes()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	switch {
	case m.idxCounted && gone:
		c.total--
	case !m.idxCounted && !gone:
		c.total++
	}
	wasHeld := m.idxCounted && m.idxCountedHeld
	isHeld := !gone && m.Held
	if wasHeld != isHeld {
		if isHeld {
			c.held++
		} else {
			c.held--
		}
	}
	for _, d := range m.idxDomains {
		if c.domains[d]--; c.domains[d] <= 0 {
			delete(c.domains, d)
		}
	}
	for _, d := range doms {
		c.domains[d]++
	}
	for _, l := range m.idxCountedLanes {
		if c.lanes[l]--; c.lanes[l] <= 0 {
			delete(c.lanes, l)
		}
	}
	for _, l := range lanes {
		c.lanes[l]++
	}
	m.idxCounted, m.idxCountedHeld, m.idxDomains, m.idxCountedLanes = !gone, isHeld, doms, lanes
}

func (c *counts) init() {
	if c.domains == nil {
		c.domains, c.lanes = map[string]int{}, map[string]int{}
	}
}

// seed adds a record read at recovery.
func (c *counts) seed(m *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.total++
	if m.Held {
		c.held++
	}
	for _, d := range m.idxDomains {
		c.domains[d]++
	}
	for _, l := range m.idxCountedLanes {
		c.lanes[l]++
	}
}

// Counts are the queue's totals.
type Counts struct {
	Messages int `json:"messages"`
	Held     int `json:"held"`
	// Pending is the number of recipients still to deliver.
	Pending int `json:"pending"`
	Domains int `json:"domains"` // distinct recipient domains with pending recipients
}

// Counts returns the totals without reading the store.
func (s *Store) Counts() Counts {
	s.counts.mu.Lock()
	defer s.counts.mu.Unlock()
	c := Counts{Messages: s.counts.total, Held: s.counts.held, Domains: len(s.counts.domains)}
	for _, n := range s.counts.domains {
		c.Pending += n
	}
	return c
}

// DomainCount is the number of pending recipients of one domain.
type DomainCount struct {
	Domain  string `json:"domain"`
	Pending int    `json:"pending"`
}

// PendingByDomain returns the domains with the most pending recipients, most
// first, at most limit of them.
func (s *Store) PendingByDomain(limit int) []DomainCount {
	s.counts.mu.Lock()
	out := make([]DomainCount, 0, len(s.counts.domains))
	for d, n := range s.counts.domains {
		out = append(out, DomainCount{d, n})
	}
	s.counts.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pending != out[j].Pending {
			return out[i].Pending > out[j].Pending
		}
		return out[i].Domain < out[j].Domain
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
