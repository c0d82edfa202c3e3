package suppress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The admin API's suppression endpoints. Handler serves them; the admin
// server mounts it for the paths "/api/v1/suppressions",
// "/api/v1/suppressions/" and, with a Breaker, "/api/v1/breakers" and
// "/api/v1/breakers/":
//
//	GET    /api/v1/suppressions?scope=&reason=&source=&q=&prefix=&since=&cursor=&limit=
//	       list: {"suppressions": [Entry...], "next": "CURSOR"}; scope absent = every
//	       scope, "scope=" = global; q is a substring, prefix a prefix of the address;
//	       since is RFC 3339; limit 1-10000, default 100
//	POST   /api/v1/suppressions
//	       add one entry {"address", "scope", "reason", "source", "note", "expires",
//	       "expires_in"} or an array of them: {"results": [{"entry": Entry, "changed": bool}]};
//	       source defaults to manual; expires is RFC 3339, expires_in a duration ("30d")
//	       or "never"; neither: chosen by reason and source
//	DELETE /api/v1/suppressions?address=&scope=   (scope absent = global)
//	DELETE /api/v1/suppressions?address=&all_scopes=true
//	       {"removed": [Entry...]} (empty when the address was not on the list)
//	GET    /api/v1/suppressions/check?address=&account=
//	       {"suppressed": bool, "entry": Entry}: what a delivery for the account would meet
//	POST   /api/v1/suppressions/import?scope=&source=   (body: CSV, see Columns)
//	       ImportReport; the body is read as it streams
//	GET    /api/v1/suppressions/export?(list filters)   CSV, streamed; the trailer
//	       Kiln-Export-Rows says it completed, Kiln-Export-Error that it did not
//	GET    /api/v1/breakers                  {"accounts": [BreakerState...]}
//	POST   /api/v1/breakers/{account}/reset  {"account", "was_tripped": bool}
//
// Errors are {"error": {"code", "message"}} with codes bad_request, forbidden,
// not_found, method_not_allowed and store.
//
// # Scope restriction
//
// A caller limited to one account (an account's API key) carries that limit
// in the request context: the admin server's authentication wraps the
// request with WithScope(ctx, account). Such a caller sees and changes only
// that account's scope: lists and exports are limited to it (asking for
// another scope is forbidden), adds and imports go to it (a row naming
// another scope is refused), removals act in it, and check looks at it and at
// the global scope (as a delivery for that account would). The breaker
// endpoints are forbidden to it. Without WithScope the caller is an operator
// and may do everything.

type scopeKey struct{}

// WithScope returns ctx limited to account's scope, for Handler.
func WithScope(ctx context.Context, account string) context.Context {
	return context.WithValue(ctx, scopeKey{}, account)
}

// ScopeFrom returns the scope a request is limited to, if any.
func ScopeFrom(ctx context.Context) (string, bool) {
	s, ok := ctx.Value(scopeKey{}).(string)
	return s, ok
}

// HandlerOptions are Handler's optional parts.
type HandlerOptions struct {
	// Breaker, when set, is served under /api/v1/breakers.
	Breaker *Breaker
	// OnReset is called after an operator reset an account's breaker that
	// was tripped, so the engine can release the account's queue.
	OnReset func(account string)
	// Log reports failures; nil is slog.Default().
	Log *slog.Logger
}

type api struct {
	l    *List
	opts HandlerOptions
	log  *slog.Logger
}

// Handler returns the admin API's suppression (and breaker) endpoints.
func Handler(l *List, opts HandlerOptions) http.Handler {
	a := &api{l: l, opts: opts, log: opts.Log}
	if a.log == nil {
		a.log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/suppressions", a.list)
	mux.HandleFunc("POST /api/v1/suppressions", a.add)
	mux.HandleFunc("DELETE /api/v1/suppressions", a.remove)
	mux.HandleFunc("GET /api/v1/suppressions/check", a.check)
	mux.HandleFunc("POST /api/v1/suppressions/import", a.importCSV)
	mux.HandleFunc("GET /api/v1/suppressions/export", a.export)
	if opts.Breaker != nil {
		mux.HandleFunc("GET /api/v1/breakers", a.breakers)
		mux.HandleFunc("POST /api/v1/breakers/{account}/reset", a.reset)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern == "" {
			// Answer in the API's error shape rather than the mux's text.
			rec := &statusProbe{}
			h.ServeHTTP(rec, r)
			if rec.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", rec.header.Get("Allow"))
				writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
				return
			}
			writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
			return
		}
		mux.ServeHTTP(w, r)
	})
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
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// filterFrom reads the list filters of a query, within the caller's scope.
func filterFrom(r *http.Request) (Filter, error) {
	q := r.URL.Query()
	var f Filter
	if q.Has("scope") {
		f.Scope = q.Get("scope")
		f.Global = f.Scope == ""
	}
	if s, ok := ScopeFrom(r.Context()); ok {
		if q.Has("scope") && f.Scope != s {
			return f, errForbidden
		}
		f.Scope, f.Global = s, s == ""
	}
	f.Reason = strings.ToLower(q.Get("reason"))
	f.Source = Source(strings.ToLower(q.Get("source")))
	if f.Source != "" && !f.Source.Valid() {
		return f, fmt.Errorf("unknown source %q", f.Source)
	}
	f.Search = strings.ToLower(q.Get("q"))
	f.Prefix = strings.ToLower(q.Get("prefix"))
	if s := q.Get("since"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return f, fmt.Errorf("since: %v", err)
		}
		f.Since = t
	}
	return f, nil
}

