package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
	"golang.org/x/net/idna"
)

// Limits on what a message carries besides its content. Tags and metadata
// travel with every event and webhook of the message, so they stay small.
const (
	maxTags        = 20
	maxTagLen      = 128
	maxMetadata    = 50
	maxMetaKeyLen  = 128
	maxMetaValLen  = 1024
	maxHeaders     = 50
	maxHeaderName  = 76
	maxHeaderValue = 4000
	maxPriority    = 9
)

// sendRequest is POST /api/v1/messages, decoded and checked.
type sendRequest struct {
	account    string
	hasAccount bool
	from       *mail.Address
	nullSender bool
	to, cc     []*mail.Address
	bcc        []*mail.Address
	replyTo    *mail.Address
	subject    string
	text, html string
	hasText    bool
	hasHTML    bool
	headerKeys []string
	headers    map[string]string
	tags       []string
	metadata   map[string]string
	priority   int
	raw        string
	hasRaw     bool
}

// structuredOnly are the members that build a message, which a raw message
// carries in itself.
var structuredOnly = []string{"cc", "bcc", "reply_to", "subject", "text", "html", "headers"}

func decodeSend(m map[string]json.RawMessage) (*sendRequest, *apiError) {
	f := newFields(m)
	req := &sendRequest{}
	req.account = f.string("account")
	req.hasAccount = f.has("account")
	req.raw = f.string("raw")
	req.hasRaw = f.has("raw")
	from := f.string("from")
	fromGiven := f.has("from")
	to := f.strings("to")
	cc := f.strings("cc")
	bcc := f.strings("bcc")
	replyTo := f.string("reply_to")
	req.subject = f.string("subject")
	req.text = f.string("text")
	req.hasText = f.has("text")
	req.html = f.string("html")
	req.hasHTML = f.has("html")
	req.headerKeys, req.headers = f.stringMap("headers")
	req.tags = f.strings("tags")
	_, req.metadata = f.stringMap("metadata")
	req.priority = f.int("priority")
	f.unknown()
	if f.err != nil {
		return nil, f.err
	}
	fail := func(e apiError) (*sendRequest, *apiError) { return nil, &e }

	if req.hasRaw {
		for _, name := range structuredOnly {
			if f.has(name) {
				return fail(apiError{Code: "invalid_value", Field: name,
					Message: name + " cannot be used with raw: a raw message carries its own header and body"})
			}
		}
	}
	// Header injection first: a line break in anything that becomes a
	// header field is refused, whatever else is wrong.
	if e := noBreak("from", from); e != nil {
		return fail(*e)
	}
	for _, l := range []struct {
		name  string
		items []string
	}{{"to", to}, {"cc", cc}, {"bcc", bcc}} {
		for i, s := range l.items {
			if e := noBreak(fmt.Sprintf("%s[%d]", l.name, i), s); e != nil {
				return fail(*e)
			}
		}
	}
	if e := noBreak("reply_to", replyTo); e != nil {
		return fail(*e)
	}
	if e := noBreak("subject", req.subject); e != nil {
		return fail(*e)
	}
	for _, k := range req.headerKeys {
		if e := noBreak("headers", k); e != nil {
			e.Message = "a header name contains a line break (CR or LF)"
			return fail(*e)
		}
		if e := noBreak("headers."+k, req.headers[k]); e != nil {
			return fail(*e)
		}
	}

	var err error
	switch {
	case !fromGiven:
		return fail(apiError{Code: "missing_field", Field: "from", Message: "from is required"})
	case req.hasRaw && (from == "<>" || from == ""):
		req.nullSender = true // the null reverse-path; operators only (Submit decides)
	default:
		if req.from, err = parseAddress(from); err != nil {
			return fail(badField("from", err.Error()))
		}
	}
	if len(to) == 0 {
		return fail(apiError{Code: "missing_field", Field: "to", Message: "to needs at least one recipient"})
	}
	if req.to, err = parseAddresses("to", to); err != nil {
		return fail(*err.(*apiError))
	}
	if req.cc, err = parseAddresses("cc", cc); err != nil {
		return fail(*err.(*apiError))
	}
	if req.bcc, err = parseAddresses("bcc", bcc); err != nil {
		return fail(*err.(*apiError))
	}
	if replyTo != "" {
		if req.replyTo, err = parseAddress(replyTo); err != nil {
			return fail(badField("reply_to", err.Error()))
		}
	}
	if req.hasRaw {
		if req.raw == "" {
			return fail(badField("raw", "is empty"))
		}
		if strings.IndexByte(req.raw, 0) >= 0 {
			return fail(badField("raw", "contains a NUL character"))
		}
		if bareCR(req.raw) {
			return fail(badField("raw", "contains a CR not followed by LF (lines end in CRLF or LF)"))
		}
	} else {
		if !req.hasText && !req.hasHTML {
			return fail(apiError{Code: "missing_field", Field: "text", Message: "give the message's text, html, or both (or a raw message)"})
		}
		if e := textField("subject", req.subject); e != nil {
			return fail(*e)
		}
		for _, name := range []string{"text", "html"} {
			v := req.text
			if name == "html" {
				v = req.html
			}
			if strings.IndexByte(v, 0) >= 0 {
				return fail(badField(name, "contains a NUL character"))
			}
		}
		if len(req.headerKeys) > maxHeaders {
			return fail(badField("headers", fmt.Sprintf("at most %d fields", maxHeaders)))
		}
		for _, k := range req.headerKeys {
			if e := checkHeader(k, req.headers[k]); e != nil {
				return fail(*e)
			}
		}
	}
	if len(req.tags) > maxTags {
		return fail(badField("tags", fmt.Sprintf("at most %d tags", maxTags)))
	}
	for i, t := range req.tags {
		if t == "" || len(t) > maxTagLen || hasControl(t) {
			return fail(badField(fmt.Sprintf("tags[%d]", i), fmt.Sprintf("a tag has 1 to %d characters and no control characters", maxTagLen)))
		}
	}
	if len(req.metadata) > maxMetadata {
		return fail(badField("metadata", fmt.Sprintf("at most %d keys", maxMetadata)))
	}
	for k, v := range req.metadata {
		if k == "" || len(k) > maxMetaKeyLen || hasControl(k) {
			return fail(badField("metadata", fmt.Sprintf("a key has 1 to %d characters and no control characters", maxMetaKeyLen)))
		}
		if len(v) > maxMetaValLen {
			return fail(badField("metadata."+k, fmt.Sprintf("at most %d bytes", maxMetaValLen)))
		}
	}
	if req.priority < 0 || req.priority > maxPriority {
		return fail(badField("priority", fmt.Sprintf("must be between 0 and %d", maxPriority)))
	}
	return req, nil
}

