package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"kiln/events"
	"kiln/events/store"
	"kiln/queue"
)

func TestMessageInQueue(t *testing.T) {
	w := newWorld(t)
	next := t0.Add(10 * time.Minute)
	w.queue.msgs["00000000000000a1"] = &queue.Message{ID: "00000000000000a1", Account: "shop", From: "news@shop.example", MessageID: "<1@shop.example>",
		Created: t0.Add(-time.Hour), Due: next, Attempts: 1, Tags: []string{"spring"},
		Rcpts: []queue.Rcpt{
			{Addr: "ann@example.net", State: queue.RcptDelivered, Attempts: 1, Code: 250, Line: "250 ok", Host: "mx.example.net", Updated: t0.Add(-time.Minute)},
			{Addr: "bob@example.org", State: queue.RcptPending, Attempts: 1, Next: next, Code: 451, Enhanced: "4.3.0", Line: "451 4.3.0 try later", Reason: "systemerror"},
			{Addr: "cat@example.org", State: queue.RcptPending},
		}}
	w.events.add(
		events.Event{Time: t0.Add(-time.Hour), Type: events.Received, ID: "00000000000000a1", Account: "shop", MessageID: "<1@shop.example>"},
		events.Event{Time: t0.Add(-time.Minute), Type: events.Delivered, ID: "00000000000000a1", Account: "shop", Recipient: "ann@example.net"},
	)
	for _, key := range []string{shopKey, adminKey} {
		r := w.do("GET", "/api/v1/messages/00000000000000a1", key, nil)
		expectStatus(t, r, 200)
		var st MessageStatus
		if err := json.Unmarshal(r.body, &st); err != nil {
			t.Fatal(err)
		}
		if st.ID != "00000000000000a1" || st.State != "deferred" || !st.Queued || st.Account != "shop" || st.MessageID != "<1@shop.example>" ||
			st.NextAttempt == nil || !st.NextAttempt.Equal(next) || len(st.Events) != 2 || st.Tags[0] != "spring" {
			t.Errorf("status: %s", r.body)
		}
		states := []string{}
		for _, rc := range st.Recipients {
			states = append(states, rc.State)
		}
		if !slices.Equal(states, []string{"delivered", "deferred", "pending"}) {
			t.Errorf("recipient states %q", states)
		}
		if b := st.Recipients[1]; b.Code != 451 || b.Reply != "451 4.3.0 try later" || b.NextAttempt == nil || b.Reason != "systemerror" {
			t.Errorf("deferred recipient %+v", b)
		}
	}
	for _, c := range []struct {
		edit func(*queue.Message)
		want string
	}{
		{func(m *queue.Message) { m.Held = true }, "held"},
		{func(m *queue.Message) { m.Leased = true }, "sending"},
		{func(m *queue.Message) {
			m.Rcpts = m.Rcpts[2:]
			m.Due = t0
		}, "queued"},
	} {
		m := w.queue.msgs["00000000000000a1"].Clone()
		c.edit(m)
		w.queue.msgs["00000000000000a2"] = m
		m.ID = "00000000000000a2"
		r := w.do("GET", "/api/v1/messages/00000000000000a2", shopKey, nil)
		expectStatus(t, r, 200)
		if got := r.json(t)["state"]; got != c.want {
			t.Errorf("state %v, want %s", got, c.want)
		}
	}
}

func TestMessageFromEvents(t *testing.T) {
	w := newWorld(t)
	next := t0.Add(time.Minute)
	w.events.add(
		events.Event{Time: t0, Type: events.Received, ID: "00000000000000q9", Account: "shop", From: "news@shop.example", MessageID: "<9@shop.example>", Tags: []string{"a"}},
		events.Event{Time: t0.Add(1 * time.Second), Type: events.Deferred, ID: "00000000000000q9", Account: "shop", Recipient: "bob@example.org", Code: 451, Attempt: 1, Next: &next},
		events.Event{Time: t0.Add(2 * time.Second), Type: events.Delivered, ID: "00000000000000q9", Account: "shop", Recipient: "ann@example.net", Code: 250, Attempt: 1},
		events.Event{Time: t0.Add(3 * time.Second), Type: events.Bounced, ID: "00000000000000q9", Account: "shop", Recipient: "Bob@example.org", Code: 550,
			Enhanced: "5.1.1", Reply: "550 5.1.1 no such user", Reason: "userunknown", Hard: true, Rule: "generic.userunknown", Attempt: 2},
	)
	r := w.do("GET", "/api/v1/messages/00000000000000q9", shopKey, nil)
	expectStatus(t, r, 200)
	var st MessageStatus
	json.Unmarshal(r.body, &st)
	if st.Queued || st.State != "mixed" || st.From != "news@shop.example" || st.MessageID != "<9@shop.example>" || st.Created == nil || len(st.Events) != 4 {
		t.Errorf("status %s", r.body)
	}
	if len(st.Recipients) != 2 {
		t.Fatalf("recipients %+v", st.Recipients)
	}
	if ann := st.Recipients[1]; ann.Address != "ann@example.net" || ann.State != "delivered" || ann.Code != 250 {
		t.Errorf("ann %+v", ann)
	}
	bob := st.Recipients[0]
	if bob.Address != "bob@example.org" || bob.State != "bounced" || bob.Reason != "userunknown" || bob.Enhanced != "5.1.1" || bob.Attempts != 2 || bob.NextAttempt != nil {
		t.Errorf("bob %+v", bob)
	}
	w.events.add(events.Event{Time: t0, Type: events.Delivered, ID: "00000000000000q8", Account: "shop", Recipient: "ann@example.net"})
	if r := w.do("GET", "/api/v1/messages/00000000000000q8", shopKey, nil); r.json(t)["state"] != "delivered" {
		t.Errorf("Q8: %s", r.body)
	}
}

