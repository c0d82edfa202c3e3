package policy

import (
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/emersion/go-message"

	"kiln/policy/dsn"
)

// Report is what a bounce report means: one Bounce per recipient it names.
type Report struct {
	// Kind is "dsn" (a delivery report, standard or not), "arf" (a
	// complaint), "autoreply" (RFC 3834: the caller ignores it) or
	// "unknown" (not a report: no bounces).
	Kind string `json:"kind"`
	// Format says how it was read: rfc3464, arf, jmrp, unsubscribe,
	// rfc3834, amazonses, text.
	Format       string   `json:"format"`
	ReportingMTA string   `json:"reporting_mta,omitempty"`
	Bounces      []Bounce `json:"bounces"`
	// Truncated says the report was longer than kiln reads
	// (dsn.MaxSize) and only its start was looked at.
	Truncated bool `json:"truncated,omitempty"`
	// Original is the header of the returned message, where kiln finds
	// its own Message-ID and VERP token. Empty when the report did not
	// return the message.
	Original message.Header `json:"-"`
}

// Bounce is the decision for one recipient of a report.
type Bounce struct {
	Recipient string `json:"recipient"`
	// Status is the RFC 3463 status: the report's, or the one the reason
	// implies when it gave none.
	Status   string `json:"status"`
	Reason   string `json:"reason"`
	Hard     bool   `json:"hard"`
	Action   Action `json:"action"`
	SoftFail bool   `json:"softfail"`
	Signal   Signal `json:"signal,omitempty"`
	Rule     string `json:"rule"`
	// Diagnostic is the remote's words (or the reporting MTA's), one line.
	Diagnostic string `json:"diagnostic,omitempty"`
	RemoteMTA  string `json:"remote_mta,omitempty"`
	Command    string `json:"command,omitempty"`    // the SMTP command the reply answered, when the report says
	ReplyCode  int    `json:"reply_code,omitempty"` // the SMTP reply code quoted, when there is one
	// DSNAction is the report's own word: failed, delayed, delivered,
	// relayed, expanded.
	DSNAction    string `json:"dsn_action,omitempty"`
	FeedbackType string `json:"feedback_type,omitempty"` // ARF Feedback-Type, for complaints
}

// Decision returns the bounce as the Decision the delivery engine uses.
func (b Bounce) Decision() Decision {
	return Decision{Reason: b.Reason, Hard: b.Hard, Action: b.Action, SoftFail: b.SoftFail,
		Signal: b.Signal, Rule: b.Rule, Status: b.Status}
}

// OriginalMessageID returns the Message-ID of the returned message, without
// angle brackets, or "" when the report did not return its header.
func (r *Report) OriginalMessageID() string {
	return strings.Trim(strings.TrimSpace(r.Original.Get("Message-Id")), "<>")
}

// Names of the decisions that come from the shape of a report rather than
// from a rule of rules.toml (DESIGN.md invariant 4: every decision names what
// made it).
const (
	RuleFeedback  = "feedback-report" // an ARF (RFC 5965), JMRP or SES complaint
	RuleAutoReply = "auto-reply"      // an RFC 3834 automatic reply
	RuleDelivered = "dsn-delivered"   // a DSN whose Action is delivered, relayed or expanded
)

// ParseBounce parses a bounce report with the embedded rules.
func ParseBounce(raw []byte) (*Report, error) {
	return DefaultClassifier().ParseBounce(raw)
}

// ReadBounce reads a report from r, at most dsn.MaxSize bytes of it, and
// parses it. Reading stops there whatever the size of the input.
func (c *Classifier) ReadBounce(r io.Reader) (*Report, error) {
	raw, err := io.ReadAll(io.LimitReader(r, dsn.MaxSize+1))
	if err != nil {
		return nil, err
	}
	return c.ParseBounce(raw)
}