// noBreak refuses a line break in what becomes a header field: the one way
// to inject a field (or a body) through a structured request.
func noBreak(field, v string) *apiError {
	if strings.ContainsAny(v, "\r\n") {
		return &apiError{Code: "header_injection", Field: field,
			Message: field + " contains a line break (CR or LF), which would start a new header field"}
	}
	return nil
}

// textField refuses control characters other than tab in a header value.
func textField(field, v string) *apiError {
	if hasControl(strings.ReplaceAll(v, "\t", " ")) {
		e := badField(field, "contains a control character")
		return &e
	}
	if !utf8.ValidString(v) {
		e := badField(field, "is not valid UTF-8")
		return &e
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

func bareCR(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' && (i+1 == len(s) || s[i+1] != '\n') {
			return true
		}
	}
	return false
}

// parseAddress reads "addr", "<addr>" or "Name <addr>".
func parseAddress(s string) (*mail.Address, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("is empty")
	}
	if strings.ContainsAny(s, "\x00") || hasControl(s) {
		return nil, errors.New("contains a control character")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("not an email address (%q): use addr@example.com or \"Name <addr@example.com>\"", clip(s, 80))
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at <= 0 || at == len(a.Address)-1 {
		return nil, fmt.Errorf("not an email address (%q)", clip(s, 80))
	}
	if hasControl(a.Name) {
		return nil, errors.New("the name contains a control character")
	}
	// An internationalised domain goes out in its ASCII form (RFC 5890), which
	// every server takes; a non-ASCII local part would need SMTPUTF8 and
	// 8-bit header fields all the way, which a built message does not use.
	local, domain := a.Address[:at], a.Address[at+1:]
	if !isASCII(local) {
		return nil, errors.New("a non-ASCII local part is not supported here (send the message raw)")
	}
	if !isASCII(domain) {
		ascii, err := idna.Lookup.ToASCII(strings.ToLower(domain))
		if err != nil || ascii == "" {
			return nil, fmt.Errorf("the domain %q is not a valid internationalised domain name", clip(domain, 80))
		}
		a.Address = local + "@" + ascii
	}
	return a, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func parseAddresses(name string, list []string) ([]*mail.Address, error) {
	out := make([]*mail.Address, 0, len(list))
	for i, s := range list {
		a, err := parseAddress(s)
		if err != nil {
			e := badField(fmt.Sprintf("%s[%d]", name, i), err.Error())
			return nil, &e
		}
		out = append(out, a)
	}
	return out, nil
}

// reservedHeaders are set through their own fields or by kiln.
var reservedHeaders = map[string]string{
	"from": "from", "sender": "", "to": "to", "cc": "cc", "bcc": "bcc", "reply-to": "reply_to",
	"subject": "subject", "mime-version": "", "dkim-signature": "", "received": "",
	"return-path": "", "content-type": "text and html", "content-transfer-encoding": "",
}

// checkHeader checks one extra header field of a structured message.
func checkHeader(name, value string) *apiError {
	field := "headers." + name
	if name == "" || len(name) > maxHeaderName || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ':' }) {
		e := badField("headers", fmt.Sprintf("%q is not a header field name (printable ASCII, no spaces or ':', at most %d characters)", clip(name, 80), maxHeaderName))
		return &e
	}
	lower := strings.ToLower(name)
	if use, ok := reservedHeaders[lower]; ok || strings.HasPrefix(lower, "content-") || strings.HasPrefix(lower, "arc-") {
		msg := "is set by kiln"
		if use != "" {
			msg = "is set through " + use
		}
		e := badField(field, msg)
		return &e
	}
	if e := textField(field, value); e != nil {
		return e
	}
	if len(value) > maxHeaderValue {
		e := badField(field, fmt.Sprintf("at most %d bytes", maxHeaderValue))
		return &e
	}
	for _, word := range strings.Fields(value) {
		if len(word) > 900 {
			e := badField(field, "has a word longer than 900 characters, which cannot be folded")
			return &e
		}
	}
	switch lower {
	case "message-id":
		if !msgIDShape(value) {
			e := badField(field, "must look like <unique@domain>")
			return &e
		}
	case "date":
		if _, err := mail.ParseDate(value); err != nil {
			e := badField(field, "is not an RFC 5322 date")
			return &e
		}
	}
	return nil
}

