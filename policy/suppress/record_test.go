package suppress

import (
	"strings"
	"testing"
	"time"

	"kiln/policy"
)

func decide(line string) policy.Decision { return policy.Classify(policy.ParseReply("RCPT", line)) }

func decideFinal(line string) policy.Decision {
	return policy.DefaultClassifier().ClassifyFinal(policy.ParseReply("RCPT", line))
}

func TestSoftFailuresSuppressOnDistinctMessages(t *testing.T) {
	w := newWorld(t, Config{})
	d := decide("452 4.2.2 Mailbox full")
	if !d.SoftFail {
		t.Fatalf("mailbox full is not a soft failure: %+v", d)
	}
	day := 24 * time.Hour
	a := "Full@example.com"
	fail := func(id string, at time.Time) bool {
		t.Helper()
		_, sup, err := w.l.SoftFail("acme", a, id, d, "452 4.2.2 Mailbox full", at)
		if err != nil {
			t.Fatal(err)
		}
		return sup
	}
	// The same message retried many times counts once.
	for i := 0; i < 5; i++ {
		if fail("m1", t0.Add(time.Duration(i)*time.Hour)) {
			t.Fatal("suppressed by retries of one message")
		}
	}
	if n, _ := w.l.SoftCount("acme", a, t0.Add(5*time.Hour)); n != 1 {
		t.Errorf("count = %d after retries of one message", n)
	}
	if fail("m2", t0.Add(10*day)) {
		t.Fatal("suppressed after two messages")
	}
	if !fail("m3", t0.Add(20*day)) {
		t.Fatal("not suppressed after three messages within 30 days")
	}
	e, ok := checked(t, w.l, "other", a, t0.Add(20*day))
	if !ok || e.Source != SourceSoftFailure || e.Rule != RuleSoftFailure || e.Reason != "mailboxfull" ||
		e.Scope != "" || e.QueueID != "m3" || !e.Expires.Equal(t0.Add(110*day)) ||
		!strings.Contains(e.Note, "m1 m2 m3") || !strings.Contains(e.Note, "mailbox-full") || e.Reply != "452 4.2.2 Mailbox full" {
		t.Errorf("soft-failure entry = %+v, %v", e, ok)
	}
	if n, _ := w.l.SoftCount("acme", a, t0.Add(20*day)); n != 0 {
		t.Errorf("count = %d after the suppression, want it cleared", n)
	}
	if _, ok := checked(t, w.l, "", a, t0.Add(110*day)); ok {
		t.Error("soft-failure suppression outlived its 90 days")
	}
	consistent(t, w.db)
}

func TestSoftFailuresOutsideTheWindow(t *testing.T) {
	w := newWorld(t, Config{SoftFailCount: 3, SoftFailWindow: Duration(30 * 24 * time.Hour)})
	d := decideFinal("451 4.4.1 connection timed out")
	if !d.SoftFail {
		t.Skipf("an expired message is not a soft failure here: %+v", d)
	}
	day := 24 * time.Hour
	for i, at := range []time.Duration{0, 20 * day, 40 * day, 55 * day} {
		_, sup, err := w.l.SoftFail("", "slow@example.com", "m"+string(rune('a'+i)), d, "", t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		if sup {
			t.Fatalf("suppressed at +%v: failures more than 30 days apart", at)
		}
	}
	// 20d, 40d, 55d are within 30 days of each other? 20→55 is 35 days: no.
	if n, _ := w.l.SoftCount("", "slow@example.com", t0.Add(55*day)); n != 2 {
		t.Errorf("count = %d, want 2 (40d and 55d)", n)
	}
	_, sup, _ := w.l.SoftFail("", "slow@example.com", "me", d, "", t0.Add(60*day))
	if !sup {
		t.Error("three failures within 30 days did not suppress")
	}
	// A count nobody adds to is swept once its window has passed.
	w.l.SoftFail("", "once@example.com", "x", d, "", t0.Add(60*day))
	if _, err := w.l.Sweep(t0.Add(91 * day)); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, w.db, prefixSoft); n != 0 {
		t.Errorf("%d soft counts left after the sweep", n)
	}
	if n := countPrefix(t, w.db, prefixExpiry); n != 1 { // the soft-failure entry's own
		t.Errorf("%d index keys left, want 1", n)
	}
}

