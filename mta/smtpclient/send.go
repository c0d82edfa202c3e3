package smtpclient

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"kiln/policy"
)

// Result is the outcome of one transaction.
type Result struct {
	// Rcpts holds one outcome per recipient, in the order given: the RCPT
	// reply for a refused recipient, the final reply after the dot (Command
	// "DOT") for an accepted one, or the reply that stopped the transaction
	// (MAIL's, DATA's, a local refusal, a lost connection) otherwise.
	Rcpts []policy.Reply
	// Reply is the transaction's outcome: the final reply when the message
	// was sent; otherwise what stopped it (when every recipient was refused,
	// the first recipient's reply).
	Reply policy.Reply
	// DataSent reports that the body and its final dot were written. With
	// a lost connection after that (a Reply with Command "DOT" and Code 0)
	// the message may have arrived: RFC 5321 §6.1's duplicate case.
	DataSent bool
	// Err is set when the connection failed or the server closed it (421):
	// the Client is unusable and the next transaction needs a new Dial.
	Err error
}

// recipient states during a transaction.
const (
	rcptDone     int8 = iota // has its outcome already (local refusal, RCPT refusal)
	rcptPending              // RCPT sent or to be sent
	rcptAccepted             // RCPT got 2xx
)

// local is an outcome decided by kiln without asking the server.
func (c *Client) local(code int, enhanced, command, text string) policy.Reply {
	return policy.Reply{Code: code, Enhanced: enhanced, Command: command, Host: c.host,
		Line: strconv.Itoa(code) + " " + enhanced + " " + text}
}

// Send runs one transaction: MAIL FROM, a RCPT TO per recipient, and DATA
// when at least one recipient was accepted. The message is the concatenation
// of msg (for instance the stored DKIM-Signature header, then the body); it
// must use CRLF line endings only, and is dot-stuffed on the way out without
// being copied.
//
// With PIPELINING (RFC 2920) the commands up to DATA go out in one write and
// the replies are read in order (when no recipient was accepted the server
// refuses the DATA, RFC 2920 §3.1); without it, one command at a time, and
// DATA only after an accepted recipient. The body follows in a second write
// once the server has answered DATA with 354. Recipients per transaction
// should stay in the hundreds (servers take about 100, RFC 5321 §4.5.3.1.8):
// the pipelined batch is written before any reply is read. A
// transaction that did not finish is reset (RSET) at the start of the next
// one, in the same pipelined write when the server allows. Cancelling ctx
// closes the connection.
func (c *Client) Send(ctx context.Context, from string, rcpts []string, msg ...[]byte) Result {
	res := Result{Rcpts: make([]policy.Reply, len(rcpts))}
	all := func(r policy.Reply) Result {
		for i := range res.Rcpts {
			res.Rcpts[i] = r
		}
		res.Reply = r
		return res
	}
	if c.broken != nil {
		res.Err = &Error{Reply: policy.Reply{Command: "MAIL", Host: c.host, Temporary: true,
			Line: "not sent: the connection to " + c.host + " is closed"}, Err: ErrClosed}
		return all(res.Err.(*Error).Reply)
	}
	if len(rcpts) == 0 {
		res.Reply = policy.Reply{Command: "RCPT", Host: c.host, Line: "no recipients"}
		return res
	}

	// Everything that can be decided without the server is decided before
	// a byte is sent.
	var size int64
	for _, p := range msg {
		size += int64(len(p))
	}
	eightBit, bad := scanMessage(msg)
	if bad >= 0 {
		return all(c.local(554, "5.6.0", "DATA",
			"message not sent: bare CR, bare LF or NUL at byte "+strconv.Itoa(bad)+" (SMTP smuggling guard, RFC 5321 §2.3.8)"))
	}
	if !validAddr(from, true) {
		return all(c.local(553, "5.1.7", "MAIL", "invalid sender address"))
	}
	utf8 := !isASCII(from)
	if utf8 && !c.ext.smtputf8 {
		return all(c.local(553, "5.6.7", "MAIL", c.host+" does not support SMTPUTF8, needed for the sender address"))
	}
	if c.ext.size > 0 && size > c.ext.size {
		return all(c.local(552, "5.3.4", "MAIL",
			fmt.Sprintf("message of %d bytes exceeds the limit of %d bytes of %s (SIZE)", size, c.ext.size, c.host)))
	}
	state := c.state[:0]
	sending := 0
	for i, r := range rcpts {
		st := rcptPending
		switch {
		case !validAddr(r, false):
			res.Rcpts[i] = c.local(553, "5.1.3", "RCPT", "invalid recipient address")
			st = rcptDone
		case !isASCII(r) && !c.ext.smtputf8:
			res.Rcpts[i] = c.local(553, "5.6.7", "RCPT", c.host+" does not support SMTPUTF8, needed for this address")
			st = rcptDone
		case c.ext.rcptMax > 0 && sending >= c.ext.rcptMax:
			res.Rcpts[i] = policy.Reply{Command: "RCPT", Enhanced: "4.5.3", Host: c.host, Temporary: true,
				Line: "not attempted: " + c.host + " takes at most " + strconv.Itoa(c.ext.rcptMax) + " recipients per transaction"}
			st = rcptDone
		default:
			utf8 = utf8 || !isASCII(r)
			sending++
		}
		state = append(state, st)
	}
	c.state = state
	if sending == 0 {
		res.Reply = res.Rcpts[0]
		return res
	}

	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.raw.Close() })
		defer stop()
	}
	c.txns++
	t := &txn{c: c, ctx: ctx, res: &res, state: state}
	t.run(from, rcpts, msg, size, eightBit, utf8)
	return res
}

