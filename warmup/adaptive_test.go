package warmup

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// at10 is a harness with ip1 on plan day 10 (google cap 6100) from t0.
func at10(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := newHarness(t, cfg, t0)
	if err := h.c.SetDay("ip1", 10, t0); err != nil {
		t.Fatal(err)
	}
	h.takeEvents()
	return h
}

func observeN(c *Controller, sig Signal, n int, now time.Time) {
	for range n {
		c.Observe("ip1", "google", sig, now)
	}
}

func TestHoldOnRateLimit(t *testing.T) {
	h := at10(t, oneEgress(""))
	now := t0.Add(9 * time.Hour)
	observeN(h.c, SignalDelivered, 20, now)
	h.c.Observe("ip1", "google", SignalRate, now)
	evs := h.takeEvents()
	if len(evs) != 1 {
		t.Fatalf("events: %+v", evs)
	}
	e := evs[0]
	if e.Cause != "rate-hold" || e.Signal != SignalRate || e.From != StateRamping || e.To != StateHeld || e.Day != 10 ||
		!e.Until.Equal(now.Add(90*time.Minute)) || e.Provider != "google" {
		t.Fatalf("event: %+v", e)
	}
	// The backoff: one connection, at most 1/min.
	if sh := h.c.Shaping("ip1", "google", now); sh.Connections != 1 || sh.Rate != Rate(1.0/60) {
		t.Fatalf("shaping in backoff: %+v", sh)
	}
	h.c.Reserve("ip1", "google", 0, now)
	d := h.c.Reserve("ip1", "google", 0, now)
	if d.OK || d.Reason != ReasonRate || d.CapWait || d.RetryAt.Sub(now) > time.Minute {
		t.Fatalf("in backoff: %+v", d)
	}
	if sh := h.c.Shaping("ip1", "google", now.Add(91*time.Minute)); sh.Connections != 2 {
		t.Fatalf("shaping after backoff: %+v", sh)
	}
	s := h.siteStatus("ip1", "google", now.Add(time.Hour))
	if s.State != StateHeld || s.LastSignal != SignalRate || !s.LastSignalAt.Equal(now) || s.RateLimited != 1 || s.Delivered != 20 || s.Cause != "rate-hold" {
		t.Fatalf("status: %+v", s)
	}
	// The held day does not count: tomorrow is day 10 again, ramping.
	tomorrow := t0.Add(33 * time.Hour)
	if s := h.siteStatus("ip1", "google", tomorrow); s.Day != 10 || s.State != StateRamping {
		t.Fatalf("tomorrow: %+v", s)
	}
	if !hasEvent(h.takeEvents(), "new-day", StateRamping) {
		t.Fatal("no event for the end of the hold")
	}
	if s := h.siteStatus("ip1", "google", tomorrow.Add(24*time.Hour)); s.Day != 11 {
		t.Fatalf("the day after: %+v", s)
	}
	// Other providers of the egress are not touched.
	if s := h.siteStatus("ip1", "google", tomorrow.Add(24*time.Hour)); s.State != StateRamping {
		t.Fatal(s)
	}
}

