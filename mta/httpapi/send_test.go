package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

func parseMessage(t *testing.T, data []byte) *message.Entity {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("the message has a bare LF:\n%s", data)
	}
	e, err := message.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("go-message cannot read the message: %v\n%s", err, data)
	}
	return e
}

func TestSendStructured(t *testing.T) {
	w := newWorld(t)
	r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{
		"from":     "Shöp Team <news@shop.example>",
		"to":       []string{"Ann <ann@example.net>", "bob@example.org"},
		"cc":       []string{"carol@example.net", "ANN@example.net"},
		"bcc":      []string{"audit@shop.example"},
		"reply_to": "help@shop.example",
		"subject":  "Spring sale: 20 % off — ça commence",
		"text":     "Hello Ann,\nour spring sale starts today.\n",
		"html":     "<p>Hello Ann,</p><p>our spring sale starts <b>today</b>.</p>",
		"headers":  map[string]string{"X-Campaign": "spring-42", "List-Unsubscribe": "<mailto:unsub@shop.example>", "X-Note": "für Sie"},
		"tags":     []string{"spring", "sale"},
		"metadata": map[string]string{"campaign": "42", "user": "7"},
		"priority": 5,
	})
	expectStatus(t, r, 202)
	got := r.json(t)
	s := w.submit.last(t)
	if got["id"] == "" || got["message_id"] == "" {
		t.Fatalf("answer: %s", r.body)
	}
	if s.Account != "shop" || s.From != "news@shop.example" || s.Priority != 5 ||
		!slices.Equal(s.Tags, []string{"spring", "sale"}) || s.Metadata["campaign"] != "42" ||
		s.Client != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("submission: %+v", s)
	}
	// Envelope: to, cc and bcc, each address once.
	if want := []string{"ann@example.net", "bob@example.org", "carol@example.net", "audit@shop.example"}; !slices.Equal(s.To, want) {
		t.Errorf("envelope recipients %q, want %q", s.To, want)
	}

	e := parseMessage(t, s.Data)
	h := mail.Header{Header: e.Header}
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Shöp Team" || from[0].Address != "news@shop.example" {
		t.Errorf("From: %v %v (%q)", from, err, h.Get("From"))
	}
	if raw := h.Get("From"); !strings.Contains(raw, "=?utf-8?") {
		t.Errorf("From name is not RFC 2047 encoded: %q", raw)
	}
	to, _ := h.AddressList("To")
	if len(to) != 2 || to[0].Name != "Ann" || to[1].Address != "bob@example.org" {
		t.Errorf("To: %v", to)
	}
	if cc, _ := h.AddressList("Cc"); len(cc) != 2 {
		t.Errorf("Cc: %v", cc)
	}
	if h.Has("Bcc") || bytes.Contains(s.Data, []byte("audit@")) {
		t.Errorf("bcc is in the message")
	}
	if rt, _ := h.AddressList("Reply-To"); len(rt) != 1 || rt[0].Address != "help@shop.example" {
		t.Errorf("Reply-To: %v", rt)
	}
	subj, err := h.Subject()
	if err != nil || subj != "Spring sale: 20 % off — ça commence" {
		t.Errorf("Subject %q %v", subj, err)
	}
	for _, line := range strings.Split(string(s.Data[:bytes.Index(s.Data, []byte("\r\n\r\n"))]), "\r\n") {
		for _, c := range []byte(line) {
			if c >= 0x80 {
				t.Fatalf("8-bit byte in header line %q", line)
			}
		}
		if len(line) > 998 {
			t.Errorf("header line longer than 998: %q", line)
		}
	}
	if id, _ := h.MessageID(); "<"+id+">" != got["message_id"] || !strings.HasSuffix(id, "@shop.example") {
		t.Errorf("Message-ID %q, answer %v", id, got["message_id"])
	}
	if d, err := h.Date(); err != nil || !d.Equal(t0) {
		t.Errorf("Date %v %v", d, err)
	}
	if h.Get("X-Campaign") != "spring-42" || h.Get("List-Unsubscribe") != "<mailto:unsub@shop.example>" {
		t.Errorf("extra headers: %q %q", h.Get("X-Campaign"), h.Get("List-Unsubscribe"))
	}
	if note, _ := h.Text("X-Note"); note != "für Sie" || !strings.HasPrefix(h.Get("X-Note"), "=?utf-8?") {
		t.Errorf("X-Note %q (%q)", note, h.Get("X-Note"))
	}
	if h.Get("Mime-Version") != "1.0" {
		t.Errorf("MIME-Version %q", h.Get("Mime-Version"))
	}
	mt, _, _ := e.Header.ContentType()
	if mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q", mt)
	}
	mr := e.MultipartReader()
	var types, bodies []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pt, params, _ := p.Header.ContentType()
		if params["charset"] != "utf-8" {
			t.Errorf("%s charset %q", pt, params["charset"])
		}
		if p.Header.Get("Content-Transfer-Encoding") != "7bit" {
			t.Errorf("%s: transfer encoding %q for short ASCII lines", pt, p.Header.Get("Content-Transfer-Encoding"))
		}
		b, _ := io.ReadAll(p.Body)
		types, bodies = append(types, pt), append(bodies, string(b))
	}
	if !slices.Equal(types, []string{"text/plain", "text/html"}) {
		t.Fatalf("parts %q", types)
	}
	if bodies[0] != "Hello Ann,\r\nour spring sale starts today.\r\n" || !strings.Contains(bodies[1], "<b>today</b>") {
		t.Errorf("bodies %q", bodies)
	}
}

