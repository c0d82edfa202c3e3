// Package dsn reads bounce reports and says what they contain, without judging
// it: the recipients, their DSN fields (RFC 3464), the complaint fields of an
// ARF report (RFC 5965), whether the message is an automatic reply (RFC 3834),
// and the headers of the returned message. Reports that follow no standard
// (Exim, qmail, Exchange, Gmail, Amazon SES and many more) are read from their
// human-readable text: each failed recipient with the words about it.
//
// Deciding what those words mean is the classifier's job (package policy).
//
// MIME is parsed with github.com/emersion/go-message. Input is bounded: at
// most MaxSize bytes are looked at, at most MaxPartSize bytes of any one part,
// and MIME nesting stops at maxDepth, so a huge or hostile report costs little.
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// Limits on what Parse reads. A bounce report's useful part is a few
// kilobytes at its start; what follows is the returned message.
const (
	MaxSize     = 4 << 20   // bytes of the whole report looked at
	MaxPartSize = 512 << 10 // bytes read from any one MIME part
	maxDepth    = 8         // MIME nesting
	maxParts    = 128       // MIME parts visited
	maxRcpts    = 1000      // recipients reported
	maxText     = 64 << 10  // bytes of human-readable text kept
)

// Kind says what sort of report a message is.
type Kind string

const (
	KindDSN       Kind = "dsn"       // a delivery status notification (standard or not)
	KindARF       Kind = "arf"       // a complaint from a feedback loop
	KindAutoReply Kind = "autoreply" // an automatic reply such as a vacation notice
	KindUnknown   Kind = "unknown"   // nothing kiln recognises as a report
)

// Message is what one report says.
type Message struct {
	Kind Kind
	// Format names how it was read: "rfc3464" (a message/delivery-status
	// part), "arf", "rfc3834", "amazonses" (Amazon SES notifications),
	// "text" (an MTA's human-readable report).
	Format string
	// ReportingMTA is the MTA that wrote the report, when it says.
	ReportingMTA string
	Recipients   []Recipient
	// Feedback holds the fields of an ARF report (Kind ARF).
	Feedback *Feedback
	// Header is the report's own header.
	Header message.Header
	// Original is the header of the returned message, when the report
	// carries it (message/rfc822, text/rfc822-headers, or headers quoted
	// after an MTA's "copy of the message follows" line). Its zero value is
	// an empty header.
	Original message.Header
	// Text is the human-readable part of the report, without the returned
	// message, at most 64 KiB.
	Text string
	// Truncated says the report was longer than MaxSize or a part longer
	// than MaxPartSize, and was read only in part.
	Truncated bool
}

// Recipient is what a report says about one recipient.
type Recipient struct {
	Address         string // Final-Recipient, or the failed address in the text
	OriginalAddress string // Original-Recipient, when given
	// Action is the DSN action: failed, delayed, delivered, relayed or
	// expanded. Reports that are not RFC 3464 say "failed" unless their
	// words say otherwise.
	Action string
	Status string // RFC 3463 status from the report's fields, "" when none
	// Diagnostic is the remote's words (Diagnostic-Code without its type),
	// or the MTA's words about this recipient in a non-standard report.
	Diagnostic     string
	DiagnosticType string // "smtp", "x-unix", ... when the report says
	RemoteMTA      string // the host that answered, when the report says
	// Context is the report's human-readable text about this recipient
	// (it names the SMTP stage in many formats: "in reply to RCPT TO").
	Context string
	// FeedbackType is the ARF Feedback-Type (abuse, fraud, ...), for
	// complaints.
	FeedbackType string
}

// Feedback is the machine-readable part of an ARF report (RFC 5965 section 3.1).
type Feedback struct {
	Type             string // Feedback-Type: abuse, fraud, virus, other, not-spam, auth-failure
	UserAgent        string
	Version          string
	OriginalMailFrom string
	OriginalRcptTo   []string
	ArrivalDate      string
	SourceIP         string
	ReportedDomain   string
	ReportingMTA     string
	AuthResults      string
}

