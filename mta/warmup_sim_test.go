package mta

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/configs"
	"kiln/events"
	"kiln/internal/fakemx"
	"kiln/policy"
	"kiln/warmup"
)

// The 42-day warm-up simulation: one egress on a plan whose caps grow from a
// handful to a few hundred a day per provider, four providers each behind its
// own fake MX, more mail injected every day than the caps allow, and a fake
// clock that moves from one lane wake-up to the next, as a real clock would,
// so that the spread can hand out each whole cap. Gmail starts answering 421
// 4.7.28 once its daily volume passes a threshold kiln is not told, so that
// kiln holds its plan at the limit; on day simGmailStrictDay its threshold
// is low and its 421 4.7.28 says the address is temporarily blocked, so that
// kiln pauses Gmail, resumes by itself and steps back, and after that it
// takes less than before; Microsoft
// defers a few recipients with a reply that blames nobody, so that mail which
// waited days for the cap meets a temporary failure.

// simGmail421 is Gmail's rate-limit reply (PROVIDERS.md §3a) as its MX
// words it.
const simGmail421 = "[{ip}] Our system has detected an unusual rate of unsolicited mail originating from your IP address. " +
	"To protect our users from spam, mail sent from your IP address has been temporarily rate limited. " +
	"Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines. - gsmtp"

// simGmailBlocked is Gmail's temporary block (PROVIDERS.md §3b), answered to
// every RCPT on the day it blocks.
const simGmailBlocked = "[{ip}] Our system has detected an unusual amount of unsolicited mail originating from your IP address " +
	"and has temporarily blocked it. Please visit https://support.google.com/mail/?p=UnsolicitedIPError to review our Bulk Email Senders Guidelines. - gsmtp"

// simDeferText is a temporary failure that blames nobody.
const simDeferText = "Temporary system problem, please retry"

const (
	simDays             = 42
	simGmailLimit       = 60 // Gmail's hidden daily volume
	simGmailStrictDay   = 30 // on this day it blocks past ...
	simGmailBlockLimit  = 10 // ... this many, and from then on
	simGmailStrictLimit = 25 // ... it takes only this many
	simRestartDay       = 16 // kiln restarts in the middle of this day
	simRestartHour      = 13
	simDeferShare       = 0.03 // of Microsoft's RCPTs
	simWindowStart      = 8
	simWindowEnd        = 20
	simMaxAge           = 24 * time.Hour // the queue's max age; mail waits days for the caps
	simEgress           = "out1"
	simMaxStep          = 30 * time.Minute
	simSettleLimit      = 20 * time.Second
)

// simCaps returns a plan's caps: base + day²/div for days 1..simDays.
func simCaps(base, div int) []int {
	caps := make([]int, simDays)
	for d := 1; d <= simDays; d++ {
		caps[d-1] = base + d*d/div
	}
	return caps
}

// simProvider is one provider of the simulation, as the test counts it.
type simProvider struct {
	site   string // kiln's site key
	domain string
	mxHost string
	ip     int // the fake MX listens on 127.0.0.ip
	caps   []int
	mx     *fakemx.Server

	injected int
	// The MX's counters at the start of the current day.
	acc0, ref0 int
	// Per simulated day (index 0 is day 1): what the MX accepted, what it
	// was offered (accepted plus refused at RCPT), and, from the status
	// endpoint, the cap at the day's start and the plan day and state at
	// its end.
	accepted, offered []int
	capStart, day     []int
	state             []warmup.State
}

// counts returns what the MX has accepted and refused so far.
func (p *simProvider) counts() (acc, ref int) {
	acc = p.mx.Stats().Messages
	for k, n := range p.mx.Refusals() {
		if strings.HasPrefix(k, "rcpt ") {
			ref += n
		}
	}
	return acc, ref
}

