package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/time/rate"

	"kiln/events"
	"kiln/events/stats"
	"kiln/events/store"
	"kiln/internal/clock"
	"kiln/queue"
	"kiln/warmup"
)

// Stats is the statistics aggregator: *stats.Stats.
type Stats interface {
	Series(stats.Query) (stats.Series, error)
	Top(q stats.Query, n int) ([]stats.Count, error)
	Sum(stats.Query) (uint64, error)
	Warmup(egress string) []stats.WarmupHistory
}

// Warmup is the warm-up controller: *warmup.Controller.
type Warmup interface {
	Status(now time.Time) warmup.Status
	Plan(egress string, now time.Time) (warmup.PlanView, error)
}

// Events is the event store: *store.Store.
type Events interface {
	ByMessage(ctx context.Context, id string) ([]events.Event, error)
	Query(ctx context.Context, q store.Query) ([]events.Event, string, error)
}

// Queue is the message queue: *queue.Store.
type Queue interface {
	Get(id string) (*queue.Message, error)
	Count() (total, held int, err error)
	Lanes() ([]string, error)
	CountWaiting(lane string) int
}

// kiln's own stores fit the interfaces as they are.
var (
	_ Stats  = (*stats.Stats)(nil)
	_ Warmup = (*warmup.Controller)(nil)
	_ Events = (*store.Store)(nil)
	_ Queue  = (*queue.Store)(nil)
)

// Suppression is one entry of the suppression list.
type Suppression struct {
	// Account is the account the address is suppressed for; "" for all.
	Account string `json:"account,omitempty"`
	Address string `json:"address"`
	Reason  string `json:"reason,omitempty"`
	// Source says what added it: reply, late-bounce, complaint,
	// unsubscribe, soft-failure, manual, import.
	Source string `json:"source,omitempty"`
	// Rule is the classification rule that decided; Reply the remote's
	// words; QueueID the message that caused it.
	Rule    string    `json:"rule,omitempty"`
	Reply   string    `json:"reply,omitempty"`
	QueueID string    `json:"queue_id,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitzero"` // zero: never
}

// SuppressionQuery selects entries of the suppression list.
type SuppressionQuery struct {
	// Account restricts to one account's entries; Global (with no
	// Account) to the global list's. With neither, every entry.
	Account string
	Global  bool
	// Text matches an address, a domain ("@example.com") or a prefix of
	// either; "" lists everything.
	Text   string
	Cursor string
	Limit  int
}

// Suppressions is the suppression list, through an adapter: searches must
// use an index (by address and by domain), never a scan of the list.
type Suppressions interface {
	Search(ctx context.Context, q SuppressionQuery) (entries []Suppression, next string, err error)
	// Remove deletes the entry; false when there was none.
	Remove(ctx context.Context, account, address string) (bool, error)
}

// DomainCount is the number of pending recipients of one recipient domain.
type DomainCount struct {
	Domain  string `json:"domain"`
	Pending int    `json:"pending"`
}

// Sources are what the dashboard shows. A nil source makes its page say the
// data is not available; nothing else breaks.
type Sources struct {
	Stats        Stats
	Warmup       Warmup
	Events       Events
	Queue        Queue
	Suppressions Suppressions
	// PendingByDomain, when set, returns the recipient domains with the most
	// pending recipients, most first. It must answer from a maintained
	// counter, not a scan of the queue.
	PendingByDomain func(limit int) ([]DomainCount, error)
	Clock           clock.Clock // default clock.Real
}

// Options tune the handler.
type Options struct {
	// Authorize reports whether key is the admin key; compare in constant
	// time. Required: with none, nobody gets in.
	Authorize func(key string) bool
	// SessionTTL is how long a login lasts (default 12 hours).
	SessionTTL time.Duration
	// SecureCookie marks the session cookie Secure even on plain HTTP, for
	// a listener behind a TLS-terminating proxy.
	SecureCookie bool
	// QueueRefresh is the longest the queue's counts are reused (default
	// 10 seconds). It paces work, not decisions, so it runs on the wall clock.
	QueueRefresh time.Duration
	// Refresh is how often pages poll for new data (default 5 seconds).
	Refresh time.Duration
	Log     *slog.Logger // default slog.Default()
}

// Handler serves the dashboard. Create it with New.
type Handler struct {
	src      Sources
	opts     Options
	clk      clock.Clock
	log      *slog.Logger
	mux      *http.ServeMux
	sessions *sessions
	failures *rate.Limiter // failed logins
	queue    *queueCache
}

//go:embed assets
var assets embed.FS

// New builds the handler.
func New(src Sources, opts Options) *Handler {
	if src.Clock == nil {
		src.Clock = clock.Real{}
	}
	if opts.Authorize == nil {
		opts.Authorize = func(string) bool { return false }
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 12 * time.Hour
	}
	if opts.QueueRefresh <= 0 {
		opts.QueueRefresh = 10 * time.Second
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 5 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	h := &Handler{
		src: src, opts: opts, clk: src.Clock, log: opts.Log.With("component", "dashboard"),
		sessions: newSessions(src.Clock, opts.SessionTTL),
		// Ten wrong keys, then one every six seconds: slow enough that a
		// guessed key is hopeless, while an operator's typo costs nothing.
		failures: rate.NewLimiter(rate.Every(6*time.Second), 10),
	}
	h.queue = newQueueCache(src, opts.QueueRefresh, h.log)
	h.routes()
	return h
}

func (h *Handler) routes() {
	mux := http.NewServeMux()
	for _, p := range pages {
		mux.HandleFunc("GET /dashboard/"+p, h.page)
	}
	mux.HandleFunc("GET /dashboard/{$}", h.page)
	mux.HandleFunc("GET /dashboard/login", h.loginPage)
	mux.HandleFunc("POST /dashboard/login", h.login)
	mux.HandleFunc("POST /dashboard/logout", h.auth(h.logout))
	mux.HandleFunc("GET /dashboard/static/{file}", h.static)

	api := func(pattern string, fn http.HandlerFunc) { mux.HandleFunc(pattern, h.auth(fn)) }
	api("GET /api/v1/dashboard/session", h.apiSession)
	api("GET /api/v1/dashboard/overview", h.apiOverview)
	api("GET /api/v1/dashboard/series", h.apiSeries)
	api("GET /api/v1/dashboard/queues", h.apiQueues)
	api("GET /api/v1/dashboard/warmup", h.apiWarmup)
	api("GET /api/v1/dashboard/suppressions", h.apiSuppressions)
	api("POST /api/v1/dashboard/suppressions/remove", h.apiRemoveSuppression)
	api("GET /api/v1/dashboard/messages", h.apiMessages)
	mux.HandleFunc("/api/v1/dashboard/", h.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such dashboard endpoint")
	}))
	h.mux = mux
}

// pages are the dashboard's pages; each is the same document, which draws
// the page its path names.
var pages = []string{"overview", "queues", "warmup", "suppressions", "messages"}

// ServeHTTP serves the pages and their API, with security headers on
// every answer.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// readJSON decodes a small request body, refusing unknown fields.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
		return false
	}
	return true
}

func unavailable(w http.ResponseWriter, what string) {
	writeError(w, http.StatusServiceUnavailable, "unavailable", what+" is not available")
}
