package warmup

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Status is a snapshot of every egress and every site it has sent to: what
// "kiln warmup status" shows.
type Status struct {
	Time     time.Time      `json:"time"`
	Date     string         `json:"date"` // today in Timezone
	Timezone string         `json:"timezone"`
	Window   string         `json:"window"`
	Days     string         `json:"days"` // calendar or sending
	Egress   []EgressStatus `json:"egress"`
	Error    string         `json:"error,omitempty"` // the store's last error, if any
}

// EgressStatus is one egress and its sites.
type EgressStatus struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	EHLO   string `json:"ehlo,omitempty"`
	Plan   string `json:"plan,omitempty"`
	Warm   bool   `json:"warm"`
	// Start is the local date of plan day 1 (after any SetDay or restart).
	Start string `json:"start,omitempty"`
	// Day is the plan day a site this egress has not sent to yet starts at.
	Day         int          `json:"day"`
	Paused      bool         `json:"paused"`
	PausedUntil time.Time    `json:"paused_until,omitzero"` // zero with Paused: until resumed
	Sites       []SiteStatus `json:"sites"`
}

// SiteStatus is one (egress, site).
type SiteStatus struct {
	Site     string `json:"site"`
	Provider string `json:"provider,omitempty"`
	State    State  `json:"state"`
	Day      int    `json:"day"`       // plan day (0 for a warm egress)
	PlanDays int    `json:"plan_days"` // length of the plan for this site (0 for a warm egress)
	Cap      int    `json:"cap"`       // today's cap, -1 for none
	Sent     int    `json:"sent"`      // reserved today
	Left     int    `json:"left"`      // cap - sent, -1 for none
	// Hourly is the pace now, in messages per hour: the spread of what is
	// left over the rest of the window, or the shaping rate; -1 for none.
	Hourly       int       `json:"hourly"`
	Delivered    int       `json:"delivered"`
	Deferred     int       `json:"deferred"`
	RateLimited  int       `json:"rate_limited"`
	Blocked      int       `json:"blocked"`
	Complaints   int       `json:"complaints"`
	PausedUntil  time.Time `json:"paused_until,omitzero"`
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	LastSignal   Signal    `json:"last_signal,omitempty"` // last signal other than delivered
	LastSignalAt time.Time `json:"last_signal_at,omitzero"`
	Cause        string    `json:"cause,omitempty"` // what made the last change
	CauseAt      time.Time `json:"cause_at,omitzero"`
}

// PlanView is the rest of an egress's plan, day by day: what
// "kiln warmup plan --egress NAME" shows.
type PlanView struct {
	Egress   string     `json:"egress"`
	Plan     string     `json:"plan,omitempty"`
	Warm     bool       `json:"warm"`
	Date     string     `json:"date"`
	Timezone string     `json:"timezone"`
	Days     string     `json:"days"`
	Window   string     `json:"window"`
	Sites    []SitePlan `json:"sites"`
}

// SitePlan is the rest of the plan for one site. Site "*" stands for every
// site the egress has not sent to yet that has no list of its own in the
// plan. Dates assume no further hold or pause (and, counting sending days,
// mail on every day): they are the earliest.
type SitePlan struct {
	Site     string    `json:"site"`
	Provider string    `json:"provider,omitempty"`
	State    State     `json:"state"`
	Day      int       `json:"day"`
	Days     []PlanDay `json:"days"`
}

// PlanDay is one day of a plan.
type PlanDay struct {
	Day    int    `json:"day"`
	Date   string `json:"date"`
	Cap    int    `json:"cap"`
	Hourly int    `json:"hourly"` // the even hourly pace: cap over the window's hours
}

func (c *Controller) daysMode() string {
	if c.sendingDays {
		return "sending"
	}
	return "calendar"
}

func (c *Controller) windowString() string {
	f := func(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }
	return f(c.cal.winStart) + "-" + f(c.cal.winEnd)
}

// Status returns the state of every egress and every site it has sent to
// (including sites kept only in the store), as of now.
func (c *Controller) Status(now time.Time) Status {
	st := Status{Time: now, Date: c.cal.format(c.cal.date(now)), Timezone: c.cal.loc.String(),
		Window: c.windowString(), Days: c.daysMode()}
	for _, eg := range c.egresses {
		st.Egress = append(st.Egress, c.egressStatus(eg, now))
	}
	if err := c.Err(); err != nil {
		st.Error = err.Error()
	}
	return st
}