// txn is the state of one transaction on the wire.
type txn struct {
	c     *Client
	ctx   context.Context
	res   *Result
	state []int8
}

// lost ends the transaction on a broken connection: every recipient without
// an outcome gets a temporary one naming the stage.
func (t *txn) lost(command string, err error) {
	c := t.c
	line := lostLine(command, err)
	if t.ctx.Err() != nil {
		line = "canceled at " + command + ": " + t.ctx.Err().Error()
	}
	if command == "DOT" {
		line = "connection lost after the final dot, the message may have been delivered: " + netErrText(err)
	}
	r := policy.Reply{Command: command, Host: c.host, Temporary: true, Line: line}
	t.finishAll(r)
	t.res.Reply = r
	t.res.Err = &Error{Reply: r, Err: err}
	c.broken = err
	c.raw.Close()
}

// closing handles a 421 (RFC 5321 §3.8: the server is shutting the
// connection): it is the outcome of every recipient still open.
func (t *txn) closing(command string) {
	r := t.c.rr.reply(command, t.c.host)
	t.finishAll(r)
	t.res.Reply = r
	t.res.Err = &Error{Reply: r}
	t.c.broken = ErrClosed
	t.c.raw.Close()
}

func (t *txn) finishAll(r policy.Reply) {
	for i, st := range t.state {
		if st != rcptDone {
			t.res.Rcpts[i] = r
			t.state[i] = rcptDone
		}
	}
}

func (t *txn) run(from string, rcpts []string, msg [][]byte, size int64, eightBit, utf8 bool) {
	c := t.c
	pipe := c.ext.pipelining
	c.writeTimeout = c.t.mail

	// The MAIL command, with the parameters the server announced.
	mail := func() {
		c.bw.WriteString("MAIL FROM:<")
		c.bw.WriteString(from)
		c.bw.WriteByte('>')
		if _, ok := c.ext.all["SIZE"]; ok {
			c.bw.WriteString(" SIZE=")
			c.scratch = strconv.AppendInt(c.scratch[:0], size, 10)
			c.bw.Write(c.scratch)
		}
		if eightBit && c.ext.eightBit {
			// Without 8BITMIME on the other side the bytes go anyway, as
			// most MTAs do: converting would break the DKIM signature.
			c.bw.WriteString(" BODY=8BITMIME")
		}
		if utf8 {
			c.bw.WriteString(" SMTPUTF8")
		}
		c.bw.WriteString("\r\n")
	}
	rcpt := func(i int) {
		c.bw.WriteString("RCPT TO:<")
		c.bw.WriteString(rcpts[i])
		c.bw.WriteString(">\r\n")
	}

	rset := c.dirty
	c.dirty = true // until the final reply says otherwise
	if rset && !pipe {
		if !t.reset() {
			return
		}
		rset = false
	}

	if pipe {
		if rset {
			c.bw.WriteString("RSET\r\n")
		}
		mail()
		for i, st := range t.state {
			if st == rcptPending {
				rcpt(i)
			}
		}
		c.bw.WriteString("DATA\r\n")
		if err := c.bw.Flush(); err != nil {
			t.lost("MAIL", err)
			return
		}
		if rset && !t.readRset() {
			return
		}
	} else {
		mail()
		if err := c.bw.Flush(); err != nil {
			t.lost("MAIL", err)
			return
		}
	}

	code, err := c.readReply(c.t.mail)
	if err != nil {
		t.lost("MAIL", err)
		return
	}
	if code == 421 {
		t.closing("MAIL")
		return
	}
	var mailFailed policy.Reply
	if code/100 != 2 {
		mailFailed = c.rr.reply("MAIL", c.host)
		if !pipe {
			t.finishAll(mailFailed)
			t.res.Reply = mailFailed
			return
		}
	}

	accepted := 0
	for i, st := range t.state {
		if st != rcptPending {
			continue
		}
		if !pipe {
			c.writeTimeout = c.t.rcpt
			rcpt(i)
			if err := c.bw.Flush(); err != nil {
				t.lost("RCPT", err)
				return
			}
		}
		code, err := c.readReply(c.t.rcpt)
		if err != nil {
			t.lost("RCPT", err)
			return
		}
		switch {
		case mailFailed.Code != 0:
			// The RCPT replies after a refused MAIL say only "need MAIL
			// first"; the MAIL reply is the real reason.
			t.res.Rcpts[i], t.state[i] = mailFailed, rcptDone
		case code == 421:
			t.closing("RCPT")
			return
		case code/100 == 2:
			t.state[i] = rcptAccepted
			accepted++
		default:
			t.res.Rcpts[i], t.state[i] = c.rr.reply("RCPT", c.host), rcptDone
		}
	}

	if !pipe {
		if accepted == 0 {
			t.res.Reply = t.res.Rcpts[0]
			return // RSET goes out with the next transaction
		}
		c.writeTimeout = c.t.dataInit
		if err := c.command(c.t.dataInit, "DATA"); err != nil {
			t.lost("DATA", err)
			return
		}
	}
	code, err = c.readReply(c.t.dataInit)
	if err != nil {
		t.lost("DATA", err)
		return
	}
	if code == 421 {
		t.closing("DATA")
		return
	}
	if code != 354 {
		r := c.rr.reply("DATA", c.host)
		if accepted == 0 {
			if mailFailed.Code != 0 {
				r = mailFailed
			} else {
				r = t.res.Rcpts[0]
			}
		}
		t.finishAll(r)
		t.res.Reply = r
		return
	}
	if accepted == 0 {
		// A server that says 354 with no valid recipient: RFC 2920 §3.1 has
		// the client send the lone dot, which cannot deliver anything.
		c.writeTimeout = c.t.dataBlock
		c.bw.WriteString(".\r\n")
		if err := c.bw.Flush(); err != nil {
			t.lost("DATA", err)
			return
		}
		if _, err := c.readReply(c.t.dataDone); err != nil {
			t.lost("DATA", err)
			return
		}
		if mailFailed.Code != 0 {
			t.res.Reply = mailFailed
		} else {
			t.res.Reply = t.res.Rcpts[0]
		}
		return
	}

	c.writeTimeout = c.t.dataBlock
	writeDotStuffed(c, msg)
	if err := c.bw.Flush(); err != nil {
		t.lost("DATA", err)
		return
	}
	t.res.DataSent = true
	code, err = c.readReply(c.t.dataDone)
	if err != nil {
		t.lost("DOT", err)
		return
	}
	r := c.rr.reply("DOT", c.host)
	t.finishAll(r)
	t.res.Reply = r
	c.dirty = false
	if code == 421 {
		t.res.Err = &Error{Reply: r}
		c.broken = ErrClosed
		c.raw.Close()
	}
}

