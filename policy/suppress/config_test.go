package suppress

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"kiln/internal/keyerr"
)

// The example in Config's doc comment decodes to the defaults.
const exampleTOML = `
rcpt_action = "refuse"
bounce_scope = "global"
match_base_address = false
soft_fail_count = 3
soft_fail_window = "30d"
soft_fail_expiry = "90d"
sweep_interval = "1h"

[expiry]
reply = "never"
late-bounce = "never"
complaint = "never"
unsubscribe = "never"
manual = "never"
import = "never"

[breaker]
hard_bounce_rate = "5%"
complaint_rate = "0.3%"
window = 1000
min_sample = 100
complaint_min_sample = 1000
`

func decodeStrict(t *testing.T, s string) (Config, error) {
	t.Helper()
	var c Config
	dec := toml.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	err := dec.Decode(&c)
	return c, err
}

func TestExampleIsTheDefaults(t *testing.T) {
	c, err := decodeStrict(t, exampleTOML)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Errorf("example decodes to\n%+v\nwant\n%+v", c, DefaultConfig())
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	// An empty section means the same.
	if got := (Config{}).withDefaults(); !reflect.DeepEqual(got, DefaultConfig()) {
		t.Errorf("zero config with defaults = %+v", got)
	}
	// And the defaults write back as the example says.
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	back, err := decodeStrict(t, buf.String())
	if err != nil || !reflect.DeepEqual(back, DefaultConfig()) {
		t.Errorf("defaults do not round-trip: %v\n%s", err, buf.String())
	}
}

func TestUnits(t *testing.T) {
	c, err := decodeStrict(t, `
soft_fail_window = "2w"
soft_fail_expiry = "never"
reason_expiry = { hostunknown = "180d", userunknown = "1d12h" }
[breaker]
hard_bounce_rate = 0.02
complaint_rate = "off"
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.SoftFailWindow.D() != 14*24*time.Hour || c.SoftFailExpiry != Never ||
		c.ReasonExpiry["hostunknown"].D() != 180*24*time.Hour || c.ReasonExpiry["userunknown"].D() != 36*time.Hour ||
		c.Breaker.HardBounceRate != 0.02 || c.Breaker.ComplaintRate != Off {
		t.Errorf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{`soft_fail_window = "soon"`, `[breaker]
hard_bounce_rate = "lots"`, `[breaker]
complaint_rate = "-1%"`} {
		if _, err := decodeStrict(t, bad); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
	if s := Rate(0.003).String(); s != "0.3%" {
		t.Errorf("Rate(0.003) = %q", s)
	}
	if s := Duration(36 * time.Hour).String(); s != "36h0m0s" {
		t.Errorf("Duration(36h) = %q", s)
	}
}

func TestValidate(t *testing.T) {
	c := Config{
		RcptAction:     "bounce",
		BounceScope:    "everywhere",
		SoftFailCount:  -5,
		SoftFailWindow: Never,
		SoftFailExpiry: Duration(time.Second),
		Expiry:         map[string]Duration{"soft-failure": Never, "telepathy": Never, "manual": Duration(time.Second)},
		ReasonExpiry:   map[string]Duration{"notareason": Never},
		Breaker:        BreakerConfig{HardBounceRate: 1.5, Window: 50, MinSample: 100, ComplaintMinSample: -1},
	}
	err := c.Validate()
	want := []string{"rcpt_action", "bounce_scope", "soft_fail_count", "soft_fail_window", "soft_fail_expiry",
		"expiry.manual", "expiry.soft-failure", "expiry.telepathy", "reason_expiry.notareason",
		"breaker.hard_bounce_rate", "breaker.min_sample", "breaker.complaint_min_sample"}
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ke *keyerr.Error
		if !errors.As(e, &ke) {
			t.Fatalf("%v is not a *keyerr.Error", e)
		}
		keys = append(keys, ke.Key)
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys %q\nwant %q\n%v", keys, want, err)
	}
	if _, err := Open(nil, nil, Config{}, nil); err == nil {
		t.Error("Open without a store worked")
	}
}

func TestRcptReply(t *testing.T) {
	code, enh, text := RcptReply(Entry{Scope: "acme", Reason: "feedback", Source: SourceComplaint, Created: t0})
	if code != 550 || enh != [3]int{5, 7, 1} || !strings.Contains(text, "suppression list") || !strings.Contains(text, "feedback") {
		t.Errorf("RcptReply = %d %v %q", code, enh, text)
	}
}
