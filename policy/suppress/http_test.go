package suppress

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

type apiWorld struct {
	*world
	b     *Breaker
	srv   *httptest.Server
	reset []string
	scope *string // when set, every request is limited to this scope
}

func newAPI(t *testing.T) *apiWorld {
	t.Helper()
	a := &apiWorld{world: newWorld(t, Config{})}
	a.b, _ = NewBreaker(a.db, BreakerConfig{}, quietLog())
	h := Handler(a.l, HandlerOptions{Breaker: a.b, OnReset: func(acct string) { a.reset = append(a.reset, acct) }, Log: quietLog()})
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.scope != nil {
			r = r.WithContext(WithScope(r.Context(), *a.scope))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// call makes a request and decodes a JSON answer into out; it returns the
// status and the error code when there was one.
func (a *apiWorld) call(t *testing.T, method, path string, body io.Reader, out any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, a.srv.URL+path, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e apiError
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("%s %s: %d with a body not in the error shape: %s", method, path, resp.StatusCode, data)
		}
		return resp.StatusCode, e.Error.Code
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, data)
		}
	}
	return resp.StatusCode, ""
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func TestHTTPAddListCheckRemove(t *testing.T) {
	a := newAPI(t)
	var added struct{ Results []AddResult }
	if st, code := a.call(t, "POST", "/api/v1/suppressions", jsonBody(AddRequest{Address: "One@Example.com", Note: "asked by phone"}), &added); st != 200 {
		t.Fatalf("add: %d %s", st, code)
	}
	if len(added.Results) != 1 || !added.Results[0].Changed || added.Results[0].Entry.Address != "one@example.com" ||
		added.Results[0].Entry.Source != SourceManual || added.Results[0].Entry.Reason != "suppressed" {
		t.Errorf("add: %+v", added)
	}
	batch := []AddRequest{
		{Address: "two@example.com", Scope: "acme", Reason: "userunknown", Source: SourceImport, ExpiresIn: "30d"},
		{Address: "three@example.com", Source: SourceSoftFailure, ExpiresIn: "never"},
		{Address: "one@example.com"},
	}
	if st, _ := a.call(t, "POST", "/api/v1/suppressions", jsonBody(batch), &added); st != 200 || len(added.Results) != 3 {
		t.Fatalf("batch add: %d %+v", st, added)
	}
	if r := added.Results; !r[0].Entry.Expires.Equal(t0.Add(30*24*3600e9)) || !r[1].Entry.Permanent() || r[2].Changed {
		t.Errorf("batch: %+v", r)
	}
	for _, bad := range []string{`{"address":"nope"}`, `{"address":"a@example.com","reason":"bogus"}`, `{"address":"a@example.com","source":"bogus"}`,
		`{"address":"a@example.com","expires_in":"soon"}`, `{"address":"a@example.com","unknown":1}`, `[]`, `{`,
		`{"address":"a@example.com","expires":"2020-01-01T00:00:00Z"}`} {
		if st, code := a.call(t, "POST", "/api/v1/suppressions", strings.NewReader(bad), nil); st != 400 || code != "bad_request" {
			t.Errorf("%s: %d %s", bad, st, code)
		}
	}

	var list struct {
		Suppressions []Entry
		Next         string
	}
	a.call(t, "GET", "/api/v1/suppressions", nil, &list)
	if len(list.Suppressions) != 3 || list.Next != "" {
		t.Errorf("list all: %+v", list)
	}
	a.call(t, "GET", "/api/v1/suppressions?scope=", nil, &list)
	if len(list.Suppressions) != 2 {
		t.Errorf("list global: %+v", list)
	}
	a.call(t, "GET", "/api/v1/suppressions?scope=acme&reason=userunknown&source=import&q=two", nil, &list)
	if len(list.Suppressions) != 1 || list.Suppressions[0].Scope != "acme" {
		t.Errorf("list filtered: %+v", list)
	}
	a.call(t, "GET", "/api/v1/suppressions?limit=1", nil, &list)
	if len(list.Suppressions) != 1 || list.Next == "" {
		t.Fatalf("page 1: %+v", list)
	}
	first := list.Suppressions[0].Address
	a.call(t, "GET", "/api/v1/suppressions?limit=1&cursor="+list.Next, nil, &list)
	if len(list.Suppressions) != 1 || list.Suppressions[0].Address == first {
		t.Errorf("page 2: %+v", list)
	}
	for _, q := range []string{"limit=0", "limit=x", "cursor=***", "source=bogus", "since=yesterday"} {
		if st, code := a.call(t, "GET", "/api/v1/suppressions?"+q, nil, nil); st != 400 || code != "bad_request" {
			t.Errorf("%s: %d %s", q, st, code)
		}
	}

	var chk struct {
		Suppressed bool
		Entry      *Entry
	}
	a.call(t, "GET", "/api/v1/suppressions/check?address=TWO@example.com&account=acme", nil, &chk)
	if !chk.Suppressed || chk.Entry == nil || chk.Entry.Scope != "acme" {
		t.Errorf("check: %+v", chk)
	}
	chk.Entry = nil
	a.call(t, "GET", "/api/v1/suppressions/check?address=two@example.com&account=zeta", nil, &chk)
	if chk.Suppressed || chk.Entry != nil {
		t.Errorf("check for another account: %+v", chk)
	}
	if st, _ := a.call(t, "GET", "/api/v1/suppressions/check?address=nope", nil, nil); st != 400 {
		t.Errorf("check of a bad address: %d", st)
	}

	var rm struct{ Removed []Entry }
	a.call(t, "DELETE", "/api/v1/suppressions?address=two@example.com", nil, &rm)
	if len(rm.Removed) != 0 {
		t.Errorf("removed from global what is in acme: %+v", rm)
	}
	a.call(t, "DELETE", "/api/v1/suppressions?address=two@example.com&scope=acme", nil, &rm)
	if len(rm.Removed) != 1 {
		t.Errorf("remove in acme: %+v", rm)
	}
	a.l.Add(Entry{Scope: "zeta", Address: "one@example.com"})
	a.call(t, "DELETE", "/api/v1/suppressions?address=one@example.com&all_scopes=true", nil, &rm)
	if len(rm.Removed) != 2 {
		t.Errorf("remove everywhere: %+v", rm)
	}
	if st, _ := a.call(t, "DELETE", "/api/v1/suppressions", nil, nil); st != 400 {
		t.Errorf("remove without an address: %d", st)
	}
	if st, code := a.call(t, "PUT", "/api/v1/suppressions", nil, nil); st != 405 || code != "method_not_allowed" {
		t.Errorf("PUT: %d %s", st, code)
	}
	if st, code := a.call(t, "GET", "/api/v1/suppressions/nothing", nil, nil); st != 404 || code != "not_found" {
		t.Errorf("unknown path: %d %s", st, code)
	}
}

