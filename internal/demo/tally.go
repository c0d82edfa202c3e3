package demo

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"kiln/events"
	"kiln/queue"
	"kiln/warmup"
)

// Counts are what happened to a provider's recipients (or all of them).
type Counts struct {
	// Received: recipients kiln accepted at submission. Refused:
	// recipients it refused there (a suppressed address, when the campaign
	// sends to it again).
	Received int `json:"received"`
	Refused  int `json:"refused"`
	// Outcomes reported by kiln's events. Deferred counts deferrals (a
	// recipient may be deferred several times); the others count
	// recipients.
	Delivered  int `json:"delivered"`
	Deferred   int `json:"deferred"`
	Bounced    int `json:"bounced"`
	Expired    int `json:"expired"`
	Dropped    int `json:"dropped"`
	Suppressed int `json:"suppressed"`
	// Queued: accepted and not yet delivered, bounced, expired or dropped.
	// CapWait: of those, the ones waiting for warm-up capacity (today's
	// cap, the sending window, a paused provider), as kiln's queue says.
	Queued  int `json:"queued"`
	CapWait int `json:"waiting_for_warmup"`
	// PeakCapWait is the most recipients seen waiting for warm-up capacity
	// at once.
	PeakCapWait int `json:"peak_waiting_for_warmup"`
	// By reason (kiln's classification): deferrals and bounces.
	DeferredBy map[string]int `json:"deferred_by_reason,omitempty"`
	BouncedBy  map[string]int `json:"bounced_by_reason,omitempty"`
}

func (c *Counts) add(o Counts) {
	c.Received += o.Received
	c.Refused += o.Refused
	c.Delivered += o.Delivered
	c.Deferred += o.Deferred
	c.Bounced += o.Bounced
	c.Expired += o.Expired
	c.Dropped += o.Dropped
	c.Suppressed += o.Suppressed
	c.Queued += o.Queued
	c.CapWait += o.CapWait
	c.PeakCapWait += o.PeakCapWait
	c.DeferredBy = addMap(c.DeferredBy, o.DeferredBy)
	c.BouncedBy = addMap(c.BouncedBy, o.BouncedBy)
}

func addMap(dst, src map[string]int) map[string]int {
	for k, v := range src {
		if dst == nil {
			dst = map[string]int{}
		}
		dst[k] += v
	}
	return dst
}

// rcptState is what the demo knows about one recipient address.
type rcptState struct {
	final      string // delivered, bounced, expired, dropped; "" while queued
	reason     string // kiln's reason for the final outcome
	enhanced   string // the enhanced status of the last reply
	suppressed bool
	deferrals  int
	at         time.Time // when it reached its final state (simulated)
}

// Note is one thing worth telling a newcomer, as it happened.
type Note struct {
	Time time.Time `json:"time"` // simulated
	Text string    `json:"text"`
}

// tally counts kiln's events per provider. It is an events.Sink: the bus
// calls it from kiln's goroutines.
type tally struct {
	mu      sync.Mutex
	counts  map[string]*Counts    // by provider key
	rcpts   map[string]*rcptState // by address
	notes   []Note
	seen    map[string]bool // notable kinds already told
	warmups []events.Event
	notices Counts // bounce notices kiln sent to the campaign's sender
	// peakCapWait is the most recipients seen waiting for warm-up
	// capacity at once, over all providers.
	peakCapWait int
	// deferStatus counts deferrals by provider and enhanced status code.
	deferStatus map[string]map[string]int
}

func newTally() *tally {
	t := &tally{counts: map[string]*Counts{}, rcpts: map[string]*rcptState{}, seen: map[string]bool{},
		deferStatus: map[string]map[string]int{}}
	for _, p := range providers {
		t.counts[p.Key] = &Counts{}
	}
	return t
}

func (t *tally) state(addr string) *rcptState {
	addr = strings.ToLower(addr)
	r := t.rcpts[addr]
	if r == nil {
		r = &rcptState{}
		t.rcpts[addr] = r
	}
	return r
}

// submitted records what kiln's submission port answered.
func (t *tally) submitted(in injected, now time.Time, wave int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := providerOf(in.rcpt)
	if p == nil {
		return
	}
	c := t.counts[p.Key]
	if in.ok {
		c.Received++
		return
	}
	c.Refused++
	t.note(now, "refused:"+p.Key+":"+fmt.Sprint(wave), "%-12s refused at submission: %s", domainOf(in.rcpt), short(in.reply, 70))
}