// ParseBounce reads a bounce report (RFC 3464 DSN, RFC 5965 ARF, RFC 3834
// auto-reply, Amazon SES notification, or the text of an MTA's own format)
// and decides, for each recipient it names, what it means. Only unreadable
// input is an error; a message that is not a report gives Kind "unknown" and
// no bounces.
func (c *Classifier) ParseBounce(raw []byte) (*Report, error) {
	m, err := dsn.Parse(raw)
	if m == nil {
		return nil, err
	}
	rep := &Report{
		Kind:         string(m.Kind),
		Format:       m.Format,
		ReportingMTA: m.ReportingMTA,
		Truncated:    m.Truncated,
		Original:     m.Original,
		Bounces:      []Bounce{},
	}
	memo := &bounceMemo{words: map[string]wordsInfo{}, decisions: map[decisionKey]memoDecision{}}
	for _, rc := range m.Recipients {
		rep.Bounces = append(rep.Bounces, c.bounceFor(m, rc, memo))
	}
	return rep, nil
}

// bounceMemo keeps, within one report, what was read from text shared by
// many recipients (a report of a thousand recipients repeats one notice and
// often one diagnostic), so that each is read once.
type bounceMemo struct {
	words     map[string]wordsInfo
	decisions map[decisionKey]memoDecision
}

type wordsInfo struct {
	context, command, host string
	cut                    bool
}

type decisionKey struct {
	code                     int
	enhanced, command, host  string
	line                     string
	final, temporary, second bool
}

type memoDecision struct {
	d       Decision
	textual bool
}

// readWords returns the report's joined words about a recipient and the
// SMTP stage and remote host they name. The context is often shared by every
// recipient of a report and is read once; the diagnostic, written after it,
// names the stage when the context does not end the question (a transcript's
// failure reply does).
func (c *Classifier) readWords(memo *bounceMemo, context, diagnostic string) wordsInfo {
	w, ok := memo.words[context]
	if !ok {
		w.context = joinReplyLines(oneLine(context, 8000))
		// The words that name the stage and the host are near the
		// reply; a long report is read only in its first part.
		words := firstN(context, 8000)
		w.command, w.cut = c.commandCut(words)
		w.host = hostIn(words)
		memo.words[context] = w
	}
	if !w.cut {
		if cmd := c.commandIn(diagnostic); cmd != "" {
			w.command = cmd
		}
	}
	if w.host == "" {
		w.host = hostIn(diagnostic)
	}
	return w
}

func (c *Classifier) classifyMemo(memo *bounceMemo, r Reply, final, second bool) (Decision, bool) {
	k := decisionKey{r.Code, r.Enhanced, r.Command, r.Host, r.Line, final, r.Temporary, second}
	if m, ok := memo.decisions[k]; ok {
		return m.d, m.textual
	}
	d, textual := c.classify(r, final, true)
	memo.decisions[k] = memoDecision{d, textual}
	return d, textual
}

