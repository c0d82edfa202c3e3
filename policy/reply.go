package policy

import (
	"strconv"
	"strings"
)

// Reply is one outcome from the wire, typed: what the remote answered, to which
// command, and who answered. When kiln got no reply at all (the connection was
// refused or dropped, TLS or DNS failed) Code is 0, Line holds kiln's own
// description and Temporary says whether trying again could help.
type Reply struct {
	Code     int    // SMTP reply code, 0 when there was no reply
	Enhanced string // RFC 3463 status "x.y.z" as the remote sent it, "" when absent
	Command  string // what the reply answered: CONNECT, EHLO, STARTTLS, MAIL, RCPT, DATA, DOT, DNS
	Line     string // the remote's words as one line: "550 5.1.1 <a@b>: user unknown"
	Host     string // the remote host name (MX) that answered, for provider rules
	// Temporary is meaningful only when Code is 0: network, TLS and most DNS
	// failures are temporary; a DNS answer that proves the domain cannot receive
	// mail (NXDOMAIN, null MX) is not.
	Temporary bool
}

// Permanent reports whether the reply is a permanent failure by its first digit
// (or, with no code, by Temporary).
func (r Reply) Permanent() bool {
	if r.Code == 0 {
		return !r.Temporary
	}
	return r.Code >= 500
}

// Success reports whether the reply is a 2xx.
func (r Reply) Success() bool { return r.Code >= 200 && r.Code < 300 }

// ParseReply splits a reply line such as "550 5.1.1 user unknown" or a
// multi-line reply already joined ("550-5.1.1 a\n550 5.1.1 b") into a Reply.
// Continuation lines are joined with a space; a repeated code and enhanced code
// on each line are dropped from the text.
func ParseReply(command, line string) Reply {
	r := Reply{Command: command}
	var texts []string
	for _, l := range strings.Split(strings.ReplaceAll(line, "\r", ""), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		code, rest := splitCode(l)
		if code != 0 {
			if r.Code == 0 {
				r.Code = code
			}
			if enh, after := splitEnhanced(rest); enh != "" {
				if r.Enhanced == "" {
					r.Enhanced = enh
				}
				rest = after
			}
		}
		if rest != "" {
			texts = append(texts, rest)
		}
	}
	r.Line = joinLine(r.Code, r.Enhanced, strings.Join(texts, " "))
	return r
}

func joinLine(code int, enh, text string) string {
	var b strings.Builder
	if code != 0 {
		b.WriteString(strconv.Itoa(code))
	}
	for _, s := range []string{enh, text} {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}

// splitCode reads a leading 3-digit reply code followed by ' ', '-' or the end.
func splitCode(l string) (int, string) {
	if len(l) < 3 || l[0] < '2' || l[0] > '5' || !isDigit(l[1]) || !isDigit(l[2]) {
		return 0, l
	}
	if len(l) > 3 && l[3] != ' ' && l[3] != '-' {
		return 0, l
	}
	code, _ := strconv.Atoi(l[:3])
	if len(l) == 3 {
		return code, ""
	}
	return code, strings.TrimSpace(l[4:])
}

// splitEnhanced reads a leading RFC 3463 status "c.s.d" (class 2, 4 or 5; subject
// and detail of 1 to 3 digits).
func splitEnhanced(s string) (string, string) {
	end := strings.IndexByte(s, ' ')
	tok := s
	if end >= 0 {
		tok = s[:end]
	}
	if !ValidStatus(tok) {
		return "", s
	}
	if end < 0 {
		return tok, ""
	}
	return tok, strings.TrimSpace(s[end+1:])
}

// ValidStatus reports whether s is an RFC 3463 status code "c.s.d".
func ValidStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if !isDigit(p[i]) {
				return false
			}
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