func TestStepBackThenPauseThenResume(t *testing.T) {
	h := at10(t, oneEgress(""))
	now := t0.Add(9 * time.Hour)
	h.c.Reserve("ip1", "yahoo", 0, now) // another provider, to see it untouched
	observeN(h.c, SignalDelivered, 100, now)
	observeN(h.c, SignalRate, 3, now.Add(time.Minute))
	evs := h.takeEvents()
	if len(evs) != 2 || evs[0].Cause != "rate-hold" || evs[1].Cause != "rate-step-back" || evs[1].PrevDay != 10 || evs[1].Day != 9 || evs[1].Cap != 4000 {
		t.Fatalf("events: %+v", evs)
	}
	// Seven more make ten rate limits, 9% of attempts: pause 2 h, two days back.
	pauseAt := now.Add(2 * time.Minute)
	observeN(h.c, SignalRate, 7, pauseAt)
	evs = h.takeEvents()
	if len(evs) != 1 || evs[0].Cause != "rate-pause" || evs[0].To != StatePaused || evs[0].Day != 7 || !evs[0].Until.Equal(pauseAt.Add(2*time.Hour)) {
		t.Fatalf("pause events: %+v", evs)
	}
	d := h.c.Reserve("ip1", "google", 9, pauseAt.Add(time.Hour))
	if d.OK || d.Reason != ReasonPaused || d.CapWait || !d.RetryAt.Equal(pauseAt.Add(2*time.Hour)) {
		t.Fatalf("while paused: %+v", d)
	}
	// Replies to mail sent before the pause say nothing new.
	observeN(h.c, SignalRate, 20, pauseAt.Add(time.Hour))
	if evs := h.takeEvents(); len(evs) != 0 {
		t.Fatalf("events while paused: %+v", evs)
	}
	// It resumes by itself, held for the rest of the day.
	resumed := pauseAt.Add(2*time.Hour + time.Second)
	if d := h.c.Reserve("ip1", "google", 0, resumed); !d.OK {
		t.Fatalf("after the cool-down: %+v", d)
	}
	evs = h.takeEvents()
	if len(evs) != 1 || evs[0].Cause != "cooldown-over" || evs[0].From != StatePaused || evs[0].To != StateHeld || !evs[0].Time.Equal(pauseAt.Add(2*time.Hour)) {
		t.Fatalf("resume events: %+v", evs)
	}
	if s := h.siteStatus("ip1", "yahoo", resumed); s.State != StateRamping || s.Day != 10 {
		t.Fatalf("yahoo was touched: %+v", s)
	}
	if s := h.siteStatus("ip1", "google", t0.Add(33*time.Hour)); s.Day != 7 || s.State != StateRamping {
		t.Fatalf("next day: %+v", s)
	}
}

func TestBlockPausesAndWarmEgressResumesWarm(t *testing.T) {
	cfg := oneEgress("")
	cfg.Egress = append(cfg.Egress, Egress{Name: "warm", Source: "192.0.2.9", Warm: true})
	h := at10(t, cfg)
	now := t0.Add(10 * time.Hour)
	h.c.Observe("ip1", "google", SignalBlock, now)
	h.c.Observe("warm", "google", SignalBlock, now)
	evs := h.takeEvents()
	if len(evs) != 2 || evs[0].Cause != "block-pause" || evs[0].Day != 8 || !evs[0].Until.Equal(now.Add(4*time.Hour)) ||
		evs[1].From != StateWarm || evs[1].To != StatePaused || evs[1].Day != 0 {
		t.Fatalf("events: %+v", evs)
	}
	if d := h.c.Reserve("warm", "google", 0, now.Add(3*time.Hour)); d.OK || d.Reason != ReasonPaused {
		t.Fatalf("warm egress while paused: %+v", d)
	}
	if d := h.c.Reserve("warm", "google", 0, now.Add(4*time.Hour)); !d.OK {
		t.Fatalf("warm egress after the pause: %+v", d)
	}
	if s := h.siteStatus("warm", "google", now.Add(4*time.Hour)); s.State != StateWarm || s.Cap != -1 {
		t.Fatalf("warm status: %+v", s)
	}
}

func TestComplaintRate(t *testing.T) {
	h := at10(t, oneEgress(""))
	now := t0.Add(10 * time.Hour)
	observeN(h.c, SignalDelivered, 1000, now)
	observeN(h.c, SignalComplaint, 2, now.Add(time.Hour)) // 0.2%: below Google's 0.3%
	if evs := h.takeEvents(); len(evs) != 0 {
		t.Fatalf("events at 0.2%%: %+v", evs)
	}
	observeN(h.c, SignalComplaint, 2, now.Add(2*time.Hour)) // 0.4%
	evs := h.takeEvents()
	if len(evs) != 1 || evs[0].Cause != "complaint-pause" || evs[0].Signal != SignalComplaint || !evs[0].Until.Equal(now.Add(26*time.Hour)) {
		t.Fatalf("events at 0.4%%: %+v", evs)
	}
}

