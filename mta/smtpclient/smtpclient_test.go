package smtpclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/internal/fakemx"
)

var bg = context.Background()

// dialer returns a Dialer with test-sized timeouts.
func dialer() *Dialer {
	return &Dialer{
		LocalName:        "out.kiln.test",
		ConnectTimeout:   2 * time.Second,
		GreetingTimeout:  2 * time.Second,
		EHLOTimeout:      2 * time.Second,
		TLSTimeout:       2 * time.Second,
		MailTimeout:      2 * time.Second,
		RcptTimeout:      2 * time.Second,
		DataInitTimeout:  2 * time.Second,
		DataBlockTimeout: 2 * time.Second,
		DataDoneTimeout:  2 * time.Second,
		QuitTimeout:      100 * time.Millisecond,
	}
}

func mustDial(t *testing.T, d *Dialer, addr string) *Client {
	t.Helper()
	c, err := d.Dial(bg, addr, "mx.fakemx.test")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dialErr(t *testing.T, d *Dialer, addr string) *Error {
	t.Helper()
	c, err := d.Dial(bg, addr, "mx.fakemx.test")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not *Error", err, err)
	}
	return e
}

const body = "From: a@sender.test\r\nTo: x@dest.test\r\nSubject: hello\r\n\r\nHello.\r\n"

func TestMixedRecipientOutcomes(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Rules: fakemx.ConventionRules()})
	c := mustDial(t, dialer(), mx.Addr())
	rcpts := []string{"ok1@dest.test", "hard1@dest.test", "soft1@dest.test", "full1@dest.test", "ok2@dest.test"}
	res := c.Send(bg, "a@sender.test", rcpts, []byte(body))
	if res.Err != nil || !res.DataSent {
		t.Fatalf("result %+v", res)
	}
	want := []struct {
		code     int
		enhanced string
		command  string
	}{{250, "2.0.0", "DOT"}, {550, "5.1.1", "RCPT"}, {450, "4.2.1", "RCPT"}, {452, "4.2.2", "RCPT"}, {250, "2.0.0", "DOT"}}
	for i, w := range want {
		r := res.Rcpts[i]
		if r.Code != w.code || r.Enhanced != w.enhanced || r.Command != w.command || r.Host != "mx.fakemx.test" {
			t.Errorf("%s: %+v, want %d %s %s", rcpts[i], r, w.code, w.enhanced, w.command)
		}
	}
	if !strings.Contains(res.Rcpts[1].Line, "<hard1@dest.test>: user unknown") {
		t.Errorf("hard line %q", res.Rcpts[1].Line)
	}
	if !strings.HasPrefix(res.Reply.Line, "250 2.0.0 OK: queued as Q") {
		t.Errorf("final reply %q lacks the remote queue id", res.Reply.Line)
	}
	m := mx.WaitMessages(t, 1)[0]
	if strings.Join(m.Rcpts, ",") != "ok1@dest.test,ok2@dest.test" || string(m.Data) != body || m.From != "a@sender.test" {
		t.Errorf("received %q %v %q", m.From, m.Rcpts, m.Data)
	}
	if !m.TLS || m.Helo != "out.kiln.test" || m.Size != int64(len(body)) || m.Body != "" {
		t.Errorf("record %+v", m)
	}
	if info := c.TLS(); info.Version == "" || info.Cipher == "" || info.Fallback != "" || info.Verified {
		t.Errorf("TLS info %+v", info)
	}
}

func TestGreetingRefused(t *testing.T) {
	for _, tc := range []struct {
		code     int
		enhanced string
	}{{421, "4.7.0"}, {554, "5.7.1"}} {
		mx := fakemx.Start(t, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageConnect, Code: tc.code, Enhanced: tc.enhanced, Text: "go away"}}})
		e := dialErr(t, dialer(), mx.Addr())
		r := e.Reply
		if r.Code != tc.code || r.Enhanced != tc.enhanced || r.Command != "CONNECT" || r.Host != "mx.fakemx.test" || r.Line != fmt.Sprintf("%d %s go away", tc.code, tc.enhanced) {
			t.Errorf("%d: %+v", tc.code, r)
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	e := dialErr(t, dialer(), addr)
	r := e.Reply
	if r.Code != 0 || !r.Temporary || r.Command != "CONNECT" || r.Enhanced != "4.4.1" || !strings.Contains(r.Line, "refused") {
		t.Errorf("%+v", r)
	}
}

