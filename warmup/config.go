package warmup

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // warm-up days follow warmup.timezone even on hosts without a zoneinfo database

	"kiln/internal/keyerr"
)

// Config is the warm-up and shaping part of kiln's configuration. It is
// embedded inline in the root config, so its fields are top-level keys:
//
//	[[egress]]   source addresses kiln sends from
//	[[pool]]     weighted groups of egresses that accounts send through
//	[warmup]     time zone, sending window, day counting, adaptive control, plans
//	[[provider]] extra or replaced provider groups (MX suffixes)
//	[[shaping]]  per-provider or per-domain connection and rate limits
//
// Every key may be left out; the defaults are documented on each field.
type Config struct {
	Egress   []Egress          `toml:"egress"`
	Pool     []Pool            `toml:"pool"`
	Warmup   Warmup            `toml:"warmup"`
	Provider []Provider        `toml:"provider"`
	Shaping  []ShapingOverride `toml:"shaping"`
}

// Egress is one source address kiln sends from.
type Egress struct {
	// Name identifies the egress in pools, status and events.
	Name string `toml:"name"`
	// Source is the IPv4 or IPv6 address delivery binds to. It must be an
	// address of this machine (checked at start, see CheckLocalAddrs).
	Source string `toml:"source"`
	// EHLO is the name announced from this address; it should be the
	// address's PTR name. Empty: kiln's hostname.
	EHLO string `toml:"ehlo"`
	// Start is the first day of the warm-up (YYYY-MM-DD in warmup.timezone).
	// Empty: the first day kiln runs with this egress. Before it, the egress
	// sends nothing.
	Start string `toml:"start"`
	// Plan names the warm-up plan: "default" (built in) or a [[warmup.plan]].
	Plan string `toml:"plan"`
	// Warm marks an address that already has a reputation: no warm-up caps,
	// only shaping and adaptive pauses. Pools spill to warm egresses.
	Warm bool `toml:"warm"`
}

// Pool is a weighted group of egresses. An account sends through one pool.
type Pool struct {
	Name string `toml:"name"`
	// Egress lists the members, as names or {name, weight} tables:
	// egress = ["ip1", { name = "ip2", weight = 3 }]. Weight defaults to 1.
	Egress []PoolMember `toml:"egress"`
	// Overflow says what happens when the egress drawn for a message cannot
	// send it now (today's cap used, spread, paused): "wait" (default) keeps
	// the message queued for that egress; "spill" sends it through a warm
	// egress of the pool (one marked warm, or one whose plan for that provider
	// is complete) when one can take it.
	Overflow string `toml:"overflow"`
}

// PoolMember is one egress of a pool with its weight.
type PoolMember struct {
	Name   string `toml:"name"`
	Weight int    `toml:"weight"`
}

// UnmarshalText lets a member be written as a bare name.
func (m *PoolMember) UnmarshalText(b []byte) error {
	*m = PoolMember{Name: string(b)}
	return nil
}

