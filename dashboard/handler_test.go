package dashboard

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"kiln/events"
	"kiln/events/stats"
	"kiln/internal/clock"
	"kiln/queue"
)

const adminKey = "k1ln-admin-key-for-tests-0123456789"

type world struct {
	clk   *clock.Fake
	stats *stats.Stats
	warm  *fakeWarmup
	evs   *fakeEvents
	q     *fakeQueue
	sup   *fakeSuppressions
	h     *Handler
	srv   *httptest.Server
}

func newWorld(t testing.TB, opts Options) *world {
	t.Helper()
	w := &world{clk: clock.NewFake(t0), warm: newFakeWarmup(), evs: &fakeEvents{}, q: newFakeQueue(), sup: newFakeSuppressions()}
	st, err := stats.New(nil, stats.Options{Clock: w.clk, FlushEvery: time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w.stats = st
	past := w.warm.Status(t0)
	for d := 4; d >= 1; d-- {
		past.Date = t0.AddDate(0, 0, -d).Format("2006-01-02")
		for i := range past.Egress {
			for j := range past.Egress[i].Sites {
				s := &past.Egress[i].Sites[j]
				if s.Cap > 0 {
					s.Cap, s.Sent = 50*(5-d), 50*(5-d)-d
				}
			}
		}
		st.RecordWarmup(past)
	}
	opts.Authorize = func(key string) bool { return subtle.ConstantTimeCompare([]byte(key), []byte(adminKey)) == 1 }
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	src := Sources{Stats: st, Warmup: w.warm, Events: w.evs, Queue: w.q, Suppressions: w.sup,
		PendingByDomain: func(limit int) ([]DomainCount, error) {
			return []DomainCount{{"gmail.example", 6000}, {"yahoo.example", 1300}}, nil
		}, Clock: w.clk}
	w.h = New(src, opts)
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", w.h)
	mux.Handle("/api/v1/dashboard/", w.h)
	w.srv = httptest.NewServer(mux)
	t.Cleanup(w.srv.Close)
	return w
}

// traffic emits a minute of events for each of the last n minutes.
func (w *world) traffic(n int) {
	now := w.clk.Now()
	for i := n; i >= 1; i-- {
		at := now.Add(-time.Duration(i)*time.Minute + time.Second)
		for k := range 5 + i%7 {
			w.stats.Handle(events.Event{Time: at, Type: events.Delivered, Reason: "delivered", Site: "google", Account: "shop", Egress: "ip1"})
			if k%3 == 0 {
				w.stats.Handle(events.Event{Time: at, Type: events.Deferred, Reason: "mailboxfull", Site: "yahoo", Account: "shop", Egress: "ip1"})
			}
		}
		if i%4 == 0 {
			w.stats.Handle(events.Event{Time: at, Type: events.Bounced, Reason: "userunknown", Site: "google", Account: "news", Egress: "ip1"})
		}
	}
}

type client struct {
	t   testing.TB
	w   *world
	hc  *http.Client
	key string // sent as a bearer key when set
}

func (w *world) client(t testing.TB) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, w: w, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, body io.Reader, hdr ...string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.w.srv.URL+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return res
}

// getJSON fetches path, checks the status and decodes the body into v.
func (c *client) getJSON(path string, status int, v any) {
	c.t.Helper()
	res := c.do("GET", path, nil)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		c.t.Fatalf("GET %s: %d %s, want %d", path, res.StatusCode, b, status)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
}

func (c *client) login(key string) *http.Response {
	c.t.Helper()
	form := url.Values{"key": {key}, "next": {"/dashboard/warmup"}}
	return c.do("POST", "/dashboard/login", strings.NewReader(form.Encode()),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", c.w.srv.URL, "Sec-Fetch-Site", "same-origin")
}

func (c *client) csrf() string {
	c.t.Helper()
	var s struct{ CSRF string }
	c.getJSON("/api/v1/dashboard/session", 200, &s)
	if s.CSRF == "" {
		c.t.Fatal("no CSRF token in the session")
	}
	return s.CSRF
}

type errBody struct {
	Error struct{ Code, Message string }
}

func TestWithoutKey(t *testing.T) {
	w := newWorld(t, Options{})
	c := w.client(t)
	for _, p := range []string{"overview", "queues", "warmup", "suppressions?q=x", "messages?id=x", "session", "series?type=delivered", "nope"} {
		var e errBody
		c.getJSON("/api/v1/dashboard/"+p, 401, &e)
		if e.Error.Code != "unauthorized" {
			t.Errorf("%s: %+v", p, e)
		}
	}
	res := c.do("POST", "/api/v1/dashboard/suppressions/remove", strings.NewReader(`{"address":"gone@gmail.example","account":"shop"}`))
	if res.StatusCode != 401 || len(w.sup.removed) != 0 {
		t.Fatalf("remove without a key: %d, removed %v", res.StatusCode, w.sup.removed)
	}
	for _, p := range []string{"/dashboard/", "/dashboard/warmup"} {
		res := c.do("GET", p, nil)
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), "/dashboard/login?next=") {
			t.Errorf("%s: %d -> %q", p, res.StatusCode, res.Header.Get("Location"))
		}
	}
	// The login page and the assets need no key.
	for _, p := range []string{"/dashboard/login", "/dashboard/static/app.js", "/dashboard/static/app.css", "/dashboard/static/favicon.svg"} {
		res := c.do("GET", p, nil)
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
	}
	c.key = "wrong"
	c.getJSON("/api/v1/dashboard/overview", 401, nil)
	if res := c.do("GET", "/dashboard/overview", nil); res.StatusCode != http.StatusSeeOther {
		t.Errorf("page with a wrong key: %d", res.StatusCode)
	}
}