func TestMailRefusedThenNextTransaction(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageMail, Match: "*@blocked.test", Code: 550, Enhanced: "5.7.1", Text: "sender blocked"}}})
	c := mustDial(t, dialer(), mx.Addr())
	res := c.Send(bg, "me@blocked.test", []string{"a@dest.test", "b@dest.test"}, []byte(body))
	for _, r := range res.Rcpts {
		if r.Code != 550 || r.Command != "MAIL" || r.Line != "550 5.7.1 sender blocked" {
			t.Errorf("rcpt %+v", r)
		}
	}
	if res.Err != nil || res.DataSent || res.Reply.Code != 550 {
		t.Errorf("result %+v", res)
	}
	res = c.Send(bg, "me@ok.test", []string{"a@dest.test"}, []byte(body))
	if res.Err != nil || res.Rcpts[0].Code != 250 {
		t.Fatalf("after a refused MAIL: %+v", res)
	}
	if st := mx.Stats(); st.Sessions != 1 || st.Messages != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAllRecipientsRefused(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Rules: fakemx.ConventionRules()})
	c := mustDial(t, dialer(), mx.Addr())
	res := c.Send(bg, "a@sender.test", []string{"hard1@dest.test", "hard2@dest.test"}, []byte(body))
	if res.DataSent || res.Err != nil || res.Reply.Code != 550 || res.Rcpts[1].Code != 550 || res.Rcpts[1].Command != "RCPT" {
		t.Fatalf("%+v", res)
	}
	if st := mx.Stats(); st.Transactions != 0 {
		t.Errorf("a body was sent: %+v", st)
	}
	if res := c.Send(bg, "a@sender.test", []string{"ok@dest.test"}, []byte(body)); res.Rcpts[0].Code != 250 {
		t.Fatalf("next transaction: %+v", res)
	}
}

func TestDropAfterData(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Rules: fakemx.ConventionRules()})
	c := mustDial(t, dialer(), mx.Addr())
	res := c.Send(bg, "a@sender.test", []string{"drop1@dest.test", "hard@dest.test"}, []byte(body))
	r := res.Rcpts[0]
	if r.Code != 0 || !r.Temporary || r.Command != "DOT" || !strings.Contains(r.Line, "may have been delivered") {
		t.Errorf("dropped rcpt %+v", r)
	}
	if res.Rcpts[1].Code != 550 {
		t.Errorf("refused rcpt lost its own reply: %+v", res.Rcpts[1])
	}
	if !res.DataSent || res.Err == nil || c.Usable() {
		t.Errorf("result %+v usable %v", res, c.Usable())
	}
	if res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body)); !errors.Is(res.Err, ErrClosed) || res.Rcpts[0].Code != 0 || !res.Rcpts[0].Temporary {
		t.Errorf("send on a broken client: %+v", res)
	}
}

func TestRejectedAfterDot(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Rules: fakemx.ConventionRules()})
	c := mustDial(t, dialer(), mx.Addr())
	res := c.Send(bg, "a@sender.test", []string{"ok@dest.test", "spam@dest.test"}, []byte(body))
	for _, r := range res.Rcpts {
		if r.Code != 554 || r.Enhanced != "5.7.1" || r.Command != "DOT" {
			t.Errorf("%+v", r)
		}
	}
	if !res.DataSent || res.Err != nil || !c.Usable() {
		t.Errorf("%+v", res)
	}
}

func Test421MidTransaction(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageRcpt, Match: "second@*", Code: 421, Enhanced: "4.7.0", Text: "too many errors"}}})
	c := mustDial(t, dialer(), mx.Addr())
	res := c.Send(bg, "a@sender.test", []string{"first@dest.test", "second@dest.test", "third@dest.test"}, []byte(body))
	for _, r := range res.Rcpts {
		if r.Code != 421 || r.Command != "RCPT" {
			t.Errorf("%+v", r)
		}
	}
	if res.Err == nil || c.Usable() {
		t.Errorf("421 did not end the connection")
	}
}

