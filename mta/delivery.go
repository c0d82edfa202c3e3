package mta

import (
	"context"
	"time"

	"kiln/policy"
)

// siteDownFor is how long a destination that could not be reached at all is
// left alone: its queued jobs are deferred at once instead of each waiting
// for its own connection timeout (Postfix calls such a destination "dead").
const siteDownFor = time.Minute

// site is one destination as seen from one egress: its backlog, the jobs
// released to its workers, and its connection count.
type site struct {
	key     string
	dest    *Destination
	egress  *Egress
	backlog []*job
	ch      chan *job // jobs released to workers
	quit    chan struct{}
	// inflight counts jobs released to ch whose result has not come back.
	inflight  int
	workers   int
	maxConns  int // connections at most
	perConn   int // messages per connection
	downUntil time.Time
	downReply policy.Reply
	idleSince time.Time
}

// siteFor returns the connections from egress e to destination d. The
// connection limit and messages per connection are the configured ones,
// lowered by the provider's shaping when warm-up knows the site.
func (s *scheduler) siteFor(d *Destination, e *Egress, wsite string) *site {
	key := d.Key + "@" + e.Name
	st := s.sites[key]
	if st == nil {
		per := s.srv.cfg.Delivery.MaxConnectionsPerDestination
		perConn := s.srv.cfg.Delivery.MaxMessagesPerConnection
		if wsite != "" && s.srv.warm != nil {
			sh := s.srv.warm.Shaping(e.Name, wsite, s.clk.Now())
			if sh.Connections > 0 && sh.Connections < per {
				per = sh.Connections
			}
			if sh.MessagesPerConnection > 0 && sh.MessagesPerConnection < perConn {
				perConn = sh.MessagesPerConnection
			}
		}
		st = &site{key: key, dest: d, egress: e, maxConns: per, perConn: perConn, ch: make(chan *job, 2*per), quit: make(chan struct{})}
		s.sites[key] = st
	}
	return st
}

// enqueueJob sends a routed job on its way: through warm-up when it
// applies, else straight to the default egress's connections.
func (s *scheduler) enqueueJob(cr cachedRoute, j *job) {
	if s.srv.warmActive && cr.site != "" {
		s.admitWarm(cr, j)
		return
	}
	j.egress = s.srv.defaultEgress
	s.toSite(cr.dest, j)
}

// toSite queues a job on the connections from its egress to d.
func (s *scheduler) toSite(d *Destination, j *job) {
	st := s.siteFor(d, j.egress, j.wsite)
	if s.clk.Now().Before(st.downUntil) {
		reply := st.downReply
		s.srv.async("record failure", func() { s.srv.completeJob(j, uniform(len(j.rcpts), reply), ConnInfo{}, nil) })
		return
	}
	j.site = st
	st.backlog = append(st.backlog, j)
	s.pump(st)
}

// pump releases backlog to the site's workers and starts workers while
// released jobs outnumber them, within the per-destination and total
// connection limits.
func (s *scheduler) pump(st *site) {
	for len(st.backlog) > 0 && len(st.ch) < cap(st.ch) {
		j := st.backlog[0]
		st.backlog[0] = nil
		st.backlog = st.backlog[1:]
		st.ch <- j
		st.inflight++
	}
	total := s.srv.cfg.Delivery.MaxConnections
	for st.workers < st.maxConns && st.workers < st.inflight && s.conns < total && !s.stopping {
		st.workers++
		s.conns++
		w := &worker{s: s, st: st}
		s.srv.async("delivery worker", w.run)
	}
	if st.inflight == 0 && len(st.backlog) == 0 && st.workers == 0 {
		st.idleSince = s.clk.Now()
	}
}

// siteDown fails the destination's waiting jobs with the reply that explains
// why it could not be reached, unless another worker still holds a working
// connection to it.
func (s *scheduler) siteDown(st *site, reply policy.Reply) {
	if st.workers > 1 {
		return
	}
	st.downUntil = s.clk.Now().Add(siteDownFor)
	st.downReply = reply
	backlog := st.backlog
	st.backlog = nil
	for {
		select {
		case j := <-st.ch:
			st.inflight--
			j.site = nil
			backlog = append(backlog, j)
			continue
		default:
		}
		break
	}
	for _, j := range backlog {
		j.site = nil
		s.srv.async("record failure", func() { s.srv.completeJob(j, uniform(len(j.rcpts), reply), ConnInfo{}, nil) })
	}
}

