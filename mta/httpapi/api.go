package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"sort"

	"kiln/configs"
	"kiln/events"
	"kiln/events/store"
	"kiln/internal/clock"
	"kiln/policy/suppress"
	"kiln/queue"
)

// Submission is a message for the daemon's submission path: the same checks
// as SMTP submission, DKIM signing, and durability before the call returns.
type Submission struct {
	// Account sends the message; "" is the operator.
	Account string
	// From is the envelope sender; "" is the null sender (operators only).
	From string
	To   []string
	// Data is the whole RFC 5322 message.
	Data     []byte
	Tags     []string
	Metadata map[string]string
	// Priority: higher goes first when a warm-up cap binds (0-9).
	Priority int
	// Client is the address the request came from.
	Client netip.Addr
}

// SubmitError is a refusal by the submission path, with the SMTP reply kiln
// would have given.
type SubmitError struct {
	Code     int    // 4xx: try again later; 5xx: do not
	Enhanced string // "5.7.1"
	Message  string
	// Field names what in the submission was wrong: "from", "to", "to[2]"
	// (an index into Submission.To), or "".
	Field string
}

func (e *SubmitError) Error() string { return e.Message }

// ErrUnknownAccount is what Submit returns for an account that is not
// configured.
var ErrUnknownAccount = errors.New("unknown account")

// Queue is the part of the queue store the API reads.
type Queue interface {
	Get(id string) (*queue.Message, error)
}

// Events is the part of the event store the API reads.
type Events interface {
	ByMessage(ctx context.Context, id string) ([]events.Event, error)
	Query(ctx context.Context, q store.Query) ([]events.Event, string, error)
}

// Deps is what the API needs from the daemon.
type Deps struct {
	// Submit stores a message durably (see Submission) and returns its
	// queue id, or a *SubmitError, or ErrUnknownAccount.
	Submit func(ctx context.Context, s Submission) (id string, err error)
	Queue  Queue
	// Events answers message histories and event queries; nil: the event
	// endpoints answer 503, and a message lookup shows the queue only.
	Events Events
	// Suppressions is the suppression list's admin handler
	// (suppress.Handler); the API serves it under /api/v1/suppressions to
	// the admin as is and to an account limited to its scope. nil: not served.
	Suppressions http.Handler
	// Accounts with a non-empty APIKeyHash may use the API.
	Accounts []configs.Account
	// AdminKeyHash is the bcrypt hash of the admin key; "" lets loopback
	// clients in as the admin without a key.
	AdminKeyHash string
	Clock        clock.Clock
	Log          *slog.Logger
	// MaxMessageBytes is the largest message (raw, or as built) accepted;
	// 0 is 25 MiB.
	MaxMessageBytes int64
	// MaxBodyBytes bounds a request body; 0 is twice MaxMessageBytes plus
	// 1 MiB (JSON escaping can double a message's size).
	MaxBodyBytes int64
}

// API is kiln's JSON API for applications and operators.
type API struct {
	d      Deps
	log    *slog.Logger
	clk    clock.Clock
	keys   *keyring
	routes []Route
	mux    *http.ServeMux
}

// Access says who may use a route.
type Access string

const (
	AccessPublic  Access = "public"  // no key
	AccessAccount Access = "account" // any valid key; an account sees only its own data
	AccessAdmin   Access = "admin"   // the admin key only
)

// Route is one endpoint the API serves.
type Route struct {
	Method string // "GET", "POST", ...
	Path   string // a net/http pattern path: "/api/v1/messages/{id}"
	Access Access
	h      func(http.ResponseWriter, *http.Request, Principal)
}

