package dsn

import (
	"github.com/emersion/go-message"
	"net/mail"
	"regexp"
	"sort"
	"strings"
)

// The human-readable side of reports. MTAs that send no message/delivery-status
// part (qmail, Exim's plain reports, Exchange 2003, Gmail, many appliances)
// still follow one shape: a line naming the failed address, then the words
// about it, then a line announcing the returned message. The functions here
// find those pieces without knowing which MTA wrote them.

// originalMarker matches the line that announces the returned message in
// text reports ("------ This is a copy of the message, including all the
// headers. ------", "--- Below this line is a copy of the message.",
// "----- Original message -----", "Message headers follow.").
var originalMarker = regexp.MustCompile(`(?im)^[ \t]*[-=*_#>]*[ \t]*(?:(?:this is a copy of (?:the|your) message|below this line is a copy of the message|(?:a )?copy of (?:the|your) (?:original |returned )?message (?:follows|is attached|below)|message headers follow|below is a copy of the original message|the header of the original message is following|original message (?:follows|headers?)|undelivered message (?:follows|headers)|unsent message (?:below|follows))[^\n]*|(?:original message|the original message headers?|returned message|(?:the )?headers? of the original message|original mail|content of the original message|-+ ?original message ?-+)[ \t]*[-=*_#]*[ \t]*[.:]?[ \t]*)$`)

// headerStart matches a line that starts a header block of a returned
// message quoted without a marker.
var headerStart = regexp.MustCompile(`(?i)^(?:return-path|received|dkim-signature|x-[a-z0-9-]+|message-id|arc-seal|authentication-results|delivered-to|mime-version|content-type|from|to|subject|date|sender|reply-to|references|in-reply-to|user-agent):[ \t]`)

// splitOriginal cuts a report's text where the returned message starts and
// returns the notice and the returned message (from its first header line).
func splitOriginal(s string) (notice, orig string) {
	if loc := originalMarker.FindStringIndex(s); loc != nil {
		return s[:loc[0]], strings.TrimLeft(s[loc[1]:], "\n")
	}
	// No marker: a block of at least three header lines after some text is
	// the returned message's header.
	lines := strings.SplitAfter(s, "\n")
	off := 0
	for i := 0; i < len(lines); i++ {
		if i > 0 && headerRun(lines[i:]) >= 3 && strings.TrimSpace(lines[i-1]) == "" {
			return s[:off], s[off:]
		}
		off += len(lines[i])
	}
	return s, ""
}

// headerRun counts the header lines (with their folded continuations) at the
// start of lines.
func headerRun(lines []string) int {
	n := 0
	for i, l := range lines {
		l = strings.TrimRight(l, "\n")
		switch {
		case headerStart.MatchString(l):
			n++
		case i > 0 && n > 0 && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")):
		default:
			return n
		}
	}
	return n
}

