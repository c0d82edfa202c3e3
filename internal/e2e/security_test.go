package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln/internal/fakemx"
)

// The security suite: the real binary against a stranger, a guesser, a
// smuggler, a slow client and forged reports, tokens and keys.

func bcryptHash(t *testing.T, secret string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func authPlain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// accountTOML is one [[account]] that may send from news.test.
func accountTOML(t *testing.T, extra string) string {
	return fmt.Sprintf(`
[[account]]
name = "news"
password_hash = %q
sender_domains = ["news.test"]
%s
`, bcryptHash(t, "s3cret"), extra)
}

// No open relay: with trusted_networks excluding loopback, a client that has
// not authenticated can neither send nor relay, whatever it claims
// (XCLIENT, XFORWARD, a trusted-looking EHLO name) and however it spells the
// recipient (source routes, the %-hack, !-paths, quoted local parts with an
// @). An authenticated account may send, but the same spellings never
// route its mail anywhere but the domain after the last @.
func TestNoOpenRelay(t *testing.T) {
	w := newWorld(t)
	dest := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	elsewhere := w.mx(3, fakemx.Config{})
	w.domain("elsewhere.test", 3)
	w.domain("relay.test", 3)
	w.submission = `trusted_networks = ["192.0.2.0/24"]`
	d := w.start(accountTOML(t, ""))

	tricks := []string{
		"victim@elsewhere.test",
		"<@relay.test:victim@elsewhere.test>",
		"<@dest.test,@relay.test:victim@elsewhere.test>",
		"victim%elsewhere.test@dest.test",
		"elsewhere.test!victim@dest.test",
		`"victim@elsewhere.test"@dest.test`,
		`"victim@elsewhere.test"`,
		"victim@elsewhere.test@dest.test",
		"victim@[127.0.0.3]",
		"postmaster",
	}
	path := func(a string) string {
		if strings.HasPrefix(a, "<") {
			return a
		}
		return "<" + a + ">"
	}
	for _, helo := range []string{"stranger.test", "localhost", "[127.0.0.1]", "kiln.test"} {
		rc := dialRaw(t, d.submit)
		rc.must("EHLO "+helo, 250)
		// Claims to speak for a trusted client are not commands kiln knows.
		for _, claim := range []string{"XCLIENT ADDR=192.0.2.10 NAME=trusted.test", "XFORWARD ADDR=192.0.2.10 NAME=trusted.test"} {
			if code, msg := rc.cmd(claim); code/100 != 5 {
				t.Errorf("%s: %d %s", claim, code, msg)
			}
		}
		for _, from := range []string{"app@news.test", "<@trusted.test:app@news.test>", ""} {
			if code, msg := rc.cmd("MAIL FROM:<" + strings.Trim(from, "<>") + ">"); code != 530 {
				t.Errorf("EHLO %s, stranger's MAIL FROM:<%s>: %d %s", helo, from, code, msg)
			}
		}
		for _, to := range tricks {
			if code, msg := rc.cmd("RCPT TO:" + path(to)); code/100 != 5 {
				t.Errorf("EHLO %s, stranger's RCPT TO:%s: %d %s", helo, path(to), code, msg)
			}
		}
		if code, msg := rc.cmd("DATA"); code/100 != 5 {
			t.Errorf("stranger's DATA: %d %s", code, msg)
		}
		// A forged authorization identity does not authenticate.
		plainAs := base64.StdEncoding.EncodeToString([]byte("news\x00someone\x00s3cret"))
		if code, msg := rc.cmd("AUTH PLAIN " + plainAs); code != 535 {
			t.Errorf("AUTH PLAIN with another authorization identity: %d %s", code, msg)
		}
		if code, _ := rc.cmd("MAIL FROM:<app@news.test>"); code != 530 {
			t.Errorf("MAIL after a failed AUTH: %d", code)
		}
		rc.cmd("QUIT")
	}

	// The account sends; each spelling reaches the domain after the last @
	// or is refused, and nothing reaches elsewhere.test or relay.test.
	rc := dialRaw(t, d.submit)
	rc.must("EHLO app.test", 250)
	rc.must("AUTH PLAIN "+authPlain("news", "s3cret"), 235)
	if code, msg := rc.cmd("MAIL FROM:<ceo@bank.test>"); code != 553 {
		t.Errorf("account's MAIL from a foreign domain: %d %s", code, msg)
	}
	accepted := map[string]string{}
	for i, to := range tricks[3:6] {
		rc.must("MAIL FROM:<app@news.test>", 250)
		code, msg := rc.cmd("RCPT TO:" + path(to))
		switch {
		case code == 250:
			rc.must("DATA", 354)
			id := fmt.Sprintf("<relay-%d@e2e.test>", i)
			rc.raw(message("app@news.test", id, "relay", 100) + ".\r\n")
			if code, msg := rc.reply(); code != 250 {
				t.Fatalf("RCPT TO:%s: DATA %d %s", to, code, msg)
			}
			accepted[id] = to
		case code/100 == 5:
			rc.cmd("RSET")
		default:
			t.Errorf("account's RCPT TO:%s: %d %s", to, code, msg)
		}
	}
	rc.cmd("QUIT")
	if len(accepted) > 0 {
		dest.WaitMessages(t, len(accepted))
	}
	time.Sleep(time.Second)
	got := messageIDs(dest.Messages())
	for id, to := range accepted {
		if got[id] != 1 {
			t.Errorf("%s (to %s) arrived at dest.test %d times", id, to, got[id])
		}
	}
	if n := len(elsewhere.Messages()); n != 0 {
		t.Errorf("%d messages were relayed to elsewhere.test/relay.test", n)
	}
	var health struct{ Queue int }
	adminJSON(t, d, "", "/healthz", &health)
	report(t, "stranger refused at MAIL (530) and RCPT (5xx) with %d recipient spellings and 4 EHLO names; XCLIENT/XFORWARD unknown; account's %%-hack, !-path and quoted-@ spellings: %d delivered to dest.test only, %d refused",
		len(tricks), len(accepted), 3-len(accepted))
}

// AUTH guessing is slowed and then refused: after auth_failures wrong
// passwords from one address, AUTH answers 454 4.7.0 even for the right
// password, on that connection and on a new one, until the window passes.
// Each failure is answered after a growing pause; the time is reported,
// not asserted.
func TestAuthGuessingIsSlowed(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.submission = `trusted_networks = []
auth_failures = 4
auth_failure_window = "4s"`
	d := w.start(accountTOML(t, ""))
	rc := dialRaw(t, d.submit)
	rc.must("EHLO guesser.test", 250)
	start := time.Now()
	replies := map[int]int{}
	for i := 0; i < 4; i++ {
		code, msg := rc.cmd("AUTH PLAIN " + authPlain("news", fmt.Sprintf("guess%d", i)))
		replies[code]++
		if code != 535 || !strings.Contains(msg, "5.7.8") {
			t.Errorf("guess %d: %d %s", i, code, msg)
		}
	}
	guessing := time.Since(start)
	// Locked out: the right password is refused, here and on a new
	// connection, and so is every further guess.
	for i := 0; i < 3; i++ {
		code, msg := rc.cmd("AUTH PLAIN " + authPlain("news", "s3cret"))
		replies[code]++
		if code != 454 || !strings.Contains(msg, "4.7.0") {
			t.Errorf("right password while locked out: %d %s", code, msg)
		}
	}
	rc2 := dialRaw(t, d.submit)
	rc2.must("EHLO guesser.test", 250)
	if code, msg := rc2.cmd("AUTH PLAIN " + authPlain("news", "s3cret")); code != 454 {
		t.Errorf("right password on a new connection while locked out: %d %s", code, msg)
	}
	if code, _ := rc2.cmd("MAIL FROM:<app@news.test>"); code != 530 {
		t.Errorf("MAIL while locked out: %d", code)
	}
	// After the window the right password works again.
	var waited time.Duration
	lockEnd := time.Now()
	waitUntil(t, "the lockout to end", 30*time.Second, func() bool {
		rc := dialRaw(t, d.submit)
		defer rc.cmd("QUIT")
		rc.must("EHLO guesser.test", 250)
		code, _ := rc.cmd("AUTH PLAIN " + authPlain("news", "s3cret"))
		waited = time.Since(lockEnd)
		return code == 235
	})
	report(t, "4 wrong passwords: %v of replies (535 each, paused 0.25 s more each time); then %v: 454 4.7.0 for the right password on the same and a new connection; the right password worked again %v later",
		guessing.Round(10*time.Millisecond), replies, waited.Round(100*time.Millisecond))
}

// smuggleVariants are the published end-of-data sequences: SEC Consult's
// nine (SMTP-Smuggling-Tools) and hannob's smtpsmug set, merged where they
// are the same bytes.
var smuggleVariants = []struct{ names, seq string }{
	{"lf.lf / smtpsmug lflf", "\n.\n"},
	{"lf.cr / smtpsmug lfcr", "\n.\r"},
	{"cr.lf / smtpsmug crlf", "\r.\n"},
	{"cr.cr / smtpsmug crcr", "\r.\r"},
	{"lf.crlf / smtpsmug lfcrlf", "\n.\r\n"},
	{"cr.crlf / smtpsmug crcrlf", "\r.\r\n"},
	{"crlf.crcrlf", "\r\n.\r\r\n"},
	{"crcrlf.crcrlf", "\r\r\n.\r\r\n"},
	{"crlf-nul.crlf / smtpsmug nullbefore", "\r\n\x00.\r\n"},
	{"smtpsmug crlflf", "\r\n.\n"},
	{"smtpsmug crlfcr", "\r\n.\r"},
	{"smtpsmug nullafter", "\r\n.\x00\r\n"},
}

// SMTP smuggling through the real binary: each published end-of-data
// variant, followed by a complete second transaction from ceo@bank.test, is
// sent inside one message's data. kiln must either refuse the message (5xx)
// or relay exactly one message for the transaction, with no bare CR or LF
// in it; the smuggled transaction must never arrive as a message of its
// own, and kiln itself must not split the data (its replies stay in step).
// The pipelining case sends a second transaction right after the final dot
// without waiting: it is a transaction of its own, so it must arrive once,
// intact, or be refused.
func TestSmuggling(t *testing.T) {
	w := newWorld(t)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	d := w.start("")

	outcome := map[string]string{}
	accepted := map[string]bool{}
	for i, v := range smuggleVariants {
		id := fmt.Sprintf("<smuggle-%d@e2e.test>", i)
		smuggled := "MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@dest.test>\r\nDATA\r\n" +
			"From: <ceo@bank.test>\r\nTo: <victim@dest.test>\r\nSubject: SMUGGLED-" + fmt.Sprint(i) + "\r\n\r\nwire the money\r\n"
		data := "From: <app@sender.test>\r\nTo: <r@dest.test>\r\nMessage-ID: " + id + "\r\nSubject: outer " + fmt.Sprint(i) +
			"\r\n\r\nouter body" + v.seq + smuggled
		rc := dialRaw(t, d.submit)
		rc.must("EHLO smuggler.test", 250)
		code, msg := rc.send("app@sender.test", []string{"r@dest.test"}, data)
		switch {
		case code == 250:
			accepted[id] = true
			outcome[v.names] = "accepted, normalised"
		case code/100 == 5:
			outcome[v.names] = fmt.Sprintf("refused %d %s", code, strings.Fields(msg)[0])
		default:
			t.Errorf("%s: %d %s", v.names, code, msg)
		}
		// kiln's replies are in step: the next reply is VRFY's own.
		if code, msg := rc.cmd("VRFY postmaster"); code != 252 {
			t.Errorf("%s: kiln split the data: after the message, VRFY got %d %s", v.names, code, msg)
		}
		rc.cmd("QUIT")
	}

	// Pipelining: the second transaction follows the final dot at once.
	rc := dialRaw(t, d.submit)
	rc.must("EHLO smuggler.test", 250)
	rc.must("MAIL FROM:<app@sender.test>", 250)
	rc.must("RCPT TO:<r@dest.test>", 250)
	rc.must("DATA", 354)
	rc.raw(message("app@sender.test", "<pipe-1@e2e.test>", "pipelined 1", 100) + ".\r\n" +
		"MAIL FROM:<app@sender.test>\r\nRCPT TO:<r@dest.test>\r\nDATA\r\n" +
		message("app@sender.test", "<pipe-2@e2e.test>", "pipelined 2", 100) + ".\r\n")
	var codes []int
	for _, want := range []int{250, 250, 250, 354, 250} {
		code, msg := rc.reply()
		codes = append(codes, code)
		if code/100 == 5 {
			break
		}
		if code != want {
			t.Errorf("pipelining: got %d %s, want %d (replies so far %v)", code, msg, want, codes)
			break
		}
	}
	if code, _ := rc.cmd("VRFY postmaster"); code != 252 {
		t.Errorf("pipelining: replies out of step (%v, then %d)", codes, code)
	}
	rc.cmd("QUIT")
	pipelined := len(codes) == 5 && codes[4] == 250
	if pipelined {
		accepted["<pipe-1@e2e.test>"], accepted["<pipe-2@e2e.test>"] = true, true
	} else if codes[0] == 250 {
		accepted["<pipe-1@e2e.test>"] = true
	}

	mx.WaitMessages(t, len(accepted))
	time.Sleep(time.Second) // a smuggled message would have arrived by now
	got := messageIDs(mx.Messages())
	for id := range accepted {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times, want 1", id, got[id])
		}
	}
	for _, m := range mx.Messages() {
		if m.From == "ceo@bank.test" || strings.HasPrefix(headerValue(m.Data, "Subject"), "SMUGGLED") {
			t.Errorf("a smuggled message arrived on its own: from %q\n%q", m.From, m.Data)
		}
		if n := m.BareCRLF(); n != 0 {
			t.Errorf("%s arrived with %d bare CR/LF: %q", headerValue(m.Data, "Message-ID"), n, m.Data)
		}
		if !accepted[headerValue(m.Data, "Message-ID")] {
			t.Errorf("unexpected message %q", headerValue(m.Data, "Message-ID"))
		}
	}
	var lines []string
	for _, v := range smuggleVariants {
		lines = append(lines, fmt.Sprintf("%s %q: %s", v.names, v.seq, outcome[v.names]))
	}
	report(t, "%d end-of-data variants, none split, no bare CR/LF relayed, no smuggled message: %s; pipelining: replies %v, %d messages each once",
		len(smuggleVariants), strings.Join(lines, "; "), codes, len(got)-len(outcome)+countRefused(outcome))
}