// Warmup holds the settings shared by every egress's warm-up.
type Warmup struct {
	// Timezone (IANA name) in which days start and the window is read.
	// Default "UTC".
	Timezone string `toml:"timezone"`
	// Window is the local time of day over which a day's cap is spread,
	// "HH:MM-HH:MM" (end may be "24:00"). Default "08:00-20:00": twelve hours,
	// so the hourly pace is the daily cap / 12 (PROVIDERS.md §4d). Warm egresses
	// and completed plans are not bound to it.
	Window string `toml:"window"`
	// Days is how plan days are counted: "calendar" (default: every day
	// counts, unless adaptive control held it) or "sending" (only days on
	// which the egress sent mail to that provider count, as MailerQ does,
	// PROVIDERS.md §4b).
	Days string `toml:"days"`
	// IdleRestart: an egress that has sent nothing for longer starts its
	// warm-up again at day 1 (SendGrid: re-warm after 30 idle days [SG-a]);
	// a provider that one egress has not sent to for that long is forgotten
	// and starts again like a provider never seen. Default "30d".
	IdleRestart Duration `toml:"idle_restart"`
	// Cooldown is how long a pause lasts when the rule that paused does not
	// say. Default "2h" (PROVIDERS.md §3c TSS04 PAUSE(2h)).
	Cooldown Duration `toml:"cooldown"`
	// PauseStepBack is how many plan days a pause steps back. Default 2
	// (PROVIDERS.md §4d rule 3: resume at day d-2). Set -1 for none.
	PauseStepBack int `toml:"pause_step_back"`
	// Backoff is how long an egress slows down for a provider after a hold or
	// a step back: one connection and at most BackoffRate. Default "90m"
	// (Kumo's cross-provider rate-limit rule [K-ex], PROVIDERS.md §3a).
	Backoff Duration `toml:"backoff"`
	// BackoffRate caps the message rate during a backoff. Default "1/min" [K-ex].
	BackoffRate Rate `toml:"backoff_rate"`
	// Rule lists the adaptive thresholds. When any is given they replace the
	// built-in rules (see DefaultRules).
	Rule []Rule `toml:"rule"`
	// Plan lists custom plans; egresses name them with egress.plan.
	Plan []Plan `toml:"plan"`
}

// Rule is one adaptive threshold: when, within Window, at least Min replies
// of kind Signal were seen and they are at least Fraction of the attempts
// (of the deliveries, for complaints), Action is taken for that egress and
// provider. A rule fires at most once per Window.
type Rule struct {
	// Name appears in events and status; default "<signal>-<action>".
	Name string `toml:"name"`
	// Signal is deferral, rate, block or complaint.
	Signal string `toml:"signal"`
	// Min is the least count of the signal in the window. Default 1.
	Min int `toml:"min"`
	// Fraction is the least share of attempts (0-1). Default 0.
	Fraction float64 `toml:"fraction"`
	// Window is the sliding window. Default "1h".
	Window Duration `toml:"window"`
	// Action is hold (do not advance at the end of the day, and back off),
	// step_back (go back one plan day now, hold, back off) or pause (stop
	// sending to that provider from that egress for Cooldown, step back
	// warmup.pause_step_back days, then resume by itself).
	Action string `toml:"action"`
	// Cooldown is the pause length; default warmup.cooldown.
	Cooldown Duration `toml:"cooldown"`
}

// Plan is a custom warm-up plan: daily caps by plan day (day 1 first) per
// provider, and for every other site. After the last day of a list, that
// provider has no warm-up cap (only shaping).
type Plan struct {
	Name string `toml:"name"`
	// Default caps apply to sites without their own list. Required.
	Default []int `toml:"default"`
	// Providers maps a provider name to its own caps.
	Providers map[string][]int `toml:"providers"`
}

// Provider adds a provider group or replaces the MX suffixes of a built-in
// one (same name).
type Provider struct {
	Name       string   `toml:"name"`
	MXSuffixes []string `toml:"mx_suffixes"`
}

// ShapingOverride changes the shaping of one provider group, or of one
// recipient domain. A domain entry takes that domain out of its provider or
// MX-set group: it gets its own site, with its own queue and limits. Zero
// values keep the built-in value.
type ShapingOverride struct {
	Provider string `toml:"provider"`
	Domain   string `toml:"domain"`
	// Connections is the most concurrent connections per egress.
	Connections int `toml:"connections"`
	// MessagesPerConnection before a connection is closed and reopened.
	MessagesPerConnection int `toml:"messages_per_connection"`
	// Rate is the most messages per egress ("100/s", "unlimited").
	Rate Rate `toml:"rate"`
}

// Defaults, with where they come from.
const (
	defaultPlan          = "default"
	defaultTimezone      = "UTC"
	defaultWindow        = "08:00-20:00" // PROVIDERS.md §4d: hourly cap = daily / 12
	defaultIdleRestart   = 30 * 24 * time.Hour
	defaultCooldown      = 2 * time.Hour
	defaultPauseStepBack = 2
	defaultBackoff       = 90 * time.Minute
	defaultBackoffRate   = Rate(1.0 / 60)
	defaultRuleWindow    = time.Hour
	maxWeight            = 1000
	// MaxPriority is the highest priority class; 0 is normal mail.
	MaxPriority = 9
)

