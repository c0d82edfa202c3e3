package mta

import (
	"context"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"kiln/internal/clock"
	"kiln/policy"
	"kiln/queue"
	"kiln/warmup"
)

// leaseTTL is how far ahead a message's schedule key moves while the
// scheduler holds it. It only has to outlast an attempt; an attempt that runs
// longer is still protected because the scan skips messages in hand, and a
// crash turns every lease into "due now" at the next start.
const leaseTTL = time.Hour

// scheduler is the one goroutine that owns the messages in hand ("active"),
// the destinations ("sites") and their queues. Workers and lookups report to
// it over channels; it never waits on the disk or the network itself.
type scheduler struct {
	srv   *Server
	store *queue.Store
	clk   clock.Clock
	log   *slog.Logger

	maxActive int
	inHand    atomic.Int64 // active messages plus reservations

	incoming   chan *queue.Message
	done       chan struct{} // closed when run returns
	results    chan *jobResult
	routed     chan *routeResult
	workerDone chan *worker
	admin      chan func()
	pokeCh     chan struct{}

	// Owned by run.
	active     map[string]*entry
	sites      map[string]*site
	waiting    map[string][]*job // domain -> jobs waiting for a route
	routes     map[string]cachedRoute
	busy       map[string]bool // ids an operator action is changing: not to be taken
	lanes      map[string]*lane
	laneWake   laneHeap
	conns      int // outbound connections in total
	scanNeeded bool
	stopping   bool

	// Where scans start and when the next one is due. Every key written to
	// the index is due at or after the moment it is written, so a scan
	// that took everything due can start the next one near its own time:
	// seeking from the start of the index would wade through the keys of
	// every message handled since the last compaction. A full scan every
	// fullScanEvery catches anything written late.
	lowWater  time.Time
	lastFull  time.Time
	backlog   bool      // the last scan stopped for lack of room
	nextDue   time.Time // earliest due time known in the index; zero: none
	armedFor  time.Time
	wake      <-chan time.Time
	wakeTimer *time.Timer
}

const fullScanEvery = time.Minute

// entry is a message in hand.
type entry struct {
	m *queue.Message
	// jobs still running; changed under m.Lock by the scheduler (when it
	// dispatches) and by workers (when they finish).
	jobs int
	// failed lists recipients that failed for good during this round, for
	// the one notice sent when the round ends.
	failed  []int
	dropped bool // an operator dropped it while it was in flight
	// grants are warm-up reservations already made for recipients taken
	// from a lane, used by their jobs instead of asking again.
	grants map[int]warmup.Decision
}

type cachedRoute struct {
	dest    *Destination
	site    string // the warm-up site (provider or MX set); "" when warm-up does not apply
	fail    *policy.Reply
	expires time.Time
}

// job is one transaction to attempt: some recipients of one message, all in
// one domain.
type job struct {
	e      *entry
	domain string
	rcpts  []int
	site   *site
	// egress sends the job; wsite is its warm-up site and grants its
	// reservations (one per recipient), when warm-up applies.
	egress *Egress
	wsite  string
	grants []warmup.Decision
}

type jobResult struct {
	job      *job
	final    bool      // the message's round ended with this job
	due      time.Time // when final and not deleted or held: the message's next due time
	lanes    []string  // when final: the lanes its recipients still wait in
	siteDown *policy.Reply
}

type routeResult struct {
	domain string
	dest   *Destination
	site   string
	ttl    time.Duration
	fail   *policy.Reply
}

func newScheduler(srv *Server, maxActive int) *scheduler {
	return &scheduler{
		srv: srv, store: srv.store, clk: srv.clk, log: srv.log,
		maxActive:  maxActive,
		incoming:   make(chan *queue.Message, maxActive),
		done:       make(chan struct{}),
		results:    make(chan *jobResult, 1024),
		routed:     make(chan *routeResult, 256),
		workerDone: make(chan *worker, 256),
		admin:      make(chan func()),
		pokeCh:     make(chan struct{}, 1),
		active:     map[string]*entry{},
		sites:      map[string]*site{},
		waiting:    map[string][]*job{},
		routes:     map[string]cachedRoute{},
		busy:       map[string]bool{},
		lanes:      map[string]*lane{},
		scanNeeded: true,
	}
}

