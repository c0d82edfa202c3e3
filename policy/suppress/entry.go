package suppress

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Source says what put an entry on the list.
type Source string

const (
	SourceReply       Source = "reply"        // a remote's reply during delivery
	SourceLateBounce  Source = "late-bounce"  // a bounce report (DSN) that arrived later
	SourceComplaint   Source = "complaint"    // a feedback-loop complaint (ARF)
	SourceUnsubscribe Source = "unsubscribe"  // the recipient asked to stop
	SourceSoftFailure Source = "soft-failure" // the repeated-soft-failure rule
	SourceManual      Source = "manual"       // an operator
	SourceImport      Source = "import"       // a CSV import
)

// Valid reports whether s is one of the sources above.
func (s Source) Valid() bool { return s.rank() > 0 }

// rank orders sources for Add: a recipient's own wish beats a bounce, which
// beats an operator's or an import's word, which beats a count of soft
// failures.
func (s Source) rank() int {
	switch s {
	case SourceComplaint, SourceUnsubscribe:
		return 4
	case SourceReply, SourceLateBounce:
		return 3
	case SourceManual, SourceImport:
		return 2
	case SourceSoftFailure:
		return 1
	}
	return 0
}

// defaultReason is the reason of an entry that names none.
func (s Source) defaultReason() string {
	switch s {
	case SourceComplaint, SourceUnsubscribe:
		return "feedback"
	case SourceSoftFailure:
		return "mailboxfull"
	case SourceReply, SourceLateBounce:
		return "undefined"
	}
	return "suppressed"
}

// Entry is one suppressed address in one scope.
type Entry struct {
	// Scope is "" for the global list, else the account's name.
	Scope   string `json:"scope"`
	Address string `json:"address"`
	// Reason is in DESIGN.md's vocabulary (Sisimai's): userunknown,
	// mailboxfull, feedback, suppressed, ...
	Reason string `json:"reason"`
	Source Source `json:"source"`
	// Reply is the remote's words: the reply line, or the report's
	// diagnostic.
	Reply string `json:"reply,omitempty"`
	// Rule is the name of the rule that decided: a classification rule, or
	// "repeated-soft-failure".
	Rule string `json:"rule,omitempty"`
	// QueueID is kiln's id of the message that caused the entry (the "id"
	// of its events).
	QueueID string `json:"queue_id,omitempty"`
	// Status is the RFC 3463 status of the decision, when there was one.
	Status string `json:"status,omitempty"`
	// Note is an operator's comment, or what the soft-failure rule counted.
	Note    string    `json:"note,omitempty"`
	Created time.Time `json:"created"`
	// Expires is when the entry stops counting; zero is never.
	Expires time.Time `json:"expires,omitzero"`
}

// Permanent reports whether the entry never expires.
func (e Entry) Permanent() bool { return e.Expires.IsZero() }

// Expired reports whether the entry has expired at now.
func (e Entry) Expired(now time.Time) bool { return !e.Expires.IsZero() && !now.Before(e.Expires) }

// stronger reports whether e should replace old (which has not expired): it
// suppresses for longer, or as long from a stronger source.
func (e Entry) stronger(old Entry) bool {
	switch {
	case e.Permanent() != old.Permanent():
		return e.Permanent()
	case !e.Permanent() && !e.Expires.Equal(old.Expires):
		return e.Expires.After(old.Expires)
	}
	return e.Source.rank() > old.Source.rank()
}

// Limits on what an entry keeps; longer text is cut.
const (
	maxAddress = 320 // RFC 5321 local part (64) + "@" + domain (255)
	maxScope   = 255
	maxText    = 1000
)

// ErrAddress is returned for an address kiln cannot keep on the list.
var ErrAddress = errors.New("not an email address")

