package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"kiln/events"
	"kiln/internal/keyerr"
)

func TestBackoff(t *testing.T) {
	cases := []struct {
		failures int
		rnd      float64
		want     time.Duration
	}{
		{0, 0, 2500 * time.Millisecond}, // treated as the first failure
		{1, 0, 2500 * time.Millisecond},
		{1, 0.5, 3750 * time.Millisecond},
		{1, 0.999999, 5 * time.Second},
		{2, 0, 5 * time.Second},
		{3, 1, 20 * time.Second},
		{4, 1, 40 * time.Second},
		{6, 1, 160 * time.Second},
		{7, 1, 5 * time.Minute}, // 320s capped
		{7, 0, 150 * time.Second},
		{40, 1, 5 * time.Minute},
		{1 << 30, 0.5, 225 * time.Second},
		{3, -1, 10 * time.Second}, // rnd clamped
		{3, 7, 20 * time.Second},
	}
	for _, c := range cases {
		if got := Backoff(c.failures, c.rnd); got.Round(time.Millisecond) != c.want {
			t.Errorf("Backoff(%d, %v) = %v, want %v", c.failures, c.rnd, got, c.want)
		}
	}
}

func TestVerify(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	body := []byte(`[{"event":"delivered"}]`)
	now := time.Unix(1741003260, 0)
	good := Sign(secret, now.Unix(), body)
	if !strings.HasPrefix(good, "t=1741003260,v1=") || len(good) != len("t=1741003260,v1=")+64 {
		t.Fatalf("header %q", good)
	}
	cases := []struct {
		name   string
		secret string
		header string
		body   string
		now    time.Time
		want   error
	}{
		{"good", secret, good, string(body), now, nil},
		{"good, clocks apart within tolerance", secret, good, string(body), now.Add(-4 * time.Minute), nil},
		{"rotation: second v1 matches", secret, "t=1741003260,v1=" + strings.Repeat("00", 32) + "," + good[len("t=1741003260,"):], string(body), now, nil},
		{"spaces", secret, "t=1741003260, " + good[len("t=1741003260,"):], string(body), now, nil},
		{"wrong secret", "another-secret-0000", good, string(body), now, ErrBadSignature},
		{"body changed", secret, good, `[{"event":"bounce"}]`, now, ErrBadSignature},
		{"timestamp changed", secret, "t=1741003261," + good[len("t=1741003260,"):], string(body), now, ErrBadSignature},
		{"stale", secret, good, string(body), now.Add(6 * time.Minute), ErrStale},
		{"from the future", secret, good, string(body), now.Add(-6 * time.Minute), ErrStale},
		{"empty", secret, "", string(body), now, ErrNoSignature},
		{"no v1", secret, "t=1741003260", string(body), now, ErrNoSignature},
		{"no t", secret, good[len("t=1741003260,"):], string(body), now, ErrNoSignature},
		{"not hex", secret, "t=1741003260,v1=zz", string(body), now, ErrNoSignature},
		{"two t", secret, "t=1,t=2,v1=00", string(body), now, ErrNoSignature},
		{"garbage", secret, "sha256=abc", string(body), now, ErrNoSignature},
	}
	for _, c := range cases {
		if err := Verify(c.secret, c.header, []byte(c.body), c.now, 5*time.Minute); err != c.want {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// A stale but otherwise good signature passes with the check off.
	if err := Verify(secret, good, body, now.Add(24*time.Hour), 0); err != nil {
		t.Errorf("tolerance 0: %v", err)
	}
}

func TestPayloadNames(t *testing.T) {
	at := time.Date(2025, 3, 3, 12, 0, 0, 123456789, time.UTC)
	cases := []struct {
		e          events.Event
		event      string
		bounceType string
		reason     string
	}{
		{events.Event{Type: events.Received}, Processed, "", ""},
		{events.Event{Type: events.Delivered}, Delivered, "", ""},
		{events.Event{Type: events.Deferred, Reason: "mailboxfull"}, Deferred, "", "mailboxfull"},
		{events.Event{Type: events.Bounced, Hard: true, Reason: "userunknown"}, Bounce, "hard", "userunknown"},
		{events.Event{Type: events.Bounced, Reason: "blocked"}, Bounce, "soft", "blocked"},
		{events.Event{Type: events.Expired}, Bounce, "soft", "expired"},
		{events.Event{Type: events.Dropped}, Dropped, "", ""},
		{events.Event{Type: events.Complaint}, SpamReport, "", ""},
		{events.Event{Type: events.Unsubscribe}, Unsubscribe, "", ""},
		{events.Event{Type: events.Held}, Held, "", ""},
		{events.Event{Type: events.Suppressed}, Suppressed, "", ""},
	}
	for _, c := range cases {
		c.e.Time = at
		p := newPayload(&c.e)
		if p.Event != c.event || p.BounceType != c.bounceType || p.Reason != c.reason || p.KilnType != c.e.Type {
			t.Errorf("%s: got %+v", c.e.Type, p)
		}
		if p.Timestamp != at.Unix() || !p.Time.Equal(at) || len(p.EventID) != 32 {
			t.Errorf("%s: times or id %+v", c.e.Type, p)
		}
	}
	if payloadName("something-new") != "" {
		t.Errorf("an unknown type has a payload name")
	}
	a, b := newPayload(&events.Event{Type: events.Delivered}), newPayload(&events.Event{Type: events.Delivered})
	if a.EventID == b.EventID {
		t.Errorf("event ids repeat")
	}
	// Every name is reachable from some kiln type and the default excludes
	// processed only.
	for _, name := range AllEvents {
		if len(kilnTypes(name)) == 0 {
			t.Errorf("%s has no kiln type", name)
		}
	}
	if len(DefaultEvents) != len(AllEvents)-1 || len(kilnTypes("all")) != 10 {
		t.Errorf("defaults %v", DefaultEvents)
	}
}

func TestConfigDecodeAndDefaults(t *testing.T) {
	src := `
[[webhook]]
account = "shop"
url = "https://hooks.shop.example/kiln"
events = ["bounce", "spamreport", "unsubscribe"]
secret = "7f3a9c1e5b2d4f6a8c0e"
timeout = "5s"
batch_size = 50
batch_wait = "500ms"
max_age = "2d"
max_queued = 5000

[[webhook]]
url = "http://127.0.0.1:9000/all"
secret = "another-long-secret"
`
	var doc struct {
		Webhook []Config `toml:"webhook"`
	}
	dec := toml.NewDecoder(strings.NewReader(src))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if err := ValidateAll(doc.Webhook); err != nil {
		t.Fatal(err)
	}
	c := doc.Webhook[0]
	if c.Timeout.D() != 5*time.Second || c.BatchWait.D() != 500*time.Millisecond || c.MaxAge.D() != 48*time.Hour || c.BatchSize != 50 || c.MaxQueued != 5000 {
		t.Errorf("decoded %+v", c)
	}
	d := doc.Webhook[1].withDefaults()
	if d.Account != "" || d.Timeout.D() != DefaultTimeout || d.BatchSize != DefaultBatchSize || d.BatchWait.D() != DefaultBatchWait ||
		d.MaxAge.D() != DefaultMaxAge || d.MaxQueued != DefaultMaxQueued || len(d.Events) != len(DefaultEvents) {
		t.Errorf("defaults %+v", d)
	}
	if b, _ := Duration(3 * 24 * time.Hour).MarshalText(); string(b) != "3d" {
		t.Errorf("marshal %s", b)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{URL: "https://hooks.example/k", Secret: "0123456789abcdef"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		change func(*Config)
		key    string
	}{
		{func(c *Config) { c.URL = "" }, "url"},
		{func(c *Config) { c.URL = "ftp://hooks.example/k" }, "url"},
		{func(c *Config) { c.URL = "file:///etc/passwd" }, "url"},
		{func(c *Config) { c.URL = "gopher://127.0.0.1:25/" }, "url"},
		{func(c *Config) { c.URL = "javascript:alert(1)" }, "url"},
		{func(c *Config) { c.URL = "hooks.example/k" }, "url"},
		{func(c *Config) { c.URL = "https:///k" }, "url"},
		{func(c *Config) { c.URL = "https://hooks.example/k#x" }, "url"},
		{func(c *Config) { c.URL = "https://hooks example/" }, "url"},
		{func(c *Config) { c.Events = []string{"delivered", "bounced"} }, "events[1]"},
		{func(c *Config) { c.Secret = "short" }, "secret"},
		{func(c *Config) { c.Timeout = Duration(time.Millisecond) }, "timeout"},
		{func(c *Config) { c.Timeout = Duration(time.Hour) }, "timeout"},
		{func(c *Config) { c.BatchSize = -1 }, "batch_size"},
		{func(c *Config) { c.BatchSize = 5000 }, "batch_size"},
		{func(c *Config) { c.BatchWait = Duration(time.Hour) }, "batch_wait"},
		{func(c *Config) { c.MaxAge = Duration(time.Second) }, "max_age"},
		{func(c *Config) { c.MaxAge = Duration(90 * 24 * time.Hour) }, "max_age"},
		{func(c *Config) { c.MaxQueued = -5 }, "max_queued"},
	}
	for _, c := range cases {
		cfg := good
		c.change(&cfg)
		err := cfg.Validate()
		var ke *keyerr.Error
		if !errors.As(err, &ke) || ke.Key != c.key {
			t.Errorf("%+v: err = %v, want key %s", cfg, err, c.key)
		}
	}
	ok := []Config{good, {Account: "shop", URL: good.URL, Secret: good.Secret, Events: []string{"all"}}}
	if err := ValidateAll(ok); err != nil {
		t.Errorf("same url for two accounts: %v", err)
	}
	err := ValidateAll(append(ok, good))
	var ke *keyerr.Error
	if !errors.As(err, &ke) || ke.Key != "webhook[2].url" {
		t.Errorf("duplicate: %v", err)
	}
	bad := good
	bad.Secret = ""
	if err := ValidateAll([]Config{good, bad}); !errors.As(err, &ke) || ke.Key != "webhook[1].secret" {
		t.Errorf("nested key: %v", err)
	}
	for _, s := range []string{"-1s", "", "3x", "d"} {
		var d Duration
		if d.UnmarshalText([]byte(s)) == nil {
			t.Errorf("duration %q accepted", s)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := redact("https://user:pw@hooks.example/k?x=1"); strings.Contains(got, "pw") {
		t.Errorf("redact = %s", got)
	}
}
