package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
)

// operation is one route of kiln's OpenAPI document.
type operation struct {
	method, path string
	public       bool // no security requirement
	adminOnly    bool // only the admin key (or a dashboard session)
	dashboard    bool // a dashboard page (HTML)
}

// operations reads the OpenAPI document kiln serves (without a key) and
// lists its routes, with the path parameters filled in.
func operations(t *testing.T, d *daemon) []operation {
	t.Helper()
	status, body, _ := httpDo(t, "GET", "http://"+d.admin+"/api/v1/openapi.json", "", nil, "")
	if status != 200 {
		t.Fatalf("GET /api/v1/openapi.json without a key: %d %s", status, body)
	}
	var doc struct {
		Paths    map[string]map[string]json.RawMessage `json:"paths"`
		Security []map[string][]string                 `json:"security"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{id}", "0000000000000000", "{account}", "nobody", "{page}", "queues", "{file}", "app.js", "{token}", "x")
	var ops []operation
	for p, methods := range doc.Paths {
		for m, raw := range methods {
			m = strings.ToUpper(m)
			if m != "GET" && m != "POST" && m != "DELETE" && m != "PUT" && m != "PATCH" {
				continue
			}
			var op struct {
				Security *[]map[string][]string `json:"security"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", m, p, err)
			}
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			o := operation{method: m, path: fill.Replace(p), public: len(sec) == 0, adminOnly: true,
				dashboard: strings.HasPrefix(p, "/dashboard/") && m == "GET"}
			for _, s := range sec {
				if _, ok := s["accountKey"]; ok {
					o.adminOnly = false
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops
}

// The admin listener with [admin] key_hash set: every route of the OpenAPI
// document that names a security requirement (the admin API, the HTTP send
// API, metrics, pprof, the dashboard's API) answers 401 without a key and
// with a wrong one, the dashboard's pages send the browser to the login
// page, an account's key gets no admin route, and the admin key gets
// through everywhere. Routes on other listeners (the unsubscribe links) are
// left out: they are public by design, guarded by their signed tokens.
func TestAdminAPIKeys(t *testing.T) {
	const adminKey = "kiln-admin-key-0123456789abcdef"
	const acctKey = "kiln_news_00112233445566778899aabbccddeeff"
	w := newWorld(t)
	w.admin = fmt.Sprintf("key_hash = %q", bcryptHash(t, adminKey))
	d := w.start(accountTOML(t, fmt.Sprintf("api_key_hash = %q", bcryptHash(t, acctKey))))
	base := "http://" + d.admin
	ops := operations(t, d)
	if len(ops) < 20 {
		t.Fatalf("the OpenAPI document names only %d operations", len(ops))
	}
	body := func(o operation) ([]byte, string) {
		if o.method == "GET" || o.method == "DELETE" && !strings.Contains(o.path, "suppressions") {
			return nil, ""
		}
		return []byte("{}"), "application/json"
	}
	guarded, sent := 0, false
	for _, o := range ops {
		if strings.HasPrefix(o.path, "/unsubscribe/") {
			continue
		}
		target := base + o.path
		if strings.HasPrefix(o.path, "/debug/pprof/profile") || strings.HasPrefix(o.path, "/debug/pprof/trace") {
			target += "?seconds=1"
		}
		b, ct := body(o)
		if o.public {
			if status, rb, _ := httpDo(t, o.method, target, "", b, ct); status == 401 || status == 403 {
				t.Errorf("public %s %s: %d %s", o.method, o.path, status, rb)
			}
			continue
		}
		guarded++
		for _, key := range []string{"", "wrong-" + adminKey, "kiln_news_ffeeddccbbaa99887766554433221100"} {
			status, rb, hdr := httpDo(t, o.method, target, key, b, ct)
			switch {
			case o.dashboard && key == "":
				if status != http.StatusSeeOther || !strings.HasPrefix(hdr.Get("Location"), "/dashboard/login") {
					t.Errorf("%s %s without a key: %d to %q, want 303 to the login page", o.method, o.path, status, hdr.Get("Location"))
				}
			case o.dashboard:
				// A wrong bearer key on a page is no session either.
				if status != http.StatusSeeOther && status != 401 {
					t.Errorf("%s %s with a wrong key: %d", o.method, o.path, status)
				}
			case status != 401:
				t.Errorf("%s %s with key %q: %d %s, want 401", o.method, o.path, key, status, rb)
			}
		}
		if o.adminOnly {
			if status, rb, _ := httpDo(t, o.method, target, acctKey, b, ct); status != 401 && status != 403 && !(o.dashboard && status == http.StatusSeeOther) {
				t.Errorf("admin-only %s %s with an account's key: %d %s", o.method, o.path, status, rb)
			}
		}
		status, rb, _ := httpDo(t, o.method, target, adminKey, b, ct)
		if status == 401 || status == 403 || status >= 500 {
			t.Errorf("%s %s with the admin key: %d %s", o.method, o.path, status, rb)
		}
		if o.method == "POST" && o.path == "/api/v1/messages" {
			sent = true
		}
	}
	if !sent {
		t.Errorf("the OpenAPI document has no POST /api/v1/messages: is the send API mounted?")
	}
	// The send API with the account's key works: the 401s above were the
	// keys' doing, not a broken route.
	msg, _ := json.Marshal(map[string]any{"from": "app@news.test", "to": []string{"r@dest.test"}, "subject": "api", "text": "hello"})
	if status, rb, _ := httpDo(t, "POST", base+"/api/v1/messages", acctKey, msg, "application/json"); status != http.StatusAccepted {
		t.Errorf("POST /api/v1/messages with the account's key: %d %s", status, rb)
	}
	if status, rb, _ := httpDo(t, "POST", base+"/api/v1/messages", "", msg, "application/json"); status != 401 {
		t.Errorf("POST /api/v1/messages without a key: %d %s", status, rb)
	}
	// Logging in to the dashboard with the wrong key fails, with the key
	// works.
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	login := func(key string) (int, string, bool) {
		req, _ := http.NewRequest("POST", base+"/dashboard/login", strings.NewReader(url.Values{"key": {key}, "next": {"/dashboard/"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location"), len(resp.Cookies()) > 0
	}
	if status, loc, cookie := login("wrong"); cookie || !strings.Contains(loc, "error=key") {
		t.Errorf("dashboard login with a wrong key: %d to %q, cookie %v", status, loc, cookie)
	}
	if status, loc, cookie := login(adminKey); !cookie || loc != "/dashboard/" {
		t.Errorf("dashboard login with the key: %d to %q, cookie %v", status, loc, cookie)
	}
	report(t, "key_hash set: %d guarded operations of the OpenAPI document answer 401 without a key, with a wrong key and (admin-only ones) with an account key, pages redirect to the login page, the admin key passes everywhere; POST /api/v1/messages: 401 without a key, 202 with the account's", guarded)
}

// Without [admin] key_hash, loopback clients are served as the admin: the
// API and the dashboard answer them without a key. A client on another
// address would get 401, but every listener here is on loopback, so that
// path is left to the in-process tests of the API's guard.
func TestAdminAPIWithoutKeyOnLoopback(t *testing.T) {
	w := newWorld(t)
	d := w.start(accountTOML(t, fmt.Sprintf("api_key_hash = %q", bcryptHash(t, "kiln_news_00112233445566778899aabbccddeeff"))))
	base := "http://" + d.admin
	for _, p := range []string{"/api/v1/queue", "/api/v1/events", "/api/v1/suppressions", "/metrics", "/api/v1/dashboard/overview", "/dashboard/"} {
		if status, rb, _ := httpDo(t, "GET", base+p, "", nil, ""); status != 200 {
			t.Errorf("GET %s from loopback without a key configured: %d %s", p, status, rb)
		}
	}
	// A key naming an account is still checked as that account's.
	if status, _, _ := httpDo(t, "GET", base+"/api/v1/events", "kiln_news_ffeeddccbbaa99887766554433221100", nil, ""); status != 401 {
		t.Errorf("a wrong key for the news account from loopback: %d, want 401", status)
	}
	report(t, "no key_hash: loopback clients served as the admin (API, metrics, dashboard); a wrong account key from loopback 401; non-loopback clients not testable on loopback")
}