var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	provRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	domainRE = regexp.MustCompile(`^(?i)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$`)
)

// Validate checks the section and returns every problem found, each a
// *keyerr.Error naming its key from the root of the config file
// ("egress[1].source", "pool[0].egress", "warmup.timezone"). A single problem
// is returned as the *keyerr.Error itself; several are joined.
// It does not look at this machine's addresses: see CheckLocalAddrs.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) { errs = append(errs, keyerr.New(key, format, a...)) }

	w := c.Warmup
	if w.Timezone != "" {
		if _, err := time.LoadLocation(w.Timezone); err != nil || strings.EqualFold(w.Timezone, "local") {
			add("warmup.timezone", "unknown time zone %q (use an IANA name such as \"Europe/Berlin\" or \"UTC\")", w.Timezone)
		}
	}
	if w.Window != "" {
		if _, _, err := parseWindow(w.Window); err != nil {
			add("warmup.window", "%v", err)
		}
	}
	switch w.Days {
	case "", "calendar", "sending":
	default:
		add("warmup.days", "must be \"calendar\" or \"sending\", not %q", w.Days)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"warmup.idle_restart", w.IdleRestart}, {"warmup.cooldown", w.Cooldown}, {"warmup.backoff", w.Backoff}} {
		if d.v < 0 {
			add(d.key, "must not be negative")
		}
	}
	if w.PauseStepBack < -1 || w.PauseStepBack > 60 {
		add("warmup.pause_step_back", "must be between 0 and 60 days (-1 for none)")
	}
	if w.BackoffRate < 0 {
		add("warmup.backoff_rate", "must not be negative")
	}

	// Providers first: plans and shaping refer to them.
	known := map[string]bool{}
	owner := map[string]string{} // suffix -> provider
	overridden := map[string]bool{}
	for _, p := range c.Provider {
		overridden[p.Name] = true
	}
	for _, b := range builtinProviders {
		known[b.name] = true
		if !overridden[b.name] {
			for _, s := range b.suffixes {
				owner[s] = b.name
			}
		}
	}
	seenProv := map[string]int{}
	for i, p := range c.Provider {
		key := fmt.Sprintf("provider[%d]", i)
		if !provRE.MatchString(p.Name) {
			add(key+".name", "%q is not a provider name (lower-case letters, digits, '.', '_', '-')", p.Name)
		} else if j, dup := seenProv[p.Name]; dup {
			add(key+".name", "provider %q is already defined at provider[%d]", p.Name, j)
		}
		seenProv[p.Name] = i
		known[p.Name] = true
		if len(p.MXSuffixes) == 0 {
			add(key+".mx_suffixes", "must list at least one MX host suffix")
		}
		for k, s := range p.MXSuffixes {
			n := normSuffix(s)
			skey := fmt.Sprintf("%s.mx_suffixes[%d]", key, k)
			if n == "" || !domainRE.MatchString(n) {
				add(skey, "%q is not a host name suffix", s)
				continue
			}
			if o, ok := owner[n]; ok && o != p.Name {
				where := "built-in provider " + o
				if _, isConf := seenProv[o]; isConf {
					where = "provider " + o
				}
				add(skey, "suffix %q is also claimed by %s (two providers may not share an MX suffix; to change a built-in provider, use its name)", n, where)
				continue
			}
			owner[n] = p.Name
		}
	}

	plans := map[string]bool{defaultPlan: true}
	for i, p := range w.Plan {
		key := fmt.Sprintf("warmup.plan[%d]", i)
		switch {
		case !nameRE.MatchString(p.Name):
			add(key+".name", "%q is not a plan name", p.Name)
		case p.Name == defaultPlan:
			add(key+".name", "%q is the built-in plan; choose another name", p.Name)
		case plans[p.Name]:
			add(key+".name", "plan %q is defined twice", p.Name)
		}
		plans[p.Name] = true
		if len(p.Default) == 0 {
			add(key+".default", "must list the daily caps for sites without their own list")
		}
		checkCaps(add, key+".default", p.Default)
		for prov, caps := range p.Providers {
			pkey := key + ".providers." + prov
			if !known[prov] {
				add(pkey, "unknown provider %q", prov)
			}
			if len(caps) == 0 {
				add(pkey, "must list at least one daily cap")
			}
			checkCaps(add, pkey, caps)
		}
	}

	egressIdx := map[string]int{}
	sources := map[netip.Addr]int{}
	for i, e := range c.Egress {
		key := fmt.Sprintf("egress[%d]", i)
		if !nameRE.MatchString(e.Name) {
			add(key+".name", "%q is not an egress name (letters, digits, '.', '_', '-'; at most 64)", e.Name)
		} else if j, dup := egressIdx[e.Name]; dup {
			add(key+".name", "egress %q is already defined at egress[%d]", e.Name, j)
		}
		egressIdx[e.Name] = i
		a, err := netip.ParseAddr(strings.TrimSpace(e.Source))
		switch {
		case e.Source == "":
			add(key+".source", "must be the IP address to send from")
		case err != nil || a.Zone() != "":
			add(key+".source", "%q is not an IP address", e.Source)
		case a.IsUnspecified() || a.IsMulticast():
			add(key+".source", "%s cannot be a source address", a)
		default:
			a = a.Unmap()
			if j, dup := sources[a]; dup {
				add(key+".source", "%s is also the source of egress[%d] (one address, one warm-up)", a, j)
			}
			sources[a] = i
		}
		if e.EHLO != "" && !domainRE.MatchString(strings.TrimSuffix(e.EHLO, ".")) {
			add(key+".ehlo", "%q is not a host name", e.EHLO)
		}
		if e.Start != "" {
			if _, err := time.Parse(time.DateOnly, e.Start); err != nil {
				add(key+".start", "%q is not a date (YYYY-MM-DD)", e.Start)
			}
		}
		if e.Plan != "" && !plans[e.Plan] {
			add(key+".plan", "unknown plan %q", e.Plan)
		}
	}

	pools := map[string]int{}
	for i, p := range c.Pool {
		key := fmt.Sprintf("pool[%d]", i)
		switch {
		case !nameRE.MatchString(p.Name):
			add(key+".name", "%q is not a pool name", p.Name)
		case pools[p.Name] > 0:
			add(key+".name", "pool %q is already defined at pool[%d]", p.Name, pools[p.Name]-1)
		}
		if _, clash := egressIdx[p.Name]; clash {
			add(key+".name", "%q is also an egress name; a pool needs a name of its own", p.Name)
		}
		pools[p.Name] = i + 1
		if len(p.Egress) == 0 {
			add(key+".egress", "a pool needs at least one egress")
		}
		members := map[string]bool{}
		for k, m := range p.Egress {
			mkey := fmt.Sprintf("%s.egress[%d]", key, k)
			if _, ok := egressIdx[m.Name]; !ok {
				add(mkey, "unknown egress %q", m.Name)
			} else if members[m.Name] {
				add(mkey, "egress %q is listed twice", m.Name)
			}
			members[m.Name] = true
			if m.Weight < 0 || m.Weight > maxWeight {
				add(mkey+".weight", "must be between 1 and %d", maxWeight)
			}
		}
		switch p.Overflow {
		case "", "wait", "spill":
		default:
			add(key+".overflow", "must be \"wait\" or \"spill\", not %q", p.Overflow)
		}
	}

	for i, r := range w.Rule {
		key := fmt.Sprintf("warmup.rule[%d]", i)
		if _, ok := ParseSignal(r.Signal); !ok || r.Signal == "delivered" {
			add(key+".signal", "must be deferral, rate, block or complaint, not %q", r.Signal)
		}
		if _, ok := parseAction(r.Action); !ok {
			add(key+".action", "must be hold, step_back or pause, not %q", r.Action)
		}
		if r.Min < 0 {
			add(key+".min", "must not be negative")
		}
		if r.Fraction < 0 || r.Fraction > 1 || math.IsNaN(r.Fraction) {
			add(key+".fraction", "must be between 0 and 1")
		}
		if r.Window < 0 || (r.Window > 0 && (r.Window.D() < time.Minute || r.Window.D() > 7*24*time.Hour)) {
			add(key+".window", "must be between 1m and 7d")
		}
		if r.Cooldown < 0 {
			add(key+".cooldown", "must not be negative")
		}
	}

	shaped := map[string]int{}
	for i, s := range c.Shaping {
		key := fmt.Sprintf("shaping[%d]", i)
		var id string
		switch {
		case (s.Provider == "") == (s.Domain == ""):
			add(key, "give exactly one of provider and domain")
		case s.Provider != "":
			id = "provider " + s.Provider
			if !known[s.Provider] {
				add(key+".provider", "unknown provider %q", s.Provider)
			}
		default:
			d := normSuffix(s.Domain)
			id = "domain " + d
			if !domainRE.MatchString(d) {
				add(key+".domain", "%q is not a domain name", s.Domain)
			}
		}
		if id != "" {
			if j, dup := shaped[id]; dup {
				add(key, "%s is already shaped at shaping[%d]", id, j)
			}
			shaped[id] = i
		}
		if s.Connections < 0 {
			add(key+".connections", "must not be negative")
		}
		if s.MessagesPerConnection < 0 {
			add(key+".messages_per_connection", "must not be negative")
		}
		if s.Rate < 0 {
			add(key+".rate", "must not be negative")
		}
	}

	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errors.Join(errs...)
}

