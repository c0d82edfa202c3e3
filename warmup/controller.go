package warmup

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
)

// Reason says why Reserve refused.
type Reason string

const (
	ReasonCap        Reason = "cap"         // today's warm-up cap for this provider is used up
	ReasonSpread     Reason = "spread"      // today's cap is being spread over the window: the next slot is at RetryAt
	ReasonWindow     Reason = "window"      // outside the sending window of a warming egress
	ReasonPriority   Reason = "priority"    // mail of a higher priority is waiting for the same capacity
	ReasonNotStarted Reason = "not-started" // the egress's warm-up starts later
	ReasonRate       Reason = "rate"        // the shaping rate (or a backoff's) is used up for the moment
	ReasonPaused     Reason = "paused"      // the egress is paused for this provider (adaptive or operator)
	ReasonNoRoute    Reason = "no-route"    // no such pool or egress
	reasonNotWarm    Reason = "not-warm"    // internal: cannot take spilled mail
)

// capWait reports whether a wait for this reason is spent waiting for
// warm-up capacity that kiln imposes on itself, rather than for the remote.
func (r Reason) capWait() bool {
	switch r {
	case ReasonCap, ReasonSpread, ReasonWindow, ReasonPriority, ReasonNotStarted:
		return true
	}
	return false
}

// Decision is Reserve's answer.
type Decision struct {
	// OK: one message may go now from Egress to Site; it has been counted
	// against today's cap.
	OK     bool   `json:"ok"`
	Egress string `json:"egress,omitempty"`
	Site   string `json:"site"`
	// Spilled: the egress drawn for the message could not send it and a warm
	// egress of the pool took it (pool overflow "spill").
	Spilled bool `json:"spilled,omitempty"`
	// Reason and RetryAt, when not OK: why, and when to ask again for this
	// message. Asking earlier is harmless but wasted.
	Reason  Reason    `json:"reason,omitempty"`
	RetryAt time.Time `json:"retry_at,omitzero"`
	// CapWait: the message waits for warm-up capacity (cap, spread, window,
	// priority, not started), not because of anything the remote said. The
	// time until RetryAt should not count toward the message's maximum age,
	// so that no message expires only because it waited for the cap.
	CapWait bool `json:"cap_wait,omitempty"`

	date int32 // the local day it was counted on, for Release
}

// Event is one change of an (egress, site)'s warm-up: a state change, a
// plan day changed by anything but the daily advance, a backoff beginning,
// an idle restart. Site is empty for a change of the whole egress.
type Event struct {
	Time     time.Time `json:"time"`
	Egress   string    `json:"egress"`
	Site     string    `json:"site,omitempty"`
	Provider string    `json:"provider,omitempty"`
	From     State     `json:"from,omitempty"`
	To       State     `json:"to,omitempty"`
	Day      int       `json:"day"`      // plan day after the change (0 for a warm egress)
	PrevDay  int       `json:"prev_day"` // before it
	Cap      int       `json:"cap"`      // today's cap after the change, -1 for none
	// Cause is the rule that fired ("rate-hold", "block-pause", ...), or
	// new-day, plan-complete, cooldown-over, idle-restart, operator-pause,
	// operator-resume, operator-set-day.
	Cause  string    `json:"cause"`
	Signal Signal    `json:"signal,omitempty"` // the signal that made the rule fire
	Until  time.Time `json:"until,omitzero"`   // end of the pause or backoff it started
}

// anchor fixes an egress's plan day: on local day date it was day. Calendar
// counting adds a day per day from there; an (egress, site) seen for the
// first time starts at the day its egress's anchor gives. It changes on
// SetDay, an idle restart or a new start date in the config, each time with a
// new generation, so lanes know to take their day from it again.
type anchor struct {
	gen      uint64
	date     int32
	day      int
	startsAt int64 // unix ns of the local midnight of plan day 1; MinInt64 for a warm egress
}

func (a *anchor) dayOn(d int32, sending bool) int {
	if !sending || d < a.date {
		return a.day + int(d-a.date)
	}
	return a.day
}

type egress struct {
	idx  int
	cfg  Egress
	plan *plan
	key  []byte

	mu          sync.Mutex // serializes anchor and pause changes
	anchor      atomic.Pointer[anchor]
	lastSent    atomic.Int32 // local day of the last reservation, 0 never
	pausedUntil atomic.Int64 // operator pause of the whole egress, unix ns, 0 none
	dirty       atomic.Bool
}

