package httpapi

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"kiln/events"
	"kiln/events/store"
	"kiln/queue"
)

// MessageStatus answers GET /api/v1/messages/{id}.
type MessageStatus struct {
	ID        string `json:"id"`
	MessageID string `json:"message_id,omitempty"`
	Account   string `json:"account,omitempty"`
	From      string `json:"from"`
	// State is the message's as a whole. In the queue: queued (waiting for
	// its first attempt), deferred (retrying), held, sending. Out of it:
	// delivered, bounced, expired or dropped when every recipient ended the
	// same way, mixed when they did not, unknown when the history does not
	// say (events are kept for [events] retention).
	State string `json:"state"`
	// Queued says the message is still in the queue.
	Queued      bool              `json:"queued"`
	Created     *time.Time        `json:"created,omitempty"`
	NextAttempt *time.Time        `json:"next_attempt,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Recipients  []RecipientStatus `json:"recipients"`
	// Events are the message's history, oldest first.
	Events []events.Event `json:"events"`
}

// RecipientStatus is where one recipient of a message stands.
type RecipientStatus struct {
	Address string `json:"address"`
	// State: pending (not tried yet), deferred (failed for now, retried at
	// next_attempt), delivered, bounced, expired, dropped.
	State       string     `json:"state"`
	Attempts    int        `json:"attempts,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	// The last reply, in the remote's words, and what kiln made of it.
	Code       int        `json:"code,omitempty"`
	Enhanced   string     `json:"enhanced,omitempty"`
	Reply      string     `json:"reply,omitempty"`
	RemoteHost string     `json:"remote_host,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Rule       string     `json:"rule,omitempty"`
	Updated    *time.Time `json:"updated,omitempty"`
}

// message is GET /api/v1/messages/{id}. A message of another account is
// answered exactly like one that does not exist, so ids cannot be probed.
func (a *API) message(w http.ResponseWriter, r *http.Request, p Principal) {
	id := r.PathValue("id")
	notFound := func() {
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no message " + strconv.Quote(clip(id, 130))})
	}
	if !queue.ValidID(id) {
		notFound()
		return
	}
	m, err := a.d.Queue.Get(id)
	if err != nil && !errors.Is(err, queue.ErrNotFound) {
		a.log.Error("api: reading a queued message failed", "id", id, "err", err)
		writeError(w, http.StatusInternalServerError, apiError{Code: "store", Message: "reading the message failed"})
		return
	}
	var evs []events.Event
	if a.d.Events != nil {
		if evs, err = a.d.Events.ByMessage(r.Context(), id); err != nil {
			a.log.Error("api: reading a message's events failed", "id", id, "err", err)
			writeError(w, http.StatusInternalServerError, apiError{Code: "store", Message: "reading the message's events failed"})
			return
		}
	}
	if evs == nil {
		evs = []events.Event{}
	}
	var st MessageStatus
	switch {
	case m != nil:
		if !p.Admin && m.Account != p.Account {
			notFound()
			return
		}
		st = fromQueue(m, a.clk.Now())
	case len(evs) > 0:
		st = fromEvents(id, evs)
	default:
		notFound()
		return
	}
	if !p.Admin {
		if st.Account != p.Account {
			notFound()
			return
		}
		for _, e := range evs {
			if e.Account != p.Account {
				notFound()
				return
			}
		}
	}
	st.Events = evs
	writeJSON(w, http.StatusOK, st)
}

func fromQueue(m *queue.Message, now time.Time) MessageStatus {
	created := m.Created
	st := MessageStatus{ID: m.ID, MessageID: m.MessageID, Account: m.Account, From: m.From, Queued: true,
		Created: &created, Tags: m.Tags, Metadata: m.Metadata, Recipients: []RecipientStatus{}}
	tried := false
	for _, rc := range m.Rcpts {
		rs := RecipientStatus{Address: rc.Addr, State: string(rc.State), Attempts: rc.Attempts, Code: rc.Code,
			Enhanced: rc.Enhanced, Reply: rc.Line, RemoteHost: rc.Host, Reason: rc.Reason, Rule: rc.Rule}
		if !rc.Updated.IsZero() {
			u := rc.Updated
			rs.Updated = &u
		}
		if !rc.State.Done() {
			rs.State = "pending"
			if rc.Attempts > 0 {
				rs.State, tried = "deferred", true
			}
			if rc.Next.After(now) {
				n := rc.Next
				rs.NextAttempt = &n
			}
		}
		st.Recipients = append(st.Recipients, rs)
	}
	switch {
	case m.Done():
		st.State = overall(st.Recipients)
	case m.Held:
		st.State = "held"
	case m.Leased:
		st.State = "sending"
	case tried:
		st.State = "deferred"
	default:
		st.State = "queued"
	}
	if !m.Done() && !m.Held && !m.Leased && m.Due.After(now) {
		d := m.Due
		st.NextAttempt = &d
	}
	return st
}

// fromEvents reads a message's state off its history: the last event of
// each recipient says where it stands.
func fromEvents(id string, evs []events.Event) MessageStatus {
	st := MessageStatus{ID: id, State: "unknown", Recipients: []RecipientStatus{}}
	index := map[string]int{}
	for _, e := range evs {
		if st.Account == "" {
			st.Account = e.Account
		}
		if st.MessageID == "" {
			st.MessageID = e.MessageID
		}
		if st.From == "" {
			st.From = e.From
		}
		if e.Type == events.Received {
			t := e.Time
			st.Created, st.Tags, st.Metadata = &t, e.Tags, e.Metadata
			continue
		}
		var state string
		switch e.Type {
		case events.Delivered, events.Bounced, events.Expired, events.Dropped:
			state = e.Type
		case events.Deferred:
			state = "deferred"
		default:
			continue
		}
		if e.Recipient == "" {
			continue
		}
		k := strings.ToLower(e.Recipient)
		i, ok := index[k]
		if !ok {
			i = len(st.Recipients)
			index[k] = i
			st.Recipients = append(st.Recipients, RecipientStatus{Address: e.Recipient})
		}
		t := e.Time
		rs := &st.Recipients[i]
		rs.State, rs.Code, rs.Enhanced, rs.Reply, rs.RemoteHost, rs.Reason, rs.Rule, rs.Updated =
			state, e.Code, e.Enhanced, e.Reply, e.RemoteHost, e.Reason, e.Rule, &t
		rs.Attempts = max(rs.Attempts, e.Attempt)
		rs.NextAttempt = nil
		if state == "deferred" {
			rs.NextAttempt = e.Next
		}
	}
	if len(st.Recipients) > 0 {
		st.State = overall(st.Recipients)
	}
	return st
}

// overall is a finished message's state from its recipients'.
func overall(rs []RecipientStatus) string {
	state := ""
	for _, r := range rs {
		switch r.State {
		case "delivered", "bounced", "expired", "dropped":
		default:
			return "unknown"
		}
		if state == "" {
			state = r.State
		} else if state != r.State {
			state = "mixed"
		}
	}
	if state == "" {
		return "unknown"
	}
	return state
}

// EventTypes are the types GET /api/v1/events filters by.
var EventTypes = []string{events.Received, events.Delivered, events.Deferred, events.Bounced, events.Expired,
	events.Dropped, events.Held, events.Suppressed, events.Complaint, events.Unsubscribe, events.Warmup}

var eventParams = []string{"type", "recipient", "id", "message_id", "account", "since", "until", "cursor", "limit"}

// events is GET /api/v1/events: newest first, a page at a time.
func (a *API) events(w http.ResponseWriter, r *http.Request, p Principal) {
	if a.d.Events == nil {
		writeError(w, http.StatusServiceUnavailable, apiError{Code: "unavailable", Message: "the event store is not running"})
		return
	}
	q, e := eventQuery(r, p)
	if e != nil {
		status := http.StatusBadRequest
		if e.Code == "forbidden" {
			status = http.StatusForbidden
		}
		writeError(w, status, *e)
		return
	}
	evs, next, err := a.d.Events.Query(r.Context(), q)
	if errors.Is(err, store.ErrBadCursor) {
		writeError(w, http.StatusBadRequest, badField("cursor", "not a cursor this query gave"))
		return
	}
	if err != nil {
		a.log.Error("api: event query failed", "err", err)
		writeError(w, http.StatusInternalServerError, apiError{Code: "store", Message: "the event query failed"})
		return
	}
	if evs == nil {
		evs = []events.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": next})
}

func eventQuery(r *http.Request, p Principal) (store.Query, *apiError) {
	v := r.URL.Query()
	fail := func(e apiError) (store.Query, *apiError) { return store.Query{}, &e }
	for k := range v {
		if !slices.Contains(eventParams, k) {
			return fail(apiError{Code: "unknown_field", Field: k, Message: "unknown parameter " + strconv.Quote(k) +
				" (known: " + strings.Join(eventParams, ", ") + ")"})
		}
	}
	q := store.Query{Recipient: v.Get("recipient"), ID: v.Get("id"), MessageID: v.Get("message_id"), Cursor: v.Get("cursor")}
	for _, t := range v["type"] {
		for _, t := range strings.Split(t, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !slices.Contains(EventTypes, t) {
				return fail(badField("type", strconv.Quote(t)+" is not an event type ("+strings.Join(EventTypes, ", ")+")"))
			}
			q.Types = append(q.Types, t)
		}
	}
	if v.Has("account") {
		q.Account = v.Get("account")
		if !p.Admin && q.Account != p.Account {
			return fail(apiError{Code: "forbidden", Field: "account", Message: "an account key sees only its own account's events"})
		}
	}
	if !p.Admin {
		q.Account = p.Account
	}
	for _, f := range []struct {
		name string
		t    *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fail(badField(f.name, "must be an RFC 3339 time, like 2025-03-01T00:00:00Z"))
		}
		*f.t = t
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return fail(badField("until", "must be after since"))
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxLimit {
			return fail(badField("limit", "must be an integer from 1 to "+strconv.Itoa(store.MaxLimit)))
		}
		q.Limit = n
	}
	return q, nil
}
