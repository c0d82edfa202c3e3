package dashboard

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"kiln/events"
	"kiln/events/stats"
	"kiln/events/store"
	"kiln/queue"
	"kiln/warmup"
)

// ranges are the overview's time ranges.
var ranges = map[string]time.Duration{
	"1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour, "48h": 48 * time.Hour,
	"7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour,
}

// chartTypes are drawn on the overview; countTypes are summed.
var (
	chartTypes = []string{events.Delivered, events.Deferred, events.Bounced}
	countTypes = []string{events.Received, events.Delivered, events.Deferred, events.Bounced, events.Expired,
		events.Dropped, events.Held, events.Suppressed, events.Complaint, events.Unsubscribe}
)

// Overview is the overview page's data.
type Overview struct {
	Now    time.Time         `json:"now"`
	Range  string            `json:"range"`
	Since  time.Time         `json:"since"`
	Series []stats.Series    `json:"series"`
	Totals map[string]uint64 `json:"totals"`
	// ComplaintRate is complaints over deliveries in the range (Gmail's
	// bulk-sender limit is 0.003).
	ComplaintRate   float64        `json:"complaint_rate"`
	BounceReasons   []stats.Count  `json:"bounce_reasons"`
	DeferralReasons []stats.Count  `json:"deferral_reasons"`
	Sites           []stats.Count  `json:"sites"` // deliveries by site
	Queue           *QueueSnapshot `json:"queue"`
}

func (h *Handler) apiOverview(w http.ResponseWriter, r *http.Request) {
	if h.src.Stats == nil {
		unavailable(w, "statistics")
		return
	}
	rng := r.URL.Query().Get("range")
	if rng == "" {
		rng = "6h"
	}
	d, ok := ranges[rng]
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "range must be one of 1h, 6h, 24h, 48h, 7d, 30d")
		return
	}
	now := h.clk.Now()
	out := Overview{Now: now, Range: rng, Since: now.Add(-d), Totals: map[string]uint64{}}
	q := stats.Query{Since: out.Since, Until: now}
	for _, typ := range chartTypes {
		q.Type = typ
		s, err := h.src.Stats.Series(q)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "stats", err.Error())
			return
		}
		out.Series = append(out.Series, s)
	}
	for _, typ := range countTypes {
		q.Type = typ
		out.Totals[typ], _ = h.src.Stats.Sum(q)
	}
	if n := out.Totals[events.Delivered]; n > 0 {
		out.ComplaintRate = float64(out.Totals[events.Complaint]) / float64(n)
	}
	top := func(typ string, by stats.Dim) []stats.Count {
		c, err := h.src.Stats.Top(stats.Query{Type: typ, By: by, Since: out.Since, Until: now}, 10)
		if err != nil || c == nil {
			return []stats.Count{}
		}
		return c
	}
	out.BounceReasons = top(events.Bounced, stats.ByReason)
	out.DeferralReasons = top(events.Deferred, stats.ByReason)
	out.Sites = top(events.Delivered, stats.BySite)
	snap := *h.queue.get()
	snap.Now = now
	out.Queue = &snap
	writeJSON(w, http.StatusOK, out)
}