// checkCaps rejects non-positive caps and caps that shrink from one day to
// the next: a plan only ever ramps up; going back is adaptive control's job.
func checkCaps(add func(string, string, ...any), key string, caps []int) {
	for d, v := range caps {
		switch {
		case v <= 0:
			add(fmt.Sprintf("%s[%d]", key, d), "daily cap must be positive, got %d", v)
		case d > 0 && v < caps[d-1]:
			add(fmt.Sprintf("%s[%d]", key, d), "cap %d (day %d) is less than %d (day %d): a plan's caps may not shrink", v, d+1, caps[d-1], d)
		}
	}
}

// CheckLocalAddrs reports, as *keyerr.Error values, every egress whose source
// address is not configured on one of this machine's network interfaces:
// delivery could not bind to it. It is separate from Validate so that tests,
// and "config check" on another machine, can skip it.
func (c Config) CheckLocalAddrs() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return fmt.Errorf("listing network interfaces: %w", err)
	}
	local := map[netip.Addr]bool{}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			local[na.Unmap()] = true
		}
	}
	var errs []error
	for i, e := range c.Egress {
		a, err := netip.ParseAddr(strings.TrimSpace(e.Source))
		if err != nil {
			continue // Validate reports it
		}
		if !local[a.Unmap()] {
			errs = append(errs, keyerr.New(fmt.Sprintf("egress[%d].source", i), "%s is not an address of this machine (no network interface has it)", a))
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// parseWindow reads "HH:MM-HH:MM" as minutes from local midnight.
func parseWindow(s string) (start, end int, err error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a window (use \"HH:MM-HH:MM\", e.g. \"08:00-20:00\")", s)
	}
	if start, err = parseClock(a); err == nil {
		end, err = parseClock(b)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a window: %v", s, err)
	}
	if end <= start {
		return 0, 0, fmt.Errorf("%q: the window must end after it starts on the same day", s)
	}
	if end-start < 60 {
		return 0, 0, fmt.Errorf("%q: the window must be at least an hour long", s)
	}
	return start, end, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) || len(m) != 2 {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	return hh*60 + mm, nil
}
