package mta

import (
	"bytes"
	"errors"
	"net/mail"
	"strings"
)

// errBareCR and errNUL refuse content that could smuggle a second message
// past a receiver that ends DATA on something other than CRLF.CRLF
// (RFC 5321 §2.3.8: CR and LF appear only together, as a line end).
var (
	errBareCR = errors.New("bare CR")
	errNUL    = errors.New("NUL")
)

// normalizeData returns the message with every bare LF turned into CRLF (as
// Postfix's smtpd_forbid_bare_newline = normalize does), and refuses a bare
// CR or a NUL. Clean input, the common case, is returned as is without a copy.
// Normalising before signing and storing means nothing kiln relays can carry
// an SMTP-smuggling sequence.
func normalizeData(in []byte) ([]byte, error) {
	bareLF := 0
	for i := 0; i < len(in); i++ {
		switch in[i] {
		case '\r':
			if i+1 >= len(in) || in[i+1] != '\n' {
				return nil, errBareCR
			}
			i++ // skip the LF of this CRLF
		case '\n':
			bareLF++
		case 0:
			return nil, errNUL
		}
	}
	if bareLF == 0 {
		return in, nil
	}
	out := make([]byte, 0, len(in)+bareLF)
	for i := 0; i < len(in); i++ {
		if in[i] == '\n' && (i == 0 || in[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, in[i])
	}
	return out, nil
}

// headerInfo is what kiln needs from a message's header section.
type headerInfo struct {
	end       int      // offset of the body (after the blank line), len(msg) when there is none
	from      []string // the values of every From field, unfolded
	messageID string
	hasDate   bool
	// hasListUnsubscribe: the message brings its own List-Unsubscribe.
	hasListUnsubscribe bool
}

// scanHeader reads the header section of a CRLF message: field names are
// matched case-insensitively at the start of a line; folded lines (starting
// with a space or tab) continue the field above (RFC 5322 §2.2.3).
func scanHeader(msg []byte) headerInfo {
	h := headerInfo{end: len(msg)}
	var name string
	var value []byte
	flush := func() {
		switch name {
		case "from":
			h.from = append(h.from, strings.TrimSpace(string(value)))
		case "message-id":
			h.messageID = strings.TrimSpace(string(value))
		case "date":
			h.hasDate = true
		case "list-unsubscribe":
			h.hasListUnsubscribe = true
		}
		name, value = "", nil
	}
	pos := 0
	for pos < len(msg) {
		eol := bytes.Index(msg[pos:], []byte("\r\n"))
		var line []byte
		next := len(msg)
		if eol >= 0 {
			line = msg[pos : pos+eol]
			next = pos + eol + 2
		} else {
			line = msg[pos:]
		}
		if len(line) == 0 {
			flush()
			h.end = next
			return h
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != "" {
				value = append(value, line...)
			}
		} else {
			flush()
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				// Not a header field: the header section has ended
				// without a blank line (a message with no header, say).
				h.end = pos
				return h
			}
			name = strings.ToLower(strings.TrimRight(string(line[:colon]), " \t"))
			if name == "from" || name == "message-id" || name == "date" || name == "list-unsubscribe" {
				value = append([]byte(nil), line[colon+1:]...)
			}
		}
		pos = next
	}
	flush()
	return h
}

// fromDomain returns the domain of the single address in a From field value.
func fromDomain(value string) (string, error) {
	list, err := mail.ParseAddressList(value)
	if err != nil {
		return "", err
	}
	if len(list) != 1 {
		return "", errors.New("more than one address")
	}
	at := strings.LastIndexByte(list[0].Address, '@')
	if at < 0 {
		return "", errors.New("no domain")
	}
	return strings.ToLower(list[0].Address[at+1:]), nil
}

// validAddress checks an envelope address: local@domain, with a domain of
// letters, digits, hyphens and dots (or an address literal), and RFC 5321
// §4.5.3.1 lengths (local part 64, domain 255, path 256).
func validAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 || at > 64 {
		return false
	}
	if strings.ContainsAny(a, " \t\r\n<>") {
		return false
	}
	if local := a[:at]; strings.Contains(local, "@") && !(strings.HasPrefix(local, "\"") && strings.HasSuffix(local, "\"")) {
		return false // an unquoted local part cannot hold '@' (RFC 5321 §4.1.2)
	}
	dom := a[at+1:]
	if strings.HasPrefix(dom, "[") && strings.HasSuffix(dom, "]") {
		return true
	}
	return validDomainName(dom)
}

func validDomainName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// domainOf returns the lower-cased domain of an address.
func domainOf(a string) string {
	if i := strings.LastIndexByte(a, '@'); i >= 0 {
		return strings.ToLower(a[i+1:])
	}
	return ""
}

// inDomains reports whether dom is one of domains or a subdomain of one.
func inDomains(dom string, domains []string) bool {
	dom = strings.ToLower(strings.TrimSuffix(dom, "."))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if dom == d || strings.HasSuffix(dom, "."+d) {
			return true
		}
	}
	return false
}