// reset sends RSET on its own (without PIPELINING) and reads the reply.
func (t *txn) reset() bool {
	c := t.c
	if err := c.command(c.t.rset, "RSET"); err != nil {
		t.lost("RSET", err)
		return false
	}
	return t.readRset()
}

func (t *txn) readRset() bool {
	c := t.c
	code, err := c.readReply(c.t.rset)
	if err != nil {
		t.lost("RSET", err)
		return false
	}
	if code == 421 {
		t.closing("RSET")
		return false
	}
	// Any other refusal of RSET is odd but harmless: MAIL will tell.
	return true
}

// writeDotStuffed writes the message with a '.' doubled at the start of
// every line (RFC 5321 §4.5.2), then the final "<CRLF>.<CRLF>", adding the
// CRLF when the message does not end with one. It looks for "\n." rather
// than walking lines, so a message with no line starting with a dot is
// copied in a few large writes.
func writeDotStuffed(c *Client, msg [][]byte) {
	bol := true // at the beginning of a line
	for _, p := range msg {
		if len(p) == 0 {
			continue
		}
		if bol && p[0] == '.' {
			c.bw.WriteByte('.')
		}
		bol = p[len(p)-1] == '\n'
		for {
			i := bytes.Index(p, dotLine)
			if i < 0 {
				c.bw.Write(p)
				break
			}
			c.bw.Write(p[:i+2]) // through the dot
			c.bw.WriteByte('.')
			p = p[i+2:]
		}
	}
	if !bol {
		c.bw.WriteString("\r\n")
	}
	c.bw.WriteString(".\r\n")
}

var dotLine = []byte("\n.")

// scanMessage reports whether the message has 8-bit bytes, and the offset of
// the first bare CR, bare LF or NUL (-1 when there is none). kiln normalises
// line endings at submission; this is the last guard before the wire, so
// that nothing kiln relays can carry an SMTP smuggling sequence: a receiver
// that ends DATA on "<LF>.<LF>" or "<CR>.<CR>" would otherwise see a second,
// forged message coming from kiln's address.
func scanMessage(msg [][]byte) (eightBit bool, bad int) {
	off := 0
	cr := false // the previous byte was a CR
	for _, p := range msg {
		for i, ch := range p {
			if cr {
				if ch != '\n' {
					return eightBit, off + i - 1
				}
				cr = false
				continue
			}
			if ch > '\r' {
				if ch >= 0x80 {
					eightBit = true
				}
				continue
			}
			switch ch {
			case '\r':
				cr = true
			case '\n', 0:
				return eightBit, off + i
			}
		}
		off += len(p)
	}
	if cr {
		return eightBit, off - 1
	}
	return eightBit, -1
}

// validAddr refuses what would break the command line or the angle
// brackets: control characters (CR and LF would inject commands), DEL, '<'
// and '>'. Only the sender may be empty (the null reverse-path).
func validAddr(a string, sender bool) bool {
	if a == "" {
		return sender
	}
	if len(a) > 1000 {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