// SplitMbox splits an mbox file (messages each starting with a "From "
// line, RFC 4155) into its messages. Input that does not start with "From "
// is one message.
func SplitMbox(raw []byte) [][]byte {
	if !bytes.HasPrefix(raw, []byte("From ")) {
		return [][]byte{raw}
	}
	var out [][]byte
	for len(raw) > 0 {
		i := bytes.Index(raw[1:], []byte("\nFrom "))
		if i < 0 {
			out = append(out, raw)
			break
		}
		out = append(out, raw[:i+2])
		raw = raw[i+2:]
	}
	return out
}

// ErrEmpty is returned for an empty input.
var ErrEmpty = errors.New("dsn: empty message")

// Parse reads one report. It returns an error only when the input cannot be
// read as a message at all; a message that is not a report comes back with
// Kind unknown and no recipients. Broken MIME is read as far as it goes.
func Parse(raw []byte) (*Message, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, ErrEmpty
	}
	p := &parser{msg: &Message{Kind: KindUnknown}}
	if len(raw) > MaxSize {
		raw = raw[:MaxSize]
		p.msg.Truncated = true
	}
	raw = skipMboxLine(raw)
	raw = repairParams(raw)

	ent, err := message.Read(bytes.NewReader(raw))
	if ent == nil {
		// Not even a header: read the whole input as the report's text.
		if err == nil {
			err = errors.New("unreadable")
		}
		p.addText(string(raw), false)
		p.finish()
		if len(p.msg.Recipients) == 0 {
			return p.msg, errors.New("dsn: not a message: " + err.Error())
		}
		return p.msg, nil
	}
	p.msg.Header = ent.Header
	if e := guessMultipart(ent, raw); e != nil {
		ent = e
	}
	p.walk(ent, 0, false)
	if len(p.texts) == 0 && len(p.htmls) == 0 && p.dsn == nil && p.arf == nil && len(p.jsons) == 0 {
		// The MIME structure gave nothing readable (a multipart header
		// over a plain body, a part header go-message cannot parse):
		// read the body's words directly.
		p.addText(rawBodyText(raw), false)
	}
	p.finish()
	return p.msg, nil
}

// paramLine finds a Content-Type parameter that lost its folding
// whitespace: "Content-Type: multipart/alternative;" then "boundary=..." at
// the start of the next line, which no header parser accepts.
var paramLine = regexp.MustCompile(`(?m)(;[ \t]*\r?\n)((?i:boundary|charset|type|report-type|name|filename|format|differences)=)`)

func repairParams(raw []byte) []byte {
	if !paramLine.Match(raw) {
		return raw
	}
	return paramLine.ReplaceAll(raw, []byte("$1\t$2"))
}

var (
	boundaryLine = regexp.MustCompile(`^--[^\s]{6,}$`)
	mimeField    = regexp.MustCompile(`(?i)^content-(type|transfer-encoding|disposition|description|id|language):`)
)

// rawBodyText returns the words of a message body whose MIME structure could
// not be walked: boundaries and part headers dropped, quoted-printable
// decoded.
func rawBodyText(raw []byte) string {
	i := bytes.Index(raw, []byte("\n\n"))
	if j := bytes.Index(raw, []byte("\r\n\r\n")); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return ""
	}
	body := strings.ReplaceAll(string(raw[i:]), "\r\n", "\n")
	qp := strings.Contains(strings.ToLower(body), "quoted-printable")
	var out []string
	inFields := false
	for _, l := range strings.Split(body, "\n") {
		switch {
		case boundaryLine.MatchString(strings.TrimSpace(l)):
			inFields = true
			continue
		case inFields && (mimeField.MatchString(l) || (l != "" && (l[0] == ' ' || l[0] == '\t'))):
			continue
		case inFields && l == "":
			inFields = false
			continue
		}
		inFields = false
		out = append(out, l)
	}
	text := strings.Join(out, "\n")
	if qp {
		text = decodeQP(text)
	}
	return text
}

