package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A missing or wrong key is 401 in the API's error shape, and nothing that
// was sent as a key reaches the log.
func TestAuthRefusals(t *testing.T) {
	w := newWorld(t)
	wrongShop := "kiln_shop_" + strings.Repeat("9", 32)
	cases := []struct {
		name, header string
	}{
		{"no key", ""},
		{"not bearer", "Basic c2hvcDpwYXNzd29yZA=="},
		{"empty bearer", "Bearer "},
		{"wrong secret for an account", "Bearer " + wrongShop},
		{"unknown account", "Bearer kiln_nosuch_" + strings.Repeat("a", 32)},
		{"account without an API key", "Bearer kiln_smtponly_" + strings.Repeat("b", 32)},
		{"wrong admin key", "Bearer not-the-admin-key-at-all-0000000"},
		{"too long", "Bearer " + shopKey + strings.Repeat("x", 40)},
		{"another account's secret", "Bearer kiln_shop_fedcba9876543210fedcba9876543210"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/events", "/api/v1/messages/Q1", "/api/v1/suppressions"} {
				req := httptest.NewRequest("GET", path, nil)
				req.RemoteAddr = "192.0.2.7:40000"
				if c.header != "" {
					req.Header.Set("Authorization", c.header)
				}
				rec := httptest.NewRecorder()
				w.api.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("%s: status %d, want 401: %s", path, rec.Code, rec.Body)
				}
				if rec.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s: no WWW-Authenticate", path)
				}
				e := response{status: rec.Code, body: rec.Body.Bytes()}.apiErr(t)
				if e["code"] != "unauthorized" {
					t.Errorf("%s: code %v", path, e["code"])
				}
				if h := strings.TrimPrefix(c.header, "Bearer "); h != "" && strings.Contains(rec.Body.String(), h) {
					t.Errorf("%s: the answer repeats the key", path)
				}
			}
		})
	}
	if w.submit.count() != 0 {
		t.Errorf("a refused request submitted a message")
	}
	logged := w.log.String()
	if !strings.Contains(logged, "request refused") {
		t.Errorf("refusals are not logged:\n%s", logged)
	}
	for _, secret := range []string{"9999999999", "aaaaaaaaaa", "bbbbbbbbbb", "0123456789abcdef", "fedcba98765", "not-the-admin", "c2hvcDpw", "kiln_"} {
		if strings.Contains(logged, secret) {
			t.Errorf("the log holds %q from a key:\n%s", secret, logged)
		}
	}
}

func TestAuthPrincipals(t *testing.T) {
	w := newWorld(t)
	cases := []struct {
		key  string
		want Principal
	}{
		{shopKey, Principal{Account: "shop"}},
		{newsKey, Principal{Account: "news_letter"}}, // account names may hold "_"
		{adminKey, Principal{Admin: true}},
	}
	for _, c := range cases {
		for range 2 { // the second time from the cache
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", "bearer "+c.key)
			p, ok := w.api.Authenticate(req)
			if !ok || p != c.want {
				t.Errorf("%s...: %+v %v, want %+v", c.key[:10], p, ok, c.want)
			}
		}
	}
	if n := len(w.api.keys.good); n != 3 {
		t.Errorf("%d keys cached, want 3", n)
	}
	for sum := range w.api.keys.good {
		for _, c := range cases {
			if strings.Contains(string(sum[:]), c.key) {
				t.Errorf("the cache holds a key in clear")
			}
		}
	}
	// The shop's key verified once does not open the news account.
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer kiln_news_letter_0123456789abcdef0123456789abcdef")
	if p, ok := w.api.Authenticate(req); ok {
		t.Errorf("shop's secret under news_letter's name: %+v", p)
	}
}