func TestHungServers(t *testing.T) {
	d := dialer()
	d.GreetingTimeout = 150 * time.Millisecond
	d.MailTimeout = 150 * time.Millisecond
	d.DataDoneTimeout = 150 * time.Millisecond

	silent := fakemx.StartRaw(t, fakemx.Silent)
	start := time.Now()
	e := dialErr(t, d, silent.Addr())
	if e.Reply.Command != "CONNECT" || !e.Reply.Temporary || !strings.Contains(e.Reply.Line, "timed out") {
		t.Errorf("silent: %+v", e.Reply)
	}
	if time.Since(start) > time.Second {
		t.Errorf("took %v", time.Since(start))
	}

	hangAt := func(stage string) *fakemx.Raw {
		return fakemx.StartRaw(t, func(c *fakemx.RawConn) {
			c.Send("220 hang.test ESMTP")
			c.Expect("EHLO")
			c.Send("250-hang.test", "250 PIPELINING")
			for {
				l, err := c.ReadLine()
				if err != nil {
					return
				}
				switch {
				case strings.HasPrefix(l, stage):
					c.Hang()
					return
				case strings.HasPrefix(l, "DATA"):
					c.Send("250 ok", "250 ok", "354 go")
					c.ReadData()
					c.Hang()
					return
				}
			}
		})
	}
	c := mustDial(t, d, hangAt("MAIL").Addr())
	res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body))
	if r := res.Rcpts[0]; r.Command != "MAIL" || r.Code != 0 || !r.Temporary || !strings.Contains(r.Line, "timed out") {
		t.Errorf("hung at MAIL: %+v", r)
	}

	c = mustDial(t, d, hangAt("never").Addr())
	res = c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body))
	if r := res.Rcpts[0]; r.Command != "DOT" || r.Code != 0 || !res.DataSent {
		t.Errorf("hung after the dot: %+v", res)
	}
}

func TestContextCancelClosesConnection(t *testing.T) {
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 x ESMTP")
		c.Expect("EHLO")
		c.Send("250 x")
		c.Expect("MAIL")
		c.Send("250 ok")
		c.Hang() // never answers RCPT
	})
	c := mustDial(t, dialer(), srv.Addr())
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := c.Send(ctx, "a@sender.test", []string{"x@dest.test"}, []byte(body))
	if time.Since(start) > time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
	if r := res.Rcpts[0]; r.Command != "RCPT" || !r.Temporary || !strings.Contains(r.Line, "canceled") {
		t.Errorf("%+v", r)
	}
	if c.Usable() {
		t.Error("client usable after cancel")
	}
}

func TestSTARTTLSSaysOurNameTwice(t *testing.T) {
	var trace bytes.Buffer
	var mu sync.Mutex
	mx := fakemx.Start(t, fakemx.Config{Debug: writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return trace.Write(p)
	})})
	c := mustDial(t, dialer(), mx.Addr())
	c.Close()
	mu.Lock()
	tr := trace.String()
	mu.Unlock()
	if strings.Count(tr, "EHLO out.kiln.test") != 2 || strings.Contains(tr, "localhost") || !strings.Contains(tr, "STARTTLS") {
		t.Errorf("trace:\n%s", tr)
	}
	if mx.Stats().TLS != 1 {
		t.Errorf("stats %+v", mx.Stats())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestBrokenTLSFallsBackToPlaintext(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSBroken})
	c := mustDial(t, dialer(), mx.Addr())
	info := c.TLS()
	if info.Version != "" || !strings.Contains(info.Fallback, "TLS handshake failed") {
		t.Errorf("TLS info %+v", info)
	}
	if res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body)); res.Rcpts[0].Code != 250 {
		t.Fatalf("%+v", res)
	}
	m := mx.WaitMessages(t, 1)[0]
	if m.TLS || m.Session != 2 {
		t.Errorf("record %+v", m)
	}
}

func TestTLSRequired(t *testing.T) {
	d := dialer()
	d.TLS = TLSRequired

	plain := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff})
	e := dialErr(t, d, plain.Addr())
	if r := e.Reply; r.Command != "STARTTLS" || r.Code != 0 || !r.Temporary || !strings.Contains(r.Line, "does not offer STARTTLS") {
		t.Errorf("no STARTTLS: %+v", r)
	}

	broken := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSBroken})
	e = dialErr(t, d, broken.Addr())
	if r := e.Reply; r.Command != "STARTTLS" || r.Code != 0 || !r.Temporary || !errors.Is(e, ErrTLSHandshake) {
		t.Errorf("broken: %+v", r)
	}
	if broken.Stats().Sessions != 1 {
		t.Errorf("required mode fell back to plaintext")
	}

	good := fakemx.Start(t, fakemx.Config{})
	c := mustDial(t, d, good.Addr())
	if c.TLS().Version == "" {
		t.Error("no TLS")
	}
}

