package mta

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln/configs"
	"kiln/internal/clock"
	"kiln/queue"
)

// FuzzSession feeds each input to kiln's submission server as it would come
// from a client, in every state of a session: right after the greeting,
// after EHLO, after AUTH, after MAIL, after RCPT, and inside DATA (where
// the input is the message). The server must answer every input without a
// panic (go-smtp recovers panics and answers "421 Internal server error",
// and kiln logs them), end every session it is told to end (no deadlock),
// and leave no goroutine behind.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO fuzz.test", "HELO fuzz.test", "LHLO fuzz.test", "EHLO", "EHLO [127.0.0.1]",
		"MAIL FROM:<a@news.test>", "MAIL FROM:<>", "MAIL FROM:<ceo@bank.test>",
		"MAIL FROM:<a@news.test> SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x AUTH=<>",
		"MAIL FROM:<@a.test,@b.test:a@news.test>", "MAIL FROM:<a@news.test> SIZE=99999999999999999999",
		"RCPT TO:<r@dest.test>", "RCPT TO:<\"a@b\"@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y.test",
		"RCPT TO:<victim%elsewhere.test@dest.test>", "RCPT TO:<a!b@dest.test>", "RCPT TO:<postmaster>",
		"RCPT TO:<r@[127.0.0.1]>", "RCPT TO:<r@xn--bcher-kva.test>", "RCPT TO:<ü@bücher.test>",
		"DATA", "DATA\r\nFrom: a@news.test\r\n\r\nbody", "BDAT 10 LAST\r\n0123456789", "BDAT 5\r\nFrom:BDAT 0 LAST",
		"RSET", "NOOP", "VRFY postmaster", "EXPN list", "HELP", "QUIT", "STARTTLS",
		"AUTH PLAIN " + fuzzPlain("news", "s3cret"), "AUTH PLAIN " + fuzzPlain("news", "wrong"), "AUTH PLAIN",
		"AUTH LOGIN", "AUTH LOGIN\r\nbmV3cw==\r\nczNjcmV0", "AUTH CRAM-MD5", "AUTH PLAIN =", "AUTH LOGIN *",
		"XCLIENT ADDR=192.0.2.1", "XFORWARD NAME=x",
		"From: a@news.test\r\nSubject: x\r\n\r\nbody\n.\nMAIL FROM:<ceo@bank.test>\r\n",
		"From: a@news.test\r\n\r\na\r.\r\nb", "From: a@news.test\r\n\r\n\x00", "From: a@news.test\r\nFrom: b@x.test\r\n\r\n",
		"Subject: no from\r\n\r\n", "From: =?utf-8?q?=C3=A9?= <a@news.test>\r\n\r\n", "From: <a@news.test>,<b@news.test>\r\n\r\n",
		"MAIL FROM:<a@news.test>\r\nRCPT TO:<r@dest.test>\r\nDATA\r\nFrom: a@news.test\r\n\r\npipelined\r\n.\r\n",
		"\x00", "\r", "\n", "\r\n\r\n", ".", "..", strings.Repeat("A", 3000), strings.Repeat("RCPT TO:<r@dest.test>\r\n", 50),
	} {
		f.Add(s)
	}
	fz := startFuzzServer(f)
	f.Fuzz(func(t *testing.T, input string) {
		fz.run(t, input)
	})
}

func fuzzPlain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// fuzzServer is one kiln server shared by every input of a fuzz run: all
// its mail is held (nothing is delivered), its clock is moved past the AUTH
// lockout window before every input, and its log is watched for panics.
type fuzzServer struct {
	srv    *Server
	addr   string
	clk    *clock.Fake
	panics *panicLog
	base   int // goroutines with no session open
}