// Each body gets the transfer encoding that suits it, and reads back as sent.
func TestSendEncodings(t *testing.T) {
	long := strings.Repeat("word ", 40) + "\n"
	cases := []struct {
		name, text, cte string
	}{
		{"ascii", "Plain short lines.\r\nSecond line.\n", "7bit"},
		{"long ascii lines", long + long, "quoted-printable"},
		{"latin", "Grüße aus Köln, à bientôt.\nZweite Zeile.\n", "quoted-printable"},
		{"mostly non-latin", "你好，世界。这是一封测试邮件，内容几乎全是中文。\n第二行。\n", "base64"},
		{"cyrillic", "Привет, мир! Это тестовое письмо.\n", "base64"},
		{"trailing dot and from", "line\n.\nFrom here\n", "7bit"},
		{"bare CR", "a\rb\r\nc", "7bit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{
				"from": "news@shop.example", "to": []string{"ann@example.net"}, "subject": "x", "text": c.text})
			expectStatus(t, r, 202)
			e := parseMessage(t, w.submit.last(t).Data)
			if mt, _, _ := e.Header.ContentType(); mt != "text/plain" {
				t.Errorf("Content-Type %q", mt)
			}
			if got := e.Header.Get("Content-Transfer-Encoding"); got != c.cte {
				t.Errorf("Content-Transfer-Encoding %q, want %q", got, c.cte)
			}
			b, err := io.ReadAll(e.Body) // go-message decodes the transfer encoding
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(c.text, "\r\n", "\n"), "\r", "\n"), "\n", "\r\n")
			if string(b) != want {
				t.Errorf("body reads back as %q, want %q", b, want)
			}
			if c.cte != "7bit" {
				for _, line := range strings.Split(string(w.submit.last(t).Data), "\r\n") {
					if len(line) > 78 {
						t.Errorf("encoded line of %d characters", len(line))
					}
				}
			}
		})
	}
}