func (c *Classifier) bounceFor(m *dsn.Message, rc dsn.Recipient, memo *bounceMemo) Bounce {
	b := Bounce{
		Recipient:    strings.Trim(rc.Address, "<> "),
		DSNAction:    rc.Action,
		RemoteMTA:    rc.RemoteMTA,
		FeedbackType: rc.FeedbackType,
		Diagnostic:   rc.Diagnostic,
	}
	if b.Diagnostic == "" {
		b.Diagnostic = oneLine(rc.Context, 1000)
	}
	set := func(d Decision) {
		b.Status, b.Reason, b.Hard, b.Action = d.Status, d.Reason, d.Hard, d.Action
		b.SoftFail, b.Signal, b.Rule = d.SoftFail, d.Signal, d.Rule
	}
	switch {
	case m.Kind == dsn.KindARF:
		d := c.decide("feedback", RuleFeedback, Reply{}, false, false, true, false, nil)
		d.Status = ""
		if rc.FeedbackType == "unsubscribe" {
			// A request to stop, not a complaint about the sender.
			d.Signal = SignalNone
		}
		set(d)
		return b
	case m.Kind == dsn.KindAutoReply:
		d := c.decide("vacation", RuleAutoReply, Reply{}, false, false, true, false, nil)
		d.Status = ""
		set(d)
		return b
	}

	diag := joinReplyLines(rc.Diagnostic)
	w := c.readWords(memo, rc.Context, rc.Diagnostic)
	context := w.context
	if diag == "" {
		diag = context
	}
	failed := rc.Action != "delivered" && rc.Action != "relayed" && rc.Action != "expanded" && rc.Action != "deliverable"
	code, enhanced := replyCodes(diag, rc.Status)
	if failed && code > 0 && code < 400 {
		// A failure report quoting a 2xx or 3xx: a step that worked, or
		// a number that only looks like a code ("Size (in bytes): 222").
		code = 0
	}
	if code == 0 && context != "" {
		c2, e2 := replyCodes(context, "")
		if !failed || c2 >= 400 {
			code = c2
		}
		if enhanced == "" && (!failed || !strings.HasPrefix(e2, "2.")) {
			enhanced = e2
		}
	}
	if failed && strings.HasPrefix(enhanced, "2.") {
		enhanced = ""
	}
	r := Reply{
		Code:     code,
		Enhanced: enhanced,
		Line:     diag,
		Host:     rc.RemoteMTA,
		Command:  w.command,
	}
	if r.Host == "" {
		r.Host = w.host
		if b.RemoteMTA == "" && looksLikeHostName(r.Host) {
			b.RemoteMTA = r.Host
		}
	}
	b.Command, b.ReplyCode = r.Command, r.Code

	switch rc.Action {
	case "delivered", "relayed", "expanded", "deliverable":
		r.Code = 250
		if !strings.HasPrefix(r.Enhanced, "2.") {
			r.Enhanced = "2.0.0"
		}
		d := c.decide("delivered", RuleDelivered, r, true, false, true, false, nil)
		set(d)
		return b
	}
	final := rc.Action != "delayed"
	// With no code, the report's status class or action says whether the
	// failure was temporary.
	r.Temporary = rc.Action == "delayed" || strings.HasPrefix(enhanced, "4.")

	d, textual := c.classifyMemo(memo, r, final, false)
	if !textual {
		// The diagnostic alone said nothing a rule knows: read the
		// report's words about this recipient too.
		if context != "" && context != strings.TrimSpace(diag) {
			// The diagnostic matched no words rule, so the first rule
			// that matches both is the first that matches the context:
			// classify the context alone, which many recipients share.
			r2 := r
			r2.Line = context
			if d2, ok := c.classifyMemo(memo, r2, final, true); ok {
				d = d2
			}
		}
	}
	set(d)
	return b
}

// ParseQuotedReply reads a reply as a bounce report quotes it: like
// ParseReply, but the code and status may sit inside the text ("host
// mx.example.com said: 550 5.1.1 ...", "Remote Server returned '550 ...'"),
// and a multi-line reply quoted on one line is joined.
func ParseQuotedReply(command, text string) Reply {
	r := ParseReply(command, text)
	line := joinReplyLines(r.Line)
	if r.Code != 0 && r.Enhanced != "" {
		r.Line = line
		return r
	}
	code, enhanced := replyCodes(line, "")
	if r.Code == 0 {
		r.Code = code
	}
	if r.Enhanced == "" && (r.Code == 0 || enhanced == "" || enhanced[0] == byte('0'+r.Code/100)) {
		r.Enhanced = enhanced
	}
	r.Line = line
	return r
}

func firstN(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// oneLine collapses whitespace and caps the length.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max]
	}
	return s
}

// continuationRE matches the code (and status) that starts each line of a
// multi-line SMTP reply but the last ("550-5.7.1 "), with the "<<< " a
// transcript puts before it (RFC 5321 section 4.2.1).
var continuationRE = regexp.MustCompile(`(?:<<<\s*)?\b[245][0-9][0-9]-(?:[245]\.[0-9]{1,3}\.[0-9]{1,3}\s)?`)