func TestBearerKey(t *testing.T) {
	w := newWorld(t, Options{})
	c := w.client(t)
	c.key = adminKey
	c.getJSON("/api/v1/dashboard/overview", 200, nil)
	if res := c.do("GET", "/dashboard/overview", nil); res.StatusCode != 200 {
		t.Fatalf("page with the key: %d", res.StatusCode)
	}
	// No ambient credential, so no CSRF token is needed.
	res := c.do("POST", "/api/v1/dashboard/suppressions/remove", strings.NewReader(`{"address":"gone@gmail.example","account":"shop"}`))
	if res.StatusCode != 200 || len(w.sup.removed) != 1 {
		t.Fatalf("remove with the key: %d, removed %v", res.StatusCode, w.sup.removed)
	}
}

func TestLoginSession(t *testing.T) {
	w := newWorld(t, Options{SessionTTL: time.Hour})
	c := w.client(t)
	res := c.login("not the key")
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "error=key") || len(res.Cookies()) != 0 {
		t.Fatalf("wrong key: %d %q %v", res.StatusCode, res.Header.Get("Location"), res.Cookies())
	}
	res = c.login(adminKey)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/dashboard/warmup" {
		t.Fatalf("login: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	cookies := res.Cookies()
	if len(cookies) != 1 || cookies[0].Name != cookieName || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/" {
		t.Fatalf("cookie: %+v", cookies)
	}
	if strings.Contains(cookies[0].Value, adminKey) {
		t.Fatal("the cookie carries the key")
	}
	if res := c.do("GET", "/dashboard/warmup", nil); res.StatusCode != 200 {
		t.Fatalf("page after login: %d", res.StatusCode)
	}
	c.getJSON("/api/v1/dashboard/warmup", 200, nil)
	csrf := c.csrf()

	remove := func(hdr ...string) int {
		res := c.do("POST", "/api/v1/dashboard/suppressions/remove", strings.NewReader(`{"address":"gone@gmail.example","account":"shop"}`),
			append([]string{"Content-Type", "application/json"}, hdr...)...)
		res.Body.Close()
		return res.StatusCode
	}
	if code := remove(); code != 403 {
		t.Errorf("remove without a CSRF token: %d", code)
	}
	if code := remove(csrfHeader, "forged"); code != 403 {
		t.Errorf("remove with a wrong CSRF token: %d", code)
	}
	if code := remove(csrfHeader, csrf, "Sec-Fetch-Site", "cross-site"); code != 403 {
		t.Errorf("cross-site remove: %d", code)
	}
	if code := remove(csrfHeader, csrf, "Origin", "https://evil.example"); code != 403 {
		t.Errorf("remove from another origin: %d", code)
	}
	if len(w.sup.removed) != 0 {
		t.Fatalf("removed by a forged request: %v", w.sup.removed)
	}
	if code := remove(csrfHeader, csrf, "Origin", w.srv.URL, "Sec-Fetch-Site", "same-origin"); code != 200 || len(w.sup.removed) != 1 {
		t.Fatalf("remove: %d %v", code, w.sup.removed)
	}
	if code := remove(csrfHeader, csrf); code != 404 {
		t.Errorf("removing it again: %d", code)
	}

	// The session ends with its TTL...
	w.clk.Advance(time.Hour)
	c.getJSON("/api/v1/dashboard/overview", 401, nil)
	if res := c.do("GET", "/dashboard/overview", nil); !strings.Contains(res.Header.Get("Location"), "error=expired") {
		t.Fatalf("expired session: %q", res.Header.Get("Location"))
	}
	// ...and at logout, which needs the token too.
	c.login(adminKey)
	csrf = c.csrf()
	if res := c.do("POST", "/dashboard/logout", nil); res.StatusCode != 403 {
		t.Fatalf("logout without a token: %d", res.StatusCode)
	}
	if res := c.do("POST", "/dashboard/logout", nil, csrfHeader, csrf); res.StatusCode != 200 {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	c.getJSON("/api/v1/dashboard/overview", 401, nil)
}

