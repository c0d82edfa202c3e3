package dkim

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"kiln/internal/keyerr"
)

// TestConfigDecode decodes the config sections the way the config loader
// does (unknown keys refused), checking the key names.
func TestConfigDecode(t *testing.T) {
	const file = `
[signing]
operator_domain = "mta.example.net"
operator_selectors = ["op"]
expiry = "1w"
headers = ["X-Campaign-ID"]

[[dkim]]
domain = "example.com"
selector = "r2025"
key = "testdata/keys/r2025._domainkey.example.com.pem"

[[dkim]]
domain = "example.com"
selector = "e2025"
key = "testdata/keys/e2025._domainkey.example.com.pem"

[[dkim]]
domain = "mta.example.net"
selector = "op"
key = "testdata/keys/op._domainkey.mta.example.net.pem"

[[dkim]]
domain = "example.com"
selector = "r2024"
key = "testdata/keys/r2025._domainkey.example.com.pem"
retired = true
`
	var c struct {
		Signing SigningConfig `toml:"signing"`
		DKIM    []KeyConfig   `toml:"dkim"`
	}
	if err := toml.NewDecoder(strings.NewReader(file)).DisallowUnknownFields().Decode(&c); err != nil {
		t.Fatal(err)
	}
	if c.Signing.Expiry.D() != 7*24*time.Hour || c.Signing.OperatorDomain != "mta.example.net" || len(c.DKIM) != 4 || !c.DKIM[3].Retired {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Signing.CheckMaxAge(5 * 24 * time.Hour); err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(c.DKIM, c.Signing)
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Sign(crlfText("From: a@example.com\nX-Campaign-ID: 7\n\nb\n"), "example.com", fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(h), "DKIM-Signature:"); n != 3 || !strings.Contains(string(h), "x-campaign-id") {
		t.Errorf("%d signatures:\n%s", n, h)
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c.Signing); err != nil || !strings.Contains(buf.String(), "expiry = '7d'") {
		t.Errorf("encode: %v\n%s", err, buf.String())
	}
	if err := toml.NewDecoder(strings.NewReader("[signing]\nexpiry = \"soon\"\n")).Decode(&c); err == nil {
		t.Error("bad duration decoded")
	}
}

func TestValidate(t *testing.T) {
	for name, c := range map[string]struct {
		err  error
		key  string
		text string
	}{
		"ok":                {KeyConfig{Domain: "Example.COM.", Selector: "s2025.a", Key: "k.pem"}.Validate(), "", ""},
		"no domain":         {KeyConfig{Selector: "s", Key: "k"}.Validate(), "domain", "domain name"},
		"domain with space": {KeyConfig{Domain: "exa mple.com", Selector: "s", Key: "k"}.Validate(), "domain", "not a domain"},
		"domain label dash": {KeyConfig{Domain: "-a.example", Selector: "s", Key: "k"}.Validate(), "domain", "not a domain"},
		"no selector":       {KeyConfig{Domain: "a.example", Key: "k"}.Validate(), "selector", "selector"},
		"selector dot dot":  {KeyConfig{Domain: "a.example", Selector: "a..b", Key: "k"}.Validate(), "selector", "RFC 6376"},
		"no key":            {KeyConfig{Domain: "a.example", Selector: "s", Key: " "}.Validate(), "key", "PEM"},
		"signing ok":        {SigningConfig{OperatorDomain: "mta.example.net", Expiry: Duration(10 * 24 * time.Hour), Headers: []string{"X-A"}}.Validate(), "", ""},
		"operator domain":   {SigningConfig{OperatorDomain: "mta"}.Validate(), "operator_domain", "dot"},
		"selectors alone":   {SigningConfig{OperatorSelectors: []string{"s"}}.Validate(), "operator_selectors", "operator_domain"},
		"bad op selector":   {SigningConfig{OperatorDomain: "m.example", OperatorSelectors: []string{"ok", "no_"}}.Validate(), "operator_selectors[1]", "selector"},
		"short expiry":      {SigningConfig{Expiry: Duration(time.Minute)}.Validate(), "expiry", "at least 1h"},
		"header colon":      {SigningConfig{Headers: []string{"X-A:"}}.Validate(), "headers[0]", "not a header field name"},
		"header signature":  {SigningConfig{Headers: []string{"DKIM-Signature"}}.Validate(), "headers[0]", "transit"},
		"expiry vs max age": {SigningConfig{Expiry: Duration(5 * 24 * time.Hour)}.CheckMaxAge(5 * 24 * time.Hour), "expiry", "queue.max_age (5d)"},
		"no expiry":         {SigningConfig{}.CheckMaxAge(5 * 24 * time.Hour), "", ""},
	} {
		if c.key == "" {
			if c.err != nil {
				t.Errorf("%s: %v", name, c.err)
			}
			continue
		}
		var ke *keyerr.Error
		if !errors.As(c.err, &ke) || ke.Key != c.key || !strings.Contains(ke.Msg, c.text) {
			t.Errorf("%s: got %v, want %s: ...%s...", name, c.err, c.key, c.text)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "1h": time.Hour, "14d": 14 * 24 * time.Hour, "1w12h": 180 * time.Hour, "1.5d": 36 * time.Hour, "90m": 90 * time.Minute,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "5", "5x", "-1d", "1d-", "..d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
	if FormatDuration(14*24*time.Hour) != "14d" || FormatDuration(90*time.Minute) != "1h30m0s" {
		t.Error("FormatDuration")
	}
}
