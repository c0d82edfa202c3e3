package suppress

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/policy"
)

// RuleSoftFailure names the rule that suppresses an address after repeated
// soft failures (DESIGN.md invariant 4: every decision names its rule).
const RuleSoftFailure = "repeated-soft-failure"

// Result is what the delivery engine learned about one recipient of one
// message: a reply during delivery (SourceReply), or a report that arrived
// later (SourceLateBounce, SourceComplaint, SourceUnsubscribe; see
// BounceResult).
type Result struct {
	Account string // the account that sent the message, "" for none
	Address string // the recipient
	QueueID string // kiln's id of the message
	Source  Source
	// Decision is the classifier's decision (policy.Classify,
	// ClassifyFinal, or a Bounce's Decision()).
	Decision policy.Decision
	// Reply is the remote's words: the reply line, or the report's
	// diagnostic.
	Reply string
}

// BounceResult turns one recipient of a bounce report into a Result, and
// says whether the report means anything for the address: auto-replies and
// feedback reports that are not complaints (not-spam, auth-failure) do not.
// An ARF report becomes a complaint (an unsubscribe when its Feedback-Type
// says so); anything else is a late bounce.
func BounceResult(account, queueID string, b policy.Bounce) (Result, bool) {
	r := Result{Account: account, Address: b.Recipient, QueueID: queueID, Source: SourceLateBounce,
		Decision: b.Decision(), Reply: b.Diagnostic}
	switch {
	case b.Reason == "vacation":
		return r, false
	case b.Reason == "feedback":
		switch strings.ToLower(b.FeedbackType) {
		case "unsubscribe":
			r.Source = SourceUnsubscribe
		case "not-spam", "auth-failure", "dkim", "spf":
			return r, false
		default: // abuse, fraud, virus, other, or a report without a type
			r.Source = SourceComplaint
		}
	}
	return r, true
}

// Outcome is the result as the Breaker counts it, and false when the result
// is not final (a temporary failure that kiln will retry, or a late report
// of a delivery already counted).
func (r Result) Outcome() (Outcome, bool) {
	d := r.Decision
	switch {
	case r.Source == SourceComplaint:
		return Complaint, true
	case r.Source == SourceUnsubscribe:
		return 0, false
	case d.Action == policy.ActionDelivered:
		return Delivered, r.Source == SourceReply
	case d.Hard:
		return HardBounce, true
	case d.Action == policy.ActionRetry:
		return 0, false
	}
	return Other, r.Source == SourceReply
}

// scopeFor is the scope an automatic entry of src for account goes to.
func (l *List) scopeFor(account string, src Source) string {
	switch src {
	case SourceComplaint, SourceUnsubscribe:
		return account
	}
	if l.cfg.BounceScope == ScopeAccount {
		return account
	}
	return ""
}

// Record acts on what the delivery engine learned about one recipient, and
// returns the suppression entry in force when the result suppressed the
// address (changed is true when the list changed):
//
//   - a complaint or unsubscribe suppresses the address in the account's scope;
//   - a hard decision (the address's fault: userunknown, hostunknown, ...)
//     suppresses it in the bounce scope;
//   - a soft failure (Decision.SoftFail: mailbox full, expired) counts toward
//     the repeated-soft-failure rule (SoftFail);
//   - a delivery clears that count (Delivered);
//   - anything else (a sender-fault bounce, a temporary failure) leaves the
//     address alone (DESIGN.md invariant 5).
//
// Call it for every reply to a recipient during delivery, for the final
// decision when a message expires, and for every recipient of a bounce
// report (BounceResult).
func (l *List) Record(r Result, now time.Time) (e Entry, suppressed, changed bool, err error) {
	d := r.Decision
	if r.Source == "" {
		r.Source = SourceReply
	}
	switch {
	case r.Source == SourceComplaint || r.Source == SourceUnsubscribe || d.Hard:
		reason := d.Reason
		if r.Source == SourceComplaint || r.Source == SourceUnsubscribe {
			reason = "feedback"
		}
		entry := Entry{Scope: l.scopeFor(r.Account, r.Source), Address: r.Address, Reason: reason, Source: r.Source,
			Reply: r.Reply, Rule: d.Rule, QueueID: r.QueueID, Status: d.Status, Created: now}
		entry, err := l.cfg.prepare(entry, now)
		if err != nil {
			return Entry{}, false, false, err
		}
		var got Entry
		err = l.submit(1, func(txn *badger.Txn, ch *[]Change) error {
			var err error
			got, changed, err = l.addInTxn(txn, entry, now, ch)
			if err == nil && changed {
				// A suppressed address needs no soft-failure count.
				err = l.clearSoft(txn, entry.Scope, entry.Address)
			}
			return err
		})
		return got, err == nil, changed, err
	case d.Action == policy.ActionDelivered:
		if r.Source == SourceReply {
			err = l.Delivered(r.Account, r.Address, now)
		}
		return Entry{}, false, false, err
	case d.SoftFail:
		e, sup, err := l.SoftFail(r.Account, r.Address, r.QueueID, d, r.Reply, now)
		return e, sup, sup, err
	}
	return Entry{}, false, false, nil
}