func TestDeferralHoldNeedsCountAndShare(t *testing.T) {
	h := at10(t, oneEgress(""))
	now := t0.Add(10 * time.Hour)
	observeN(h.c, SignalDelivered, 200, now)
	observeN(h.c, SignalDeferral, 15, now) // 15 of 215: 7%
	if evs := h.takeEvents(); len(evs) != 0 {
		t.Fatalf("events at 7%%: %+v", evs)
	}
	observeN(h.c, SignalDeferral, 10, now) // 25 of 225: 11%
	if evs := h.takeEvents(); len(evs) != 1 || evs[0].Cause != "deferral-hold" || evs[0].To != StateHeld {
		t.Fatalf("events at 11%%: %+v", evs)
	}
	// The window slides: an hour later the old deferrals are gone.
	later := now.Add(2 * time.Hour)
	observeN(h.c, SignalDelivered, 20, later)
	observeN(h.c, SignalDeferral, 1, later)
	if evs := h.takeEvents(); len(evs) != 0 {
		t.Fatalf("events from an old window: %+v", evs)
	}
}

func TestConfiguredRules(t *testing.T) {
	cfg := oneEgress("")
	cfg.Warmup.Rule = []Rule{{Name: "one-strike", Signal: "deferral", Action: "pause", Cooldown: Duration(10 * time.Minute)}}
	cfg.Warmup.PauseStepBack = -1
	h := at10(t, cfg)
	now := t0.Add(10 * time.Hour)
	h.c.Observe("ip1", "google", SignalRate, now) // no rule for rate any more
	h.c.Observe("ip1", "google", SignalDeferral, now)
	evs := h.takeEvents()
	if len(evs) != 1 || evs[0].Cause != "one-strike" || evs[0].Day != 10 || !evs[0].Until.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("events: %+v", evs)
	}
}

func TestOperatorControls(t *testing.T) {
	cfg := Config{
		Egress: []Egress{{Name: "ip1", Source: "192.0.2.1"}, {Name: "ip2", Source: "192.0.2.2", Warm: true}},
		Pool:   []Pool{{Name: "p", Egress: []PoolMember{{Name: "ip1"}, {Name: "ip2"}}}},
	}
	h := newHarness(t, cfg, t0)
	now := t0.Add(9 * time.Hour)
	if err := h.c.Pause("ip1", "google", 0, now); err != nil {
		t.Fatal(err)
	}
	if d := h.c.Reserve("ip1", "google", 0, now.Add(5*time.Hour)); d.OK || d.Reason != ReasonPaused || !d.RetryAt.Equal(now.Add(5*time.Hour+recheck)) {
		t.Fatalf("operator pause: %+v", d)
	}
	if s := h.siteStatus("ip1", "google", now.Add(5*time.Hour)); s.State != StatePaused || !s.PausedUntil.IsZero() || s.Cause != "operator-pause" {
		t.Fatalf("status: %+v", s)
	}
	if err := h.c.Resume("ip1", "google", now.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if d := h.c.Reserve("ip1", "google", 0, now.Add(5*time.Hour)); !d.OK {
		t.Fatalf("after resume: %+v", d)
	}
	evs := h.takeEvents()
	if !hasEvent(evs, "operator-pause", StatePaused) || !hasEvent(evs, "operator-resume", StateHeld) {
		t.Fatalf("events: %+v", evs)
	}

	// The whole egress: out of the pool's draw for an hour.
	if err := h.c.Pause("ip1", "", time.Hour, now); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if d := h.c.Reserve("p", "yahoo", 0, now.Add(time.Duration(i)*time.Second)); !d.OK || d.Egress != "ip2" {
			t.Fatalf("pool with ip1 paused: %+v", d)
		}
	}
	if d := h.c.Reserve("ip1", "yahoo", 0, now); d.OK || d.Reason != ReasonPaused || !d.RetryAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("ip1 alone while paused: %+v", d)
	}
	if st := h.c.Status(now); !st.Egress[0].Paused || !st.Egress[0].PausedUntil.Equal(now.Add(time.Hour)) {
		t.Fatalf("egress status: %+v", st.Egress[0])
	}
	if d := h.c.Reserve("ip1", "yahoo", 0, now.Add(time.Hour)); !d.OK {
		t.Fatalf("after the egress pause: %+v", d)
	}

	// Errors.
	if err := h.c.SetDay("ip2", 3, now); err == nil {
		t.Fatal("SetDay on a warm egress")
	}
	if err := h.c.SetDay("ip1", 0, now); err == nil {
		t.Fatal("SetDay 0")
	}
	if err := h.c.Pause("nosuch", "", 0, now); err == nil {
		t.Fatal("Pause of an unknown egress")
	}

	// SetDay moves every site and survives a restart.
	if err := h.c.SetDay("ip1", 30, now); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if s := h.siteStatus("ip1", "google", now.Add(time.Hour)); s.Day != 30 || s.Cap != 450000 {
		t.Fatalf("after SetDay and restart: %+v", s)
	}
	if st := h.c.Status(now); st.Egress[0].Day != 30 || st.Egress[0].Start != "2026-02-01" {
		t.Fatalf("egress after SetDay: %+v", st.Egress[0])
	}
}

