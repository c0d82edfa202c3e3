package suppress

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"kiln/internal/keyerr"
)

// Config is the [suppression] section of kiln's config. Every key may be left
// out; a zero value means the default documented on the field, which is also
// what DefaultConfig returns.
//
//	[suppression]
//	rcpt_action = "refuse"          # or "drop"
//	bounce_scope = "global"         # or "account"
//	match_base_address = false
//	soft_fail_count = 3             # -1 turns the rule off
//	soft_fail_window = "30d"
//	soft_fail_expiry = "90d"
//	sweep_interval = "1h"
//
//	[suppression.expiry]            # by source; "never" = no expiry
//	reply = "never"
//	late-bounce = "never"
//	complaint = "never"
//	unsubscribe = "never"
//	manual = "never"
//	import = "never"
//
//	[suppression.reason_expiry]     # by reason; wins over the source's
//	# hostunknown = "180d"
//
//	[suppression.breaker]
//	hard_bounce_rate = "5%"         # "off" disables this limit
//	complaint_rate = "0.3%"
//	window = 1000
//	min_sample = 100
//	complaint_min_sample = 1000
type Config struct {
	// RcptAction is what happens when a client gives a suppressed recipient
	// at RCPT time: "refuse" (default) answers 550 5.7.1 naming the
	// suppression (see RcptReply); "drop" accepts the recipient, does not
	// deliver to it and emits a "dropped" event, so a sending application
	// that cannot handle refusals is not disturbed.
	RcptAction string `toml:"rcpt_action"`
	// BounceScope is where entries that kiln makes from bounces (sources
	// reply, late-bounce and soft-failure) go: "global" (default: an address
	// that does not exist does not exist for any account, and every account
	// shares the egress IPs that a bounce hurts) or "account" (each
	// account's list is its own). Complaints and unsubscribes always go to
	// the account's scope: a recipient who did not want one sender's mail
	// may want another's.
	BounceScope string `toml:"bounce_scope"`
	// MatchBaseAddress makes an entry for user@example.com also cover
	// user+tag@example.com (default false: "+" is not a subaddress separator
	// everywhere, and stripping it could suppress a stranger). An entry for
	// user+tag@example.com never covers user@example.com.
	MatchBaseAddress bool `toml:"match_base_address"`
	// SoftFailCount is how many distinct messages to an address must fail
	// softly (mailbox full, or expired after retries) within SoftFailWindow
	// before the address is suppressed. Default 3; -1 turns the rule off.
	SoftFailCount int `toml:"soft_fail_count"`
	// SoftFailWindow is the window the soft failures are counted in.
	// Default "30d".
	SoftFailWindow Duration `toml:"soft_fail_window"`
	// SoftFailExpiry is how long a soft-failure suppression lasts. Default
	// "90d"; "never" keeps it until removed.
	SoftFailExpiry Duration `toml:"soft_fail_expiry"`
	// Expiry is how long an entry from each source lasts, by source name
	// (reply, late-bounce, complaint, unsubscribe, manual, import); "never"
	// keeps it until removed. Default: never, for every source. The
	// soft-failure source is set by SoftFailExpiry.
	Expiry map[string]Duration `toml:"expiry"`
	// ReasonExpiry is how long an entry with each reason lasts, by reason
	// (DESIGN.md's vocabulary); it wins over the source's expiry. Empty by
	// default. A domain that did not exist may be registered again, so an
	// operator might set hostunknown = "180d".
	ReasonExpiry map[string]Duration `toml:"reason_expiry"`
	// SweepInterval is how often Run deletes expired entries and stale
	// soft-failure counts. Default "1h".
	SweepInterval Duration `toml:"sweep_interval"`
	// Breaker is the per-account circuit breaker.
	Breaker BreakerConfig `toml:"breaker"`
}