func TestVerifyTLS(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Domain: "mx.verified.test"})
	d := dialer()
	d.TLS, d.VerifyTLS, d.RootCAs = TLSRequired, true, mx.CertPool()
	c, err := d.Dial(bg, mx.Addr(), "mx.verified.test")
	if err != nil {
		t.Fatal(err)
	}
	if !c.TLS().Verified {
		t.Error("not marked verified")
	}
	c.Close()
	if _, err := d.Dial(bg, mx.Addr(), "other.test"); !errors.Is(err, ErrTLSHandshake) {
		t.Errorf("wrong name: %v", err)
	}
	d.RootCAs = nil // system roots do not know the self-signed certificate
	if _, err := d.Dial(bg, mx.Addr(), "mx.verified.test"); !errors.Is(err, ErrTLSHandshake) {
		t.Errorf("unknown CA: %v", err)
	}
}

func TestTLSNone(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{})
	d := dialer()
	d.TLS = TLSNone
	c := mustDial(t, d, mx.Addr())
	if c.TLS() != (TLSInfo{}) || mx.Stats().TLS != 0 {
		t.Errorf("TLS used: %+v", c.TLS())
	}
}

// lockstep is a raw server without PIPELINING that checks the client waits
// for every reply, and records what it got.
func lockstep(t *testing.T, got chan<- string) *fakemx.Raw {
	return fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 lockstep.test ESMTP")
		c.Expect("EHLO")
		c.Send("250-lockstep.test", "250 8BITMIME")
		for {
			l, err := c.ReadLine()
			if err != nil {
				return
			}
			if !c.Quiet(30 * time.Millisecond) {
				got <- "PIPELINED after " + l
				return
			}
			got <- l
			switch {
			case strings.HasPrefix(l, "RCPT TO:<bad"):
				c.Send("550 5.1.1 no such user")
			case strings.HasPrefix(l, "DATA"):
				c.Send("354 go ahead")
				data, _ := c.ReadData()
				got <- "BODY " + string(data)
				c.Send("250 2.0.0 ok")
			case strings.HasPrefix(l, "QUIT"):
				c.Send("221 bye")
				return
			default:
				c.Send("250 ok")
			}
		}
	})
}

func TestWithoutPipelining(t *testing.T) {
	got := make(chan string, 100)
	srv := lockstep(t, got)
	c := mustDial(t, dialer(), srv.Addr())
	res := c.Send(bg, "a@sender.test", []string{"bad@dest.test", "x@dest.test"}, []byte(".dot\r\nline\r\n"))
	if res.Rcpts[0].Code != 550 || res.Rcpts[1].Code != 250 || res.Rcpts[1].Command != "DOT" {
		t.Fatalf("%+v", res)
	}
	res = c.Send(bg, "a@sender.test", []string{"bad@dest.test"}, []byte("x\r\n"))
	if res.Rcpts[0].Code != 550 {
		t.Fatalf("%+v", res)
	}
	res = c.Send(bg, "a@sender.test", []string{"y@dest.test"}, []byte("y\r\n"))
	if res.Rcpts[0].Code != 250 {
		t.Fatalf("%+v", res)
	}
	c.Close()
	var lines []string
	for l := range got {
		lines = append(lines, l)
		if l == "QUIT" {
			break
		}
	}
	want := []string{
		"MAIL FROM:<a@sender.test>", "RCPT TO:<bad@dest.test>", "RCPT TO:<x@dest.test>", "DATA", "BODY ..dot\r\nline\r\n",
		"MAIL FROM:<a@sender.test>", "RCPT TO:<bad@dest.test>",
		"RSET", "MAIL FROM:<a@sender.test>", "RCPT TO:<y@dest.test>", "DATA", "BODY y\r\n",
		"QUIT",
	}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("dialogue:\n got %q\nwant %q", lines, want)
	}
}

func TestPipeliningSendsOneBatch(t *testing.T) {
	batch := make(chan string, 1)
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 p.test ESMTP")
		c.Expect("EHLO")
		c.Send("250-p.test", "250 PIPELINING")
		var lines []string
		for range 4 {
			l, _ := c.ReadLine()
			lines = append(lines, l)
		}
		batch <- strings.Join(lines, "|")
		c.Send("250 ok", "250 ok", "550 5.1.1 no", "354 go")
		c.ReadData()
		c.Send("250 done")
		c.Hang()
	})
	c := mustDial(t, dialer(), srv.Addr())
	res := c.Send(bg, "a@sender.test", []string{"x@dest.test", "bad@dest.test"}, []byte(body))
	if got := <-batch; got != "MAIL FROM:<a@sender.test>|RCPT TO:<x@dest.test>|RCPT TO:<bad@dest.test>|DATA" {
		t.Errorf("batch %q", got)
	}
	if res.Rcpts[0].Code != 250 || res.Rcpts[1].Code != 550 {
		t.Errorf("%+v", res)
	}
}