func countRefused(o map[string]string) int {
	n := 0
	for _, v := range o {
		if strings.HasPrefix(v, "refused") {
			n++
		}
	}
	return n
}

// Oversize messages and too many recipients through the real binary: SIZE=
// above the limit is refused at MAIL, a body above it with 552 5.3.4 after
// the final dot with the session still in step, a recipient past the limit
// with 452 4.5.3 while the earlier ones are kept, and an overlong command
// line ends the session with 500.
func TestLimits(t *testing.T) {
	w := newWorld(t)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	w.submission = `max_message_size = 8000
max_recipients = 3`
	d := w.start("")
	rc := dialRaw(t, d.submit)
	ehlo := rc.must("EHLO app.test", 250)
	if !strings.Contains(ehlo, "SIZE 8000") {
		t.Errorf("EHLO does not advertise SIZE 8000:\n%s", ehlo)
	}
	if code, msg := rc.cmd("MAIL FROM:<app@sender.test> SIZE=100000"); code != 552 {
		t.Errorf("MAIL with SIZE=100000: %d %s", code, msg)
	}
	rc.cmd("RSET")
	code, msg := rc.send("app@sender.test", []string{"r@dest.test"}, message("app@sender.test", "<big@e2e.test>", "big", 20000))
	if code != 552 || !strings.Contains(msg, "5.3.4") {
		t.Errorf("oversize body: %d %s", code, msg)
	}
	rc.must("MAIL FROM:<app@sender.test>", 250)
	for i := 1; i <= 3; i++ {
		rc.must(fmt.Sprintf("RCPT TO:<r%d@dest.test>", i), 250)
	}
	if code, msg := rc.cmd("RCPT TO:<r4@dest.test>"); code != 452 || !strings.Contains(msg, "4.5.3") {
		t.Errorf("fourth recipient: %d %s", code, msg)
	}
	rc.must("DATA", 354)
	rc.raw(message("app@sender.test", "<three@e2e.test>", "three", 500) + ".\r\n")
	if code, msg := rc.reply(); code != 250 {
		t.Fatalf("after the limits, a good message: %d %s", code, msg)
	}
	// An overlong command line.
	if code, msg := rc.cmd("NOOP " + strings.Repeat("x", 3000)); code != 500 {
		t.Errorf("a 3000-byte command: %d %s", code, msg)
	}
	if code, _ := rc.cmd("NOOP"); code != 0 {
		t.Errorf("the session survived an overlong line")
	}
	msgs := mx.WaitMessages(t, 1)
	time.Sleep(300 * time.Millisecond)
	rcpts := 0
	for _, m := range mx.Messages() {
		rcpts += len(m.Rcpts)
		if headerValue(m.Data, "Message-ID") == "<big@e2e.test>" {
			t.Errorf("the oversize message was delivered")
		}
	}
	if rcpts != 3 {
		t.Errorf("%d recipients got the message (%d transactions), want 3", rcpts, len(msgs))
	}
	report(t, "SIZE= over the limit 552; body over it 552 5.3.4 and the session stayed in step; 4th recipient 452 4.5.3, 3 delivered; a 3000-byte command ended the session with 500")
}