// BreakerConfig is the [suppression.breaker] table: when an account's recent
// outcomes say its list is bad, the breaker trips and the engine holds the
// account's queue until an operator resets it.
//
// The window is the account's last Window final outcomes (one per recipient of
// a message: delivered, hard bounce, or other). The hard-bounce rate is hard
// bounces / max(outcomes in the window, MinSample); the complaint rate is
// complaints / max(deliveries in the window, ComplaintMinSample), complaints
// counting while the outcomes they arrived with are in the window. Dividing by
// at least the minimum sample keeps a new account's first bounce from
// tripping (1 bounce of 2 messages is 1/100 = 1%) while a run of bounces
// still trips early (5 hard bounces among the first 5 messages reach 5%).
type BreakerConfig struct {
	// HardBounceRate trips the breaker when reached. Default "5%"; "off"
	// disables it.
	HardBounceRate Rate `toml:"hard_bounce_rate"`
	// ComplaintRate trips the breaker when reached. Default "0.3%" (the
	// rate at which Gmail and Yahoo start rejecting a sender); "off"
	// disables it.
	ComplaintRate Rate `toml:"complaint_rate"`
	// Window is how many recent outcomes per account are kept. Default 1000.
	Window int `toml:"window"`
	// MinSample is the least number of outcomes the hard-bounce rate is
	// divided by. Default 100.
	MinSample int `toml:"min_sample"`
	// ComplaintMinSample is the least number of deliveries the complaint
	// rate is divided by. Default 1000: at 0.3%, three complaints.
	ComplaintMinSample int `toml:"complaint_min_sample"`
}

// Values of Config.RcptAction.
const (
	RcptRefuse = "refuse"
	RcptDrop   = "drop"
)

// Values of Config.BounceScope.
const (
	ScopeGlobal  = "global"
	ScopeAccount = "account"
)

// DefaultConfig returns the section with every default written out: what an
// empty [suppression] section means.
func DefaultConfig() Config {
	return Config{
		RcptAction:     RcptRefuse,
		BounceScope:    ScopeGlobal,
		SoftFailCount:  3,
		SoftFailWindow: Duration(30 * 24 * time.Hour),
		SoftFailExpiry: Duration(90 * 24 * time.Hour),
		Expiry: map[string]Duration{
			string(SourceReply): Never, string(SourceLateBounce): Never, string(SourceComplaint): Never,
			string(SourceUnsubscribe): Never, string(SourceManual): Never, string(SourceImport): Never,
		},
		SweepInterval: Duration(time.Hour),
		Breaker:       DefaultBreakerConfig(),
	}
}

// DefaultBreakerConfig returns the breaker's defaults.
func DefaultBreakerConfig() BreakerConfig {
	return BreakerConfig{HardBounceRate: 0.05, ComplaintRate: 0.003, Window: 1000, MinSample: 100, ComplaintMinSample: 1000}
}

// withDefaults fills every zero field with its default.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.RcptAction == "" {
		c.RcptAction = d.RcptAction
	}
	if c.BounceScope == "" {
		c.BounceScope = d.BounceScope
	}
	if c.SoftFailCount == 0 {
		c.SoftFailCount = d.SoftFailCount
	}
	if c.SoftFailWindow == 0 {
		c.SoftFailWindow = d.SoftFailWindow
	}
	if c.SoftFailExpiry == 0 {
		c.SoftFailExpiry = d.SoftFailExpiry
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = d.SweepInterval
	}
	exp := make(map[string]Duration, len(d.Expiry))
	for k, v := range d.Expiry {
		exp[k] = v
	}
	for k, v := range c.Expiry {
		if v != 0 {
			exp[k] = v
		}
	}
	c.Expiry = exp
	c.Breaker = c.Breaker.withDefaults()
	return c
}

func (b BreakerConfig) withDefaults() BreakerConfig {
	d := DefaultBreakerConfig()
	if b.HardBounceRate == 0 {
		b.HardBounceRate = d.HardBounceRate
	}
	if b.ComplaintRate == 0 {
		b.ComplaintRate = d.ComplaintRate
	}
	if b.Window <= 0 {
		b.Window = d.Window
	}
	if b.MinSample <= 0 {
		b.MinSample = d.MinSample
	}
	if b.ComplaintMinSample <= 0 {
		b.ComplaintMinSample = d.ComplaintMinSample
	}
	return b
}