func TestSendHTMLOnlyAndOverrides(t *testing.T) {
	w := newWorld(t)
	r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{
		"from": "news@shop.example", "to": []string{"ann@example.net"}, "html": "<p>hi</p>",
		"headers": map[string]string{"Message-ID": "<42.spring@shop.example>", "Date": "Mon, 03 Mar 2025 10:00:00 +0000"},
	})
	expectStatus(t, r, 202)
	if r.json(t)["message_id"] != "<42.spring@shop.example>" {
		t.Errorf("answer %s", r.body)
	}
	data := w.submit.last(t).Data
	e := parseMessage(t, data)
	if mt, _, _ := e.Header.ContentType(); mt != "text/html" {
		t.Errorf("Content-Type %q", mt)
	}
	if n := bytes.Count(bytes.ToLower(data), []byte("\r\nmessage-id:")) + bytes.Count(bytes.ToLower(data[:11]), []byte("message-id:")); n != 1 {
		t.Errorf("%d Message-ID fields:\n%s", n, data)
	}
	if h := (mail.Header{Header: e.Header}); h.Get("Date") != "Mon, 03 Mar 2025 10:00:00 +0000" || h.Has("Subject") {
		t.Errorf("header:\n%s", data)
	}
}

func TestSendRaw(t *testing.T) {
	w := newWorld(t)
	raw := "From: Shop <news@shop.example>\nTo: ann@example.net\nSubject: raw\n\nbody\n"
	r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "raw": raw,
		"tags": []string{"t"}})
	expectStatus(t, r, 202)
	s := w.submit.last(t)
	id, _ := r.json(t)["message_id"].(string)
	if !strings.HasPrefix(string(s.Data), "Message-ID: "+id+"\r\n"+raw) || !strings.HasSuffix(id, "@shop.example>") {
		t.Errorf("raw message without Message-ID: answer %q, data %q", id, s.Data)
	}
	if s.From != "news@shop.example" || !slices.Equal(s.To, []string{"ann@example.net"}) || s.Tags[0] != "t" {
		t.Errorf("submission %+v", s)
	}

	raw = "Message-ID: <own@shop.example>\r\nFrom: news@shop.example\r\n\r\nbody\r\n"
	r = w.do("POST", "/api/v1/messages", shopKey, map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "raw": raw})
	expectStatus(t, r, 202)
	if r.json(t)["message_id"] != "<own@shop.example>" || string(w.submit.last(t).Data) != raw {
		t.Errorf("raw message with a Message-ID: %s %q", r.body, w.submit.last(t).Data)
	}

	// The null sender, for the operator.
	r = w.do("POST", "/api/v1/messages", adminKey, map[string]any{"from": "<>", "to": []string{"ann@example.net"}, "raw": raw})
	expectStatus(t, r, 202)
	if s := w.submit.last(t); s.From != "" || s.Account != "" {
		t.Errorf("null sender: %+v", s)
	}

	for _, name := range structuredOnly {
		body := map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "raw": raw}
		switch name {
		case "cc", "bcc":
			body[name] = []string{"x@example.net"}
		case "headers":
			body[name] = map[string]string{"X-A": "b"}
		default:
			body[name] = "x@example.net"
		}
		r := w.do("POST", "/api/v1/messages", shopKey, body)
		expectStatus(t, r, 400)
		if e := r.apiErr(t); e["field"] != name {
			t.Errorf("raw with %s: %s", name, r.body)
		}
	}
	for _, c := range []struct{ raw, why string }{{"From: a@shop.example\r\n\r\nx\x00y", "NUL"}, {"From: a@shop.example\r\n\r\nx\ry", "bare CR"}, {"", "empty"}} {
		r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "raw": c.raw})
		expectStatus(t, r, 400)
		if e := r.apiErr(t); e["field"] != "raw" {
			t.Errorf("%s: %s", c.why, r.body)
		}
	}
}