func msgIDShape(v string) bool {
	v = strings.TrimSpace(v)
	return len(v) > 4 && v[0] == '<' && v[len(v)-1] == '>' && strings.Count(v, "@") == 1 &&
		!strings.ContainsAny(v[1:len(v)-1], "<> \t")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// send is POST /api/v1/messages.
func (a *API) send(w http.ResponseWriter, r *http.Request, p Principal) {
	members, ok := readObject(w, r, a.d.MaxBodyBytes)
	if !ok {
		return
	}
	req, e := decodeSend(members)
	if e != nil {
		writeError(w, http.StatusBadRequest, *e)
		return
	}
	account := p.Account
	if req.hasAccount {
		switch {
		case p.Admin:
			account = req.account
		case req.account != p.Account:
			writeError(w, http.StatusForbidden, apiError{Code: "forbidden", Field: "account",
				Message: "an account key sends only for its own account"})
			return
		}
	}

	var data []byte
	var msgID string
	contentField := "raw"
	if req.hasRaw {
		data, msgID = a.completeRaw([]byte(req.raw), req)
	} else {
		contentField = ""
		var err error
		data, msgID, err = a.build(req)
		if err != nil {
			a.log.Error("api: building a message failed", "err", err)
			writeError(w, http.StatusInternalServerError, apiError{Code: "internal", Message: "building the message failed"})
			return
		}
	}
	if int64(len(data)) > a.d.MaxMessageBytes {
		writeError(w, http.StatusRequestEntityTooLarge, apiError{Code: "too_large", Field: contentField, Limit: a.d.MaxMessageBytes,
			Message: fmt.Sprintf("the message is %d bytes; the limit is %d bytes", len(data), a.d.MaxMessageBytes)})
		return
	}

	rcpts, fieldOf := envelope(req)
	s := Submission{Account: account, To: rcpts, Data: data, Tags: req.tags, Metadata: req.metadata,
		Priority: req.priority, Client: clientAddr(r)}
	if req.from != nil {
		s.From = req.from.Address
	}
	id, err := a.d.Submit(r.Context(), s)
	if err != nil {
		a.refused(w, err, fieldOf, contentField)
		return
	}
	a.log.Debug("api: message accepted", "id", id, "account", account)
	writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "message_id": msgID})
}