// joinReplyLines turns a multi-line reply quoted on one line ("550-5.7.1 a
// b 550-5.7.1 c 550 5.7.1 d") into its words, so that rules can match a
// phrase split across reply lines. A reply whose code and status repeat
// inside the text (a folded Diagnostic-Code) loses the repeats.
func joinReplyLines(s string) string {
	if s == "" {
		return s
	}
	s = oneLine(s, 8000)
	if m := leadingReply.FindStringSubmatch(s); m != nil {
		rest := s[len(m[0]):]
		for _, rep := range []string{" " + m[1] + " " + m[2] + " ", " " + m[1] + "-" + m[2] + " "} {
			if m[2] != "" {
				rest = strings.ReplaceAll(rest, rep, " ")
			}
		}
		s = m[1] + " " + strings.TrimSpace(m[2]+" "+rest)
	}
	return oneLine(continuationRE.ReplaceAllString(s, " "), 8000)
}

var leadingReply = regexp.MustCompile(`^([245][0-9][0-9])[ -](?:([245]\.[0-9]{1,3}\.[0-9]{1,3}) )?`)

var (
	// replyCodeRE finds an SMTP reply code (RFC 5321 section 4.2: 2yz-5yz
	// with y in 0-5) standing on its own: after the start, a space, a
	// colon, a quote, "<<<" or "#", and before a space, a hyphen or the end.
	replyCodeRE = regexp.MustCompile(`(?:^|[\s:'"(<>#=\[])([2-5][0-5][0-9])(?:[\s\-'")\]]|:\s|$)`)
	// statusRE finds an RFC 3463 status not part of an IP address or a
	// version number.
	statusRE = regexp.MustCompile(`(?:^|[^0-9.])([245]\.[0-9]{1,3}\.[0-9]{1,3})(?:[^0-9.]|\.(?:[^0-9]|$)|$)`)
)

// replyCodes finds the reply code and the enhanced status for a diagnostic.
// The report's own Status field wins over a status in the words unless it
// is the uninformative X.0.0 that MTAs write when the remote sent none.
func replyCodes(diag, status string) (int, string) {
	// A failure report quotes failures: prefer a 4xx or 5xx over the 2xx
	// and 3xx of a transcript's earlier steps.
	code := 0
	for _, m := range replyCodeRE.FindAllStringSubmatch(diag, -1) {
		n, _ := strconv.Atoi(m[1])
		if code == 0 || (code < 400 && n >= 400) {
			code = n
		}
		if code >= 400 {
			break
		}
	}
	var inText string
	for _, m := range statusRE.FindAllStringSubmatch(diag, -1) {
		if !ValidStatus(m[1]) {
			continue
		}
		if inText == "" || (inText[0] == '2' && m[1][0] != '2') {
			inText = m[1]
		}
		if inText[0] != '2' {
			break
		}
	}
	switch {
	case ValidStatus(status) && !strings.HasSuffix(status, ".0.0"):
		return code, status
	case inText != "":
		return code, inText
	case ValidStatus(status):
		return code, status
	}
	return code, ""
}

var hostREs = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\bhost\s+([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\.?\s*\[`),
	regexp.MustCompile(`(?i)while talking to ([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\.?:`),
	regexp.MustCompile(`(?i)([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\.? \[[0-9a-f.:]+\] did not like`),
	regexp.MustCompile(`(?i)connect(?:ed)? to ([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\[`),
	regexp.MustCompile(`(?i)by the server for the recipient domain \S+ by ([a-z0-9][a-z0-9.-]*\.[a-z]{2,})\.?`),
	regexp.MustCompile(`(?i)remote (?:host|server|system|mta):?\s+(?:dns;\s*)?([a-z0-9][a-z0-9.-]*\.[a-z]{2,})`),
}

// hostIn finds the remote host a report names, for provider rules.
func hostIn(s string) string {
	for _, re := range hostREs {
		if m := re.FindStringSubmatch(s); m != nil {
			return strings.ToLower(m[1])
		}
	}
	return ""
}

func looksLikeHostName(h string) bool {
	return h != "" && strings.ContainsAny(h, "abcdefghijklmnopqrstuvwxyz")
}
