package mta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kiln/events"
	"kiln/queue"
)

// The admin API is JSON over HTTP on [admin] listen. Its paths are versioned
// (/api/v1/...) and every error has the same shape:
// {"error": {"code": "...", "message": "..."}}.

func (srv *Server) serveAdmin() error {
	ln, err := net.Listen("tcp", string(srv.cfg.Admin.Listen))
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", srv.cfg.Admin.Listen, err)
	}
	srv.adminLn = ln
	srv.admin = &http.Server{
		Handler:           srv.adminHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // imports can be large
		WriteTimeout:      10 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := srv.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srv.log.Error("admin listener stopped", "err", err)
		}
	}()
	return nil
}

// AdminAddr is the admin listener's address (useful when the port was 0).
func (srv *Server) AdminAddr() string {
	if srv.adminLn == nil {
		return ""
	}
	return srv.adminLn.Addr().String()
}

func (srv *Server) adminHandler() http.Handler {
	auth := newAdminAuth(srv.cfg.Admin.KeyHash)
	sh := srv.suppressHandler()
	api := srv.apiMux(sh)
	root := http.NewServeMux()
	// The health check answers anyone: load balancers and monitors.
	root.HandleFunc("GET /healthz", srv.handleHealth)
	// The dashboard checks the key itself (a browser cannot send a bearer
	// header), so it stands outside the API's guard.
	dash := auth.dashboardGate(srv.dashboardHandler(auth))
	root.Handle("/dashboard/", dash)
	root.Handle("/api/v1/dashboard/", dash)
	// The API for applications checks account keys and the admin key
	// itself (and scopes the suppression list for accounts).
	srv.httpAPI(sh).Mount(root)
	root.Handle("/", auth.require(api))
	return root
}

func (srv *Server) apiMux(sh http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(srv.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /api/v1/queue", srv.handleQueueList)
	mux.HandleFunc("GET /api/v1/queue/holds", srv.handleHoldList)
	mux.HandleFunc("GET /api/v1/queue/quarantine", srv.handleQuarantine)
	mux.HandleFunc("GET /api/v1/queue/{id}", srv.handleQueueShow)
	mux.HandleFunc("POST /api/v1/queue/hold", srv.handleHold)
	mux.HandleFunc("POST /api/v1/queue/release", srv.handleRelease)
	mux.HandleFunc("POST /api/v1/queue/flush", srv.handleFlush)
	mux.HandleFunc("POST /api/v1/queue/drop", srv.handleDrop)
	srv.mountWarmup(mux)
	mux.Handle("/api/v1/breakers", sh)
	mux.Handle("/api/v1/breakers/", sh)
	return mux
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
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// readJSON decodes a request body, refusing unknown fields; an empty body
// decodes as the zero value.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", "request body: "+err.Error())
		return false
	}
	return true
}

func (srv *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	total, held, err := srv.store.Count()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "store", "queue unreadable")
		return
	}
	free, _ := srv.store.FreeDisk()
	status := "ok"
	if srv.cfg.Queue.MinFreeDisk > 0 && free < int64(srv.cfg.Queue.MinFreeDisk) {
		status = "disk_low"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": status, "queue": total, "held": held, "counts": srv.store.Counts(), "free_disk_bytes": free,
		"stats": srv.store.Stats(), "recovered": srv.store.Recovered(),
	})
}

