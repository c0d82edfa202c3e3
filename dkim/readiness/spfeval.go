package readiness

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"kiln/mta/resolve"
)

// SPFResult is the result of an SPF evaluation: one of RFC 7208 §2.6's, or
// SPFUnknown.
type SPFResult string

const (
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFNeutral   SPFResult = "neutral"
	SPFNone      SPFResult = "none"
	SPFPermError SPFResult = "permerror"
	SPFTempError SPFResult = "temperror"
	// SPFUnknown is not an RFC 7208 result: the evaluation reached a
	// mechanism whose domain needs a macro that only a message gives (the
	// sender's local part, %{l} and %{s}) or that kiln does not expand
	// (%{p}, the validated reverse name, which RFC 7208 §7.3 advises
	// against), so the result cannot be known ahead of a message.
	SPFUnknown SPFResult = "unknown"
)

// RFC 7208 §4.6.4: at most 10 terms that query DNS (include, a, mx, ptr,
// exists, redirect) per evaluation, at most 2 of those answered with no
// record ("void lookups"), at most 10 MX or PTR names looked at per
// mechanism.
const (
	MaxSPFLookups     = 10
	MaxSPFVoidLookups = 2
	maxSPFNames       = 10
	maxSPFDepth       = 20 // a guard for the walk, which has no lookup limit
)

// SPFQuery is what an SPF evaluation is asked: may IP send mail from Domain?
type SPFQuery struct {
	IP netip.Addr
	// Domain is the domain whose record is evaluated: the envelope
	// sender's domain (RFC 7208 §2.4).
	Domain string
	// Sender is the envelope sender (MAIL FROM); "" when not known, in which
	// case the %{s} and %{l} macros cannot be expanded and %{o} is Domain.
	Sender string
	// HELO is the name the client announced (%{h}).
	HELO string
}

// SPFOutcome is the result of SPF.
type SPFOutcome struct {
	Result SPFResult `json:"result"`
	// Match is the mechanism that decided, after the includes and
	// redirects that led to it: "include:_spf.example.net → ip4:192.0.2.0/24".
	// Empty when none matched.
	Match string `json:"match,omitempty"`
	// Reason explains a result that no mechanism gave: none, neutral by
	// default, the errors, unknown.
	Reason string `json:"reason,omitempty"`
	// Lookups and VoidLookups are counted against the limits.
	Lookups     int `json:"lookups"`
	VoidLookups int `json:"void_lookups"`
}

// SPF evaluates the SPF record of q.Domain for q.IP as a receiver's
// check_host() would (RFC 7208 §4): the record found and parsed, its
// mechanisms tried in order, includes and redirects followed, the lookup
// limits enforced.
func CheckSPF(ctx context.Context, r Resolver, q SPFQuery) SPFOutcome {
	e := newSPFEval(ctx, r, q, false)
	st := e.checkHost(q.Domain, nil)
	return SPFOutcome{Result: st.result, Match: st.match, Reason: st.reason, Lookups: e.lookups, VoidLookups: e.voids}
}

// SPFWalk is what a domain's whole SPF tree costs to evaluate.
type SPFWalk struct {
	// Lookups and VoidLookups are those of an evaluation that no mechanism
	// matches, which visits every term: the most any evaluation needs.
	Lookups     int `json:"lookups"`
	VoidLookups int `json:"void_lookups"`
	// Problems are the errors on the way: an include or redirect whose
	// record is missing, broken or looping, a DNS failure.
	Problems []string `json:"problems,omitempty"`
	// Unknown are the terms that need a message to be evaluated.
	Unknown []string `json:"unknown,omitempty"`
}

// WalkSPF evaluates q.Domain's SPF record as if no mechanism matched q.IP,
// following every include and redirect without stopping at the limits, so
// the whole tree is counted. q.IP still picks A or AAAA lookups and
// expands %{i}.
func WalkSPF(ctx context.Context, r Resolver, q SPFQuery) SPFWalk {
	e := newSPFEval(ctx, r, q, true)
	st := e.checkHost(q.Domain, nil)
	switch st.result {
	case SPFPermError, SPFTempError, SPFNone:
		e.problems = append(e.problems, st.reason)
	}
	return SPFWalk{Lookups: e.lookups, VoidLookups: e.voids, Problems: e.problems, Unknown: e.unknown}
}

type spfEval struct {
	ctx          context.Context
	r            Resolver
	q            SPFQuery
	local        string // the sender's local part; "" when unknown
	senderDomain string
	lookups      int
	voids        int
	// walk: nothing matches, limits are counted but not enforced, problems
	// in includes are collected instead of ending the evaluation.
	walk     bool
	problems []string
	unknown  []string
}