// Another account's message is answered exactly like a message that does
// not exist.
func TestMessageOtherAccount(t *testing.T) {
	w := newWorld(t)
	w.queue.msgs["00000000000000n1"] = &queue.Message{ID: "00000000000000n1", Account: "news_letter", From: "a@news.example", Rcpts: []queue.Rcpt{{Addr: "x@example.net"}}}
	w.queue.msgs["00000000000000p1"] = &queue.Message{ID: "00000000000000p1", From: "ops@kiln.example", Rcpts: []queue.Rcpt{{Addr: "x@example.net"}}}
	w.events.add(events.Event{Time: t0, Type: events.Delivered, ID: "00000000000000e1", Account: "news_letter", Recipient: "x@example.net"})
	missing := w.do("GET", "/api/v1/messages/00000000000000x1", shopKey, nil)
	expectStatus(t, missing, 404)
	if missing.apiErr(t)["code"] != "not_found" {
		t.Errorf("%s", missing.body)
	}
	for _, id := range []string{"00000000000000n1", "00000000000000p1", "00000000000000e1"} {
		r := w.do("GET", "/api/v1/messages/"+id, shopKey, nil)
		expectStatus(t, r, 404)
		if strings.ReplaceAll(string(r.body), id, "00000000000000x1") != string(missing.body) {
			t.Errorf("%s: %s differs from %s", id, r.body, missing.body)
		}
		expectStatus(t, w.do("GET", "/api/v1/messages/"+id, adminKey, nil), 200)
	}
	expectStatus(t, w.do("GET", "/api/v1/messages/00000000000000n1", newsKey, nil), 200)
	expectStatus(t, w.do("GET", "/api/v1/messages/"+strings.Repeat("a", 200), adminKey, nil), 404)
	w.queue.err = errors.New("disk gone")
	r := w.do("GET", "/api/v1/messages/00000000000000n1", adminKey, nil)
	expectStatus(t, r, 500)
	if strings.Contains(string(r.body), "disk gone") {
		t.Errorf("internal error text in the answer: %s", r.body)
	}
}