func TestDeliveryClearsSoftCount(t *testing.T) {
	w := newWorld(t, Config{})
	d := decide("452 4.2.2 Mailbox full")
	w.l.SoftFail("acme", "a@example.com", "m1", d, "", t0)
	w.l.SoftFail("acme", "a@example.com", "m2", d, "", t0.Add(time.Hour))
	if err := w.l.Delivered("acme", "A@example.com", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.l.SoftCount("acme", "a@example.com", t0.Add(2*time.Hour)); n != 0 {
		t.Errorf("count = %d after a delivery", n)
	}
	if _, sup, _ := w.l.SoftFail("acme", "a@example.com", "m3", d, "", t0.Add(3*time.Hour)); sup {
		t.Error("suppressed although a delivery came between")
	}
	// Nothing to clear: no write.
	if err := w.l.Delivered("acme", "never@example.com", t0); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, w.db, prefixSoft); n != 1 {
		t.Errorf("%d soft counts", n)
	}
	// Off.
	w2 := newWorld(t, Config{SoftFailCount: -1})
	for i := 0; i < 5; i++ {
		if _, sup, _ := w2.l.SoftFail("", "a@example.com", string(rune('a'+i)), d, "", t0); sup {
			t.Fatal("suppressed with the rule off")
		}
	}
}