// dribble is a client that writes b one byte per interval, while reading
// everything kiln sends. It stops when kiln closes the connection (or the
// write fails) and reports whether kiln closed it before all of b was sent,
// what kiln said, and when.
type dribble struct {
	closedEarly bool
	sent        int
	said        string
	after       time.Duration
}

func dribbleBytes(t *testing.T, addr, prefix, b string, every time.Duration) dribble {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return dribble{}
	}
	defer c.Close()
	var mu sync.Mutex
	var said strings.Builder
	closed := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			mu.Lock()
			said.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				close(closed)
				return
			}
		}
	}()
	start := time.Now()
	if prefix != "" {
		c.Write([]byte(prefix))
	}
	var r dribble
	for r.sent = 0; r.sent < len(b); r.sent++ {
		select {
		case <-closed:
			r.closedEarly = true
		case <-time.After(every):
		}
		if r.closedEarly {
			break
		}
		if _, err := c.Write([]byte{b[r.sent]}); err != nil {
			r.closedEarly = true
			break
		}
	}
	if r.closedEarly {
		r.after = time.Since(start)
	}
	mu.Lock()
	r.said = said.String()
	mu.Unlock()
	return r
}

// Slow clients: with read_timeout = 2s and session_timeout = 8s, a client
// dribbling a command one byte a second is closed with 421 at the read
// timeout, one dribbling a message body is closed too, and one that keeps
// sending NOOPs (never idle) is closed at the session limit; meanwhile a
// normal client is served. Time is reported, not asserted: each dribbler
// would need far longer to finish than the limits allow.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	w.submission = `read_timeout = "2s"
session_timeout = "8s"`
	d := w.start("")

	var wg sync.WaitGroup
	results := make([]dribble, 21)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = dribbleBytes(t, d.submit, "", "EHLO a-slow-client-that-never-finishes.test\r\n", time.Second)
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[20] = dribbleBytes(t, d.submit, "EHLO body.test\r\nMAIL FROM:<app@sender.test>\r\nRCPT TO:<r@dest.test>\r\nDATA\r\n",
			"From: <app@sender.test>\r\n\r\n"+strings.Repeat("a slow body line\r\n", 4)+".\r\n", time.Second)
	}()
	noop := make(chan dribble, 1)
	go func() {
		c, err := net.Dial("tcp", d.submit)
		if err != nil {
			noop <- dribble{}
			return
		}
		defer c.Close()
		start := time.Now()
		r := dribble{}
		buf := make([]byte, 4096)
		for r.sent = 0; r.sent < 60; r.sent++ {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write([]byte("NOOP\r\n")); err != nil {
				r.closedEarly = true
				break
			}
			if _, err := c.Read(buf); err != nil {
				r.closedEarly = true
				break
			}
			time.Sleep(time.Second)
		}
		r.after = time.Since(start)
		noop <- r
	}()

	// A normal client is served while they dribble.
	time.Sleep(500 * time.Millisecond)
	if _, err := submit(d.submit, "app@sender.test", "r@dest.test", "<normal@e2e.test>"); err != nil {
		t.Errorf("a normal client was not served among slow ones: %v", err)
	}
	mx.WaitMessages(t, 1)
	wg.Wait()
	n := <-noop

	for i, r := range results[:20] {
		if !r.closedEarly || !strings.Contains(r.said, "421") {
			// kiln's read timeout must end the session with 421; a
			// session that ends only at the session limit says nothing.
			t.Errorf("command dribbler %d: not closed at the read timeout (closed by kiln: %v, after %v and %d bytes); kiln said %q",
				i, r.closedEarly, r.after.Round(100*time.Millisecond), r.sent, r.said)
			if i >= 2 {
				t.Errorf("(and so did the other command dribblers)")
				break
			}
		}
	}
	// After the DATA timeout kiln says 421 and must hang up: nothing more
	// of the body may be read as commands.
	body := results[20]
	_, afterTimeout, _ := strings.Cut(body.said, "421 4.4.2 Timeout waiting for the client, closing connection\r\n")
	if !body.closedEarly || !strings.Contains(body.said, "421 4.4.2") {
		t.Errorf("body dribbler: closed by kiln %v; kiln said %q", body.closedEarly, body.said)
	}
	for _, l := range strings.Split(strings.TrimSpace(afterTimeout), "\r\n") {
		if l != "" && !strings.HasPrefix(l, "421") {
			t.Errorf("body dribbler: after the DATA timeout kiln read the rest of the body as commands and answered %q", l)
		}
	}
	if !n.closedEarly {
		t.Errorf("NOOP client: kept its session for %d NOOPs (%v)", n.sent, n.after)
	}
	report(t, "read_timeout 2s, session_timeout 8s: 20 command dribblers closed after %v (%d of 45 bytes sent; kiln said %q); body dribbler closed after %v (after the DATA timeout kiln said %q); NOOP-every-second client closed after %v (%d NOOPs); a normal client was served meanwhile",
		results[0].after.Round(100*time.Millisecond), results[0].sent, strings.TrimPrefix(results[0].said, "220 kiln.test ESMTP Service Ready\r\n"),
		body.after.Round(100*time.Millisecond), afterTimeout, n.after.Round(100*time.Millisecond), n.sent)
}
