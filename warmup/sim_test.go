package warmup

import (
	"testing"
	"time"
)

// simMsg is one queued message in the simulated scheduler.
type simMsg struct {
	enq time.Time     // when it was queued
	w   time.Duration // its site's cap-wait total when it was queued
}

type simSite struct {
	name      string
	queue     []simMsg
	next      time.Time     // when the scheduler asks next
	capWaited time.Duration // total time the site's queue waited for warm-up capacity
	today     int           // sent today, by the simulation's own count
	capToday  int           // the cap at the start of today, from status
	maxDay    int
	days      []int // sent per day
}

// TestSimulate42Days runs the built-in plan for six weeks against four
// sites with more demand than the plan allows at first. Yahoo answers 421
// (SignalRate) to everything beyond a daily volume the controller is not
// told. The simulated scheduler follows the package doc: it reserves, sends,
// reports each outcome, parks refused messages until RetryAt and does not
// count cap waits toward a message's age. It checks: no day exceeds the cap;
// Yahoo is held, paused and resumes, and settles below its threshold while
// the others keep ramping to day 42; status agrees with the simulation's own
// counts, also across a restart mid-day; no message outlives its max age
// because of the cap.
func TestSimulate42Days(t *testing.T) {
	const (
		days        = 42
		demand      = 2500 // new messages per site per day
		yahooLimit  = 1500 // hidden: Yahoo rate-limits beyond this many a day
		maxAge      = 5 * 24 * time.Hour
		restartDay  = 20
		restartHour = 14
		// Replies come back a while after the decision (the connection's
		// batch, the remote's tarpit), so a provider that starts refusing
		// refuses what is already in flight.
		latency = 5 * time.Minute
	)
	cfg := oneEgress("")
	cfg.Egress[0].Start = "2026-03-02"
	h := newHarness(t, cfg, t0)
	type reply struct {
		at   time.Time
		site *simSite
		sig  Signal
		m    simMsg
	}
	var pending []reply
	deliverReplies := func(now time.Time) {
		for len(pending) > 0 && !pending[0].at.After(now) {
			r := pending[0]
			pending = pending[1:]
			h.c.Observe("ip1", r.site.name, r.sig, r.at)
			if r.sig == SignalRate {
				r.site.queue = append(r.site.queue, r.m) // deferred: back to the queue
			}
		}
	}
	sites := []*simSite{{name: "google"}, {name: "yahoo"}, {name: "microsoft"}, {name: "mx:mx.small.example"}}
	var maxEffAge, maxRawAge time.Duration
	restarted := false

	checkStatus := func(now time.Time, when string) {
		t.Helper()
		for _, s := range sites {
			st := h.siteStatus("ip1", s.name, now)
			if st.Sent != s.today {
				t.Fatalf("%s %s: status says %d sent today, the simulation counted %d", when, s.name, st.Sent, s.today)
			}
		}
	}

	for day := 1; day <= days; day++ {
		midnight := t0.Add(time.Duration(day-1) * 24 * time.Hour)
		end := midnight.Add(24 * time.Hour)
		h.clk.Set(midnight)
		h.c.sweep(midnight) // what Run does: flush, reap
		for _, s := range sites {
			h.c.Shaping("ip1", s.name, midnight) // the scheduler sizes its connections first
			st := h.siteStatus("ip1", s.name, midnight)
			s.capToday, s.today = st.Cap, 0
			s.maxDay = max(s.maxDay, st.Day)
			for range demand {
				s.queue = append(s.queue, simMsg{enq: midnight, w: s.capWaited})
			}
			s.next = midnight
		}
		for {
			// The site due first.
			var s *simSite
			for _, c := range sites {
				if len(c.queue) > 0 && c.next.Before(end) && (s == nil || c.next.Before(s.next)) {
					s = c
				}
			}
			if s == nil {
				break
			}
			now := s.next
			deliverReplies(now)
			if day == restartDay && !restarted && now.Hour() >= restartHour {
				checkStatus(now, "before restart")
				h.restart()
				checkStatus(now, "after restart")
				restarted = true
			}
			d := h.c.Reserve("ip1", s.name, 0, now)
			if !d.OK {
				if d.CapWait {
					s.capWaited += d.RetryAt.Sub(now)
				}
				s.next = d.RetryAt
				continue
			}
			m := s.queue[0]
			s.queue = s.queue[1:]
			s.today++
			maxRawAge = max(maxRawAge, now.Sub(m.enq))
			maxEffAge = max(maxEffAge, now.Sub(m.enq)-(s.capWaited-m.w))
			sig := SignalDelivered
			if s.name == "yahoo" && s.today > yahooLimit {
				sig = SignalRate
			}
			pending = append(pending, reply{at: now.Add(latency), site: s, sig: sig, m: m})
		}
		deliverReplies(end.Add(-time.Nanosecond))
		checkStatus(end.Add(-time.Nanosecond), "end of day")
		for _, s := range sites {
			if s.capToday >= 0 && s.today > s.capToday {
				t.Errorf("day %d %s: sent %d, over the day's cap %d", day, s.name, s.today, s.capToday)
			}
			s.days = append(s.days, s.today)
		}
	}

	evs := h.takeEvents()
	byCause := map[string]int{}
	for _, e := range evs {
		if e.Site == "yahoo" {
			byCause[e.Cause]++
		} else if e.Site != "" && e.Cause != "new-day" && e.Cause != "plan-complete" {
			t.Errorf("unexpected event for another site: %+v", e)
		}
	}
	if byCause["rate-hold"] == 0 || byCause["rate-pause"] == 0 || byCause["cooldown-over"] == 0 {
		t.Errorf("yahoo was not held, paused and resumed: %v", byCause)
	}
	last := t0.Add((days-1)*24*time.Hour + 21*time.Hour)
	for _, s := range sites {
		st := h.siteStatus("ip1", s.name, last)
		switch s.name {
		case "yahoo":
			if s.maxDay > 9 || st.Day > 9 {
				t.Errorf("yahoo ramped on: reached day %d, now %d", s.maxDay, st.Day)
			}
			if peak := maxInt(s.days[20:]); peak > yahooLimit+60 {
				t.Errorf("yahoo still sends %d a day in the last three weeks, threshold %d", peak, yahooLimit)
			}
		default:
			if st.Day != days || st.State != StateRamping {
				t.Errorf("%s: day %d state %s at the end, want day %d ramping", s.name, st.Day, st.State, days)
			}
		}
	}
	if maxEffAge > maxAge {
		t.Errorf("a message waited %v outside the cap, over its max age %v", maxEffAge, maxAge)
	}
	if maxRawAge <= maxAge {
		t.Errorf("no message waited longer than its max age (%v): the simulation does not test cap-wait credit", maxRawAge)
	}
	t.Logf("sent per day: google %v", sites[0].days)
	t.Logf("sent per day: yahoo %v", sites[1].days)
	t.Logf("yahoo events %v; longest wait %v, not counting cap waits %v", byCause, maxRawAge, maxEffAge)

	// The plan shows the same day and cap as status.
	pv, err := h.c.Plan("ip1", last)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range pv.Sites {
		if sp.Site == "*" || sp.Site == "microsoft365" { // not a site of the simulation
			continue
		}
		st := h.siteStatus("ip1", sp.Site, last)
		if sp.Day != st.Day || len(sp.Days) == 0 || sp.Days[0].Cap != st.Cap {
			t.Errorf("plan %s day %d %+v vs status day %d cap %d", sp.Site, sp.Day, sp.Days, st.Day, st.Cap)
		}
	}
}

func maxInt(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}