// looksLikeHeaders reports whether a text part is a returned message's
// header sent as plain text.
func looksLikeHeaders(s string) bool {
	s = strings.TrimLeft(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	lines := strings.SplitN(s, "\n", 12)
	return headerRun(lines) >= 3 && strings.HasPrefix(strings.ToLower(lines[0]), "re") ||
		headerRun(lines) >= 5
}

func looksLikeJSON(s string) bool {
	t := strings.TrimSpace(s)
	return strings.HasPrefix(t, "{") && (strings.Contains(t, `"notificationType"`) || strings.Contains(t, `"eventType"`) || strings.Contains(t, `"Type"`))
}

var (
	htmlDrop  = regexp.MustCompile(`(?is)<(style|script|head)\b.*?</(style|script|head)>`)
	htmlBreak = regexp.MustCompile(`(?i)<(br|/p|/div|/tr|/h[1-6]|/li|/td)\b[^>]*>`)
	htmlTag   = regexp.MustCompile(`(?s)<[^>]*>`)
)

// htmlText turns an HTML part into its words, for reports that have no plain
// text alternative.
func htmlText(s string) string {
	s = htmlDrop.ReplaceAllString(s, " ")
	s = htmlBreak.ReplaceAllString(s, "\n")
	s = htmlTag.ReplaceAllString(s, " ")
	r := strings.NewReplacer("&nbsp;", " ", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#39;", "'", "&amp;", "&")
	s = r.Replace(s)
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// addrRE finds addresses in free text: dot-atom or quoted local parts
// (RFC 5322 section 3.4.1), a domain with at least one dot.
// Letters and digits beyond ASCII are allowed for internationalized
// addresses (RFC 6531, RFC 6532).
var addrRE = regexp.MustCompile(`(?i)(?:"[^"\s@]{1,64}"|[\pL\pN!#$%&'*+/=?^_{|}~-]+(?:\.+[\pL\pN!#$%&'*+/=?^_{|}~-]+)*)@(?:[\pL\pN](?:[\pL\pN-]{0,61}[\pL\pN])?\.)+[\pL\pN](?:[\pL\pN-]{0,61}[\pL\pN])?`)

func findAddresses(s string) []string {
	var out []string
	for _, a := range addrRE.FindAllString(s, -1) {
		a = strings.Trim(a, "'")
		if !containsFold(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// quotedHeader matches a line quoting a header field of the returned message
// inside the notice ("  To: someone", "From: me"): addresses on it are not
// the failed recipients.
var quotedHeader = regexp.MustCompile(`(?i)^[ \t>]*(?:from|to|cc|bcc|reply-to|sender|return-path|subject|date|message-id|in-reply-to|references|envelope-from|original-mail-from|mail from|x-[a-z0-9-]+)[ \t]*:`)

// recipientBlocks finds, for each address, the text about it: from the first
// line that names it to the next address's line, or to the first blank line
// once the block has said something (MTAs separate recipients with blank
// lines, and the returned message or a repeated notice may follow).
func recipientBlocks(text string, addrs []string) map[string]string {
	out := map[string]string{}
	if text == "" {
		return out
	}
	lines := strings.Split(text, "\n")
	lower := make([]string, len(lines))
	for i, l := range lines {
		lower[i] = strings.ToLower(l)
	}
	type anchor struct {
		line int
		addr string
	}
	var anchors []anchor
	for _, a := range addrs {
		if a == "" {
			continue
		}
		la := strings.ToLower(a)
		found := -1
		for i := range lines {
			if strings.Contains(lower[i], la) && !quotedHeader.MatchString(lines[i]) {
				found = i
				break
			}
		}
		if found >= 0 {
			anchors = append(anchors, anchor{found, a})
		}
	}
	sort.SliceStable(anchors, func(i, j int) bool { return anchors[i].line < anchors[j].line })
	for k, an := range anchors {
		end := len(lines)
		for j := k + 1; j < len(anchors); j++ {
			if anchors[j].line > an.line {
				end = anchors[j].line
				break
			}
		}
		said := hasWords(strings.ReplaceAll(lower[an.line], strings.ToLower(an.addr), ""))
		for i := an.line + 1; i < end; i++ {
			if strings.TrimSpace(lines[i]) == "" {
				if said {
					end = i
					break
				}
				continue
			}
			said = said || hasWords(lines[i])
		}
		out[an.addr] = strings.TrimSpace(strings.Join(lines[an.line:end], "\n"))
	}
	return out
}

// hasWords reports whether a line says something beyond punctuation and an
// address's brackets.
func hasWords(s string) bool {
	n := 0
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127 {
			n++
			if n >= 3 {
				return true
			}
		}
	}
	return false
}

// sharedText is the report's text without the blocks about recipients:
// what it says about everyone (a transcript, a general reason).
func sharedText(text string, blocks map[string]string) string {
	for _, b := range blocks {
		if b != "" {
			text = strings.Replace(text, b, "", 1)
		}
	}
	return text
}

// failureWords say a text is a delivery failure report.
var failureWords = regexp.MustCompile(`(?i)undeliver|could not be delivered|couldn.t be delivered|not be delivered|wasn.t delivered|was not delivered|delivery (has )?failed|delivery failure|failed permanently|permanent (fatal )?error|returned mail|returning message|mail delivery failed|delivery status notification|non-?delivery|unable to deliver|failed to deliver|could not deliver|couldn.t deliver|cannot be delivered|can.t be delivered|not able to be delivered|rejected|error (occurred|occured)|delivery problem|had delivery errors|delivery errors|mail system error|failure notice|there was an error|we had trouble delivering|message not delivered|address not found|giving up|retry timeout|temporary failure|has not yet been delivered|delayed|will (continue|retry)|unable to relay|user unknown|does not exist|no such user|mailbox (is )?full|over quota|failed|not delivered`)

var bounceSender = regexp.MustCompile(`(?i)mailer-daemon|postmaster|mail delivery|maildelivery|mail\.delivery|mdaemon|bounce|mail administrator|mmsc ndr|ndr administrator|mail system|no-?reply`)

// bounceLike says whether the report looks like a failure report at all, so
// that an ordinary message sent to a bounce address is not read as one.
func (p *parser) bounceLike() bool {
	h := p.msg.Header
	if h.Get("X-Failed-Recipients") != "" || h.Get("X-Mailer-Daemon-Recipients") != "" {
		return true
	}
	if bounceSender.MatchString(h.Get("From")) || bounceSender.MatchString(h.Get("Return-Path")) {
		return true
	}
	subj, _ := h.Text("Subject")
	if failureWords.MatchString(subj) {
		return true
	}
	return failureWords.MatchString(p.msg.Text)
}

// delayWords say a text report is a warning: delivery goes on.
var delayWords = regexp.MustCompile(`(?i)this is a warning message only|has not yet been delivered|will (continue to )?(try|retry)|delivery (attempts )?will continue|delayed|delay reason|still trying`)

// finalWords say the delivery was given up, whatever else the text says.
var finalWords = regexp.MustCompile(`(?i)permanent|giving up|given up|failed permanently|not going to try again`)

// fromText reads a report with no machine-readable part: the failed
// recipients named in X-Failed-Recipients or in the text, and the words
// about each.
func (p *parser) fromText() {
	m := p.msg
	if !p.bounceLike() {
		return
	}
	text := m.Text
	exclude := p.senderSide()
	var addrs []string
	for _, name := range []string{"X-Failed-Recipients", "X-Mailer-Daemon-Recipients"} {
		for _, a := range headerAddresses(&m.Header, name) {
			if !containsFold(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		addrs = p.textCandidates()
	}
	if len(addrs) == 0 {
		// The notice names nobody: the returned message's recipients.
		for _, name := range []string{"To", "Cc"} {
			for _, a := range headerAddresses(&m.Original, name) {
				if !containsFold(exclude, a) && !containsFold(addrs, a) {
					addrs = append(addrs, a)
				}
			}
		}
	}
	if len(addrs) == 0 {
		return
	}
	m.Kind, m.Format = KindDSN, "text"
	action := "failed"
	if delayWords.MatchString(text) && !finalWords.MatchString(text) {
		action = "delayed"
	}
	if len(addrs) > maxRcpts {
		addrs = addrs[:maxRcpts]
	}
	blocks := recipientBlocks(text, addrs)
	shared := sharedText(text, blocks)
	tr := readTranscript(text)
	for _, a := range addrs {
		diag := blocks[a]
		if reply := tr.replyFor(a); reply != "" && !strings.Contains(diag, reply) {
			// The remote's own words from the session transcript
			// come before the reporting MTA's summary.
			diag = reply + "\n" + diag
		}
		m.Recipients = append(m.Recipients, Recipient{
			Address:    a,
			Action:     action,
			Diagnostic: diag,
			Context:    shared,
		})
	}
}

var (
	transcriptSent = regexp.MustCompile(`^\s*>>>`)
	transcriptFail = regexp.MustCompile(`^\s*<<<\s*([45][0-9][0-9])([ -])`)
)

// transcript is a session transcript read once: the failure replies, each
// with the command line that drew it (sendmail's ">>> RCPT To:<a>" / "<<<
// 550 ...").
type transcript []struct{ sent, reply string }

func readTranscript(text string) transcript {
	if !strings.Contains(text, "<<<") {
		return nil
	}
	var t transcript
	sent, code := "", ""
	var reply []string
	flush := func() {
		if len(reply) > 0 {
			t = append(t, struct{ sent, reply string }{sent, strings.Join(reply, " ")})
		}
		reply, code = nil, ""
	}
	for _, l := range strings.Split(text, "\n") {
		if transcriptSent.MatchString(l) {
			flush()
			sent = strings.ToLower(l)
			continue
		}
		m := transcriptFail.FindStringSubmatch(l)
		if m == nil || (code != "" && m[1] != code) {
			flush()
			if m == nil {
				continue
			}
		}
		code = m[1]
		reply = append(reply, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "<<<")))
		if m[2] == " " {
			flush()
		}
	}
	flush()
	return t
}

// replyFor returns the failure reply after the command that names addr, or
// the first failure reply when no command names it.
func (t transcript) replyFor(addr string) string {
	la := strings.ToLower(addr)
	for _, x := range t {
		if strings.Contains(x.sent, la) {
			return x.reply
		}
	}
	if len(t) > 0 {
		return t[0].reply
	}
	return ""
}

// textCandidates lists the addresses the notice names that are not the
// sender's, in order of appearance.
func (p *parser) textCandidates() []string {
	exclude := p.senderSide()
	var addrs []string
	for _, line := range strings.Split(p.msg.Text, "\n") {
		if quotedHeader.MatchString(line) {
			continue
		}
		for _, a := range findAddresses(line) {
			if !containsFold(exclude, a) && !containsFold(addrs, a) && len(addrs) < maxRcpts {
				addrs = append(addrs, a)
			}
		}
	}
	return addrs
}

// senderSide lists the addresses that are the sender's, not the failed
// recipients': the report is addressed to the sender, and the returned
// message is from them.
func (p *parser) senderSide() []string {
	var out []string
	for i, h := range []*message.Header{&p.msg.Header, &p.msg.Original} {
		for _, name := range []string{"From", "Sender", "Reply-To", "Return-Path", "To", "Cc"} {
			if i == 1 && (name == "To" || name == "Cc") {
				continue
			}
			out = append(out, headerAddresses(h, name)...)
		}
	}
	return out
}

// autoReplySubject matches the subjects mail clients give automatic replies.
var autoReplySubject = regexp.MustCompile(`(?i)^\s*(auto(matic)?[ -]?(reply|response|antwort|respuesta)|auto:|autoreply|out of (the )?office|abwesenheit|vacation|r[ée]ponse automatique|respuesta autom[áa]tica|自動応答|自動返信|away from)`)

// isAutoReply recognises an automatic reply (RFC 3834) that is not a failure
// report, and names its sender as the recipient it is about.
func (p *parser) isAutoReply() bool {
	h := p.msg.Header
	if h.Get("X-Failed-Recipients") != "" || bounceSender.MatchString(h.Get("From")) {
		return false
	}
	subj, _ := h.Text("Subject")
	auto := strings.ToLower(h.Get("Auto-Submitted"))
	marked := strings.HasPrefix(auto, "auto-replied") ||
		h.Get("X-Autoreply") != "" || h.Get("X-Autorespond") != "" ||
		strings.EqualFold(h.Get("X-Apple-Action"), "vacation") ||
		strings.EqualFold(strings.TrimSpace(h.Get("Precedence")), "auto_reply") ||
		autoReplySubject.MatchString(subj)
	if !marked {
		return false
	}
	if failureWords.MatchString(subj) {
		return false
	}
	from := headerAddresses(&h, "From")
	if len(from) == 0 {
		return false
	}
	p.msg.Kind, p.msg.Format = KindAutoReply, "rfc3834"
	p.msg.Recipients = []Recipient{{
		Address:    from[0],
		Action:     "delivered",
		Diagnostic: firstLine(p.msg.Text),
		Context:    p.msg.Text,
	}}
	return true
}

var unsubscribeWords = regexp.MustCompile(`(?i)sent this (e-?mail|message) to unsubscribe`)

// isComplaintCopy recognises complaints that are not ARF: Microsoft's JMRP
// sends the complained-about message with its original recipient in a header,
// and mail clients answer a List-Unsubscribe mailto (RFC 2369) with a short
// message from the unsubscribing address.
func (p *parser) isComplaintCopy() bool {
	m := p.msg
	if rcpt := m.Original.Get("X-HmXmrOriginalRecipient"); rcpt != "" {
		m.Kind, m.Format = KindARF, "jmrp"
		m.Feedback = &Feedback{Type: "abuse"}
		addr := rcpt
		if a, err := mail.ParseAddress(rcpt); err == nil {
			addr = a.Address
		}
		m.Recipients = []Recipient{{Address: addr, Action: "delivered", FeedbackType: "abuse", Diagnostic: firstLine(m.Text)}}
		return true
	}
	if unsubscribeWords.MatchString(m.Text) {
		from := headerAddresses(&m.Header, "From")
		if len(from) == 0 {
			return false
		}
		m.Kind, m.Format = KindARF, "unsubscribe"
		m.Feedback = &Feedback{Type: "unsubscribe"}
		m.Recipients = []Recipient{{Address: from[0], Action: "delivered", FeedbackType: "unsubscribe", Diagnostic: firstLine(m.Text)}}
		return true
	}
	return false
}
