package fakemx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"kiln/internal/smtpsink"
)

// talk is a minimal client for checking the wire exactly.
type talk struct {
	t *testing.T
	c net.Conn
	r *textproto.Reader
}

func dial(t *testing.T, addr string) *talk {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &talk{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
}

func (k *talk) send(s string) {
	k.t.Helper()
	if _, err := io.WriteString(k.c, s); err != nil {
		k.t.Fatal(err)
	}
}

// reply reads one reply and returns its code and its lines joined by "\n".
func (k *talk) reply() (int, string) {
	k.t.Helper()
	code, msg, err := k.r.ReadResponse(0)
	if err != nil && code == 0 {
		k.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

func (k *talk) expect(code int) string {
	k.t.Helper()
	got, msg := k.reply()
	if got != code {
		k.t.Fatalf("got %d %s, want %d", got, msg, code)
	}
	return msg
}

func goClient(t *testing.T, mx *Server) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(mx.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func sendMsg(c *smtp.Client, from string, rcpts []string, body string) (rcptErrs []error, dataErr error) {
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	ok := 0
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		rcptErrs = append(rcptErrs, err)
		if err == nil {
			ok++
		}
	}
	if ok == 0 {
		c.Reset()
		return rcptErrs, nil
	}
	w, err := c.Data()
	if err != nil {
		return rcptErrs, err
	}
	io.WriteString(w, body)
	return rcptErrs, w.Close()
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	if err != nil {
		return -1
	}
	return 250
}

func TestRecordsMessageByteExact(t *testing.T) {
	mx := Start(t, Config{TLS: TLSOff})
	k := dial(t, mx.Addr())
	k.expect(220)
	k.send("EHLO client.test\r\n")
	caps := k.expect(250)
	for _, want := range []string{"PIPELINING", "8BITMIME", "SIZE"} {
		if !strings.Contains(caps, want) {
			t.Errorf("EHLO lacks %s: %q", want, caps)
		}
	}
	if strings.Contains(caps, "STARTTLS") {
		t.Errorf("TLSOff still offers STARTTLS")
	}
	// Pipelined in one write, as RFC 2920 allows.
	k.send("MAIL FROM:<a@sender.test> BODY=8BITMIME\r\nRCPT TO:<x@dest.test>\r\nRCPT TO:<y@dest.test>\r\nDATA\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(250)
	k.expect(354)
	k.send("Subject: t\r\n\r\n..leading dot\r\nline\r\n...\r\nlast\r\n.\r\n")
	final := k.expect(250)
	if !strings.Contains(final, "queued as Q000001") {
		t.Errorf("final reply %q carries no queue id", final)
	}

	msgs := mx.WaitMessages(t, 1)
	m := msgs[0]
	if want := "Subject: t\r\n\r\n.leading dot\r\nline\r\n..\r\nlast\r\n"; string(m.Data) != want {
		t.Errorf("data = %q, want %q", m.Data, want)
	}
	if m.From != "a@sender.test" || strings.Join(m.Rcpts, ",") != "x@dest.test,y@dest.test" {
		t.Errorf("envelope %q %q", m.From, m.Rcpts)
	}
	if m.Helo != "client.test" || m.Body != "8BITMIME" || m.TLS || m.Session != 1 || m.ID != "Q000001" || !m.Accepted() {
		t.Errorf("record %+v", m)
	}
	if m.BareCRLF() != 0 {
		t.Errorf("bare CR/LF counted in a clean message")
	}
	if st := mx.Stats(); st.Sessions != 1 || st.Messages != 1 || st.Transactions != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestBareLineEndingsAreKept(t *testing.T) {
	mx := Start(t, Config{TLS: TLSOff})
	k := dial(t, mx.Addr())
	k.expect(220)
	k.send("HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@dest.test>\r\nDATA\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(250)
	k.expect(354)
	k.send("a\nb\rc\r\n.\r\n")
	k.expect(250)
	m := mx.WaitMessages(t, 1)[0]
	if string(m.Data) != "a\nb\rc\r\n" || m.BareCRLF() != 2 || m.From != "" {
		t.Errorf("data %q, bare %d, from %q", m.Data, m.BareCRLF(), m.From)
	}
}

func TestConventionRules(t *testing.T) {
	mx := Start(t, Config{Rules: ConventionRules()})
	c := goClient(t, mx)
	rcpts := []string{"ok1@d.test", "hard1@d.test", "soft1@d.test", "full1@d.test", "block@d.test", "rate1@d.test", "ok2@d.test"}
	errs, dataErr := sendMsg(c, "s@d.test", rcpts, "Subject: x\r\n\r\nhi\r\n")
	want := []int{250, 550, 450, 452, 550, 451, 250}
	for i, err := range errs {
		if code(err) != want[i] {
			t.Errorf("%s: %v, want %d", rcpts[i], err, want[i])
		}
	}
	var se *smtp.SMTPError
	if errors.As(errs[1], &se) && (se.EnhancedCode != smtp.EnhancedCode{5, 1, 1} || !strings.Contains(se.Message, "<hard1@d.test>: user unknown")) {
		t.Errorf("hard reply %+v", se)
	}
	if dataErr != nil {
		t.Fatal(dataErr)
	}
	m := mx.WaitMessages(t, 1)[0]
	if strings.Join(m.Rcpts, ",") != "ok1@d.test,ok2@d.test" {
		t.Errorf("delivered to %v", m.Rcpts)
	}
	if mx.Count("OK1@d.test") != 1 || mx.Count("hard1@d.test") != 0 {
		t.Errorf("counts wrong")
	}

	// Data-stage rules: the first matching recipient decides.
	_, dataErr = sendMsg(c, "s@d.test", []string{"ok@d.test", "spam1@d.test"}, "x\r\n")
	if code(dataErr) != 554 {
		t.Errorf("spam: %v", dataErr)
	}
	_, dataErr = sendMsg(c, "s@d.test", []string{"defer1@d.test"}, "x\r\n")
	if code(dataErr) != 451 {
		t.Errorf("defer: %v", dataErr)
	}
	att := mx.Attempts()
	if len(att) != 3 || att[1].Accepted() || !strings.HasPrefix(att[1].Reply, "554 5.7.1") {
		t.Errorf("attempts %+v", att)
	}
	if st := mx.Stats(); st.Messages != 1 || st.Transactions != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestSlowRecipient(t *testing.T) {
	mx := Start(t, Config{Rules: []Rule{{Stage: StageRcpt, Match: "slow*", Delay: 200 * time.Millisecond}}})
	c := goClient(t, mx)
	c.Mail("s@d.test", nil)
	start := time.Now()
	if err := c.Rcpt("slow@d.test", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("replied after %v", d)
	}
}

func TestGreetingRules(t *testing.T) {
	mx := Start(t, Config{Rules: []Rule{
		{Stage: StageConnect, Code: 421, Enhanced: "4.7.0", Text: "too many connections", Times: 1},
		{Stage: StageConnect, Drop: true, Times: 1},
		{Stage: StageConnect, Delay: 150 * time.Millisecond, Times: 1},
	}})
	k := dial(t, mx.Addr())
	if msg := k.expect(421); msg != "4.7.0 too many connections" {
		t.Errorf("greeting %q", msg)
	}
	if _, err := k.r.ReadLine(); err == nil {
		t.Error("connection still open after 421")
	}

	k = dial(t, mx.Addr())
	if _, err := k.r.ReadLine(); err == nil {
		t.Error("dropped connection sent something")
	}

	start := time.Now()
	k = dial(t, mx.Addr())
	k.expect(220)
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("greeted after %v", d)
	}
	k = dial(t, mx.Addr())
	k.expect(220)
	if st := mx.Stats(); st.Sessions != 4 || st.Dropped != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestMailRuleAndTimes(t *testing.T) {
	mx := Start(t, Config{Rules: []Rule{
		{Stage: StageMail, Match: "<>", Code: 550, Enhanced: "5.7.1", Text: "no bounces here"},
		{Stage: StageMail, Match: "*@blocked.test", Code: 554, Enhanced: "5.7.1"},
		{Stage: StageRcpt, Match: "later@*", Code: 450, Enhanced: "4.2.0", Times: 2},
	}})
	c := goClient(t, mx)
	if err := c.Mail("", nil); code(err) != 550 {
		t.Errorf("null sender: %v", err)
	}
	if err := c.Mail("x@Blocked.TEST", nil); code(err) != 554 {
		t.Errorf("blocked sender: %v", err)
	}
	if err := c.Mail("x@ok.test", nil); err != nil {
		t.Fatal(err)
	}
	var got []int
	for range 3 {
		got = append(got, code(c.Rcpt("later@d.test", nil)))
	}
	if got[0] != 450 || got[1] != 450 || got[2] != 250 {
		t.Errorf("later@: %v, want 450 450 250", got)
	}
	// SetRules starts the counters again.
	mx.SetRules(Rule{Stage: StageRcpt, Match: "later@*", Code: 450, Times: 1})
	if code(c.Rcpt("later@d.test", nil)) != 450 || code(c.Rcpt("later@d.test", nil)) != 250 {
		t.Errorf("after SetRules")
	}
}

func TestDropAfterData(t *testing.T) {
	mx := Start(t, Config{Rules: []Rule{{Stage: StageData, Match: "drop*", Drop: true}}})
	k := dial(t, mx.Addr())
	k.expect(220)
	k.send("HELO c\r\nMAIL FROM:<s@d.test>\r\nRCPT TO:<drop@d.test>\r\nDATA\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(250)
	k.expect(354)
	k.send("hello\r\n.\r\n")
	if l, err := k.r.ReadLine(); err == nil {
		t.Fatalf("got %q after the dot, want the connection dropped", l)
	}
	att := mx.Attempts()
	if len(att) != 1 || !att[0].Dropped || att[0].Accepted() || string(att[0].Data) != "hello\r\n" {
		t.Fatalf("attempts %+v", att)
	}
	if st := mx.Stats(); st.Dropped != 1 || st.Messages != 0 || st.Transactions != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCustomSuccessReply(t *testing.T) {
	mx := Start(t, Config{Rules: []Rule{{Stage: StageData, Code: 250, Enhanced: "2.6.0", Text: "<id@remote> accepted"}}})
	k := dial(t, mx.Addr())
	k.expect(220)
	k.send("HELO c\r\nMAIL FROM:<s@d.test>\r\nRCPT TO:<a@d.test>\r\nDATA\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(250)
	k.expect(354)
	k.send("x\r\n.\r\n")
	if msg := k.expect(250); msg != "2.6.0 <id@remote> accepted (Q000001)" {
		t.Errorf("final %q", msg)
	}
}

func TestSTARTTLS(t *testing.T) {
	mx := Start(t, Config{Domain: "mx.example.test"})
	conn, _ := net.Dial("tcp", mx.Addr())
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: "mx.example.test", RootCAs: mx.CertPool()})
	if err != nil {
		t.Fatalf("verified STARTTLS: %v", err)
	}
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := sendMsg(c, "s@d.test", []string{"a@d.test"}, "x\r\n"); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	m := mx.WaitMessages(t, 1)[0]
	if !m.TLS || m.Helo != "client.test" {
		t.Errorf("record %+v", m)
	}
	if st := mx.Stats(); st.TLS != 1 || st.Sessions != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestBrokenTLS(t *testing.T) {
	mx := Start(t, Config{TLS: TLSBroken})
	conn, _ := net.Dial("tcp", mx.Addr())
	defer conn.Close()
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		// go-smtp's client shakes hands lazily, on the next command.
		err = c.Hello("client.test")
	}
	if err == nil {
		t.Fatal("handshake succeeded")
	}
	if st := mx.Stats(); st.TLS != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAuthPlainOverTLS(t *testing.T) {
	mx := Start(t, Config{Users: map[string]string{"kiln": "secret"}})
	k := dial(t, mx.Addr())
	k.expect(220)
	k.send("EHLO c\r\n")
	if caps := k.expect(250); strings.Contains(caps, "AUTH") {
		t.Errorf("AUTH offered in plaintext: %q", caps)
	}

	conn, _ := net.Dial("tcp", mx.Addr())
	c, err := smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "kiln", "wrong")); code(err) != 535 {
		t.Errorf("wrong password: %v", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", "kiln", "secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := sendMsg(c, "s@d.test", []string{"a@d.test"}, "x\r\n"); err != nil {
		t.Fatal(err)
	}
	if m := mx.WaitMessages(t, 1)[0]; m.AuthUser != "kiln" {
		t.Errorf("auth user %q", m.AuthUser)
	}
}

func TestLimitsAndUTF8(t *testing.T) {
	mx := Start(t, Config{MaxRecipients: 1, MaxMessageBytes: 10, SMTPUTF8: true})
	k := dial(t, mx.Addr())
	k.expect(220)
	k.send("EHLO c\r\n")
	caps := k.expect(250)
	if !strings.Contains(caps, "SIZE 10") || !strings.Contains(caps, "SMTPUTF8") || !strings.Contains(caps, "RCPTMAX=1") {
		t.Errorf("caps %q", caps)
	}
	k.send("MAIL FROM:<ü@d.test> SMTPUTF8\r\nRCPT TO:<a@d.test>\r\nRCPT TO:<b@d.test>\r\nDATA\r\n")
	k.expect(250)
	k.expect(250)
	k.expect(452)
	k.expect(354)
	k.send("0123456789abcdef\r\n.\r\n")
	k.expect(552)
	if st := mx.Stats(); st.Transactions != 0 {
		t.Errorf("oversize message recorded: %+v", st)
	}
}

func TestWaitAndDiscard(t *testing.T) {
	mx := Start(t, Config{Discard: true, TLS: TLSOff})
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(mx.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Hello("c")
			if _, err := sendMsg(c, "s@d.test", []string{"a@d.test"}, "x\r\n"); err != nil {
				t.Error(err)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := mx.Wait(ctx, func(s Stats) bool { return s.Messages == 5 }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(mx.Messages()) != 0 {
		t.Error("Discard kept messages")
	}
	mx.Reset()
	if mx.Stats() != (Stats{}) {
		t.Error("Reset kept counters")
	}
}

func TestCloseEndsDelays(t *testing.T) {
	mx, err := New(Config{Rules: []Rule{{Stage: StageConnect, Delay: time.Hour}}})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := net.Dial("tcp", mx.Addr())
	defer c.Close()
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() { mx.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung behind a delayed greeting")
	}
}

func TestRuleValidation(t *testing.T) {
	bad := []Rule{
		{Stage: "helo"},
		{Stage: StageRcpt, Code: 99},
		{Stage: StageRcpt, Code: 550, Enhanced: "4.1.1"},
		{Stage: StageRcpt, Code: 550, Enhanced: "5.1"},
		{Stage: StageRcpt, Delay: -1},
		{Stage: StageRcpt, Code: 550, Text: "a\r\nb"},
	}
	for _, r := range bad {
		if r.Validate() == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	if _, err := New(Config{Rules: bad[:1]}); err == nil || !strings.Contains(err.Error(), "rule 1") {
		t.Errorf("New with a bad rule: %v", err)
	}
	if err := ValidateRules(ConventionRules()); err != nil {
		t.Errorf("convention rules: %v", err)
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
		if got := smtpsink.Match(tc.p, tc.s); got != tc.ok {
			t.Errorf("match(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestRawHelpers(t *testing.T) {
	silent := StartRaw(t, Silent)
	c, _ := net.Dial("tcp", silent.Addr())
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Error("silent server spoke")
	}
	c.Close()

	garbage := StartRaw(t, Garbage("HTTP/1.1 400 Bad Request\r\n"))
	k := dial(t, garbage.Addr())
	if l, _ := k.r.ReadLine(); l != "HTTP/1.1 400 Bad Request" {
		t.Errorf("garbage %q", l)
	}

	got := make(chan string, 3)
	scripted := StartRaw(t, func(c *RawConn) {
		c.Send("220 raw ESMTP")
		c.Expect("HELO")
		got <- strings.TrimSpace(boolStr(c.Quiet(50 * time.Millisecond)))
		c.Send("250 hi")
		c.Expect("DATA")
		c.Send("354 go")
		data, _ := c.ReadData()
		got <- string(data)
		c.Send("250 ok")
	})
	k = dial(t, scripted.Addr())
	k.expect(220)
	k.send("HELO x\r\n")
	if <-got != "quiet" {
		t.Error("Quiet: client sent more")
	}
	k.expect(250)
	k.send("DATA\r\n")
	k.expect(354)
	k.send("..a\r\nb\r\n.\r\n")
	if d := <-got; d != "..a\r\nb\r\n" {
		t.Errorf("ReadData %q", d)
	}
	k.expect(250)
	if scripted.Conns() != 1 {
		t.Errorf("conns %d", scripted.Conns())
	}
}

func boolStr(b bool) string {
	if b {
		return "quiet"
	}
	return "busy"
}
