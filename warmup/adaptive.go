package warmup

import (
	"fmt"
	"time"
)

// Signal is what one reply (or one complaint report) says about an egress at
// a provider. The caller maps its own classification onto it; the names match
// the words kiln's reply classifier uses, so ParseSignal accepts them as they
// are.
type Signal uint8

const (
	SignalNone      Signal = iota
	SignalDelivered        // the remote accepted the message
	SignalDeferral         // a temporary failure not blamed on anyone in particular
	SignalRate             // slow down: rate limited (421 4.7.28, Yahoo TS codes, "try again later"), too many connections
	SignalBlock            // the sender is blocked: blocklist, reputation, spam, authentication
	SignalComplaint        // a recipient complained (feedback loop)
	numSignals
)

var signalNames = [numSignals]string{"", "delivered", "deferral", "rate", "block", "complaint"}

func (s Signal) String() string {
	if s < numSignals {
		return signalNames[s]
	}
	return fmt.Sprintf("signal(%d)", uint8(s))
}

func (s Signal) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Signal) UnmarshalText(b []byte) error {
	v, ok := ParseSignal(string(b))
	if !ok {
		return fmt.Errorf("unknown signal %q", b)
	}
	*s = v
	return nil
}

// ParseSignal reads a signal name: "delivered", "deferral", "rate", "block",
// "complaint", or "" for none.
func ParseSignal(s string) (Signal, bool) {
	for i, n := range signalNames {
		if n == s {
			return Signal(i), true
		}
	}
	return SignalNone, false
}

// attempt reports whether the signal is the outcome of a delivery attempt
// (the denominator of deferral, rate and block fractions). Complaints arrive
// later and are measured against deliveries.
func (s Signal) attempt() bool { return s >= SignalDelivered && s <= SignalBlock }

// action is what a rule does; the order is severity.
type action uint8

const (
	actHold action = iota + 1
	actStepBack
	actPause
)

func parseAction(s string) (action, bool) {
	switch s {
	case "hold":
		return actHold, true
	case "step_back":
		return actStepBack, true
	case "pause":
		return actPause, true
	}
	return 0, false
}

func (a action) String() string {
	return [...]string{"", "hold", "step_back", "pause"}[a]
}

// rule is a validated Rule with defaults applied.
type rule struct {
	name     string
	signal   Signal
	min      int
	fraction float64
	window   time.Duration
	win      int // index of the lane's ring for this window
	action   action
	cooldown time.Duration
}

// DefaultRules are the built-in adaptive thresholds. Where the numbers come
// from (PROVIDERS.md):
//
//   - rate-hold: the first rate-limit reply holds the plan day and backs off.
//     Every rule pack reacts to the first 421 4.7.28 / TS0x / 4.7.650 (Kumo's
//     cross-provider rules fire on the first match, §3a); §4d rule 2: BACKOFF
//     keeps today's cap and does not advance tomorrow.
//   - rate-step-back: repeated rate limiting within the hour (3 replies and
//     2% of attempts) steps back a day, as §3c says for TSS04 repeated the
//     same day. The 2% is ours.
//   - rate-pause: persistent rate limiting (10 replies and 5% of attempts in
//     an hour) pauses for 2 h: §3b "temporarily blocked" PAUSE(2h), §3c
//     TSS04 PAUSE(2h). The counts are ours.
//   - deferral-hold: deferrals at 10% of attempts (with at least 10) hold the
//     day: §4d rule 1 (no source publishes a deferral threshold; 10% is
//     kiln's).
//   - block-pause: a sender-fault block pauses for 4 h and steps back: §3b
//     550 5.7.1 reputation PAUSE(4h), §4d rules 3-4. Kiln resumes by itself;
//     an operator can pause for longer.
//   - complaint-pause: complaints at 0.3% of deliveries over a day pause for
//     a day: Google's 0.3% cliff, §4d rule 5, §5.
func DefaultRules() []Rule {
	return []Rule{
		{Name: "rate-hold", Signal: "rate", Min: 1, Window: Duration(time.Hour), Action: "hold"},
		{Name: "rate-step-back", Signal: "rate", Min: 3, Fraction: 0.02, Window: Duration(time.Hour), Action: "step_back"},
		{Name: "rate-pause", Signal: "rate", Min: 10, Fraction: 0.05, Window: Duration(time.Hour), Action: "pause", Cooldown: Duration(2 * time.Hour)},
		{Name: "deferral-hold", Signal: "deferral", Min: 10, Fraction: 0.10, Window: Duration(time.Hour), Action: "hold"},
		{Name: "block-pause", Signal: "block", Min: 1, Window: Duration(time.Hour), Action: "pause", Cooldown: Duration(4 * time.Hour)},
		{Name: "complaint-pause", Signal: "complaint", Min: 1, Fraction: 0.003, Window: Duration(24 * time.Hour), Action: "pause", Cooldown: Duration(24 * time.Hour)},
	}
}