func TestReuseManyTransactions(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff})
	c := mustDial(t, dialer(), mx.Addr())
	for i := range 25 {
		msg := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)
		res := c.Send(bg, "a@sender.test", []string{fmt.Sprintf("r%d@dest.test", i)}, []byte(msg))
		if res.Err != nil || res.Rcpts[0].Code != 250 {
			t.Fatalf("transaction %d: %+v", i, res)
		}
	}
	msgs := mx.WaitMessages(t, 25)
	if st := mx.Stats(); st.Sessions != 1 || c.Transactions() != 25 {
		t.Errorf("stats %+v, transactions %d", st, c.Transactions())
	}
	if string(msgs[24].Data) != "Subject: 24\r\n\r\nbody 24\r\n" {
		t.Errorf("last %q", msgs[24].Data)
	}
}

func TestDotStuffingRoundTrip(t *testing.T) {
	cases := [][]string{
		{".first line starts with a dot\r\n..two\r\n.\r\nmid\r\n...\r\n"},
		{"line\r\n", ".split at a part boundary\r\n"},
		{"line\r\n.", "x\r\n"},
		{"ends without CRLF"},
		{"ends with a dot line\r\n."},
		{""},
		{"a\r\n", "", ".b\r\n"},
	}
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff})
	c := mustDial(t, dialer(), mx.Addr())
	for i, parts := range cases {
		var msg [][]byte
		for _, p := range parts {
			msg = append(msg, []byte(p))
		}
		res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, msg...)
		if res.Rcpts[0].Code != 250 {
			t.Fatalf("case %d: %+v", i, res)
		}
		want := strings.Join(parts, "")
		if want != "" && !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		got := mx.WaitMessages(t, i+1)[i]
		if string(got.Data) != want {
			t.Errorf("case %d: received %q, want %q", i, got.Data, want)
		}
	}
}

func TestDotStuffingOnTheWire(t *testing.T) {
	wire := make(chan string, 1)
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 w ESMTP")
		c.Expect("EHLO")
		c.Send("250-w", "250 PIPELINING")
		for range 3 {
			c.ReadLine()
		}
		c.Send("250 ok", "250 ok", "354 go")
		d, _ := c.ReadData()
		wire <- string(d)
		c.Send("250 ok")
		c.Hang()
	})
	c := mustDial(t, dialer(), srv.Addr())
	c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(".a\r\n"), []byte(".b\r\nc\r\n.\r\n.d"))
	if got, want := <-wire, "..a\r\n..b\r\nc\r\n..\r\n..d\r\n"; got != want {
		t.Errorf("wire %q, want %q", got, want)
	}
}

func TestRefusesBareLineEndings(t *testing.T) {
	got := make(chan string, 100)
	srv := lockstep(t, got)
	c := mustDial(t, dialer(), srv.Addr())
	for _, msg := range []string{"a\nb\r\n", "a\r.\r\n", "a\r\n.\n", "nul\x00\r\n", "ends with CR\r", "\n.\r\n"} {
		res := c.Send(bg, "a@sender.test", []string{"x@dest.test", "y@dest.test"}, []byte(msg))
		for _, r := range res.Rcpts {
			if r.Code != 554 || r.Enhanced != "5.6.0" || r.Command != "DATA" || !r.Permanent() || !strings.Contains(r.Line, "smuggling") {
				t.Errorf("%q: %+v", msg, r)
			}
		}
		if res.Err != nil || res.DataSent {
			t.Errorf("%q: %+v", msg, res)
		}
	}
	// A bare CR split across parts is still caught.
	res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte("a\r"), []byte("b\r\n"))
	if res.Rcpts[0].Code != 554 {
		t.Errorf("split bare CR: %+v", res.Rcpts[0])
	}
	// And a CRLF split across parts is fine.
	res = c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte("a\r"), []byte("\nb\r\n"))
	if res.Rcpts[0].Code != 250 {
		t.Errorf("split CRLF: %+v", res.Rcpts[0])
	}
	select {
	case l := <-got:
		if l != "MAIL FROM:<a@sender.test>" {
			t.Errorf("first command the server saw: %q", l)
		}
	case <-time.After(time.Second):
		t.Error("the good message never arrived")
	}
}

