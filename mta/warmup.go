package mta

import (
	"container/heap"
	"net/netip"
	"sort"
	"strings"
	"time"

	"kiln/configs"
	"kiln/events"
	"kiln/policy"
	"kiln/queue"
	"kiln/warmup"
)

// Warm-up in the scheduler.
//
// A job for a domain whose mail leaves through egress addresses (a [[pool]],
// by default every [[egress]]) asks the warm-up controller for one
// reservation per recipient. Granted recipients go to the chosen egress's
// connections to the destination. The others wait in their lane (pool x
// warm-up site) in the queue's lane index, out of the schedule, and the lane
// wakes when the controller said capacity returns; it then takes the oldest,
// highest-priority waiting messages one by one while reservations are
// granted. Waiting for warm-up capacity is added to a message's lifetime, so
// no message expires only because it waited its turn.
//
// Routes to a smarthost bypass warm-up (providers see the smarthost's
// address, not kiln's), and so does everything when no [[egress]] is
// configured: kiln then sends from the system's default address, shaped per
// provider but without caps.

// defaultPool is the implicit pool of every egress, used by accounts that
// name none.
const defaultPool = "default"

// warmConfig returns the warm-up config kiln runs: the user's, plus the
// implicit default pool when there are egresses and no pool of that name.
func warmConfig(cfg *configs.Config) warmup.Config {
	wc := cfg.Config
	if len(wc.Egress) == 0 {
		return wc
	}
	for _, p := range wc.Pool {
		if p.Name == defaultPool {
			return wc
		}
	}
	all := warmup.Pool{Name: defaultPool}
	for _, e := range wc.Egress {
		all.Egress = append(all.Egress, warmup.PoolMember{Name: e.Name, Weight: 1})
	}
	wc.Pool = append(append([]warmup.Pool(nil), wc.Pool...), all)
	return wc
}

// egressesOf turns [[egress]] entries into the dialer's view of them.
func egressesOf(cfg *configs.Config) map[string]*Egress {
	out := map[string]*Egress{}
	for _, e := range cfg.Egress {
		ehlo := e.EHLO
		if ehlo == "" {
			ehlo = cfg.Hostname
		}
		src, _ := netip.ParseAddr(e.Source)
		out[e.Name] = &Egress{Name: e.Name, Source: src, EHLO: ehlo}
	}
	return out
}

// onWarmupEvent logs a warm-up state change and emits it as an event.
func (srv *Server) onWarmupEvent(ev warmup.Event) {
	srv.log.Info("warm-up change", "egress", ev.Egress, "site", ev.Site, "from", ev.From, "to", ev.To,
		"day", ev.Day, "cap", ev.Cap, "cause", ev.Cause, "signal", ev.Signal)
	detail := string(ev.From) + " -> " + string(ev.To) + " (" + ev.Cause
	if ev.Signal != warmup.SignalNone {
		detail += ", signal " + ev.Signal.String()
	}
	detail += ")"
	srv.bus.Emit(events.Event{Time: ev.Time, Type: events.Warmup, Egress: ev.Egress, Site: ev.Site, Reason: ev.Cause, Detail: detail})
}

// lane is one (pool, warm-up site) queue of recipients waiting for capacity.
type lane struct {
	key     string // "pool|site": the name of its wait index
	pool    string
	site    string
	wakeAt  time.Time // when the controller said capacity returns; zero: not blocked
	waiting bool      // recipients wait in the index
	hidx    int       // position in the wake heap, -1 when not in it
	// cursor is the last message taken from the lane's index: the next
	// read starts after it.
	cursor queue.LaneCursor
}

func laneKey(pool, site string) string { return pool + "|" + site }

func (s *scheduler) laneFor(pool, site string) *lane {
	k := laneKey(pool, site)
	ln := s.lanes[k]
	if ln == nil {
		ln = &lane{key: k, pool: pool, site: site, hidx: -1}
		s.lanes[k] = ln
	}
	return ln
}

// laneHeap orders lanes by wake time.
type laneHeap []*lane

func (h laneHeap) Len() int           { return len(h) }
func (h laneHeap) Less(i, j int) bool { return h[i].wakeAt.Before(h[j].wakeAt) }
func (h laneHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].hidx = i; h[j].hidx = j }
func (h *laneHeap) Push(x any)        { ln := x.(*lane); ln.hidx = len(*h); *h = append(*h, ln) }
func (h *laneHeap) Pop() any {
	old := *h
	ln := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	ln.hidx = -1
	return ln
}

// wakeLaneAt schedules the lane to be looked at again at t.
func (s *scheduler) wakeLaneAt(ln *lane, t time.Time) {
	ln.wakeAt = t
	if ln.hidx >= 0 {
		heap.Fix(&s.laneWake, ln.hidx)
	} else {
		heap.Push(&s.laneWake, ln)
	}
}