// Validate checks the section. Each problem is a *keyerr.Error naming the key
// relative to the section ("soft_fail_window", "expiry.reply"); several are
// joined with errors.Join.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) { errs = append(errs, keyerr.New(key, format, a...)) }
	switch c.RcptAction {
	case "", RcptRefuse, RcptDrop:
	default:
		add("rcpt_action", "must be \"refuse\" or \"drop\", not %q", c.RcptAction)
	}
	switch c.BounceScope {
	case "", ScopeGlobal, ScopeAccount:
	default:
		add("bounce_scope", "must be \"global\" or \"account\", not %q", c.BounceScope)
	}
	if c.SoftFailCount < -1 || c.SoftFailCount > 1000 {
		add("soft_fail_count", "must be between 1 and 1000 (or -1 to turn the rule off)")
	}
	if c.SoftFailWindow < 0 {
		add("soft_fail_window", "must be a duration, not never")
	} else if c.SoftFailWindow != 0 && c.SoftFailWindow.D() < time.Minute {
		add("soft_fail_window", "must be at least a minute")
	}
	if c.SoftFailExpiry > 0 && c.SoftFailExpiry.D() < time.Minute {
		add("soft_fail_expiry", "must be at least a minute, or never")
	}
	if c.SweepInterval < 0 || (c.SweepInterval > 0 && c.SweepInterval.D() < time.Second) {
		add("sweep_interval", "must be at least a second")
	}
	for _, k := range sortedKeys(c.Expiry) {
		v := c.Expiry[k]
		switch Source(k) {
		case SourceSoftFailure:
			add("expiry."+k, "is set by soft_fail_expiry")
			continue
		case SourceReply, SourceLateBounce, SourceComplaint, SourceUnsubscribe, SourceManual, SourceImport:
		default:
			add("expiry."+k, "unknown source (use %s)", strings.Join(expirySources(), ", "))
			continue
		}
		if v > 0 && v.D() < time.Minute {
			add("expiry."+k, "must be at least a minute, or never")
		}
	}
	for _, k := range sortedKeys(c.ReasonExpiry) {
		v := c.ReasonExpiry[k]
		if !KnownReason(k) {
			add("reason_expiry."+k, "unknown reason (use DESIGN.md's vocabulary: userunknown, hostunknown, mailboxfull, ...)")
			continue
		}
		if v == 0 || (v > 0 && v.D() < time.Minute) {
			add("reason_expiry."+k, "must be at least a minute, or never")
		}
	}
	b := c.Breaker
	for _, r := range []struct {
		key string
		v   Rate
	}{{"breaker.hard_bounce_rate", b.HardBounceRate}, {"breaker.complaint_rate", b.ComplaintRate}} {
		if r.v != Off && (r.v < 0 || r.v > 1) {
			add(r.key, "must be between 0%% and 100%%, or \"off\"")
		}
	}
	if b.Window < 0 || b.Window > 1_000_000 {
		add("breaker.window", "must be between 1 and 1000000 outcomes")
	}
	if b.MinSample < 0 {
		add("breaker.min_sample", "must not be negative")
	} else if w := b.withDefaults().Window; b.MinSample > w {
		add("breaker.min_sample", "must not exceed the window (%d)", w)
	}
	if b.ComplaintMinSample < 0 {
		add("breaker.complaint_min_sample", "must not be negative")
	}
	return errors.Join(errs...)
}

func expirySources() []string {
	return []string{string(SourceReply), string(SourceLateBounce), string(SourceComplaint),
		string(SourceUnsubscribe), string(SourceManual), string(SourceImport)}
}

func sortedKeys(m map[string]Duration) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// expiryFor returns when an entry made at created for reason and src expires,
// the zero time for never.
func (c *Config) expiryFor(reason string, src Source, created time.Time) time.Time {
	d, ok := c.ReasonExpiry[reason]
	if !ok || d == 0 {
		if src == SourceSoftFailure {
			d = c.SoftFailExpiry
		} else {
			d = c.Expiry[string(src)]
		}
	}
	if d <= 0 {
		return time.Time{}
	}
	return created.Add(d.D())
}

// RcptReply is the reply kiln gives at RCPT time for a suppressed recipient
// when rcpt_action is "refuse": 550 with enhanced status 5.7.1 (delivery not
// authorized), naming the suppression and its reason so the sending
// application can tell it from a remote's refusal. The code and enhanced code
// are returned apart for go-smtp's SMTPError.
func RcptReply(e Entry) (code int, enhanced [3]int, text string) {
	where := "kiln's suppression list"
	if e.Scope != "" {
		where = "this account's suppression list"
	}
	text = fmt.Sprintf("recipient is on %s (reason %s, source %s, since %s)", where, e.Reason, e.Source, e.Created.UTC().Format("2006-01-02"))
	return 550, [3]int{5, 7, 1}, text
}