// available reports whether the egress can be drawn at n: started and not
// paused as a whole.
func (e *egress) available(n int64) (bool, int64, Reason) {
	if a := e.anchor.Load(); n < a.startsAt {
		return false, a.startsAt, ReasonNotStarted
	}
	if p := e.pausedUntil.Load(); p > n {
		if p == indefinite {
			return false, n + int64(recheck), ReasonPaused
		}
		return false, p, ReasonPaused
	}
	return true, 0, ""
}

type pool struct {
	idx     int
	name    string
	members []*egress
	seq     []int // smooth weighted round-robin order of member indexes
	spill   bool
}

// siteState is one destination site: its shaping and its lanes, one per
// egress that has sent to it.
type siteState struct {
	name     string
	provider string
	prov     int
	shaping  Shaping

	mu    sync.Mutex // guards lane creation and dead
	dead  bool
	lanes []atomic.Pointer[lane] // by egress index
	draws []atomic.Uint64        // by pool index
}

// Controller is the warm-up brain. All methods are safe for concurrent use.
type Controller struct {
	cal           calendar
	sendingDays   bool
	idleDays      int32
	cooldown      time.Duration
	backoff       time.Duration
	backoffRate   float64
	pauseStepBack int
	rules         []rule
	windows       []time.Duration
	reapAfter     time.Duration

	providers     *providerTable
	plans         map[string]*plan
	egresses      []*egress
	egressByName  map[string]*egress
	pools         map[string]*pool
	provShaping   map[string]Shaping
	domainSites   map[string]string // recipient domain -> its own site
	domainShaping map[string]Shaping
	db            *badger.DB
	clk           clock.Clock
	onEvent       func(Event)

	smu   sync.RWMutex
	sites map[string]*siteState

	dmu   sync.Mutex
	dirty []*lane

	flushMu    sync.Mutex // one flush, reap or forget at a time
	kick       chan struct{}
	lastReap   atomic.Int64
	lastForget atomic.Int64
	errMu      sync.Mutex
	err        error
}

