package mta

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln/configs"
	"kiln/internal/fakedns"
	"kiln/internal/fakemx"
)

var testHash = func() string {
	h, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	return string(h)
}()

// untrusted makes loopback an untrusted network, so the test client is a
// stranger unless it authenticates.
func untrusted(c *configs.Config) {
	c.Submission.TrustedNetworks = nil
	c.Accounts = []configs.Account{{Name: "news", PasswordHash: testHash, SenderDomains: []string{"news.test"}}}
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestNoOpenRelay(t *testing.T) {
	w := newWorld(t, untrusted)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO stranger.test", 250)
	if code, msg := c.cmd("MAIL FROM:<spam@news.test>"); code != 530 || !strings.Contains(msg, "5.7.0") {
		t.Fatalf("unauthenticated MAIL: %d %s", code, msg)
	}
	if code, _ := c.cmd("RCPT TO:<victim@elsewhere.test>"); code/100 != 5 {
		t.Fatalf("unauthenticated RCPT: %d", code)
	}
	if n, _, _ := w.srv.store.Count(); n != 0 {
		t.Fatalf("%d messages queued", n)
	}
}

func TestAuthAndSenderDomains(t *testing.T) {
	w := newWorld(t, untrusted)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	ehlo := c.must("EHLO app.test", 250)
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("AUTH not offered to a loopback client:\n%s", ehlo)
	}
	c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
	if code, msg := c.cmd("MAIL FROM:<ceo@bank.test>"); code != 553 || !strings.Contains(msg, "bank.test") {
		t.Fatalf("foreign sender domain: %d %s", code, msg)
	}
	c.must("RSET", 250)
	// A subdomain of a sender domain is the account's too.
	c.must("MAIL FROM:<bounces@mail.news.test>", 250)
	c.must("RCPT TO:<r@dest.test>", 250)
	c.must("DATA", 354)
	c.raw("From: CEO <ceo@bank.test>\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
	if code, msg := c.reply(); code != 553 || !strings.Contains(msg, "bank.test") {
		t.Fatalf("foreign From header: %d %s", code, msg)
	}
	if code, msg := c.send("news@news.test", []string{"r@dest.test"}, msgText("News <news@news.test>", "ok")); code != 250 {
		t.Fatalf("own domain refused: %d %s", code, msg)
	}
	m := mx.WaitMessages(t, 1)[0]
	if !bytes.Contains(m.Data, []byte("with ESMTPA id")) {
		t.Errorf("Received does not say ESMTPA:\n%s", m.Data)
	}

	// LOGIN works too.
	c2 := dialSMTP(t, w.submitAddr())
	c2.must("EHLO app.test", 250)
	c2.must("AUTH LOGIN", 334)
	c2.must(base64.StdEncoding.EncodeToString([]byte("news")), 334)
	c2.must(base64.StdEncoding.EncodeToString([]byte("s3cret")), 235)
}

func TestAuthGuessingIsLimited(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) {
		untrusted(c)
		c.Submission.AuthFailures = 3
	})
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO guesser.test", 250)
	for i := 0; i < 3; i++ {
		if code, msg := c.cmd("AUTH PLAIN " + plain("news", "wrong")); code != 535 || !strings.Contains(msg, "5.7.8") {
			t.Fatalf("wrong password %d: %d %s", i, code, msg)
		}
	}
	// The right password is refused too while the address is locked out.
	if code, msg := c.cmd("AUTH PLAIN " + plain("news", "s3cret")); code != 454 || !strings.Contains(msg, "4.7.0") {
		t.Fatalf("after the limit: %d %s", code, msg)
	}
	// The window is on kiln's clock: after it, the address may try again.
	w.clk.Advance(6 * time.Minute)
	c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
}