// Who sends: an account key for its own account only; the admin as the
// operator or on behalf of an account it names.
func TestSendAccount(t *testing.T) {
	w := newWorld(t)
	msg := func(account string) map[string]any {
		m := map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "text": "x"}
		if account != "-" {
			m["account"] = account
		}
		return m
	}
	expectStatus(t, w.do("POST", "/api/v1/messages", shopKey, msg("shop")), 202)
	r := w.do("POST", "/api/v1/messages", shopKey, msg("news_letter"))
	expectStatus(t, r, 403)
	if r.apiErr(t)["field"] != "account" {
		t.Errorf("%s", r.body)
	}
	expectStatus(t, w.do("POST", "/api/v1/messages", adminKey, msg("-")), 202)
	if a := w.submit.last(t).Account; a != "" {
		t.Errorf("admin without account sent as %q", a)
	}
	expectStatus(t, w.do("POST", "/api/v1/messages", adminKey, msg("news_letter")), 202)
	if a := w.submit.last(t).Account; a != "news_letter" {
		t.Errorf("admin on behalf sent as %q", a)
	}
	w.submit.err = ErrUnknownAccount
	r = w.do("POST", "/api/v1/messages", adminKey, msg("nosuch"))
	expectStatus(t, r, 400)
	if e := r.apiErr(t); e["code"] != "unknown_account" || e["field"] != "account" {
		t.Errorf("%s", r.body)
	}
}

// Malformed JSON and wrong types are 400, naming the field.
func TestSendBadJSON(t *testing.T) {
	w := newWorld(t)
	ok := `"from":"news@shop.example","to":["ann@example.net"],"text":"x"`
	cases := []struct {
		name, body, code, field string
	}{
		{"syntax", `{"from": "a@b",}`, "malformed_json", ""},
		{"truncated", `{"from": "a@b", "to": [`, "malformed_json", ""},
		{"empty", ``, "malformed_json", ""},
		{"two values", `{` + ok + `} {}`, "malformed_json", ""},
		{"array", `[1,2]`, "invalid_type", ""},
		{"null", `null`, "invalid_type", ""},
		{"to a string", `{"from":"news@shop.example","to":"ann@example.net","text":"x"}`, "invalid_type", "to"},
		{"to item a number", `{"from":"news@shop.example","to":["ann@example.net",7],"text":"x"}`, "invalid_type", "to[1]"},
		{"from a number", `{"from":1,"to":["ann@example.net"],"text":"x"}`, "invalid_type", "from"},
		{"subject an object", `{` + ok + `,"subject":{}}`, "invalid_type", "subject"},
		{"priority a string", `{` + ok + `,"priority":"high"}`, "invalid_type", "priority"},
		{"priority a fraction", `{` + ok + `,"priority":1.5}`, "invalid_type", "priority"},
		{"tags an object", `{` + ok + `,"tags":{"a":1}}`, "invalid_type", "tags"},
		{"metadata a list", `{` + ok + `,"metadata":["a"]}`, "invalid_type", "metadata"},
		{"metadata value a number", `{` + ok + `,"metadata":{"campaign":42}}`, "invalid_type", "metadata.campaign"},
		{"header value a bool", `{` + ok + `,"headers":{"X-A":true}}`, "invalid_type", "headers.X-A"},
		{"unknown field", `{` + ok + `,"subjet":"typo"}`, "unknown_field", "subjet"},
		{"missing from", `{"to":["ann@example.net"],"text":"x"}`, "missing_field", "from"},
		{"missing to", `{"from":"news@shop.example","text":"x"}`, "missing_field", "to"},
		{"empty to", `{"from":"news@shop.example","to":[],"text":"x"}`, "missing_field", "to"},
		{"no content", `{"from":"news@shop.example","to":["ann@example.net"]}`, "missing_field", "text"},
		{"bad from", `{"from":"not an address","to":["ann@example.net"],"text":"x"}`, "invalid_value", "from"},
		{"bad to", `{"from":"news@shop.example","to":["ann@example.net","nope"],"text":"x"}`, "invalid_value", "to[1]"},
		{"two in one", `{"from":"news@shop.example","to":["a@x.net, b@x.net"],"text":"x"}`, "invalid_value", "to[0]"},
		{"bad cc", `{` + ok + `,"cc":["@x"]}`, "invalid_value", "cc[0]"},
		{"non-ASCII local part", `{"from":"news@shop.example","to":["jörg@example.net"],"text":"x"}`, "invalid_value", "to[0]"},
		{"bad IDN", `{"from":"news@shop.example","to":["a@\ufffd.example"],"text":"x"}`, "invalid_value", "to[0]"},
		{"encoded line break in a name", `{"from":"=?utf-8?q?a=0D=0ABcc:_x?= <news@shop.example>","to":["a@example.net"],"text":"x"}`, "invalid_value", "from"},
		{"priority out of range", `{` + ok + `,"priority":12}`, "invalid_value", "priority"},
		{"empty tag", `{` + ok + `,"tags":["a",""]}`, "invalid_value", "tags[1]"},
		{"reserved header", `{` + ok + `,"headers":{"content-type":"text/plain"}}`, "invalid_value", "headers.content-type"},
		{"header sets subject", `{` + ok + `,"headers":{"Subject":"x"}}`, "invalid_value", "headers.Subject"},
		{"bad header name", `{` + ok + `,"headers":{"X Bad":"x"}}`, "invalid_value", "headers"},
		{"bad message-id", `{` + ok + `,"headers":{"Message-ID":"nope"}}`, "invalid_value", "headers.Message-ID"},
		{"control in subject", `{` + ok + `,"subject":"a\u0007b"}`, "invalid_value", "subject"},
		{"NUL in text", `{"from":"news@shop.example","to":["ann@example.net"],"text":"a\u0000b"}`, "invalid_value", "text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := w.do("POST", "/api/v1/messages", shopKey, c.body)
			expectStatus(t, r, 400)
			e := r.apiErr(t)
			if e["code"] != c.code {
				t.Errorf("code %v, want %s: %s", e["code"], c.code, r.body)
			}
			field, _ := e["field"].(string)
			if field != c.field {
				t.Errorf("field %q, want %q: %s", field, c.field, r.body)
			}
		})
	}
	if w.submit.count() != 0 {
		t.Errorf("a bad request was submitted")
	}
	r := w.do("POST", "/api/v1/messages", shopKey, nil)
	expectStatus(t, r, 400)
}

