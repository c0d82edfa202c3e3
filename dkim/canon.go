package dkim

import (
	"bytes"
	"fmt"
	"hash"
)

// MessageError says why a message cannot be signed as it is: a header line
// that is not a field, or a line ending other than CRLF. Verifiers disagree
// on how to read such messages, so no signature over them is safe.
type MessageError struct {
	Line int // 1-based line of the message
	Msg  string
}

func (e *MessageError) Error() string { return fmt.Sprintf("dkim: message line %d: %s", e.Line, e.Msg) }

func messageErr(msg []byte, off int, text string) error {
	return &MessageError{Line: 1 + bytes.Count(msg[:off], []byte{'\n'}), Msg: text}
}

var errBareCR = "bare CR (line endings must be CRLF)"
var errBareLF = "bare LF (line endings must be CRLF)"

// field is one header field as written in the message.
type field struct {
	name  []byte // field name, as written
	value []byte // everything after the colon up to the field's final CRLF
}

// splitMessage cuts msg at the blank line that ends the header (RFC 5322
// §2.1). The header keeps the CRLF of its last field; a message with no
// blank line is all header and has an empty body.
func splitMessage(msg []byte) (header, body []byte) {
	if bytes.HasPrefix(msg, crlf) {
		return nil, msg[2:]
	}
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		return msg, nil
	}
	return msg[:i+2], msg[i+4:]
}

var crlf = []byte("\r\n")

// parseHeader splits the header into fields, joining folded lines. It
// refuses a line that is neither a field ("name:") nor a continuation, a
// field name with characters RFC 5322 §3.6.8 does not allow (including
// WSP before the colon, which verifiers read differently), and stray CR
// or LF. msg is the whole message, for line numbers in errors; fields is
// reused.
func parseHeader(msg, header []byte, fields []field) ([]field, error) {
	off := 0
	for off < len(header) {
		end := bytes.IndexByte(header[off:], '\n')
		var line []byte
		next := len(header)
		if end >= 0 {
			next = off + end + 1
			if end == 0 || header[off+end-1] != '\r' {
				return nil, messageErr(msg, off+end, errBareLF)
			}
			line = header[off : off+end-1]
		} else {
			line = header[off:]
		}
		if i := bytes.IndexByte(line, '\r'); i >= 0 {
			return nil, messageErr(msg, off+i, errBareCR)
		}
		if len(line) == 0 {
			return nil, messageErr(msg, off, "empty line inside the header")
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(fields) == 0 {
				return nil, messageErr(msg, off, "the header starts with a continuation line")
			}
			f := &fields[len(fields)-1]
			// The value runs on through this line; its slice grows in place.
			f.value = f.value[:len(f.value)+2+len(line)]
		} else {
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 || !fieldName(line[:colon]) {
				return nil, messageErr(msg, off, "header line is not a field (a name of printable characters, then a colon)")
			}
			fields = append(fields, field{name: line[:colon], value: line[colon+1:]})
		}
		off = next
	}
	return fields, nil
}

func fieldName(b []byte) bool {
	for _, c := range b {
		if c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// appendRelaxedField appends the field in relaxed header canonical form
// (RFC 6376 §3.4.2): name lower-cased, folding removed, runs of WSP made
// one SP, WSP around the colon and at the end dropped, then CRLF.
func appendRelaxedField(dst []byte, name, value []byte) []byte {
	for _, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	dst = append(dst, ':')
	space := false
	start := true
	for _, c := range value {
		switch c {
		case ' ', '\t', '\r', '\n':
			space = true
			continue
		}
		if space && !start {
			dst = append(dst, ' ')
		}
		space, start = false, false
		dst = append(dst, c)
	}
	return append(dst, '\r', '\n')
}

// special marks the bytes the body canonicaliser must look at.
var special = [256]bool{' ': true, '\t': true, '\r': true, '\n': true}

// hashBody writes the relaxed canonical form of body (RFC 6376 §3.4.4) to
// h: WSP at line ends dropped, other WSP runs made one SP, empty lines at
// the end dropped, and a final CRLF on a non-empty body. The canonical text
// is mostly the body itself, so it is written in long runs straight from
// body and only the WSP that changes is rewritten. msg and base locate
// body in the message for error line numbers.
func hashBody(h hash.Hash, msg []byte, base int, body []byte) error {
	// q ends the last line holding anything but WSP: what follows is
	// trailing WSP and empty lines, which canonicalise to nothing.
	q := len(body)
	for q > 0 && special[body[q-1]] {
		q--
	}
	for k := q; k < len(body); k++ {
		switch body[k] {
		case '\r':
			if k+1 == len(body) || body[k+1] != '\n' {
				return messageErr(msg, base+k, errBareCR)
			}
			k++
		case '\n':
			return messageErr(msg, base+k, errBareLF)
		}
	}
	clean := 0 // body[clean:i] is already canonical
	i := 0
	for i < q {
		// Runs of ordinary bytes are the common case.
		for i < q && !special[body[i]] {
			i++
		}
		if i == q {
			break
		}
		switch body[i] {
		case '\r':
			// body[q-1] is not special, so i+1 < q when this is a CRLF.
			if body[i+1] != '\n' {
				return messageErr(msg, base+i, errBareCR)
			}
			i += 2
			continue
		case '\n':
			return messageErr(msg, base+i, errBareLF)
		case ' ':
			if !special[body[i+1]] {
				i++ // one SP between words is canonical
				continue
			}
		}
		// A WSP run that changes: a tab, several WSP, or WSP before CRLF.
		h.Write(body[clean:i])
		j := i
		for body[j] == ' ' || body[j] == '\t' {
			j++ // stops before q: body[q-1] is not WSP
		}
		if body[j] != '\r' && body[j] != '\n' {
			h.Write(sp)
		}
		clean, i = j, j
	}
	h.Write(body[clean:q])
	if q > 0 {
		h.Write(crlf)
	}
	return nil
}

var sp = []byte{' '}
