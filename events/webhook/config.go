package webhook

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"kiln/internal/keyerr"
)

// Config is one [[webhook]] entry of the config file. URLs come from the
// operator's config only: nothing an account sends over the API can add or
// change an endpoint.
type Config struct {
	// Account whose events go to this endpoint; "" sends every account's.
	Account string `toml:"account"`
	// URL receives the POSTs: http or https, nothing else. Credentials in
	// the URL (https://user:pass@host/...) are sent as basic auth and never
	// shown in logs or stats.
	URL string `toml:"url"`
	// Events are the payload names to send (see the package doc); "all"
	// means every one. Default: all but processed.
	Events []string `toml:"events"`
	// Secret keys the HMAC-SHA256 signature; at least 16 characters.
	Secret string `toml:"secret"`
	// Timeout bounds one POST, from dialling to the response (default 10s).
	Timeout Duration `toml:"timeout"`
	// BatchSize is the most events one POST carries (default 100, at most 1000).
	BatchSize int `toml:"batch_size"`
	// BatchWait is how long a partial batch waits for more events before it
	// is sent (default 1s).
	BatchWait Duration `toml:"batch_wait"`
	// MaxAge is how long an event is retried before it is given up (default 3d).
	MaxAge Duration `toml:"max_age"`
	// MaxQueued bounds the endpoint's outbox (default 1,000,000 events):
	// beyond it new events for this endpoint are dropped and counted, so an
	// endpoint that stays down cannot fill the disk.
	MaxQueued int `toml:"max_queued"`
}

// Defaults.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultBatchSize = 100
	DefaultBatchWait = time.Second
	DefaultMaxAge    = 3 * 24 * time.Hour
	DefaultMaxQueued = 1_000_000

	minSecret    = 16
	maxBatchSize = 1000
)

// withDefaults fills the zero values.
func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = Duration(DefaultTimeout)
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = Duration(DefaultBatchWait)
	}
	if c.MaxAge == 0 {
		c.MaxAge = Duration(DefaultMaxAge)
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = DefaultMaxQueued
	}
	if len(c.Events) == 0 {
		c.Events = DefaultEvents
	}
	return c
}

// Validate checks the entry, naming keys relative to it ("url", "events[1]").
func (c Config) Validate() error {
	if err := checkURL(c.URL); err != nil {
		return keyerr.New("url", "%v", err)
	}
	for i, name := range c.Events {
		if name != "all" && !slices.Contains(AllEvents, name) {
			return keyerr.New(fmt.Sprintf("events[%d]", i), "unknown event %q (one of %s, or all)", name, strings.Join(AllEvents, ", "))
		}
	}
	if len(c.Secret) < minSecret {
		return keyerr.New("secret", "must be at least %d characters (e.g. the output of openssl rand -hex 32)", minSecret)
	}
	if t := c.Timeout.D(); t != 0 && (t < 100*time.Millisecond || t > 10*time.Minute) {
		return keyerr.New("timeout", "must be between 100ms and 10m")
	}
	if c.BatchSize < 0 || c.BatchSize > maxBatchSize {
		return keyerr.New("batch_size", "must be between 1 and %d", maxBatchSize)
	}
	if w := c.BatchWait.D(); w < 0 || w > time.Minute {
		return keyerr.New("batch_wait", "must be between 1ms and 1m")
	}
	if a := c.MaxAge.D(); a != 0 && (a < time.Minute || a > 30*24*time.Hour) {
		return keyerr.New("max_age", "must be between 1m and 30d")
	}
	if c.MaxQueued < 0 {
		return keyerr.New("max_queued", "must not be negative")
	}
	return nil
}

func checkURL(s string) error {
	if s == "" {
		return fmt.Errorf("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https")
	}
	if u.Hostname() == "" {
		return fmt.Errorf("has no host")
	}
	if u.Fragment != "" {
		return fmt.Errorf("must not have a fragment")
	}
	return nil
}

// ValidateAll validates every [[webhook]] entry, naming keys from the root
// ("webhook[2].url"), and refuses two entries with the same account and URL:
// they would share one outbox.
func ValidateAll(cfgs []Config) error {
	seen := map[string]int{}
	for i, c := range cfgs {
		key := fmt.Sprintf("webhook[%d]", i)
		if err := c.Validate(); err != nil {
			return keyerr.Under(key, err)
		}
		id := c.Account + "\x00" + c.URL
		if j, dup := seen[id]; dup {
			return keyerr.New(key+".url", "webhook[%d] already sends account %q to this url", j, c.Account)
		}
		seen[id] = i
	}
	return nil
}

// redact hides the credentials of a URL for logs and stats.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid url)"
	}
	return u.Redacted()
}

// Duration is a length of time written as a string in the config: Go's
// units plus d (24h) and w (7d), as in "3d" or "90s".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) {
	t, day := time.Duration(d), 24*time.Hour
	if t >= day && t%day == 0 {
		return []byte(strconv.FormatInt(int64(t/day), 10) + "d"), nil
	}
	return []byte(t.String()), nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("invalid duration %q (use units like 500ms, 10s, 5m, 4h, 3d, 1w)", s)
	if s == "0" {
		return 0, nil
	}
	if s == "" || s[0] == '-' {
		return 0, bad
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			return 0, bad
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		var part time.Duration
		switch unit {
		case "d", "w":
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, bad
			}
			day := 24 * time.Hour
			if unit == "w" {
				day *= 7
			}
			part = time.Duration(f * float64(day))
		default:
			p, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, bad
			}
			part = p
		}
		total += part
	}
	return total, nil
}