// decodeQP decodes quoted-printable leniently: soft line breaks and =XX
// escapes; anything malformed stays as it is.
func decodeQP(s string) string {
	s = strings.ReplaceAll(s, "=\n", "")
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// bareBoundary finds the first line that looks like a MIME boundary.
var bareBoundary = regexp.MustCompile(`(?m)^--([0-9A-Za-z'()+_,./:=?-]{6,70})\r?$`)

// guessMultipart handles reports whose header lost its MIME fields while the
// body is still multipart (some sendmail setups drop Content-Type when a
// report is resent): when the header has no Content-Type and the body has a
// boundary line that repeats, the body is read as multipart/mixed.
func guessMultipart(ent *message.Entity, raw []byte) *message.Entity {
	if ent.Header.Get("Content-Type") != "" {
		return nil
	}
	i := bytes.Index(raw, []byte("\n\n"))
	if j := bytes.Index(raw, []byte("\r\n\r\n")); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return nil
	}
	body := raw[i:]
	m := bareBoundary.FindSubmatch(body)
	if m == nil || bytes.Count(body, append([]byte("\n--"), m[1]...)) < 2 {
		return nil
	}
	// The boundary must open the body (after at most a preamble line), not
	// belong to a returned message further down.
	if n := bytes.Count(bytes.TrimSpace(body[:bytes.Index(body, m[0])]), []byte("\n")); n > 2 {
		return nil
	}
	h := ent.Header.Copy()
	h.Set("Content-Type", `multipart/mixed; boundary="`+string(m[1])+`"`)
	e, err := message.New(h, bytes.NewReader(body))
	if err != nil && e == nil {
		return nil
	}
	return e
}

// skipMboxLine drops a leading "From sender date" line of an mbox file.
func skipMboxLine(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("From ")) {
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			return raw[i+1:]
		}
	}
	return raw
}

type parser struct {
	msg    *Message
	parts  int
	dsn    *dsnFields
	arf    *Feedback
	texts  []string // human-readable parts, in order
	htmls  []string // text/html parts, used when there is no plain text
	jsons  []string // bodies that look like JSON notifications
	origs  []message.Header
	origTo []string
}

// walk visits one entity. inOriginal is true below a returned message, whose
// own parts must not be read as the report (a bounce of a bounce).
func (p *parser) walk(e *message.Entity, depth int, inOriginal bool) {
	p.parts++
	if p.parts > maxParts || depth > maxDepth {
		return
	}
	mt, params, _ := e.Header.ContentType()
	if mt == "" {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := e.MultipartReader()
		if mr == nil {
			return
		}
		for {
			part, err := mr.NextPart()
			if part != nil && (message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)) {
				// A charset or transfer encoding go-message does not
				// know: the body comes raw, which is still readable.
				err = nil
			}
			if err != nil {
				// io.EOF ends the parts; anything else is broken MIME:
				// keep what was read.
				if !errors.Is(err, io.EOF) {
					p.msg.Truncated = p.msg.Truncated || isTruncation(err)
				}
				return
			}
			p.walk(part, depth+1, inOriginal)
		}
	case inOriginal:
		return
	case mt == "message/delivery-status" || mt == "message/global-delivery-status" ||
		mt == "text/delivery-status" || mt == "message/x-delivery-status":
		body := p.read(e.Body)
		if p.dsn == nil {
			p.dsn = parseDSNFields(body)
		} else {
			p.dsn.merge(parseDSNFields(body))
		}
	case mt == "message/feedback-report":
		p.arf = parseFeedback(p.read(e.Body))
	case mt == "message/rfc822" || mt == "message/global" || mt == "message/partial":
		p.readOriginal(e.Body)
	case mt == "text/rfc822-headers" || mt == "message/rfc822-headers" ||
		mt == "text/rfc822-header" || mt == "message/global-headers" || mt == "text/x-rfc822-headers":
		p.readOriginal(e.Body)
	case strings.HasPrefix(mt, "text/"):
		body := p.read(e.Body)
		text := decodeCharset(body, params["charset"])
		switch {
		case mt == "text/html":
			p.htmls = append(p.htmls, htmlText(text))
		case looksLikeHeaders(text):
			// A returned message sent as plain text without a
			// message/rfc822 type.
			p.readOriginal(strings.NewReader(text))
		case looksLikeJSON(text):
			p.jsons = append(p.jsons, text)
		default:
			p.addText(text, true)
		}
	case mt == "application/json":
		p.jsons = append(p.jsons, string(p.read(e.Body)))
	}
}

