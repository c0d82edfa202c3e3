package warmup

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Today's cap is spread over the window, hour by hour, not burst at its
// start, and all of it is usable.
func TestSpreadOverWindow(t *testing.T) {
	cases := []struct {
		name string
		day  int
		site string
		cap  int
	}{
		{"day 1 google", 1, "google", 50},
		{"day 1 MX set", 1, "mx:mx.small.example", 25},
		{"day 20 google", 20, "google", 73000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, oneEgress(""), t0)
			if err := h.c.SetDay("ip1", tc.day, t0); err != nil {
				t.Fatal(err)
			}
			got := drain(h.c, "ip1", tc.site, 0, t0, t0.Add(24*time.Hour), 10*tc.cap)
			if len(got) != tc.cap {
				t.Fatalf("sent %d in the day, want the cap %d", len(got), tc.cap)
			}
			var perHour [24]int
			for _, g := range got {
				perHour[g.Hour()]++
			}
			even := float64(tc.cap) / 12
			for hr, n := range perHour {
				if hr < 8 || hr >= 20 {
					if n != 0 {
						t.Errorf("%d sent at %02d:00, outside the window", n, hr)
					}
					continue
				}
				if math.Abs(float64(n)-even) > math.Max(2, even*0.02) {
					t.Errorf("%02d:00 sent %d, want about %.0f (cap/12)", hr, n, even)
				}
			}
			if !got[0].Equal(t0.Add(8 * time.Hour)) {
				t.Errorf("first send at %v, want the window's start", got[0])
			}
		})
	}
}

// The pace follows what is left: capacity unused in the morning is spread
// over the rest of the window, never bursting.
func TestSpreadCatchesUp(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	// No demand until 14:00: half the window is gone, all 50 are left.
	got := drain(h.c, "ip1", "google", 0, t0.Add(14*time.Hour), t0.Add(24*time.Hour), 1000)
	if len(got) != 50 {
		t.Fatalf("sent %d, want 50", len(got))
	}
	var perHour [24]int
	for _, g := range got {
		perHour[g.Hour()]++
	}
	for hr := 14; hr < 20; hr++ {
		if perHour[hr] < 7 || perHour[hr] > 10 {
			t.Errorf("%02d:00 sent %d, want about 50/6", hr, perHour[hr])
		}
	}
}

func TestCapWindowAndRetry(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	d := h.c.Reserve("ip1", "google", 0, t0.Add(7*time.Hour))
	if d.OK || d.Reason != ReasonWindow || !d.RetryAt.Equal(t0.Add(8*time.Hour)) || !d.CapWait {
		t.Fatalf("before the window: %+v", d)
	}
	drain(h.c, "ip1", "google", 0, t0, t0.Add(24*time.Hour), 1000)
	d = h.c.Reserve("ip1", "google", 0, t0.Add(19*time.Hour))
	if d.OK || d.Reason != ReasonCap || !d.RetryAt.Equal(t0.Add(32*time.Hour)) || !d.CapWait {
		t.Fatalf("cap used: %+v (want cap, retry at tomorrow 08:00)", d)
	}
	d = h.c.Reserve("ip1", "google", 0, t0.Add(21*time.Hour))
	if d.OK || d.Reason != ReasonCap {
		t.Fatalf("after the window: %+v", d)
	}
	d = h.c.Reserve("ip1", "google", 0, t0.Add(32*time.Hour))
	if !d.OK || d.Egress != "ip1" || d.Site != "google" {
		t.Fatalf("next morning: %+v", d)
	}
	if s := h.siteStatus("ip1", "google", t0.Add(32*time.Hour)); s.Day != 2 || s.Cap != 100 || s.Sent != 1 || s.State != StateRamping {
		t.Fatalf("day 2 status: %+v", s)
	}
	// Unknown pools are refused, not panicked on.
	if d := h.c.Reserve("nosuch", "google", 0, t0); d.OK || d.Reason != ReasonNoRoute {
		t.Fatalf("unknown pool: %+v", d)
	}
}