var errForbidden = errors.New("this key may only use its own account's scope")

func (a *api) filterError(w http.ResponseWriter, err error) {
	if errors.Is(err, errForbidden) {
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "bad_request", err.Error())
}

func (a *api) storeError(w http.ResponseWriter, what string, err error) {
	a.log.Error("suppression list: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, "store", what+" failed")
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	f, err := filterFrom(r)
	if err != nil {
		a.filterError(w, err)
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPage {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("limit must be between 1 and %d", MaxPage))
			return
		}
		limit = n
	}
	out, next, err := a.l.List(f, r.URL.Query().Get("cursor"), limit, a.l.clk.Now())
	if err != nil {
		if errors.Is(err, ErrCursor) {
			writeError(w, http.StatusBadRequest, "bad_request", "invalid cursor")
			return
		}
		a.storeError(w, "listing suppressions", err)
		return
	}
	if out == nil {
		out = []Entry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"suppressions": out, "next": next})
}

// AddRequest is the body of POST /api/v1/suppressions (or one element of an
// array of them).
type AddRequest struct {
	Address string    `json:"address"`
	Scope   string    `json:"scope,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Source  Source    `json:"source,omitempty"`
	Reply   string    `json:"reply,omitempty"`
	Rule    string    `json:"rule,omitempty"`
	QueueID string    `json:"queue_id,omitempty"`
	Note    string    `json:"note,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
	// ExpiresIn is a duration from now ("30d") or "never".
	ExpiresIn string `json:"expires_in,omitempty"`
}

// AddResult is one element of the answer to POST /api/v1/suppressions.
type AddResult struct {
	Entry   Entry `json:"entry"`
	Changed bool  `json:"changed"`
}

func (a *api) add(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
		return
	}
	var reqs []AddRequest
	trimmed := strings.TrimSpace(string(body))
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if strings.HasPrefix(trimmed, "[") {
		err = dec.Decode(&reqs)
	} else {
		var one AddRequest
		err = dec.Decode(&one)
		reqs = []AddRequest{one}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
		return
	}
	if len(reqs) == 0 || len(reqs) > 10000 {
		writeError(w, http.StatusBadRequest, "bad_request", "give between 1 and 10000 entries (use import for more)")
		return
	}
	restricted, limited := ScopeFrom(r.Context())
	now := a.l.clk.Now()
	entries := make([]Entry, len(reqs))
	never := make([]bool, len(reqs))
	for i, q := range reqs {
		where := ""
		if len(reqs) > 1 {
			where = fmt.Sprintf("entry %d: ", i)
		}
		if limited {
			if q.Scope != "" && q.Scope != restricted {
				writeError(w, http.StatusForbidden, "forbidden", where+errForbidden.Error())
				return
			}
			q.Scope = restricted
		}
		e := Entry{Scope: q.Scope, Address: q.Address, Reason: strings.ToLower(q.Reason), Source: q.Source,
			Reply: q.Reply, Rule: q.Rule, QueueID: q.QueueID, Note: q.Note, Expires: q.Expires}
		if e.Reason != "" && !KnownReason(e.Reason) {
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%sunknown reason %q", where, clip(e.Reason, 40)))
			return
		}
		if q.ExpiresIn != "" {
			if !q.Expires.IsZero() {
				writeError(w, http.StatusBadRequest, "bad_request", where+"give expires or expires_in, not both")
				return
			}
			d, err := ParseDuration(q.ExpiresIn)
			if err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", where+"expires_in: "+err.Error())
				return
			}
			if d == Never {
				never[i] = true
			} else {
				e.Expires = now.Add(d.D())
			}
		}
		if _, err := a.l.cfg.prepare(e, now); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", where+err.Error())
			return
		}
		if !e.Expires.IsZero() && !e.Expires.After(now) {
			writeError(w, http.StatusBadRequest, "bad_request", where+"expires has passed")
			return
		}
		entries[i] = e
	}
	out := make([]AddResult, 0, len(entries))
	for i, e := range entries {
		var got Entry
		var changed bool
		var err error
		if never[i] {
			got, changed, err = a.l.addNever(e)
		} else {
			got, changed, err = a.l.Add(e)
		}
		if err != nil {
			a.storeError(w, "adding a suppression", err)
			return
		}
		out = append(out, AddResult{Entry: got, Changed: changed})
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
}