func TestHTTPImportExport(t *testing.T) {
	a := newAPI(t)
	var in strings.Builder
	in.WriteString("address,reason\n")
	for i := 0; i < 2500; i++ {
		fmt.Fprintf(&in, "u%04d@example.com,userunknown\n", i)
	}
	in.WriteString("broken,userunknown\n")
	var rep ImportReport
	if st, code := a.call(t, "POST", "/api/v1/suppressions/import?scope=acme&source=import", strings.NewReader(in.String()), &rep); st != 200 {
		t.Fatalf("import: %d %s", st, code)
	}
	if rep.Rows != 2501 || rep.Added != 2500 || rep.Invalid != 1 || rep.Errors[0].Line != 2502 {
		t.Errorf("report %+v", rep)
	}
	if st, code := a.call(t, "POST", "/api/v1/suppressions/import", strings.NewReader("x,y\n1,2\n"), nil); st != 400 || code != "bad_request" {
		t.Errorf("import without a header: %d %s", st, code)
	}
	if st, _ := a.call(t, "POST", "/api/v1/suppressions/import?source=bogus", strings.NewReader("address\n"), nil); st != 400 {
		t.Errorf("import with a bad source: %d", st)
	}
	resp, err := http.Get(a.srv.URL + "/api/v1/suppressions/export?scope=acme&q=u00")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Trailer.Get(TrailerExportRows) != "100" || resp.Trailer.Get(TrailerExportError) != "" {
		t.Errorf("export trailers %v", resp.Trailer)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	if resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" || len(lines) != 101 || lines[0] != strings.Join(Columns, ",") ||
		!strings.HasPrefix(lines[1], "u0000@example.com,acme,userunknown,import,") {
		t.Errorf("export: %s, %d lines, %q", resp.Header.Get("Content-Type"), len(lines), lines[:2])
	}
}

func TestHTTPScopeRestriction(t *testing.T) {
	a := newAPI(t)
	a.l.Add(Entry{Scope: "acme", Address: "mine@example.com", Source: SourceComplaint})
	a.l.Add(Entry{Scope: "zeta", Address: "theirs@example.com", Source: SourceComplaint})
	a.l.Add(Entry{Address: "global@example.com", Reason: "userunknown", Source: SourceReply})
	acme := "acme"
	a.scope = &acme

	var list struct{ Suppressions []Entry }
	a.call(t, "GET", "/api/v1/suppressions", nil, &list)
	if len(list.Suppressions) != 1 || list.Suppressions[0].Address != "mine@example.com" {
		t.Errorf("restricted list: %+v", list)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/suppressions?scope=zeta"},
		{"GET", "/api/v1/suppressions?scope="},
		{"GET", "/api/v1/suppressions/export?scope=zeta"},
		{"DELETE", "/api/v1/suppressions?address=theirs@example.com&scope=zeta"},
		{"DELETE", "/api/v1/suppressions?address=theirs@example.com&all_scopes=true"},
		{"GET", "/api/v1/suppressions/check?address=theirs@example.com&account=zeta"},
		{"POST", "/api/v1/suppressions/import?scope=zeta"},
		{"GET", "/api/v1/breakers"},
		{"POST", "/api/v1/breakers/acme/reset"},
	} {
		if st, code := a.call(t, c.method, c.path, strings.NewReader("address\n"), nil); st != 403 || code != "forbidden" {
			t.Errorf("%s %s: %d %s", c.method, c.path, st, code)
		}
	}
	if st, _ := a.call(t, "POST", "/api/v1/suppressions", jsonBody(AddRequest{Address: "x@example.com", Scope: "zeta"}), nil); st != 403 {
		t.Errorf("add to another scope: %d", st)
	}
	var added struct{ Results []AddResult }
	a.call(t, "POST", "/api/v1/suppressions", jsonBody(AddRequest{Address: "new@example.com"}), &added)
	if added.Results[0].Entry.Scope != "acme" {
		t.Errorf("restricted add went to %q", added.Results[0].Entry.Scope)
	}
	// Check sees the account's scope and the global one, as delivery does.
	var chk struct{ Suppressed bool }
	a.call(t, "GET", "/api/v1/suppressions/check?address=global@example.com", nil, &chk)
	if !chk.Suppressed {
		t.Error("restricted check does not see the global scope")
	}
	a.call(t, "GET", "/api/v1/suppressions/check?address=theirs@example.com", nil, &chk)
	if chk.Suppressed {
		t.Error("restricted check sees another account's scope")
	}
	// Remove acts in the account's scope only.
	var rm struct{ Removed []Entry }
	a.call(t, "DELETE", "/api/v1/suppressions?address=global@example.com", nil, &rm)
	if len(rm.Removed) != 0 {
		t.Error("a restricted caller removed a global entry")
	}
	var rep ImportReport
	a.call(t, "POST", "/api/v1/suppressions/import", strings.NewReader("address,scope\na@example.com,\nb@example.com,zeta\n"), &rep)
	if rep.Added != 1 || rep.Invalid != 1 {
		t.Errorf("restricted import: %+v", rep)
	}
	if got, ok := ScopeFrom(WithScope(context.Background(), "x")); !ok || got != "x" {
		t.Error("ScopeFrom")
	}
}

func TestHTTPBreaker(t *testing.T) {
	a := newAPI(t)
	observe(a.b, "acme", HardBounce, 5)
	observe(a.b, "zeta", Delivered, 3)
	var st struct{ Accounts []BreakerState }
	a.call(t, "GET", "/api/v1/breakers", nil, &st)
	if len(st.Accounts) != 2 || !st.Accounts[0].Tripped || st.Accounts[0].Trip == nil || st.Accounts[1].Delivered != 3 {
		t.Errorf("breakers: %+v", st)
	}
	var res struct {
		Account    string
		WasTripped bool `json:"was_tripped"`
	}
	a.call(t, "POST", "/api/v1/breakers/"+url.PathEscape("acme")+"/reset", nil, &res)
	if !res.WasTripped || res.Account != "acme" || len(a.reset) != 1 || a.reset[0] != "acme" {
		t.Errorf("reset: %+v, OnReset %v", res, a.reset)
	}
	a.call(t, "POST", "/api/v1/breakers/acme/reset", nil, &res)
	if res.WasTripped || len(a.reset) != 1 {
		t.Errorf("second reset: %+v, OnReset %v", res, a.reset)
	}
}