func (c *Controller) egressStatus(eg *egress, now time.Time) EgressStatus {
	n := now.UnixNano()
	today := c.cal.date(now)
	a := eg.anchor.Load()
	es := EgressStatus{Name: eg.cfg.Name, Source: eg.cfg.Source, EHLO: eg.cfg.EHLO, Warm: eg.plan == nil}
	if eg.plan != nil {
		es.Plan = eg.plan.name
		es.Day = max(a.dayOn(today, c.sendingDays), 0)
		es.Start = c.cal.format(a.date + 1 - int32(a.day))
	}
	if p := eg.pausedUntil.Load(); p > n {
		es.Paused = true
		if p != indefinite {
			es.PausedUntil = time.Unix(0, p)
		}
	}
	for _, l := range c.egressLanes(eg, now) {
		es.Sites = append(es.Sites, l)
	}
	sort.Slice(es.Sites, func(i, j int) bool { return es.Sites[i].Site < es.Sites[j].Site })
	return es
}

// egressLanes snapshots every lane of eg: live ones, and those kept only
// in the store (brought to now on a throw-away copy).
func (c *Controller) egressLanes(eg *egress, now time.Time) []SiteStatus {
	var out []SiteStatus
	live := map[string]bool{}
	c.eachSite(func(s *siteState) {
		l := s.lanes[eg.idx].Load()
		if l == nil {
			return
		}
		var evs []Event
		l.mu.Lock()
		if !l.dead {
			live[s.name] = true
			out = append(out, l.snapshot(now, &evs))
		}
		l.mu.Unlock()
		c.emit(evs)
	})
	stored, err := c.storedLanes(eg.cfg.Name)
	if err != nil {
		c.setErr(err)
	}
	today := c.cal.date(now)
	for site, rec := range stored[eg.cfg.Name] {
		if live[site] {
			continue
		}
		last := rec.LastSent
		if last == 0 {
			last = rec.Date
		}
		if c.idleDays > 0 && today-last > c.idleDays && rec.State != StatePaused {
			continue // forgotten
		}
		l := c.laneFromRec(eg, c.buildSite(site), rec, true, now, true, nil)
		out = append(out, l.snapshot(now, new([]Event)))
	}
	return out
}

// snapshot brings a locked lane to now and describes it.
func (l *lane) snapshot(now time.Time, evs *[]Event) SiteStatus {
	n := now.UnixNano()
	if n >= l.nextCheck || l.anchor != l.eg.anchor.Load() {
		l.refresh(now, evs)
	}
	s := SiteStatus{Site: l.site.name, Provider: l.site.provider, State: l.rec.State,
		Cap: l.cap, Sent: l.rec.Sent, Left: -1, Hourly: -1,
		Delivered: l.rec.N[SignalDelivered], Deferred: l.rec.N[SignalDeferral], RateLimited: l.rec.N[SignalRate],
		Blocked: l.rec.N[SignalBlock], Complaints: l.rec.N[SignalComplaint],
		LastSignal: l.rec.LastSignal, Cause: l.rec.Cause}
	if l.planned() {
		s.Day, s.PlanDays = l.rec.Day, len(l.caps)
	}
	if l.cap >= 0 {
		s.Left = max(l.cap-l.rec.Sent, 0)
	}
	switch {
	case l.rec.State == StatePaused || (l.cap > 0 && (n < l.winStart || n >= l.winEnd)) || s.Left == 0:
		s.Hourly = 0
	case l.lim != nil:
		s.Hourly = int(math.Round(l.limRate * 3600))
	}
	if l.rec.State == StatePaused && l.rec.PausedUntil != indefinite {
		s.PausedUntil = time.Unix(0, l.rec.PausedUntil)
	}
	if l.rec.BackoffUntil > n {
		s.BackoffUntil = time.Unix(0, l.rec.BackoffUntil)
	}
	if l.rec.LastSignalAt != 0 {
		s.LastSignalAt = time.Unix(0, l.rec.LastSignalAt)
	}
	if l.rec.CauseAt != 0 {
		s.CauseAt = time.Unix(0, l.rec.CauseAt)
	}
	return s
}