func TestLoginRefusals(t *testing.T) {
	w := newWorld(t, Options{})
	c := w.client(t)
	form := url.Values{"key": {adminKey}}.Encode()
	res := c.do("POST", "/dashboard/login", strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded",
		"Sec-Fetch-Site", "cross-site")
	if res.StatusCode != 403 || len(res.Cookies()) != 0 {
		t.Fatalf("cross-site login: %d", res.StatusCode)
	}
	// An open redirect is not possible through next.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/dashboard/..//evil", "/elsewhere"} {
		res := c.do("POST", "/dashboard/login", strings.NewReader(url.Values{"key": {adminKey}, "next": {next}}.Encode()),
			"Content-Type", "application/x-www-form-urlencoded")
		if loc := res.Header.Get("Location"); loc != "/dashboard/" {
			t.Errorf("next %q: redirected to %q", next, loc)
		}
	}
	// After ten wrong keys, even the right one must wait.
	for range 10 {
		c.login("guess")
	}
	res = c.login(adminKey)
	if !strings.Contains(res.Header.Get("Location"), "error=busy") || len(res.Cookies()) != 0 {
		t.Fatalf("after ten wrong keys: %q", res.Header.Get("Location"))
	}
	page := c.do("GET", "/dashboard/login?error=busy&next=/dashboard/queues", nil)
	b, _ := io.ReadAll(page.Body)
	if !strings.Contains(string(b), "Too many wrong keys") || !strings.Contains(string(b), `value="/dashboard/queues"`) {
		t.Fatalf("login page: %s", b)
	}
}

func TestPage(t *testing.T) {
	w := newWorld(t, Options{Refresh: 1500 * time.Millisecond})
	c := w.client(t)
	c.key = adminKey
	for _, p := range append(pages, "") {
		res := c.do("GET", "/dashboard/"+p, nil)
		b, _ := io.ReadAll(res.Body)
		want := p
		if want == "" {
			want = "overview"
		}
		if res.StatusCode != 200 || !strings.Contains(string(b), `data-page="`+want+`"`) || !strings.Contains(string(b), `data-refresh="1500"`) {
			t.Errorf("%s: %d %s", p, res.StatusCode, b)
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: cacheable", p)
		}
	}
	if res := c.do("GET", "/dashboard/secrets", nil); res.StatusCode != 404 {
		t.Errorf("unknown page: %d", res.StatusCode)
	}
	res := c.do("GET", "/dashboard/static/app.js", nil)
	etag := res.Header.Get("ETag")
	if res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || etag == "" {
		t.Errorf("app.js: %q %q", res.Header.Get("Content-Type"), etag)
	}
	if res := c.do("GET", "/dashboard/static/app.js", nil, "If-None-Match", etag); res.StatusCode != 304 {
		t.Errorf("revalidation: %d", res.StatusCode)
	}
	if res := c.do("GET", "/dashboard/static/..%2fhandler.go", nil); res.StatusCode != 404 {
		t.Errorf("escape from static: %d", res.StatusCode)
	}
}