// Days begin at local midnight in the configured zone, across a DST change.
func TestRolloverInZone(t *testing.T) {
	loc, _ := time.LoadLocation("America/New_York")
	cfg := oneEgress("")
	cfg.Egress[0].Start = "2026-03-07"
	cfg.Warmup = Warmup{Timezone: "America/New_York", Window: "00:00-24:00"}
	start := time.Date(2026, 3, 7, 0, 0, 0, 0, loc)
	h := newHarness(t, cfg, start)
	at := func(day, hour, min int) time.Time { return time.Date(2026, 3, day, hour, min, 0, 0, loc) }
	checks := []struct {
		t       time.Time
		day, cp int
	}{
		{at(7, 12, 0), 1, 50},
		{at(7, 23, 59), 1, 50}, // 04:59 UTC on the 8th: still the 7th in New York
		{at(8, 0, 1), 2, 100},
		{at(8, 23, 0), 2, 100}, // the 8th is 23 hours long (EST -> EDT)
		{at(9, 0, 0), 3, 200},
	}
	for _, ck := range checks {
		h.c.Reserve("ip1", "google", 0, ck.t)
		s := h.siteStatus("ip1", "google", ck.t)
		if s.Day != ck.day || s.Cap != ck.cp {
			t.Errorf("at %s: day %d cap %d, want day %d cap %d", ck.t, s.Day, s.Cap, ck.day, ck.cp)
		}
	}
	// Before the configured start date nothing goes.
	h2 := newHarness(t, cfg, at(5, 0, 0))
	d := h2.c.Reserve("ip1", "google", 0, at(6, 12, 0))
	if d.OK || d.Reason != ReasonNotStarted || !d.RetryAt.Equal(at(7, 0, 0)) || !d.CapWait {
		t.Fatalf("before start: %+v", d)
	}
}

// Calendar counting advances every day; sending-day counting only after
// days with mail.
func TestCalendarVsSendingDays(t *testing.T) {
	for _, mode := range []string{"calendar", "sending"} {
		t.Run(mode, func(t *testing.T) {
			cfg := oneEgress("")
			cfg.Warmup.Days = mode
			h := newHarness(t, cfg, t0)
			day := func(d int) time.Time { return t0.Add(time.Duration(d-1) * 24 * time.Hour) }
			// Day 1: mail. Day 2: none. Days 3-4: mail.
			drain(h.c, "ip1", "google", 0, day(1), day(2), 10)
			drain(h.c, "ip1", "google", 0, day(3), day(4), 10)
			s3 := h.siteStatus("ip1", "google", day(3).Add(12*time.Hour))
			drain(h.c, "ip1", "google", 0, day(4), day(5), 10)
			s4 := h.siteStatus("ip1", "google", day(4).Add(12*time.Hour))
			want3, want4 := 3, 4
			if mode == "sending" {
				want3, want4 = 2, 3
			}
			if s3.Day != want3 || s4.Day != want4 {
				t.Fatalf("plan day on days 3, 4 = %d, %d; want %d, %d", s3.Day, s4.Day, want3, want4)
			}
			// A site first seen later starts at the egress's day.
			if s := h.c.Reserve("ip1", "yahoo", 0, day(4).Add(9*time.Hour)); !s.OK {
				t.Fatal(s)
			}
			y := h.siteStatus("ip1", "yahoo", day(4).Add(9*time.Hour))
			wantY := 4
			if mode == "sending" {
				wantY = 1
			}
			if y.Day != wantY {
				t.Fatalf("new site starts at day %d, want %d", y.Day, wantY)
			}
		})
	}
}

// A restart mid-day neither resets nor double-counts today's counters; a
// crash loses at most what was not yet flushed, and never counts twice.
func TestPersistenceAcrossRestart(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	morning := drain(h.c, "ip1", "google", 0, t0, t0.Add(24*time.Hour), 20)
	mid := morning[len(morning)-1].Add(time.Second)
	h.c.Observe("ip1", "google", SignalDelivered, mid)
	h.restart()
	s := h.siteStatus("ip1", "google", mid)
	if s.Sent != 20 || s.Delivered != 1 || s.Day != 1 {
		t.Fatalf("after restart: %+v", s)
	}
	rest := drain(h.c, "ip1", "google", 0, mid, t0.Add(24*time.Hour), 1000)
	if len(rest) != 30 {
		t.Fatalf("after restart sent %d more, want 30 (cap 50 - 20)", len(rest))
	}
	h.restart()
	if d := h.c.Reserve("ip1", "google", 0, t0.Add(19*time.Hour)); d.OK || d.Reason != ReasonCap {
		t.Fatalf("cap forgotten by a restart: %+v", d)
	}
	// The next day, after a restart, the plan has advanced once.
	next := t0.Add(33 * time.Hour)
	h.restart()
	if d := h.c.Reserve("ip1", "google", 0, next); !d.OK {
		t.Fatal(d)
	}
	if s := h.siteStatus("ip1", "google", next); s.Day != 2 || s.Sent != 1 {
		t.Fatalf("next day: %+v", s)
	}

	// A crash: what was flushed survives, the rest is lost, nothing doubles.
	if err := h.c.Flush(); err != nil {
		t.Fatal(err)
	}
	drain(h.c, "ip1", "google", 0, next, next.Add(10*time.Hour), 5)
	h.crash()
	if s := h.siteStatus("ip1", "google", next.Add(11*time.Hour)); s.Sent != 1 {
		t.Fatalf("after a crash sent = %d, want the flushed 1", s.Sent)
	}
}