func (s *scheduler) handleWorkerDone(w *worker) {
	st := w.st
	st.workers--
	s.conns--
	s.pump(st)
	// Another site may be waiting for a connection slot.
	if s.conns < s.srv.cfg.Delivery.MaxConnections {
		for _, o := range s.sites {
			if o != st && (len(o.ch) > 0 || len(o.backlog) > 0) && o.workers < o.inflight {
				s.pump(o)
			}
		}
	}
	if st.workers == 0 && st.inflight == 0 && len(st.backlog) == 0 && !s.clk.Now().Before(st.downUntil) {
		delete(s.sites, st.key)
	}
}

// worker owns one outbound connection and carries the site's jobs over it,
// one transaction at a time, until the site has had nothing for it for the
// idle timeout.
type worker struct {
	s    *scheduler
	st   *site
	conn Conn
	sent int
	buf  []byte
}

func (w *worker) run() {
	srv := w.s.srv
	defer func() {
		if w.conn != nil {
			w.conn.Close()
		}
		srv.metrics.connections.WithLabelValues(w.st.egress.Name).Dec()
		select {
		case w.s.workerDone <- w:
		case <-w.s.done:
		}
	}()
	srv.metrics.connections.WithLabelValues(w.st.egress.Name).Inc()
	idle := srv.cfg.Delivery.IdleTimeout.D()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	for {
		select {
		case j := <-w.st.ch:
			if !w.do(j) {
				return
			}
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(idle)
		case <-timer.C:
			return
		case <-w.st.quit:
			return
		}
	}
}

// do attempts one job; false means the worker should stop (its destination
// could not be reached).
func (w *worker) do(j *job) bool {
	srv := w.s.srv
	ctx := srv.ctx
	if w.conn != nil && w.sent >= w.st.perConn {
		w.conn.Close()
		w.conn = nil
	}
	if w.conn == nil {
		dctx, cancel := context.WithTimeout(ctx, srv.cfg.Delivery.ConnectTimeout.D()*time.Duration(max(1, len(w.st.dest.Hosts))+1))
		conn, fail := srv.wire.Dial(dctx, w.st.dest, w.st.egress)
		cancel()
		if conn == nil {
			// Never offered to the remote: the warm-up count goes back.
			srv.releaseGrants(j)
			srv.completeJob(j, uniform(len(j.rcpts), fail), ConnInfo{}, &fail)
			return false
		}
		w.conn, w.sent = conn, 0
	}
	m := j.e.m
	body, err := srv.store.ReadBody(m, w.buf)
	if err != nil {
		srv.bodyUnreadable(j, err)
		return true
	}
	w.buf = body[:0]
	m.Lock()
	account := m.Account
	all := make([]string, len(j.rcpts))
	for i, idx := range j.rcpts {
		all[i] = m.Rcpts[idx].Addr
	}
	m.Unlock()
	// The suppression list again, just before the attempt: an address
	// suppressed since the message was accepted is not mailed.
	replies := make([]policy.Reply, len(all))
	var send []string
	var at []int
	for i, a := range all {
		if e, ok := srv.suppressedFor(account, a); ok {
			replies[i] = policy.Reply{Command: suppressedReply, Line: "suppressed (" + e.Reason + ", " + string(e.Source) + "): not sent"}
			continue
		}
		send = append(send, a)
		at = append(at, i)
	}
	info := w.conn.Info()
	if len(send) > 0 {
		m.Lock()
		from := srv.envelopeFrom(m, send)
		m.Unlock()
		start := time.Now()
		got, usable := w.conn.Send(ctx, from, send, body)
		srv.metrics.attemptLatency.Observe(time.Since(start).Seconds())
		for k, i := range at {
			replies[i] = got[k]
		}
		w.sent++
		if !usable {
			w.conn.Close()
			w.conn = nil
		}
	}
	srv.completeJob(j, replies, info, nil)
	return true
}