func TestOverview(t *testing.T) {
	w := newWorld(t, Options{})
	w.traffic(90)
	c := w.client(t)
	c.key = adminKey
	var o Overview
	c.getJSON("/api/v1/dashboard/overview?range=1h", 200, &o)
	if len(o.Series) != 3 || o.Series[0].Type != events.Delivered || o.Series[0].Step != 60 || len(o.Series[0].Points) != 60 {
		t.Fatalf("series: %+v", o.Series)
	}
	var sum uint64
	for _, p := range o.Series[0].Points {
		sum += p
	}
	if sum != o.Totals[events.Delivered] || sum == 0 {
		t.Fatalf("points sum %d, total %d", sum, o.Totals[events.Delivered])
	}
	if len(o.BounceReasons) != 1 || o.BounceReasons[0].Value != "userunknown" || len(o.Sites) != 1 || o.Queue.Total != 1_000_000 {
		t.Fatalf("overview: %+v", o)
	}
	c.getJSON("/api/v1/dashboard/overview?range=30d", 200, &o)
	if o.Series[0].Step != 6*3600 {
		t.Fatalf("30 days: step %d", o.Series[0].Step)
	}
	c.getJSON("/api/v1/dashboard/overview?range=2y", 400, nil)

	var s stats.Series
	c.getJSON("/api/v1/dashboard/series?type=deferred&by=site&value=yahoo&range=30m&step=5m", 200, &s)
	if len(s.Points) != 6 || s.Total == 0 {
		t.Fatalf("series: %+v", s)
	}
	for _, q := range []string{"type=", "type=delivered&by=colour", "type=delivered&since=yesterday", "type=delivered&step=fast", "type=delivered&range=-1h"} {
		var e errBody
		c.getJSON("/api/v1/dashboard/series?"+q, 400, &e)
		if e.Error.Code != "bad_request" || e.Error.Message == "" {
			t.Errorf("%s: %+v", q, e)
		}
	}
}

func TestQueues(t *testing.T) {
	w := newWorld(t, Options{QueueRefresh: time.Hour})
	c := w.client(t)
	c.key = adminKey
	var q QueueSnapshot
	c.getJSON("/api/v1/dashboard/queues", 200, &q)
	if q.Total != 1_000_000 || q.Held != 12 || len(q.Lanes) != 4 || q.Lanes[0] != (LaneCount{"default|google", "default", "google", 5200}) {
		t.Fatalf("snapshot: %+v", q)
	}
	if len(q.Sites) != 3 || q.Sites[0] != (SiteCount{"google", 6000}) || q.Sites[2].Site != "mx:mx1.example.net" {
		t.Fatalf("sites: %+v", q.Sites)
	}
	if !q.DomainsAvailable || len(q.Domains) != 2 {
		t.Fatalf("domains: %+v", q)
	}
	// Many viewers, one count.
	for range 20 {
		c.getJSON("/api/v1/dashboard/queues", 200, nil)
		c.getJSON("/api/v1/dashboard/overview", 200, nil)
	}
	if n := w.q.counts.Load(); n != 1 {
		t.Fatalf("counted the queue %d times", n)
	}
}