// read reads a part body up to MaxPartSize.
func (p *parser) read(r io.Reader) []byte {
	b, err := io.ReadAll(io.LimitReader(r, MaxPartSize+1))
	if len(b) > MaxPartSize {
		b = b[:MaxPartSize]
		p.msg.Truncated = true
	}
	if err != nil && isTruncation(err) {
		p.msg.Truncated = true
	}
	return b
}

func isTruncation(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// readOriginal reads the header of a returned message; its body is skipped.
func (p *parser) readOriginal(r io.Reader) {
	br := bufio.NewReader(io.LimitReader(r, MaxPartSize))
	h, err := textproto.ReadHeader(br)
	if err != nil && h.Len() == 0 {
		return
	}
	p.origs = append(p.origs, message.Header{Header: h})
}

// addText keeps human-readable text; mime says it came from a MIME text part
// (as opposed to a whole non-MIME body).
func (p *parser) addText(s string, mime bool) {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	notice, orig := splitOriginal(s)
	if orig != "" {
		p.readOriginal(strings.NewReader(orig))
	}
	p.texts = append(p.texts, notice)
}

// decodeCharset turns a text part into UTF-8 as far as kiln can without a
// charset library: UTF-8 and ASCII pass, Latin-1 is converted, anything else
// (ISO-2022-JP, Shift_JIS, KOI8-R) is kept as raw bytes: their ASCII parts,
// where the SMTP words are, read fine.
func decodeCharset(b []byte, charset string) string {
	cs := strings.ToLower(strings.Trim(charset, `"' `))
	switch cs {
	case "iso-8859-1", "latin1", "latin-1", "iso8859-1", "windows-1252", "cp1252", "us-ascii", "ascii", "":
		if utf8.Valid(b) {
			return string(b)
		}
		var sb strings.Builder
		sb.Grow(len(b) + len(b)/8)
		for _, c := range b {
			sb.WriteRune(rune(c))
		}
		return sb.String()
	}
	return string(b)
}

// finish combines what the walk found into the Message.
func (p *parser) finish() {
	m := p.msg
	if len(p.texts) == 0 && len(p.htmls) > 0 {
		p.texts = p.htmls
	}
	text := strings.Join(p.texts, "\n")
	if len(text) > maxText {
		text = text[:maxText]
	}
	m.Text = strings.ToValidUTF8(text, "\uFFFD")
	for _, h := range p.origs {
		if m.Original.Len() == 0 || (m.Original.Get("Message-Id") == "" && h.Get("Message-Id") != "") {
			m.Original = h
		}
	}

	if p.arf == nil && (p.dsn == nil || len(p.dsn.recipients) == 0) {
		// Some MTAs paste the delivery-status fields into the text
		// ("Technical report: Reporting-MTA: ... Final-Recipient: ...").
		if d := parseDSNFields([]byte(m.Text)); len(d.recipients) > 0 {
			p.dsn = d
		}
	}
	switch {
	case p.arf != nil:
		p.finishARF()
	case p.dsn != nil && len(p.dsn.recipients) > 0:
		p.finishDSN()
	}
	if len(m.Recipients) == 0 {
		if rec, ok := p.fromJSON(); ok {
			m.Kind, m.Format, m.Recipients = rec.kind, "amazonses", rec.rcpts
			if rec.feedbackType != "" {
				m.Feedback = &Feedback{Type: rec.feedbackType}
			}
		}
	}
	if len(m.Recipients) == 0 && p.isComplaintCopy() {
		return
	}
	if len(m.Recipients) == 0 && p.isAutoReply() {
		return
	}
	if len(m.Recipients) == 0 {
		p.fromText()
	}
	if p.dsn != nil && m.ReportingMTA == "" {
		m.ReportingMTA = p.dsn.reportingMTA
	}
	for i := range m.Recipients {
		r := &m.Recipients[i]
		r.Diagnostic = clean(r.Diagnostic)
		r.Context = strings.ToValidUTF8(r.Context, "\uFFFD")
	}
	if len(m.Recipients) > maxRcpts {
		m.Recipients = m.Recipients[:maxRcpts]
		m.Truncated = true
	}
}

// clean makes a diagnostic one tidy line.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 2000 {
		s = s[:2000]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
