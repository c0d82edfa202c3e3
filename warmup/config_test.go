package warmup

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"kiln/internal/keyerr"
)

func validConfig() Config {
	return Config{
		Egress: []Egress{
			{Name: "ip1", Source: "192.0.2.1", EHLO: "mta1.example.com", Start: "2026-03-02"},
			{Name: "ip2", Source: "2001:db8::2", Warm: true},
		},
		Pool: []Pool{{Name: "main", Egress: []PoolMember{{Name: "ip1"}, {Name: "ip2", Weight: 3}}, Overflow: "spill"}},
		Warmup: Warmup{
			Timezone: "Europe/Berlin", Window: "08:00-20:00", Days: "sending",
			Plan: []Plan{{Name: "slow", Default: []int{10, 20, 40}, Providers: map[string][]int{"google": {20, 40}}}},
			Rule: []Rule{{Signal: "rate", Action: "hold"}},
		},
		Provider: []Provider{{Name: "fastmail", MXSuffixes: []string{"messagingengine.com"}}},
		Shaping:  []ShapingOverride{{Provider: "google", Connections: 3}, {Domain: "example.org", Rate: 10}},
	}
}

func TestValidateAcceptsValidAndEmpty(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("empty config: %v", err)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Config)
		key    string
		msg    string
	}{
		{"shrinking plan", func(c *Config) { c.Warmup.Plan[0].Default = []int{10, 20, 15} }, "warmup.plan[0].default[2]", "may not shrink"},
		{"shrinking provider list", func(c *Config) { c.Warmup.Plan[0].Providers["google"] = []int{50, 40} }, "warmup.plan[0].providers.google[1]", "may not shrink"},
		{"zero cap", func(c *Config) { c.Warmup.Plan[0].Default = []int{0, 20} }, "warmup.plan[0].default[0]", "positive"},
		{"plan without default", func(c *Config) { c.Warmup.Plan[0].Default = nil }, "warmup.plan[0].default", "must list"},
		{"plan for unknown provider", func(c *Config) { c.Warmup.Plan[0].Providers["nosuch"] = []int{1} }, "warmup.plan[0].providers.nosuch", "unknown provider"},
		{"plan named default", func(c *Config) { c.Warmup.Plan[0].Name = "default" }, "warmup.plan[0].name", "built-in"},
		{"pool without egress", func(c *Config) { c.Pool[0].Egress = nil }, "pool[0].egress", "at least one egress"},
		{"pool with unknown egress", func(c *Config) { c.Pool[0].Egress[1].Name = "ip9" }, "pool[0].egress[1]", "unknown egress \"ip9\""},
		{"pool lists egress twice", func(c *Config) { c.Pool[0].Egress[1].Name = "ip1" }, "pool[0].egress[1]", "twice"},
		{"negative weight", func(c *Config) { c.Pool[0].Egress[0].Weight = -1 }, "pool[0].egress[0].weight", "between"},
		{"bad overflow", func(c *Config) { c.Pool[0].Overflow = "drop" }, "pool[0].overflow", "wait"},
		{"pool named like egress", func(c *Config) { c.Pool[0].Name = "ip1" }, "pool[0].name", "egress name"},
		{"unknown time zone", func(c *Config) { c.Warmup.Timezone = "Mars/Olympus" }, "warmup.timezone", "unknown time zone"},
		{"bad window", func(c *Config) { c.Warmup.Window = "20:00-08:00" }, "warmup.window", "end after"},
		{"bad days", func(c *Config) { c.Warmup.Days = "weekdays" }, "warmup.days", "calendar"},
		{"overlapping config providers", func(c *Config) {
			c.Provider = append(c.Provider, Provider{Name: "fm2", MXSuffixes: []string{".MessagingEngine.com."}})
		}, "provider[1].mx_suffixes[0]", "also claimed by provider fastmail"},
		{"config provider claims built-in suffix", func(c *Config) {
			c.Provider[0].MXSuffixes = []string{"google.com"}
		}, "provider[0].mx_suffixes[0]", "built-in provider google"},
		{"provider without suffixes", func(c *Config) { c.Provider[0].MXSuffixes = nil }, "provider[0].mx_suffixes", "at least one"},
		{"bad provider name", func(c *Config) { c.Provider[0].Name = "Fast Mail" }, "provider[0].name", "not a provider name"},
		{"bad IP", func(c *Config) { c.Egress[0].Source = "192.0.2.300" }, "egress[0].source", "not an IP address"},
		{"missing IP", func(c *Config) { c.Egress[1].Source = "" }, "egress[1].source", "must be"},
		{"unspecified IP", func(c *Config) { c.Egress[1].Source = "::" }, "egress[1].source", "cannot be a source"},
		{"same IP twice", func(c *Config) { c.Egress[1].Source = "::ffff:192.0.2.1" }, "egress[1].source", "also the source of egress[0]"},
		{"duplicate egress", func(c *Config) { c.Egress[1].Name = "ip1" }, "egress[1].name", "already defined"},
		{"bad start", func(c *Config) { c.Egress[0].Start = "02/03/2026" }, "egress[0].start", "not a date"},
		{"unknown plan", func(c *Config) { c.Egress[0].Plan = "fast" }, "egress[0].plan", "unknown plan"},
		{"bad ehlo", func(c *Config) { c.Egress[0].EHLO = "mta 1" }, "egress[0].ehlo", "not a host name"},
		{"bad rule signal", func(c *Config) { c.Warmup.Rule[0].Signal = "delivered" }, "warmup.rule[0].signal", "must be"},
		{"bad rule action", func(c *Config) { c.Warmup.Rule[0].Action = "panic" }, "warmup.rule[0].action", "hold"},
		{"bad rule fraction", func(c *Config) { c.Warmup.Rule[0].Fraction = 2 }, "warmup.rule[0].fraction", "between 0 and 1"},
		{"shaping both", func(c *Config) { c.Shaping[0].Domain = "x.org" }, "shaping[0]", "exactly one"},
		{"shaping unknown provider", func(c *Config) { c.Shaping[0].Provider = "nosuch" }, "shaping[0].provider", "unknown provider"},
		{"shaping twice", func(c *Config) { c.Shaping[1] = ShapingOverride{Provider: "google"} }, "shaping[1]", "already shaped"},
		{"negative backoff", func(c *Config) { c.Warmup.Backoff = Duration(-time.Second) }, "warmup.backoff", "negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			c.Warmup.Plan[0].Providers = map[string][]int{"google": {20, 40}}
			tc.mutate(&c)
			err := c.Validate()
			var ke *keyerr.Error
			if !errors.As(err, &ke) {
				t.Fatalf("got %v, want a *keyerr.Error", err)
			}
			if ke.Key != tc.key || !strings.Contains(ke.Msg, tc.msg) {
				t.Fatalf("got %q: %q, want %q: ...%s...", ke.Key, ke.Msg, tc.key, tc.msg)
			}
			if _, err := New(c, nil, nil, nil); !errors.As(err, &ke) {
				t.Fatalf("New accepted the bad config: %v", err)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig()
	c.Egress[0].Source = "nope"
	c.Warmup.Timezone = "Nowhere/Land"
	err := c.Validate()
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		keys = append(keys, e.(*keyerr.Error).Key)
	}
	if strings.Join(keys, " ") != "warmup.timezone egress[0].source" {
		t.Fatalf("keys = %v", keys)
	}
}

// The section is embedded inline in kiln's root config, so its keys are
// top-level; unknown keys must still be rejected by the strict decoder.
func TestDecodeInlineInRootConfig(t *testing.T) {
	type root struct {
		Hostname string `toml:"hostname"`
		Config
	}
	const doc = `
hostname = "mx.example.com"

[[egress]]
name = "ip1"
source = "192.0.2.1"
ehlo = "out1.example.com"
start = "2026-03-02"

[[egress]]
name = "ip2"
source = "192.0.2.2"
warm = true

[[pool]]
name = "marketing"
egress = ["ip1", { name = "ip2", weight = 3 }]
overflow = "spill"

[warmup]
timezone = "Europe/Berlin"
window = "07:00-21:00"
days = "sending"
cooldown = "3h"
backoff_rate = "2/min"

[[warmup.rule]]
signal = "rate"
min = 2
fraction = 0.01
window = "30m"
action = "pause"
cooldown = "1d"

[[warmup.plan]]
name = "gentle"
default = [20, 40, 80]
providers = { google = [50, 100, 200] }

[[provider]]
name = "fastmail"
mx_suffixes = ["messagingengine.com"]

[[shaping]]
provider = "google"
connections = 3
rate = "10/s"

[[shaping]]
domain = "example.org"
messages_per_connection = 5
`
	var r root
	if err := toml.NewDecoder(bytes.NewReader([]byte(doc))).DisallowUnknownFields().Decode(&r); err != nil {
		t.Fatal(err)
	}
	if err := r.Config.Validate(); err != nil {
		t.Fatal(err)
	}
	p := r.Pool[0]
	if len(p.Egress) != 2 || p.Egress[0] != (PoolMember{Name: "ip1"}) || p.Egress[1] != (PoolMember{Name: "ip2", Weight: 3}) {
		t.Fatalf("pool members = %+v", p.Egress)
	}
	w := r.Warmup
	if w.Cooldown.D() != 3*time.Hour || w.BackoffRate != Rate(2.0/60) || w.Rule[0].Window.D() != 30*time.Minute || w.Rule[0].Cooldown.D() != 24*time.Hour {
		t.Fatalf("warmup = %+v", w)
	}
	if got := w.Plan[0].Providers["google"]; len(got) != 3 || got[2] != 200 {
		t.Fatalf("plan = %+v", w.Plan[0])
	}
	if r.Shaping[0].Rate != 10 || r.Shaping[1].MessagesPerConnection != 5 {
		t.Fatalf("shaping = %+v", r.Shaping)
	}

	bad := strings.Replace(doc, "overflow = \"spill\"", "overflow = \"spill\"\nspillover = true", 1)
	if err := toml.NewDecoder(strings.NewReader(bad)).DisallowUnknownFields().Decode(&root{}); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestCheckLocalAddrs(t *testing.T) {
	c := Config{Egress: []Egress{{Name: "lo", Source: "127.0.0.1"}, {Name: "far", Source: "192.0.2.77"}}}
	err := c.CheckLocalAddrs()
	var ke *keyerr.Error
	if !errors.As(err, &ke) || ke.Key != "egress[1].source" || !strings.Contains(ke.Msg, "not an address of this machine") {
		t.Fatalf("got %v", err)
	}
	c.Egress = c.Egress[:1]
	if err := c.CheckLocalAddrs(); err != nil {
		t.Fatalf("loopback: %v", err)
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "1h30m": 90 * time.Minute, "5d": 120 * time.Hour, "2w": 336 * time.Hour, "1d12h": 36 * time.Hour} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("duration %q = %v, %v", in, d.D(), err)
		}
	}
	for _, in := range []string{"", "5", "d", "5x"} {
		var d Duration
		if d.UnmarshalText([]byte(in)) == nil {
			t.Errorf("duration %q accepted", in)
		}
	}
	for in, want := range map[string]Rate{"100/s": 100, "100": 100, "1/min": Rate(1.0 / 60), "3600/h": 1, "86400/d": 1, "unlimited": Unlimited} {
		var r Rate
		if err := r.UnmarshalText([]byte(in)); err != nil || r != want {
			t.Errorf("rate %q = %v, %v", in, r, err)
		}
	}
	for _, in := range []string{"fast", "1/week", "-1/s"} {
		var r Rate
		if r.UnmarshalText([]byte(in)) == nil {
			t.Errorf("rate %q accepted", in)
		}
	}
	for r, want := range map[Rate]string{100: "100/s", Rate(1.0 / 60): "1/min", Unlimited: "unlimited", Rate(5000.0 / 3600): "5000/h"} {
		if r.String() != want {
			t.Errorf("%v prints %q, want %q", float64(r), r.String(), want)
		}
	}
}

// testdata/example.toml documents every key with its default; it must decode
// strictly, validate, and its rules and settings must be the built-in ones.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Config }
	if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&r); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := New(r.Config, openDB(t, t.TempDir()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	builtin, err := New(Config{}, openDB(t, t.TempDir()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.rules, builtin.rules) {
		t.Errorf("documented rules differ from the built-in ones:\n%+v\n%+v", c.rules, builtin.rules)
	}
	if c.cal.winStart != builtin.cal.winStart || c.cal.winEnd != builtin.cal.winEnd || c.cal.loc.String() != builtin.cal.loc.String() ||
		c.sendingDays != builtin.sendingDays || c.idleDays != builtin.idleDays || c.cooldown != builtin.cooldown ||
		c.pauseStepBack != builtin.pauseStepBack || c.backoff != builtin.backoff || c.backoffRate != builtin.backoffRate {
		t.Errorf("documented [warmup] defaults differ from the code's")
	}
	if got := c.site("google").shaping; got != builtin.site("google").shaping {
		t.Errorf("documented google shaping %+v, built-in %+v", got, builtin.site("google").shaping)
	}
}