// Normalize returns the form an address is kept and looked up in: without
// angle brackets or surrounding spaces, lower-cased, with an
// internationalised domain in ASCII (punycode) and no trailing dot. "+tags"
// are kept (see the package doc).
func Normalize(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = strings.TrimSpace(a[1 : len(a)-1])
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > maxAddress*2 {
		return "", fmt.Errorf("%w: %q", ErrAddress, clip(addr, 80))
	}
	local, domain := a[:at], strings.TrimSuffix(a[at+1:], ".")
	ascii := true
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c < 0x20 || c == 0x7f || c == ' ' || c == '\t' {
			return "", fmt.Errorf("%w: %q has spaces or control characters", ErrAddress, clip(addr, 80))
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if domain == "" || strings.ContainsAny(domain, "@<>()[],;:\\\"") && !strings.HasPrefix(domain, "[") {
		return "", fmt.Errorf("%w: %q has no valid domain", ErrAddress, clip(addr, 80))
	}
	if strings.ContainsAny(local, "<>") {
		return "", fmt.Errorf("%w: %q", ErrAddress, clip(addr, 80))
	}
	if ascii {
		domain = strings.ToLower(domain)
		if !validDomain(domain) {
			return "", fmt.Errorf("%w: %q has no valid domain", ErrAddress, clip(addr, 80))
		}
		out := strings.ToLower(local) + "@" + domain
		if len(out) > maxAddress {
			return "", fmt.Errorf("%w: longer than %d bytes", ErrAddress, maxAddress)
		}
		return out, nil
	}
	if !utf8.ValidString(a) {
		return "", fmt.Errorf("%w: %q is not UTF-8", ErrAddress, clip(addr, 80))
	}
	for _, r := range a {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return "", fmt.Errorf("%w: %q has spaces or control characters", ErrAddress, clip(addr, 80))
		}
	}
	d, err := idna.Lookup.ToASCII(strings.ToLower(domain))
	if err != nil {
		return "", fmt.Errorf("%w: %q has an invalid domain: %v", ErrAddress, clip(addr, 80), err)
	}
	if !validDomain(d) {
		return "", fmt.Errorf("%w: %q has no valid domain", ErrAddress, clip(addr, 80))
	}
	out := strings.ToLower(local) + "@" + d
	if len(out) > maxAddress {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrAddress, maxAddress)
	}
	return out, nil
}

// validDomain reports whether d (lower case, ASCII) is a domain an address
// can have: an address literal in brackets, or dot-separated labels of 1 to
// 63 bytes, 253 in all.
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		return strings.HasSuffix(d, "]") && len(d) > 2 && strings.Count(d, "[") == 1 && strings.Count(d, "]") == 1
	}
	if len(d) == 0 || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
	}
	return true
}

// baseAddress returns a normalised address without its "+tag", and whether
// it had one.
func baseAddress(addr string) (string, bool) {
	at := strings.LastIndexByte(addr, '@')
	plus := strings.IndexByte(addr[:max(at, 0)], '+')
	if plus <= 0 {
		return addr, false
	}
	return addr[:plus] + addr[at:], true
}

// ValidScope reports why a scope cannot be used, or nil. Account names have
// no spaces or control characters.
func ValidScope(s string) error {
	if len(s) > maxScope {
		return fmt.Errorf("scope longer than %d bytes", maxScope)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("scope %q has spaces or control characters", clip(s, 80))
		}
	}
	return nil
}

// reasons is DESIGN.md's vocabulary.
var reasons = map[string]bool{}

func init() {
	for _, r := range strings.Fields(`userunknown hostunknown hasmoved notaccept mailboxfull suspend exceedlimit
		mesgtoobig blocked spamdetected policyviolation badreputation authfailure requireptr securityerror
		rejected norelaying toomanyconn speeding expired filtered contenterror virusdetected systemerror
		systemfull networkerror mailererror syntaxerror notcompliantrfc failedstarttls feedback vacation
		onhold undefined delivered suppressed`) {
		reasons[r] = true
	}
}

// KnownReason reports whether r is a reason of DESIGN.md's vocabulary.
func KnownReason(r string) bool { return reasons[r] }

// clean makes free text fit an entry: one line, valid UTF-8, at most n bytes.
func clean(s string, n int) string {
	if s == "" {
		return ""
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.ContainsAny(s, "\r\n\t\x00") {
		s = strings.Map(func(r rune) rune {
			switch r {
			case '\r', '\n', '\t':
				return ' '
			case 0:
				return -1
			}
			return r
		}, s)
	}
	s = strings.TrimSpace(s)
	return clip(s, n)
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// prepare checks and completes an entry given to Add or Import: normalises
// the address, fills the reason, the created time and the expiry.
func (c *Config) prepare(e Entry, now time.Time) (Entry, error) {
	addr, err := Normalize(e.Address)
	if err != nil {
		return e, err
	}
	e.Address = addr
	if err := ValidScope(e.Scope); err != nil {
		return e, err
	}
	if e.Source == "" {
		e.Source = SourceManual
	}
	if !e.Source.Valid() {
		return e, fmt.Errorf("unknown source %q", clip(string(e.Source), 40))
	}
	e.Reason = strings.ToLower(strings.TrimSpace(e.Reason))
	if e.Reason == "" {
		e.Reason = e.Source.defaultReason()
	}
	if len(e.Reason) > 40 || strings.ContainsAny(e.Reason, " \t\r\n\x00") {
		return e, fmt.Errorf("invalid reason %q", clip(e.Reason, 40))
	}
	e.Reply, e.Rule, e.QueueID = clean(e.Reply, maxText), clean(e.Rule, 200), clean(e.QueueID, 200)
	e.Status, e.Note = clean(e.Status, 20), clean(e.Note, maxText)
	if e.Created.IsZero() {
		e.Created = now
	}
	if e.Expires.IsZero() {
		e.Expires = c.expiryFor(e.Reason, e.Source, e.Created)
	}
	return e, nil
}