func TestQueueRefresh(t *testing.T) {
	w := newWorld(t, Options{QueueRefresh: 20 * time.Millisecond})
	w.h.src.PendingByDomain = nil
	w.h.queue.src.PendingByDomain = nil
	c := w.client(t)
	c.key = adminKey
	var q QueueSnapshot
	c.getJSON("/api/v1/dashboard/queues", 200, &q)
	if q.DomainsAvailable {
		t.Fatal("domains available without a counter")
	}
	w.q.setLane("default|google", 7)
	deadline := time.Now().Add(5 * time.Second)
	for q.Lanes[0].Waiting != 1300 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		c.getJSON("/api/v1/dashboard/queues", 200, &q)
	}
	if q.Lanes[0].Lane != "default|yahoo" {
		t.Fatalf("not refreshed: %+v", q.Lanes)
	}
}

func TestWarmup(t *testing.T) {
	w := newWorld(t, Options{})
	c := w.client(t)
	c.key = adminKey
	var v WarmupView
	c.getJSON("/api/v1/dashboard/warmup", 200, &v)
	if v.Date != "2025-03-10" || len(v.Egress) != 2 || len(v.Egress[0].Sites) != 2 {
		t.Fatalf("warm-up: %+v", v)
	}
	g := v.Egress[0].Sites[0]
	if g.Site != "google" || g.State != "held" || g.LastSignal.String() != "rate" {
		t.Fatalf("google: %+v", g.SiteStatus)
	}
	// Four recorded days, today, nine planned days.
	if len(g.Days) != 4+1+9 {
		t.Fatalf("days: %+v", g.Days)
	}
	if d := g.Days[0]; d.Date != "2025-03-06" || d.Cap != 50 || d.Sent != 46 || d.Today || d.Planned {
		t.Fatalf("first day: %+v", d)
	}
	if d := g.Days[4]; !d.Today || d.Cap != 400 || d.Sent != 180 {
		t.Fatalf("today: %+v", d)
	}
	if d := g.Days[5]; !d.Planned || d.Date != "2025-03-11" || d.Cap != 800 {
		t.Fatalf("tomorrow: %+v", d)
	}
	m := v.Egress[1].Sites[0]
	if !v.Egress[1].Warm || len(m.Days) != 5 || m.Days[4].Cap != -1 || !m.Days[4].Today {
		t.Fatalf("warm egress: %+v", v.Egress[1])
	}
	w.warm.setSent("ip1", "google", 250)
	c.getJSON("/api/v1/dashboard/warmup", 200, &v)
	if v.Egress[0].Sites[0].Days[4].Sent != 250 {
		t.Fatalf("today after sending: %+v", v.Egress[0].Sites[0].Days[4])
	}
}

func TestMessages(t *testing.T) {
	w := newWorld(t, Options{})
	c := w.client(t)
	c.key = adminKey
	id := "0f8zq3x1k2m4n5p6"
	w.q.msgs[id] = &queue.Message{ID: id, Account: "shop", From: "news@shop.example", MessageID: "<1@shop.example>",
		Created: t0.Add(-time.Hour), Expires: t0.Add(4 * 24 * time.Hour), Due: t0.Add(10 * time.Minute), Attempts: 1,
		Rcpts: []queue.Rcpt{
			{Addr: "ann@gmail.example", State: queue.RcptDelivered, Attempts: 1, Line: "250 2.0.0 OK"},
			{Addr: "bob@yahoo.example", State: queue.RcptPending, Attempts: 1, Next: t0.Add(10 * time.Minute), Line: "421 4.7.0 [TS01] try later", Reason: "toomanyconn"},
		}}
	w.evs.add(events.Event{Time: t0.Add(-time.Hour), Type: events.Received, ID: id, MessageID: "<1@shop.example>"})
	w.evs.add(events.Event{Time: t0.Add(-50 * time.Minute), Type: events.Delivered, ID: id, Recipient: "ann@gmail.example", MessageID: "<1@shop.example>"})
	w.evs.add(events.Event{Time: t0.Add(-50 * time.Minute), Type: events.Deferred, ID: id, Recipient: "bob@yahoo.example", MessageID: "<1@shop.example>"})
	w.evs.add(events.Event{Time: t0.Add(-10 * time.Minute), Type: events.Bounced, ID: "0f8zq3x1k2m4n5p7", Recipient: "Bob@Yahoo.example"})

	var r struct {
		Message *MessageView
		Events  []events.Event
		Next    string
	}
	c.getJSON("/api/v1/dashboard/messages?id="+id, 200, &r)
	if r.Message == nil || r.Message.State != "deferred" || len(r.Message.Rcpts) != 2 || r.Message.Rcpts[1].Next == nil || len(r.Events) != 3 {
		t.Fatalf("by id: %+v", r)
	}
	r.Message = nil
	c.getJSON("/api/v1/dashboard/messages?id=0f8zq3x1k2m4n5p7", 200, &r)
	if r.Message != nil || len(r.Events) != 1 {
		t.Fatalf("delivered and gone: %+v", r)
	}
	c.getJSON("/api/v1/dashboard/messages?recipient=bob@yahoo.example", 200, &r)
	if len(r.Events) != 2 || r.Events[0].Type != events.Bounced {
		t.Fatalf("by recipient: %+v", r.Events)
	}
	c.getJSON("/api/v1/dashboard/messages?message_id="+url.QueryEscape("<1@shop.example>"), 200, &r)
	if len(r.Events) != 3 {
		t.Fatalf("by Message-ID: %+v", r.Events)
	}
	c.getJSON("/api/v1/dashboard/messages?id=0000000000000000", 404, nil)
	c.getJSON("/api/v1/dashboard/messages?id=../../etc", 400, nil)
	c.getJSON("/api/v1/dashboard/messages", 400, nil)
	c.getJSON("/api/v1/dashboard/messages?recipient=a@b&cursor=zz", 400, nil)
}