func TestSendContentType(t *testing.T) {
	w := newWorld(t)
	req := `{"from":"news@shop.example","to":["ann@example.net"],"text":"x"}`
	r := w.do("POST", "/api/v1/messages", shopKey, req)
	expectStatus(t, r, 202)
	rec := w.doWithType("text/plain", req)
	expectStatus(t, rec, 415)
	expectStatus(t, w.doWithType("application/json; charset=utf-8", req), 202)
}

// Header injection: a CR or LF in anything that becomes a header field is
// refused, naming the field, and nothing is submitted.
func TestHeaderInjection(t *testing.T) {
	w := newWorld(t)
	base := func() map[string]any {
		return map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "subject": "hi", "text": "body"}
	}
	cases := []struct {
		field string
		edit  func(map[string]any)
	}{
		{"subject", func(m map[string]any) { m["subject"] = "Sale\r\nBcc: victim@example.com" }},
		{"subject", func(m map[string]any) { m["subject"] = "Sale\nBcc: victim@example.com" }},
		{"subject", func(m map[string]any) { m["subject"] = "Sale\rX: y" }},
		{"from", func(m map[string]any) { m["from"] = "news@shop.example\r\nBcc: victim@example.com" }},
		{"from", func(m map[string]any) { m["from"] = "Shop\n <news@shop.example>" }},
		{"to[1]", func(m map[string]any) {
			m["to"] = []string{"ann@example.net", "bob@example.net\r\nBcc: victim@example.com"}
		}},
		{"cc[0]", func(m map[string]any) { m["cc"] = []string{"Carol\r\n <carol@example.net>"} }},
		{"bcc[0]", func(m map[string]any) { m["bcc"] = []string{"x@example.net\n"} }},
		{"reply_to", func(m map[string]any) { m["reply_to"] = "help@shop.example\r\nX-Evil: 1" }},
		{"headers.X-Campaign", func(m map[string]any) {
			m["headers"] = map[string]string{"X-Campaign": "42\r\nBcc: victim@example.com"}
		}},
		{"headers", func(m map[string]any) { m["headers"] = map[string]string{"X-A\r\nBcc": "victim@example.com"} }},
	}
	for _, c := range cases {
		m := base()
		c.edit(m)
		r := w.do("POST", "/api/v1/messages", shopKey, m)
		expectStatus(t, r, 400)
		e := r.apiErr(t)
		if e["code"] != "header_injection" || e["field"] != c.field {
			t.Errorf("%s: %s", c.field, r.body)
		}
	}
	if w.submit.count() != 0 {
		t.Fatalf("an injection attempt was submitted")
	}
}