func TestBadAddressesNeverReachTheWire(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff})
	c := mustDial(t, dialer(), mx.Addr())
	res := c.Send(bg, "a@sender.test\r\nRCPT TO:<evil@x>", []string{"x@dest.test"}, []byte(body))
	if r := res.Rcpts[0]; r.Code != 553 || r.Enhanced != "5.1.7" || r.Command != "MAIL" {
		t.Errorf("sender: %+v", r)
	}
	res = c.Send(bg, "a@sender.test", []string{"x@dest.test>\r\nDATA", "ok@dest.test", ""}, []byte(body))
	if r := res.Rcpts[0]; r.Code != 553 || r.Enhanced != "5.1.3" {
		t.Errorf("rcpt: %+v", r)
	}
	if res.Rcpts[1].Code != 250 || res.Rcpts[2].Code != 553 {
		t.Errorf("others: %+v", res.Rcpts)
	}
	if m := mx.WaitMessages(t, 1)[0]; len(m.Rcpts) != 1 {
		t.Errorf("received %v", m.Rcpts)
	}
	res = c.Send(bg, "", []string{"ok@dest.test"}, []byte(body))
	if res.Rcpts[0].Code != 250 || mx.WaitMessages(t, 2)[1].From != "" {
		t.Errorf("null sender: %+v", res)
	}
}

func TestSMTPUTF8(t *testing.T) {
	plain := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff})
	c := mustDial(t, dialer(), plain.Addr())
	res := c.Send(bg, "jöran@sender.test", []string{"x@dest.test"}, []byte(body))
	if r := res.Rcpts[0]; r.Code != 553 || r.Enhanced != "5.6.7" || !r.Permanent() {
		t.Errorf("sender: %+v", r)
	}
	res = c.Send(bg, "a@sender.test", []string{"ü@dest.test", "x@dest.test"}, []byte(body))
	if res.Rcpts[0].Enhanced != "5.6.7" || res.Rcpts[1].Code != 250 {
		t.Errorf("rcpts: %+v", res.Rcpts)
	}
	if m := plain.WaitMessages(t, 1)[0]; m.UTF8 {
		t.Error("SMTPUTF8 sent to a server without it")
	}

	utf := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff, SMTPUTF8: true})
	c = mustDial(t, dialer(), utf.Addr())
	res = c.Send(bg, "a@sender.test", []string{"ü@dest.test"}, []byte(body))
	if res.Rcpts[0].Code != 250 {
		t.Fatalf("%+v", res)
	}
	if m := utf.WaitMessages(t, 1)[0]; !m.UTF8 || m.Rcpts[0] != "ü@dest.test" {
		t.Errorf("record %+v", m)
	}
}

func TestEightBitMIMEAndSize(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff, MaxMessageBytes: 200})
	c := mustDial(t, dialer(), mx.Addr())
	if c.MaxSize() != 200 {
		t.Errorf("MaxSize %d", c.MaxSize())
	}
	c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte("Subject: café\r\n\r\nx\r\n"))
	c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte("Subject: cafe\r\n\r\nx\r\n"))
	msgs := mx.WaitMessages(t, 2)
	if msgs[0].Body != "8BITMIME" || msgs[1].Body != "" || msgs[0].Size != int64(len("Subject: café\r\n\r\nx\r\n")) {
		t.Errorf("records %+v", msgs)
	}
	res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, bytes.Repeat([]byte("0123456789\r\n"), 20))
	if r := res.Rcpts[0]; r.Code != 552 || r.Enhanced != "5.3.4" || r.Command != "MAIL" {
		t.Errorf("oversize: %+v", r)
	}
	if mx.Stats().Transactions != 2 || res.Err != nil {
		t.Errorf("oversize message sent")
	}
}

func TestRecipientLimit(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff, MaxRecipients: 2})
	c := mustDial(t, dialer(), mx.Addr())
	if c.MaxRecipients() != 2 {
		t.Fatalf("MaxRecipients %d", c.MaxRecipients())
	}
	res := c.Send(bg, "a@sender.test", []string{"a@d.test", "b@d.test", "c@d.test"}, []byte(body))
	if res.Rcpts[0].Code != 250 || res.Rcpts[1].Code != 250 {
		t.Errorf("%+v", res.Rcpts)
	}
	if r := res.Rcpts[2]; r.Code != 0 || !r.Temporary || r.Enhanced != "4.5.3" || !strings.Contains(r.Line, "not attempted") {
		t.Errorf("third: %+v", r)
	}
}