// New builds a Controller from a validated config (New validates again and
// returns the *keyerr.Error values of Validate). db is kiln's badger store,
// shared with other packages: the Controller reads and writes only keys under
// "warmup/". clk drives Run. onEvent, if not nil, receives every Event; it is
// called from the goroutine that caused the change, after the Controller's
// locks are released, and must not block for long.
func New(cfg Config, db *badger.DB, clk clock.Clock, onEvent func(Event)) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("warmup: a badger DB is required")
	}
	if clk == nil {
		clk = clock.Real{}
	}
	w := cfg.Warmup
	c := &Controller{
		sendingDays:   w.Days == "sending",
		cooldown:      orDefault(w.Cooldown.D(), defaultCooldown),
		backoff:       orDefault(w.Backoff.D(), defaultBackoff),
		backoffRate:   float64(w.BackoffRate),
		pauseStepBack: w.PauseStepBack,
		providers:     newProviderTable(cfg.Provider),
		plans:         map[string]*plan{},
		egressByName:  map[string]*egress{},
		pools:         map[string]*pool{},
		provShaping:   map[string]Shaping{},
		domainSites:   map[string]string{},
		domainShaping: map[string]Shaping{},
		db:            db,
		clk:           clk,
		onEvent:       onEvent,
		sites:         map[string]*siteState{},
		kick:          make(chan struct{}, 1),
	}
	if c.backoffRate <= 0 {
		c.backoffRate = float64(defaultBackoffRate)
	}
	switch {
	case w.PauseStepBack == 0:
		c.pauseStepBack = defaultPauseStepBack
	case w.PauseStepBack < 0:
		c.pauseStepBack = 0
	}
	idle := orDefault(w.IdleRestart.D(), defaultIdleRestart)
	c.idleDays = int32(idle / (24 * time.Hour))
	tz := w.Timezone
	if tz == "" {
		tz = defaultTimezone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, err
	}
	win := w.Window
	if win == "" {
		win = defaultWindow
	}
	ws, we, _ := parseWindow(win)
	c.cal = calendar{loc: loc, winStart: ws, winEnd: we}
	c.rules, c.windows = compileRules(w.Rule, c.cooldown)
	c.reapAfter = 2 * time.Hour
	for _, r := range c.rules {
		c.reapAfter = max(c.reapAfter, r.window+time.Hour)
	}

	c.plans[defaultPlan] = builtinPlan(c.providers)
	for _, p := range w.Plan {
		cp := &plan{name: p.Name, def: p.Default, providers: map[int][]int{}}
		for name, caps := range p.Providers {
			cp.providers[c.providers.byName[name]] = caps
		}
		c.plans[p.Name] = cp
	}
	for _, s := range cfg.Shaping {
		o := Shaping{Connections: s.Connections, MessagesPerConnection: s.MessagesPerConnection, Rate: s.Rate}
		if s.Provider != "" {
			c.provShaping[s.Provider] = o
			continue
		}
		d := normSuffix(s.Domain)
		c.domainSites[d] = domainSitePrefix + d
		c.domainShaping[domainSitePrefix+d] = o
	}

	now := clk.Now()
	today := c.cal.date(now)
	for i, e := range cfg.Egress {
		eg := &egress{idx: i, cfg: e, key: []byte(egressPrefix + e.Name)}
		if !e.Warm {
			name := e.Plan
			if name == "" {
				name = defaultPlan
			}
			eg.plan = c.plans[name]
		}
		if err := c.loadEgress(eg, today); err != nil {
			return nil, err
		}
		c.egresses = append(c.egresses, eg)
		c.egressByName[e.Name] = eg
	}
	for i, p := range cfg.Pool {
		cp := &pool{idx: i, name: p.Name, spill: p.Overflow == "spill"}
		weights := make([]int, len(p.Egress))
		for k, m := range p.Egress {
			cp.members = append(cp.members, c.egressByName[m.Name])
			weights[k] = max(m.Weight, 1)
		}
		cp.seq = wrrSeq(weights)
		c.pools[p.Name] = cp
	}
	// Every egress is also a pool of its own, so an account (or a test) can
	// name an egress directly.
	for _, eg := range c.egresses {
		c.pools[eg.cfg.Name] = &pool{idx: len(cfg.Pool) + eg.idx, name: eg.cfg.Name, members: []*egress{eg}, seq: []int{0}}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// newAnchor builds an anchor and its start instant.
func (c *Controller) newAnchor(gen uint64, date int32, day int, warm bool) *anchor {
	a := &anchor{gen: gen, date: date, day: day, startsAt: math.MinInt64}
	if !warm {
		a.startsAt = c.cal.midnight(date + 1 - int32(day)).UnixNano()
	}
	return a
}

// wrrSeq lays out weights as a smooth weighted round-robin sequence (weights
// 3 and 1 give a a b a, not a a a b), reduced by their greatest common
// divisor. Each decision takes the next position, so over many messages every
// member gets its weighted share without a lock.
func wrrSeq(weights []int) []int {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	total := 0
	for i := range weights {
		weights[i] /= g
		total += weights[i]
	}
	cur := make([]int, len(weights))
	seq := make([]int, 0, total)
	for range total {
		best := 0
		for i, w := range weights {
			cur[i] += w
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq = append(seq, best)
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Site returns the site key of a recipient domain: one shared by every
// domain whose MX hosts all belong to one provider (the provider's name, e.g.
// "google"); otherwise "mx:" and the domain's sorted MX host list, so domains
// sharing an MX set share one queue and one set of limits. A domain that has
// its own [[shaping]] entry is its own site, "domain:" and its name. For a
// domain without MX records, pass the domain itself as its one host (the
// implicit MX of RFC 5321 §5.1). The result is stable across restarts and may
// be cached per domain for as long as its MX answer.
func (c *Controller) Site(domain string, mxHosts []string) string {
	if len(c.domainSites) > 0 {
		if s, ok := c.domainSites[normHost(domain)]; ok {
			return s
		}
	}
	return c.providers.classify(mxHosts)
}

// site returns the live state of a site, creating it on first use.
func (c *Controller) site(name string) *siteState {
	c.smu.RLock()
	s := c.sites[name]
	c.smu.RUnlock()
	if s != nil {
		return s
	}
	c.smu.Lock()
	defer c.smu.Unlock()
	if s = c.sites[name]; s != nil {
		return s
	}
	s = c.buildSite(name)
	c.sites[name] = s
	return s
}

// buildSite makes the state of a site from its name: the provider it names,
// if any, and its shaping.
func (c *Controller) buildSite(name string) *siteState {
	s := &siteState{name: name, prov: -1, shaping: defaultShaping,
		lanes: make([]atomic.Pointer[lane], len(c.egresses)),
		draws: make([]atomic.Uint64, len(c.pools))}
	if i, ok := c.providers.byName[name]; ok && !strings.Contains(name, ":") {
		s.prov, s.provider = i, name
		s.shaping = s.shaping.overlay(builtinShaping[name]).overlay(c.provShaping[name])
	} else if o, ok := c.domainShaping[name]; ok {
		s.shaping = s.shaping.overlay(o)
	}
	return s
}

// lockLane returns the live lane of (eg, site), locked, creating or loading
// it on first use. s is the site's state as the caller knows it; the one in
// use is returned with the lane (a site may have been reaped meanwhile).
func (c *Controller) lockLane(s *siteState, eg *egress, now time.Time) (*lane, *siteState) {
	for {
		l := s.lanes[eg.idx].Load()
		if l == nil {
			var evs []Event
			s.mu.Lock()
			if !s.dead {
				if l = s.lanes[eg.idx].Load(); l == nil {
					l = c.newLane(eg, s, now, false, &evs)
					s.lanes[eg.idx].Store(l)
				}
			}
			s.mu.Unlock()
			c.emit(evs)
		}
		if l != nil {
			l.mu.Lock()
			if !l.dead {
				return l, s
			}
			l.mu.Unlock()
		}
		s = c.site(s.name)
	}
}

// newLane builds a lane from its persisted record, or a fresh one. A record
// idle for longer than warmup.idle_restart is forgotten: the provider starts
// again as if never seen.
func (c *Controller) newLane(eg *egress, s *siteState, now time.Time, probe bool, evs *[]Event) *lane {
	rec, ok := c.loadLane(laneKey(eg.cfg.Name, s.name))
	return c.laneFromRec(eg, s, rec, ok, now, probe, evs)
}

// laneFromRec builds a lane from a record (found) or afresh.
func (c *Controller) laneFromRec(eg *egress, s *siteState, rec laneRec, ok bool, now time.Time, probe bool, evs *[]Event) *lane {
	l := &lane{c: c, eg: eg, site: s, key: laneKey(eg.cfg.Name, s.name), probe: probe}
	if eg.plan != nil {
		l.caps = eg.plan.caps(s.prov)
	}
	today := c.cal.date(now)
	if ok {
		last := rec.LastSent
		if last == 0 {
			last = rec.Date
		}
		if c.idleDays > 0 && today-last > c.idleDays && rec.State != StatePaused {
			ok = false
		}
	}
	a := eg.anchor.Load()
	if ok {
		l.rec = rec
		l.setDate(rec.Date)
		if rec.Gen == a.gen {
			l.anchor = a
		}
	} else {
		l.rec = laneRec{V: 1, Gen: a.gen}
		l.anchor = a
		l.setDate(today)
		if l.planned() {
			l.rec.Day = a.dayOn(today, c.sendingDays)
		}
		l.rec.State = l.baseState()
		if !probe {
			c.checkIdle(eg, today, now, evs)
		}
		l.markDirty()
	}
	l.nextCheck = math.MinInt64 // refresh on first use
	return l
}

// checkIdle restarts an egress's warm-up at day 1 when it has sent nothing
// for longer than warmup.idle_restart (SendGrid: re-warm after 30 idle days,
// PROVIDERS.md §4b [SG-a]).
func (c *Controller) checkIdle(eg *egress, today int32, now time.Time, evs *[]Event) {
	if eg.plan == nil || c.idleDays <= 0 {
		return
	}
	last := eg.lastSent.Load()
	if last == 0 || today-last <= c.idleDays {
		return
	}
	eg.mu.Lock()
	if eg.lastSent.Load() != last {
		eg.mu.Unlock()
		return
	}
	old := eg.anchor.Load()
	eg.anchor.Store(c.newAnchor(old.gen+1, today, 1, false))
	eg.lastSent.Store(0)
	eg.dirty.Store(true)
	eg.mu.Unlock()
	*evs = append(*evs, Event{Time: c.cal.midnight(today), Egress: eg.cfg.Name, Day: 1,
		PrevDay: old.dayOn(today, c.sendingDays), Cap: -1, Cause: "idle-restart"})
}

func (c *Controller) emit(evs []Event) {
	if c.onEvent == nil {
		return
	}
	for _, e := range evs {
		c.onEvent(e)
	}
}

// kickFlush asks Run to persist soon (a state change).
func (c *Controller) kickFlush() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Reserve decides whether one message for site may be sent now through
// pool (a [[pool]] name, or an egress name for that egress alone), at the
// given priority (0 normal .. MaxPriority; higher goes first when capacity is
// short). When it may, the Decision names the egress and the message has been
// counted against today's cap of (egress, site): send it, or give the count
// back with Release if no attempt is made. When it may not, the Decision says
// why and when to ask again.
//
// The egress is drawn by weight; in a pool with overflow "spill", a message
// the drawn egress cannot send goes to a warm egress of the pool if one can
// take it now. Egresses not started yet, or paused as a whole by an
// operator, are left out of the draw.
func (c *Controller) Reserve(pool, site string, priority int, now time.Time) Decision {
	p := c.pools[pool]
	if p == nil {
		return Decision{Site: site, Reason: ReasonNoRoute, RetryAt: now.Add(recheck)}
	}
	prio := min(max(priority, 0), MaxPriority)
	n := now.UnixNano()
	s := c.site(site)
	drawn := c.draw(p, s, n)
	if drawn < 0 {
		earliest, why := int64(math.MaxInt64), Reason("")
		for _, m := range p.members {
			if _, at, r := m.available(n); at < earliest {
				earliest, why = at, r
			}
		}
		return Decision{Site: site, Reason: why, RetryAt: time.Unix(0, earliest), CapWait: why.capWait()}
	}
	var d Decision
	d, s = c.tryLane(s, p.members[drawn], prio, false, now)
	if d.OK || !p.spill {
		return d
	}
	for j := 1; j < len(p.members); j++ {
		m := p.members[(drawn+j)%len(p.members)]
		if ok, _, _ := m.available(n); !ok {
			continue
		}
		var w Decision
		w, s = c.tryLane(s, m, prio, true, now)
		if w.OK {
			w.Spilled = true
			return w
		}
		if w.Reason != reasonNotWarm && w.RetryAt.Before(d.RetryAt) {
			d.RetryAt = w.RetryAt
		}
	}
	return d
}

// draw picks the pool member for the next message: the next position of the
// pool's weighted sequence, skipping members that cannot be drawn now (not
// started, paused as a whole), so that the others keep their relative
// weights. It returns -1 when no member is available.
func (c *Controller) draw(p *pool, s *siteState, n int64) int {
	if len(p.members) == 1 {
		if ok, _, _ := p.members[0].available(n); ok {
			return 0
		}
		return -1
	}
	start := s.draws[p.idx].Add(1)
	// Scanning the sequence keeps the weights exact; past a bounded number of
	// positions (a long sequence of mostly unavailable members), take the
	// first available member in order.
	for j := range uint64(min(len(p.seq), 64)) {
		k := p.seq[(start+j)%uint64(len(p.seq))]
		if ok, _, _ := p.members[k].available(n); ok {
			return k
		}
	}
	for k, m := range p.members {
		if ok, _, _ := m.available(n); ok {
			return k
		}
	}
	return -1
}

func (c *Controller) tryLane(s *siteState, eg *egress, prio int, warmOnly bool, now time.Time) (Decision, *siteState) {
	l, s := c.lockLane(s, eg, now)
	var evs []Event
	d := l.try(now, prio, warmOnly, &evs)
	l.mu.Unlock()
	c.emit(evs)
	return d, s
}

// Release gives back a reservation that was not used: no attempt was made
// (the connection failed before the message was offered, kiln is shutting
// down). A message that was offered and deferred keeps its count: the
// provider saw it.
func (c *Controller) Release(d Decision, now time.Time) {
	eg := c.egressByName[d.Egress]
	if !d.OK || eg == nil {
		return
	}
	l, _ := c.lockLane(c.site(d.Site), eg, now)
	if l.rec.Date == d.date && l.rec.Sent > 0 {
		l.rec.Sent--
		l.markDirty()
	}
	l.mu.Unlock()
}

// Observe reports what the remote said about one message sent from egress to
// site: one call per recipient outcome, and one per complaint (feedback loop
// report) when it arrives. Signals feed the adaptive rules; a rule that fires
// holds, steps back or pauses the (egress, site) and emits an Event.
func (c *Controller) Observe(egress, site string, sig Signal, now time.Time) {
	eg := c.egressByName[egress]
	if eg == nil || sig == SignalNone || sig >= numSignals {
		return
	}
	l, _ := c.lockLane(c.site(site), eg, now)
	var evs []Event
	l.observe(now, sig, &evs)
	l.mu.Unlock()
	c.emit(evs)
}

// Shaping returns how egress may talk to site now: the provider's (or
// domain's) limits, with fewer connections while the plan is in its first
// two weeks, and one connection at the backoff rate during a backoff. The
// delivery code applies Connections and MessagesPerConnection; Reserve
// already applies Rate.
func (c *Controller) Shaping(egress, site string, now time.Time) Shaping {
	s := c.site(site)
	eg := c.egressByName[egress]
	if eg == nil {
		return s.shaping
	}
	l, s := c.lockLane(s, eg, now)
	defer l.mu.Unlock()
	var evs []Event
	if now.UnixNano() >= l.nextCheck || l.anchor != eg.anchor.Load() {
		l.refresh(now, &evs)
	}
	defer c.emit(evs)
	sh := s.shaping
	if l.planned() && l.cap >= 0 {
		if wc := warmupConnections(l.rec.Day); wc > 0 {
			sh.Connections = min(sh.Connections, wc)
		}
	}
	if l.rec.BackoffUntil > now.UnixNano() {
		sh.Connections = 1
		sh.Rate = min(sh.Rate, Rate(c.backoffRate))
	}
	return sh
}

// Run persists counters every second (and soon after a state change),
// brings due lanes up to date so that pause ends and day changes are
// reported when they happen, reaps idle keys from memory and forgets stale
// ones in the store. Call it once, in its own goroutine; it returns when ctx
// is done, after a last flush.
func (c *Controller) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return c.Flush()
		case <-c.clk.After(time.Second):
		case <-c.kick:
		}
		c.sweep(c.clk.Now())
	}
}

// Close persists everything. The badger DB stays open: it belongs to the
// caller.
func (c *Controller) Close() error { return c.Flush() }

// Err returns the last error the store gave (a failed write or an unreadable
// record), or nil.
func (c *Controller) Err() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

func (c *Controller) setErr(err error) {
	c.errMu.Lock()
	c.err = err
	c.errMu.Unlock()
}

// eachSite calls fn for every live site.
func (c *Controller) eachSite(fn func(*siteState)) {
	c.smu.RLock()
	list := make([]*siteState, 0, len(c.sites))
	for _, s := range c.sites {
		list = append(list, s)
	}
	c.smu.RUnlock()
	for _, s := range list {
		fn(s)
	}
}

// sweep is Run's periodic work.
func (c *Controller) sweep(now time.Time) {
	n := now.UnixNano()
	c.eachSite(func(s *siteState) {
		for i := range s.lanes {
			l := s.lanes[i].Load()
			if l == nil {
				continue
			}
			var evs []Event
			l.mu.Lock()
			if !l.dead && (n >= l.nextCheck || l.anchor != l.eg.anchor.Load()) {
				l.refresh(now, &evs)
			}
			l.mu.Unlock()
			c.emit(evs)
		}
	})
	if err := c.Flush(); err != nil {
		c.setErr(err)
	}
	if last := c.lastReap.Load(); n-last >= int64(time.Minute) && c.lastReap.CompareAndSwap(last, n) {
		c.reap(now)
	}
	if last := c.lastForget.Load(); n-last >= int64(24*time.Hour) && c.lastForget.CompareAndSwap(last, n) {
		if err := c.forget(now); err != nil {
			c.setErr(err)
		}
	}
}

// reap drops sites whose lanes have all been idle for reapAfter (longer
// than any rule's window), with nothing unsaved, no pause, no backoff and no
// waiting priority. Their records stay in the store and are read again on
// next use.
func (c *Controller) reap(now time.Time) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	n := now.UnixNano()
	idle := n - int64(c.reapAfter)
	c.eachSite(func(s *siteState) {
		s.mu.Lock()
		defer s.mu.Unlock()
		var locked []*lane
		ok := true
		for i := range s.lanes {
			l := s.lanes[i].Load()
			if l == nil {
				continue
			}
			l.mu.Lock()
			locked = append(locked, l)
			busy := l.lastUse > idle || l.dirty || l.rec.State == StatePaused || l.rec.BackoffUntil > n
			for _, w := range l.waitUntil {
				busy = busy || w > n
			}
			if busy {
				ok = false
				break
			}
		}
		if ok {
			for _, l := range locked {
				l.dead = true
			}
			s.dead = true
			c.smu.Lock()
			if c.sites[s.name] == s {
				delete(c.sites, s.name)
			}
			c.smu.Unlock()
		}
		for _, l := range locked {
			l.mu.Unlock()
		}
	})
}

func (c *Controller) egressNamed(name string) (*egress, error) {
	eg := c.egressByName[name]
	if eg == nil {
		return nil, fmt.Errorf("warmup: no egress named %q", name)
	}
	return eg, nil
}
