package fakemx

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"kiln/policy"
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

// Rule scripts one reply. Rules are data so that the same engine can be
// driven from a file (a rehearsal sink) as well as from Go tests. For each
// event the first rule of the event's stage whose Match fits, and whose Times
// is not used up, applies; with none, the server gives its normal reply.
type Rule struct {
	Stage Stage `json:"stage" toml:"stage"`
	// Match is a case-insensitive pattern on the address: "*" is any run of
	// characters, "?" any one character; "" matches everything.
	Match string `json:"match,omitempty" toml:"match"`
	// Code is the reply code; 0 keeps the normal reply (useful with Delay).
	Code int `json:"code,omitempty" toml:"code"`
	// Enhanced is the RFC 3463 status, such as "5.1.1"; "" derives "X.0.0"
	// from the code.
	Enhanced string `json:"enhanced,omitempty" toml:"enhanced"`
	// Text follows the codes; "{addr}" is replaced by the matched address.
	Text string `json:"text,omitempty" toml:"text"`
	// Delay is waited before the reply (or before the drop).
	Delay time.Duration `json:"delay,omitempty" toml:"delay"`
	// Drop closes the connection instead of replying. At StageData the
	// whole message is read first: the client has sent its final dot and
	// never learns whether the message arrived (RFC 5321 §6.1's duplicate
	// case).
	Drop bool `json:"drop,omitempty" toml:"drop"`
	// Times limits the rule to its first Times matches (then the next rule,
	// or the normal reply, applies); 0 means always. "Fail twice, then
	// accept" is a rule with Times 2.
	Times int `json:"times,omitempty" toml:"times"`
}

// Validate reports the first problem with r, naming the field.
func (r Rule) Validate() error {
	switch r.Stage {
	case StageConnect, StageMail, StageRcpt, StageData:
	default:
		return fmt.Errorf("stage %q: want connect, mail, rcpt or data", r.Stage)
	}
	if r.Code != 0 && (r.Code < 200 || r.Code > 599) {
		return fmt.Errorf("code %d: want 200 to 599", r.Code)
	}
	if r.Enhanced != "" {
		if !policy.ValidStatus(r.Enhanced) {
			return fmt.Errorf("enhanced %q: want an RFC 3463 status such as 5.1.1", r.Enhanced)
		}
		if r.Code != 0 && r.Enhanced[0]-'0' != byte(r.Code/100) {
			return fmt.Errorf("enhanced %q does not match code %d", r.Enhanced, r.Code)
		}
	}
	if r.Delay < 0 || r.Times < 0 {
		return fmt.Errorf("delay and times must not be negative")
	}
	if strings.ContainsAny(r.Text, "\r\n") {
		return fmt.Errorf("text must be one line")
	}
	return nil
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

// ConventionRules is a ready-made script keyed on the recipient's local part,
// so an end-to-end test can ask for an outcome by choosing an address:
//
//	hard*  550 5.1.1 user unknown          (RCPT)
//	soft*  450 4.2.1 try again later       (RCPT)
//	full*  452 4.2.2 mailbox full          (RCPT)
//	block* 550 5.7.1 sender IP blocklisted (RCPT)
//	rate*  451 4.7.28 rate limited         (RCPT)
//	slow*  accepted after 1s               (RCPT)
//	spam*  554 5.7.1 content rejected      (after DATA)
//	defer* 451 4.3.0 try again             (after DATA)
//	drop*  connection dropped after DATA, before the reply
//
// Every other recipient is accepted.
func ConventionRules() []Rule {
	return []Rule{
		{Stage: StageRcpt, Match: "hard*@*", Code: 550, Enhanced: "5.1.1", Text: "<{addr}>: user unknown"},
		{Stage: StageRcpt, Match: "soft*@*", Code: 450, Enhanced: "4.2.1", Text: "<{addr}>: mailbox temporarily unavailable, try again later"},
		{Stage: StageRcpt, Match: "full*@*", Code: 452, Enhanced: "4.2.2", Text: "<{addr}>: mailbox full"},
		{Stage: StageRcpt, Match: "block*@*", Code: 550, Enhanced: "5.7.1", Text: "service refused: sending IP listed at a blocklist"},
		{Stage: StageRcpt, Match: "rate*@*", Code: 451, Enhanced: "4.7.28", Text: "rate limited: too much mail from your IP, slow down"},
		{Stage: StageRcpt, Match: "slow*@*", Delay: time.Second},
		{Stage: StageData, Match: "spam*@*", Code: 554, Enhanced: "5.7.1", Text: "message content rejected as spam"},
		{Stage: StageData, Match: "defer*@*", Code: 451, Enhanced: "4.3.0", Text: "temporary local problem, try again"},
		{Stage: StageData, Match: "drop*@*", Drop: true},
	}
}

// match reports whether addr fits the pattern (case-insensitively).
func match(pattern, addr string) bool {
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

// smtpError turns a rule's reply into the error go-smtp sends.
func (r Rule) smtpError(addr string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: r.Code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: r.Text}
	if r.Enhanced != "" {
		parts := strings.Split(r.Enhanced, ".")
		for i := range 3 {
			e.EnhancedCode[i], _ = strconv.Atoi(parts[i])
		}
	}
	if e.Message == "" {
		e.Message = defaultText(r.Code)
	}
	e.Message = strings.ReplaceAll(e.Message, "{addr}", addr)
	return e
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

// replyLine is how the reply of a rule reads on the wire, for the record.
func (r Rule) replyLine(addr string) string {
	e := r.smtpError(addr)
	ec := e.EnhancedCode
	if ec == smtp.EnhancedCodeNotSet {
		ec = smtp.EnhancedCode{r.Code / 100, 0, 0}
	}
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, ec[0], ec[1], ec[2], e.Message)
}
