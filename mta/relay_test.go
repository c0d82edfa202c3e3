package mta

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"kiln/configs"
	"kiln/events"
	"kiln/internal/fakemx"
	"kiln/queue"
)

// A message from a trusted client reaches the recipient's MX, once, with
// kiln's Received header on top and its own headers intact.
func TestRelayToMX(t *testing.T) {
	w := newWorld(t, nil)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	code, msg := c.send("app@sender.test", []string{"rcpt@dest.test"}, msgText("app@sender.test", "relay"))
	if code != 250 || !strings.Contains(msg, "queued as") {
		t.Fatalf("DATA reply %d %s", code, msg)
	}
	got := mx.WaitMessages(t, 1)[0]
	if got.From != "app@sender.test" || len(got.Rcpts) != 1 || got.Rcpts[0] != "rcpt@dest.test" {
		t.Errorf("envelope %q -> %v", got.From, got.Rcpts)
	}
	if !bytes.HasPrefix(got.Data, []byte("Received: from app.test ([127.0.0.1])\r\n\tby kiln.test (kiln) with ESMTP id ")) {
		t.Errorf("no Received header first:\n%s", got.Data)
	}
	for _, h := range []string{"Message-ID: <", "Date: ", "Subject: relay\r\n"} {
		if !bytes.Contains(got.Data, []byte(h)) {
			t.Errorf("relayed message lacks %q", h)
		}
	}
	if !got.TLS {
		t.Error("delivery did not use the offered STARTTLS")
	}
	if got.Helo != "kiln.test" {
		t.Errorf("EHLO name %q", got.Helo)
	}
	w.waitEvent("delivered", typed(events.Delivered, "rcpt@dest.test"))
	// The queue is empty once the only recipient is done.
	waitFor(t, "queue to drain", func() bool { n, _, _ := w.srv.store.Count(); return n == 0 })
	if n := w.count(typed(events.Delivered, "")); n != 1 {
		t.Errorf("%d delivered events", n)
	}
}

// Several recipients of one domain go in one transaction; a recipient the
// remote refuses with 4xx is retried (and delivered later), one refused with
// 5xx bounces, and the sender gets one notice for it.
func TestPerRecipientOutcomes(t *testing.T) {
	w := newWorld(t, nil)
	mx := w.mx(2, fakemx.Config{Rules: []fakemx.Rule{
		{Stage: fakemx.StageRcpt, Match: "soft@*", Code: 450, Enhanced: "4.2.1", Text: "try again later", Times: 1},
		{Stage: fakemx.StageRcpt, Match: "hard@*", Code: 550, Enhanced: "5.1.1", Text: "user unknown"},
	}})
	w.domain("dest.test", 2)
	w.domain("sender.test", 3)
	notices := w.mx(3, fakemx.Config{})
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	if code, msg := c.send("app@sender.test", []string{"ok@dest.test", "soft@dest.test", "hard@dest.test"}, msgText("app@sender.test", "mixed")); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	first := mx.WaitMessages(t, 1)[0]
	if len(first.Rcpts) != 1 || first.Rcpts[0] != "ok@dest.test" {
		t.Fatalf("first transaction carried %v", first.Rcpts)
	}
	w.waitEvent("bounce", typed(events.Bounced, "hard@dest.test"))
	def := w.waitEvent("deferral", typed(events.Deferred, "soft@dest.test"))
	if def.Code != 450 || !strings.Contains(def.Reply, "try again later") || def.Next == nil {
		t.Errorf("deferred event %+v", def)
	}
	// The notice for the bounce goes to the sender's MX with the null sender.
	n := notices.WaitMessages(t, 1)[0]
	if n.From != "" || n.Rcpts[0] != "app@sender.test" {
		t.Errorf("notice envelope %q -> %v", n.From, n.Rcpts)
	}
	for _, want := range []string{"multipart/report; report-type=delivery-status", "Final-Recipient: rfc822; hard@dest.test",
		"Status: 5.1.1", "Action: failed", "Diagnostic-Code: smtp; 550 5.1.1", "Subject: mixed"} {
		if !bytes.Contains(n.Data, []byte(want)) {
			t.Errorf("notice lacks %q:\n%s", want, n.Data)
		}
	}
	if bytes.Contains(n.Data, []byte("soft@dest.test")) || bytes.Contains(n.Data, []byte("ok@dest.test")) {
		t.Error("notice names recipients that did not fail")
	}
	// Nothing more happens before the retry time; then the soft recipient
	// (and only it) is tried again and delivered.
	w.advance(4 * time.Minute)
	if len(mx.Messages()) != 1 {
		t.Fatalf("retried before the backoff: %d messages", len(mx.Messages()))
	}
	w.advance(2 * time.Minute)
	second := mx.WaitMessages(t, 2)[1]
	if len(second.Rcpts) != 1 || second.Rcpts[0] != "soft@dest.test" {
		t.Fatalf("retry carried %v", second.Rcpts)
	}
	w.waitEvent("delivery after retry", typed(events.Delivered, "soft@dest.test"))
	waitFor(t, "queue to drain", func() bool { n, _, _ := w.srv.store.Count(); return n == 0 })
	if n := w.count(typed(events.Delivered, "ok@dest.test")); n != 1 {
		t.Errorf("ok@ delivered %d times", n)
	}
}

// A message still failing at its maximum age is bounced as expired, with a
// 4.4.7 notice.
func TestExpiry(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) { c.Queue.MaxAge = configs.Duration(time.Hour) })
	w.mx(2, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageRcpt, Code: 451, Enhanced: "4.3.0", Text: "not now"}}})
	w.domain("dest.test", 2)
	w.domain("sender.test", 3)
	notices := w.mx(3, fakemx.Config{})
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.send("app@sender.test", []string{"r@dest.test"}, msgText("app@sender.test", "doomed"))
	w.waitEvent("first deferral", typed(events.Deferred, "r@dest.test"))
	for i := 0; i < 12 && w.count(typed(events.Expired, "r@dest.test")) == 0; i++ {
		w.advance(10 * time.Minute)
	}
	w.waitEvent("expiry", typed(events.Expired, "r@dest.test"))
	n := notices.WaitMessages(t, 1)[0]
	if !bytes.Contains(n.Data, []byte("Status: 4.4.7")) || !bytes.Contains(n.Data, []byte("451 4.3.0 not now")) {
		t.Errorf("expiry notice:\n%s", n.Data)
	}
	if d := w.count(typed(events.Deferred, "r@dest.test")); d < 2 {
		t.Errorf("only %d attempts before expiry", d)
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ = queue.RcptPending