// An egress idle for longer than warmup.idle_restart starts again at day 1.
func TestIdleRestart(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	if d := h.c.Reserve("ip1", "google", 0, t0.Add(9*time.Hour)); !d.OK {
		t.Fatal(d)
	}
	if err := h.c.SetDay("ip1", 20, t0.Add(9*time.Hour)); err != nil {
		t.Fatal(err)
	}
	h.restart() // the lane is read back from the store
	back := t0.Add(32*24*time.Hour + 9*time.Hour)
	h.takeEvents()
	if d := h.c.Reserve("ip1", "google", 0, back); !d.OK {
		t.Fatal(d)
	}
	if !hasEvent(h.takeEvents(), "idle-restart", "") {
		t.Fatal("no idle-restart event")
	}
	if s := h.siteStatus("ip1", "google", back); s.Day != 1 || s.Cap != 50 || s.Sent != 1 {
		t.Fatalf("after 31 idle days: %+v", s)
	}
	// 30 idle days are not enough.
	if s := h.siteStatus("ip1", "google", back.Add(30*24*time.Hour)); s.Day != 31 {
		t.Fatalf("after 29 idle days: %+v", s)
	}
}

// Idle sites are reaped from memory and read back from the store on next
// use; records idle past idle_restart are deleted from the store.
func TestReapAndForget(t *testing.T) {
	cfg := oneEgress("")
	cfg.Warmup.Rule = []Rule{{Signal: "rate", Action: "hold"}} // windows of an hour: reaped after two
	h := newHarness(t, cfg, t0)
	now := t0.Add(9 * time.Hour)
	got := drain(h.c, "ip1", "mx:a.example", 0, now, now.Add(time.Hour), 3)
	h.c.sweep(got[2])
	if !h.c.inMemory("ip1", "mx:a.example") {
		t.Fatal("reaped while in use")
	}
	later := got[2].Add(h.c.reapAfter + time.Minute)
	h.c.sweep(later)
	if h.c.inMemory("ip1", "mx:a.example") {
		t.Fatal("not reaped")
	}
	if s := h.siteStatus("ip1", "mx:a.example", later); s.Sent != 3 {
		t.Fatalf("status of a reaped site: %+v", s)
	}
	if d := h.c.Reserve("ip1", "mx:a.example", 0, later); !d.OK {
		t.Fatal(d)
	}
	if s := h.siteStatus("ip1", "mx:a.example", later); s.Sent != 4 {
		t.Fatalf("sent after reload: %+v", s)
	}
	h.c.sweep(later.Add(h.c.reapAfter + time.Minute))
	stored, _ := h.c.storedLanes("ip1")
	if _, ok := stored["ip1"]["mx:a.example"]; !ok {
		t.Fatal("record gone while fresh")
	}
	h.c.sweep(later.Add(40 * 24 * time.Hour))
	stored, _ = h.c.storedLanes("ip1")
	if _, ok := stored["ip1"]["mx:a.example"]; ok {
		t.Fatal("stale record kept")
	}
}

