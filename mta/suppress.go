package mta

import (
	"time"

	"kiln/events"
	"kiln/policy"
	"kiln/policy/suppress"
	"kiln/queue"
)

// The suppression list in the engine: checked when a client gives a
// recipient and again before every attempt, fed by every outcome and every
// late report, and the per-account circuit breaker that holds an account's
// queue when its bounces or complaints say its list is bad.

// suppressedReply marks a recipient found on the suppression list before an
// attempt: it is dropped, never sent.
const suppressedReply = "SUPPRESSED"

// suppressedFor reports whether addr is suppressed for account.
func (srv *Server) suppressedFor(account, addr string) (suppress.Entry, bool) {
	if srv.suppress == nil {
		return suppress.Entry{}, false
	}
	e, ok, err := srv.suppress.Check(account, addr, srv.clk.Now())
	if err != nil {
		srv.log.Warn("suppression check failed", "err", err)
		return suppress.Entry{}, false
	}
	return e, ok
}

// record feeds one recipient's outcome to the suppression list and the
// account's breaker, and emits a "suppressed" event when the list changed.
func (srv *Server) record(m *queue.Message, addr string, d policy.Decision, reply string, source suppress.Source, now time.Time) {
	srv.recordResult(suppress.Result{Account: m.Account, Address: addr, QueueID: m.ID, Source: source, Decision: d, Reply: reply}, now)
}

func (srv *Server) recordResult(res suppress.Result, now time.Time) {
	if srv.suppress != nil {
		e, suppressed, changed, err := srv.suppress.Record(res, now)
		if err != nil {
			srv.log.Warn("recording an outcome on the suppression list failed", "err", err)
		} else if suppressed && changed {
			srv.bus.Emit(events.Event{Time: now, Type: events.Suppressed, ID: res.QueueID, Account: res.Account,
				Recipient: res.Address, Reason: e.Reason, Rule: e.Rule, Reply: e.Reply,
				Detail: "suppressed (" + string(e.Source) + ", scope " + scopeName(e.Scope) + ")"})
		}
	}
	// The breaker counts final outcomes only (Outcome leaves out retries,
	// success reports and unsubscribes).
	if o, ok := res.Outcome(); ok && srv.breaker != nil && res.Account != "" {
		if tripped, why := srv.breaker.Observe(res.Account, o, now); tripped {
			srv.holdAccount(res.Account, why)
		}
	}
}

func scopeName(s string) string {
	if s == "" {
		return "global"
	}
	return s
}

// holdAccount pauses an account's queue because its breaker tripped.
func (srv *Server) holdAccount(account, why string) {
	rule, err := srv.store.AddHold(queue.HoldRule{Account: account, Reason: "circuit breaker: " + why})
	if err != nil {
		srv.log.Error("holding a tripped account failed", "account", account, "err", err)
		return
	}
	srv.log.Warn("account's circuit breaker tripped: its queue is held", "account", account, "why", why, "rule", rule.ID)
	srv.bus.Emit(events.Event{Time: srv.clk.Now(), Type: events.Held, Account: account, Reason: "breaker",
		Detail: "circuit breaker tripped: " + why + "; queue held (reset it to release)"})
}

// releaseAccount removes the breaker's hold after an operator reset it.
func (srv *Server) releaseAccount(account string) {
	rules := srv.store.HoldRules()
	for _, r := range rules {
		if r.Account == account && r.Message == "" && r.SenderDomain == "" && r.RecipientDomain == "" {
			if _, err := srv.store.RemoveHolds(r, false); err != nil {
				srv.log.Error("releasing a reset account failed", "account", account, "err", err)
				return
			}
		}
	}
	if _, err := srv.releaseHeld(); err != nil {
		srv.log.Error("releasing a reset account's messages failed", "account", account, "err", err)
	}
}
