package suppress

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a string in the config: Go's units
// ("90s", "1h30m") plus days and weeks ("30d", "2w"), the form every kiln
// duration key uses. For expiries, "never" (or "0") means the entry does not
// expire; it is held as Never.
type Duration time.Duration

// Never is the Duration of an expiry that never comes.
const Never Duration = -1

// D returns the value as a time.Duration (Never is negative).
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	if s == "never" || s == "0" || s == "none" {
		*d = Never
		return nil
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d Duration) String() string {
	if d < 0 {
		return "never"
	}
	day := 24 * time.Hour
	t := time.Duration(d)
	if t >= day && t%day == 0 {
		return strconv.FormatInt(int64(t/day), 10) + "d"
	}
	return t.String()
}

// ParseDuration reads a duration as the config writes it ("90s", "4h",
// "30d", "2w", "never").
func ParseDuration(s string) (Duration, error) {
	var d Duration
	err := d.UnmarshalText([]byte(s))
	return d, err
}

func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("invalid duration %q (use units like 90s, 5m, 4h, 30d, 2w, or never)", s)
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
		if err != nil || f > 1e5 {
			return 0, bad
		}
		total += time.Duration(f * float64(mult))
	}
	return total, nil
}

// Rate is a fraction written as a percentage ("5%", "0.3%"), a plain
// fraction (0.05), or "off". Zero means "not set" (keep the default); Off
// disables the check that uses it.
type Rate float64

// Off is the Rate of a disabled limit.
const Off Rate = -1

func (r *Rate) UnmarshalText(b []byte) error {
	s := strings.ToLower(strings.TrimSpace(string(b)))
	if s == "off" || s == "none" {
		*r = Off
		return nil
	}
	bad := fmt.Errorf("invalid rate %q (use a percentage like \"5%%\" or \"0.3%%\", a fraction like 0.05, or \"off\")", string(b))
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(s, "%")), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return bad
	}
	if pct {
		f /= 100
	}
	*r = Rate(f)
	return nil
}

func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// String prints the rate as a percentage.
func (r Rate) String() string {
	if r < 0 {
		return "off"
	}
	return trimFloat(float64(r)*100, 4) + "%"
}

// trimFloat formats f with at most prec decimals, without trailing zeros.
func trimFloat(f float64, prec int) string {
	s := strconv.FormatFloat(f, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
