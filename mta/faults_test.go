package mta

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"kiln/events"
	"kiln/internal/fakedns"
	"kiln/internal/fakemx"
)

// Each remote fault of the core relay ends in the right outcome: temporary
// faults are deferred and retried, never bounced; only DNS answers that prove
// a domain cannot receive mail are permanent.

func sendOne(t *testing.T, w *world, rcpt string) {
	t.Helper()
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	if code, msg := c.send("app@sender.test", []string{rcpt}, msgText("app@sender.test", "fault")); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	c.must("QUIT", 221)
}

func TestRemoteRefusesConnection(t *testing.T) {
	w := newWorld(t, nil)
	w.domain("down.test", 7) // nothing listens on 127.0.0.7
	sendOne(t, w, "r@down.test")
	ev := w.waitEvent("deferral", typed(events.Deferred, "r@down.test"))
	if !strings.Contains(ev.Reply, "refused") || ev.Code != 0 {
		t.Errorf("deferral %+v", ev)
	}
	if w.count(typed(events.Bounced, "")) != 0 {
		t.Fatal("a refused connection bounced the message")
	}
	// When the remote comes back, the retry delivers.
	mx := w.mx(7, fakemx.Config{})
	w.advance(6 * time.Minute)
	mx.WaitMessages(t, 1)
	w.waitEvent("delivery", typed(events.Delivered, "r@down.test"))
}

func TestRemoteNeverAnswers(t *testing.T) {
	w := newWorld(t, nil)
	silent, err := fakemx.ListenRaw(fmt.Sprintf("127.0.0.8:%s", w.port), fakemx.Silent)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	w.domain("silent.test", 8)
	sendOne(t, w, "r@silent.test")
	ev := w.waitEvent("deferral", typed(events.Deferred, "r@silent.test"))
	if ev.Code != 0 {
		t.Errorf("deferral %+v", ev)
	}
}

func TestGreeting421TriesTheNextMX(t *testing.T) {
	w := newWorld(t, nil)
	w.mx(2, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageConnect, Code: 421, Enhanced: "4.7.0", Text: "Too busy, try later"}}})
	backup := w.mx(3, fakemx.Config{})
	w.dns.AddMX("two.test", 10, "mx-a.two.test")
	w.dns.AddMX("two.test", 20, "mx-b.two.test")
	w.dns.AddA("mx-a.two.test", "127.0.0.2")
	w.dns.AddA("mx-b.two.test", "127.0.0.3")
	sendOne(t, w, "r@two.test")
	backup.WaitMessages(t, 1)
	ev := w.waitEvent("delivery", typed(events.Delivered, "r@two.test"))
	if ev.RemoteHost != "mx-b.two.test" {
		t.Errorf("delivered by %q", ev.RemoteHost)
	}
}

func TestGreeting421Everywhere(t *testing.T) {
	w := newWorld(t, nil)
	w.mx(2, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageConnect, Code: 421, Enhanced: "4.7.0", Text: "Too busy, try later"}}})
	w.domain("busy.test", 2)
	sendOne(t, w, "r@busy.test")
	ev := w.waitEvent("deferral", typed(events.Deferred, "r@busy.test"))
	if ev.Code != 421 {
		t.Errorf("deferral %+v", ev)
	}
}

// A connection dropped after the final dot leaves the outcome unknown: kiln
// retries (RFC 5321 §6.1 accepts the possible duplicate over a loss).
func TestDropAfterData(t *testing.T) {
	w := newWorld(t, nil)
	mx := w.mx(2, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageData, Drop: true, Times: 1}}})
	w.domain("dest.test", 2)
	sendOne(t, w, "r@dest.test")
	ev := w.waitEvent("deferral", typed(events.Deferred, "r@dest.test"))
	if ev.Code != 0 {
		t.Errorf("deferral %+v", ev)
	}
	w.advance(6 * time.Minute)
	w.waitEvent("delivery", typed(events.Delivered, "r@dest.test"))
	if n := len(mx.Attempts()); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
}

func TestDNSFaults(t *testing.T) {
	w := newWorld(t, nil)
	w.dns.AddNullMX("nomail.test")
	w.dns.SetFault("servfail.test", fakedns.ServFail)
	w.dns.SetFault("refused.test", fakedns.Refused)
	for _, r := range []string{"r@nxdomain.test", "r@nomail.test", "r@servfail.test", "r@refused.test"} {
		sendOne(t, w, r)
	}
	nx := w.waitEvent("NXDOMAIN bounce", typed(events.Bounced, "r@nxdomain.test"))
	if !nx.Hard || nx.Reason != "hostunknown" {
		t.Errorf("NXDOMAIN: %+v", nx)
	}
	null := w.waitEvent("null MX bounce", typed(events.Bounced, "r@nomail.test"))
	if null.Code != 556 || null.Enhanced != "5.1.10" {
		t.Errorf("null MX: %+v", null)
	}
	// SERVFAIL and REFUSED say nothing about the domain: deferred.
	w.waitEvent("SERVFAIL deferral", typed(events.Deferred, "r@servfail.test"))
	w.waitEvent("REFUSED deferral", typed(events.Deferred, "r@refused.test"))
	for _, r := range []string{"r@servfail.test", "r@refused.test"} {
		if w.count(typed(events.Bounced, r)) != 0 {
			t.Errorf("%s bounced on a resolver failure", r)
		}
	}
}