func TestKeyCacheBounded(t *testing.T) {
	k := newKeyring(nil, "")
	for i := range keyCacheSize + 50 {
		var sum [32]byte
		sum[0], sum[1] = byte(i), byte(i>>8)
		k.mu.Lock()
		if len(k.good) >= keyCacheSize {
			for s := range k.good {
				delete(k.good, s)
				break
			}
		}
		k.good[sum] = Principal{Admin: true}
		k.mu.Unlock()
	}
	if len(k.good) > keyCacheSize {
		t.Fatalf("cache holds %d keys", len(k.good))
	}
}

// With no admin key configured, loopback clients without a key are the
// admin and others are refused, as on the rest of the admin listener; an
// account key still works from anywhere.
func TestNoAdminKey(t *testing.T) {
	w := newWorld(t, func(d *Deps) { d.AdminKeyHash = "" })
	r := w.doFrom("127.0.0.1:5000", "GET", "/api/v1/suppressions", "", nil)
	expectStatus(t, r, 200)
	if r.json(t)["limited"] != false {
		t.Errorf("loopback admin got a scope: %s", r.body)
	}
	r = w.doFrom("[::1]:5000", "GET", "/api/v1/events", "", nil)
	expectStatus(t, r, 200)
	expectStatus(t, w.doFrom("192.0.2.1:5000", "GET", "/api/v1/events", "", nil), 401)
	// Any other key from loopback is ignored, as the admin listener does
	// without a key; an account's key is still checked.
	r = w.doFrom("127.0.0.1:5000", "GET", "/api/v1/suppressions", "a-stale-admin-key-00000000000000", nil)
	expectStatus(t, r, 200)
	if r.json(t)["limited"] != false {
		t.Errorf("loopback with another key: %s", r.body)
	}
	expectStatus(t, w.doFrom("127.0.0.1:5000", "GET", "/api/v1/events", "kiln_shop_"+strings.Repeat("7", 32), nil), 401)
	expectStatus(t, w.doFrom("192.0.2.1:5000", "GET", "/api/v1/events", "a-stale-admin-key-00000000000000", nil), 401)
	r = w.doFrom("192.0.2.1:5000", "GET", "/api/v1/suppressions", shopKey, nil)
	expectStatus(t, r, 200)
	if r.json(t)["scope"] != "shop" {
		t.Errorf("account key: %s", r.body)
	}
}

func TestRequireAdmin(t *testing.T) {
	w := newWorld(t)
	var seen Principal
	h := w.api.RequireAdmin(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seen, _ = PrincipalFrom(r.Context())
	}))
	any := w.api.RequireAny(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seen, _ = PrincipalFrom(r.Context())
	}))
	call := func(h http.Handler, key string) int {
		req := httptest.NewRequest("GET", "/api/v1/queue", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := call(h, ""); c != 401 {
		t.Errorf("no key: %d", c)
	}
	if c := call(h, shopKey); c != 403 {
		t.Errorf("account key on an admin route: %d", c)
	}
	if c := call(h, adminKey); c != 200 || !seen.Admin {
		t.Errorf("admin key: %d %+v", c, seen)
	}
	if c := call(any, shopKey); c != 200 || seen.Account != "shop" {
		t.Errorf("account key on an account route: %d %+v", c, seen)
	}
}

func TestNewKey(t *testing.T) {
	k, err := NewKey("news_letter")
	if err != nil {
		t.Fatal(err)
	}
	if acct, ok := splitKey(k); !ok || acct != "news_letter" || len(k) > maxKeyLen {
		t.Errorf("%q: %q %v", k, acct, ok)
	}
	if _, err := NewKey(strings.Repeat("a", 40)); err == nil {
		t.Errorf("a key longer than bcrypt reads")
	}
	if _, err := NewKey("bad name"); err == nil {
		t.Errorf("an account name with a space")
	}
	for _, bad := range []string{"kiln_shop", "kiln__" + strings.Repeat("a", 32), "kiln_shop_short", "shop_" + strings.Repeat("a", 32)} {
		if a, ok := splitKey(bad); ok {
			t.Errorf("%q split as account %q", bad, a)
		}
	}
}
