package dsn

import (
	"github.com/emersion/go-message"
	"net/mail"
	"strings"
)

// field is one "Name: value" line of a DSN or ARF body, unfolded.
type field struct{ name, value string }

// splitFieldBlocks reads an RFC 3464 section 2.1 body: groups of header-style
// fields separated by blank lines. It is lenient on purpose: real MTAs omit
// the blank line between groups, indent fields, or mix in stray text, and a
// report that is slightly wrong still says what happened. Lines that are not
// fields are ignored; continuation lines are unfolded (RFC 5322 section 2.2.3).
func splitFieldBlocks(body []byte) [][]field {
	var blocks [][]field
	var cur []field
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, cur)
			cur = nil
		}
	}
	for _, line := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(cur) > 0 && !looksLikeField(strings.TrimSpace(line)) {
			cur[len(cur)-1].value += " " + strings.TrimSpace(line)
			continue
		}
		line = strings.TrimSpace(line)
		i := strings.IndexByte(line, ':')
		if i <= 0 || !isFieldName(line[:i]) {
			continue
		}
		cur = append(cur, field{name: strings.ToLower(line[:i]), value: strings.TrimSpace(line[i+1:])})
	}
	flush()
	return blocks
}

func looksLikeField(s string) bool {
	i := strings.IndexByte(s, ':')
	return i > 0 && isFieldName(s[:i]) && strings.Contains(s[:i], "-")
}

func isFieldName(s string) bool {
	if len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

type dsnFields struct {
	reportingMTA string
	recipients   []dsnRecipient
}

type dsnRecipient struct {
	final, original, actual string
	action, status          string
	diagnostic, diagType    string
	remoteMTA               string
}

func (r dsnRecipient) address() string {
	for _, a := range []string{r.final, r.original, r.actual} {
		if validAddress(a) {
			return a
		}
	}
	for _, a := range []string{r.final, r.original, r.actual} {
		if a != "" {
			return a
		}
	}
	return ""
}

// parseDSNFields reads a message/delivery-status body (RFC 3464 section 2):
// the per-message fields, then one group per recipient.
func parseDSNFields(body []byte) *dsnFields {
	d := &dsnFields{}
	for _, block := range splitFieldBlocks(body) {
		var r *dsnRecipient
		var early []field // recipient fields written before the recipient (Exim puts Action first)
		apply := func(f field) {
			switch f.name {
			case "action":
				r.action = strings.ToLower(firstWord(f.value))
			case "status":
				r.status = statusValue(f.value)
			case "remote-mta":
				r.remoteMTA = typedValue(f.value)
			case "diagnostic-code":
				r.diagType, r.diagnostic = splitTyped(f.value)
			}
		}
		for _, f := range block {
			switch f.name {
			case "final-recipient", "original-recipient", "x-actual-recipient":
				// A recipient field of a kind the current recipient
				// already has starts the next recipient: some MTAs
				// leave out the blank line between groups.
				if r != nil && ((f.name == "final-recipient" && r.final != "") ||
					(f.name == "original-recipient" && r.original != "") ||
					(f.name == "x-actual-recipient" && r.actual != "")) {
					d.recipients = append(d.recipients, *r)
					r = nil
				}
				if r == nil {
					r = &dsnRecipient{}
					for _, e := range early {
						apply(e)
					}
					early = nil
				}
				addr := addressValue(f.value)
				switch f.name {
				case "final-recipient":
					r.final = addr
				case "original-recipient":
					r.original = addr
				default:
					r.actual = addr
				}
			case "reporting-mta":
				d.reportingMTA = typedValue(f.value)
			}
			if r == nil {
				early = append(early, f)
				continue
			}
			apply(f)
		}
		if r != nil {
			d.recipients = append(d.recipients, *r)
		}
	}
	return d
}

func (d *dsnFields) merge(o *dsnFields) {
	if d.reportingMTA == "" {
		d.reportingMTA = o.reportingMTA
	}
	d.recipients = append(d.recipients, o.recipients...)
}

// splitTyped splits "smtp; 550 ..." into its type and value. A value without
// a recognisable type ("The account does not exist.") is all value.
func splitTyped(v string) (typ, rest string) {
	i := strings.IndexByte(v, ';')
	if i > 0 && i <= 20 && isFieldName(strings.TrimSpace(v[:i])) {
		return strings.ToLower(strings.TrimSpace(v[:i])), strings.TrimSpace(v[i+1:])
	}
	return "", strings.TrimSpace(v)
}

func typedValue(v string) string {
	_, rest := splitTyped(v)
	return firstWord(rest)
}

// validAddress reports whether a has a local part and a domain.
func validAddress(a string) bool {
	i := strings.LastIndexByte(a, '@')
	return i > 0 && i < len(a)-1
}

// addressValue reads "rfc822; <a@b>" (RFC 3464 section 2.3.2) into "a@b",
// keeping a quoted local part as written ("a..b"@example.com).
func addressValue(v string) string {
	_, rest := splitTyped(v)
	rest = strings.TrimSpace(rest)
	if i, j := strings.LastIndexByte(rest, '<'), strings.LastIndexByte(rest, '>'); i >= 0 && j > i {
		rest = rest[i+1 : j]
	}
	if strings.HasPrefix(rest, `"`) && validAddress(rest) {
		return rest
	}
	if a, err := mail.ParseAddress(rest); err == nil {
		return a.Address
	}
	if !strings.Contains(firstWord(rest), "@") {
		// "|/usr/bin/prog user@example.com": the address inside.
		if as := findAddresses(rest); len(as) > 0 {
			return as[0]
		}
	}
	rest = strings.Trim(rest, "<>\"' ")
	if i := strings.IndexAny(rest, " \t"); i > 0 {
		rest = rest[:i]
	}
	return strings.Trim(rest, "<>")
}

// statusValue reads a Status field: "5.1.1", "5.1.1 (user unknown)".
func statusValue(v string) string {
	w := firstWord(v)
	w = strings.Trim(w, "()<>.,;")
	if validStatus(w) {
		return w
	}
	return ""
}

func firstWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t("); i > 0 {
		return s[:i]
	}
	return s
}

