package dashboard

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// A minimal Chrome DevTools Protocol client: enough to drive one page of a
// headless Chromium, evaluate script in it, collect its console errors and
// uncaught exceptions, and take a screenshot. It speaks JSON over the
// DevTools websocket; see https://chromedevtools.github.io/devtools-protocol/.

// chromiumFlags are what a headless Chromium needs as root in a sandbox
// with no network but loopback: no sandbox (root), no GPU, and nothing that
// calls home.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
	"--window-size=1280,900",
}

// findChromium returns the browser to drive: $CHROMIUM, else Debian's
// chromium.
func findChromium() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

type chromium struct {
	cmd    *exec.Cmd
	port   string
	mu     sync.Mutex
	stderr strings.Builder
}

var devtoolsRe = regexp.MustCompile(`DevTools listening on ws://127\.0\.0\.1:(\d+)/`)

// startChromium starts a headless browser with a fresh profile and waits
// for its DevTools endpoint. The browser is killed, with every process it
// started, when the test ends.
func startChromium(t *testing.T, path string) *chromium {
	t.Helper()
	args := append(append([]string(nil), chromiumFlags...),
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--remote-allow-origins=http://127.0.0.1", "about:blank")
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	b := &chromium{cmd: cmd}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			b.mu.Lock()
			if b.stderr.Len() < 64<<10 {
				b.stderr.WriteString(line + "\n")
			}
			b.mu.Unlock()
			if m := devtoolsRe.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		close(found)
	}()
	select {
	case port, ok := <-found:
		if !ok {
			t.Fatalf("chromium exited before listening:\n%s", b.log())
		}
		b.port = port
	case <-time.After(60 * time.Second):
		t.Fatalf("chromium did not start:\n%s", b.log())
	}
	return b
}

func (b *chromium) log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// page connects to the browser's first page.
func (b *chromium) page(t *testing.T) *cdpPage {
	t.Helper()
	res, err := http.Get("http://127.0.0.1:" + b.port + "/json/list")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var targets []struct {
		Type, URL, WebSocketDebuggerURL string
	}
	if err := json.NewDecoder(res.Body).Decode(&targets); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if tg.Type == "page" {
			cfg, err := websocket.NewConfig(tg.WebSocketDebuggerURL, "http://127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			ws, err := websocket.DialConfig(cfg)
			if err != nil {
				t.Fatalf("devtools websocket: %v", err)
			}
			ws.MaxPayloadBytes = 64 << 20
			p := &cdpPage{t: t, ws: ws, pending: map[int64]chan cdpMsg{}}
			go p.read()
			t.Cleanup(func() { ws.Close() })
			for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
				p.call(m, nil, nil)
			}
			return p
		}
	}
	t.Fatalf("no page target in %+v", targets)
	return nil
}

type cdpMsg struct {
	ID     int64           `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type cdpPage struct {
	t  *testing.T
	ws *websocket.Conn

	mu       sync.Mutex
	nextID   int64
	pending  map[int64]chan cdpMsg
	problems []string // console errors, uncaught exceptions, failed loads
}

func (p *cdpPage) read() {
	for {
		var raw []byte
		if err := websocket.Message.Receive(p.ws, &raw); err != nil {
			p.mu.Lock()
			for id, ch := range p.pending {
				close(ch)
				delete(p.pending, id)
			}
			p.mu.Unlock()
			return
		}
		var m cdpMsg
		if err := json.Unmarshal(raw, &m); err != nil {
			continue
		}
		if m.ID != 0 {
			p.mu.Lock()
			ch := p.pending[m.ID]
			delete(p.pending, m.ID)
			p.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		p.event(m)
	}
}

// event records what the page complains about.
func (p *cdpPage) event(m cdpMsg) {
	var problem string
	switch m.Method {
	case "Runtime.exceptionThrown":
		var ev struct {
			ExceptionDetails struct {
				Text      string `json:"text"`
				URL       string `json:"url"`
				Line      int    `json:"lineNumber"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(m.Params, &ev)
		d := ev.ExceptionDetails
		problem = fmt.Sprintf("uncaught exception: %s %s (%s:%d)", d.Text, d.Exception.Description, d.URL, d.Line)
	case "Runtime.consoleAPICalled":
		var ev struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(m.Params, &ev)
		if ev.Type == "error" || ev.Type == "assert" {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, fmt.Sprint(a.Value, a.Description))
			}
			problem = "console." + ev.Type + ": " + strings.Join(parts, " ")
		}
	case "Log.entryAdded":
		var ev struct {
			Entry struct {
				Level, Source, Text, URL string
			} `json:"entry"`
		}
		json.Unmarshal(m.Params, &ev)
		if ev.Entry.Level == "error" {
			problem = fmt.Sprintf("%s error: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
		}
	}
	if problem != "" {
		p.mu.Lock()
		p.problems = append(p.problems, problem)
		p.mu.Unlock()
	}
}

// takeProblems returns and clears what the page complained about.
func (p *cdpPage) takeProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.problems
	p.problems = nil
	return out
}

// call sends a command and decodes its result into result (if not nil).
func (p *cdpPage) call(method string, params, result any) {
	p.t.Helper()
	if err := p.try(method, params, result); err != nil {
		p.t.Fatalf("%s: %v", method, err)
	}
}

func (p *cdpPage) try(method string, params, result any) error {
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	ch := make(chan cdpMsg, 1)
	p.pending[id] = ch
	p.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	if err := websocket.Message.Send(p.ws, string(msg)); err != nil {
		return err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return io.ErrUnexpectedEOF
		}
		if m.Error != nil {
			return fmt.Errorf("%d %s", m.Error.Code, m.Error.Message)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("no answer in 30s")
	}
}

// eval runs expr in the page (awaiting a promise) and decodes its value.
func (p *cdpPage) eval(expr string, v any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := p.try("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("%s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if v != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, v)
	}
	return nil
}

func (p *cdpPage) mustEval(expr string, v any) {
	p.t.Helper()
	if err := p.eval(expr, v); err != nil {
		p.t.Fatal(err)
	}
}

// waitFor evaluates expr until it is true.
func (p *cdpPage) waitFor(what, expr string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		err := p.eval("!!("+expr+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var state string
			p.eval(`location.href + ' ' + document.readyState + ' renders=' + document.body.dataset.renders + ' status=' + (document.getElementById('status')||{}).textContent`, &state)
			p.t.Fatalf("waiting for %s (%s): %v; page: %s; problems: %v", what, expr, err, state, p.takeProblems())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// navigate loads url and waits until the document at path (where url
// leads, after redirects) is complete.
func (p *cdpPage) navigate(url, path string) {
	p.t.Helper()
	var r struct {
		ErrorText string `json:"errorText"`
	}
	p.call("Page.navigate", map[string]any{"url": url}, &r)
	if r.ErrorText != "" {
		p.t.Fatalf("navigating to %s: %s", url, r.ErrorText)
	}
	p.waitFor("the page to load", `location.pathname === `+jsString(path)+` && document.readyState === 'complete'`)
}

// screenshot writes a PNG of the whole page, width pixels wide.
func (p *cdpPage) screenshot(path string, width int) int {
	p.t.Helper()
	var height int
	p.mustEval(`Math.ceil(document.documentElement.scrollHeight)`, &height)
	height = min(max(height, 600), 6000)
	p.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	defer p.call("Emulation.clearDeviceMetricsOverride", nil, nil)
	var r struct {
		Data string `json:"data"`
	}
	p.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &r)
	b, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return len(b)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
