package configs

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a string in the config: Go's units
// ("90s", "1h30m") plus days and weeks ("5d", "2w"), because queue lifetimes and
// suppression expiries are naturally counted in days.
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

func (d Duration) MarshalText() ([]byte, error) { return []byte(FormatDuration(time.Duration(d))), nil }

// ParseDuration parses a duration with the extra units d (24h) and w (7d).
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && (rest[j] < '0' || rest[j] > '9') && rest[j] != '.' {
			j++
		}
		if i == 0 || j == i {
			return 0, fmt.Errorf("invalid duration %q (use units like 90s, 5m, 4h, 5d, 2w)", s)
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
			d, err := time.ParseDuration(num + unit)
			if err != nil {
				return 0, fmt.Errorf("invalid duration %q (use units like 90s, 5m, 4h, 5d, 2w)", s)
			}
			total += d
			continue
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		total += time.Duration(f * float64(mult))
	}
	return total, nil
}

// FormatDuration prints d the way the config writes it, using days when whole.
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Size is a byte count written as an integer or a string with a unit: "25MB"
// (decimal) or "25MiB" (binary), "512KiB", "1GB". An integer decodes directly;
// a string goes through UnmarshalText.
type Size int64

func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

func (s Size) MarshalText() ([]byte, error) { return []byte(strconv.FormatInt(int64(s), 10)), nil }

// ParseSize parses "1048576", "25MB", "25MiB", "512 KiB".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q (use a number of bytes or units like 512KiB, 25MB, 1GiB)", s)
	}
	f, err := strconv.ParseFloat(t[:i], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[strings.ToLower(strings.TrimSpace(t[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size unit in %q (use B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	return int64(f * mult), nil
}

// Prefix is a network written as a CIDR ("10.0.0.0/8") or a single address
// ("192.0.2.7", meaning /32 or /128).
type Prefix struct{ netip.Prefix }

func (p *Prefix) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.Contains(s, "/") {
		v, err := netip.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("invalid network %q (want CIDR like 10.0.0.0/8)", s)
		}
		p.Prefix = v.Masked()
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("invalid network %q (want CIDR like 10.0.0.0/8 or an address)", s)
	}
	p.Prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
	return nil
}

func (p Prefix) MarshalText() ([]byte, error) { return []byte(p.Prefix.String()), nil }

// HostPort is a listen or connect address "host:port" with a numeric port.
type HostPort string

func (h *HostPort) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	host, port, err := splitHostPort(s)
	if err != nil {
		return err
	}
	_ = host
	_ = port
	*h = HostPort(s)
	return nil
}

func splitHostPort(s string) (string, int, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("invalid address %q (want host:port)", s)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s[:i], "["), "]")
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port in %q", s)
	}
	return host, port, nil
}
