package smtpsink

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/textproto"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"kiln/internal/clock"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func client(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// send runs one transaction and returns the first refusal (or the final
// reply's error, nil for a 250).
func send(c *smtp.Client, from string, rcpts []string, body string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	ok := 0
	var first error
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		ok++
	}
	if ok == 0 {
		c.Reset()
		return first
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	io.WriteString(w, body)
	return w.Close()
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err == nil {
		return 250
	}
	return 0
}

// raw is a minimal client for checking the wire exactly.
type raw struct {
	t *testing.T
	c net.Conn
	r *textproto.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &raw{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
}

func (k *raw) send(s string) {
	k.t.Helper()
	if _, err := io.WriteString(k.c, s); err != nil {
		k.t.Fatal(err)
	}
}

func (k *raw) expect(code int) string {
	k.t.Helper()
	got, msg, err := k.r.ReadResponse(0)
	if got != code {
		k.t.Fatalf("got %d %s (%v), want %d", got, msg, err, code)
	}
	return msg
}

func (k *raw) closed() bool {
	_, err := k.r.ReadLine()
	return err != nil
}

const body = "From: a@sender.test\r\nMessage-ID: <m1@sender.test>\r\n\r\nhello\r\n"

func TestShareIsSeededAndCounted(t *testing.T) {
	const n, share, seed = 200, 0.3, 7
	s := start(t, Config{TLS: TLSOff, Seed: seed, Discard: true, Rules: []Rule{
		{Stage: StageData, Share: share, Code: 451, Enhanced: "4.3.0", Text: "try later"},
	}})
	// The draws come from one seeded source in arrival order, so however
	// the sessions interleave, n messages meet the same number of deferrals.
	rng := rand.New(rand.NewPCG(seed, seed^0x6b696c6e73696e6b))
	want := 0
	for range n {
		if rng.Float64() < share {
			want++
		}
	}
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(s.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Hello("c")
			for range n / 4 {
				err := send(c, "a@sender.test", []string{"r" + string(rune('a'+w)) + "@d.test"}, body)
				mu.Lock()
				got[code(err)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got[451] != want || got[250] != n-want {
		t.Errorf("replies %v, want %d deferred of %d", got, want, n)
	}
	if r := s.Refusals(); r["data 451"] != want {
		t.Errorf("refusals %v", r)
	}
	if st := s.Stats(); st.Messages != n-want || st.Transactions != n || st.Recipients != n-want {
		t.Errorf("stats %+v", st)
	}
}

func Test421ClosesTheConnection(t *testing.T) {
	s := start(t, Config{TLS: TLSOff, Rules: []Rule{{Stage: StageRcpt, Match: "busy@*", Code: 421, Enhanced: "4.7.0", Text: "too busy"}}})
	k := dialRaw(t, s.Addr())
	k.expect(220)
	k.send("HELO c\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<busy@d.test>\r\n")
	k.expect(250)
	k.expect(250)
	if msg := k.expect(421); msg != "4.7.0 too busy" {
		t.Errorf("reply %q", msg)
	}
	if !k.closed() {
		t.Error("connection still open after 421")
	}
	// A 4xx other than 421 leaves it open.
	s.SetRules(Rule{Stage: StageRcpt, Code: 450})
	k = dialRaw(t, s.Addr())
	k.expect(220)
	k.send("HELO c\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<x@d.test>\r\nNOOP\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(450)
	k.expect(250)
}

func TestGreetingShare(t *testing.T) {
	s := start(t, Config{TLS: TLSOff, Seed: 3, Rules: []Rule{{Stage: StageConnect, Share: 0.5, Code: 421, Enhanced: "4.7.0", Text: "{ip} come back later"}}})
	refused := 0
	for range 40 {
		k := dialRaw(t, s.Addr())
		code, msg, _ := k.r.ReadResponse(0)
		switch code {
		case 220:
		case 421:
			refused++
			if msg != "4.7.0 127.0.0.1 come back later" {
				t.Errorf("greeting %q", msg)
			}
			if !k.closed() {
				t.Error("open after a 421 greeting")
			}
		default:
			t.Fatalf("greeting %d %s", code, msg)
		}
		k.c.Close()
	}
	if refused == 0 || refused == 40 || s.Refusals()["connect 421"] != refused {
		t.Errorf("%d of 40 refused, refusals %v", refused, s.Refusals())
	}
}

func TestDropMidData(t *testing.T) {
	var mu sync.Mutex
	var seen []Message
	s := start(t, Config{TLS: TLSOff, Rules: []Rule{{Stage: StageData, Match: "cut@*", DropAfter: 100}},
		OnMessage: func(m *Message) {
			mu.Lock()
			seen = append(seen, *m)
			mu.Unlock()
		}})
	k := dialRaw(t, s.Addr())
	k.expect(220)
	k.send("HELO c\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<cut@d.test>\r\nDATA\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(250)
	k.expect(354)
	// The client keeps writing; the server goes away before the dot.
	go func() {
		line := strings.Repeat("x", 76) + "\r\n"
		for range 1000 {
			if _, err := io.WriteString(k.c, line); err != nil {
				return
			}
		}
		io.WriteString(k.c, ".\r\n")
	}()
	if l, err := k.r.ReadLine(); err == nil {
		t.Fatalf("got %q, want the connection closed mid-DATA", l)
	}
	st := s.Stats()
	if st.Dropped != 1 || st.DroppedMidData != 1 || st.Transactions != 0 || st.Messages != 0 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !seen[0].Partial || !seen[0].Dropped || len(seen[0].Data) != 100 {
		t.Errorf("seen %+v", seen)
	}
}

func TestLatencyBeforeTheFinalReply(t *testing.T) {
	s := start(t, Config{TLS: TLSOff, Latency: 150 * time.Millisecond})
	c := client(t, s.Addr())
	if err := c.Mail("a@sender.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("r@d.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	t0 := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: the sink must have waited; how much longer the
	// machine took is not this test's business.
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Errorf("final reply after %v", d)
	}
}

func TestThrottleAnswersLikeTheProvider(t *testing.T) {
	patterns := map[string][]string{
		// The texts kiln's reply classifier and the providers' pages key on.
		"gmail":     {`^421 4\.7\.28 `, `unusual rate of (unsolicited )?mail`, `- gsmtp$`},
		"yahoo":     {`^421 4\.7\.0 `, `\[TSS04\] Messages from 127\.0\.0\.1 temporarily deferred due to unexpected volume or user complaints`},
		"microsoft": {`^451 4\.7\.650 `, `has been temporarily rate limited due to IP reputation`, `\(S775\)`},
	}
	for _, name := range Providers() {
		t.Run(name, func(t *testing.T) {
			p, _ := Provider(name)
			p.Match, p.PerHour = "*@"+name+".test", 3
			clk := clock.NewFake(time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC))
			s := start(t, Config{TLS: TLSOff, Clock: clk, Throttles: []Throttle{p}})
			rcpt := []string{"someone@" + name + ".test"}
			c := client(t, s.Addr())
			for i := range 3 {
				if err := send(c, "a@sender.test", rcpt, body); err != nil {
					t.Fatalf("message %d: %v", i+1, err)
				}
			}
			// Other recipients are not counted or refused.
			if err := send(c, "a@sender.test", []string{"x@elsewhere.test"}, body); err != nil {
				t.Fatalf("other domain: %v", err)
			}
			err := send(c, "a@sender.test", rcpt, body)
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				t.Fatalf("4th message: %v", err)
			}
			e := se.EnhancedCode
			full := fmt.Sprintf("%d %d.%d.%d %s", se.Code, e[0], e[1], e[2], se.Message)
			for _, pat := range patterns[name] {
				if !regexp.MustCompile(pat).MatchString(full) {
					t.Errorf("%q does not match %s", full, pat)
				}
			}
			if st := s.Stats(); st.Messages != 4 || st.Throttled != 1 {
				t.Errorf("stats %+v", st)
			}
			if r := s.Refusals(); r[fmt.Sprintf("rcpt %d", se.Code)] != 1 {
				t.Errorf("refusals %v", r)
			}
			// An hour later the window has moved on.
			clk.Advance(61 * time.Minute)
			c = client(t, s.Addr())
			if err := send(c, "a@sender.test", rcpt, body); err != nil {
				t.Errorf("an hour later: %v", err)
			}
		})
	}
}

func TestThrottleIsExactUnderConcurrency(t *testing.T) {
	const limit = 25
	s := start(t, Config{TLS: TLSOff, Discard: true, Throttles: []Throttle{{PerHour: limit, Code: 451, Enhanced: "4.7.0", Text: "slow down {ip}"}}})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(s.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Hello("c")
			for range 10 {
				send(c, "a@sender.test", []string{"r@d.test"}, body)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Messages != limit || st.Throttled != 80-limit {
		t.Errorf("stats %+v, want %d accepted", st, limit)
	}
}

func TestThrottleAtGreetingAndMail(t *testing.T) {
	s := start(t, Config{TLS: TLSOff, Throttles: []Throttle{
		{Match: "*@y.test", PerHour: 1, Stage: StageConnect, Code: 421, Enhanced: "4.7.0", Text: "[TSS04] Messages from {ip} temporarily deferred"},
		{Match: "*@m.test", PerHour: 1, Stage: StageMail, Code: 451, Enhanced: "4.7.650", Text: "rate limited"},
	}})
	c := client(t, s.Addr())
	if err := send(c, "a@sender.test", []string{"a@m.test"}, body); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "a@sender.test", []string{"b@m.test"}, body); code(err) != 451 {
		t.Errorf("MAIL after the limit: %v", err)
	}
	if err := send(c, "a@sender.test", []string{"a@y.test"}, body); code(err) != 451 {
		t.Errorf("the MAIL throttle refuses all mail from the IP: %v", err)
	}
	s.Reset()
	s2 := start(t, Config{TLS: TLSOff, Throttles: []Throttle{
		{Match: "*@y.test", PerHour: 1, Stage: StageConnect, Code: 421, Enhanced: "4.7.0", Text: "[TSS04] Messages from {ip} temporarily deferred"},
	}})
	c = client(t, s2.Addr())
	if err := send(c, "a@sender.test", []string{"a@y.test"}, body); err != nil {
		t.Fatal(err)
	}
	k := dialRaw(t, s2.Addr())
	if msg := k.expect(421); msg != "4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred" {
		t.Errorf("greeting %q", msg)
	}
}

func TestImplicitTLSAndAuth(t *testing.T) {
	s := start(t, Config{ListenTLS: []string{"127.0.0.1:0"}, Users: map[string]string{"alice": "secret"}})
	if len(s.TLSAddrs()) != 1 || len(s.Addrs()) != 0 || s.Addr() != s.TLSAddrs()[0] {
		t.Fatalf("addrs %v %v", s.Addrs(), s.TLSAddrs())
	}
	conn, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: s.CertPool(), ServerName: "mx.sink.test"})
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("c"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient("alice", "wrong")); code(err) != 535 {
		t.Errorf("bad password: %v", err)
	}
	if err := c.Auth(sasl.NewLoginClient("alice", "secret")); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	if err := send(c, "a@sender.test", []string{"r@d.test"}, body); err != nil {
		t.Fatal(err)
	}
	m := s.Messages()
	if len(m) != 1 || !m[0].TLS || m[0].AuthUser != "alice" || s.Stats().TLS != 1 {
		t.Errorf("message %+v, stats %+v", m, s.Stats())
	}
}

func TestAuthOverPlaintextOnlyWhenAllowed(t *testing.T) {
	users := map[string]string{"bob": "pw"}
	s := start(t, Config{TLS: TLSOff, Users: users})
	c := client(t, s.Addr())
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered without TLS")
	}
	s = start(t, Config{TLS: TLSOff, Users: users, AuthPlaintext: true})
	c = client(t, s.Addr())
	if err := c.Auth(sasl.NewPlainClient("", "bob", "pw")); err != nil {
		t.Fatalf("PLAIN: %v", err)
	}
	if err := send(c, "a@sender.test", []string{"r@d.test"}, body); err != nil {
		t.Fatal(err)
	}
	if m := s.Messages(); len(m) != 1 || m[0].AuthUser != "bob" || m[0].TLS {
		t.Errorf("%+v", m)
	}
}

func TestSeveralListenersShareOneServer(t *testing.T) {
	s := start(t, Config{Addr: "127.0.0.1:0", Listen: []string{"127.0.0.1:0"}, TLS: TLSOff})
	if len(s.Addrs()) != 2 {
		t.Fatalf("addrs %v", s.Addrs())
	}
	for _, a := range s.Addrs() {
		if err := send(client(t, a), "a@sender.test", []string{"r@d.test"}, body); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.Messages != 2 || st.Sessions != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestValidation(t *testing.T) {
	for _, r := range []Rule{
		{Stage: StageRcpt, DropAfter: 10},
		{Stage: StageData, Share: 1.5},
		{Stage: StageData, Times: -1},
	} {
		if r.Validate() == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	for _, th := range []Throttle{
		{PerHour: 1, Code: 250},
		{PerHour: -1, Code: 421},
		{PerHour: 1, Code: 421, Stage: "helo"},
	} {
		if th.Validate() == nil {
			t.Errorf("%+v accepted", th)
		}
	}
	if _, err := New(Config{TLS: TLSOff, ListenTLS: []string{"127.0.0.1:0"}}); err == nil {
		t.Error("implicit TLS without TLS accepted")
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		ok   bool
	}{
		{"", "anything", true},
		{"*", "", true},
		{"hard*@*", "hard1@d.test", true},
		{"hard*@*", "xhard@d.test", false},
		{"*@d.test", "a@D.TEST", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*a*a*b", strings.Repeat("a", 40), false},
		{"x*", "y", false},
	} {
		if got := Match(tc.p, tc.s); got != tc.ok {
			t.Errorf("Match(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestHeaderValue(t *testing.T) {
	msg := []byte("Subject: hi\r\nmessage-id:\r\n <a.b@c.test>\r\nX: y\r\n\r\nMessage-ID: <body@x>\r\n")
	if v := HeaderValue(msg, "Message-ID"); v != "<a.b@c.test>" {
		t.Errorf("folded: %q", v)
	}
	if v := HeaderValue([]byte("A: b\r\n\r\nMessage-ID: <x@y>\r\n"), "Message-ID"); v != "" {
		t.Errorf("from the body: %q", v)
	}
	if v := HeaderValue([]byte("Message-ID: <x@y>"), "Message-ID"); v != "<x@y>" {
		t.Errorf("no newline: %q", v)
	}
}
