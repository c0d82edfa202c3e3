package warmup

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// State is where one (egress, site) stands in its warm-up.
type State string

const (
	StateRamping State = "ramping" // following the plan; the day advances at local midnight
	StateHeld    State = "held"    // adaptive control holds the plan: today's day does not count
	StatePaused  State = "paused"  // nothing is sent until the cool-down ends or an operator resumes
	StateWarm    State = "warm"    // no warm-up cap: the egress is warm, or the plan is complete
)

const (
	hourNs = int64(time.Hour)
	// indefinite is PausedUntil for a pause that lasts until an operator
	// resumes.
	indefinite = int64(math.MaxInt64)
	// recheck is when a caller should ask again about an egress paused until
	// an operator resumes it.
	recheck = 5 * time.Minute
	// priorityGrace is how long a refused request of one priority class keeps
	// lower classes back after the moment it was told to come back: long
	// enough for a busy scheduler to return, short enough that capacity is not
	// left idle when nobody of that class is waiting any more.
	priorityGrace = 2 * time.Second
)

// laneRec is the persisted state of one (egress, site). Counters are
// absolute values for the day in Date, so writing one twice never counts
// twice.
type laneRec struct {
	V            int             `json:"v"`
	Gen          uint64          `json:"gen"`  // the egress anchor generation Day derives from
	Date         int32           `json:"date"` // local day number Sent and N are for
	Day          int             `json:"day"`  // plan day on Date (0: not started)
	Sent         int             `json:"sent"` // reservations on Date
	N            [numSignals]int `json:"n"`    // signals observed on Date, by kind
	LastSent     int32           `json:"last_sent,omitempty"`
	State        State           `json:"state"`
	HoldDate     int32           `json:"hold,omitempty"` // the plan does not advance at the end of this day
	PausedUntil  int64           `json:"paused_until,omitempty"`
	BackoffUntil int64           `json:"backoff_until,omitempty"`
	LastSignal   Signal          `json:"last_signal,omitempty"`
	LastSignalAt int64           `json:"last_signal_at,omitempty"`
	Cause        string          `json:"cause,omitempty"` // what made the last change of state or day
	CauseAt      int64           `json:"cause_at,omitempty"`
}

// lane is the live state of one (egress, site): the persisted record plus
// what is derived from it (today's bounds, cap, limiter). Its mutex guards
// everything; a lane is never touched without it.
type lane struct {
	mu    sync.Mutex
	dead  bool // reaped: the caller must look the lane up again
	probe bool // a throw-away copy for status: no side effects

	c    *Controller
	eg   *egress
	site *siteState
	caps []int // plan caps for this site; nil: no warm-up cap (warm egress)
	key  []byte

	rec    laneRec
	anchor *anchor // the egress anchor rec.Day was derived from
	dirty  bool

	// derived from rec.Date
	dayEnd, winStart, winEnd, nextWin int64
	// derived by retune
	nextCheck int64
	cap       int // today's cap: -1 none, 0 not started
	lim       *rate.Limiter
	limRate   float64 // 0: no limiter (unlimited)
	spread    bool    // the limiter's pace is the warm-up spread, not shaping

	waitUntil [MaxPriority + 1]int64 // per priority class: refused and expected back until
	ad        *adaptive
	lastUse   int64
}

func (l *lane) planned() bool { return l.caps != nil }

func (l *lane) setDate(d int32) {
	cal := &l.c.cal
	l.rec.Date = d
	l.dayEnd = cal.midnight(d + 1).UnixNano()
	l.winStart = cal.at(d, cal.winStart).UnixNano()
	l.winEnd = cal.at(d, cal.winEnd).UnixNano()
	l.nextWin = cal.at(d+1, cal.winStart).UnixNano()
}

func (l *lane) markDirty() {
	if l.dirty || l.probe {
		return
	}
	l.dirty = true
	l.c.dmu.Lock()
	l.c.dirty = append(l.c.dirty, l)
	l.c.dmu.Unlock()
}

// baseState is the state the lane has when nothing pauses it.
func (l *lane) baseState() State {
	switch {
	case capFor(l.caps, l.rec.Day) < 0:
		return StateWarm
	case l.rec.HoldDate == l.rec.Date:
		return StateHeld
	}
	return StateRamping
}