func newSPFEval(ctx context.Context, r Resolver, q SPFQuery, walk bool) *spfEval {
	q.IP = q.IP.Unmap()
	q.Domain = normalizeDomain(q.Domain)
	e := &spfEval{ctx: ctx, r: r, q: q, senderDomain: q.Domain, walk: walk}
	if i := strings.LastIndexByte(q.Sender, '@'); i > 0 {
		e.local, e.senderDomain = q.Sender[:i], normalizeDomain(q.Sender[i+1:])
	}
	return e
}

// spfStep is the result of evaluating one record.
type spfStep struct {
	result SPFResult
	match  string
	reason string
}

func stepf(r SPFResult, format string, a ...any) *spfStep {
	return &spfStep{result: r, reason: fmt.Sprintf(format, a...)}
}

// checkHost is RFC 7208 §4's check_host() for the current domain; chain
// holds the domains whose records led here, to name loops.
func (e *spfEval) checkHost(domain string, chain []string) spfStep {
	domain = normalizeDomain(domain)
	if !validSPFDomain(domain) {
		return spfStep{result: SPFNone, reason: fmt.Sprintf("%q is not a valid domain name", domain)}
	}
	if slices.Contains(chain, domain) {
		return spfStep{result: SPFPermError, reason: "loop: " + strings.Join(append(chain, domain), " → ")}
	}
	if len(chain) >= maxSPFDepth {
		return spfStep{result: SPFPermError, reason: "includes nested too deep: " + strings.Join(chain, " → ")}
	}
	txt, err := e.r.LookupTXT(e.ctx, domain)
	switch {
	case resolve.IsNotFound(err):
		return spfStep{result: SPFNone, reason: domain + " publishes no SPF record"}
	case err != nil && resolve.IsTemporary(err):
		return spfStep{result: SPFTempError, reason: "looking up the SPF record of " + domain + ": " + err.Error()}
	case err != nil:
		return spfStep{result: SPFNone, reason: "looking up the SPF record of " + domain + ": " + err.Error()}
	}
	var spf []string
	for _, t := range txt {
		if IsSPF(t) {
			spf = append(spf, t)
		}
	}
	switch len(spf) {
	case 0:
		return spfStep{result: SPFNone, reason: domain + " publishes no SPF record"}
	case 1:
	default:
		return spfStep{result: SPFPermError, reason: fmt.Sprintf("%s publishes %d SPF records; there must be one (RFC 7208 §4.5)", domain, len(spf))}
	}
	rec, err := ParseSPF(spf[0])
	if err != nil {
		return spfStep{result: SPFPermError, reason: "the SPF record of " + domain + " is invalid: " + err.Error()}
	}
	chain = append(chain[:len(chain):len(chain)], domain)

	for _, t := range rec.Terms {
		if t.IsModifier() {
			continue
		}
		matched, via, stop := e.try(t, domain, chain)
		if stop != nil {
			return *stop
		}
		if matched && !e.walk {
			return spfStep{result: qualifierResult(t.Qualifier), match: via}
		}
	}

	if target, ok := rec.Modifier("redirect"); ok && !rec.HasAll() {
		if st := e.count(); st != nil {
			return *st
		}
		name, st := e.expand(target, domain, "redirect="+target)
		if st != nil {
			return *st
		}
		if name == "" {
			return spfStep{result: SPFNeutral}
		}
		inner := e.checkHost(name, chain)
		switch inner.result {
		case SPFNone:
			// RFC 7208 §6.1: a redirect to a domain without a record is
			// a permerror.
			return spfStep{result: SPFPermError, reason: "redirect=" + target + ": " + inner.reason}
		case SPFPermError, SPFTempError, SPFUnknown:
			inner.reason = "redirect=" + target + ": " + inner.reason
			return inner
		}
		if inner.match != "" {
			inner.match = "redirect=" + target + " → " + inner.match
		}
		return inner
	}
	return spfStep{result: SPFNeutral, reason: "no mechanism matched and the record has no all"}
}

func qualifierResult(q byte) SPFResult {
	switch q {
	case '-':
		return SPFFail
	case '~':
		return SPFSoftFail
	case '?':
		return SPFNeutral
	}
	return SPFPass
}

// count counts a term that queries DNS.
func (e *spfEval) count() *spfStep {
	e.lookups++
	if !e.walk && e.lookups > MaxSPFLookups {
		return stepf(SPFPermError, "the evaluation needs more than %d DNS lookups (RFC 7208 §4.6.4)", MaxSPFLookups)
	}
	return nil
}

// void counts a term whose lookup found no record.
func (e *spfEval) void() *spfStep {
	e.voids++
	if !e.walk && e.voids > MaxSPFVoidLookups {
		return stepf(SPFPermError, "more than %d lookups found no record (void lookups, RFC 7208 §4.6.4)", MaxSPFVoidLookups)
	}
	return nil
}