func TestAuthOnlyOverTLSUnlessLoopback(t *testing.T) {
	w := newWorld(t, untrusted)
	stranger := &session{s: w.srv, ip: netip.MustParseAddr("192.0.2.7")}
	if m := stranger.AuthMechanisms(); m != nil {
		t.Fatalf("AUTH offered in plaintext to a remote client: %v", m)
	}
	if _, err := stranger.Auth("PLAIN"); err != errEncryptionReq {
		t.Fatalf("AUTH in plaintext from a remote client: %v", err)
	}
	overTLS := &session{s: w.srv, ip: netip.MustParseAddr("192.0.2.7"), tls: true}
	if m := overTLS.AuthMechanisms(); len(m) != 2 {
		t.Fatalf("AUTH not offered over TLS: %v", m)
	}
}

func TestLimits(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) {
		c.Submission.MaxMessageSize = 2000
		c.Submission.MaxRecipients = 2
	})
	w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)

	// Too many recipients.
	c.must("MAIL FROM:<a@sender.test>", 250)
	c.must("RCPT TO:<r1@dest.test>", 250)
	c.must("RCPT TO:<r2@dest.test>", 250)
	if code, msg := c.cmd("RCPT TO:<r3@dest.test>"); code != 452 || !strings.Contains(msg, "4.5.3") {
		t.Fatalf("third recipient: %d %s", code, msg)
	}
	c.must("RSET", 250)

	// Oversize: refused with 552 5.3.4 and the session stays in sync.
	c.must("MAIL FROM:<a@sender.test>", 250)
	c.must("RCPT TO:<r1@dest.test>", 250)
	c.must("DATA", 354)
	c.raw(msgText("a@sender.test", "big") + strings.Repeat("0123456789012345678901234567890123456789\r\n", 100) + ".\r\n")
	if code, msg := c.reply(); code != 552 || !strings.Contains(msg, "5.3.4") {
		t.Fatalf("oversize: %d %s", code, msg)
	}
	if code, msg := c.send("a@sender.test", []string{"r1@dest.test"}, msgText("a@sender.test", "small")); code != 250 {
		t.Fatalf("after the oversize refusal: %d %s", code, msg)
	}

	// Malformed addresses.
	for _, bad := range []string{"MAIL FROM:<no-at-sign>", "MAIL FROM:<a@-bad-.test>"} {
		if code, _ := c.cmd(bad); code != 553 && code != 501 {
			t.Errorf("%s: %d", bad, code)
		}
	}
	c.must("MAIL FROM:<a@sender.test>", 250)
	if code, _ := c.cmd("RCPT TO:<two@@dest.test>"); code != 553 && code != 501 {
		t.Errorf("malformed recipient: %d", code)
	}
}

// Only CRLF.CRLF ends the data. <LF>.<LF> and <LF>.<CR><LF> inside it do not
// split the message, a bare LF is turned into CRLF, and what kiln relays
// carries no bare line ending at all: nothing to smuggle past a receiver.
func TestSmugglingSequencesAreNeutralised(t *testing.T) {
	w := newWorld(t, nil)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.must("MAIL FROM:<a@sender.test>", 250)
	c.must("RCPT TO:<r@dest.test>", 250)
	c.must("DATA", 354)
	c.raw("From: a@sender.test\r\nSubject: smuggle\r\n\r\nline one\n.\nMAIL FROM:<ceo@bank.test>\nline two\n.\r\nRCPT TO:<x@dest.test>\r\nend\r\n.\r\n")
	if code, msg := c.reply(); code != 250 {
		t.Fatalf("DATA: %d %s", code, msg)
	}
	c.must("QUIT", 221)
	got := mx.WaitMessages(t, 1)
	time.Sleep(200 * time.Millisecond)
	if len(mx.Messages()) != 1 {
		t.Fatalf("the data was split into %d messages", len(mx.Messages()))
	}
	if n := got[0].BareCRLF(); n != 0 {
		t.Fatalf("relayed message carries %d bare CR/LF:\n%q", n, got[0].Data)
	}
	if !bytes.Contains(got[0].Data, []byte("line one\r\n.\r\nMAIL FROM:<ceo@bank.test>\r\nline two\r\n.\r\nRCPT TO:")) {
		t.Fatalf("content changed beyond line endings:\n%q", got[0].Data)
	}
}

