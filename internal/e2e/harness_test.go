package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/fakedns"
	"kiln/internal/fakemx"
)

// kilnBin is the binary under test, built once by TestMain.
var kilnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	kilnBin = filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", kilnBin, "kiln/cmd/kiln")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kiln:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool skips a test when a peer is missing, except in CI, where every
// tool the suite uses is installed by scripts/test and a missing one is a
// failure.
func needTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if strings.HasPrefix(n, "/") {
			if _, err := os.Stat(n); err == nil {
				return n
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (scripts/test installs it)", names[0])
	}
	t.Skipf("%s is not installed; skipping (scripts/test installs it)", names[0])
	return ""
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// world is the fake internet: one DNS server and mail exchangers on
// 127.0.0.N, all on one port (kiln's [delivery] port).
type world struct {
	t       *testing.T
	dns     *fakedns.Server
	mxPort  int
	dataDir string
	// delivery, submission and admin are extra TOML for those tables;
	// queue is extra TOML for [queue] (min_free_disk is 0 and the retries
	// 1s and 2s unless it names them).
	delivery, submission, admin, queue string
}

func newWorld(t *testing.T) *world {
	return &world{t: t, dns: fakedns.Start(t), mxPort: freePort(t), dataDir: t.TempDir()}
}

func (w *world) mx(n int, cfg fakemx.Config) *fakemx.Server {
	cfg.Addr = fmt.Sprintf("127.0.0.%d:%d", n, w.mxPort)
	return fakemx.Start(w.t, cfg)
}

func (w *world) domain(domain string, n int) {
	host := fmt.Sprintf("mx%d.%s", n, domain)
	w.dns.AddMX(domain, 10, host)
	w.dns.AddA(host, fmt.Sprintf("127.0.0.%d", n))
}

// daemon is one running kiln process.
type daemon struct {
	t      *testing.T
	cmd    *exec.Cmd
	submit string
	admin  string
	cfg    string
	log    *os.File
	exited chan struct{}
}

// config writes kiln's config for this world; extra is appended TOML.
func (w *world) config(submitPort, adminPort int, extra string) string {
	path := filepath.Join(w.dataDir, "kiln.toml")
	queue := w.queue
	if !strings.Contains(queue, "min_free_disk") {
		queue = "min_free_disk = 0\n" + queue
	}
	if !strings.Contains(queue, "retry_first") {
		queue = "retry_first = \"1s\"\nretry_max = \"2s\"\n" + queue
	}
	cfg := fmt.Sprintf(`hostname = "kiln.test"
data_dir = %q
[submission]
listen = ["127.0.0.1:%d"]
%s
[admin]
listen = "127.0.0.1:%d"
%s
[dns]
servers = [%q]
[delivery]
port = %d
idle_timeout = "300ms"
connect_timeout = "2s"
%s
[queue]
%s
[log]
level = "warn"
events = "events.log"
%s`, filepath.Join(w.dataDir, "data"), submitPort, w.submission, adminPort, w.admin, w.dns.Addr(), w.mxPort, w.delivery, queue, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		w.t.Fatal(err)
	}
	return path
}

// start runs kiln with the world's config and waits until it answers.
func (w *world) start(extra string) *daemon {
	t := w.t
	sp, ap := freePort(t), freePort(t)
	d := &daemon{t: t, submit: fmt.Sprintf("127.0.0.1:%d", sp), admin: fmt.Sprintf("127.0.0.1:%d", ap),
		cfg: w.config(sp, ap, extra), exited: make(chan struct{})}
	d.launch()
	return d
}

func (d *daemon) launch() {
	t := d.t
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(d.cfg), "kiln.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	d.log = logf
	d.exited = make(chan struct{})
	d.cmd = exec.Command(kilnBin, "serve", "--config", d.cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { d.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + d.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case <-d.exited:
			t.Fatalf("kiln exited at start:\n%s", d.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kiln did not come up:\n%s", d.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop asks kiln to stop (SIGTERM) and waits.
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(40 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("kiln did not stop on SIGTERM within 40s")
	}
}

// kill stops kiln the hard way (SIGKILL).
func (d *daemon) kill() {
	d.cmd.Process.Kill()
	<-d.exited
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log.Name())
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// events reads kiln's event log.
func (w *world) events() []string {
	b, _ := os.ReadFile(filepath.Join(w.dataDir, "data", "events.log"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// submit sends one message with the given Message-ID over SMTP and returns
// the queue id from kiln's 250 reply ("" when not acknowledged).
func submit(addr, from, to, msgID string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	tp := textproto.NewConn(c)
	expect := func(code int) (string, error) {
		got, msg, err := tp.ReadResponse(code)
		if err != nil {
			return "", fmt.Errorf("%d %s: %w", got, msg, err)
		}
		return msg, nil
	}
	if _, err := expect(220); err != nil {
		return "", err
	}
	for _, step := range []struct {
		line string
		code int
	}{{"EHLO e2e.test", 250}, {"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}} {
		if err := tp.PrintfLine("%s", step.line); err != nil {
			return "", err
		}
		if _, err := expect(step.code); err != nil {
			return "", err
		}
	}
	w := bufio.NewWriter(c)
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nMessage-ID: %s\r\nSubject: e2e\r\n\r\n%s\r\n.\r\n", from, to, msgID, strings.Repeat("lorem ipsum dolor sit amet ", 40))
	if err := w.Flush(); err != nil {
		return "", err
	}
	msg, err := expect(250)
	if err != nil {
		return "", err
	}
	tp.PrintfLine("QUIT")
	if i := strings.LastIndex(msg, " "); i >= 0 {
		return msg[i+1:], nil
	}
	return msg, nil
}

// messageIDs counts, per Message-ID header, the messages a fake MX got.
func messageIDs(msgs []fakemx.Message) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		for _, line := range strings.Split(string(m.Data), "\r\n") {
			if line == "" {
				break
			}
			if strings.HasPrefix(strings.ToLower(line), "message-id:") {
				out[strings.TrimSpace(line[len("message-id:"):])]++
			}
		}
	}
	return out
}

// waitUntil polls f until it holds or the wall-clock timeout passes.
func waitUntil(t *testing.T, what string, timeout time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = io.Discard
var _ sync.Mutex
