package resolve

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// normalize turns a domain as found in an address into the form DNS is asked
// about: lowercase, no trailing dot, non-ASCII labels as A-labels ("xn--").
// An SMTPUTF8 recipient's domain arrives in Unicode and its MX must be found
// under the A-label (RFC 6531 §3.2, RFC 5890).
//
// The conversion lowercases and Punycode-encodes (RFC 3492); it does not apply
// the full UTS #46 mapping (width folding, NFC), which would need the Unicode
// tables of golang.org/x/text. Names arriving through submission in any
// common form (lowercase, composed) convert correctly.
func normalize(domain string) (string, bool) {
	d := strings.TrimSuffix(domain, ".")
	if d == "" || len(d) > 253*4 {
		return "", false
	}
	labels := strings.Split(d, ".")
	for i, l := range labels {
		if l == "" {
			return "", false
		}
		if !isASCII(l) {
			if !utf8.ValidString(l) {
				return "", false
			}
			enc, err := punycode(strings.ToLower(l))
			if err != nil {
				return "", false
			}
			l = "xn--" + enc
		}
		l = strings.ToLower(l)
		if len(l) > 63 || !validLabel(l) {
			return "", false
		}
		labels[i] = l
	}
	d = strings.Join(labels, ".")
	if len(d) > 253 {
		return "", false
	}
	return d, true
}

// validLabel allows letters, digits, '-' and '_' (the last for names such as
// _dmarc and selector._domainkey that TXT lookups use).
func validLabel(l string) bool {
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// addressLiteral parses an RFC 5321 §4.1.3 address literal such as
// "[192.0.2.1]" or "[IPv6:2001:db8::1]".
func addressLiteral(d string) (netip.Addr, bool) {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return netip.Addr{}, false
	}
	s := d[1 : len(d)-1]
	if len(s) > 5 && strings.EqualFold(s[:5], "IPv6:") {
		a, err := netip.ParseAddr(s[5:])
		return a, err == nil && a.Is6() && !a.Is4In6()
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Is4()
}

// Punycode parameters, RFC 3492 §5.
const (
	pcBase        = 36
	pcTMin        = 1
	pcTMax        = 26
	pcSkew        = 38
	pcDamp        = 700
	pcInitialBias = 72
	pcInitialN    = 128
)

// punycode encodes one label, RFC 3492 §6.3.
func punycode(s string) (string, error) {
	runes := []rune(s)
	out := make([]byte, 0, len(s)+8)
	for _, r := range runes {
		if r < 0x80 {
			out = append(out, byte(r))
		}
	}
	b := len(out)
	h := b
	if b > 0 {
		out = append(out, '-')
	}
	n, delta, bias := rune(pcInitialN), 0, pcInitialBias
	for h < len(runes) {
		m := rune(utf8.MaxRune + 1)
		for _, r := range runes {
			if r >= n && r < m {
				m = r
			}
		}
		if int(m-n) > (1<<30)/(h+1) {
			return "", errors.New("punycode: overflow")
		}
		delta += int(m-n) * (h + 1)
		n = m
		for _, r := range runes {
			if r < n {
				delta++
			}
			if r != n {
				continue
			}
			q := delta
			for k := pcBase; ; k += pcBase {
				t := k - bias
				if t < pcTMin {
					t = pcTMin
				} else if t > pcTMax {
					t = pcTMax
				}
				if q < t {
					break
				}
				out = append(out, pcDigit(t+(q-t)%(pcBase-t)))
				q = (q - t) / (pcBase - t)
			}
			out = append(out, pcDigit(q))
			bias = pcAdapt(delta, h+1, h == b)
			delta = 0
			h++
		}
		delta++
		n++
	}
	return string(out), nil
}

func pcDigit(d int) byte {
	if d < 26 {
		return byte('a' + d)
	}
	return byte('0' + d - 26)
}

func pcAdapt(delta, numPoints int, first bool) int {
	if first {
		delta /= pcDamp
	} else {
		delta /= 2
	}
	delta += delta / numPoints
	k := 0
	for delta > ((pcBase-pcTMin)*pcTMax)/2 {
		delta /= pcBase - pcTMin
		k += pcBase
	}
	return k + (pcBase-pcTMin+1)*delta/(delta+pcSkew)
}