// apiSeries serves one series: type, by, value, since and until (RFC 3339;
// or range, a Go duration back from now), step (a Go duration).
func (h *Handler) apiSeries(w http.ResponseWriter, r *http.Request) {
	if h.src.Stats == nil {
		unavailable(w, "statistics")
		return
	}
	p := r.URL.Query()
	q := stats.Query{Type: p.Get("type"), By: stats.Dim(p.Get("by")), Value: p.Get("value")}
	var err error
	parseTime := func(name string) time.Time {
		s := p.Get(name)
		if s == "" || err != nil {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339, s)
		if perr != nil {
			err = errors.New(name + " must be an RFC 3339 time")
		}
		return t
	}
	q.Since, q.Until = parseTime("since"), parseTime("until")
	if s := p.Get("range"); s != "" && err == nil {
		d, perr := time.ParseDuration(s)
		if perr != nil || d <= 0 {
			err = errors.New("range must be a positive duration such as 24h")
		} else {
			q.Until = h.clk.Now()
			q.Since = q.Until.Add(-d)
		}
	}
	if s := p.Get("step"); s != "" && err == nil {
		if q.Step, err = time.ParseDuration(s); err != nil {
			err = errors.New("step must be a duration such as 5m")
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	s, err := h.src.Stats.Series(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *Handler) apiQueues(w http.ResponseWriter, r *http.Request) {
	snap := *h.queue.get()
	snap.Now = h.clk.Now()
	writeJSON(w, http.StatusOK, snap)
}

// DayPoint is one day of a warm-up chart.
type DayPoint struct {
	Date    string `json:"date"`
	Cap     int    `json:"cap"` // -1: none
	Sent    int    `json:"sent"`
	Today   bool   `json:"today,omitempty"`
	Planned bool   `json:"planned,omitempty"` // a future day of the plan
}

// SiteView is one (egress, site): its live status and its days.
type SiteView struct {
	warmup.SiteStatus
	Days []DayPoint `json:"days"`
}

// EgressView is one egress with its sites.
type EgressView struct {
	warmup.EgressStatus
	Sites []SiteView `json:"sites"`
}

// WarmupView is the warm-up page's data.
type WarmupView struct {
	Time     time.Time    `json:"time"`
	Date     string       `json:"date"`
	Timezone string       `json:"timezone"`
	Window   string       `json:"window"`
	Days     string       `json:"days"`
	Error    string       `json:"error,omitempty"`
	Egress   []EgressView `json:"egress"`
}

// Days of history and of plan a warm-up chart shows.
const (
	pastDays   = 30
	futureDays = 14
)

func (h *Handler) apiWarmup(w http.ResponseWriter, r *http.Request) {
	if h.src.Warmup == nil {
		unavailable(w, "warm-up")
		return
	}
	now := h.clk.Now()
	st := h.src.Warmup.Status(now)
	out := WarmupView{Time: st.Time, Date: st.Date, Timezone: st.Timezone, Window: st.Window, Days: st.Days, Error: st.Error,
		Egress: []EgressView{}}
	for _, e := range st.Egress {
		ev := EgressView{EgressStatus: e, Sites: []SiteView{}}
		ev.EgressStatus.Sites = nil
		hist := map[string][]stats.Day{}
		if h.src.Stats != nil {
			for _, wh := range h.src.Stats.Warmup(e.Name) {
				hist[wh.Site] = wh.Days
			}
		}
		plan := map[string][]warmup.PlanDay{}
		if pv, err := h.src.Warmup.Plan(e.Name, now); err == nil {
			for _, sp := range pv.Sites {
				plan[sp.Site] = sp.Days
			}
		}
		for _, s := range e.Sites {
			sv := SiteView{SiteStatus: s, Days: []DayPoint{}}
			past := hist[s.Site]
			for _, d := range past[max(0, len(past)-pastDays):] {
				if d.Date < st.Date {
					sv.Days = append(sv.Days, DayPoint{Date: d.Date, Cap: d.Cap, Sent: d.Sent})
				}
			}
			sv.Days = append(sv.Days, DayPoint{Date: st.Date, Cap: s.Cap, Sent: s.Sent, Today: true})
			n := 0
			for _, d := range plan[s.Site] {
				if d.Date > st.Date && n < futureDays {
					sv.Days = append(sv.Days, DayPoint{Date: d.Date, Cap: d.Cap, Planned: true})
					n++
				}
			}
			ev.Sites = append(ev.Sites, sv)
		}
		out.Egress = append(out.Egress, ev)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) apiSuppressions(w http.ResponseWriter, r *http.Request) {
	if h.src.Suppressions == nil {
		unavailable(w, "the suppression list")
		return
	}
	p := r.URL.Query()
	q := SuppressionQuery{Account: p.Get("account"), Global: p.Get("global") == "1", Text: strings.TrimSpace(p.Get("q")),
		Cursor: p.Get("cursor"), Limit: 50}
	if s := p.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be between 1 and 500")
			return
		}
		q.Limit = n
	}
	if len(q.Text) > 320 || len(q.Account) > 200 || strings.ContainsAny(q.Text+q.Account, "\r\n\x00") {
		writeError(w, http.StatusBadRequest, "bad_request", "q or account is not a valid search")
		return
	}
	list, next, err := h.src.Suppressions.Search(r.Context(), q)
	if err != nil {
		h.log.Error("searching the suppression list failed", "err", err)
		writeError(w, http.StatusInternalServerError, "suppressions", "searching the suppression list failed")
		return
	}
	if list == nil {
		list = []Suppression{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"suppressions": list, "next": next})
}

func (h *Handler) apiRemoveSuppression(w http.ResponseWriter, r *http.Request) {
	if h.src.Suppressions == nil {
		unavailable(w, "the suppression list")
		return
	}
	var req struct {
		Account string `json:"account"`
		Address string `json:"address"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Address == "" || len(req.Address) > 320 || !strings.Contains(req.Address, "@") || strings.ContainsAny(req.Address+req.Account, "\r\n\x00") {
		writeError(w, http.StatusBadRequest, "bad_request", "address must be an email address")
		return
	}
	removed, err := h.src.Suppressions.Remove(r.Context(), req.Account, req.Address)
	if err != nil {
		h.log.Error("removing a suppression failed", "err", err)
		writeError(w, http.StatusInternalServerError, "suppressions", "removing the suppression failed")
		return
	}
	if !removed {
		writeError(w, http.StatusNotFound, "not_found", "no such suppression")
		return
	}
	h.log.Info("suppression removed from the dashboard", "account", req.Account, "address", req.Address, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"removed": true})
}

// MessageView is a queued message as the lookup page shows it.
type MessageView struct {
	ID        string     `json:"id"`
	Account   string     `json:"account,omitempty"`
	From      string     `json:"from"`
	MessageID string     `json:"message_id,omitempty"`
	State     string     `json:"state"`
	Created   time.Time  `json:"created"`
	Expires   time.Time  `json:"expires"`
	Due       time.Time  `json:"due"`
	Attempts  int        `json:"attempts"`
	Size      int64      `json:"size"`
	Priority  int        `json:"priority,omitempty"`
	Rcpts     []RcptView `json:"recipients"`
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
	Wait     string     `json:"waiting_in,omitempty"`
}

func viewOf(m *queue.Message, now time.Time) *MessageView {
	v := &MessageView{ID: m.ID, Account: m.Account, From: m.From, MessageID: m.MessageID, Created: m.Created,
		Expires: m.Expires.Add(m.Waited), Due: m.Due, Attempts: m.Attempts, Size: m.Body.Len, Priority: m.Priority,
		Rcpts: []RcptView{}}
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
		rv := RcptView{Addr: r.Addr, State: string(r.State), Attempts: r.Attempts, Reply: r.Line, Host: r.Host, Reason: r.Reason, Wait: r.Wait}
		if !r.State.Done() && r.Next.After(now) {
			n := r.Next
			rv.Next = &n
		}
		v.Rcpts = append(v.Rcpts, rv)
	}
	return v
}

// apiMessages looks a message up by queue id (id), recipient or Message-ID
// header (message_id): the queued message if it is still queued, and its
// events from the event store's indexes.
func (h *Handler) apiMessages(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query()
	id, rcpt, msgID := strings.TrimSpace(p.Get("id")), strings.TrimSpace(p.Get("recipient")), strings.TrimSpace(p.Get("message_id"))
	out := struct {
		Message *MessageView   `json:"message"`
		Events  []events.Event `json:"events"`
		Next    string         `json:"next,omitempty"`
	}{Events: []events.Event{}}
	ctx := r.Context()
	switch {
	case id != "":
		if !queue.ValidID(id) {
			writeError(w, http.StatusBadRequest, "bad_request", "id is not a kiln queue id")
			return
		}
		if h.src.Queue != nil {
			m, err := h.src.Queue.Get(id)
			switch {
			case err == nil && m != nil:
				out.Message = viewOf(m, h.clk.Now())
			case err != nil && !errors.Is(err, queue.ErrNotFound):
				h.log.Error("reading a queued message failed", "id", id, "err", err)
			}
		}
		if h.src.Events != nil {
			evs, err := h.src.Events.ByMessage(ctx, id)
			if err != nil {
				writeError(w, http.StatusInternalServerError, "events", "reading the message's events failed")
				return
			}
			if evs != nil {
				out.Events = evs
			}
		}
		if out.Message == nil && len(out.Events) == 0 {
			writeError(w, http.StatusNotFound, "not_found", "no message "+id+" in the queue or the event store")
			return
		}
	case rcpt != "" || msgID != "":
		if h.src.Events == nil {
			unavailable(w, "the event store")
			return
		}
		if len(rcpt) > 320 || len(msgID) > 1000 {
			writeError(w, http.StatusBadRequest, "bad_request", "recipient or message_id is too long")
			return
		}
		evs, next, err := h.src.Events.Query(ctx, store.Query{Recipient: rcpt, MessageID: msgID, Cursor: p.Get("cursor"), Limit: 100})
		if errors.Is(err, store.ErrBadCursor) {
			writeError(w, http.StatusBadRequest, "bad_request", "cursor is not valid")
			return
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, "events", "querying the events failed")
			return
		}
		if evs != nil {
			out.Events = evs
		}
		out.Next = next
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "give id, recipient or message_id")
		return
	}
	writeJSON(w, http.StatusOK, out)
}
