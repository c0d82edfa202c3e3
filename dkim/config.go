package dkim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"kiln/internal/keyerr"
)

// KeyConfig is one [[dkim]] entry of the config file: a signing key for a
// domain. A domain may have several entries (one per selector); kiln signs
// with every one that is not retired, so an RSA and an Ed25519 entry for
// the same domain give two signatures (dual signing, RFC 8463 §3 advises it
// while Ed25519 support among receivers grows).
type KeyConfig struct {
	// Domain is the signing domain (d=). It signs mail whose From domain is
	// the same or a subdomain of it (relaxed DMARC alignment).
	Domain string `toml:"domain"`
	// Selector names the key record: Selector._domainkey.Domain.
	Selector string `toml:"selector"`
	// Key is the path of the PEM private key: PKCS#8 or PKCS#1, RSA of
	// 1024 to 4096 bits or Ed25519, told apart by the key itself.
	Key string `toml:"key"`
	// Retired keeps the key known (kiln domain check still compares its
	// record) without signing with it: the old selector during a rotation.
	Retired bool `toml:"retired"`
}

// Validate checks the entry's values without reading the key file, naming
// keys relative to the entry ("domain", "selector", "key").
func (c KeyConfig) Validate() error {
	if err := checkDomain(c.Domain); err != nil {
		return keyerr.New("domain", "%v", err)
	}
	if err := checkSelector(c.Selector); err != nil {
		return keyerr.New("selector", "%v", err)
	}
	if strings.TrimSpace(c.Key) == "" {
		return keyerr.New("key", "must be the path of a PEM private key")
	}
	return nil
}

// ValidateKeys validates every [[dkim]] entry, naming keys as
// "dkim[i].field", and refuses the same selector twice for a domain.
func ValidateKeys(keys []KeyConfig) error {
	seen := map[string]int{}
	for i, k := range keys {
		key := fmt.Sprintf("dkim[%d]", i)
		if err := k.Validate(); err != nil {
			return keyerr.Under(key, err)
		}
		name := RecordName(strings.ToLower(k.Selector), k.Domain)
		if j, dup := seen[name]; dup {
			return keyerr.New(key+".selector", "selector %q of %s is already configured in dkim[%d]", k.Selector, normDomain(k.Domain), j)
		}
		seen[name] = i
	}
	return nil
}

// SigningConfig is the [signing] table: what every signature covers and
// whether the operator signs too.
type SigningConfig struct {
	// OperatorDomain, when set, adds a signature by kiln's operator to
	// every message, with that domain's [[dkim]] keys, besides the one
	// aligned with the From domain. Mailbox providers' feedback loops
	// (Yahoo's CFL, Gmail's Feedback-ID reports) are registered by signing
	// domain, so one operator domain covers every customer.
	OperatorDomain string `toml:"operator_domain"`
	// OperatorSelectors restricts the operator signature to these
	// selectors of OperatorDomain (default: all of its active keys).
	OperatorSelectors []string `toml:"operator_selectors"`
	// Expiry, when set, puts x= (signing time + Expiry) in every signature
	// (RFC 6376 §3.5). It must exceed queue.max_age: kiln signs once at
	// acceptance, so a message retried late in its life would otherwise
	// arrive with an expired signature. Zero means no x=.
	Expiry Duration `toml:"expiry"`
	// Headers are header fields to sign in addition to DefaultHeaders
	// (e.g. a campaign header the receiver's feedback loop relies on).
	Headers []string `toml:"headers"`
}

// minExpiry keeps x= from being set to something that cannot survive
// even a prompt delivery.
const minExpiry = time.Hour