// Plan returns the rest of egress's plan, day by day, for every site it has
// sent to, every provider with its own list in the plan, and "*" for the
// other sites.
func (c *Controller) Plan(egress string, now time.Time) (PlanView, error) {
	eg, err := c.egressNamed(egress)
	if err != nil {
		return PlanView{}, err
	}
	today := c.cal.date(now)
	pv := PlanView{Egress: eg.cfg.Name, Warm: eg.plan == nil, Date: c.cal.format(today),
		Timezone: c.cal.loc.String(), Days: c.daysMode(), Window: c.windowString()}
	if eg.plan == nil {
		return pv, nil
	}
	pv.Plan = eg.plan.name
	hours := c.cal.windowHours()
	rows := func(site, provider string, state State, day int, caps []int) SitePlan {
		sp := SitePlan{Site: site, Provider: provider, State: state, Day: day}
		shift := int32(0)
		if state == StateHeld || state == StatePaused {
			shift = 1 // today's day does not count: it is repeated tomorrow
		}
		for d := max(day, 1); d <= len(caps); d++ {
			date := today + int32(d-day)
			if d > day {
				date += shift
			}
			sp.Days = append(sp.Days, PlanDay{Day: d, Date: c.cal.format(date), Cap: caps[d-1], Hourly: hourly(caps[d-1], hours)})
		}
		return sp
	}
	seen := map[string]bool{}
	for _, s := range c.egressLanes(eg, now) {
		seen[s.Site] = true
		caps := eg.plan.caps(c.buildSite(s.Site).prov)
		pv.Sites = append(pv.Sites, rows(s.Site, s.Provider, s.State, s.Day, caps))
	}
	a := eg.anchor.Load()
	day := a.dayOn(today, c.sendingDays)
	base := StateRamping
	if capFor(eg.plan.def, day) < 0 {
		base = StateWarm
	}
	for i, name := range c.providers.names {
		caps, own := eg.plan.providers[i]
		if !own || seen[name] {
			continue
		}
		st := base
		if capFor(caps, day) < 0 {
			st = StateWarm
		}
		pv.Sites = append(pv.Sites, rows(name, name, st, day, caps))
	}
	sort.Slice(pv.Sites, func(i, j int) bool { return pv.Sites[i].Site < pv.Sites[j].Site })
	pv.Sites = append(pv.Sites, rows("*", "", base, day, eg.plan.def))
	return pv, nil
}

// Pause stops egress from sending to site (a site key, as Site returns, or
// a provider name) for d, or until Resume when d is 0. With site "", the
// whole egress is taken out of its pools. An operator's pause does not step
// the plan back; the paused days do not count.
func (c *Controller) Pause(egress, site string, d time.Duration, now time.Time) error {
	eg, err := c.egressNamed(egress)
	if err != nil {
		return err
	}
	until := indefinite
	if d > 0 {
		until = now.Add(d).UnixNano()
	}
	var evs []Event
	if site == "" {
		eg.mu.Lock()
		eg.pausedUntil.Store(until)
		eg.dirty.Store(true)
		eg.mu.Unlock()
		e := Event{Time: now, Egress: egress, Cause: "operator-pause", To: StatePaused, Cap: -1}
		if until != indefinite {
			e.Until = time.Unix(0, until)
		}
		evs = append(evs, e)
	} else {
		l, _ := c.lockLane(c.site(site), eg, now)
		l.pauseBy(now, until, &evs)
		l.mu.Unlock()
	}
	c.emit(evs)
	return c.Flush()
}

// Resume ends a pause, adaptive or operator's, and any backoff. With site
// "", it ends the egress's own pause and the pauses of all its sites.
func (c *Controller) Resume(egress, site string, now time.Time) error {
	eg, err := c.egressNamed(egress)
	if err != nil {
		return err
	}
	var evs []Event
	if site == "" {
		eg.mu.Lock()
		was := eg.pausedUntil.Swap(0)
		eg.dirty.Store(true)
		eg.mu.Unlock()
		if was > now.UnixNano() {
			evs = append(evs, Event{Time: now, Egress: egress, Cause: "operator-resume", From: StatePaused, Cap: -1})
		}
		c.eachSite(func(s *siteState) {
			if s.lanes[eg.idx].Load() == nil {
				return
			}
			l, _ := c.lockLane(s, eg, now)
			l.resumeBy(now, &evs)
			l.mu.Unlock()
		})
	} else {
		l, _ := c.lockLane(c.site(site), eg, now)
		l.resumeBy(now, &evs)
		l.mu.Unlock()
	}
	c.emit(evs)
	return c.Flush()
}

// SetDay puts every site of egress on plan day day from today, as if its
// warm-up had started day-1 days ago, and clears holds. Sites it has not sent
// to yet will start at that day too. Pauses stay.
func (c *Controller) SetDay(egress string, day int, now time.Time) error {
	eg, err := c.egressNamed(egress)
	if err != nil {
		return err
	}
	if eg.plan == nil {
		return fmt.Errorf("warmup: egress %q is warm: it has no plan", egress)
	}
	if day < 1 {
		return fmt.Errorf("warmup: plan day must be 1 or more, not %d", day)
	}
	today := c.cal.date(now)
	eg.mu.Lock()
	old := eg.anchor.Load()
	eg.anchor.Store(c.newAnchor(old.gen+1, today, day, false))
	eg.dirty.Store(true)
	eg.mu.Unlock()
	c.emit([]Event{{Time: now, Egress: egress, Day: day, PrevDay: old.dayOn(today, c.sendingDays), Cap: -1, Cause: "operator-set-day"}})
	// Bring live lanes onto the new anchor now, so that status and the
	// store agree at once.
	c.eachSite(func(s *siteState) {
		if s.lanes[eg.idx].Load() == nil {
			return
		}
		var evs []Event
		l, _ := c.lockLane(s, eg, now)
		l.refresh(now, &evs)
		l.mu.Unlock()
		c.emit(evs)
	})
	return c.Flush()
}