// reserve claims room for a new message so the submission path can hand it
// over leased; false when the scheduler is full (the message then waits in
// the index for a scan).
func (s *scheduler) reserve() bool {
	if s.inHand.Add(1) > int64(s.maxActive) {
		s.inHand.Add(-1)
		return false
	}
	return true
}

func (s *scheduler) unreserve() { s.inHand.Add(-1) }

// submit hands over a message stored leased after reserve succeeded.
func (s *scheduler) submit(m *queue.Message) { s.incoming <- m }

// poke asks for a scan of the index soon.
func (s *scheduler) poke() {
	select {
	case s.pokeCh <- struct{}{}:
	default:
	}
}

// do runs f on the scheduler goroutine and waits for it.
func (s *scheduler) do(ctx context.Context, f func()) error {
	done := make(chan struct{})
	select {
	case s.admin <- func() { f(); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

func (s *scheduler) run(ctx context.Context) {
	defer close(s.done)
	defer s.srv.recoverPanic("scheduler")
	s.wakeTimer = time.NewTimer(time.Hour)
	s.wakeTimer.Stop()
	full := time.NewTicker(fullScanEvery)
	defer full.Stop()
	if s.srv.warmActive {
		s.restoreLanes()
	}
	for {
		if !s.stopping {
			s.wakeLanes(s.clk.Now())
		}
		if s.scanNeeded && !s.stopping {
			s.scan()
		}
		s.arm()
		select {
		case m := <-s.incoming:
			s.take(m)
		case r := <-s.results:
			s.handleResult(r)
		case r := <-s.routed:
			s.handleRouted(r)
		case w := <-s.workerDone:
			s.handleWorkerDone(w)
		case f := <-s.admin:
			f()
		case <-s.pokeCh:
			s.scanNeeded = true
		case <-s.wake:
			s.armedFor, s.wake = time.Time{}, nil
			s.scanNeeded = true
		case <-full.C:
			s.scanNeeded = true
		case <-ctx.Done():
			s.stop()
			return
		}
	}
}

// learnDue notes that the index holds a key due at t.
func (s *scheduler) learnDue(t time.Time) {
	if !t.IsZero() && (s.nextDue.IsZero() || t.Before(s.nextDue)) {
		s.nextDue = t
	}
}

// arm sets the wake-up for the earlier of the index's next due message and
// the next lane to wake, re-arming only when that changed. The real timer
// follows the wall clock; a fake clock's After follows the test.
func (s *scheduler) arm() {
	next := s.nextDue
	if len(s.laneWake) > 0 && (next.IsZero() || s.laneWake[0].wakeAt.Before(next)) {
		next = s.laneWake[0].wakeAt
	}
	if next.IsZero() || next.Equal(s.armedFor) {
		return
	}
	s.armedFor = next
	d := next.Sub(s.clk.Now())
	if d < 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	if _, real := s.clk.(clock.Real); real {
		if !s.wakeTimer.Stop() {
			select {
			case <-s.wakeTimer.C:
			default:
			}
		}
		s.wakeTimer.Reset(d)
		s.wake = s.wakeTimer.C
		return
	}
	s.wake = s.clk.At(next)
}

// scan takes due messages from the index while there is room.
func (s *scheduler) scan() {
	s.scanNeeded = false
	room := s.maxActive - int(s.inHand.Load())
	if room <= 0 {
		s.backlog = true
		return
	}
	now := s.clk.Now()
	from := s.lowWater
	if now.Sub(s.lastFull) >= fullScanEvery {
		from, s.lastFull = time.Time{}, now
	}
	due, err := s.store.Due(from, now, room, func(id string) bool { return s.active[id] != nil || s.busy[id] })
	if err != nil {
		s.log.Error("queue scan failed", "err", err)
		return
	}
	var leased []*queue.Message
	var last time.Time // the latest due time taken
	for _, m := range due {
		s.inHand.Add(1)
		m.Lock()
		if m.Due.After(last) {
			last = m.Due
		}
		m.Leased = true
		m.Due = now.Add(leaseTTL)
		m.Unlock()
		leased = append(leased, m)
		s.take(m)
	}
	s.backlog = len(due) == room
	if s.backlog {
		// Everything due before the last one taken is in hand (or was
		// skipped as in hand): the next scan starts at its due time, not
		// back over the keys these leases just replaced, which the index
		// keeps as deletions until compaction and every seek would wade
		// through. (No margin here: after a restart or an outage whole
		// queues fall due within a second or two. A key written late
		// before this point waits for the next full scan.)
		if last.After(s.lowWater) {
			s.lowWater = last
		}
	} else {
		// Everything due by now is in hand; allow for writes committed
		// a moment after they were computed.
		s.lowWater = now.Add(-2 * time.Second)
		s.nextDue = time.Time{}
		if t, ok := s.store.NextDue(now); ok {
			s.nextDue = t
		}
	}
	if len(leased) > 0 {
		// The lease only has to reach the disk eventually: until it does,
		// the scan skips these ids because they are active.
		s.srv.async("save leases", func() {
			if err := s.store.SaveMany(leased); err != nil {
				s.log.Error("saving leases failed", "err", err)
			}
		})
	}
}

// take puts a leased message in hand: parked if a hold rule matches, else
// split into jobs.
func (s *scheduler) take(m *queue.Message) {
	if rule, held := s.store.HoldMatch(m); held {
		s.park(m, rule)
		s.inHand.Add(-1)
		return
	}
	e := &entry{m: m}
	s.active[m.ID] = e
	s.dispatch(e)
}

func (s *scheduler) park(m *queue.Message, rule queue.HoldRule) {
	m.Lock()
	m.Held, m.Leased = true, false
	m.Unlock()
	s.srv.emitMessage(m, "held", "hold rule "+rule.ID)
	s.srv.async("park", func() {
		if err := s.store.Save(m); err != nil {
			s.log.Error("parking a held message failed", "id", m.ID, "err", err)
		}
	})
}

// dispatch splits the recipients due now by domain, one job per domain.
func (s *scheduler) dispatch(e *entry) {
	now := s.clk.Now()
	m := e.m
	m.Lock()
	// With VERP every recipient's return path is its own, so each goes in
	// its own transaction.
	perRcpt := s.srv.verp != nil && m.From != "" && m.Kind != queue.KindNotice
	byDomain := map[string][]int{}
	var order []string
	for i := range m.Rcpts {
		r := &m.Rcpts[i]
		if r.State.Done() || r.Next.After(now) || r.Wait != "" {
			continue
		}
		d := r.Domain()
		if perRcpt {
			d += "\x00" + strconv.Itoa(i)
		}
		if _, seen := byDomain[d]; !seen {
			order = append(order, d)
		}
		byDomain[d] = append(byDomain[d], i)
	}
	e.jobs = len(order)
	m.Unlock()
	if len(order) == 0 {
		// Woken before any recipient is due: put it back in the index.
		s.srv.async("reschedule", func() { s.srv.finishRound(e, nil) })
		return
	}
	for _, d := range order {
		domain, _, _ := strings.Cut(d, "\x00")
		s.routeJob(&job{e: e, domain: domain, rcpts: byDomain[d]})
	}
}

func (s *scheduler) routeJob(j *job) {
	now := s.clk.Now()
	if cr, ok := s.routes[j.domain]; ok && now.Before(cr.expires) {
		if cr.fail != nil {
			fail := *cr.fail
			s.srv.async("record failure", func() { s.srv.completeJob(j, uniform(len(j.rcpts), fail), ConnInfo{}, nil) })
			return
		}
		s.enqueueJob(cr, j)
		return
	}
	first := len(s.waiting[j.domain]) == 0
	s.waiting[j.domain] = append(s.waiting[j.domain], j)
	if first {
		domain := j.domain
		s.srv.async("route lookup", func() {
			ctx, cancel := context.WithTimeout(s.srv.ctx, 2*time.Minute)
			defer cancel()
			dest, ttl, fail := s.srv.router.route(ctx, domain)
			site := ""
			if dest != nil && strings.HasPrefix(dest.Key, "mx:") && s.srv.warm != nil {
				names := make([]string, len(dest.Hosts))
				for i, h := range dest.Hosts {
					names[i] = h.Name
				}
				site = s.srv.warm.Site(domain, names)
			}
			select {
			case s.routed <- &routeResult{domain: domain, dest: dest, site: site, ttl: ttl, fail: fail}:
			case <-s.done:
			}
		})
	}
}

func (s *scheduler) handleRouted(r *routeResult) {
	ttl := r.ttl
	if r.fail != nil && r.fail.Code == 0 {
		ttl = time.Minute // a temporary DNS failure is asked again soon
	}
	cr := cachedRoute{dest: r.dest, site: r.site, fail: r.fail, expires: s.clk.Now().Add(ttl)}
	if ttl > 0 {
		s.routes[r.domain] = cr
	}
	jobs := s.waiting[r.domain]
	delete(s.waiting, r.domain)
	for _, j := range jobs {
		if r.fail != nil {
			j, fail := j, *r.fail
			s.srv.async("record failure", func() { s.srv.completeJob(j, uniform(len(j.rcpts), fail), ConnInfo{}, nil) })
			continue
		}
		s.enqueueJob(cr, j)
	}
	if len(s.routes) > 100000 {
		s.reapRoutes()
	}
}

func (s *scheduler) reapRoutes() {
	now := s.clk.Now()
	for d, cr := range s.routes {
		if now.After(cr.expires) {
			delete(s.routes, d)
		}
	}
}

func uniform(n int, r policy.Reply) []policy.Reply {
	out := make([]policy.Reply, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func (s *scheduler) handleResult(r *jobResult) {
	st := r.job.site
	if st != nil {
		st.inflight--
		if r.siteDown != nil {
			s.siteDown(st, *r.siteDown)
		}
		s.pump(st)
	}
	if r.final {
		id := r.job.e.m.ID
		if s.active[id] == r.job.e {
			delete(s.active, id)
			s.inHand.Add(-1)
			if s.backlog {
				s.scanNeeded = true
			}
		}
		s.learnDue(r.due)
		// Recipients left waiting in a lane while the message was in hand
		// were stepped over by the lane: it looks again.
		for _, k := range r.lanes {
			if pool, site, ok := strings.Cut(k, "|"); ok {
				ln := s.laneFor(pool, site)
				ln.waiting = true
				if ln.hidx < 0 {
					s.wakeLaneAt(ln, s.clk.Now())
				}
			}
		}
	}
}

// stop ends dispatching: no more scans or jobs, and every worker leaves
// after its current transaction. Messages in hand keep their leases, so the
// next start retries them first. It runs on the scheduler goroutine.
func (s *scheduler) stop() {
	if s.stopping {
		return
	}
	s.stopping = true
	for _, st := range s.sites {
		close(st.quit)
	}
}

// report hands a job's result to the scheduler, unless it has stopped.
func (s *scheduler) report(r *jobResult) {
	select {
	case s.results <- r:
	case <-s.done:
	}
}

// workers returns the number of open outbound connections (scheduler
// goroutine only).
func (s *scheduler) workers() int { return s.conns }

// async runs f on its own goroutine, counted so that shutdown waits for it
// before closing the stores, and guarded against panics.
func (srv *Server) async(what string, f func()) {
	srv.inflight.Add(1)
	go func() {
		defer srv.inflight.Done()
		defer srv.recoverPanic(what)
		f()
	}()
}

// recoverPanic logs and counts a panic in one of kiln's goroutines, so one bad
// message or peer cannot take the daemon down.
func (srv *Server) recoverPanic(where string) {
	if v := recover(); v != nil {
		srv.metrics.panics.Inc()
		srv.log.Error("panic recovered", "in", where, "panic", v, "stack", strings.TrimSpace(string(debug.Stack())))
	}
}