// validStatus reports whether s is an RFC 3463 status "c.s.d".
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

// parseFeedback reads a message/feedback-report body (RFC 5965 section 3.1).
func parseFeedback(body []byte) *Feedback {
	fb := &Feedback{}
	for _, block := range splitFieldBlocks(body) {
		for _, f := range block {
			switch f.name {
			case "feedback-type":
				fb.Type = strings.ToLower(firstWord(f.value))
			case "user-agent":
				fb.UserAgent = f.value
			case "version":
				fb.Version = f.value
			case "original-mail-from":
				fb.OriginalMailFrom = addressValue(f.value)
			case "original-rcpt-to", "removal-recipient":
				if a := addressValue(f.value); a != "" {
					fb.OriginalRcptTo = append(fb.OriginalRcptTo, a)
				}
			case "arrival-date", "received-date":
				fb.ArrivalDate = f.value
			case "source-ip":
				fb.SourceIP = f.value
			case "reported-domain":
				fb.ReportedDomain = f.value
			case "reporting-mta":
				fb.ReportingMTA = typedValue(f.value)
			case "authentication-results":
				fb.AuthResults = f.value
			}
		}
	}
	return fb
}

// finishDSN turns the message/delivery-status fields into recipients, with
// the report's text about each one as its context.
func (p *parser) finishDSN() {
	m := p.msg
	m.Kind, m.Format = KindDSN, "rfc3464"
	m.ReportingMTA = p.dsn.reportingMTA
	if len(p.dsn.recipients) > maxRcpts {
		p.dsn.recipients = p.dsn.recipients[:maxRcpts]
		m.Truncated = true
	}
	addrs := make([]string, 0, len(p.dsn.recipients))
	for _, r := range p.dsn.recipients {
		addrs = append(addrs, r.address())
	}
	failed := headerAddresses(&m.Header, "X-Failed-Recipients")
	blocks := recipientBlocks(m.Text, addrs)
	shared := sharedText(m.Text, blocks)
	for i, r := range p.dsn.recipients {
		addr := addrs[i]
		if !validAddress(addr) {
			// "rfc822; kijitora" or "rfc822; @host": complete it from
			// X-Failed-Recipients, or take the one address the notice
			// names when there is a single recipient.
			local := strings.SplitN(addr, "@", 2)[0]
			for _, f := range failed {
				if local == "" || strings.EqualFold(strings.SplitN(f, "@", 2)[0], local) {
					addr = f
					break
				}
			}
			if !validAddress(addr) && len(p.dsn.recipients) == 1 {
				if cands := p.textCandidates(); len(cands) == 1 {
					addr = cands[0]
				}
			}
		}
		rc := Recipient{
			Address:         addr,
			OriginalAddress: r.original,
			Action:          r.action,
			Status:          r.status,
			Diagnostic:      r.diagnostic,
			DiagnosticType:  r.diagType,
			RemoteMTA:       r.remoteMTA,
			Context:         blocks[addrs[i]],
		}
		if rc.Action == "" {
			rc.Action = "failed"
		}
		if rc.Context == "" {
			rc.Context = shared
		} else {
			rc.Context += "\n" + shared
		}
		m.Recipients = append(m.Recipients, rc)
	}
}

// finishARF turns a feedback report into one recipient per reported address.
func (p *parser) finishARF() {
	m := p.msg
	fb := p.arf
	m.Kind, m.Format, m.Feedback = KindARF, "arf", fb
	if fb.ReportingMTA != "" {
		m.ReportingMTA = fb.ReportingMTA
	}
	if fb.Type == "" {
		fb.Type = "abuse"
	}
	rcpts := fb.OriginalRcptTo
	if len(rcpts) == 0 {
		rcpts = headerAddresses(&m.Original, "To")
	}
	diag := firstLine(m.Text)
	if len(rcpts) == 0 {
		rcpts = []string{""}
	}
	for _, a := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{
			Address:      a,
			Action:       "delivered",
			Diagnostic:   diag,
			FeedbackType: fb.Type,
			Context:      m.Text,
		})
	}
}

// headerAddresses returns the addresses of an address-list header field,
// tolerating lists that net/mail rejects.
func headerAddresses(h *message.Header, name string) []string {
	v := h.Get(name)
	if v == "" {
		return nil
	}
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	return findAddresses(v)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	// The first paragraph, which is what a feedback report's text says.
	if i := strings.Index(s, "\n\n"); i >= 0 {
		s = s[:i]
	}
	return clean(s)
}