func TestOversize(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.MaxMessageBytes = 10 << 10; d.MaxBodyBytes = 40 << 10 })
	// The request body over its limit.
	r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{
		"from": "news@shop.example", "to": []string{"ann@example.net"}, "text": strings.Repeat("x", 50<<10)})
	expectStatus(t, r, 413)
	if e := r.apiErr(t); e["code"] != "too_large" || e["limit"] != float64(40<<10) {
		t.Errorf("%s", r.body)
	}
	// The message over its limit, in a body under the request's.
	r = w.do("POST", "/api/v1/messages", shopKey, map[string]any{
		"from": "news@shop.example", "to": []string{"ann@example.net"}, "text": strings.Repeat("word ", 3<<10)})
	expectStatus(t, r, 413)
	if e := r.apiErr(t); e["code"] != "too_large" || e["limit"] != float64(10<<10) || !strings.Contains(e["message"].(string), "10240") {
		t.Errorf("%s", r.body)
	}
	r = w.do("POST", "/api/v1/messages", shopKey, map[string]any{
		"from": "news@shop.example", "to": []string{"ann@example.net"}, "raw": "From: news@shop.example\r\n\r\n" + strings.Repeat("y", 11<<10)})
	expectStatus(t, r, 413)
	if e := r.apiErr(t); e["field"] != "raw" {
		t.Errorf("%s", r.body)
	}
	if w.submit.count() != 0 {
		t.Errorf("an oversize message was submitted")
	}
}

// Refusals by the submission checks keep their SMTP reply and name the
// field of the request, not of the envelope.
func TestSubmitRefusals(t *testing.T) {
	cases := []struct {
		err                  error
		status               int
		code, field          string
		smtp                 int
		enhanced, retryAfter string
	}{
		{&SubmitError{Code: 550, Enhanced: "5.7.1", Message: "carol@example.net is on the suppression list", Field: "to[2]"}, 422, "rejected", "cc[0]", 550, "5.7.1", ""},
		{&SubmitError{Code: 553, Enhanced: "5.7.1", Message: "sender domain not allowed", Field: "from"}, 422, "rejected", "from", 553, "5.7.1", ""},
		{&SubmitError{Code: 550, Enhanced: "5.7.1", Message: "From domain not allowed"}, 422, "rejected", "", 550, "5.7.1", ""},
		{&SubmitError{Code: 451, Enhanced: "4.3.0", Message: "Temporary local problem"}, 503, "unavailable", "", 451, "4.3.0", "60"},
		{&SubmitError{Code: 421, Enhanced: "4.3.2", Message: "shutting down"}, 503, "unavailable", "", 421, "4.3.2", "60"},
		{&SubmitError{Code: 452, Enhanced: "4.5.3", Message: "Too many recipients", Field: "to"}, 400, "too_many_recipients", "to", 452, "4.5.3", ""},
		{&SubmitError{Code: 552, Enhanced: "5.3.4", Message: "Message too big"}, 413, "too_large", "", 552, "5.3.4", ""},
		{fmt.Errorf("wrapped: %w", &SubmitError{Code: 554, Enhanced: "5.6.0", Message: "bad header"}), 422, "rejected", "", 554, "5.6.0", ""},
		{errors.New("disk on fire"), 503, "unavailable", "", 0, "", "60"},
	}
	for _, c := range cases {
		w := newWorld(t)
		w.submit.err = c.err
		r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{
			"from": "news@shop.example", "to": []string{"ann@example.net", "bob@example.net", "ANN@example.net"},
			"cc": []string{"carol@example.net"}, "text": "x"})
		if r.status != c.status {
			t.Errorf("%v: status %d, want %d: %s", c.err, r.status, c.status, r.body)
			continue
		}
		e := r.apiErr(t)
		field, _ := e["field"].(string)
		smtp, _ := e["smtp_code"].(float64)
		enh, _ := e["enhanced"].(string)
		if e["code"] != c.code || field != c.field || int(smtp) != c.smtp || enh != c.enhanced {
			t.Errorf("%v: %s", c.err, r.body)
		}
		if got := r.header.Get("Retry-After"); got != c.retryAfter {
			t.Errorf("%v: Retry-After %q", c.err, got)
		}
		if strings.Contains(string(r.body), "disk on fire") {
			t.Errorf("an internal error reached the client: %s", r.body)
		}
	}
	// A raw message's content refusal names raw.
	w := newWorld(t)
	w.submit.err = &SubmitError{Code: 550, Enhanced: "5.6.0", Message: "no From field"}
	r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{"from": "news@shop.example", "to": []string{"ann@example.net"}, "raw": "Subject: x\r\n\r\nx"})
	expectStatus(t, r, 422)
	if r.apiErr(t)["field"] != "raw" {
		t.Errorf("%s", r.body)
	}
}