func TestWarmupSimulation42Days(t *testing.T) {
	if testing.Short() {
		t.Skip("a 42-day warm-up simulation; runs without -short")
	}
	wallStart := time.Now()
	provs := []*simProvider{
		{site: "google", domain: "gmail.test", mxHost: "gmail-smtp-in.l.google.com", ip: 2, caps: simCaps(5, 7)},
		{site: "yahoo", domain: "yahoo.test", mxHost: "mta5.am0.yahoodns.net", ip: 3, caps: simCaps(4, 8)},
		{site: "microsoft", domain: "outlook.test", mxHost: "outlook-test.olc.protection.outlook.com", ip: 4, caps: simCaps(4, 9)},
		{site: "mx:mx5.small.test", domain: "small.test", mxHost: "mx5.small.test", ip: 5, caps: simCaps(3, 10)},
	}
	google, microsoft := provs[0], provs[2]
	plan := warmup.Plan{Name: "sim", Default: provs[3].caps, Providers: map[string][]int{}}
	for _, p := range provs[:3] {
		plan.Providers[p.site] = p.caps
	}
	w := newWorld(t, func(c *configs.Config) {
		c.Egress = []warmup.Egress{{Name: simEgress, Source: "127.0.0.1", Start: tStart.Format("2006-01-02"), Plan: "sim"}}
		c.Warmup.Plan = []warmup.Plan{plan}
		c.Warmup.Window = fmt.Sprintf("%02d:00-%02d:00", simWindowStart, simWindowEnd)
		c.Queue.MaxAge = configs.Duration(simMaxAge)
	})
	for _, p := range provs {
		p.mx = w.mx(p.ip, fakemx.Config{TLS: fakemx.TLSOff, Discard: true, Seed: uint64(p.ip)})
		w.dns.AddMX(p.domain, 10, p.mxHost)
		w.dns.AddA(p.mxHost, fmt.Sprintf("127.0.0.%d", p.ip))
	}
	if err := microsoft.mx.SetRules(fakemx.Rule{Stage: fakemx.StageRcpt, Code: 451, Enhanced: "4.3.0", Text: simDeferText, Share: simDeferShare}); err != nil {
		t.Fatal(err)
	}
	// What kiln's classifier makes of the fake MX hosts' refusals.
	cl := policy.DefaultClassifier()
	gd := cl.Classify(policy.ParseReply("RCPT", "421 4.7.28 "+strings.ReplaceAll(simGmail421, "{ip}", "127.0.0.1")))
	if gd.Action != policy.ActionRetry || gd.Signal != policy.SignalRate {
		t.Fatalf("Gmail's 421 4.7.28 rate limit is classified %+v: want a retry with a rate signal", gd)
	}
	bd := cl.Classify(policy.ParseReply("RCPT", "421 4.7.28 "+strings.ReplaceAll(simGmailBlocked, "{ip}", "127.0.0.1")))
	if bd.Action != policy.ActionRetry || bd.Signal != policy.SignalBlock {
		t.Fatalf("Gmail's 421 4.7.28 block is classified %+v: want a retry with a block signal", bd)
	}
	if d := cl.Classify(policy.ParseReply("RCPT", "451 4.3.0 "+simDeferText)); d.Action != policy.ActionRetry || d.Signal != policy.SignalDeferral {
		t.Fatalf("the deferral is classified %+v: want a retry with a deferral signal", d)
	}

	// inject submits more than the day's cap for every provider, one
	// recipient per message, from a few concurrent clients.
	site := map[string]string{} // message id -> provider site
	inject := func(day int) {
		type sub struct{ site, to string }
		var subs []sub
		for _, p := range provs {
			c := p.caps[day-1]
			for range c + c/4 + 2 {
				p.injected++
				subs = append(subs, sub{p.site, fmt.Sprintf("r%d@%s", p.injected, p.domain)})
			}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		ch := make(chan sub)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for s := range ch {
					id, err := w.srv.Submit(context.Background(), Submission{
						From: "app@sender.test", To: []string{s.to},
						Data: []byte(msgText("app@sender.test", fmt.Sprintf("warm-up day %d", day))),
					})
					if err != nil {
						t.Errorf("submit to %s: %v", s.to, err)
						continue
					}
					mu.Lock()
					site[id] = s.site
					mu.Unlock()
				}
			}()
		}
		for _, s := range subs {
			ch <- s
		}
		close(ch)
		wg.Wait()
	}

	// check compares the status and plan endpoints with the simulation's
	// own counts of the day so far and with the plan, and returns the
	// status and plan of each provider.
	check := func(day int, when string) (map[string]warmup.SiteStatus, map[string]warmup.SitePlan) {
		t.Helper()
		var st warmup.Status
		getJSON(t, "http://"+w.srv.AdminAddr()+"/api/v1/warmup/status", &st)
		var pv warmup.PlanView
		getJSON(t, "http://"+w.srv.AdminAddr()+"/api/v1/warmup/plan?egress="+simEgress, &pv)
		sites, plans := map[string]warmup.SiteStatus{}, map[string]warmup.SitePlan{}
		for _, e := range st.Egress {
			if e.Name == simEgress {
				for _, s := range e.Sites {
					sites[s.Site] = s
				}
			}
		}
		for _, sp := range pv.Sites {
			plans[sp.Site] = sp
		}
		today := w.clk.Now().Format("2006-01-02")
		for _, p := range provs {
			acc, ref := p.counts()
			acc, ref = acc-p.acc0, ref-p.ref0
			s, ok := sites[p.site]
			if !ok {
				t.Fatalf("day %d %s: no status for %s", day, when, p.site)
			}
			if s.Sent != acc+ref || s.Delivered != acc || s.Deferred+s.RateLimited+s.Blocked != ref {
				t.Errorf("day %d %s: %s status says sent %d, delivered %d, refused %d; its MX accepted %d and refused %d",
					day, when, p.site, s.Sent, s.Delivered, s.Deferred+s.RateLimited+s.Blocked, acc, ref)
			}
			if s.Cap != capOf(p.caps, s.Day) || s.Left != s.Cap-s.Sent && s.Left != 0 {
				t.Errorf("day %d %s: %s status says plan day %d, cap %d, left %d; the plan's cap is %d",
					day, when, p.site, s.Day, s.Cap, s.Left, capOf(p.caps, s.Day))
			}
			sp, ok := plans[p.site]
			if !ok || sp.Day != s.Day || len(sp.Days) == 0 {
				t.Errorf("day %d %s: plan for %s: %+v; status says day %d", day, when, p.site, sp, s.Day)
				continue
			}
			if d0 := sp.Days[0]; d0.Day != s.Day || d0.Date != today || d0.Cap != s.Cap {
				t.Errorf("day %d %s: plan for %s starts with day %d on %s, cap %d; status says day %d, cap %d on %s",
					day, when, p.site, d0.Day, d0.Date, d0.Cap, s.Day, s.Cap, today)
			}
			for _, pd := range sp.Days {
				if pd.Cap != capOf(p.caps, pd.Day) {
					t.Errorf("day %d %s: plan for %s: day %d cap %d; the plan says %d", day, when, p.site, pd.Day, pd.Cap, capOf(p.caps, pd.Day))
				}
			}
		}
		return sites, plans
	}

	var firstPlan map[string]warmup.SitePlan
	steps, restarted := 0, false
	// When kiln pauses Gmail, the status says so at once, and nothing more
	// goes to Gmail for the rest of that day.
	cursor, pausedSeen := 0, 0
	pausedAt := -1 // Gmail's offered count when it was last paused; -1: not paused today
	watchPause := func(day int) {
		t.Helper()
		for _, e := range w.eventsAfter(&cursor) {
			if e.Type != events.Warmup || e.Site != google.site || !strings.Contains(e.Detail, "-> paused") {
				continue
			}
			st, _ := check(day, "when Gmail was paused")
			g := st[google.site]
			if g.State != warmup.StatePaused || !g.PausedUntil.After(w.clk.Now()) || (g.LastSignal != warmup.SignalRate && g.LastSignal != warmup.SignalBlock) {
				t.Errorf("day %d: Gmail paused (%s), but its status says %s until %v, last signal %q", day, e.Detail, g.State, g.PausedUntil, g.LastSignal)
			}
			pausedSeen++
			acc, ref := google.counts()
			pausedAt = acc - google.acc0 + ref - google.ref0
		}
	}
	for day := 1; day <= simDays; day++ {
		date := tStart.AddDate(0, 0, day-1)
		midnight := time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, time.UTC)
		if day > 1 {
			w.stepTo(midnight)
		}
		// Gmail's hidden daily volume: the first gmailLimit(day) RCPTs of
		// the day get the normal reply, the rest 421 4.7.28, worded as a
		// temporary block on the day it blocks.
		rules := []fakemx.Rule{{Stage: fakemx.StageRcpt, Times: gmailLimit(day)}, {Stage: fakemx.StageRcpt, Code: 421, Enhanced: "4.7.28", Text: simGmail421}}
		if day == simGmailStrictDay {
			rules[1].Text = simGmailBlocked
		}
		if err := google.mx.SetRules(rules...); err != nil {
			t.Fatal(err)
		}
		for _, p := range provs {
			p.acc0, p.ref0 = p.counts()
		}
		inject(day)
		w.settle()
		st, plans := check(day, "at the start")
		if day == 1 {
			firstPlan = plans
		}
		for _, p := range provs {
			p.capStart = append(p.capStart, st[p.site].Cap)
		}
		winStart := midnight.Add(simWindowStart * time.Hour)
		winEnd := midnight.Add(simWindowEnd * time.Hour)
		if w.clk.Now().Before(winStart) {
			w.stepTo(winStart)
		}
		restartAt := midnight.Add(simRestartHour * time.Hour)
		for now := w.clk.Now(); now.Before(winEnd); now = w.clk.Now() {
			next := w.nextLaneWake(now.Add(simMaxStep))
			if next.After(winEnd) {
				next = winEnd
			}
			if !next.After(now) {
				next = now.Add(time.Millisecond)
			}
			if day == simRestartDay && now.Before(restartAt) && !next.Before(restartAt) {
				w.stepTo(restartAt)
				before, _ := check(day, "before the restart")
				w.restart()
				w.settle()
				// The restarted pace may send at once; check compares the
				// counts with the MX hosts' again.
				after, _ := check(day, "after the restart")
				for _, p := range provs {
					b, a := before[p.site], after[p.site]
					if a.Sent < b.Sent || a.Delivered < b.Delivered || a.Day != b.Day || a.Cap != b.Cap || a.State != b.State {
						t.Errorf("restart changed %s: before %d sent, %d delivered, day %d, cap %d, %s; after %d, %d, %d, %d, %s",
							p.site, b.Sent, b.Delivered, b.Day, b.Cap, b.State, a.Sent, a.Delivered, a.Day, a.Cap, a.State)
					}
				}
				restarted = true
				continue
			}
			w.stepTo(next)
			steps++
			watchPause(day)
		}
		// The evening: retries come due, nothing is sent.
		w.stepTo(midnight.Add(23*time.Hour + 59*time.Minute))
		watchPause(day)
		st, _ = check(day, "at the end")
		var line strings.Builder
		if pausedAt >= 0 {
			if acc, ref := google.counts(); acc-google.acc0+ref-google.ref0 != pausedAt {
				t.Errorf("day %d: %d offered to Gmail after kiln paused it", day, acc-google.acc0+ref-google.ref0-pausedAt)
			}
			pausedAt = -1
		}
		for _, p := range provs {
			acc, ref := p.counts()
			p.accepted = append(p.accepted, acc-p.acc0)
			p.offered = append(p.offered, acc-p.acc0+ref-p.ref0)
			p.day = append(p.day, st[p.site].Day)
			p.state = append(p.state, st[p.site].State)
			fmt.Fprintf(&line, "  %s d%d %d/%d %s", p.site, st[p.site].Day, p.offered[day-1], p.capStart[day-1], st[p.site].State)
		}
		if testing.Verbose() {
			t.Logf("day %2d:%s", day, line.String())
		}
	}
	t.Logf("%d simulated days in %d steps, %v of wall time", simDays, steps, time.Since(wallStart).Round(time.Millisecond))
	if !restarted {
		t.Fatal("kiln was never restarted")
	}

	// 1. No day goes over the cap it started with (a step back during the
	// day only lowers it), and every provider's cap binds on the day its
	// plan is the only limit.
	for _, p := range provs {
		for d := range simDays {
			if p.offered[d] > p.capStart[d] {
				t.Errorf("%s day %d: %d offered, over the day's cap of %d", p.site, d+1, p.offered[d], p.capStart[d])
			}
		}
	}
	// 2. The providers that never complain ramp every day, send their
	// whole cap every day, and follow the plan kiln showed on day 1 to the
	// day and the date.
	for _, p := range provs[1:] {
		fp := firstPlan[p.site]
		for d := range simDays {
			if p.day[d] != d+1 || p.state[d] != warmup.StateRamping {
				t.Errorf("%s: plan day %d (%s) on day %d; it never complained", p.site, p.day[d], p.state[d], d+1)
			}
			if p.offered[d] != p.caps[d] {
				t.Errorf("%s day %d: %d sent, want the whole cap of %d", p.site, d+1, p.offered[d], p.caps[d])
			}
			if d < len(fp.Days) {
				if pd, date := fp.Days[d], tStart.AddDate(0, 0, d).Format("2006-01-02"); pd.Day != d+1 || pd.Date != date || pd.Cap != p.offered[d] {
					t.Errorf("%s: the plan of day 1 said day %d on %s with cap %d; it was day %d on %s, %d sent",
						p.site, pd.Day, pd.Date, pd.Cap, d+1, date, p.offered[d])
				}
			}
		}
	}
	// 3. Gmail: kiln paused it when it complained, resumed by itself held
	// for the rest of the day, and ramped on from where it stepped back;
	// the other providers were never held or paused.
	var pauses, resumes, holds int
	var gmailLog []string
	for _, e := range w.eventsOf(events.Warmup) {
		if e.Site != google.site {
			if strings.Contains(e.Detail, "-> paused") || strings.Contains(e.Detail, "-> held") {
				t.Errorf("%s was held or paused, though it never complained: %s", e.Site, e.Detail)
			}
			continue
		}
		gmailLog = append(gmailLog, e.Time.Format("01-02 15:04")+" "+e.Detail)
		if strings.Contains(e.Detail, "-> paused") {
			pauses++
		}
		if strings.HasPrefix(e.Detail, "paused ->") && strings.Contains(e.Detail, "cooldown-over") {
			resumes++
		}
		if strings.Contains(e.Detail, "-> held") {
			holds++
		}
	}
	t.Logf("Gmail's warm-up events:\n  %s", strings.Join(gmailLog, "\n  "))
	if pausedSeen != pauses {
		t.Errorf("Gmail: %d pauses, %d seen while stepping", pauses, pausedSeen)
	}
	if pauses < 1 || resumes < pauses || holds < pauses {
		t.Errorf("Gmail: %d pauses, %d resumes, %d holds; want it held, paused, and each pause over by itself and held", pauses, resumes, holds)
	}
	var gmail []string
	firstPause := -1
	for d := range simDays {
		gmail = append(gmail, fmt.Sprintf("%d:%d/%d", google.day[d], google.accepted[d], google.offered[d]))
		if google.accepted[d] > gmailLimit(d+1) {
			t.Errorf("Gmail day %d: accepted %d, more than it takes", d+1, google.accepted[d])
		}
		if google.offered[d] > google.accepted[d] && firstPause < 0 {
			firstPause = d
		}
	}
	t.Logf("Gmail by day (plan day:accepted/offered): %s", strings.Join(gmail, " "))
	if firstPause < 0 {
		t.Fatal("Gmail never refused anything: its hidden limit was never reached")
	}
	for d := firstPause; d < simDays; d++ {
		if d > firstPause && google.offered[d] == 0 {
			t.Errorf("Gmail day %d: nothing sent after the pause of day %d", d+1, firstPause+1)
		}
		if google.day[d] > google.day[max(firstPause-1, 0)]+1 {
			t.Errorf("Gmail day %d: plan day %d, past the day it was throttled on", d+1, google.day[d])
		}
	}

	// 4. Messages waited longer than the queue's max age for the caps, and
	// none expired.
	var longest time.Duration
	for _, e := range w.eventsOf(events.Delivered) {
		longest = max(longest, time.Duration(e.QueueMs)*time.Millisecond)
	}
	if longest <= simMaxAge {
		t.Errorf("the longest wait before delivery was %v: not longer than the max age of %v", longest, simMaxAge)
	}
	expired := map[string][]events.Event{}
	for _, e := range w.eventsOf(events.Expired) {
		expired[site[e.ID]] = append(expired[site[e.ID]], e)
	}
	for _, p := range provs {
		if evs := expired[p.site]; len(evs) > 0 {
			e := evs[0]
			t.Errorf("%s: %d messages expired (max age %v) after waiting for the cap; the first, %s, at %s, %v after it was queued, on attempt %d: %s",
				p.site, len(evs), simMaxAge, e.ID, e.Time.Format("01-02 15:04"), time.Duration(e.QueueMs)*time.Millisecond, e.Attempt, e.Reply)
		}
	}
}

