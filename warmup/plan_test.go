package warmup

import (
	"math"
	"testing"
	"time"
)

// The built-in plan follows PROVIDERS.md §4d: 50 on day 1, doubling to day
// 5, then x1.5 to day 13, then x1.2 to day 42 (rounded), never shrinking;
// tier B is half, at least 25; no cap from day 43.
func TestBuiltinPlan(t *testing.T) {
	if len(tierA) != 42 || tierA[0] != 50 || tierA[41] != 4100000 {
		t.Fatalf("tier A: %d days, %d .. %d", len(tierA), tierA[0], tierA[len(tierA)-1])
	}
	for d := 1; d < len(tierA); d++ {
		g := float64(tierA[d]) / float64(tierA[d-1])
		var lo, hi float64
		switch {
		case d < 5:
			lo, hi = 2, 2
		case d < 13:
			lo, hi = 1.45, 1.6
		default:
			lo, hi = 1.1, 1.3
		}
		if g < lo || g > hi {
			t.Errorf("day %d -> %d grows x%.2f, want %.2f..%.2f", d, d+1, g, lo, hi)
		}
	}
	for d, v := range tierB {
		if v != max(tierA[d]/2, 25) {
			t.Errorf("tier B day %d = %d", d+1, v)
		}
	}
	tbl := newProviderTable(nil)
	p := builtinPlan(tbl)
	for _, name := range []string{"google", "yahoo", "microsoft", "microsoft365"} {
		if c := p.caps(tbl.byName[name]); &c[0] != &tierA[0] {
			t.Errorf("%s is not on tier A", name)
		}
	}
	for _, name := range []string{"apple", "gmx", "comcast"} {
		if c := p.caps(tbl.byName[name]); &c[0] != &tierB[0] {
			t.Errorf("%s is not on tier B", name)
		}
	}
	if c := p.caps(-1); &c[0] != &tierB[0] {
		t.Error("unmatched sites are not on tier B")
	}
}

func TestCapFor(t *testing.T) {
	caps := []int{10, 20, 40}
	for day, want := range map[int]int{-3: 0, 0: 0, 1: 10, 3: 40, 4: -1, 100: -1} {
		if got := capFor(caps, day); got != want {
			t.Errorf("capFor(day %d) = %d, want %d", day, got, want)
		}
	}
	if capFor(nil, 1) != -1 {
		t.Error("a warm egress has a cap")
	}
}

func TestSpreadRate(t *testing.T) {
	end := t0.Add(20 * time.Hour)
	cases := []struct {
		left     int
		now      time.Time
		wantHour float64
	}{
		{120, t0.Add(8 * time.Hour), 10},   // 120 over 12 h
		{60, t0.Add(14 * time.Hour), 10},   // half left, half the time
		{100, t0.Add(19 * time.Hour), 100}, // the last hour takes what is left
		{0, t0.Add(9 * time.Hour), 0},
		{10, end, 0},
	}
	for _, tc := range cases {
		got := spreadRate(tc.left, tc.now, end) * 3600
		if math.Abs(got-tc.wantHour) > 1e-9 {
			t.Errorf("spreadRate(%d at %s) = %.3f/h, want %.3f/h", tc.left, tc.now.Format("15:04"), got, tc.wantHour)
		}
	}
}

// Days follow the configured zone: a local midnight is a day boundary even
// when it is not a UTC one, and the DST change does not shift the count.
func TestCalendarInZone(t *testing.T) {
	loc, _ := time.LoadLocation("Europe/Berlin")
	cal := calendar{loc: loc, winStart: 8 * 60, winEnd: 20 * 60}
	before := time.Date(2026, 3, 28, 23, 30, 0, 0, loc) // 22:30 UTC
	after := time.Date(2026, 3, 29, 0, 30, 0, 0, loc)   // 23:30 UTC the same UTC day
	if cal.date(after)-cal.date(before) != 1 {
		t.Fatalf("local midnight is not a day boundary: %d %d", cal.date(before), cal.date(after))
	}
	d := cal.date(after)
	if got := cal.format(d); got != "2026-03-29" {
		t.Fatalf("format = %s", got)
	}
	// 2026-03-29 is 23 hours long in Berlin (CET -> CEST at 02:00).
	if got := cal.midnight(d + 1).Sub(cal.midnight(d)); got != 23*time.Hour {
		t.Fatalf("day length = %v, want 23h", got)
	}
	if got := cal.at(d, 8*60); !got.Equal(time.Date(2026, 3, 29, 6, 0, 0, 0, time.UTC)) {
		t.Fatalf("window start = %v (want 08:00 CEST)", got)
	}
	if pd, ok := cal.parse("2026-03-29"); !ok || pd != d {
		t.Fatalf("parse = %d, %v", pd, ok)
	}
}

func TestWRRSeq(t *testing.T) {
	got := wrrSeq([]int{3, 1})
	if len(got) != 4 || got[0] != 0 || got[1] != 0 && got[2] != 0 {
		t.Fatalf("3:1 = %v", got)
	}
	n := [2]int{}
	for _, i := range wrrSeq([]int{200, 100}) {
		n[i]++
	}
	if n != [2]int{2, 1} {
		t.Fatalf("200:100 reduced to %v", n)
	}
	for _, s := range [][]int{wrrSeq([]int{1, 1, 1})} {
		if len(s) != 3 || s[0] == s[1] || s[1] == s[2] {
			t.Fatalf("1:1:1 = %v", s)
		}
	}
}
