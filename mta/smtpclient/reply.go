package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"kiln/policy"
)

// Limits on what a server may send in one reply. A hostile or broken MX must
// not make kiln hold unbounded memory (the class of bug behind OpenSMTPD's
// CVE-2020-8794, in its client's multi-line reply reader).
const (
	// MaxReplyLines is the most lines one reply may have; RFC 5321 sets no
	// limit, real EHLO replies have about twenty.
	MaxReplyLines = 100
	// MaxReplyLineLen is how much of each line is kept; RFC 5321 §4.5.3.1.5
	// allows 512 octets. Longer lines are cut, not refused.
	MaxReplyLineLen = 1000
	// maxReplyBytes bounds everything read for one reply, including the
	// parts of over-long lines that are thrown away.
	maxReplyBytes = 64 << 10
)

// errProtocol is a reply that is not SMTP: the connection cannot be trusted
// any more.
var errProtocol = errors.New("malformed reply")

// replyReader reads SMTP replies into a reused buffer, so that the common
// case (a one-line 250 nobody needs the text of) allocates nothing.
type replyReader struct {
	r   *bufio.Reader
	buf []byte // the last reply, lines as received (codes included) joined by '\n'
}

// read reads one complete reply and returns its code. The lines are in
// rr.buf until the next read.
func (rr *replyReader) read() (int, error) {
	rr.buf = rr.buf[:0]
	code, total := 0, 0
	for n := 0; ; n++ {
		if n == MaxReplyLines {
			return 0, fmt.Errorf("%w: more than %d lines", errProtocol, MaxReplyLines)
		}
		line, err := rr.line(&total)
		if err != nil {
			return 0, err
		}
		if len(line) < 3 || !digit(line[0]) || !digit(line[1]) || !digit(line[2]) ||
			line[0] < '2' || line[0] > '5' || (len(line) > 3 && line[3] != ' ' && line[3] != '-') {
			return 0, fmt.Errorf("%w: %q", errProtocol, clip(line, 80))
		}
		c := int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
		if n == 0 {
			code = c
		} else {
			rr.buf = append(rr.buf, '\n')
		}
		// A continuation line with another code breaks RFC 5321 §4.2.1;
		// the first code is the one that counts.
		rr.buf = append(rr.buf, line...)
		if len(line) == 3 || line[3] == ' ' {
			return code, nil
		}
	}
}

// line reads one line without its line ending (CRLF, or a bare LF from a
// sloppy server), cut to MaxReplyLineLen. The slice is valid until the next
// read from r. total counts the bytes read for the reply.
func (rr *replyReader) line(total *int) ([]byte, error) {
	l, err := rr.r.ReadSlice('\n')
	*total += len(l)
	if err == bufio.ErrBufferFull {
		// Keep the start of the line, throw the rest away.
		keep := append([]byte(nil), l[:min(len(l), MaxReplyLineLen)]...)
		for err == bufio.ErrBufferFull {
			if *total > maxReplyBytes {
				return nil, fmt.Errorf("%w: reply longer than %d bytes", errProtocol, maxReplyBytes)
			}
			l, err = rr.r.ReadSlice('\n')
			*total += len(l)
		}
		if err != nil {
			return nil, err
		}
		return keep, nil
	}
	if err != nil {
		if err == io.EOF && len(l) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if *total > maxReplyBytes {
		return nil, fmt.Errorf("%w: reply longer than %d bytes", errProtocol, maxReplyBytes)
	}
	l = l[:len(l)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	if len(l) > MaxReplyLineLen {
		l = l[:MaxReplyLineLen]
	}
	return l, nil
}

// text is the last reply as one string, for logs and policy.ParseReply.
func (rr *replyReader) text() string { return sanitize(rr.buf) }

// reply is the last reply, typed.
func (rr *replyReader) reply(command, host string) policy.Reply {
	r := policy.ParseReply(command, rr.text())
	r.Host = host
	return r
}

// sanitize makes the server's bytes safe to log and store: control bytes
// other than the line separators become '?', and invalid UTF-8 is replaced.
func sanitize(b []byte) string {
	clean := true
	for _, c := range b {
		if (c < 0x20 && c != '\n') || c == 0x7f || c >= 0x80 {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	s := strings.ToValidUTF8(string(b), "?")
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\n') || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return sanitize(b)
}

func digit(c byte) bool { return c >= '0' && c <= '9' }

// extensions is what an EHLO reply announced (RFC 5321 §4.1.1.1).
type extensions struct {
	ehlo       bool   // EHLO worked (else HELO: no extensions)
	pipelining bool   // RFC 2920
	eightBit   bool   // RFC 6152 8BITMIME
	smtputf8   bool   // RFC 6531
	starttls   bool   // RFC 3207
	enhanced   bool   // RFC 2034 ENHANCEDSTATUSCODES
	size       int64  // RFC 1870 SIZE; 0 when absent or unlimited
	rcptMax    int    // RFC 9422 LIMITS RCPTMAX; 0 when absent
	auth       string // RFC 4954 mechanisms, space-separated, upper case
	all        map[string]string
}

// parseEHLO reads the keywords of an EHLO reply; the first line is the
// server's greeting name, not an extension.
func parseEHLO(reply []byte) extensions {
	e := extensions{ehlo: true, all: make(map[string]string)}
	lines := strings.Split(string(reply), "\n")
	for _, l := range lines[1:] {
		if len(l) < 4 {
			continue
		}
		kw, param, _ := strings.Cut(strings.TrimSpace(l[4:]), " ")
		kw = strings.ToUpper(kw)
		param = strings.TrimSpace(param)
		e.all[kw] = param
		switch kw {
		case "PIPELINING":
			e.pipelining = true
		case "8BITMIME":
			e.eightBit = true
		case "SMTPUTF8":
			e.smtputf8 = true
		case "STARTTLS":
			e.starttls = true
		case "ENHANCEDSTATUSCODES":
			e.enhanced = true
		case "SIZE":
			if n, err := strconv.ParseInt(param, 10, 64); err == nil && n > 0 {
				e.size = n
			}
		case "AUTH":
			e.auth = strings.ToUpper(param)
		case "LIMITS":
			for _, f := range strings.Fields(param) {
				k, v, _ := strings.Cut(f, "=")
				if strings.EqualFold(k, "RCPTMAX") {
					if n, err := strconv.Atoi(v); err == nil && n > 0 {
						e.rcptMax = n
					}
				}
			}
		}
	}
	return e
}

// deadlineWriter gives every write to the connection its own deadline, in
// blocks, so a large message is bounded per block (RFC 5321 §4.5.3.2.5,
// "data block") rather than as a whole.
type deadlineWriter struct {
	c *Client
}

const writeBlock = 64 << 10

func (w deadlineWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		b := p[:min(len(p), writeBlock)]
		w.c.conn.SetWriteDeadline(time.Now().Add(w.c.writeTimeout))
		m, err := w.c.conn.Write(b)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}