// compileRules applies defaults and assigns each distinct window a ring.
func compileRules(rs []Rule, cooldown time.Duration) ([]rule, []time.Duration) {
	if len(rs) == 0 {
		rs = DefaultRules()
	}
	var out []rule
	var windows []time.Duration
	for _, r := range rs {
		sig, _ := ParseSignal(r.Signal)
		act, _ := parseAction(r.Action)
		cr := rule{name: r.Name, signal: sig, min: r.Min, fraction: r.Fraction, window: r.Window.D(), action: act, cooldown: r.Cooldown.D()}
		if cr.name == "" {
			cr.name = r.Signal + "-" + r.Action
		}
		if cr.min <= 0 {
			cr.min = 1
		}
		if cr.window <= 0 {
			cr.window = defaultRuleWindow
		}
		if cr.cooldown <= 0 {
			cr.cooldown = cooldown
		}
		cr.win = -1
		for i, w := range windows {
			if w == cr.window {
				cr.win = i
			}
		}
		if cr.win < 0 {
			cr.win = len(windows)
			windows = append(windows, cr.window)
		}
		out = append(out, cr)
	}
	return out, windows
}

// ring counts signals in a sliding window of ringSlots buckets. The window
// slides one bucket (window/ringSlots) at a time, which is precise enough for
// thresholds over an hour or a day and keeps a lane's memory fixed.
const ringSlots = 12

type ring struct {
	width int64                         // bucket width in nanoseconds
	slot  [ringSlots]int64              // bucket number held by each slot
	n     [ringSlots][numSignals]uint32 // counts per signal
}

func (r *ring) add(t int64, s Signal) {
	b := t / r.width
	i := b % ringSlots
	if r.slot[i] != b {
		r.slot[i] = b
		r.n[i] = [numSignals]uint32{}
	}
	r.n[i][s]++
}

func (r *ring) sum(t int64) (out [numSignals]uint32) {
	b := t / r.width
	for i := range r.slot {
		if r.slot[i] > b-ringSlots && r.slot[i] <= b {
			for s := range out {
				out[s] += r.n[i][s]
			}
		}
	}
	return out
}

// adaptive is a lane's signal history, allocated on its first signal.
type adaptive struct {
	rings []ring
	fired []int64 // per rule: when it last fired (unix ns), so it fires once per window
}

func newAdaptive(rules []rule, windows []time.Duration) *adaptive {
	a := &adaptive{rings: make([]ring, len(windows)), fired: make([]int64, len(rules))}
	for i, w := range windows {
		a.rings[i].width = max(int64(w)/ringSlots, 1)
		for k := range a.rings[i].slot {
			a.rings[i].slot[k] = -1 << 62
		}
	}
	return a
}

func (a *adaptive) reset() {
	for i := range a.rings {
		w := a.rings[i].width
		a.rings[i] = ring{width: w}
		for k := range a.rings[i].slot {
			a.rings[i].slot[k] = -1 << 62
		}
	}
	clear(a.fired)
}

// observe counts s at t and returns the most severe rule that fires, or nil.
func (a *adaptive) observe(rules []rule, t int64, s Signal) *rule {
	for i := range a.rings {
		a.rings[i].add(t, s)
	}
	var best *rule
	var bestIdx int
	for i := range rules {
		r := &rules[i]
		if r.signal != s || (a.fired[i] != 0 && t-a.fired[i] < int64(r.window)) {
			continue
		}
		n := a.rings[r.win].sum(t)
		count := n[s]
		var denom uint32
		if s == SignalComplaint {
			denom = n[SignalDelivered]
		} else {
			for k := SignalDelivered; k <= SignalBlock; k++ {
				denom += n[k]
			}
		}
		if int(count) < r.min || float64(count) < r.fraction*float64(denom) {
			continue
		}
		if best == nil || r.action > best.action {
			best, bestIdx = r, i
		}
	}
	if best != nil {
		a.fired[bestIdx] = t
	}
	return best
}