func TestHELOFallback(t *testing.T) {
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 old.test SMTP")
		c.Expect("EHLO")
		c.Send("502 5.5.1 what?")
		c.Expect("HELO out.kiln.test")
		c.Send("250 old.test")
		c.Expect("MAIL")
		c.Send("250 ok")
		c.Expect("RCPT")
		c.Send("250 ok")
		c.Expect("DATA")
		c.Send("354 go")
		c.ReadData()
		c.Send("250 ok")
		c.Hang()
	})
	c := mustDial(t, dialer(), srv.Addr())
	if res := c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body)); res.Rcpts[0].Code != 250 {
		t.Fatalf("%+v", res)
	}
	if _, ok := c.Extension("PIPELINING"); ok {
		t.Error("extensions after HELO")
	}
}

func TestSourceAddress(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{TLS: fakemx.TLSOff})
	d := dialer()
	d.LocalAddr = netip.MustParseAddr("127.0.0.2")
	c := mustDial(t, d, mx.Addr())
	c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body))
	if m := mx.WaitMessages(t, 1)[0]; !strings.HasPrefix(m.Client, "127.0.0.2:") {
		t.Errorf("client address %q", m.Client)
	}
}

func TestAuth(t *testing.T) {
	mx := fakemx.Start(t, fakemx.Config{Users: map[string]string{"kiln": "s3cret"}})
	d := dialer()
	d.Auth = &Auth{Username: "kiln", Password: "s3cret"}
	c := mustDial(t, d, mx.Addr())
	c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body))
	if m := mx.WaitMessages(t, 1)[0]; m.AuthUser != "kiln" {
		t.Errorf("auth user %q", m.AuthUser)
	}

	d.Auth = &Auth{Username: "kiln", Password: "wrong"}
	if e := dialErr(t, d, mx.Addr()); e.Reply.Code != 535 || e.Reply.Command != "AUTH" {
		t.Errorf("wrong password: %+v", e.Reply)
	}
	d.Auth.Password = "s3cret"
	d.TLS = TLSNone
	if e := dialErr(t, d, mx.Addr()); e.Reply.Code != 0 || !e.Reply.Temporary || !strings.Contains(e.Reply.Line, "without TLS") {
		t.Errorf("plaintext: %+v", e.Reply)
	}
}

func TestHostileReplies(t *testing.T) {
	cases := map[string]func(*fakemx.RawConn){
		"endless continuation": func(c *fakemx.RawConn) {
			for range 10 * MaxReplyLines {
				if c.Send("220-more") != nil {
					return
				}
			}
			c.Hang()
		},
		"100 KB line": func(c *fakemx.RawConn) {
			c.Send("220 " + strings.Repeat("x", 100<<10))
			c.Hang()
		},
		"not SMTP":      fakemx.Garbage("HTTP/1.1 400 Bad Request\r\n"),
		"NUL and 8-bit": fakemx.Garbage("2\x0020 \xff\xfe\r\n"),
		"short code":    fakemx.Garbage("22\r\n"),
		"1xx code":      fakemx.Garbage("120 wait\r\n"),
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			srv := fakemx.StartRaw(t, h)
			e := dialErr(t, dialer(), srv.Addr())
			if r := e.Reply; r.Code != 0 || !r.Temporary || r.Command != "CONNECT" || len(r.Line) > 300 {
				t.Errorf("%+v", r)
			}
		})
	}

	// Long but bounded replies are cut, not refused.
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220-"+strings.Repeat("y", 3000), "220 ok")
		c.Expect("EHLO")
		var lines []string
		for i := range 30 {
			lines = append(lines, fmt.Sprintf("250-X-EXT%d", i))
		}
		c.Send(append(lines, "250 PIPELINING")...)
		c.Hang()
	})
	c := mustDial(t, dialer(), srv.Addr())
	if len(c.Greeting()) > MaxReplyLineLen+20 {
		t.Errorf("greeting kept %d bytes", len(c.Greeting()))
	}
	if _, ok := c.Extension("pipelining"); !ok {
		t.Error("PIPELINING after 30 extensions lost")
	}
}

func TestSlowByteByByteReplyTimesOut(t *testing.T) {
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		for _, b := range []byte("220 slow\r\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Hang()
	})
	d := dialer()
	d.GreetingTimeout = 300 * time.Millisecond
	start := time.Now()
	e := dialErr(t, d, srv.Addr())
	if !strings.Contains(e.Reply.Line, "timed out") || time.Since(start) > 2*time.Second {
		t.Errorf("%+v after %v", e.Reply, time.Since(start))
	}
}