// Handle takes one of kiln's events.
func (t *tally) Handle(e events.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.Type == events.Warmup {
		t.warmups = append(t.warmups, e)
		t.notes = append(t.notes, Note{e.Time, fmt.Sprintf("warm-up      %s at %s: %s", e.Egress, siteName(e.Site), e.Detail)})
		return
	}
	if e.Recipient == "" {
		return
	}
	p := providerOf(e.Recipient)
	if p == nil {
		if strings.EqualFold(e.Recipient, sender) {
			t.noticeEvent(e)
		}
		return
	}
	c := t.counts[p.Key]
	r := t.state(e.Recipient)
	if e.Enhanced != "" {
		r.enhanced = e.Enhanced
	}
	dom := domainOf(e.Recipient)
	switch e.Type {
	case events.Delivered:
		c.Delivered++
		r.final, r.at = e.Type, e.Time
		t.note(e.Time, "delivered:"+p.Key, "%-12s delivered   %s (%s)", dom, e.Recipient, short(e.Reply, 40))
	case events.Deferred:
		c.Deferred++
		r.deferrals++
		if t.deferStatus[p.Key] == nil {
			t.deferStatus[p.Key] = map[string]int{}
		}
		t.deferStatus[p.Key][e.Enhanced]++
		c.DeferredBy = addMap(c.DeferredBy, map[string]int{e.Reason: 1})
		next := ""
		if e.Next != nil {
			next = ", retry at " + e.Next.Format("15:04")
		}
		t.note(e.Time, "deferred:"+p.Key+":"+e.Reason, "%-12s deferred    %s: %s (rule %s%s)", dom, e.Reason, short(e.Reply, 56), e.Rule, next)
	case events.Bounced, events.Expired:
		if e.Type == events.Bounced {
			c.Bounced++
		} else {
			c.Expired++
		}
		r.final, r.reason, r.at = e.Type, e.Reason, e.Time
		c.BouncedBy = addMap(c.BouncedBy, map[string]int{e.Reason: 1})
		whose := "the address's fault"
		if !e.Hard {
			whose = "not the address's fault: not suppressed"
		}
		t.note(e.Time, "bounced:"+p.Key+":"+e.Reason, "%-12s %-11s %s: %s (rule %s; %s)", dom, e.Type, e.Reason, short(e.Reply, 48), e.Rule, whose)
	case events.Dropped:
		c.Dropped++
		r.final, r.reason = e.Type, e.Reason
	case events.Suppressed:
		c.Suppressed++
		r.suppressed = true
		t.note(e.Time, "suppressed:"+p.Key, "%-12s suppressed  %s (%s): kiln will refuse to send to it again", dom, e.Recipient, e.Reason)
	}
}

func (t *tally) noticeEvent(e events.Event) {
	switch e.Type {
	case events.Delivered:
		t.notices.Delivered++
		t.note(e.Time, "notice", "%-12s delivered   a bounce notice (RFC 3464) to the sender %s", domainOf(e.Recipient), e.Recipient)
	case events.Deferred:
		t.notices.Deferred++
	case events.Bounced, events.Expired:
		t.notices.Bounced++
	}
}

// note records the first event of each kind (key) as a Note.
func (t *tally) note(now time.Time, key, format string, a ...any) {
	if t.seen[key] {
		return
	}
	t.seen[key] = true
	t.notes = append(t.notes, Note{now, fmt.Sprintf(format, a...)})
}

// addNote records a note of the demo's own.
func (t *tally) addNote(now time.Time, format string, a ...any) {
	t.mu.Lock()
	t.notes = append(t.notes, Note{now, fmt.Sprintf(format, a...)})
	t.mu.Unlock()
}

// scan counts, from kiln's queue, the recipients still queued and those of
// them waiting for warm-up capacity.
func (t *tally) scan(st *queue.Store) error {
	queued := map[string]int{}
	waiting := map[string]int{}
	err := st.Walk("", func(m *queue.Message) bool {
		for _, r := range m.Rcpts {
			if r.State.Done() {
				continue
			}
			p := providerOf(r.Addr)
			if p == nil {
				continue
			}
			queued[p.Key]++
			if r.Wait != "" {
				waiting[p.Key]++
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	all := 0
	for _, p := range providers {
		c := t.counts[p.Key]
		c.Queued, c.CapWait = queued[p.Key], waiting[p.Key]
		c.PeakCapWait = max(c.PeakCapWait, c.CapWait)
		all += c.CapWait
	}
	t.peakCapWait = max(t.peakCapWait, all)
	return nil
}

// snapshot returns a copy of the counts per provider and in total.
func (t *tally) snapshot() (map[string]Counts, Counts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string]Counts{}
	var total Counts
	for k, c := range t.counts {
		cp := *c
		cp.DeferredBy = addMap(nil, c.DeferredBy)
		cp.BouncedBy = addMap(nil, c.BouncedBy)
		out[k] = cp
		total.add(cp)
	}
	total.PeakCapWait = t.peakCapWait
	return out, total
}

// notesSince returns the notes from index i on, and the next index.
func (t *tally) notesSince(i int) ([]Note, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i > len(t.notes) {
		i = len(t.notes)
	}
	return append([]Note(nil), t.notes[i:]...), len(t.notes)
}

// suppressedAddrs returns the addresses kiln suppressed, sorted.
func (t *tally) suppressedAddrs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for a, r := range t.rcpts {
		if r.suppressed {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// reactionsAt counts the warm-up's adaptive reactions at a site: the times a
// rule paused it, and the times a rule held its plan day (a pause ending in
// a hold is not counted twice: only changes a signal caused are).
func (t *tally) reactionsAt(site string) (paused, held int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.warmups {
		if e.Site != site || !strings.Contains(e.Detail, "signal ") {
			continue
		}
		switch {
		case strings.Contains(e.Detail, "-> "+string(warmup.StatePaused)):
			paused++
		case strings.Contains(e.Detail, "-> "+string(warmup.StateHeld)):
			held++
		}
	}
	return paused, held
}

func domainOf(addr string) string { return addr[strings.LastIndexByte(addr, '@')+1:] }

// siteName names a warm-up site for people.
func siteName(site string) string {
	if site == "" {
		return "every provider"
	}
	return site
}

// short cuts s to n characters.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