func (l *lane) event(at int64, from State, prevDay int, cause string, sig Signal, until int64) Event {
	e := Event{
		Time: time.Unix(0, at), Egress: l.eg.cfg.Name, Site: l.site.name, Provider: l.site.provider,
		From: from, To: l.rec.State, Day: l.rec.Day, PrevDay: prevDay, Cap: capFor(l.caps, l.rec.Day),
		Cause: cause, Signal: sig,
	}
	if until > 0 && until != indefinite {
		e.Until = time.Unix(0, until)
	}
	if !l.planned() {
		e.Day, e.PrevDay = 0, 0
	}
	l.rec.Cause, l.rec.CauseAt = cause, at
	return e
}

// refresh brings the lane to now: a changed egress anchor, pause ends and day
// rollovers in the order they happened, the end of a backoff, and then the
// cap and pace for now.
func (l *lane) refresh(now time.Time, evs *[]Event) {
	n := now.UnixNano()
	if a := l.eg.anchor.Load(); l.anchor != a {
		l.rederive(a, now)
	}
	for {
		if l.rec.State == StatePaused && l.rec.PausedUntil <= n && l.rec.PausedUntil <= l.dayEnd {
			l.resume(l.rec.PausedUntil, "cooldown-over", evs)
			continue
		}
		if n >= l.dayEnd {
			l.rollover(now, evs)
			continue
		}
		break
	}
	if a := l.eg.anchor.Load(); l.anchor != a { // an idle restart at rollover
		l.rederive(a, now)
	}
	if l.rec.BackoffUntil != 0 && l.rec.BackoffUntil <= n {
		l.rec.BackoffUntil = 0
		l.markDirty()
	}
	l.retune(now)
}

// rederive takes the plan day from a new egress anchor (SetDay, an idle
// restart, a changed start date). Today's counters stay if the lane is
// already on today.
func (l *lane) rederive(a *anchor, now time.Time) {
	today := l.c.cal.date(now)
	if l.rec.Date != today {
		l.setDate(today)
		l.rec.Sent, l.rec.N = 0, [numSignals]int{}
	}
	l.anchor = a
	l.rec.Gen = a.gen
	if l.planned() {
		l.rec.Day = a.dayOn(today, l.c.sendingDays)
	}
	l.rec.HoldDate = 0
	if l.rec.State != StatePaused {
		l.rec.State = l.baseState()
	}
	l.markDirty()
}

// rollover ends the lane's day. The plan advances one day unless the day was
// held or paused, or (counting sending days) nothing was sent on it.
func (l *lane) rollover(now time.Time, evs *[]Event) {
	c := l.c
	n := now.UnixNano()
	d := l.rec.Date
	today := max(c.cal.date(now), d+1)
	paused := l.rec.State == StatePaused
	held := paused || l.rec.HoldDate == d
	from, prevDay := l.rec.State, l.rec.Day
	if l.planned() && l.rec.Day >= 1 && !held && (!c.sendingDays || l.rec.Sent > 0) && l.rec.Day <= len(l.caps) {
		l.rec.Day++
	}
	next := d + 1
	switch {
	case paused:
		if l.rec.PausedUntil > n {
			next = today // paused all along: none of these days counts
		}
		l.rec.HoldDate = next
	case today > next:
		// Days on which the lane was not touched sent nothing: they count
		// on the calendar, not as sending days.
		if l.planned() && l.rec.Day >= 1 && !c.sendingDays {
			l.rec.Day = min(l.rec.Day+int(today-next), len(l.caps)+1)
		}
		next = today
	}
	l.setDate(next)
	l.rec.Sent, l.rec.N = 0, [numSignals]int{}
	if l.planned() && l.rec.Day < 1 {
		l.rec.Day = l.anchor.dayOn(next, c.sendingDays)
	}
	if !paused {
		l.rec.State = l.baseState()
		if l.rec.State != from {
			cause := "new-day"
			if l.rec.State == StateWarm {
				cause = "plan-complete"
			}
			*evs = append(*evs, l.event(c.cal.midnight(next).UnixNano(), from, prevDay, cause, SignalNone, 0))
		}
	}
	if !l.probe {
		c.checkIdle(l.eg, next, now, evs)
	}
	l.markDirty()
}

