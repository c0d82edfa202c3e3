package readiness

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPFTerm is one term of an SPF record (RFC 7208 §4.6.1): a directive (a
// qualifier and a mechanism) or a modifier (name=value).
type SPFTerm struct {
	// Qualifier is '+', '-', '~' or '?' for a directive ('+' when none is
	// written), 0 for a modifier.
	Qualifier byte
	// Mechanism is the lower-case mechanism name: all, include, a, mx, ptr,
	// ip4, ip6 or exists; "" for a modifier.
	Mechanism string
	// Domain is the domain-spec of include, a, mx, ptr and exists, as
	// written (it may hold macros); "" when a, mx or ptr name none.
	Domain string
	// Net is the network of ip4 and ip6 (a single address has its full
	// length).
	Net netip.Prefix
	// Prefix4 and Prefix6 are the CIDR lengths of a and mx; 32 and 128
	// when none is written.
	Prefix4, Prefix6 int

	// Name (lower case) and Value are a modifier's: redirect, exp, or one
	// SPF does not define (ignored, RFC 7208 §6).
	Name, Value string
}

// IsModifier reports whether the term is a modifier.
func (t SPFTerm) IsModifier() bool { return t.Mechanism == "" }

// String writes the term back in its canonical form: no "+" qualifier,
// CIDR lengths only when they are not the full length.
func (t SPFTerm) String() string {
	if t.IsModifier() {
		return t.Name + "=" + t.Value
	}
	var b strings.Builder
	if t.Qualifier != '+' && t.Qualifier != 0 {
		b.WriteByte(t.Qualifier)
	}
	b.WriteString(t.Mechanism)
	switch t.Mechanism {
	case "ip4", "ip6":
		b.WriteByte(':')
		b.WriteString(t.Net.Addr().String())
		if t.Net.Bits() != t.Net.Addr().BitLen() {
			b.WriteString("/" + strconv.Itoa(t.Net.Bits()))
		}
	case "include", "exists", "a", "mx", "ptr":
		if t.Domain != "" {
			b.WriteByte(':')
			b.WriteString(t.Domain)
		}
		if t.Mechanism == "a" || t.Mechanism == "mx" {
			if t.Prefix4 != 32 {
				b.WriteString("/" + strconv.Itoa(t.Prefix4))
			}
			if t.Prefix6 != 128 {
				b.WriteString("//" + strconv.Itoa(t.Prefix6))
			}
		}
	}
	return b.String()
}

// SPFRecord is a parsed SPF record.
type SPFRecord struct {
	Terms []SPFTerm
}

// String writes the record back: "v=spf1" and the canonical terms.
func (r *SPFRecord) String() string {
	parts := []string{"v=spf1"}
	for _, t := range r.Terms {
		parts = append(parts, t.String())
	}
	return strings.Join(parts, " ")
}

// Modifier returns the value of the named modifier (redirect, exp).
func (r *SPFRecord) Modifier(name string) (string, bool) {
	for _, t := range r.Terms {
		if t.IsModifier() && t.Name == name {
			return t.Value, true
		}
	}
	return "", false
}

// HasAll reports whether the record has an "all" mechanism anywhere, which
// makes a redirect modifier ignored (RFC 7208 §6.1).
func (r *SPFRecord) HasAll() bool {
	for _, t := range r.Terms {
		if t.Mechanism == "all" {
			return true
		}
	}
	return false
}

// IsSPF reports whether a TXT record is an SPF record: it starts with
// "v=spf1" (in any case) followed by a space or nothing (RFC 7208 §4.5).
func IsSPF(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// ParseSPF parses an SPF record (RFC 7208 §4.6 and the ABNF of §12). Any
// syntax error makes the whole record a "permerror" for receivers (§4.6),
// and the error says which term is wrong.
func ParseSPF(txt string) (*SPFRecord, error) {
	if !IsSPF(txt) {
		return nil, errors.New(`not an SPF record: it must start with "v=spf1"`)
	}
	rec := &SPFRecord{}
	seen := map[string]bool{}
	for _, word := range strings.Split(txt[6:], " ") {
		if word == "" {
			continue
		}
		t, err := parseSPFTerm(word)
		if err != nil {
			return nil, fmt.Errorf("term %q: %v", word, err)
		}
		if t.IsModifier() && (t.Name == "redirect" || t.Name == "exp") {
			if seen[t.Name] {
				return nil, fmt.Errorf("%s= appears twice (RFC 7208 §6)", t.Name)
			}
			seen[t.Name] = true
		}
		rec.Terms = append(rec.Terms, t)
	}
	return rec, nil
}

func parseSPFTerm(w string) (SPFTerm, error) {
	for _, c := range []byte(w) {
		if c < 0x21 || c > 0x7e {
			return SPFTerm{}, errors.New("holds a character that is not visible ASCII")
		}
	}
	// A modifier is name "=" value, the name starting with a letter. A
	// directive's mechanism ends at ":" or "/", so an "=" before either
	// makes a modifier.
	if i := strings.IndexAny(w, "=:/"); i > 0 && w[i] == '=' {
		name := strings.ToLower(w[:i])
		if !validModifierName(name) {
			return SPFTerm{}, errors.New("is not a valid modifier name")
		}
		t := SPFTerm{Name: name, Value: w[i+1:]}
		switch name {
		case "redirect", "exp":
			if err := checkDomainSpec(t.Value); err != nil {
				return SPFTerm{}, err
			}
		default:
			if _, err := checkMacroString(t.Value, true); err != nil {
				return SPFTerm{}, err
			}
		}
		return t, nil
	}

	t := SPFTerm{Qualifier: '+', Prefix4: 32, Prefix6: 128}
	switch w[0] {
	case '+', '-', '~', '?':
		t.Qualifier = w[0]
		w = w[1:]
	}
	name, arg := w, ""
	hasArg := false
	if i := strings.IndexAny(w, ":/"); i >= 0 {
		name, arg = w[:i], w[i:]
		if arg[0] == ':' {
			hasArg = true
			arg = arg[1:]
		}
	}
	t.Mechanism = strings.ToLower(name)
	switch t.Mechanism {
	case "all":
		if arg != "" || hasArg {
			return SPFTerm{}, errors.New("all takes no argument")
		}
	case "include", "exists":
		if !hasArg {
			return SPFTerm{}, fmt.Errorf("%s needs a domain (%s:example.com)", t.Mechanism, t.Mechanism)
		}
		if err := checkDomainSpec(arg); err != nil {
			return SPFTerm{}, err
		}
		t.Domain = arg
	case "ptr":
		if !hasArg && arg != "" {
			return SPFTerm{}, errors.New("ptr takes no CIDR length")
		}
		if hasArg {
			if err := checkDomainSpec(arg); err != nil {
				return SPFTerm{}, err
			}
			t.Domain = arg
		}
	case "a", "mx":
		spec, p4, p6, err := splitDualCIDR(arg)
		if err != nil {
			return SPFTerm{}, err
		}
		if hasArg {
			if err := checkDomainSpec(spec); err != nil {
				return SPFTerm{}, err
			}
			t.Domain = spec
		} else if spec != "" {
			return SPFTerm{}, errors.New("unexpected text after the mechanism")
		}
		t.Prefix4, t.Prefix6 = p4, p6
	case "ip4", "ip6":
		if !hasArg {
			return SPFTerm{}, fmt.Errorf("%s needs an address", t.Mechanism)
		}
		addr, bits := arg, -1
		if i := strings.IndexByte(arg, '/'); i >= 0 {
			addr = arg[:i]
			n, err := cidrLength(arg[i+1:])
			if err != nil {
				return SPFTerm{}, err
			}
			bits = n
		}
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Zone() != "" || (t.Mechanism == "ip4") != a.Is4() {
			return SPFTerm{}, fmt.Errorf("%q is not an %s address", addr, map[string]string{"ip4": "IPv4", "ip6": "IPv6"}[t.Mechanism])
		}
		if bits < 0 {
			bits = a.BitLen()
		}
		if bits > a.BitLen() {
			return SPFTerm{}, fmt.Errorf("CIDR length /%d is longer than %d", bits, a.BitLen())
		}
		t.Net = netip.PrefixFrom(a, bits)
	default:
		return SPFTerm{}, fmt.Errorf("unknown mechanism %q", name)
	}
	return t, nil
}

// splitDualCIDR splits a/mx's argument into the domain-spec and the
// dual-cidr-length ("/24", "//64", "/24//64") that may end it.
func splitDualCIDR(arg string) (spec string, p4, p6 int, err error) {
	p4, p6 = 32, 128
	if i := strings.LastIndex(arg, "//"); i >= 0 {
		n, err := cidrLength(arg[i+2:])
		if err != nil {
			return "", 0, 0, err
		}
		if n > 128 {
			return "", 0, 0, fmt.Errorf("IPv6 CIDR length /%d is longer than 128", n)
		}
		p6, arg = n, arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 {
		n, err := cidrLength(arg[i+1:])
		if err != nil {
			return "", 0, 0, err
		}
		if n > 32 {
			return "", 0, 0, fmt.Errorf("IPv4 CIDR length /%d is longer than 32", n)
		}
		p4, arg = n, arg[:i]
	}
	return arg, p4, p6, nil
}

// cidrLength parses the digits of a CIDR length.
func cidrLength(s string) (int, error) {
	if s == "" || len(s) > 3 {
		return 0, fmt.Errorf("bad CIDR length %q", "/"+s)
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad CIDR length %q", "/"+s)
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

func validModifierName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for _, c := range []byte(n) {
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// checkDomainSpec checks a domain-spec: a macro-string whose end is a macro
// or "." and a top label (RFC 7208 §7.1), with none of the letters only
// "exp" may use (c, r, t).
func checkDomainSpec(s string) error {
	if s == "" {
		return errors.New("empty domain")
	}
	end, err := checkMacroString(s, false)
	if err != nil {
		return err
	}
	if end == len(s) {
		return nil // domain-end is a macro-expand
	}
	lit := strings.TrimSuffix(s[end:], ".")
	dot := strings.LastIndexByte(lit, '.')
	if dot < 0 {
		return fmt.Errorf("%q is not a domain: it needs a dot and a top-level label", s)
	}
	if !validTopLabel(lit[dot+1:]) {
		return fmt.Errorf("%q does not end with a valid top-level label", s)
	}
	return nil
}

// validTopLabel: letters and digits with at least one letter, or a label
// with inner hyphens (RFC 7208 §7.1, toplabel).
func validTopLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	alpha := false
	for _, c := range []byte(l) {
		switch {
		case isAlpha(c):
			alpha = true
		case c == '-':
			alpha = true // the second form of toplabel
		case !isDigit(c):
			return false
		}
	}
	return alpha
}

// checkMacroString checks the macro syntax of s (RFC 7208 §7.1) and returns
// where the last macro-expand ends (0 when there is none). expOnly allows
// the letters reserved for explanations (c, r, t).
func checkMacroString(s string, expOnly bool) (end int, err error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return 0, errors.New("holds a character that is not visible ASCII")
		}
		if c != '%' {
			continue
		}
		if i+1 >= len(s) {
			return 0, errors.New(`a "%" ends the text: write "%%" for a percent sign`)
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			end = i + 1
			continue
		case '{':
		default:
			return 0, fmt.Errorf("%q is not a macro", s[i:i+2])
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return 0, errors.New(`a macro "%{" is not closed`)
		}
		if _, err := parseMacro(s[i+2:i+j], expOnly); err != nil {
			return 0, err
		}
		i += j
		end = i + 1
	}
	return end, nil
}

// macro is one parsed %{...}.
type macro struct {
	letter  byte // lower case
	upper   bool // URL-escape the result
	digits  int  // keep this many right-hand parts; 0: all
	reverse bool
	delims  string
}

func parseMacro(body string, expOnly bool) (macro, error) {
	if body == "" {
		return macro{}, errors.New("empty macro %{}")
	}
	m := macro{letter: body[0] | 0x20, upper: body[0] >= 'A' && body[0] <= 'Z'}
	switch m.letter {
	case 's', 'l', 'o', 'd', 'i', 'p', 'h', 'v':
	case 'c', 'r', 't':
		if !expOnly {
			return macro{}, fmt.Errorf("macro %%{%c} is allowed only in exp= (RFC 7208 §7.2)", body[0])
		}
	default:
		return macro{}, fmt.Errorf("unknown macro letter %q", body[0])
	}
	rest := body[1:]
	n := 0
	for n < len(rest) && isDigit(rest[n]) {
		n++
	}
	if n > 0 {
		d, err := strconv.Atoi(rest[:n])
		if err != nil || d == 0 {
			if err == nil {
				return macro{}, errors.New("a macro's part count must not be zero (RFC 7208 §7.3)")
			}
			d = 128
		}
		m.digits = min(d, 128)
		rest = rest[n:]
	}
	if rest != "" && rest[0]|0x20 == 'r' {
		m.reverse = true
		rest = rest[1:]
	}
	for _, c := range []byte(rest) {
		if !strings.ContainsRune(".-+,/_=", rune(c)) {
			return macro{}, fmt.Errorf("%q is not a macro delimiter", c)
		}
	}
	m.delims = rest
	return m, nil
}