// restoreLanes finds, at start, the lanes that have recipients waiting.
func (s *scheduler) restoreLanes() {
	keys, err := s.store.Lanes()
	if err != nil {
		s.log.Error("reading the warm-up lanes failed", "err", err)
		return
	}
	now := s.clk.Now()
	for _, k := range keys {
		pool, site, ok := strings.Cut(k, "|")
		if !ok {
			continue
		}
		ln := s.laneFor(pool, site)
		ln.waiting = true
		s.wakeLaneAt(ln, now)
	}
}

// wakeLanes takes waiting messages from every lane whose time has come.
func (s *scheduler) wakeLanes(now time.Time) {
	for len(s.laneWake) > 0 && !s.laneWake[0].wakeAt.After(now) && !s.stopping {
		ln := heap.Pop(&s.laneWake).(*lane)
		ln.wakeAt = time.Time{}
		s.drainLane(ln, now)
	}
}

// drainLane takes the lane's waiting messages in order while the controller
// grants them capacity (and the scheduler has room). The first refusal sets
// the lane's next wake-up: nothing behind it is asked for, so waiting
// messages cost one index read per send, not one per scan.
func (s *scheduler) drainLane(ln *lane, now time.Time) {
	const budget = 64 // per wake-up, to keep the scheduler responsive
	const ahead = 16  // messages read per index read
	var batch []*queue.Message
	var keys []queue.LaneCursor
	fromHead := ln.cursor == nil
	skip := func(id string) bool { return s.active[id] != nil || s.busy[id] }
	for n := 0; ; n++ {
		if !ln.waiting {
			return
		}
		if n == budget || int(s.inHand.Load()) >= s.maxActive {
			s.wakeLaneAt(ln, now.Add(10*time.Millisecond))
			return
		}
		if len(batch) == 0 {
			var err error
			batch, keys, err = s.store.WaitingAfter(ln.key, ln.cursor, ahead, skip)
			if err != nil {
				s.log.Error("reading a warm-up lane failed", "lane", ln.key, "err", err)
				s.wakeLaneAt(ln, now.Add(time.Second))
				return
			}
			if len(batch) == 0 {
				if !fromHead {
					// Past the cursor there is nothing: look once more
					// from the head, for what the cursor stepped over.
					ln.cursor, fromHead = nil, true
					continue
				}
				ln.waiting = false
				return
			}
		}
		m, key := batch[0], keys[0]
		batch, keys = batch[1:], keys[1:]
		var idx []int
		for i := range m.Rcpts {
			if !m.Rcpts[i].State.Done() && m.Rcpts[i].Wait == ln.key {
				idx = append(idx, i)
			}
		}
		grants := make(map[int]warmup.Decision, len(idx))
		var refused *warmup.Decision
		for _, i := range idx {
			d := s.srv.warm.Reserve(ln.pool, ln.site, m.Priority, now)
			if !d.OK {
				refused = &d
				break
			}
			grants[i] = d
		}
		if refused != nil {
			for _, d := range grants {
				s.srv.warm.Release(d, now)
			}
			s.wakeLaneAt(ln, refused.RetryAt)
			return
		}
		ln.cursor = key
		// Granted: the message comes into hand with these recipients out of
		// the lane and due now. The time they waited for capacity is added
		// to the message's lifetime: it never expires only for waiting its
		// turn.
		s.inHand.Add(1)
		m.Lock()
		var waited time.Duration
		for _, i := range idx {
			r := &m.Rcpts[i]
			if !r.WaitSince.IsZero() && now.Sub(r.WaitSince) > waited {
				waited = now.Sub(r.WaitSince)
			}
			r.Wait, r.WaitSince, r.Next = "", time.Time{}, time.Time{}
		}
		m.Waited += waited
		m.Leased = true
		m.Due = now.Add(leaseTTL)
		m.Unlock()
		leased := m
		s.srv.async("save lease", func() {
			if err := s.store.Save(leased); err != nil {
				s.log.Error("saving a lease failed", "err", err)
			}
		})
		e := &entry{m: m, grants: grants}
		s.active[m.ID] = e
		s.dispatch(e)
	}
}

// reserveJob asks for one reservation per recipient of the job. It returns the
// granted ones, and, when some were refused, the refusal.
func (s *scheduler) reserveJob(ln *lane, j *job, now time.Time) (granted map[int]warmup.Decision, refused *warmup.Decision) {
	granted = map[int]warmup.Decision{}
	prio := j.e.m.Priority
	for _, i := range j.rcpts {
		if d, ok := j.e.grants[i]; ok {
			granted[i] = d
			delete(j.e.grants, i)
			continue
		}
		d := s.srv.warm.Reserve(ln.pool, ln.site, prio, now)
		if !d.OK {
			return granted, &d
		}
		granted[i] = d
	}
	return granted, nil
}