// MessageView is how the API shows a queued message.
type MessageView struct {
	ID        string            `json:"id"`
	Kind      string            `json:"kind,omitempty"`
	Account   string            `json:"account,omitempty"`
	From      string            `json:"from"`
	MessageID string            `json:"message_id,omitempty"`
	State     string            `json:"state"`
	Created   time.Time         `json:"created"`
	Expires   time.Time         `json:"expires"`
	Due       time.Time         `json:"due"`
	Attempts  int               `json:"attempts"`
	Size      int64             `json:"size"`
	Priority  int               `json:"priority,omitempty"`
	Tags      []string          `json:"tags,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Rcpts     []RcptView        `json:"recipients"`
}

// RcptView is one recipient of a MessageView.
type RcptView struct {
	Addr     string     `json:"address"`
	State    string     `json:"state"`
	Attempts int        `json:"attempts"`
	Next     *time.Time `json:"next_attempt,omitempty"`
	Reply    string     `json:"last_reply,omitempty"`
	Host     string     `json:"remote_host,omitempty"`
	Reason   string     `json:"reason,omitempty"`
	Rule     string     `json:"rule,omitempty"`
}

func viewOf(m *queue.Message, now time.Time) MessageView {
	v := MessageView{ID: m.ID, Kind: string(m.Kind), Account: m.Account, From: m.From, MessageID: m.MessageID,
		Created: m.Created, Expires: m.Expires.Add(m.Waited), Due: m.Due, Attempts: m.Attempts, Size: m.Body.Len,
		Priority: m.Priority, Tags: m.Tags, Metadata: m.Metadata}
	switch {
	case m.Held:
		v.State = "held"
	case m.Leased:
		v.State = "active"
	case m.Due.After(now):
		v.State = "deferred"
	default:
		v.State = "due"
	}
	for _, r := range m.Rcpts {
		rv := RcptView{Addr: r.Addr, State: string(r.State), Attempts: r.Attempts, Reply: r.Line, Host: r.Host, Reason: r.Reason, Rule: r.Rule}
		if !r.State.Done() && r.Next.After(now) {
			n := r.Next
			rv.Next = &n
		}
		v.Rcpts = append(v.Rcpts, rv)
	}
	return v
}

func filterFromQuery(r *http.Request) queue.Filter {
	q := r.URL.Query()
	return queue.Filter{ID: q.Get("id"), Account: q.Get("account"), SenderDomain: q.Get("sender_domain"),
		RecipientDomain: q.Get("recipient_domain"), State: q.Get("state")}
}

func (srv *Server) handleQueueList(w http.ResponseWriter, r *http.Request) {
	f := filterFromQuery(r)
	switch f.State {
	case "", "due", "deferred", "held", "leased":
	case "active":
		f.State = "leased"
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "state must be one of due, deferred, held, active")
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be between 1 and 10000")
			return
		}
		limit = n
	}
	now := srv.clk.Now()
	out := []MessageView{}
	next := ""
	err := srv.store.Walk(r.URL.Query().Get("after"), func(m *queue.Message) bool {
		if !f.Match(m, now) {
			return true
		}
		if len(out) == limit {
			next = out[len(out)-1].ID
			return false
		}
		out = append(out, viewOf(m, now))
		return true
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "listing the queue failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out, "next": next})
}

func (srv *Server) handleQueueShow(w http.ResponseWriter, r *http.Request) {
	m, err := srv.store.Get(r.PathValue("id"))
	if errors.Is(err, queue.ErrNotFound) || (err == nil && m == nil) {
		writeError(w, http.StatusNotFound, "not_found", "no message "+r.PathValue("id")+" in the queue")
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "reading the message failed")
		return
	}
	writeJSON(w, http.StatusOK, viewOf(m, srv.clk.Now()))
}

func (srv *Server) handleQuarantine(w http.ResponseWriter, r *http.Request) {
	q, err := srv.store.Quarantine()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "reading the quarantine failed")
		return
	}
	if q == nil {
		q = []queue.Quarantined{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"quarantined": q})
}

// selector is the body of hold, release, flush and drop.
type selector struct {
	ID              string `json:"id"`
	Account         string `json:"account"`
	SenderDomain    string `json:"sender_domain"`
	RecipientDomain string `json:"recipient_domain"`
	Reason          string `json:"reason"`
	All             bool   `json:"all"`
}

func (s selector) empty() bool {
	return s.ID == "" && s.Account == "" && s.SenderDomain == "" && s.RecipientDomain == ""
}

func (s selector) rule() queue.HoldRule {
	return queue.HoldRule{Message: s.ID, Account: s.Account, SenderDomain: s.SenderDomain, RecipientDomain: s.RecipientDomain, Reason: s.Reason}
}

func (s selector) filter() queue.Filter {
	return queue.Filter{ID: s.ID, Account: s.Account, SenderDomain: s.SenderDomain, RecipientDomain: s.RecipientDomain}
}

func (srv *Server) handleHoldList(w http.ResponseWriter, r *http.Request) {
	rules := srv.store.HoldRules()
	if rules == nil {
		rules = []queue.HoldRule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rules": rules})
}

// hold adds a rule. An empty selector pauses the whole queue, so it must be
// asked for with "all".
func (srv *Server) handleHold(w http.ResponseWriter, r *http.Request) {
	var sel selector
	if !readJSON(w, r, &sel) {
		return
	}
	if sel.empty() && !sel.All {
		writeError(w, http.StatusBadRequest, "bad_request", "name what to hold (id, account, sender_domain, recipient_domain), or set all to pause the whole queue")
		return
	}
	rule, err := srv.store.AddHold(sel.rule())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "saving the hold rule failed")
		return
	}
	srv.log.Info("hold rule added", "rule", rule.ID, "account", rule.Account, "sender_domain", rule.SenderDomain,
		"recipient_domain", rule.RecipientDomain, "message", rule.Message)
	writeJSON(w, http.StatusOK, map[string]any{"rule": rule})
}

// release removes the rules that select the same messages as the request (or
// all rules) and puts every held message no rule still holds back in the
// schedule, due now.
func (srv *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	var sel selector
	if !readJSON(w, r, &sel) {
		return
	}
	if sel.empty() && !sel.All {
		writeError(w, http.StatusBadRequest, "bad_request", "name the hold to release (as given to hold), or set all")
		return
	}
	gone, err := srv.store.RemoveHolds(sel.rule(), sel.All)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "removing hold rules failed")
		return
	}
	n, err := srv.releaseHeld()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "releasing held messages failed")
		return
	}
	if gone == nil {
		gone = []queue.HoldRule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"removed_rules": gone, "released": n})
}

func (srv *Server) releaseHeld() (int, error) {
	ids, err := srv.store.HeldIDs()
	if err != nil {
		return 0, err
	}
	now := srv.clk.Now()
	var batch []*queue.Message
	n := 0
	flush := func() error {
		err := srv.store.SaveMany(batch)
		n += len(batch)
		batch = batch[:0]
		return err
	}
	for _, id := range ids {
		m, err := srv.store.Get(id)
		if err != nil {
			continue
		}
		if _, held := srv.store.HoldMatch(m); held {
			continue
		}
		m.Held, m.Due = false, now
		batch = append(batch, m)
		if len(batch) == 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	srv.sched.poke()
	return n, nil
}

// flush makes the selected deferred messages due now.
func (srv *Server) handleFlush(w http.ResponseWriter, r *http.Request) {
	var sel selector
	if !readJSON(w, r, &sel) {
		return
	}
	n, err := srv.eachIdle(r.Context(), sel.filter(), func(m *queue.Message, now time.Time) (bool, error) {
		if m.Held {
			return false, nil
		}
		for i := range m.Rcpts {
			m.Rcpts[i].Next = time.Time{}
		}
		m.Due = now
		return true, srv.store.Save(m)
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "flushing failed")
		return
	}
	srv.sched.poke()
	writeJSON(w, http.StatusOK, map[string]any{"flushed": n})
}

// drop deletes the selected messages without delivering them. A message in
// the middle of an attempt is deleted when the attempt ends.
func (srv *Server) handleDrop(w http.ResponseWriter, r *http.Request) {
	var sel selector
	if !readJSON(w, r, &sel) {
		return
	}
	if sel.empty() && !sel.All {
		writeError(w, http.StatusBadRequest, "bad_request", "name what to drop (id, account, sender_domain, recipient_domain), or set all")
		return
	}
	inFlight := 0
	n, err := srv.eachIdle(r.Context(), sel.filter(), func(m *queue.Message, now time.Time) (bool, error) {
		if err := srv.store.Delete(m); err != nil {
			return false, err
		}
		srv.emitDropped(m, "dropped by an operator")
		return true, nil
	}, func(e *entry) { e.dropped = true; inFlight++ })
	if err != nil {
		writeError(w, http.StatusInternalServerError, "store", "dropping failed")
		return
	}
	if sel.ID != "" && n == 0 && inFlight == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no message "+sel.ID+" in the queue")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"dropped": n, "dropped_after_attempt": inFlight})
}

func (srv *Server) emitDropped(m *queue.Message, why string) {
	now := srv.clk.Now()
	for _, r := range m.Rcpts {
		if r.State.Done() {
			continue
		}
		srv.bus.Emit(events.Event{Time: now, Type: events.Dropped, ID: m.ID, MessageID: m.MessageID, Account: m.Account,
			From: m.From, Recipient: r.Addr, Detail: why, Tags: m.Tags, Metadata: m.Metadata})
		srv.metrics.outcomes.WithLabelValues(events.Dropped, "").Inc()
	}
}

// eachIdle applies fn to every message matching f that the scheduler does
// not hold. While fn runs on a message, the scheduler will not take it. For a
// message in hand, onActive (if given) runs on the scheduler goroutine.
func (srv *Server) eachIdle(ctx context.Context, f queue.Filter, fn func(*queue.Message, time.Time) (bool, error), onActive ...func(*entry)) (int, error) {
	var matched []*queue.Message
	now := srv.clk.Now()
	err := srv.store.Walk("", func(m *queue.Message) bool {
		if f.Match(m, now) {
			matched = append(matched, m)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for start := 0; start < len(matched); start += 500 {
		chunk := matched[start:min(start+500, len(matched))]
		idle := make([]*queue.Message, 0, len(chunk))
		if err := srv.sched.do(ctx, func() {
			for _, m := range chunk {
				if e := srv.sched.active[m.ID]; e != nil {
					for _, f := range onActive {
						f(e)
					}
					continue
				}
				srv.sched.busy[m.ID] = true
				idle = append(idle, m)
			}
		}); err != nil {
			return n, err
		}
		var ferr error
		for _, m := range idle {
			ok, err := fn(m, now)
			if err != nil {
				ferr = err
				break
			}
			if ok {
				n++
			}
		}
		srv.sched.do(context.Background(), func() {
			for _, m := range idle {
				delete(srv.sched.busy, m.ID)
			}
		})
		if ferr != nil {
			return n, ferr
		}
	}
	return n, nil
}