// Validate checks the [signing] table alone, naming keys relative to it
// ("operator_domain", "headers[2]"). NewSigner checks that the operator's
// keys exist; CheckMaxAge checks Expiry against the queue.
func (c SigningConfig) Validate() error {
	if c.OperatorDomain != "" {
		if err := checkDomain(c.OperatorDomain); err != nil {
			return keyerr.New("operator_domain", "%v", err)
		}
	}
	if len(c.OperatorSelectors) > 0 && c.OperatorDomain == "" {
		return keyerr.New("operator_selectors", "needs operator_domain")
	}
	for i, s := range c.OperatorSelectors {
		if err := checkSelector(s); err != nil {
			return keyerr.New(fmt.Sprintf("operator_selectors[%d]", i), "%v", err)
		}
	}
	if c.Expiry < 0 || (c.Expiry > 0 && c.Expiry.D() < minExpiry) {
		return keyerr.New("expiry", "must be 0 (no expiry) or at least %s, and longer than queue.max_age", FormatDuration(minExpiry))
	}
	for i, h := range c.Headers {
		if err := checkHeaderName(h); err != nil {
			return keyerr.New(fmt.Sprintf("headers[%d]", i), "%v", err)
		}
	}
	return nil
}

// CheckMaxAge refuses an Expiry that does not exceed the queue's maximum
// age (with a day's margin for the last attempt and clock skew at the
// receiver), naming the key "expiry".
func (c SigningConfig) CheckMaxAge(maxAge time.Duration) error {
	if c.Expiry == 0 {
		return nil
	}
	if c.Expiry.D() < maxAge+24*time.Hour {
		return keyerr.New("expiry", "%s does not exceed queue.max_age (%s) by a day: mail retried late would carry an expired signature",
			FormatDuration(c.Expiry.D()), FormatDuration(maxAge))
	}
	return nil
}

// checkDomain accepts an ASCII domain name with at least two labels, each
// letters, digits and hyphens (an IDN in its A-label form).
func checkDomain(d string) error {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return fmt.Errorf("must be a domain name")
	}
	if len(d) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", d)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return fmt.Errorf("%q is not a domain one can publish a key under (it needs a dot)", d)
	}
	for _, l := range labels {
		if !ldhLabel(l) {
			return fmt.Errorf("%q is not a domain name (letters, digits, hyphens and dots; IDNs as xn--)", d)
		}
	}
	return nil
}

// checkSelector follows RFC 6376 §3.1: a selector is one or more
// dot-separated LDH labels.
func checkSelector(s string) error {
	if s == "" {
		return fmt.Errorf("must be a selector (a DNS label such as \"s2025\")")
	}
	for _, l := range strings.Split(s, ".") {
		if !ldhLabel(l) {
			return fmt.Errorf("%q is not a selector: letters, digits, hyphens and dots only (RFC 6376 §3.1)", s)
		}
	}
	return nil
}

func ldhLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// checkHeaderName accepts an RFC 5322 §3.6.8 field name that is worth
// signing: fields that relays add or that carry signatures are refused,
// since a signature over them breaks in transit.
func checkHeaderName(h string) error {
	if h == "" {
		return fmt.Errorf("must be a header field name")
	}
	for i := 0; i < len(h); i++ {
		if h[i] < 33 || h[i] > 126 || h[i] == ':' {
			return fmt.Errorf("%q is not a header field name", h)
		}
	}
	switch strings.ToLower(h) {
	case "received", "return-path", "dkim-signature", "arc-seal", "arc-message-signature",
		"arc-authentication-results", "authentication-results", "delivered-to", "x-original-to":
		return fmt.Errorf("%s is added or changed in transit: signing it would break the signature", h)
	}
	return nil
}

func normDomain(d string) string { return strings.ToLower(strings.TrimSuffix(d, ".")) }

// Duration is a length of time written as a string in the config: Go's
// units plus d (24h) and w (7d), as in "14d" or "1w12h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(FormatDuration(d.D())), nil }

// ParseDuration parses a duration with the extra units d and w.
func ParseDuration(s string) (time.Duration, error) {
	in := s
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		j := i
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		num, unit := s[:i], s[i:j]
		if num == "" || unit == "" {
			return 0, fmt.Errorf("%q is not a duration (e.g. \"14d\", \"36h\")", in)
		}
		var part time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration", in)
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			part = time.Duration(f * float64(day))
		default:
			p, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration (e.g. \"14d\", \"36h\")", in)
			}
			part = p
		}
		total += part
		s = s[j:]
	}
	return total, nil
}

// FormatDuration prints d in days when it is a whole number of them.
func FormatDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