// resume ends a pause at instant at.
func (l *lane) resume(at int64, cause string, evs *[]Event) {
	from := l.rec.State
	l.rec.PausedUntil = 0
	l.rec.State = l.baseState()
	if l.ad != nil {
		l.ad.reset() // judge afresh: the signals that paused are history
	}
	*evs = append(*evs, l.event(at, from, l.rec.Day, cause, SignalNone, 0))
	l.markDirty()
}

// retune recomputes today's cap, the limiter's pace and when the lane must
// next be refreshed (the next hour boundary in the window, the window's
// start, midnight, the end of a pause or backoff).
func (l *lane) retune(now time.Time) {
	c := l.c
	n := now.UnixNano()
	l.cap = capFor(l.caps, l.rec.Day)
	next := l.dayEnd
	r := float64(l.site.shaping.Rate)
	if r <= 0 {
		r = math.Inf(1)
	}
	spread := false
	if l.rec.BackoffUntil > n {
		r = min(r, c.backoffRate)
		next = min(next, l.rec.BackoffUntil)
	}
	if l.cap > 0 {
		switch {
		case n < l.winStart:
			next = min(next, l.winStart)
		case n < l.winEnd:
			hourEnd := l.winStart + ((n-l.winStart)/hourNs+1)*hourNs
			next = min(next, hourEnd, l.winEnd)
			if sr := spreadRate(l.cap-l.rec.Sent, now, time.Unix(0, l.winEnd)); sr > 0 && sr < r {
				r, spread = sr, true
			}
		}
	}
	if l.rec.State == StatePaused {
		next = min(next, l.rec.PausedUntil)
	}
	l.nextCheck = next
	l.spread = spread
	switch {
	case math.IsInf(r, 1):
		l.lim, l.limRate = nil, 0
	case l.lim == nil:
		l.lim = rate.NewLimiter(rate.Limit(r), burstFor(r))
		l.limRate = r
	case r != l.limRate:
		l.lim.SetLimitAt(now, rate.Limit(r))
		l.lim.SetBurstAt(now, burstFor(r))
		l.limRate = r
	}
}

// burstFor allows one second's worth of messages at once, and at least one:
// slow paces (a few an hour early in a warm-up) send one message at a time,
// evenly spaced.
func burstFor(r float64) int { return max(1, min(int(r), 10000)) }

// try decides one request on a locked lane. warmOnly asks only whether the
// lane can take spilled mail (no warm-up cap).
func (l *lane) try(now time.Time, prio int, warmOnly bool, evs *[]Event) Decision {
	n := now.UnixNano()
	l.lastUse = n
	if n >= l.nextCheck || l.anchor != l.eg.anchor.Load() {
		l.refresh(now, evs)
	}
	d := Decision{Egress: l.eg.cfg.Name, Site: l.site.name, date: l.rec.Date}
	if warmOnly && l.cap >= 0 {
		d.Reason = reasonNotWarm
		return d
	}
	refuse := func(r Reason, at int64, register bool) Decision {
		d.Reason, d.RetryAt, d.CapWait = r, time.Unix(0, at), r.capWait()
		if register {
			if w := at + int64(priorityGrace); w > l.waitUntil[prio] {
				l.waitUntil[prio] = w
			}
		}
		return d
	}
	if l.rec.State == StatePaused {
		if l.rec.PausedUntil == indefinite {
			return refuse(ReasonPaused, n+int64(recheck), false)
		}
		return refuse(ReasonPaused, l.rec.PausedUntil, false)
	}
	if l.cap == 0 {
		return refuse(ReasonNotStarted, l.nextWin, false)
	}
	if l.cap > 0 {
		switch {
		case l.rec.Sent >= l.cap:
			return refuse(ReasonCap, l.nextWin, true)
		case n < l.winStart:
			return refuse(ReasonWindow, l.winStart, true)
		case n >= l.winEnd:
			return refuse(ReasonWindow, l.nextWin, true)
		}
	}
	for q := MaxPriority; q > prio; q-- {
		if l.waitUntil[q] > n {
			return refuse(ReasonPriority, l.waitUntil[q], true)
		}
	}
	if l.lim != nil && !l.lim.AllowN(now, 1) {
		wait := (1 - l.lim.TokensAt(now)) / l.limRate
		at := n + int64(math.Ceil(wait*1e9))
		if l.spread {
			return refuse(ReasonSpread, at, true)
		}
		return refuse(ReasonRate, at, true)
	}
	l.rec.Sent++
	if l.rec.LastSent != l.rec.Date {
		l.rec.LastSent = l.rec.Date
		if l.eg.lastSent.Load() < l.rec.Date {
			l.eg.lastSent.Store(l.rec.Date)
			l.eg.dirty.Store(true)
		}
	}
	l.markDirty()
	d.OK = true
	return d
}