// lookupErr turns a failed lookup into a step: a temporary failure ends the
// evaluation (temperror), a missing record is a void lookup and no match,
// anything else (a name DNS cannot hold) is no match.
func (e *spfEval) lookupErr(err error, what string) *spfStep {
	switch {
	case resolve.IsNotFound(err):
		return e.void()
	case resolve.IsTemporary(err):
		if e.walk {
			e.problems = append(e.problems, what+": "+err.Error())
			return nil
		}
		return stepf(SPFTempError, "%s: %v", what, err)
	}
	return nil
}

// addrs looks up the addresses of host in the family of the IP checked.
func (e *spfEval) addrs(host string) ([]netip.Addr, error) {
	if e.q.IP.Is4() {
		return e.r.LookupA(e.ctx, host)
	}
	return e.r.LookupAAAA(e.ctx, host)
}

func (e *spfEval) cidr(t SPFTerm) int {
	if e.q.IP.Is4() {
		return t.Prefix4
	}
	return t.Prefix6
}

func inNet(addrs []netip.Addr, bits int, ip netip.Addr) bool {
	for _, a := range addrs {
		a = a.Unmap()
		if a.BitLen() != ip.BitLen() {
			continue
		}
		if p, err := a.Prefix(min(bits, a.BitLen())); err == nil && p.Contains(ip) {
			return true
		}
	}
	return false
}

// try evaluates one directive: whether it matches, how (for includes), or
// the step that ends the evaluation.
func (e *spfEval) try(t SPFTerm, domain string, chain []string) (matched bool, via string, stop *spfStep) {
	ip := e.q.IP
	via = t.String()
	target := domain
	switch t.Mechanism {
	case "include", "a", "mx", "ptr", "exists":
		if st := e.count(); st != nil {
			return false, "", st
		}
		if t.Domain != "" {
			name, st := e.expand(t.Domain, domain, via)
			if st != nil || name == "" {
				return false, "", st
			}
			target = name
		}
	}

	switch t.Mechanism {
	case "all":
		return true, via, nil

	case "ip4", "ip6":
		return t.Net.Addr().BitLen() == ip.BitLen() && t.Net.Contains(ip), via, nil

	case "a":
		addrs, err := e.addrs(target)
		if err != nil {
			return false, "", e.lookupErr(err, via)
		}
		return inNet(addrs, e.cidr(t), ip), via, nil

	case "mx":
		hosts, err := e.r.LookupMX(e.ctx, target)
		var re *resolve.Error
		switch {
		case err == nil:
		case errors.As(err, &re) && (re.Kind == resolve.NullMX || re.Kind == resolve.NoAddress):
			// MX records exist but give no address: not void, no match.
			return false, "", nil
		default:
			return false, "", e.lookupErr(err, via)
		}
		if len(hosts) == 1 && hosts[0].Implicit {
			// No MX record: SPF never falls back to the domain's own
			// address (RFC 7208 §5.4), and the lookup was void.
			return false, "", e.void()
		}
		for _, h := range hosts[:min(len(hosts), maxSPFNames)] {
			if inNet(h.Addrs, e.cidr(t), ip) {
				return true, via, nil
			}
		}
		return false, "", nil

	case "ptr":
		names, err := e.r.LookupPTR(e.ctx, ip)
		if err != nil {
			if resolve.IsNotFound(err) {
				return false, "", e.void()
			}
			return false, "", nil // RFC 7208 §5.5: a DNS error is no match
		}
		for _, n := range names[:min(len(names), maxSPFNames)] {
			if n != target && !strings.HasSuffix(n, "."+target) {
				continue
			}
			addrs, err := e.addrs(n)
			if err == nil && slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == ip }) {
				return true, via, nil
			}
		}
		return false, "", nil

	case "exists":
		// Always an A lookup, whatever the connection's family (§5.7).
		addrs, err := e.r.LookupA(e.ctx, target)
		if err != nil {
			return false, "", e.lookupErr(err, via)
		}
		return len(addrs) > 0, via, nil

	case "include":
		inner := e.checkHost(target, chain)
		switch inner.result {
		case SPFPass:
			return true, via + " → " + inner.match, nil
		case SPFFail, SPFSoftFail, SPFNeutral:
			return false, "", nil
		}
		reason := via + ": " + inner.reason
		if inner.result == SPFNone {
			// RFC 7208 §5.2: an included domain without a record is a
			// permerror.
			inner.result = SPFPermError
		}
		if e.walk {
			if inner.result != SPFUnknown {
				e.problems = append(e.problems, reason)
			}
			return false, "", nil
		}
		return false, "", &spfStep{result: inner.result, reason: reason}
	}
	return false, "", nil
}

