package warmup

import (
	"math"
	"time"
)

// tierA is the built-in plan's daily cap per (egress, provider) for the large
// providers (Google, Microsoft consumer and 365, Yahoo/AOL), day 1 first. It is
// PROVIDERS.md §4a's "kiln tier A" column, built by the rule of §4d: 50 on day 1
// (between SocketLabs' 50/hour/domain and Postmark's 100-500 per provider for
// the first days), doubling to day 5 (SocketLabs and Postmark allow 2x), x1.5
// to day 13 (SendGrid's automated plan grows about x1.4/day), then x1.2 to day
// 42 (Postmark's +20-50% once volume is substantial), rounded. Six weeks sits
// where SendGrid (41 days), SparkPost (4-8 weeks) and SES (2-6 weeks) overlap;
// from day 43 there is no warm-up cap, only shaping.
var tierA = []int{
	50, 100, 200, 400, 800, 1200, 1800, 2700, 4000, 6100,
	9100, 14000, 21000, 25000, 30000, 35000, 43000, 51000, 61000, 73000,
	88000, 110000, 130000, 150000, 180000, 220000, 260000, 320000, 380000, 450000,
	550000, 660000, 790000, 940000, 1100000, 1400000, 1600000, 2000000, 2300000, 2800000,
	3400000, 4100000,
}

// tierB is the built-in plan for every other provider and every MX-set or
// domain site: half of tier A, at least 25 (PROVIDERS.md §4d: the smaller
// receivers get the tightest shaping in every rule pack and are each a small
// share of a list).
var tierB = func() []int {
	b := make([]int, len(tierA))
	for i, v := range tierA {
		b[i] = max(v/2, 25)
	}
	return b
}()

// plan is a compiled plan: caps per provider index and a default.
type plan struct {
	name      string
	def       []int
	providers map[int][]int
}

func (p *plan) caps(provider int) []int {
	if c, ok := p.providers[provider]; ok {
		return c
	}
	return p.def
}

func builtinPlan(t *providerTable) *plan {
	p := &plan{name: defaultPlan, def: tierB, providers: map[int][]int{}}
	for i, a := range t.tierA {
		if a {
			p.providers[i] = tierA
		}
	}
	return p
}

// capFor returns the cap of plan day day: -1 (no cap) past the end of the
// list, 0 before day 1 (not started).
func capFor(caps []int, day int) int {
	switch {
	case caps == nil || day > len(caps):
		return -1
	case day < 1:
		return 0
	}
	return caps[day-1]
}

// calendar turns instants into local days and back, in the configured zone.
// A day number counts days since 1970-01-01 on the local calendar, so day
// arithmetic is integer arithmetic and DST never shifts it.
type calendar struct {
	loc              *time.Location
	winStart, winEnd int // minutes from local midnight
}

func (c *calendar) date(t time.Time) int32 {
	y, m, d := t.In(c.loc).Date()
	return int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// at returns the instant of local wall time min minutes after midnight of day
// (min may be 1440: the next midnight).
func (c *calendar) at(day int32, min int) time.Time {
	y, m, d := time.Unix(int64(day)*86400, 0).UTC().Date()
	return time.Date(y, m, d, 0, min, 0, 0, c.loc)
}

func (c *calendar) midnight(day int32) time.Time { return c.at(day, 0) }

func (c *calendar) format(day int32) string {
	return time.Unix(int64(day)*86400, 0).UTC().Format(time.DateOnly)
}

func (c *calendar) parse(s string) (int32, bool) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, false
	}
	return int32(t.Unix() / 86400), true
}

// windowHours is the length of the sending window in hours, for hourly caps.
func (c *calendar) windowHours() float64 { return float64(c.winEnd-c.winStart) / 60 }

// spreadRate is the pace, in messages per second, at which left messages fit
// into the time from now to the end of the window: the hourly rate is what is
// left today over the hours left, so a day's cap is spread, not burst at the
// start of the window. It is recomputed at every hour boundary.
func spreadRate(left int, now, winEnd time.Time) float64 {
	rest := winEnd.Sub(now).Seconds()
	if left <= 0 || rest <= 0 {
		return 0
	}
	return float64(left) / rest
}

// hourly is the even hourly cap of a day's cap, for plans and status.
func hourly(daily int, hours float64) int {
	if daily < 0 {
		return -1
	}
	return int(math.Ceil(float64(daily) / hours))
}