// SoftFail counts a soft failure (mailbox full, or expired after retries) of
// the message queueID to addr. When soft_fail_count distinct messages have
// failed softly within soft_fail_window, the address is suppressed in the
// bounce scope (source soft-failure, rule repeated-soft-failure, reason and
// reply of the last failure, expiry soft_fail_expiry) and the count starts
// again; suppressed is true then. The same message failing again (each retry
// of a full mailbox) counts once and writes nothing, so queueID must name the
// message: failures without one all count as one message.
func (l *List) SoftFail(account, addr, queueID string, d policy.Decision, reply string, now time.Time) (Entry, bool, error) {
	if l.cfg.SoftFailCount < 0 {
		return Entry{}, false, nil
	}
	a, err := Normalize(addr)
	if err != nil {
		return Entry{}, false, err
	}
	scope := l.scopeFor(account, SourceSoftFailure)
	window := l.cfg.SoftFailWindow.D()
	queueID = clean(queueID, 200)
	// Most retries of a full mailbox are the same message again: find
	// that out with a read, without a trip through the writer.
	rec, err := l.readSoft(nil, scope, a)
	if err != nil {
		return Entry{}, false, err
	}
	if rec != nil && rec.has(queueID, now.Add(-window)) {
		return Entry{}, false, nil
	}
	var got Entry
	var suppressed bool
	err = l.submit(1, func(txn *badger.Txn, ch *[]Change) error {
		suppressed = false
		rec, err := l.readSoft(txn, scope, a)
		if err != nil {
			return err
		}
		var oldIdx time.Time
		if rec == nil {
			rec = &softRec{}
		} else {
			oldIdx = rec.newest().Add(window)
		}
		if rec.has(queueID, now.Add(-window)) {
			return nil
		}
		kept := rec.Msgs[:0]
		for _, m := range rec.Msgs {
			if m.At.After(now.Add(-window)) {
				kept = append(kept, m)
			}
		}
		rec.Msgs = append(kept, softMsg{ID: queueID, At: now})
		rec.Reason, rec.Rule, rec.Status, rec.Reply = d.Reason, d.Rule, d.Status, clean(reply, maxText)
		if len(rec.Msgs) >= l.cfg.SoftFailCount {
			ids := make([]string, len(rec.Msgs))
			for i, m := range rec.Msgs {
				ids[i] = m.ID
			}
			e, err := l.cfg.prepare(Entry{Scope: scope, Address: a, Reason: d.Reason, Source: SourceSoftFailure,
				Reply: reply, Rule: RuleSoftFailure, QueueID: queueID, Status: d.Status, Created: now,
				Note: fmt.Sprintf("%d messages failed softly within %s (last by rule %s): %s",
					len(ids), l.cfg.SoftFailWindow, orNone(d.Rule), strings.Join(ids, " "))}, now)
			if err != nil {
				return err
			}
			got, suppressed, err = l.addInTxn(txn, e, now, ch)
			if err != nil {
				return err
			}
			suppressed = true
			return l.clearSoft(txn, scope, a)
		}
		if !oldIdx.IsZero() {
			if err := txn.Delete(expiryKey(oldIdx, kindSoft, scope, a)); err != nil {
				return err
			}
		}
		if err := txn.Set(softKey(scope, a), encodeSoft(rec)); err != nil {
			return err
		}
		return txn.Set(expiryKey(rec.newest().Add(window), kindSoft, scope, a), nil)
	})
	return got, suppressed, err
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// has reports whether the record counts message id since after.
func (r *softRec) has(id string, after time.Time) bool {
	for _, m := range r.Msgs {
		if m.ID == id && m.At.After(after) {
			return true
		}
	}
	return false
}

// readSoft reads the soft-failure count of addr in scope, in txn, or in a
// read transaction of its own when txn is nil.
func (l *List) readSoft(txn *badger.Txn, scope, addr string) (*softRec, error) {
	if txn == nil {
		var rec *softRec
		err := l.db.View(func(txn *badger.Txn) error {
			var err error
			rec, err = l.readSoft(txn, scope, addr)
			return err
		})
		return rec, err
	}
	item, err := txn.Get(softKey(scope, addr))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var rec *softRec
	err = item.Value(func(v []byte) error {
		rec, err = decodeSoft(v)
		return err
	})
	if errors.Is(err, errRecord) {
		l.log.Error("unreadable soft-failure count, starting it again", "scope", scope, "address", addr)
		return &softRec{}, nil
	}
	return rec, err
}

// clearSoft deletes the soft-failure count of addr in scope, if any.
func (l *List) clearSoft(txn *badger.Txn, scope, addr string) error {
	rec, err := l.readSoft(txn, scope, addr)
	if err != nil || rec == nil {
		return err
	}
	if len(rec.Msgs) > 0 {
		if err := txn.Delete(expiryKey(rec.newest().Add(l.cfg.SoftFailWindow.D()), kindSoft, scope, addr)); err != nil {
			return err
		}
	}
	return txn.Delete(softKey(scope, addr))
}

// Delivered clears the soft-failure count of addr after a successful
// delivery. It is called for every delivered recipient, so it only reads
// unless there is a count to clear.
func (l *List) Delivered(account, addr string, now time.Time) error {
	a, err := Normalize(addr)
	if err != nil {
		return nil
	}
	scope := l.scopeFor(account, SourceSoftFailure)
	rec, err := l.readSoft(nil, scope, a)
	if err != nil || rec == nil {
		return err
	}
	return l.submit(1, func(txn *badger.Txn, _ *[]Change) error {
		return l.clearSoft(txn, scope, a)
	})
}

// SoftCount returns how many distinct messages to addr have failed softly
// within the window at now, in the scope where account's counts are kept.
func (l *List) SoftCount(account, addr string, now time.Time) (int, error) {
	a, err := Normalize(addr)
	if err != nil {
		return 0, err
	}
	rec, err := l.readSoft(nil, l.scopeFor(account, SourceSoftFailure), a)
	if err != nil || rec == nil {
		return 0, err
	}
	n := 0
	for _, m := range rec.Msgs {
		if m.At.After(now.Add(-l.cfg.SoftFailWindow.D())) {
			n++
		}
	}
	return n, nil
}