func TestRelease(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	now := t0.Add(9 * time.Hour)
	d := h.c.Reserve("ip1", "google", 0, now)
	if !d.OK {
		t.Fatal(d)
	}
	h.c.Release(d, now)
	if s := h.siteStatus("ip1", "google", now); s.Sent != 0 {
		t.Fatalf("sent = %d after release", s.Sent)
	}
	// A release after midnight does not touch the new day.
	d = h.c.Reserve("ip1", "google", 0, now.Add(time.Hour))
	h.c.Reserve("ip1", "google", 0, now.Add(24*time.Hour))
	h.c.Release(d, now.Add(24*time.Hour))
	if s := h.siteStatus("ip1", "google", now.Add(24*time.Hour)); s.Sent != 1 {
		t.Fatalf("sent = %d after a stale release", s.Sent)
	}
}

// In a pool of a new and a warm egress, "wait" keeps the new egress's share
// waiting for its cap; "spill" sends it through the warm one.
func TestOverflowWaitVsSpill(t *testing.T) {
	for _, mode := range []string{"wait", "spill"} {
		t.Run(mode, func(t *testing.T) {
			cfg := Config{
				Egress: []Egress{{Name: "new", Source: "192.0.2.1"}, {Name: "old", Source: "192.0.2.2", Warm: true}},
				Pool:   []Pool{{Name: "p", Egress: []PoolMember{{Name: "new"}, {Name: "old"}}, Overflow: mode}},
			}
			h := newHarness(t, cfg, t0)
			by := map[string]int{}
			spilled, capWaits := 0, 0
			// One message a minute for ten hours of the window.
			for m := 0; m < 600; m++ {
				d := h.c.Reserve("p", "google", 0, t0.Add(8*time.Hour+time.Duration(m)*time.Minute))
				switch {
				case d.OK:
					by[d.Egress]++
					if d.Spilled {
						spilled++
					}
				case d.CapWait:
					capWaits++
					if d.Egress != "new" {
						t.Fatalf("cap wait on %s", d.Egress)
					}
				default:
					t.Fatalf("refused: %+v", d)
				}
			}
			if by["new"] < 35 || by["new"] > 50 {
				t.Errorf("new egress sent %d, want about its spread cap (50 over 12 h)", by["new"])
			}
			switch mode {
			case "wait":
				if by["old"] != 300 || capWaits != 300-by["new"] || spilled != 0 {
					t.Errorf("wait: by %v, cap waits %d, spilled %d", by, capWaits, spilled)
				}
			case "spill":
				if by["old"] != 600-by["new"] || capWaits != 0 || spilled != 300-by["new"] {
					t.Errorf("spill: by %v, cap waits %d, spilled %d", by, capWaits, spilled)
				}
			}
		})
	}
}

// A pool draws by weight, and leaves out egresses not started yet.
func TestPoolWeightsAndStart(t *testing.T) {
	cfg := Config{
		Egress: []Egress{{Name: "a", Source: "192.0.2.1", Warm: true}, {Name: "b", Source: "192.0.2.2", Warm: true},
			{Name: "later", Source: "192.0.2.3", Start: "2026-04-01"}},
		Pool: []Pool{{Name: "p", Egress: []PoolMember{{Name: "a", Weight: 3}, {Name: "b"}, {Name: "later", Weight: 5}}}},
	}
	h := newHarness(t, cfg, t0)
	by := map[string]int{}
	for i := 0; i < 400; i++ {
		d := h.c.Reserve("p", "google", 0, t0.Add(time.Duration(i)*time.Second))
		if !d.OK {
			t.Fatal(d)
		}
		by[d.Egress]++
	}
	if by["later"] != 0 || by["a"] < 280 || by["a"] > 320 || by["a"]+by["b"] != 400 {
		t.Fatalf("draws %v: want a:b = 3:1 and nothing from the egress that has not started", by)
	}
}