// Pattern is the route's net/http pattern: "GET /api/v1/messages/{id}".
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// New builds the API.
func New(d Deps) *API {
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.MaxMessageBytes <= 0 {
		d.MaxMessageBytes = 25 << 20
	}
	if d.MaxBodyBytes <= 0 {
		d.MaxBodyBytes = 2*d.MaxMessageBytes + 1<<20
	}
	// A nil *store.Store passed as Events is not a nil interface: treat it
	// as none rather than call its methods.
	if isNil(d.Events) {
		d.Events = nil
	}
	hashes := map[string]string{}
	for _, acct := range d.Accounts {
		hashes[acct.Name] = acct.APIKeyHash
	}
	a := &API{d: d, log: d.Log, clk: d.Clock, keys: newKeyring(hashes, d.AdminKeyHash), mux: http.NewServeMux()}
	a.routes = []Route{
		{Method: "POST", Path: "/api/v1/messages", Access: AccessAccount, h: a.send},
		{Method: "GET", Path: "/api/v1/messages/{id}", Access: AccessAccount, h: a.message},
		{Method: "GET", Path: "/api/v1/events", Access: AccessAccount, h: a.events},
		{Method: "GET", Path: "/api/v1/openapi.json", Access: AccessPublic, h: a.openapi},
	}
	if d.Suppressions != nil {
		for _, rt := range suppressionRoutes {
			rt.Access, rt.h = AccessAccount, a.suppressions
			a.routes = append(a.routes, rt)
		}
	}
	for _, rt := range a.routes {
		a.mux.Handle(rt.Pattern(), a.serve(rt))
	}
	return a
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// suppressionRoutes are the suppression list's endpoints (suppress.Handler)
// an account key may use too, limited to its scope.
var suppressionRoutes = []Route{
	{Method: "GET", Path: "/api/v1/suppressions"},
	{Method: "POST", Path: "/api/v1/suppressions"},
	{Method: "DELETE", Path: "/api/v1/suppressions"},
	{Method: "GET", Path: "/api/v1/suppressions/check"},
	{Method: "POST", Path: "/api/v1/suppressions/import"},
	{Method: "GET", Path: "/api/v1/suppressions/export"},
}

// Routes lists the endpoints the API serves, in a stable order.
func (a *API) Routes() []Route {
	out := append([]Route(nil), a.routes...)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

// Paths are the distinct paths of Routes: mounting each on a mux sends every
// method of the path here, so a wrong method gets the API's 405.
func (a *API) Paths() []string {
	seen := map[string]bool{}
	var out []string
	for _, rt := range a.Routes() {
		if !seen[rt.Path] {
			seen[rt.Path] = true
			out = append(out, rt.Path)
		}
	}
	return out
}

// Mount registers the API's paths on mux (the admin listener's root).
func (a *API) Mount(mux *http.ServeMux) {
	for _, p := range a.Paths() {
		mux.Handle(p, a)
	}
}

// Handler serves the API's routes; other paths get a JSON 404.
func (a *API) Handler() http.Handler { return a }

// ServeHTTP serves the API's routes.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern == "" {
		probe := &statusProbe{}
		a.mux.ServeHTTP(probe, r)
		if probe.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", probe.Header().Get("Allow"))
			writeError(w, http.StatusMethodNotAllowed, apiError{Code: "method_not_allowed",
				Message: r.Method + " is not allowed on " + r.URL.Path})
			return
		}
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no such endpoint: " + r.URL.Path})
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) serve(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		var p Principal
		if rt.Access != AccessPublic {
			var ok bool
			if p, ok = a.check(w, r, rt.Access == AccessAdmin); !ok {
				return
			}
			r = r.WithContext(WithPrincipal(r.Context(), p))
		}
		rt.h(w, r, p)
	})
}

// suppressions forwards to the suppression list's handler, limiting an
// account to its own scope.
func (a *API) suppressions(w http.ResponseWriter, r *http.Request, p Principal) {
	if !p.Admin {
		r = r.WithContext(suppress.WithScope(r.Context(), p.Account))
	}
	a.d.Suppressions.ServeHTTP(w, r)
}

// statusProbe records the status the mux would answer with.
type statusProbe struct {
	header http.Header
	status int
}

func (s *statusProbe) Header() http.Header {
	if s.header == nil {
		s.header = http.Header{}
	}
	return s.header
}
func (s *statusProbe) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusProbe) WriteHeader(code int)        { s.status = code }

// apiError is the body of every error: {"error": {...}}.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the part of the request that is wrong ("to[1]",
	// "headers.X-Campaign", "limit").
	Field string `json:"field,omitempty"`
	// SMTPCode and Enhanced are the reply SMTP submission would have given.
	SMTPCode int    `json:"smtp_code,omitempty"`
	Enhanced string `json:"enhanced,omitempty"`
	// Limit is the limit exceeded, in bytes, for "too_large".
	Limit int64 `json:"limit,omitempty"`
}

func (e apiError) Error() string { return e.Message }

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, struct {
		Error apiError `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func badField(field, msg string) apiError {
	return apiError{Code: "invalid_value", Field: field, Message: field + ": " + msg}
}

// clientAddr is the request's peer address.
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