// admitWarm routes a job through warm-up: granted recipients go out through
// their egress (one job per egress), the rest wait in the lane.
func (s *scheduler) admitWarm(cr cachedRoute, j *job) {
	now := s.clk.Now()
	pool := j.e.m.Pool
	if pool == "" {
		pool = defaultPool
	}
	ln := s.laneFor(pool, cr.site)
	var granted map[int]warmup.Decision
	var refused *warmup.Decision
	if !ln.wakeAt.IsZero() && now.Before(ln.wakeAt) && len(j.e.grants) == 0 {
		// The lane is blocked: do not ask, wait behind the others.
		refused = &warmup.Decision{RetryAt: ln.wakeAt, CapWait: true}
		granted = map[int]warmup.Decision{}
	} else {
		granted, refused = s.reserveJob(ln, j, now)
	}
	byEgress := map[string][]int{}
	var names []string
	for _, i := range j.rcpts {
		if d, ok := granted[i]; ok {
			if _, seen := byEgress[d.Egress]; !seen {
				names = append(names, d.Egress)
			}
			byEgress[d.Egress] = append(byEgress[d.Egress], i)
		}
	}
	sort.Strings(names)
	var rest []int
	for _, i := range j.rcpts {
		if _, ok := granted[i]; !ok {
			rest = append(rest, i)
		}
	}
	// The job becomes one job per egress plus, maybe, one waiting part.
	parts := len(names)
	if len(rest) > 0 {
		parts++
	}
	m := j.e.m
	m.Lock()
	j.e.jobs += parts - 1
	m.Unlock()
	for _, name := range names {
		eg := s.srv.egresses[name]
		if eg == nil {
			eg = s.srv.defaultEgress
		}
		sub := &job{e: j.e, domain: j.domain, rcpts: byEgress[name], egress: eg, wsite: cr.site}
		for _, i := range sub.rcpts {
			sub.grants = append(sub.grants, granted[i])
		}
		s.toSite(cr.dest, sub)
	}
	if len(rest) > 0 {
		ln.waiting = true
		if ln.cursor.Before(ln.key, j.e.m.Priority, j.e.m.Created, j.e.m.ID) {
			ln.cursor = nil // it sorts before where the lane has got to
		}
		if ln.wakeAt.IsZero() || refused.RetryAt.After(ln.wakeAt) {
			s.wakeLaneAt(ln, refused.RetryAt)
		}
		w := &job{e: j.e, domain: j.domain, rcpts: rest, wsite: cr.site}
		retryAt := refused.RetryAt
		s.srv.async("wait for capacity", func() { s.srv.parkJob(w, ln.key, retryAt) })
	}
}

// parkJob puts a job's recipients in their lane's wait index; the lane
// credits the time they spend there when it takes them (drainLane).
func (srv *Server) parkJob(j *job, laneKey string, retryAt time.Time) {
	e, m := j.e, j.e.m
	now := srv.clk.Now()
	m.Lock()
	for _, i := range j.rcpts {
		r := &m.Rcpts[i]
		r.Wait, r.Next = laneKey, retryAt
		if r.WaitSince.IsZero() {
			r.WaitSince = now
		}
	}
	e.jobs--
	final := e.jobs <= 0
	var due time.Time
	del := false
	var failed []int
	var lanes []string
	if final {
		failed, e.failed = e.failed, nil
		del = srv.closeRound(e, now)
		if !del && !m.Held {
			due, lanes = m.Due, waitingLanes(m)
		}
	}
	m.Unlock()
	var err error
	if del {
		err = srv.store.Delete(m)
	} else {
		err = srv.store.Save(m)
	}
	if err != nil {
		srv.log.Error("parking recipients for capacity failed", "id", m.ID, "err", err)
	}
	if final && len(failed) > 0 && !e.dropped {
		srv.sendNotice(m, failed)
	}
	srv.sched.report(&jobResult{job: j, final: final, due: due, lanes: lanes})
}

// observe tells the warm-up controller what a reply said about the egress.
func (srv *Server) observe(j *job, d policy.Decision, now time.Time) {
	if srv.warm == nil || j.egress == nil || j.wsite == "" || j.egress == srv.defaultEgress {
		return
	}
	var sig warmup.Signal
	switch {
	case d.Action == policy.ActionDelivered:
		sig = warmup.SignalDelivered
	case d.Signal != policy.SignalNone:
		sig, _ = warmup.ParseSignal(string(d.Signal))
	case d.Action == policy.ActionRetry:
		sig = warmup.SignalDeferral
	default:
		return
	}
	srv.warm.Observe(j.egress.Name, j.wsite, sig, now)
}

// releaseGrants gives back the reservations of a job that was never offered
// to the remote (the connection failed first, or kiln is stopping).
func (srv *Server) releaseGrants(j *job) {
	if srv.warm == nil {
		return
	}
	now := srv.clk.Now()
	for _, d := range j.grants {
		srv.warm.Release(d, now)
	}
	j.grants = nil
}

var _ = queue.RcptPending