func TestRecord(t *testing.T) {
	w := newWorld(t, Config{})
	var changes []Change
	w.l.OnChange(func(c Change) { changes = append(changes, c) })
	rec := func(r Result) (Entry, bool, bool) {
		t.Helper()
		e, sup, changed, err := w.l.Record(r, w.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return e, sup, changed
	}
	// A hard reply suppresses, globally by default, with the rule's name.
	e, sup, changed := rec(Result{Account: "acme", Address: "gone@example.com", QueueID: "q1", Source: SourceReply,
		Decision: decide("550 5.1.1 user unknown"), Reply: "550 5.1.1 user unknown"})
	if !sup || !changed || e.Scope != "" || e.Reason != "userunknown" || e.Rule == "" || e.Status != "5.1.1" || !e.Permanent() {
		t.Errorf("hard reply: %+v %v %v", e, sup, changed)
	}
	if _, sup, changed := rec(Result{Account: "acme", Address: "gone@example.com", QueueID: "q2",
		Decision: decide("550 5.1.1 user unknown")}); !sup || changed {
		t.Errorf("the second hard reply: suppressed %v changed %v", sup, changed)
	}
	// A reply that blames the sender leaves the address alone (invariant 5).
	if _, sup, _ := rec(Result{Account: "acme", Address: "fine@example.com", Source: SourceReply,
		Decision: decide("550 5.7.1 Service unavailable; client host listed at zen.spamhaus.org")}); sup {
		t.Error("a blocklist reply suppressed the recipient")
	}
	if _, ok := checked(t, w.l, "acme", "fine@example.com", w.clk.Now()); ok {
		t.Error("a blocklist reply suppressed the recipient")
	}
	// Temporary failures that are not the address's: nothing.
	rec(Result{Account: "acme", Address: "fine@example.com", QueueID: "q3", Decision: decide("421 4.7.28 rate limited")})
	if n, _ := w.l.SoftCount("acme", "fine@example.com", w.clk.Now()); n != 0 {
		t.Error("a rate limit counted as a soft failure")
	}
	// Soft failures count, a delivery clears.
	full := decide("452 4.2.2 Mailbox full")
	rec(Result{Account: "acme", Address: "full@example.com", QueueID: "q4", Decision: full})
	rec(Result{Account: "acme", Address: "full@example.com", QueueID: "q5", Decision: full})
	rec(Result{Account: "acme", Address: "full@example.com", QueueID: "q6", Source: SourceReply, Decision: decide("250 2.0.0 ok")})
	if _, sup, _ := rec(Result{Account: "acme", Address: "full@example.com", QueueID: "q7", Decision: full}); sup {
		t.Error("the delivery did not clear the count")
	}
	rec(Result{Account: "acme", Address: "full@example.com", QueueID: "q8", Decision: full})
	if _, sup, _ := rec(Result{Account: "acme", Address: "full@example.com", QueueID: "q9", Decision: full}); !sup {
		t.Error("three soft failures after the delivery did not suppress")
	}
	// Complaints and unsubscribes go to the account's scope.
	for _, c := range []struct {
		fbType string
		src    Source
	}{{"abuse", SourceComplaint}, {"unsubscribe", SourceUnsubscribe}} {
		addr := c.fbType + "@example.com"
		b := policy.Bounce{Recipient: addr, Reason: "feedback", Action: policy.ActionDelivered, Signal: policy.SignalComplaint,
			Rule: policy.RuleFeedback, FeedbackType: c.fbType}
		r, ok := BounceResult("acme", "q10", b)
		if !ok || r.Source != c.src {
			t.Fatalf("BounceResult(%s) = %+v %v", c.fbType, r, ok)
		}
		e, sup, _ := rec(r)
		if !sup || e.Scope != "acme" || e.Source != c.src || e.Reason != "feedback" || e.Rule != policy.RuleFeedback {
			t.Errorf("%s: %+v", c.fbType, e)
		}
		if _, ok := checked(t, w.l, "other", addr, w.clk.Now()); ok {
			t.Errorf("%s suppressed for another account", c.fbType)
		}
	}
	for _, b := range []policy.Bounce{
		{Recipient: "x@example.com", Reason: "feedback", FeedbackType: "not-spam"},
		{Recipient: "x@example.com", Reason: "vacation"},
	} {
		if r, ok := BounceResult("acme", "q", b); ok {
			t.Errorf("BounceResult(%+v) = %+v, want nothing to do", b, r)
		}
	}
	// A late hard bounce.
	r, ok := BounceResult("acme", "q11", policy.Bounce{Recipient: "late@example.com", Reason: "userunknown", Hard: true,
		Action: policy.ActionBounce, Rule: "user-unknown", Status: "5.1.1", Diagnostic: "550 5.1.1 no such user"})
	if !ok || r.Source != SourceLateBounce {
		t.Fatalf("late bounce: %+v", r)
	}
	if e, sup, _ := rec(r); !sup || e.Source != SourceLateBounce || e.Reply != "550 5.1.1 no such user" {
		t.Errorf("late bounce: %+v", e)
	}
	ops := map[Op]int{}
	for _, c := range changes {
		ops[c.Op]++
	}
	if ops[OpAdded] != 5 {
		t.Errorf("changes %v, want 5 additions (hard, soft, complaint, unsubscribe, late)", ops)
	}
}

func TestBounceScopeAccount(t *testing.T) {
	w := newWorld(t, Config{BounceScope: ScopeAccount})
	e, sup, _, err := w.l.Record(Result{Account: "acme", Address: "gone@example.com", Decision: decide("550 5.1.1 user unknown")}, t0)
	if err != nil || !sup || e.Scope != "acme" {
		t.Fatalf("%+v %v %v", e, sup, err)
	}
	if _, ok := checked(t, w.l, "other", "gone@example.com", t0); ok {
		t.Error("an account-scoped bounce suppressed for another account")
	}
}

func TestResultOutcome(t *testing.T) {
	for _, c := range []struct {
		r     Result
		want  Outcome
		final bool
	}{
		{Result{Source: SourceReply, Decision: decide("250 ok")}, Delivered, true},
		{Result{Source: SourceReply, Decision: decide("550 5.1.1 user unknown")}, HardBounce, true},
		{Result{Source: SourceReply, Decision: decide("550 5.7.1 listed at spamhaus")}, Other, true},
		{Result{Source: SourceReply, Decision: decide("452 4.2.2 mailbox full")}, 0, false},
		{Result{Source: SourceReply, Decision: decideFinal("452 4.2.2 mailbox full")}, Other, true},
		{Result{Source: SourceLateBounce, Decision: decideFinal("550 5.1.1 user unknown")}, HardBounce, true},
		{Result{Source: SourceLateBounce, Decision: decide("250 ok")}, 0, false},
		{Result{Source: SourceComplaint}, Complaint, true},
		{Result{Source: SourceUnsubscribe}, 0, false},
	} {
		got, final := c.r.Outcome()
		if final != c.final || (final && got != c.want) {
			t.Errorf("%s %+v: %v %v, want %v %v", c.r.Source, c.r.Decision, got, final, c.want, c.final)
		}
	}
}
