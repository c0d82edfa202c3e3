package smtpsink

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Stage is the point of an SMTP session a rule acts on.
type Stage string

const (
	// StageConnect is the greeting. A non-2xx code is sent instead of the
	// 220 and the connection is closed; a delay holds the greeting back.
	// Match is ignored.
	StageConnect Stage = "connect"
	// StageMail is the reply to MAIL FROM; Match is tried on the sender
	// ("<>" for the null sender).
	StageMail Stage = "mail"
	// StageRcpt is the reply to RCPT TO; Match is tried on the recipient.
	StageRcpt Stage = "rcpt"
	// StageData is the reply after the final dot. SMTP has one reply per
	// transaction, so the transaction's accepted recipients are tried in
	// RCPT order and the first one a data rule matches decides.
	StageData Stage = "data"
)

// Rule scripts one reply. Rules are data, so the same engine is driven from
// Go tests and from a rules file. For each event the first rule of the
// event's stage whose Match fits, whose Times is not used up and whose Share
// draw succeeds, applies; with none, the server gives its normal reply.
type Rule struct {
	Stage Stage `json:"stage"`
	// Match is a case-insensitive pattern on the address: "*" is any run of
	// characters, "?" any one character; "" matches everything.
	Match string `json:"match,omitempty"`
	// Code is the reply code; 0 keeps the normal reply (useful with Delay).
	Code int `json:"code,omitempty"`
	// Enhanced is the RFC 3463 status, such as "5.1.1"; "" derives "X.0.0"
	// from the code.
	Enhanced string `json:"enhanced,omitempty"`
	// Text follows the codes; "{addr}" is replaced by the matched address
	// and "{ip}" by the client's IP address.
	Text string `json:"text,omitempty"`
	// Delay is waited before the reply (or before the drop).
	Delay time.Duration `json:"delay,omitempty"`
	// Drop closes the connection instead of replying. At StageData the
	// whole message is read first: the client has sent its final dot and
	// never learns whether the message arrived (RFC 5321 §6.1's duplicate
	// case).
	Drop bool `json:"drop,omitempty"`
	// DropAfter (StageData only) closes the connection in the middle of
	// DATA, once this many bytes of the message have been read (at the
	// final dot when the message is shorter): the client is cut off while
	// still sending.
	DropAfter int64 `json:"drop_after,omitempty"`
	// Times limits the rule to its first Times matches (then the next rule,
	// or the normal reply, applies); 0 means always. "Fail twice, then
	// accept" is a rule with Times 2.
	Times int `json:"times,omitempty"`
	// Share applies the rule to that fraction of its matches, drawn from
	// the server's seeded random source (Config.Seed); 0 means every match.
	// "Defer 5% of messages" is a data rule with Share 0.05.
	Share float64 `json:"share,omitempty"`
}

// Validate reports the first problem with r, naming the field.
func (r Rule) Validate() error {
	switch r.Stage {
	case StageConnect, StageMail, StageRcpt, StageData:
	default:
		return fieldErrorf("stage", "stage %q: want connect, mail, rcpt or data", r.Stage)
	}
	if err := validReply(r.Code, r.Enhanced, r.Text); err != nil {
		return err
	}
	switch {
	case r.Delay < 0:
		return fieldErrorf("delay", "delay must not be negative")
	case r.Times < 0:
		return fieldErrorf("times", "times must not be negative")
	case r.DropAfter < 0:
		return fieldErrorf("drop_after", "drop_after must not be negative")
	case r.DropAfter > 0 && r.Stage != StageData:
		return fieldErrorf("drop_after", "drop_after is for the data stage only")
	case r.Share < 0 || r.Share > 1:
		return fieldErrorf("share", "share %v: want a fraction from 0 to 1", r.Share)
	}
	return nil
}

// fieldError is a validation error that names the field at fault, so a
// rules file can report the key and its line.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.msg }

func fieldErrorf(field, format string, a ...any) error {
	return &fieldError{field, fmt.Sprintf(format, a...)}
}

// validReply checks a scripted reply's code, enhanced code and text.
func validReply(code int, enhanced, text string) error {
	if code != 0 && (code < 200 || code > 599) {
		return fieldErrorf("code", "code %d: want 200 to 599", code)
	}
	if enhanced != "" {
		if !validStatus(enhanced) {
			return fieldErrorf("enhanced", "enhanced %q: want an RFC 3463 status such as 5.1.1", enhanced)
		}
		if code != 0 && enhanced[0]-'0' != byte(code/100) {
			return fieldErrorf("enhanced", "enhanced %q does not match code %d", enhanced, code)
		}
	}
	if strings.ContainsAny(text, "\r\n") {
		return fieldErrorf("text", "text must be one line")
	}
	return nil
}

// validStatus reports whether s is an RFC 3463 status: class 2, 4 or 5,
// then subject and detail of one to three digits.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// ValidateRules checks every rule and names the first bad one by position.
func ValidateRules(rules []Rule) error {
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
	}
	return nil
}

// Match reports whether addr fits the pattern (case-insensitively): "*" is
// any run of characters, "?" any one, "" matches everything.
func Match(pattern, addr string) bool {
	if pattern == "" {
		return true
	}
	return glob(strings.ToLower(pattern), strings.ToLower(addr))
}

// glob matches '*' (any run) and '?' (any one byte), iteratively with
// backtracking to the last star, so a hostile pattern cannot blow up.
func glob(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// reply is a scripted reply ready to send: code, enhanced code, text with
// its placeholders filled in.
type reply struct {
	code     int
	enhanced smtp.EnhancedCode
	text     string
}

// makeReply fills in a scripted reply for an address and a client IP.
func makeReply(code int, enhanced, text, addr, ip string) reply {
	rp := reply{code: code, enhanced: smtp.EnhancedCode{code / 100, 0, 0}, text: text}
	if enhanced != "" {
		parts := strings.Split(enhanced, ".")
		for i := range 3 {
			rp.enhanced[i], _ = strconv.Atoi(parts[i])
		}
	}
	if rp.text == "" {
		rp.text = defaultText(code)
	}
	if strings.IndexByte(rp.text, '{') >= 0 {
		rp.text = strings.NewReplacer("{addr}", addr, "{ip}", ip).Replace(rp.text)
	}
	return rp
}

func defaultText(code int) string {
	switch code / 100 {
	case 2:
		return "OK"
	case 4:
		return "temporary failure, try again later"
	}
	return "permanent failure"
}

// err is the reply as the error go-smtp sends.
func (rp reply) err() *smtp.SMTPError {
	return &smtp.SMTPError{Code: rp.code, EnhancedCode: rp.enhanced, Message: rp.text}
}

// line is how the reply reads on the wire, for the record.
func (rp reply) line() string {
	e := rp.enhanced
	return fmt.Sprintf("%d %d.%d.%d %s", rp.code, e[0], e[1], e[2], rp.text)
}

func (r Rule) reply(addr, ip string) reply { return makeReply(r.Code, r.Enhanced, r.Text, addr, ip) }
