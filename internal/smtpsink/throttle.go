package smtpsink

import (
	"sort"
	"strings"
	"time"
)

// Throttle refuses mail from a client IP address once it has had PerHour
// messages accepted within the last hour, the way the big mailbox providers
// rate-limit a sending IP. A message counts towards a throttle when one of
// its recipients matches; the refusal is given at Stage (for recipients that
// match, at the rcpt stage) and, so that the limit holds exactly however many
// sessions are open, always again after the final dot of a transaction that
// would go over it.
type Throttle struct {
	// Match is the recipient pattern (as Rule.Match) of the mail counted
	// and refused; "" is every recipient.
	Match string `json:"match,omitempty"`
	// PerHour is how many matching messages one client IP may have
	// accepted in any 60 minutes; the next ones are refused.
	PerHour int `json:"per_hour"`
	// Stage is where the refusal comes first: connect (the greeting), mail,
	// rcpt (the default) or data (only after the final dot).
	Stage Stage `json:"stage,omitempty"`
	// Code, Enhanced and Text are the refusal; Provider fills them in.
	// "{ip}" in the text is the client's address, "{addr}" the recipient.
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced,omitempty"`
	Text     string `json:"text,omitempty"`
}

// Validate reports the first problem with t, naming the field.
func (t Throttle) Validate() error {
	if t.PerHour < 0 {
		return fieldErrorf("per_hour", "per_hour must not be negative")
	}
	switch t.Stage {
	case "", StageConnect, StageMail, StageRcpt, StageData:
	default:
		return fieldErrorf("stage", "stage %q: want connect, mail, rcpt or data", t.Stage)
	}
	if t.Code/100 != 4 && t.Code/100 != 5 {
		return fieldErrorf("code", "code %d: a throttle refuses, want 4xx or 5xx", t.Code)
	}
	return validReply(t.Code, t.Enhanced, t.Text)
}

func (t Throttle) stage() Stage {
	if t.Stage == "" {
		return StageRcpt
	}
	return t.Stage
}

// providerThrottles are the rate-limit replies of the big mailbox providers,
// worded as they send them (texts and codes from kiln's provider notes: the
// parts kiln's reply classifier matches are kept verbatim).
var providerThrottles = map[string]Throttle{
	// Gmail: 421 4.7.28, and every Google reply ends in "- gsmtp".
	"gmail": {Code: 421, Enhanced: "4.7.28", Text: "[{ip}] Our system has detected an unusual rate of unsolicited mail originating from your IP address. To protect our users from spam, mail sent from your IP address has been temporarily rate limited. Please visit https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email Senders Guidelines. - gsmtp"},
	// Yahoo (and AOL): TSS04, with Yahoo's diagnostic code 4.16.55.1.
	"yahoo": {Code: 421, Enhanced: "4.7.0", Text: "[TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"},
	// Microsoft (Outlook.com): 4.7.650, rule tag S775.
	"microsoft": {Code: 451, Enhanced: "4.7.650", Text: "The mail server [{ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)"},
}

// Provider returns the refusal a provider gives when it rate-limits an IP:
// "gmail", "yahoo" or "microsoft". Only Code, Enhanced and Text are set.
func Provider(name string) (Throttle, bool) {
	t, ok := providerThrottles[strings.ToLower(name)]
	return t, ok
}

// Providers lists the names Provider knows.
func Providers() []string {
	var names []string
	for n := range providerThrottles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// window counts events in the last 60 minutes in one bucket per minute.
type window struct {
	minute [60]int64 // the minute (Unix time / 60) each bucket counts
	count  [60]int
}

func minuteOf(t time.Time) int64 { return t.Unix() / 60 }

func (w *window) add(m int64, n int) {
	i := m % 60
	if w.minute[i] != m {
		w.minute[i], w.count[i] = m, 0
	}
	w.count[i] += n
}

// undo takes back n events counted in minute m, if that bucket still counts
// minute m.
func (w *window) undo(m int64, n int) {
	if i := m % 60; w.minute[i] == m {
		w.count[i] -= n
	}
}

func (w *window) sum(m int64) int {
	n := 0
	for i := range w.minute {
		if w.minute[i] > m-60 && w.minute[i] <= m {
			n += w.count[i]
		}
	}
	return n
}

// throttles holds the windows of every throttle, per client IP. The caller
// holds the server's lock.
type throttles struct {
	rules []Throttle
	win   []map[string]*window // per rule, by client IP
}

func newThrottles(rules []Throttle) *throttles {
	t := &throttles{rules: rules, win: make([]map[string]*window, len(rules))}
	for i := range t.win {
		t.win[i] = make(map[string]*window)
	}
	return t
}

// over reports whether ip has used up throttle i.
func (t *throttles) over(i int, ip string, m int64) bool {
	w := t.win[i][ip]
	return w != nil && w.sum(m) >= t.rules[i].PerHour
}

// reserve counts one message from ip for throttle i.
func (t *throttles) reserve(i int, ip string, m int64) {
	w := t.win[i][ip]
	if w == nil {
		if len(t.win[i]) >= 4096 {
			t.reap(i, m)
		}
		w = &window{}
		t.win[i][ip] = w
	}
	w.add(m, 1)
}

// reap forgets the addresses with nothing counted in the last hour.
func (t *throttles) reap(i int, m int64) {
	for ip, w := range t.win[i] {
		if w.sum(m) == 0 {
			delete(t.win[i], ip)
		}
	}
}

func (t *throttles) release(i int, ip string, m int64) {
	if w := t.win[i][ip]; w != nil {
		w.undo(m, 1)
	}
}

func (t Throttle) reply(addr, ip string) reply {
	return makeReply(t.Code, t.Enhanced, t.Text, addr, ip)
}
