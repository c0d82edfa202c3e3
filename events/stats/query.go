package stats

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxPoints bounds the points of one series.
const MaxPoints = 5000

// Query selects a series, or with Top the values of a dimension.
type Query struct {
	// Type is the event type (events.Delivered, ...). Required.
	Type string
	// By and Value select one value of a dimension; ByTotal is the type's
	// total. Top ranks the values of By and ignores Value.
	By    Dim
	Value string
	// Since and Until bound the time: Since <= t < Until. Zero Until is now;
	// zero Since is an hour before Until.
	Since, Until time.Time
	// Step is the width of a point, rounded up to a whole minute, or to a
	// whole hour when the range reaches past the minute retention. Zero
	// chooses one for about 120 points.
	Step time.Duration

	top bool // set by Top, which ranks every value
}

// Series is the counts of one query, one per step from Start.
type Series struct {
	Type   string    `json:"type"`
	By     Dim       `json:"by,omitempty"`
	Value  string    `json:"value,omitempty"`
	Start  time.Time `json:"start"`
	Step   int64     `json:"step"` // seconds
	Points []uint64  `json:"points"`
	Total  uint64    `json:"total"`
}

// Count is one value of a dimension and its count over a range.
type Count struct {
	Value string `json:"value"`
	Count uint64 `json:"count"`
}

// ErrQuery is wrapped by the errors of a bad query.
var ErrQuery = errors.New("bad statistics query")

// span is a resolved query: [a, b) in minutes, the step in minutes, and
// whether the minute ring covers it.
type span struct {
	a, b, step int64
	minutes    bool
	floor      int64 // the first minute the hour ring still holds
}

func (s *Stats) resolve(q Query) (span, error) {
	if q.Type == "" {
		return span{}, fmt.Errorf("%w: type is required", ErrQuery)
	}
	if _, ok := dimIndex(q.By); !ok {
		return span{}, fmt.Errorf("%w: unknown dimension %q", ErrQuery, q.By)
	}
	if q.By != ByTotal && q.Value == "" && !q.top {
		return span{}, fmt.Errorf("%w: a value of %s is required", ErrQuery, q.By)
	}
	now := s.clk.Now()
	until := q.Until
	if until.IsZero() {
		until = now
	}
	since := q.Since
	if since.IsZero() {
		since = until.Add(-time.Hour)
	}
	if !since.Before(until) {
		return span{}, fmt.Errorf("%w: since must be before until", ErrQuery)
	}
	sp := span{a: floorDiv(since.Unix(), 60), b: ceilDiv(until.Unix(), 60)}
	sp.minutes = sp.a >= s.oldestHour(now)*60
	sp.floor = s.oldestDay(now) * 1440
	unit := int64(1)
	if !sp.minutes {
		unit = 60
	}
	step := ceilDiv(int64(q.Step/time.Second), 60)
	if step <= 0 {
		step = ceilDiv(sp.b-sp.a, 120)
		// Prefer round steps: 1, 5, 10, 15, 30, 60 minutes, 1, 2, 3, 6,
		// 12, 24 hours.
		for _, r := range []int64{1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440} {
			if step <= r {
				step = r
				break
			}
		}
	}
	step = ceilDiv(max(step, unit), unit) * unit
	sp.step = step
	sp.a = floorDiv(sp.a, step) * step
	sp.b = ceilDiv(sp.b, step) * step
	if (sp.b-sp.a)/step > MaxPoints {
		return span{}, fmt.Errorf("%w: more than %d points; use a longer step", ErrQuery, MaxPoints)
	}
	return sp, nil
}

// Series returns the counts of q's type (by q.By = q.Value) per step. Times
// with no events, or older than the retention, count zero.
func (s *Stats) Series(q Query) (Series, error) {
	sp, err := s.resolve(q)
	if err != nil {
		return Series{}, err
	}
	d, _ := dimIndex(q.By)
	if d == 0 {
		q.Value = ""
	}
	out := Series{Type: q.Type, By: q.By, Value: q.Value, Start: time.Unix(sp.a*60, 0).UTC(), Step: sp.step * 60,
		Points: make([]uint64, (sp.b-sp.a)/sp.step)}
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.series[key{q.Type, uint8(d), q.Value}]
	if sr == nil {
		return out, nil
	}
	for i := range out.Points {
		a := sp.a + int64(i)*sp.step
		out.Points[i] = sr.sum(max(a, sp.floor), a+sp.step, sp.minutes)
		out.Total += out.Points[i]
	}
	return out, nil
}

// Top returns the n values of q.By with the most events of q.Type over the
// range, most first (n <= 0: all).
func (s *Stats) Top(q Query, n int) ([]Count, error) {
	q.top = true
	sp, err := s.resolve(q)
	if err != nil {
		return nil, err
	}
	d, _ := dimIndex(q.By)
	if d == 0 {
		return nil, fmt.Errorf("%w: top needs a dimension", ErrQuery)
	}
	out := []Count{}
	s.mu.Lock()
	for k, sr := range s.series {
		if k.typ != q.Type || k.dim != uint8(d) {
			continue
		}
		if c := sr.sum(max(sp.a, sp.floor), sp.b, sp.minutes); c > 0 {
			out = append(out, Count{k.val, c})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Count) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Value, b.Value)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Sum returns the number of events of q's type (by q.By = q.Value) over the
// range.
func (s *Stats) Sum(q Query) (uint64, error) {
	q.Step = 0
	sp, err := s.resolve(q)
	if err != nil {
		return 0, err
	}
	d, _ := dimIndex(q.By)
	if d == 0 {
		q.Value = ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.series[key{q.Type, uint8(d), q.Value}]
	if sr == nil {
		return 0, nil
	}
	return sr.sum(max(sp.a, sp.floor), sp.b, sp.minutes), nil
}

// sum counts minutes [a, b): whole hours from the hour ring, the edges from
// the minute ring. Without minutes, a and b are taken to whole hours.
func (sr *series) sum(a, b int64, minutes bool) uint64 {
	var t uint64
	if !minutes {
		for h := floorDiv(a, 60); h < ceilDiv(b, 60); h++ {
			t += sr.hour.get(h)
		}
		return t
	}
	for ; a < b && floorMod(a, 60) != 0; a++ {
		t += sr.min.get(a)
	}
	for ; a+60 <= b; a += 60 {
		t += sr.hour.get(floorDiv(a, 60))
	}
	for ; a < b; a++ {
		t += sr.min.get(a)
	}
	return t
}

// Types returns the event types seen, sorted.
func (s *Stats) Types() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.series {
		if k.dim == 0 {
			out = append(out, k.typ)
		}
	}
	slices.Sort(out)
	return out
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