// envelope returns the envelope recipients (to, cc and bcc, each address
// once) and, for each, the request field it came from.
func envelope(req *sendRequest) ([]string, []string) {
	var rcpts, fieldOf []string
	seen := map[string]bool{}
	for _, l := range []struct {
		name string
		list []*mail.Address
	}{{"to", req.to}, {"cc", req.cc}, {"bcc", req.bcc}} {
		for i, a := range l.list {
			k := strings.ToLower(a.Address)
			if seen[k] {
				continue
			}
			seen[k] = true
			rcpts = append(rcpts, a.Address)
			fieldOf = append(fieldOf, fmt.Sprintf("%s[%d]", l.name, i))
		}
	}
	return rcpts, fieldOf
}

// refused answers a refusal of Submit. A permanent SMTP refusal is 422 (413
// for size), a temporary one 503 with Retry-After; the body carries the SMTP
// code and enhanced code submission over SMTP would have answered.
func (a *API) refused(w http.ResponseWriter, err error, fieldOf []string, contentField string) {
	if errors.Is(err, ErrUnknownAccount) {
		writeError(w, http.StatusBadRequest, apiError{Code: "unknown_account", Field: "account", Message: "no such account"})
		return
	}
	var se *SubmitError
	if !errors.As(err, &se) {
		a.log.Error("api: submission failed", "err", err)
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "the message was not accepted; try again later"})
		return
	}
	e := apiError{Message: se.Message, SMTPCode: se.Code, Enhanced: se.Enhanced, Field: se.Field}
	if rest, ok := strings.CutPrefix(se.Field, "to["); ok {
		if i, err := strconv.Atoi(strings.TrimSuffix(rest, "]")); err == nil && i >= 0 && i < len(fieldOf) {
			e.Field = fieldOf[i]
		}
	}
	switch {
	case se.Enhanced == "4.5.3" || se.Enhanced == "5.5.3":
		e.Code = "too_many_recipients"
		writeError(w, http.StatusBadRequest, e)
	case se.Code/100 == 4:
		e.Code = "unavailable"
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, e)
	case se.Code == 552 || se.Enhanced == "5.3.4":
		e.Code = "too_large"
		if e.Field == "" {
			e.Field = contentField
		}
		writeError(w, http.StatusRequestEntityTooLarge, e)
	default:
		e.Code = "rejected"
		if e.Field == "" {
			e.Field = contentField
		}
		writeError(w, http.StatusUnprocessableEntity, e)
	}
}

// completeRaw adds a Message-ID to a raw message that has none, so the
// answer can name it (kiln would add one anyway), and returns the message
// and its Message-ID ("" when the header cannot be read: submission judges).
func (a *API) completeRaw(raw []byte, req *sendRequest) ([]byte, string) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return raw, ""
	}
	if id := strings.TrimSpace(h.Get("Message-Id")); id != "" {
		return raw, id
	}
	dom := "localhost"
	if req.from != nil {
		dom = domainOf(req.from.Address)
	}
	id := newMessageID(dom)
	out := make([]byte, 0, len(raw)+len(id)+16)
	out = append(append(append(out, "Message-ID: "...), id...), "\r\n"...)
	return append(out, raw...), id
}