func TestEvents(t *testing.T) {
	w := newWorld(t)
	w.events.add(
		events.Event{Time: t0, Type: events.Delivered, ID: "00000000000000a1", Account: "shop", Recipient: "ann@example.net"},
		events.Event{Time: t0.Add(time.Second), Type: events.Bounced, ID: "00000000000000a1", Account: "shop", Recipient: "bob@example.org"},
		events.Event{Time: t0.Add(2 * time.Second), Type: events.Delivered, ID: "00000000000000a2", Account: "news_letter", Recipient: "ann@example.net"},
	)
	r := w.do("GET", "/api/v1/events", shopKey, nil)
	expectStatus(t, r, 200)
	var page struct {
		Events []events.Event `json:"events"`
		Next   *string        `json:"next"`
	}
	json.Unmarshal(r.body, &page)
	if len(page.Events) != 2 || page.Next == nil || w.events.last.Account != "shop" {
		t.Errorf("account's events: %s (query %+v)", r.body, w.events.last)
	}
	r = w.do("GET", "/api/v1/events?type=delivered,bounced&type=expired&recipient=ann@example.net&since=2025-03-03T11:00:00Z&until=2025-03-03T13:00:00.5Z&limit=50&cursor=page2&id=00000000000000a1&message_id=%3Cx%3E", shopKey, nil)
	expectStatus(t, r, 200)
	q := w.events.last
	if !slices.Equal(q.Types, []string{"delivered", "bounced", "expired"}) || q.Recipient != "ann@example.net" || q.Limit != 50 ||
		q.Cursor != "page2" || !q.Since.Equal(t0.Add(-time.Hour)) || !q.Until.Equal(t0.Add(time.Hour+500*time.Millisecond)) ||
		q.ID != "00000000000000a1" || q.MessageID != "<x>" || q.Account != "shop" {
		t.Errorf("query %+v", q)
	}
	// The admin sees every account, or one it names.
	r = w.do("GET", "/api/v1/events", adminKey, nil)
	json.Unmarshal(r.body, &page)
	if len(page.Events) != 3 || w.events.last.Account != "" {
		t.Errorf("admin: %s", r.body)
	}
	w.do("GET", "/api/v1/events?account=news_letter", adminKey, nil)
	if w.events.last.Account != "news_letter" {
		t.Errorf("admin account filter: %+v", w.events.last)
	}
	expectStatus(t, w.do("GET", "/api/v1/events?account=shop", shopKey, nil), 200)
	r = w.do("GET", "/api/v1/events?account=news_letter", shopKey, nil)
	expectStatus(t, r, 403)
	if r.apiErr(t)["field"] != "account" {
		t.Errorf("%s", r.body)
	}
	for q, field := range map[string]string{
		"type=nope":                  "type",
		"since=yesterday":            "since",
		"until=2025-13-01T00:00:00Z": "until",
		"since=2025-03-03T12:00:00Z&until=2025-03-03T11:00:00Z": "until",
		"limit=0":      "limit",
		"limit=5000":   "limit",
		"limit=x":      "limit",
		"cursor=bogus": "cursor",
		"tpye=bounced": "tpye",
	} {
		r := w.do("GET", "/api/v1/events?"+q, shopKey, nil)
		expectStatus(t, r, 400)
		if e := r.apiErr(t); e["field"] != field {
			t.Errorf("%s: %s", q, r.body)
		}
	}
	var none *store.Store // as the daemon would pass it without an event store
	w2 := newWorld(t, func(d *Deps) { d.Events = none })
	expectStatus(t, w2.do("GET", "/api/v1/events", shopKey, nil), 503)
	w2.queue.msgs["00000000000000a1"] = &queue.Message{ID: "00000000000000a1", Account: "shop", Rcpts: []queue.Rcpt{{Addr: "a@example.net"}}}
	r = w2.do("GET", "/api/v1/messages/00000000000000a1", shopKey, nil)
	expectStatus(t, r, 200)
	if evs, ok := r.json(t)["events"].([]any); !ok || len(evs) != 0 {
		t.Errorf("without an event store: %s", r.body)
	}
}

// An account key reaches the suppression list limited to its scope; the
// admin reaches it unlimited.
func TestSuppressions(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/suppressions?q=ann"}, {"POST", "/api/v1/suppressions"}, {"DELETE", "/api/v1/suppressions?address=a@b.c"},
		{"GET", "/api/v1/suppressions/check?address=a@b.c"}, {"POST", "/api/v1/suppressions/import"}, {"GET", "/api/v1/suppressions/export"},
	} {
		r := w.do(c.method, c.path, shopKey, nil)
		expectStatus(t, r, 200)
		if m := r.json(t); m["scope"] != "shop" || m["limited"] != true || m["method"] != c.method {
			t.Errorf("%s %s as shop: %s", c.method, c.path, r.body)
		}
		r = w.do(c.method, c.path, adminKey, nil)
		if m := r.json(t); m["limited"] != false {
			t.Errorf("%s %s as admin: %s", c.method, c.path, r.body)
		}
		expectStatus(t, w.do(c.method, c.path, "", nil), 401)
	}
	w2 := newWorld(t, func(d *Deps) { d.Suppressions = nil })
	expectStatus(t, w2.do("GET", "/api/v1/suppressions", adminKey, nil), 404)
}

func TestRouting(t *testing.T) {
	w := newWorld(t)
	r := w.do("GET", "/api/v1/messages", shopKey, nil)
	expectStatus(t, r, 405)
	if r.header.Get("Allow") == "" || r.apiErr(t)["code"] != "method_not_allowed" {
		t.Errorf("%v %s", r.header, r.body)
	}
	r = w.do("GET", "/api/v1/nothing", shopKey, nil)
	expectStatus(t, r, 404)
	if r.apiErr(t)["code"] != "not_found" {
		t.Errorf("%s", r.body)
	}
	// Mounted on the listener's mux beside a catch-all, the API keeps its
	// paths and answers a wrong method itself.
	root := http.NewServeMux()
	root.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) { rw.WriteHeader(http.StatusTeapot) })
	w.api.Mount(root)
	for path, want := range map[string]int{
		"/api/v1/messages/00000000000000a1": 404, // the API's: no such message
		"/api/v1/messages":                  405,
		"/api/v1/openapi.json":              200,
		"/api/v1/queue":                     http.StatusTeapot,
	} {
		req := newRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		rec := w.serveOn(root, req)
		if rec.status != want {
			t.Errorf("%s: %d, want %d", path, rec.status, want)
		}
	}
	paths := w.api.Paths()
	if !slices.Contains(paths, "/api/v1/messages/{id}") || !slices.Contains(paths, "/api/v1/suppressions/check") {
		t.Errorf("paths %q", paths)
	}
}

func (w *world) serveOn(h http.Handler, req *http.Request) response {
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	return response{status: rec.status, header: rec.header}
}

type recorder struct {
	header http.Header
	status int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(c int) { r.status = c }
