package mta

import (
	"math/rand/v2"
	"slices"
	"time"

	"kiln/events"
	"kiln/policy"
	"kiln/policy/suppress"
	"kiln/queue"
)

// completeJob records the outcome of one job: every recipient's reply is
// classified and its state written to the queue before anything else happens
// to the message (a recipient that got 250 is never sent it again). When the
// job is the last of the message's round, the message is put back in the
// schedule at its next due time, or deleted when every recipient is done, and
// one notice goes to the sender for the recipients that failed for good.
// It runs on a worker (or lookup) goroutine, never on the scheduler's.
func (srv *Server) completeJob(j *job, replies []policy.Reply, info ConnInfo, siteDown *policy.Reply) {
	e, m := j.e, j.e.m
	now := srv.clk.Now()
	var evs []events.Event
	// An attempt cut off because kiln is stopping says nothing about the
	// recipient: it is not counted, and the message keeps its lease so the
	// next start retries it first.
	abandoned := srv.ctx.Err() != nil
	type recording struct {
		addr  string
		d     policy.Decision
		reply string
	}
	var records []recording
	m.Lock()
	expires := m.Expires.Add(m.Waited)
	for i, idx := range j.rcpts {
		r := &m.Rcpts[idx]
		reply := replies[i]
		if reply.Command == suppressedReply {
			// Found on the suppression list just before the attempt.
			r.State, r.Reason, r.Updated = queue.RcptDropped, "suppressed", now
			evs = append(evs, events.Event{Time: now, Type: events.Dropped, ID: m.ID, MessageID: m.MessageID,
				Account: m.Account, From: m.From, Recipient: r.Addr, Reason: "suppressed", Detail: reply.Line,
				Tags: m.Tags, Metadata: m.Metadata})
			srv.metrics.outcomes.WithLabelValues(events.Dropped, "suppressed").Inc()
			continue
		}
		if abandoned && reply.Code == 0 {
			continue
		}
		if reply.Host == "" {
			reply.Host = info.Host
		}
		d := srv.classify(reply)
		srv.observe(j, d, now)
		r.Attempts++
		r.Code, r.Enhanced, r.Line, r.Host = reply.Code, reply.Enhanced, reply.Line, reply.Host
		r.Reason, r.Rule, r.Updated = d.Reason, d.Rule, now
		ev := events.Event{
			Time: now, ID: m.ID, MessageID: m.MessageID, Account: m.Account, From: m.From,
			Recipient: r.Addr, Attempt: r.Attempts, RemoteHost: reply.Host, TLS: info.TLS,
			Code: reply.Code, Enhanced: reply.Enhanced, Reply: reply.Line, Reason: d.Reason, Hard: d.Hard,
			Rule: d.Rule, Site: siteKey(j), Egress: egressName(j), QueueMs: now.Sub(m.Created).Milliseconds(), Tags: m.Tags, Metadata: m.Metadata,
		}
		if info.IP.IsValid() {
			ev.RemoteIP = info.IP.String()
		}
		switch d.Action {
		case policy.ActionDelivered:
			r.State = queue.RcptDelivered
			ev.Type = events.Delivered
			srv.metrics.deliveryLatency.Observe(now.Sub(m.Created).Seconds())
		case policy.ActionBounce:
			r.State = queue.RcptBounced
			ev.Type = events.Bounced
			e.failed = append(e.failed, idx)
		default:
			r.SoftFails++
			if !now.Before(expires) {
				// Given up: the last reply is read as final (a mailbox
				// full for days is a soft failure of the address).
				d = srv.policy.ClassifyFinal(reply)
				r.State = queue.RcptExpired
				r.Reason, r.Rule = d.Reason, d.Rule
				ev.Type = events.Expired
				ev.Reason, ev.Rule = "expired", d.Rule
				e.failed = append(e.failed, idx)
			} else {
				next := now.Add(queue.Backoff(r.Attempts, srv.cfg.Queue.RetryFirst.D(), srv.cfg.Queue.RetryMax.D(), srv.rnd()))
				if next.After(expires) {
					next = expires // one last try at the deadline, then give up
				}
				r.Next = next
				ev.Type = events.Deferred
				ev.Next = &next
			}
		}
		srv.metrics.outcomes.WithLabelValues(ev.Type, ev.Reason).Inc()
		evs = append(evs, ev)
		records = append(records, recording{r.Addr, d, reply.Line})
	}
	m.Attempts++
	e.jobs--
	final := e.jobs <= 0 && !abandoned
	var failed []int
	del := false
	var due time.Time
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
		srv.log.Error("recording delivery outcome failed", "id", m.ID, "err", err)
	}
	for _, ev := range evs {
		srv.bus.Emit(ev)
	}
	for _, rec := range records {
		srv.record(m, rec.addr, rec.d, rec.reply, suppress.SourceReply, now)
	}
	if final && len(failed) > 0 && !e.dropped {
		srv.sendNotice(m, failed)
	}
	srv.sched.report(&jobResult{job: j, final: final, due: due, lanes: lanes, siteDown: siteDown})
}