func TestSuppressions(t *testing.T) {
	w := newWorld(t, Options{})
	c := w.client(t)
	c.key = adminKey
	var r struct {
		Suppressions []Suppression
		Next         string
	}
	c.getJSON("/api/v1/dashboard/suppressions", 200, &r)
	if len(r.Suppressions) != 3 {
		t.Fatalf("all: %+v", r)
	}
	c.getJSON("/api/v1/dashboard/suppressions?q=@yahoo.example", 200, &r)
	if len(r.Suppressions) != 1 || r.Suppressions[0].Address != "angry@yahoo.example" {
		t.Fatalf("by domain: %+v", r)
	}
	c.getJSON("/api/v1/dashboard/suppressions?limit=1", 200, &r)
	if len(r.Suppressions) != 1 || r.Next == "" {
		t.Fatalf("page: %+v", r)
	}
	c.getJSON("/api/v1/dashboard/suppressions?limit=0", 400, nil)
	c.getJSON("/api/v1/dashboard/suppressions?q="+strings.Repeat("a", 400), 400, nil)
	for _, body := range []string{`{"address":""}`, `{"address":"no-at-sign"}`, `{"address":"a@b\r\nX: y"}`, `{"address":"a@b","extra":1}`, `{`} {
		res := c.do("POST", "/api/v1/dashboard/suppressions/remove", strings.NewReader(body))
		if res.StatusCode != 400 {
			t.Errorf("%s: %d", body, res.StatusCode)
		}
	}
}

func TestUnavailableSources(t *testing.T) {
	h := New(Sources{}, Options{Authorize: func(k string) bool { return k == adminKey }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, p := range []string{"overview", "series?type=delivered", "warmup", "suppressions"} {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/dashboard/"+p, nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 503 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/dashboard/queues", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	res, _ := http.DefaultClient.Do(req)
	var q QueueSnapshot
	json.NewDecoder(res.Body).Decode(&q)
	if q.Error == "" {
		t.Errorf("queues without a queue: %+v", q)
	}
}

func TestSessionsBounded(t *testing.T) {
	clk := clock.NewFake(t0)
	s := newSessions(clk, time.Hour)
	first, _ := s.create()
	for i := range maxSessions + 10 {
		clk.Advance(time.Millisecond)
		s.create()
		_ = i
	}
	if len(s.m) > maxSessions {
		t.Fatalf("%d sessions", len(s.m))
	}
	if s.get(first) != nil {
		t.Fatal("the oldest session survived")
	}
	if s.get("") != nil || s.get(fmt.Sprint("x", 1)) != nil {
		t.Fatal("a made-up token opened a session")
	}
}