func (w *world) doWithType(ct, body string) response {
	req := newRequest("POST", "/api/v1/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+shopKey)
	req.Header.Set("Content-Type", ct)
	return w.serve(req)
}

// The transfer-encoding choice on its own.
func TestTransferEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"":                                   "7bit",
		"short\nlines\n":                     "7bit",
		strings.Repeat("a", 79):              "quoted-printable",
		"tab\tok\n":                          "7bit",
		"form\ffeed":                         "quoted-printable",
		"éé":                                 "base64",
		"mostly ascii with one é":            "quoted-printable",
		strings.Repeat("ж", 10) + "abcdefgh": "base64",
	} {
		if got := transferEncoding(in); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func TestFoldField(t *testing.T) {
	values := []string{
		"short",
		"=?utf-8?q?Spring_sale:_20_%_off_=E2=80=94_=C3=A7a_commence,_a_very_long_s?= =?utf-8?q?ubject_line?=",
		strings.Repeat("word ", 60) + "end",
		"<https://shop.example/u/" + strings.Repeat("a", 120) + ">, <mailto:u@shop.example>",
		"two  spaces   inside and a trailing one ",
	}
	for _, v := range values {
		f := string(foldField("Subject", v))
		if !strings.HasSuffix(f, "\r\n") {
			t.Fatalf("%q: no CRLF at the end", f)
		}
		lines := strings.Split(strings.TrimSuffix(f, "\r\n"), "\r\n")
		for i, l := range lines {
			if i > 0 && (l == "" || l[0] != ' ' || strings.TrimSpace(l) == "") {
				t.Errorf("%q: continuation line %q", v, l)
			}
			if len(l) > 76 && strings.Contains(strings.TrimSpace(strings.TrimPrefix(l, "Subject: ")), " ") {
				t.Errorf("%q: line of %d characters could have been folded: %q", v, len(l), l)
			}
		}
		if got := strings.ReplaceAll(f, "\r\n", ""); got != "Subject: "+v {
			t.Errorf("unfolds to %q, want %q", got, "Subject: "+v)
		}
	}
}

// An internationalised domain goes out in its ASCII form, in the envelope
// and in the header.
func TestSendIDN(t *testing.T) {
	w := newWorld(t)
	r := w.do("POST", "/api/v1/messages", shopKey, map[string]any{
		"from": "news@shop.example", "to": []string{"Jörg <jorg@bücher.example>"}, "text": "x"})
	expectStatus(t, r, 202)
	s := w.submit.last(t)
	if !slices.Equal(s.To, []string{"jorg@xn--bcher-kva.example"}) {
		t.Errorf("envelope %q", s.To)
	}
	h := mail.Header{Header: parseMessage(t, s.Data).Header}
	if to, err := h.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "jorg@xn--bcher-kva.example" || to[0].Name != "Jörg" {
		t.Errorf("To %v %v (%q)", to, err, h.Get("To"))
	}
}