// waitingLanes lists the lanes the message's pending recipients wait in (the
// caller holds its lock).
func waitingLanes(m *queue.Message) []string {
	var out []string
	for _, r := range m.Rcpts {
		if !r.State.Done() && r.Wait != "" && !slices.Contains(out, r.Wait) {
			out = append(out, r.Wait)
		}
	}
	return out
}

// closeRound ends a message's round (the caller holds its lock): it returns
// true when the message is finished and should be deleted; otherwise the
// message goes back in the schedule at its next due time, or is parked by a
// hold rule.
func (srv *Server) closeRound(e *entry, now time.Time) bool {
	m := e.m
	if e.dropped || m.Done() {
		return true
	}
	m.Leased = false
	m.Due = m.NextDue()
	if m.Due.Before(now) {
		m.Due = now
	}
	if _, held := srv.store.HoldMatch(m); held {
		m.Held = true
	}
	return false
}

// finishRound ends a round that had nothing to send (the message was woken
// before any recipient was due).
func (srv *Server) finishRound(e *entry, _ []int) {
	m := e.m
	m.Lock()
	del := srv.closeRound(e, srv.clk.Now())
	due, lanes := m.Due, waitingLanes(m)
	if del || m.Held {
		due, lanes = time.Time{}, nil
	}
	m.Unlock()
	var err error
	if del {
		err = srv.store.Delete(m)
	} else {
		err = srv.store.Save(m)
	}
	if err != nil {
		srv.log.Error("rescheduling failed", "id", m.ID, "err", err)
	}
	srv.sched.report(&jobResult{job: &job{e: e}, final: true, due: due, lanes: lanes})
}

// bodyUnreadable handles a body that fails its checksum or is gone: the
// message cannot be delivered as accepted, so it is quarantined (reported,
// kept for inspection) rather than sent damaged or dropped in silence.
func (srv *Server) bodyUnreadable(j *job, err error) {
	srv.log.Error("message body is unreadable: quarantining the message", "id", j.e.m.ID, "err", err)
	srv.store.QuarantineMessage(j.e.m, err)
	srv.emitMessage(j.e.m, events.Dropped, "body unreadable: "+err.Error())
	j.e.dropped = true
	m := j.e.m
	m.Lock()
	j.e.jobs--
	final := j.e.jobs <= 0
	m.Unlock()
	srv.sched.report(&jobResult{job: j, final: final})
}

// envelopeFrom is the return path used on the wire: the sender's own, or,
// with VERP, one naming the message and the recipient.
func (srv *Server) envelopeFrom(m *queue.Message, rcpts []string) string {
	if srv.verp == nil || m.From == "" || m.Kind == queue.KindNotice || len(rcpts) != 1 {
		return m.From
	}
	return srv.verp.returnPath(m.ID, rcpts[0])
}

// emitMessage emits a message-level event.
func (srv *Server) emitMessage(m *queue.Message, typ, detail string) {
	srv.bus.Emit(events.Event{Time: srv.clk.Now(), Type: typ, ID: m.ID, MessageID: m.MessageID,
		Account: m.Account, From: m.From, Detail: detail, Tags: m.Tags, Metadata: m.Metadata})
}

func egressName(j *job) string {
	if j.egress != nil {
		return j.egress.Name
	}
	return ""
}

func siteKey(j *job) string {
	if j.wsite != "" {
		return j.wsite
	}
	if j.site != nil {
		return j.site.key
	}
	return ""
}

// rnd returns a random source for retry jitter.
func (srv *Server) rnd() *rand.Rand {
	return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
}

// classify decides what a reply means.
func (srv *Server) classify(r policy.Reply) policy.Decision {
	if srv.classifier != nil {
		return srv.classifier.Classify(r)
	}
	return byFirstDigit(r)
}

// byFirstDigit is the decision when no classifier is configured: success,
// temporary or permanent by the reply's first digit, never suppressing.
func byFirstDigit(r policy.Reply) policy.Decision {
	switch {
	case r.Success():
		return policy.Decision{Reason: "delivered", Action: policy.ActionDelivered, Rule: "code.2xx"}
	case r.Permanent():
		return policy.Decision{Reason: "undefined", Action: policy.ActionBounce, Rule: "code.5xx"}
	}
	return policy.Decision{Reason: "undefined", Action: policy.ActionRetry, Rule: "code.4xx"}
}