// When the cap binds, higher-priority mail goes first whatever order the
// scheduler asks in; lower priority gets what nobody above it wants.
func TestPriorityWhenCapBinds(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	hi, lo := 0, 0
	next := t0.Add(8 * time.Hour)
	wantHi := 40 // the high class has 40 messages; the low one has plenty
	for next.Before(t0.Add(20 * time.Hour)) {
		now := next
		next = now.Add(time.Hour)
		// The low class asks first every time, until refused.
		for {
			d := h.c.Reserve("ip1", "google", 0, now)
			if !d.OK {
				next = minTime(next, d.RetryAt)
				break
			}
			lo++
		}
		for hi < wantHi {
			d := h.c.Reserve("ip1", "google", 7, now)
			if !d.OK {
				next = minTime(next, d.RetryAt)
				break
			}
			hi++
		}
		if !next.After(now) {
			next = now.Add(time.Millisecond)
		}
	}
	if hi != wantHi {
		t.Fatalf("high priority sent %d of %d", hi, wantHi)
	}
	if lo != 50-wantHi {
		t.Fatalf("low priority sent %d, want the remaining %d", lo, 50-wantHi)
	}
	if lo+hi != 50 {
		t.Fatalf("sent %d in total, want the cap", lo+hi)
	}
}

func TestPriorityRefusalSaysSo(t *testing.T) {
	h := newHarness(t, oneEgress(""), t0)
	now := t0.Add(9 * time.Hour)
	if d := h.c.Reserve("ip1", "google", 5, now); !d.OK {
		t.Fatal(d)
	}
	d := h.c.Reserve("ip1", "google", 5, now) // spread: the next slot is later
	if d.OK || d.Reason != ReasonSpread || !d.CapWait {
		t.Fatalf("%+v", d)
	}
	// At that slot, normal mail must leave it to the waiting class.
	d0 := h.c.Reserve("ip1", "google", 0, d.RetryAt)
	if d0.OK || d0.Reason != ReasonPriority || !d0.CapWait {
		t.Fatalf("normal mail at the slot: %+v", d0)
	}
	if d5 := h.c.Reserve("ip1", "google", 5, d.RetryAt); !d5.OK {
		t.Fatalf("waiting class at its slot: %+v", d5)
	}
	// Once nobody of the higher class is coming back, normal mail goes.
	later := d.RetryAt.Add(time.Hour)
	if d := h.c.Reserve("ip1", "google", 0, later); !d.OK {
		t.Fatalf("normal mail after the high class left: %+v", d)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Many workers deciding at once never overshoot a cap, while signals,
// status and the periodic sweep run alongside.
func TestConcurrentReserveNeverOvershoots(t *testing.T) {
	cfg := oneEgress("big")
	cfg.Warmup.Plan = []Plan{{Name: "big", Default: []int{1000}}}
	cfg.Warmup.Window = "00:00-24:00"
	cfg.Shaping = []ShapingOverride{{Provider: "google", Rate: Unlimited}}
	h := newHarness(t, cfg, t0)
	// One second before the window closes the spread allows the whole cap
	// at once, so only the cap itself can stop the workers.
	now := t0.Add(24*time.Hour - time.Second)
	var granted atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 400 {
				if h.c.Reserve("ip1", "google", w%3, now).OK {
					granted.Add(1)
					h.c.Observe("ip1", "google", SignalDelivered, now)
				}
				if i%50 == 0 {
					h.c.Status(now)
					h.c.sweep(now)
				}
			}
		}()
	}
	wg.Wait()
	if granted.Load() != 1000 {
		t.Fatalf("granted %d, want exactly the cap 1000", granted.Load())
	}
	if s := h.siteStatus("ip1", "google", now); s.Sent != 1000 || s.Delivered != 1000 {
		t.Fatalf("status: %+v", s)
	}
}