// capOf is the plan's cap on day (from 1): -1 past its end.
func capOf(caps []int, day int) int {
	switch {
	case day < 1:
		return 0
	case day > len(caps):
		return -1
	}
	return caps[day-1]
}

// stepTo moves the fake clock to t and waits until kiln has done what the
// new time asks of it.
func (w *world) stepTo(t time.Time) {
	w.clk.Set(t)
	w.settle()
}

// settle waits until the scheduler has seen the clock's last move and every
// message it took in hand has finished its round: nothing is being routed,
// sent or parked.
func (w *world) settle() {
	w.t.Helper()
	s := w.srv.sched
	ctx, cancel := context.WithTimeout(context.Background(), simSettleLimit)
	defer cancel()
	// Two round trips: the scheduler's loop has begun an iteration after
	// the move, so every lane due by now has been woken.
	for range 2 {
		if err := s.do(ctx, func() {}); err != nil {
			w.t.Fatalf("the scheduler does not answer: %v", err)
		}
	}
	for {
		busy := true
		if err := s.do(ctx, func() { busy = len(s.active) > 0 || len(s.waiting) > 0 }); err != nil {
			w.t.Fatalf("the scheduler is still busy after %v", simSettleLimit)
		}
		if !busy {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// nextLaneWake returns when the scheduler's first lane wakes, or bound if
// that is earlier or no lane waits.
func (w *world) nextLaneWake(bound time.Time) time.Time {
	s := w.srv.sched
	next := bound
	s.do(context.Background(), func() {
		if len(s.laneWake) > 0 && s.laneWake[0].wakeAt.Before(next) {
			next = s.laneWake[0].wakeAt
		}
	})
	return next
}

// eventsAfter returns the events emitted since *cursor, and moves it.
func (w *world) eventsAfter(cursor *int) []events.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]events.Event(nil), w.events[*cursor:]...)
	*cursor = len(w.events)
	return out
}

// eventsOf returns the events of one type seen so far.
func (w *world) eventsOf(typ string) []events.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []events.Event
	for _, e := range w.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// gmailLimit is how many RCPTs Gmail takes on a simulated day before it
// starts answering 421 4.7.28.
func gmailLimit(day int) int {
	switch {
	case day == simGmailStrictDay:
		return simGmailBlockLimit // the day it blocks kiln's address
	case day > simGmailStrictDay:
		return simGmailStrictLimit
	}
	return simGmailLimit
}