func TestBareCRAndNULRefused(t *testing.T) {
	w := newWorld(t, nil)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	for _, body := range []string{"a\r.\r\nb\r\n", "with a \x00 byte\r\n", "a\r\r\n.\r\r\nend\r\n"} {
		c.must("MAIL FROM:<a@sender.test>", 250)
		c.must("RCPT TO:<r@dest.test>", 250)
		c.must("DATA", 354)
		c.raw("From: a@sender.test\r\n\r\n" + body + ".\r\n")
		if code, msg := c.reply(); code != 550 || !strings.Contains(msg, "5.6.0") {
			t.Fatalf("%q: %d %s", body, code, msg)
		}
	}
	if n, _, _ := w.srv.store.Count(); n != 0 {
		t.Fatalf("%d refused messages were queued", n)
	}
}

func TestFromHeaderRequired(t *testing.T) {
	w := newWorld(t, nil)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	for data, want := range map[string]string{
		"Subject: none\r\n\r\nx\r\n":                       "no From",
		"From: a@x.test\r\nFrom: b@y.test\r\n\r\nx\r\n":    "more than one From",
		"From: a@sender.test\r\nSubject: ok\r\n\r\nok\r\n": "",
	} {
		code, msg := c.send("a@sender.test", []string{"r@dest.test"}, data)
		if want == "" {
			if code != 250 {
				t.Errorf("good message refused: %d %s", code, msg)
			}
			continue
		}
		if code != 550 || !strings.Contains(msg, want) || !strings.Contains(msg, "5.6.0") {
			t.Errorf("%q: %d %s", data, code, msg)
		}
	}
}

func TestSilentClientIsDisconnected(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) { c.Submission.ReadTimeout = configs.Duration(300 * time.Millisecond) })
	conn, err := net.Dial("tcp", w.submitAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if l := readLine(conn); !strings.HasPrefix(l, "220") {
		t.Fatalf("greeting %q", l)
	}
	// Say nothing: kiln closes with 421 after the read timeout.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "421") {
		t.Fatalf("after silence got %q", buf[:n])
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) { c.Submission.MaxConnectionsPerIP = 2 })
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", w.submitAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if l := readLine(c); !strings.HasPrefix(l, "220") {
			t.Fatalf("connection %d: %q", i, l)
		}
		conns = append(conns, c)
	}
	third, err := net.Dial("tcp", w.submitAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if l := readLine(third); !strings.HasPrefix(l, "421 4.7.0") {
		t.Fatalf("third connection: %q", l)
	}
	conns[0].Close()
	waitFor(t, "a slot to free", func() bool {
		c, err := net.Dial("tcp", w.submitAddr())
		if err != nil {
			return false
		}
		defer c.Close()
		return strings.HasPrefix(readLine(c), "220")
	})
}

func TestRecipientDomainCheck(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) {
		untrusted(c)
		c.Accounts[0].CheckRecipientDomains = true
	})
	w.domain("dest.test", 2)
	w.dns.AddNullMX("nomail.test")
	w.dns.SetFault("broken.test", fakedns.ServFail) // a DNS failure accepts
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
	c.must("MAIL FROM:<a@news.test>", 250)
	c.must("RCPT TO:<r@dest.test>", 250)
	for addr, want := range map[string]string{"r@nxdomain.test": "550 5.1.2", "r@nomail.test": "556 5.1.10"} {
		code, msg := c.cmd("RCPT TO:<" + addr + ">")
		if got := strings.Fields(fmt.Sprintf("%d %s", code, msg)); len(got) < 2 || got[0]+" "+got[1] != want {
			t.Errorf("%s: %d %s, want %s", addr, code, msg, want)
		}
	}
	if code, msg := c.cmd("RCPT TO:<r@broken.test>"); code != 250 {
		t.Errorf("a DNS failure refused the recipient: %d %s", code, msg)
	}
}
