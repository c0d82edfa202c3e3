package mta

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/configs"
	"kiln/events"
	"kiln/internal/clock"
	"kiln/internal/fakedns"
	"kiln/internal/fakemx"
)

var tStart = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

// world is one kiln daemon in-process, on a fake clock, with a fake DNS and
// fake MX hosts on loopback, and a record of every event.
type world struct {
	t    *testing.T
	cfg  *configs.Config
	srv  *Server
	clk  *clock.Fake
	dns  *fakedns.Server
	port string // the delivery port every fake MX listens on

	mu     sync.Mutex
	events []events.Event
	cond   *sync.Cond

	stop func()
}

// testLog shows kiln's log when a test fails (and with -v).
func testLog(t *testing.T) *slog.Logger {
	if testing.Verbose() || os.Getenv("KILN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newWorld(t *testing.T, tune func(*configs.Config), opts ...func(*Options)) *world {
	t.Helper()
	w := &world{t: t, clk: clock.NewFake(tStart), dns: fakedns.Start(t)}
	w.cond = sync.NewCond(&w.mu)
	// A port free on 127.0.0.1 is almost surely free on 127.0.0.2-9 too:
	// every fake MX of the world listens on it, as [delivery] port says.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, w.port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()

	cfg := configs.Default()
	cfg.Hostname = "kiln.test"
	cfg.DataDir = t.TempDir()
	cfg.Submission.Listen = []configs.HostPort{"127.0.0.1:0"}
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.DNS.Servers = []configs.HostPort{configs.HostPort(w.dns.Addr())}
	fmt.Sscan(w.port, &cfg.Delivery.Port)
	cfg.Delivery.IdleTimeout = configs.Duration(200 * time.Millisecond)
	cfg.Delivery.ConnectTimeout = configs.Duration(2 * time.Second)
	cfg.Log.Events = ""
	cfg.Queue.MinFreeDisk = 0
	if tune != nil {
		tune(cfg)
	}
	w.cfg = cfg
	o := Options{Clock: w.clk, Log: testLog(t)}
	for _, f := range opts {
		f(&o)
	}
	w.start(o)
	return w
}

func (w *world) start(o Options) {
	t := w.t
	srv, err := New(w.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = srv
	srv.Bus().Subscribe(events.SinkFunc(func(e events.Event) {
		w.mu.Lock()
		w.events = append(w.events, e)
		w.cond.Broadcast()
		w.mu.Unlock()
	}))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
	t.Cleanup(w.stop)
}

// restart stops the daemon and starts a new one on the same data.
func (w *world) restart(opts ...func(*Options)) {
	w.stop()
	o := Options{Clock: w.clk, Log: testLog(w.t)}
	for _, f := range opts {
		f(&o)
	}
	w.start(o)
}

// mx starts a fake MX host on 127.0.0.n at the world's delivery port.
func (w *world) mx(n int, cfg fakemx.Config) *fakemx.Server {
	cfg.Addr = fmt.Sprintf("127.0.0.%d:%s", n, w.port)
	return fakemx.Start(w.t, cfg)
}

// domain publishes domain with one MX host on 127.0.0.n.
func (w *world) domain(domain string, n int) {
	host := fmt.Sprintf("mx%d.%s", n, domain)
	w.dns.AddMX(domain, 10, host)
	w.dns.AddA(host, fmt.Sprintf("127.0.0.%d", n))
}

func (w *world) submitAddr() string { return w.srv.SubmissionAddrs()[0] }

// waitEvent waits until an event matching f has been emitted (the clock is
// fake, so the timeout is on the wall clock).
func (w *world) waitEvent(what string, f func(events.Event) bool) events.Event {
	w.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for _, e := range w.events {
			if f(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, e := range w.events {
				seen = append(seen, e.Type+" "+e.Recipient+" "+e.Reply)
			}
			w.t.Fatalf("no %s event; saw:\n  %s", what, strings.Join(seen, "\n  "))
		}
		go func() { time.Sleep(20 * time.Millisecond); w.cond.Broadcast() }()
		w.cond.Wait()
	}
}

func (w *world) count(f func(events.Event) bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.events {
		if f(e) {
			n++
		}
	}
	return n
}

func typed(typ, rcpt string) func(events.Event) bool {
	return func(e events.Event) bool { return e.Type == typ && (rcpt == "" || e.Recipient == rcpt) }
}

// advance moves the fake clock and gives the scheduler a moment to act.
// It first lets the scheduler finish what is in hand (for up to two seconds
// of wall time): an outcome handled after the move would be timed from the
// new "now" (a site marked down until a minute after it, say), and the test
// would wait for a wake-up that no further move brings.
func (w *world) advance(d time.Duration) {
	if s := w.srv.sched; s != nil {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			busy := true
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := s.do(ctx, func() { busy = len(s.active) > 0 })
			cancel()
			if err != nil || !busy {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	w.clk.Advance(d)
	time.Sleep(50 * time.Millisecond)
}

// client is a tiny SMTP client for tests that must control every byte.
type client struct {
	t  *testing.T
	c  net.Conn
	tp *textproto.Conn
}

func dialSMTP(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	s := &client{t: t, c: c, tp: textproto.NewConn(c)}
	t.Cleanup(func() { c.Close() })
	s.expect(220)
	return s
}

// cmd sends a line and returns the reply's code and text.
func (s *client) cmd(line string) (int, string) {
	s.t.Helper()
	if err := s.tp.PrintfLine("%s", line); err != nil {
		s.t.Fatal(err)
	}
	return s.reply()
}

func (s *client) reply() (int, string) {
	s.t.Helper()
	code, msg, err := s.tp.ReadResponse(0)
	if err != nil && code == 0 {
		s.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

func (s *client) expect(want int) string {
	s.t.Helper()
	code, msg := s.reply()
	if code != want {
		s.t.Fatalf("got %d %s, want %d", code, msg, want)
	}
	return msg
}

func (s *client) must(line string, want int) string {
	s.t.Helper()
	code, msg := s.cmd(line)
	if code != want {
		s.t.Fatalf("%q: got %d %s, want %d", line, code, msg, want)
	}
	return msg
}

// raw writes bytes as they are (for DATA content with odd line endings).
func (s *client) raw(b string) {
	s.t.Helper()
	if _, err := io.WriteString(s.c, b); err != nil {
		s.t.Fatal(err)
	}
}

// send runs one whole transaction and returns the final reply.
func (s *client) send(from string, to []string, data string) (int, string) {
	s.t.Helper()
	s.must("MAIL FROM:<"+from+">", 250)
	for _, r := range to {
		s.must("RCPT TO:<"+r+">", 250)
	}
	s.must("DATA", 354)
	s.raw(data)
	s.raw(".\r\n")
	return s.reply()
}

func msgText(from, subject string) string {
	return "From: " + from + "\r\nTo: someone@example.test\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
}

// readLines is for servers that refuse with a line and close.
func readLine(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(l)
}