// errNoMacro marks a macro that cannot be expanded ahead of a message.
var errNoMacro = errors.New("cannot be expanded")

// expand expands the macros of a domain-spec (RFC 7208 §7). A macro that
// needs a message ends the evaluation with SPFUnknown, or in a walk skips
// the term (name "", no step).
func (e *spfEval) expand(spec, domain, term string) (string, *spfStep) {
	name, err := e.expandMacros(spec, domain)
	if err == nil {
		return name, nil
	}
	if errors.Is(err, errNoMacro) {
		why := term + " needs " + err.Error()
		if e.walk {
			e.unknown = append(e.unknown, why)
			return "", nil
		}
		return "", &spfStep{result: SPFUnknown, reason: why}
	}
	return "", stepf(SPFPermError, "%s: %v", term, err)
}

func (e *spfEval) expandMacros(spec, domain string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c != '%' || i+1 >= len(spec) {
			b.WriteByte(c)
			continue
		}
		switch spec[i+1] {
		case '%':
			b.WriteByte('%')
			i++
			continue
		case '_':
			b.WriteByte(' ')
			i++
			continue
		case '-':
			b.WriteString("%20")
			i++
			continue
		}
		j := strings.IndexByte(spec[i:], '}')
		if spec[i+1] != '{' || j < 0 {
			return "", fmt.Errorf("bad macro in %q", spec)
		}
		m, err := parseMacro(spec[i+2:i+j], false)
		if err != nil {
			return "", err
		}
		v, err := e.macroValue(m.letter, domain)
		if err != nil {
			return "", err
		}
		b.WriteString(m.apply(v))
		i += j
	}
	out := strings.TrimSuffix(b.String(), ".")
	// RFC 7208 §7.3: a result over 253 characters loses labels from the
	// left until it fits.
	for len(out) > 253 {
		k := strings.IndexByte(out, '.')
		if k < 0 {
			return "", fmt.Errorf("%q expands to a name longer than 253 characters", spec)
		}
		out = out[k+1:]
	}
	return out, nil
}

func (e *spfEval) macroValue(letter byte, domain string) (string, error) {
	switch letter {
	case 's':
		if e.local == "" {
			return "", fmt.Errorf("%%{s}, the envelope sender, which only a message gives: %w", errNoMacro)
		}
		return e.local + "@" + e.senderDomain, nil
	case 'l':
		if e.local == "" {
			return "", fmt.Errorf("%%{l}, the envelope sender's local part, which only a message gives: %w", errNoMacro)
		}
		return e.local, nil
	case 'o':
		return e.senderDomain, nil
	case 'd':
		return domain, nil
	case 'i':
		if e.q.IP.Is4() {
			return e.q.IP.String(), nil
		}
		var b strings.Builder
		for k, x := range e.q.IP.As16() {
			if k > 0 {
				b.WriteByte('.')
			}
			fmt.Fprintf(&b, "%x.%x", x>>4, x&0xf)
		}
		return b.String(), nil
	case 'v':
		if e.q.IP.Is4() {
			return "in-addr", nil
		}
		return "ip6", nil
	case 'h':
		if e.q.HELO == "" {
			return "", fmt.Errorf("%%{h}, the EHLO name: %w", errNoMacro)
		}
		return e.q.HELO, nil
	case 'p':
		return "", fmt.Errorf("%%{p}, the validated reverse name, which kiln does not expand (RFC 7208 §7.3 advises against it): %w", errNoMacro)
	}
	return "", fmt.Errorf("macro %%{%c} is allowed only in exp=", letter)
}

// apply runs a macro's transformers on its value (RFC 7208 §7.3): split on
// the delimiters, reverse, keep the right-hand parts, join with dots, and
// URL-escape for an upper-case letter.
func (m macro) apply(v string) string {
	if m.digits > 0 || m.reverse || m.delims != "" {
		delims := m.delims
		if delims == "" {
			delims = "."
		}
		parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
		if m.reverse {
			slices.Reverse(parts)
		}
		if m.digits > 0 && m.digits < len(parts) {
			parts = parts[len(parts)-m.digits:]
		}
		v = strings.Join(parts, ".")
	}
	if m.upper {
		v = urlEscape(v)
	}
	return v
}

// urlEscape escapes every byte outside RFC 3986's unreserved set.
func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if isAlpha(c) || isDigit(c) || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// validSPFDomain: a multi-label name whose labels are 1 to 63 bytes, at most
// 253 bytes in all (RFC 7208 §4.3: anything else gives "none").
func validSPFDomain(d string) bool {
	if d == "" || len(d) > 253 || !strings.Contains(d, ".") {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range []byte(l) {
			if c <= ' ' || c > '~' {
				return false
			}
		}
	}
	return true
}