// observe records one signal and applies the rule it fires, if any.
func (l *lane) observe(now time.Time, sig Signal, evs *[]Event) {
	c := l.c
	n := now.UnixNano()
	l.lastUse = n
	if n >= l.nextCheck || l.anchor != l.eg.anchor.Load() {
		l.refresh(now, evs)
	}
	l.rec.N[sig]++
	if sig != SignalDelivered {
		l.rec.LastSignal, l.rec.LastSignalAt = sig, n
	}
	l.markDirty()
	if l.rec.State == StatePaused || len(c.rules) == 0 {
		return // replies to mail sent before the pause say nothing new
	}
	if l.ad == nil {
		l.ad = newAdaptive(c.rules, c.windows)
	}
	r := l.ad.observe(c.rules, n, sig)
	if r == nil {
		return
	}
	from, prevDay := l.rec.State, l.rec.Day
	switch r.action {
	case actHold, actStepBack:
		backoffWasOn := l.rec.BackoffUntil > n
		if r.action == actStepBack && l.planned() && l.rec.Day > 1 {
			l.rec.Day = min(l.rec.Day, len(l.caps)+1) - 1
		}
		if capFor(l.caps, l.rec.Day) >= 0 {
			l.rec.HoldDate = l.rec.Date
		}
		l.rec.State = l.baseState()
		l.rec.BackoffUntil = n + int64(c.backoff)
		if l.rec.State != from || l.rec.Day != prevDay || !backoffWasOn {
			*evs = append(*evs, l.event(n, from, prevDay, r.name, sig, l.rec.BackoffUntil))
		}
	case actPause:
		if l.planned() && c.pauseStepBack > 0 && l.rec.Day > 1 {
			l.rec.Day = max(1, min(l.rec.Day, len(l.caps)+1)-c.pauseStepBack)
		}
		l.rec.HoldDate = l.rec.Date
		l.rec.State = StatePaused
		l.rec.PausedUntil = n + int64(r.cooldown)
		l.rec.BackoffUntil = 0
		l.ad.reset()
		*evs = append(*evs, l.event(n, from, prevDay, r.name, sig, l.rec.PausedUntil))
	}
	l.retune(now)
	c.kickFlush()
}

// pauseBy is an operator's pause of this lane until until (indefinite: until
// resumed). It does not step the plan back.
func (l *lane) pauseBy(now time.Time, until int64, evs *[]Event) {
	n := now.UnixNano()
	if n >= l.nextCheck || l.anchor != l.eg.anchor.Load() {
		l.refresh(now, evs)
	}
	from := l.rec.State
	l.rec.State = StatePaused
	l.rec.PausedUntil = until
	l.rec.HoldDate = l.rec.Date
	*evs = append(*evs, l.event(n, from, l.rec.Day, "operator-pause", SignalNone, until))
	l.markDirty()
	l.retune(now)
}

// resumeBy is an operator's resume: it ends a pause (adaptive or operator)
// and a backoff.
func (l *lane) resumeBy(now time.Time, evs *[]Event) {
	n := now.UnixNano()
	if n >= l.nextCheck || l.anchor != l.eg.anchor.Load() {
		l.refresh(now, evs)
	}
	l.rec.BackoffUntil = 0
	if l.rec.State == StatePaused {
		l.resume(n, "operator-resume", evs)
	}
	l.markDirty()
	l.retune(now)
}