func startFuzzServer(f *testing.F) *fuzzServer {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	cfg := configs.Default()
	cfg.Hostname = "kiln.test"
	cfg.DataDir = f.TempDir()
	cfg.Submission.Listen = []configs.HostPort{"127.0.0.1:0"}
	cfg.Submission.TrustedNetworks = nil
	// An input may leave kiln waiting for bytes that never come (a BDAT
	// chunk longer than what follows it); the read timeout ends that wait,
	// and six sessions must fit well inside the fuzzer's ten seconds per input.
	cfg.Submission.ReadTimeout = configs.Duration(500 * time.Millisecond)
	cfg.Submission.SessionTimeout = configs.Duration(10 * time.Second)
	cfg.Submission.MaxConnectionsPerIP = 10000
	cfg.Submission.MaxMessageSize = 64 << 10
	cfg.Accounts = []configs.Account{{Name: "news", PasswordHash: string(hash), SenderDomains: []string{"news.test"}}}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.DNS.Servers = []configs.HostPort{"127.0.0.1:1"} // nothing is looked up; never the network
	cfg.Log.Events = ""
	cfg.Queue.MinFreeDisk = 0
	pl := &panicLog{}
	fz := &fuzzServer{clk: clock.NewFake(time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)), panics: pl}
	srv, err := New(cfg, Options{Clock: fz.clk, Log: slog.New(pl)})
	if err != nil {
		f.Fatal(err)
	}
	// Hold everything: accepted messages stay queued and nothing dials out.
	if _, err := srv.Store().AddHold(queue.HoldRule{}); err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		f.Fatalf("server did not start: %v", err)
	}
	f.Cleanup(func() {
		cancel()
		<-done
	})
	fz.srv, fz.addr = srv, srv.SubmissionAddrs()[0]
	time.Sleep(100 * time.Millisecond)
	fz.base = runtime.NumGoroutine()
	return fz
}

// sessionStates are the commands that bring a session to each state.
var sessionStates = []struct {
	name  string
	setup []string
}{
	{"greeted", nil},
	{"ehlo", []string{"EHLO fuzz.test"}},
	{"auth", []string{"EHLO fuzz.test", "AUTH PLAIN " + fuzzPlain("news", "s3cret")}},
	{"mail", []string{"EHLO fuzz.test", "AUTH PLAIN " + fuzzPlain("news", "s3cret"), "MAIL FROM:<a@news.test>"}},
	{"rcpt", []string{"EHLO fuzz.test", "AUTH PLAIN " + fuzzPlain("news", "s3cret"), "MAIL FROM:<a@news.test>", "RCPT TO:<r@dest.test>"}},
	{"data", []string{"EHLO fuzz.test", "AUTH PLAIN " + fuzzPlain("news", "s3cret"), "MAIL FROM:<a@news.test>", "RCPT TO:<r@dest.test>", "DATA"}},
}

// sessionDeadline bounds one session: the input, an end of data, QUIT, and
// kiln's answers. A session that outlives it is taken for a deadlock (the
// server's read timeout is half a second, its session limit ten).
const sessionDeadline = 20 * time.Second

func (fz *fuzzServer) run(t *testing.T, input string) {
	for _, st := range sessionStates {
		// Past the AUTH lockout window: earlier inputs' failed AUTH
		// attempts must not lock the setup out.
		fz.clk.Advance(time.Hour)
		c, err := net.Dial("tcp", fz.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(sessionDeadline))
		tp := textproto.NewReader(bufio.NewReader(c))
		if code, msg, err := tp.ReadResponse(220); err != nil {
			c.Close()
			t.Fatalf("%s: greeting %d %s: %v", st.name, code, msg, err)
		}
		for _, line := range st.setup {
			io.WriteString(c, line+"\r\n")
			if code, msg, err := tp.ReadResponse(0); err != nil || code >= 400 {
				c.Close()
				t.Fatalf("%s: setting up with %q: %d %s %v", st.name, line, code, msg, err)
			}
		}
		// The input, then whatever ends a message if one was started, then
		// QUIT; kiln must answer and hang up.
		io.WriteString(c, input+"\r\n.\r\nQUIT\r\n")
		rest, err := io.ReadAll(tp.R)
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: the session did not end within %v (deadlock?); kiln said %q", st.name, sessionDeadline, clip(rest))
		}
		if strings.Contains(string(rest), "Internal server error") {
			t.Fatalf("%s: kiln panicked (go-smtp answered %q); log: %s", st.name, clip(rest), fz.panics.String())
		}
	}
	if p := fz.panics.String(); p != "" {
		t.Fatalf("kiln logged a panic: %s", p)
	}
	// Every session has ended: the goroutines that served them are gone.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > fz.base+5 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after the sessions ended, %d before: leak?\n%s", runtime.NumGoroutine(), fz.base, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func clip(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + "..."
	}
	return string(b)
}

// panicLog is kiln's log during fuzzing: it drops everything but records
// that mention a panic.
type panicLog struct {
	mu   sync.Mutex
	seen []string
}

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicLog) WithGroup(string) slog.Handler            { return p }

func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	text := r.Message
	r.Attrs(func(a slog.Attr) bool {
		text += fmt.Sprintf(" %s=%v", a.Key, a.Value)
		return true
	})
	if strings.Contains(strings.ToLower(text), "panic") {
		p.mu.Lock()
		p.seen = append(p.seen, text)
		p.mu.Unlock()
	}
	return nil
}

func (p *panicLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.seen, "\n")
}
