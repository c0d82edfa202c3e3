package warmup

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a string in the config: Go's units
// ("90s", "1h30m") plus days and weeks ("5d", "2w"), the same form every other
// kiln duration key uses. Cool-downs and idle limits are naturally counted in
// hours and days.
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
	day := 24 * time.Hour
	t := time.Duration(d)
	if t >= day && t%day == 0 {
		return []byte(strconv.FormatInt(int64(t/day), 10) + "d"), nil
	}
	return []byte(t.String()), nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("invalid duration %q (use units like 90s, 5m, 4h, 5d, 2w)", s)
	if s == "" {
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
		var mult time.Duration
		switch unit {
		case "d":
			mult = 24 * time.Hour
		case "w":
			mult = 7 * 24 * time.Hour
		default:
			v, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, bad
			}
			total += v
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, bad
		}
		total += time.Duration(f * float64(mult))
	}
	return total, nil
}

// Rate is a message rate, written "100/s", "1/min", "5000/h" or "20000/d"
// (a bare number is per second), or "unlimited". It holds messages per second;
// zero means "not set" (keep the built-in value).
type Rate float64

// Unlimited is the Rate with no limit.
var Unlimited = Rate(math.Inf(1))

func (r *Rate) UnmarshalText(b []byte) error {
	v, err := parseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String prints the rate in the largest unit that keeps it a whole number of
// messages, so "1/min" stays "1/min".
func (r Rate) String() string {
	switch {
	case math.IsInf(float64(r), 1):
		return "unlimited"
	case r <= 0:
		return "0/s"
	}
	for _, u := range []struct {
		name string
		sec  float64
	}{{"s", 1}, {"min", 60}, {"h", 3600}, {"d", 86400}} {
		n := float64(r) * u.sec
		if n >= 1 && math.Abs(n-math.Round(n)) < 1e-6 {
			return strconv.FormatFloat(math.Round(n), 'f', -1, 64) + "/" + u.name
		}
	}
	return strconv.FormatFloat(float64(r)*3600, 'f', 2, 64) + "/h"
}

func parseRate(s string) (Rate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	bad := fmt.Errorf("invalid rate %q (use a count per unit like 100/s, 1/min, 5000/h, 20000/d, or unlimited)", s)
	if t == "unlimited" {
		return Unlimited, nil
	}
	num, unit, found := strings.Cut(t, "/")
	per := 1.0
	if found {
		switch strings.TrimSpace(unit) {
		case "s", "sec", "second":
			per = 1
		case "m", "min", "minute":
			per = 60
		case "h", "hr", "hour":
			per = 3600
		case "d", "day":
			per = 86400
		default:
			return 0, bad
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || n < 0 || math.IsNaN(n) || math.IsInf(n, 0) {
		return 0, bad
	}
	return Rate(n / per), nil
}
