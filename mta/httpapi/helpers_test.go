package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"kiln/configs"
	"kiln/events"
	"kiln/events/store"
	"kiln/internal/clock"
	"kiln/policy/suppress"
	"kiln/queue"
)

// Keys of the test world. bcrypt runs at its lowest cost so tests stay fast.
const (
	shopKey  = "kiln_shop_0123456789abcdef0123456789abcdef"
	newsKey  = "kiln_news_letter_fedcba9876543210fedcba9876543210"
	adminKey = "admin-key-that-is-long-enough-123456"
)

var hashes sync.Map

func hash(t testing.TB, key string) string {
	if h, ok := hashes.Load(key); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	hashes.Store(key, string(h))
	return string(h)
}

// syncBuffer is a log sink the API's goroutines may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeSubmit records submissions and answers with err, or with an id.
type fakeSubmit struct {
	mu   sync.Mutex
	got  []Submission
	err  error
	next int
}

func (f *fakeSubmit) submit(ctx context.Context, s Submission) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, s)
	if f.err != nil {
		return "", f.err
	}
	f.next++
	return "Q" + strings.Repeat("0", 5) + string(rune('A'+f.next)), nil
}

func (f *fakeSubmit) last(t *testing.T) Submission {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("nothing was submitted")
	}
	return f.got[len(f.got)-1]
}

func (f *fakeSubmit) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

type fakeQueue struct {
	msgs map[string]*queue.Message
	err  error
}

func (q *fakeQueue) Get(id string) (*queue.Message, error) {
	if q.err != nil {
		return nil, q.err
	}
	if m := q.msgs[id]; m != nil {
		return m.Clone(), nil
	}
	return nil, queue.ErrNotFound
}

// fakeEvents keeps events by queue id and answers queries by filtering
// them, remembering the last query.
type fakeEvents struct {
	mu   sync.Mutex
	byID map[string][]events.Event
	last store.Query
}

func (f *fakeEvents) add(evs ...events.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byID == nil {
		f.byID = map[string][]events.Event{}
	}
	for _, e := range evs {
		f.byID[e.ID] = append(f.byID[e.ID], e)
	}
}

func (f *fakeEvents) ByMessage(ctx context.Context, id string) ([]events.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.byID[id]), nil
}

func (f *fakeEvents) Query(ctx context.Context, q store.Query) ([]events.Event, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = q
	if q.Cursor != "" && q.Cursor != "page2" {
		return nil, "", store.ErrBadCursor
	}
	var out []events.Event
	for _, evs := range f.byID {
		for _, e := range evs {
			if q.Account != "" && e.Account != q.Account {
				continue
			}
			if len(q.Types) > 0 && !slices.Contains(q.Types, e.Type) {
				continue
			}
			if q.Recipient != "" && !strings.EqualFold(q.Recipient, e.Recipient) {
				continue
			}
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b events.Event) int { return b.Time.Compare(a.Time) })
	return out, "", nil
}

// world is an API over fakes.
type world struct {
	t      testing.TB
	api    *API
	submit *fakeSubmit
	queue  *fakeQueue
	events *fakeEvents
	log    *syncBuffer
	clk    *clock.Fake
}

var t0 = time.Date(2025, 3, 3, 12, 0, 0, 0, time.UTC)

func newWorld(t testing.TB, edit ...func(*Deps)) *world {
	w := &world{t: t, submit: &fakeSubmit{}, queue: &fakeQueue{msgs: map[string]*queue.Message{}},
		events: &fakeEvents{}, log: &syncBuffer{}, clk: clock.NewFake(t0)}
	d := Deps{
		Submit: w.submit.submit, Queue: w.queue, Events: w.events,
		Suppressions: http.HandlerFunc(scopeEcho),
		Accounts: []configs.Account{
			{Name: "shop", APIKeyHash: hash(t, shopKey), SenderDomains: []string{"shop.example"}},
			{Name: "news_letter", APIKeyHash: hash(t, newsKey), SenderDomains: []string{"news.example"}},
			{Name: "smtponly", SenderDomains: []string{"smtp.example"}},
		},
		AdminKeyHash:    hash(t, adminKey),
		Clock:           w.clk,
		Log:             slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		MaxMessageBytes: 64 << 10,
	}
	for _, e := range edit {
		e(&d)
	}
	w.api = New(d)
	return w
}

// scopeEcho stands in for the suppression list's handler: it says which
// scope the request was limited to.
func scopeEcho(w http.ResponseWriter, r *http.Request) {
	s, limited := suppress.ScopeFrom(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"path": r.URL.Path, "method": r.Method, "scope": s, "limited": limited})
}

// response is a recorded answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// apiErr returns the answer's error object, failing unless there is one.
func (r response) apiErr(t *testing.T) map[string]any {
	t.Helper()
	e, ok := r.json(t)["error"].(map[string]any)
	if !ok {
		t.Fatalf("answer has no error object: %s", r.body)
	}
	if e["code"] == "" || e["message"] == "" {
		t.Fatalf("error without code or message: %s", r.body)
	}
	return e
}

// do sends a request with key ("" for none) from a non-loopback client.
func (w *world) do(method, path, key string, body any) response {
	return w.doFrom("192.0.2.7:40000", method, path, key, body)
}

func (w *world) doFrom(remote, method, path, key string, body any) response {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			w.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req := newRequest(method, path, rd)
	req.RemoteAddr = remote
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return w.serve(req)
}

func newRequest(method, path string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, path, body)
	req.RemoteAddr = "192.0.2.7:40000"
	return req
}

func (w *world) serve(req *http.Request) response {
	rec := httptest.NewRecorder()
	w.api.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func expectStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
	}
}