// Run reports a pause's end when it happens, without any request, and
// flushes on the way out.
func TestRunReportsAndFlushes(t *testing.T) {
	h := at10(t, oneEgress(""))
	now := t0.Add(10 * time.Hour)
	h.clk.Set(now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.c.Run(ctx) }()
	h.c.Observe("ip1", "google", SignalBlock, now)
	waitFor(t, func() bool { return h.clk.Waiters() > 0 })
	h.takeEvents()
	for range 5 {
		h.clk.Advance(time.Hour)
		waitFor(t, func() bool { return h.clk.Waiters() > 0 })
	}
	waitFor(t, func() bool { return hasEvent(h.takeEvents(), "cooldown-over", StateHeld) })
	h.c.Reserve("ip1", "google", 0, h.clk.Now())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h.crash() // no Close: Run's last flush must have saved it
	if s := h.siteStatus("ip1", "google", h.clk.Now()); s.Sent != 1 || s.Blocked != 1 {
		t.Fatalf("after Run returned: %+v", s)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStatusAndPlan(t *testing.T) {
	cfg := oneEgress("short")
	cfg.Warmup.Plan = []Plan{{Name: "short", Default: []int{10, 20, 30}, Providers: map[string][]int{"google": {100, 200, 300, 400}}}}
	h := newHarness(t, cfg, t0)
	now := t0.Add(9 * time.Hour)
	drain(h.c, "ip1", "mx:b.example", 0, now, now.Add(3*time.Hour), 2)
	h.c.Observe("ip1", "mx:b.example", SignalDeferral, now)
	st := h.c.Status(now.Add(3 * time.Hour))
	if st.Date != "2026-03-02" || st.Timezone != "UTC" || st.Window != "08:00-20:00" || st.Days != "calendar" || len(st.Egress) != 1 {
		t.Fatalf("status: %+v", st)
	}
	e := st.Egress[0]
	if e.Plan != "short" || e.Day != 1 || e.Start != "2026-03-02" || len(e.Sites) != 1 {
		t.Fatalf("egress: %+v", e)
	}
	s := e.Sites[0]
	if s.Site != "mx:b.example" || s.Cap != 10 || s.Sent != 2 || s.Left != 8 || s.PlanDays != 3 || s.Deferred != 1 || s.LastSignal != SignalDeferral {
		t.Fatalf("site: %+v", s)
	}
	if s.Hourly < 1 || s.Hourly > 2 {
		t.Fatalf("hourly pace %d, want 8 over the 8 hours left", s.Hourly)
	}
	b, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(b), `"last_signal":"deferral"`) || !strings.Contains(string(b), `"state":"ramping"`) {
		t.Fatalf("json: %s %v", b, err)
	}

	pv, err := h.c.Plan("ip1", now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]PlanDay{
		"*":            {{1, "2026-03-02", 10, 1}, {2, "2026-03-03", 20, 2}, {3, "2026-03-04", 30, 3}},
		"google":       {{1, "2026-03-02", 100, 9}, {2, "2026-03-03", 200, 17}, {3, "2026-03-04", 300, 25}, {4, "2026-03-05", 400, 34}},
		"mx:b.example": {{1, "2026-03-02", 10, 1}, {2, "2026-03-03", 20, 2}, {3, "2026-03-04", 30, 3}},
	}
	if len(pv.Sites) != len(want) || pv.Sites[len(pv.Sites)-1].Site != "*" {
		t.Fatalf("plan sites: %+v", pv.Sites)
	}
	for _, sp := range pv.Sites {
		w := want[sp.Site]
		if len(sp.Days) != len(w) {
			t.Fatalf("%s: %+v", sp.Site, sp.Days)
		}
		for i := range w {
			if sp.Days[i] != w[i] {
				t.Errorf("%s day %d: %+v, want %+v", sp.Site, i+1, sp.Days[i], w[i])
			}
		}
	}
	// A held site repeats today's day tomorrow.
	h.c.Observe("ip1", "google", SignalRate, now)
	pv, _ = h.c.Plan("ip1", now)
	for _, sp := range pv.Sites {
		if sp.Site == "google" && (sp.State != StateHeld || sp.Days[1].Date != "2026-03-04") {
			t.Fatalf("held plan: %+v", sp)
		}
	}
	if _, err := h.c.Plan("nosuch", now); err == nil {
		t.Fatal("plan of an unknown egress")
	}
}
