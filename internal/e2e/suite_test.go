package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/internal/fakemx"
)

// The reliability and security suites run a quick version of every case in
// CI (go test ./...) and a full version under KILN_FULL=1, which
// scripts/reliability sets. Figures a full run reports are logged with the
// "report:" prefix, which scripts/reliability collects.

// fullRun reports whether the full reliability run was asked for.
func fullRun() bool { return os.Getenv("KILN_FULL") == "1" }

// envInt reads a positive count from the environment, or returns def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// report logs one figure of a run for scripts/reliability's report.
func report(t *testing.T, format string, a ...any) {
	t.Helper()
	t.Logf("report: %s: %s", t.Name(), fmt.Sprintf(format, a...))
}

// rawClient is an SMTP client that controls every byte, for the cases no
// SMTP library would send.
type rawClient struct {
	t  testing.TB
	c  net.Conn
	tp *textproto.Conn
}

// dialRaw connects and reads the greeting, which must be 220.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	rc := &rawClient{t: t, c: c, tp: textproto.NewConn(c)}
	t.Cleanup(func() { c.Close() })
	if code, msg := rc.reply(); code != 220 {
		t.Fatalf("greeting: %d %s", code, msg)
	}
	return rc
}

// reply reads one reply (all its lines); code 0 means the connection ended.
func (rc *rawClient) reply() (int, string) {
	code, msg, err := rc.tp.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, err.Error()
	}
	return code, msg
}

func (rc *rawClient) cmd(line string) (int, string) {
	rc.t.Helper()
	if err := rc.tp.PrintfLine("%s", line); err != nil {
		return 0, err.Error()
	}
	return rc.reply()
}

func (rc *rawClient) must(line string, want int) string {
	rc.t.Helper()
	code, msg := rc.cmd(line)
	if code != want {
		rc.t.Fatalf("%q: got %d %s, want %d", line, code, msg, want)
	}
	return msg
}

// raw writes b as it is.
func (rc *rawClient) raw(b string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, b); err != nil {
		rc.t.Fatalf("writing: %v", err)
	}
}

// send runs one transaction with data (CRLF lines, without the final dot)
// and returns the reply to the final dot, or the first refusal.
func (rc *rawClient) send(from string, rcpts []string, data string) (int, string) {
	rc.t.Helper()
	if code, msg := rc.cmd("MAIL FROM:<" + from + ">"); code != 250 {
		return code, msg
	}
	ok := 0
	var last string
	var lastCode int
	for _, r := range rcpts {
		code, msg := rc.cmd("RCPT TO:<" + r + ">")
		if code == 250 {
			ok++
		}
		lastCode, last = code, msg
	}
	if ok == 0 {
		rc.cmd("RSET")
		return lastCode, last
	}
	if code, msg := rc.cmd("DATA"); code != 354 {
		return code, msg
	}
	rc.raw(data + ".\r\n")
	return rc.reply()
}

// message is a small message with a Message-ID, in CRLF lines.
func message(from, msgID, subject string, bodyBytes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <r@dest.test>\r\nMessage-ID: %s\r\nSubject: %s\r\n\r\n", from, msgID, subject)
	line := "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor\r\n"
	for n := 0; n < bodyBytes; n += len(line) {
		b.WriteString(line)
	}
	return b.String()
}

// httpDo sends a request with an optional bearer key and does not follow
// redirects; it returns the status, the body and the response header.
func httpDo(t testing.TB, method, url, key string, body []byte, contentType string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	cl := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// adminJSON GETs an admin API path (with the key, if any) and decodes the
// answer into v; it fails the test unless the status is 200.
func adminJSON(t testing.TB, d *daemon, key, path string, v any) {
	t.Helper()
	status, body, _ := httpDo(t, "GET", "http://"+d.admin+path, key, nil, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

// alive reports whether the daemon's process is still running.
func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// healthy reports whether /healthz answers 200.
func (d *daemon) healthy() bool {
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + d.admin + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// ledger counts what a fake MX accepted, by Message-ID, without keeping the
// bodies: it is the fake MX's OnMessage, for runs too big to hold in memory.
type ledger struct {
	mu  sync.Mutex
	got map[string]int
	n   int
}

func newLedger() *ledger { return &ledger{got: map[string]int{}} }

func (l *ledger) onMessage(m *fakemx.Message) {
	if !m.Accepted() {
		return
	}
	id := headerValue(m.Data, "Message-ID")
	l.mu.Lock()
	l.got[id]++
	l.n++
	l.mu.Unlock()
}

// count returns how many messages arrived and how many distinct ids.
func (l *ledger) count() (messages, distinct int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, len(l.got)
}

// missing returns the ids of want that never arrived, and the duplicates
// (arrivals beyond the first) among everything that did.
func (l *ledger) reconcile(want map[string]bool) (missing []string, dups int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range want {
		if l.got[id] == 0 {
			missing = append(missing, id)
		}
	}
	for _, c := range l.got {
		if c > 1 {
			dups += c - 1
		}
	}
	return missing, dups
}

// headerValue returns the first value of a header field in a CRLF message,
// unfolded.
func headerValue(msg []byte, name string) string {
	prefix := strings.ToLower(name) + ":"
	var value []byte
	found := false
	for len(msg) > 0 {
		i := bytes.Index(msg, []byte("\r\n"))
		line := msg
		if i >= 0 {
			line, msg = msg[:i], msg[i+2:]
		} else {
			msg = nil
		}
		if len(line) == 0 {
			break
		}
		if found {
			if line[0] != ' ' && line[0] != '\t' {
				break
			}
			value = append(value, line...)
			continue
		}
		if len(line) > len(prefix) && strings.ToLower(string(line[:len(prefix)])) == prefix {
			value, found = append(value, line[len(prefix):]...), true
		}
	}
	return strings.TrimSpace(string(value))
}