func TestCloseSendsQuit(t *testing.T) {
	quit := make(chan bool, 1)
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 q ESMTP")
		c.Expect("EHLO")
		c.Send("250 q")
		_, err := c.Expect("QUIT")
		quit <- err == nil
		c.Send("221 bye")
	})
	c, err := dialer().Dial(bg, srv.Addr(), "q")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !<-quit {
		t.Error("no QUIT")
	}
	c.Close() // twice is fine
}

func TestParseTLSMode(t *testing.T) {
	for s, want := range map[string]TLSMode{"": TLSOpportunistic, "opportunistic": TLSOpportunistic, "Required": TLSRequired, "none": TLSNone} {
		if m, err := ParseTLSMode(s); err != nil || m != want {
			t.Errorf("%q: %v %v", s, m, err)
		}
	}
	if _, err := ParseTLSMode("sometimes"); err == nil {
		t.Error("bad mode accepted")
	}
}

func TestScanMessage(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		eight bool
		bad   int
	}{
		{[]string{"abc\r\n"}, false, -1},
		{[]string{"é\r\n"}, true, -1},
		{[]string{"a\nb"}, false, 1},
		{[]string{"ab\r"}, false, 2},
		{[]string{"ab\r", "x"}, false, 2},
		{[]string{"ab", "\r\n", "\x00"}, false, 4},
		{[]string{"\tTab\r\n\x01"}, false, -1},
	} {
		var msg [][]byte
		for _, p := range tc.parts {
			msg = append(msg, []byte(p))
		}
		eight, bad := scanMessage(msg)
		if eight != tc.eight || bad != tc.bad {
			t.Errorf("%q: %v %d, want %v %d", tc.parts, eight, bad, tc.eight, tc.bad)
		}
	}
}

func TestRSETGoesInTheNextBatch(t *testing.T) {
	batches := make(chan string, 2)
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 p.test ESMTP")
		c.Expect("EHLO")
		c.Send("250-p.test", "250 PIPELINING")
		read := func(n int) {
			var lines []string
			for range n {
				l, _ := c.ReadLine()
				lines = append(lines, l)
			}
			batches <- strings.Join(lines, "|")
		}
		read(3)
		c.Send("250 ok", "550 5.1.1 no", "554 5.5.1 no valid recipients")
		read(4)
		c.Send("250 flushed", "250 ok", "250 ok", "354 go")
		c.ReadData()
		c.Send("250 done")
		c.Hang()
	})
	c := mustDial(t, dialer(), srv.Addr())
	res := c.Send(bg, "a@sender.test", []string{"bad@dest.test"}, []byte(body))
	if res.Rcpts[0].Code != 550 || res.Reply.Code != 550 || res.DataSent {
		t.Fatalf("%+v", res)
	}
	res = c.Send(bg, "a@sender.test", []string{"x@dest.test"}, []byte(body))
	if res.Rcpts[0].Code != 250 || res.Rcpts[0].Line != "250 done" {
		t.Fatalf("%+v", res)
	}
	<-batches
	if got := <-batches; got != "RSET|MAIL FROM:<a@sender.test>|RCPT TO:<x@dest.test>|DATA" {
		t.Errorf("second batch %q", got)
	}
}

func TestDialCanceledDuringGreeting(t *testing.T) {
	srv := fakemx.StartRaw(t, fakemx.Silent)
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := dialer().Dial(ctx, srv.Addr(), "mx")
	var e *Error
	if !errors.As(err, &e) || e.Reply.Command != "CONNECT" || !e.Reply.Temporary || !strings.Contains(e.Reply.Line, "deadline exceeded") {
		t.Fatalf("%v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

func TestTLSRequiredRefusedIsTemporary(t *testing.T) {
	srv := fakemx.StartRaw(t, func(c *fakemx.RawConn) {
		c.Send("220 r ESMTP")
		c.Expect("EHLO")
		c.Send("250-r", "250 STARTTLS")
		c.Expect("STARTTLS")
		c.Send("502 5.5.1 not today")
		c.Hang()
	})
	d := dialer()
	d.TLS = TLSRequired
	e := dialErr(t, d, srv.Addr())
	if r := e.Reply; r.Code != 0 || !r.Temporary || r.Permanent() || r.Command != "STARTTLS" || !strings.Contains(r.Line, "502 5.5.1 not today") {
		t.Errorf("%+v", r)
	}
	d.TLS = TLSOpportunistic
	c := mustDial(t, d, srv.Addr())
	if c.TLS().Fallback != "STARTTLS refused: 502 5.5.1 not today" {
		t.Errorf("fallback %q", c.TLS().Fallback)
	}
}
