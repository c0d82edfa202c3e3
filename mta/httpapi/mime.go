package httpapi

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message"
	"golang.org/x/net/idna"
)

// build writes a structured request as an RFC 5322 message: text/plain or
// text/html alone, or multipart/alternative with both (plain first, so a
// reader that cannot show HTML shows the text: RFC 2046 §5.1.4). Non-ASCII
// in header fields is RFC 2047-encoded; each body gets the transfer encoding
// that suits it (see transferEncoding). It returns the message and its
// Message-ID.
func (a *API) build(req *sendRequest) ([]byte, string, error) {
	type field struct{ k, v string }
	var fields []field
	add := func(k, v string) { fields = append(fields, field{k, v}) }

	add("From", req.from.String())
	add("To", addressList(req.to))
	if len(req.cc) > 0 {
		add("Cc", addressList(req.cc))
	}
	if req.replyTo != nil {
		add("Reply-To", req.replyTo.String())
	}
	if req.subject != "" {
		add("Subject", mime.QEncoding.Encode("utf-8", req.subject))
	}
	date := a.clk.Now().Format(time.RFC1123Z)
	msgID := ""
	for _, k := range req.headerKeys {
		switch strings.ToLower(k) {
		case "date":
			date = strings.TrimSpace(req.headers[k])
		case "message-id":
			msgID = strings.TrimSpace(req.headers[k])
		}
	}
	if msgID == "" {
		msgID = newMessageID(domainOf(req.from.Address))
	}
	add("Date", date)
	add("Message-ID", msgID)
	for _, k := range req.headerKeys {
		switch strings.ToLower(k) {
		case "date", "message-id":
			continue
		}
		add(k, mime.QEncoding.Encode("utf-8", req.headers[k]))
	}
	add("MIME-Version", "1.0")

	type part struct{ mediaType, body string }
	var parts []part
	if req.hasText {
		parts = append(parts, part{"text/plain", req.text})
	}
	if req.hasHTML {
		parts = append(parts, part{"text/html", req.html})
	}
	bodyHeader := func(p part) (message.Header, string) {
		var h message.Header
		body := strings.ReplaceAll(strings.ReplaceAll(p.body, "\r\n", "\n"), "\r", "\n")
		cte := transferEncoding(body)
		if cte != "quoted-printable" {
			// 7bit and base64 carry the canonical CRLF line ends; the
			// quoted-printable writer makes its own from LF.
			body = strings.ReplaceAll(body, "\n", "\r\n")
		}
		h.Set("Content-Transfer-Encoding", cte)
		h.SetContentType(p.mediaType, map[string]string{"charset": "utf-8"})
		return h, body
	}

	var h message.Header
	var single string
	if len(parts) == 1 {
		ph, body := bodyHeader(parts[0])
		fields = append(fields, field{"Content-Type", ph.Get("Content-Type")}, field{"Content-Transfer-Encoding", ph.Get("Content-Transfer-Encoding")})
		single = body
	} else {
		fields = append(fields, field{"Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": newBoundary()})})
	}
	// go-message writes a header's fields last-added first. Its own
	// folding gives up on a line whose first word is long (an encoded
	// word is up to 75 characters), so the fields go in folded.
	for i := len(fields) - 1; i >= 0; i-- {
		h.AddRaw(foldField(fields[i].k, fields[i].v))
	}

	var buf bytes.Buffer
	mw, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, "", err
	}
	if len(parts) == 1 {
		if _, err := io.WriteString(mw, single); err != nil {
			return nil, "", err
		}
	} else {
		for _, p := range parts {
			ph, body := bodyHeader(p)
			pw, err := mw.CreatePart(ph)
			if err != nil {
				return nil, "", err
			}
			if _, err := io.WriteString(pw, body); err != nil {
				return nil, "", err
			}
			if err := pw.Close(); err != nil {
				return nil, "", err
			}
		}
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return buf.Bytes(), msgID, nil
}

// transferEncoding picks a body's Content-Transfer-Encoding (RFC 2045 §6):
// 7bit for ASCII in lines a reader can take as they are (at most 78
// characters, RFC 5322 §2.1.1); base64 for text that is mostly non-ASCII
// (Chinese, Russian, ...), where quoted-printable would triple its size;
// quoted-printable for the rest, which stays readable where it is ASCII.
func transferEncoding(body string) string {
	nonASCII, line, long := 0, 0, false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\n' {
			line = 0
			continue
		}
		if line++; line > 78 {
			long = true
		}
		if c >= 0x80 || (c < ' ' && c != '\t') {
			nonASCII++
		}
	}
	switch {
	case nonASCII == 0 && !long:
		return "7bit"
	case nonASCII*3 > len(body):
		return "base64"
	}
	return "quoted-printable"
}

// foldField formats a header field, folding it before a space wherever a
// line would pass 76 characters (RFC 5322 §2.2.3; RFC 2047 §2 asks the same
// of lines with encoded words). Unfolding, which removes the CRLFs, gives
// the value back as it was. A word longer than a line stays whole.
func foldField(name, value string) []byte {
	out := append(make([]byte, 0, len(name)+len(value)+8), name+": "...)
	line := len(out)
	for i, word := range strings.Split(value, " ") {
		if i > 0 {
			if word != "" && line+1+len(word) > 76 && line > 1 {
				out = append(out, "\r\n"...)
				line = 0
			}
			out = append(out, ' ')
			line++
		}
		out = append(out, word...)
		line += len(word)
	}
	return append(out, "\r\n"...)
}

func addressList(l []*mail.Address) string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func domainOf(addr string) string {
	d := addr[strings.LastIndexByte(addr, '@')+1:]
	if a, err := idna.Lookup.ToASCII(strings.ToLower(d)); err == nil && a != "" {
		return a
	}
	return "localhost"
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newMessageID makes a Message-ID in the sender's domain: 128 random bits
// make it unique without a counter or the host's name.
func newMessageID(domain string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return "<" + strings.ToLower(idEncoding.EncodeToString(b)) + "@" + domain + ">"
}

func newBoundary() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "kiln-" + hex.EncodeToString(b)
}
