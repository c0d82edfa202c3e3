package dashboard

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kiln/events"
	"kiln/events/store"
	"kiln/queue"
	"kiln/warmup"
)

// The fakes below stand in for kiln's stores. Each is safe for concurrent
// use, and the tests change them while pages are open.

var t0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

type fakeWarmup struct {
	mu sync.Mutex
	st warmup.Status
	pv map[string]warmup.PlanView
}

func (f *fakeWarmup) Status(now time.Time) warmup.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Time = now
	st.Egress = slices.Clone(st.Egress)
	for i := range st.Egress {
		st.Egress[i].Sites = slices.Clone(st.Egress[i].Sites)
	}
	return st
}

func (f *fakeWarmup) Plan(egress string, now time.Time) (warmup.PlanView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pv, ok := f.pv[egress]
	if !ok {
		return warmup.PlanView{}, fmt.Errorf("no egress %q", egress)
	}
	return pv, nil
}

// setSent changes today's sent count of (egress, site).
func (f *fakeWarmup) setSent(egress, site string, sent int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.st.Egress {
		for j := range f.st.Egress[i].Sites {
			s := &f.st.Egress[i].Sites[j]
			if f.st.Egress[i].Name == egress && s.Site == site {
				s.Sent = sent
				if s.Cap >= 0 {
					s.Left = s.Cap - sent
				}
			}
		}
	}
}

func newFakeWarmup() *fakeWarmup {
	site := func(name, prov string, state warmup.State, day, cap, sent int) warmup.SiteStatus {
		return warmup.SiteStatus{Site: name, Provider: prov, State: state, Day: day, PlanDays: 42, Cap: cap, Sent: sent,
			Left: cap - sent, Hourly: cap / 12, Delivered: sent - 3, Deferred: 2, RateLimited: 1,
			LastSignal: warmup.SignalRate, LastSignalAt: t0.Add(-20 * time.Minute), Cause: "rate-hold", CauseAt: t0.Add(-20 * time.Minute)}
	}
	f := &fakeWarmup{
		st: warmup.Status{Date: "2025-03-10", Timezone: "UTC", Window: "08:00-20:00", Days: "calendar", Egress: []warmup.EgressStatus{
			{Name: "ip1", Source: "192.0.2.10", Plan: "default", Start: "2025-03-06", Day: 5, Sites: []warmup.SiteStatus{
				site("google", "google", warmup.StateHeld, 5, 400, 180),
				site("yahoo", "yahoo", warmup.StateRamping, 5, 400, 90),
			}},
			{Name: "ip2", Source: "192.0.2.11", Warm: true, Sites: []warmup.SiteStatus{
				{Site: "microsoft", Provider: "microsoft", State: warmup.StateWarm, Cap: -1, Left: -1, Hourly: -1, Sent: 5000},
			}},
		}},
		pv: map[string]warmup.PlanView{},
	}
	var days []warmup.PlanDay
	for d := range 10 {
		days = append(days, warmup.PlanDay{Day: 5 + d, Date: t0.AddDate(0, 0, d).Format("2006-01-02"), Cap: 400 * (d + 1)})
	}
	f.pv["ip1"] = warmup.PlanView{Egress: "ip1", Sites: []warmup.SitePlan{{Site: "google", Days: days}, {Site: "yahoo", Days: days}}}
	f.pv["ip2"] = warmup.PlanView{Egress: "ip2", Warm: true}
	return f
}

type fakeEvents struct {
	mu  sync.Mutex
	evs []events.Event // oldest first
}

func (f *fakeEvents) add(e events.Event) {
	f.mu.Lock()
	f.evs = append(f.evs, e)
	f.mu.Unlock()
}

func (f *fakeEvents) ByMessage(ctx context.Context, id string) ([]events.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []events.Event
	for _, e := range f.evs {
		if e.ID == id {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *fakeEvents) Query(ctx context.Context, q store.Query) ([]events.Event, string, error) {
	if q.Cursor != "" {
		return nil, "", store.ErrBadCursor
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []events.Event
	for i := len(f.evs) - 1; i >= 0; i-- {
		e := f.evs[i]
		if q.Recipient != "" && !strings.EqualFold(e.Recipient, q.Recipient) {
			continue
		}
		if q.MessageID != "" && e.MessageID != q.MessageID {
			continue
		}
		out = append(out, e)
	}
	return out, "", nil
}

type fakeQueue struct {
	mu     sync.Mutex
	msgs   map[string]*queue.Message
	total  int
	held   int
	lanes  map[string]int
	counts atomic.Int64 // calls of Count
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{msgs: map[string]*queue.Message{}, total: 1_000_000, held: 12,
		lanes: map[string]int{"default|google": 5200, "default|yahoo": 1300, "bulk|google": 800, "default|mx:mx1.example.net": 40}}
}

func (f *fakeQueue) Get(id string) (*queue.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.msgs[id]
	if m == nil {
		return nil, queue.ErrNotFound
	}
	return m.Clone(), nil
}

func (f *fakeQueue) Count() (int, int, error) {
	f.counts.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.total, f.held, nil
}

func (f *fakeQueue) Lanes() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for l := range f.lanes {
		out = append(out, l)
	}
	slices.Sort(out)
	return out, nil
}

func (f *fakeQueue) CountWaiting(lane string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lanes[lane]
}

func (f *fakeQueue) setLane(lane string, n int) {
	f.mu.Lock()
	f.lanes[lane] = n
	f.mu.Unlock()
}

type fakeSuppressions struct {
	mu      sync.Mutex
	list    []Suppression
	removed []string
}

func (f *fakeSuppressions) Search(ctx context.Context, q SuppressionQuery) ([]Suppression, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Suppression
	for _, s := range f.list {
		if q.Account != "" && s.Account != q.Account && s.Account != "" {
			continue
		}
		if q.Text != "" && !strings.HasPrefix(s.Address, q.Text) && !strings.HasSuffix(s.Address, q.Text) {
			continue
		}
		out = append(out, s)
	}
	if q.Limit > 0 && len(out) > q.Limit {
		return out[:q.Limit], "more", nil
	}
	return out, "", nil
}

func (f *fakeSuppressions) Remove(ctx context.Context, account, address string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, s := range f.list {
		if s.Account == account && s.Address == address {
			f.list = slices.Delete(f.list, i, i+1)
			f.removed = append(f.removed, account+"/"+address)
			return true, nil
		}
	}
	return false, nil
}

func newFakeSuppressions() *fakeSuppressions {
	return &fakeSuppressions{list: []Suppression{
		{Account: "shop", Address: "gone@gmail.example", Reason: "userunknown", Source: "reply", Rule: "hard.5.1.1",
			Reply: "550 5.1.1 no such user", QueueID: "0f8zq3x1k2m4n5p7", Created: t0.Add(-48 * time.Hour)},
		{Address: "angry@yahoo.example", Reason: "feedback", Source: "complaint", Created: t0.Add(-3 * time.Hour)},
		{Account: "news", Address: "full@outlook.example", Reason: "mailboxfull", Source: "soft-repeated", Created: t0.Add(-time.Hour), Expires: t0.Add(29 * 24 * time.Hour)},
	}}
}