func (a *api) remove(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr := q.Get("address")
	if addr == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "give the address to remove (?address=)")
		return
	}
	if _, err := Normalize(addr); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	scope := q.Get("scope")
	all := q.Get("all_scopes") == "true" || q.Get("all_scopes") == "1"
	if s, ok := ScopeFrom(r.Context()); ok {
		if all || (q.Has("scope") && scope != s) {
			writeError(w, http.StatusForbidden, "forbidden", errForbidden.Error())
			return
		}
		scope = s
	}
	removed := []Entry{}
	if all {
		got, err := a.l.RemoveEverywhere(addr)
		if err != nil {
			a.storeError(w, "removing a suppression", err)
			return
		}
		removed = append(removed, got...)
	} else {
		e, found, err := a.l.Remove(scope, addr)
		if err != nil {
			a.storeError(w, "removing a suppression", err)
			return
		}
		if found {
			removed = append(removed, e)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed": removed})
}

func (a *api) check(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	addr := q.Get("address")
	if _, err := Normalize(addr); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "address: "+err.Error())
		return
	}
	account := q.Get("account")
	if s, ok := ScopeFrom(r.Context()); ok {
		if q.Has("account") && account != s {
			writeError(w, http.StatusForbidden, "forbidden", errForbidden.Error())
			return
		}
		account = s
	}
	e, found, err := a.l.Check(account, addr, a.l.clk.Now())
	if err != nil {
		a.storeError(w, "checking a suppression", err)
		return
	}
	res := map[string]any{"suppressed": found}
	if found {
		res["entry"] = e
	}
	writeJSON(w, http.StatusOK, res)
}

func (a *api) importCSV(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := ImportOptions{Scope: q.Get("scope"), Source: Source(strings.ToLower(q.Get("source")))}
	if s, ok := ScopeFrom(r.Context()); ok {
		if q.Has("scope") && opts.Scope != s {
			writeError(w, http.StatusForbidden, "forbidden", errForbidden.Error())
			return
		}
		opts.Scope, opts.Restricted = s, true
	}
	if opts.Source != "" && !opts.Source.Valid() {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("unknown source %q", opts.Source))
		return
	}
	if err := ValidScope(opts.Scope); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	rep, err := a.l.Import(r.Body, opts)
	if err != nil {
		var maxErr *http.MaxBytesError
		switch {
		case errors.Is(err, ErrNoHeader):
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		case errors.Is(err, ErrClosed), errors.Is(err, errRecord):
			a.storeError(w, "importing suppressions", err)
		case errors.As(err, &maxErr) || errors.Is(err, ErrRead):
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("%v (%d rows imported before it)", err, rep.Added+rep.Unchanged))
		default:
			a.storeError(w, "importing suppressions", err)
		}
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (a *api) export(w http.ResponseWriter, r *http.Request) {
	f, err := filterFrom(r)
	if err != nil {
		a.filterError(w, err)
		return
	}
	// The rows stream out before the export is known to succeed, so its
	// end is told in trailers: the rows written, or the error that cut it
	// short. A client that finds neither knows the body is incomplete.
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="suppressions.csv"`)
	w.Header().Set("Trailer", TrailerExportRows+", "+TrailerExportError)
	n, err := a.l.Export(w, f, a.l.clk.Now(), nil)
	if err != nil {
		a.log.Error("suppression export failed", "err", err, "rows", n)
		w.Header().Set(TrailerExportError, "export failed after "+strconv.FormatInt(n, 10)+" rows")
		return
	}
	w.Header().Set(TrailerExportRows, strconv.FormatInt(n, 10))
}

// Trailers of GET /api/v1/suppressions/export.
const (
	TrailerExportRows  = "Kiln-Export-Rows"  // rows written, when the export completed
	TrailerExportError = "Kiln-Export-Error" // why it stopped, when it failed
)

func (a *api) breakers(w http.ResponseWriter, r *http.Request) {
	if _, ok := ScopeFrom(r.Context()); ok {
		writeError(w, http.StatusForbidden, "forbidden", "only an operator may see the breakers")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": a.opts.Breaker.State()})
}

func (a *api) reset(w http.ResponseWriter, r *http.Request) {
	if _, ok := ScopeFrom(r.Context()); ok {
		writeError(w, http.StatusForbidden, "forbidden", "only an operator may reset a breaker")
		return
	}
	account := r.PathValue("account")
	was, err := a.opts.Breaker.Reset(account)
	if err != nil {
		a.storeError(w, "resetting the breaker", err)
		return
	}
	if was && a.opts.OnReset != nil {
		a.opts.OnReset(account)
	}
	writeJSON(w, http.StatusOK, map[string]any{"account": account, "was_tripped": was})
}
