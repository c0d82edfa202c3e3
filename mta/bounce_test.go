package mta

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"kiln/configs"
	"kiln/events"
	"kiln/internal/fakemx"
	"kiln/policy/suppress"
)

func suppressed(w *world, account, addr string) (suppress.Entry, bool) {
	e, ok, err := w.srv.suppress.Check(account, addr, w.clk.Now())
	if err != nil {
		w.t.Fatal(err)
	}
	return e, ok
}

func TestHardBounceSuppressesAndBlocklistDoesNot(t *testing.T) {
	w := newWorld(t, nil)
	w.mx(2, fakemx.Config{Rules: []fakemx.Rule{
		{Stage: fakemx.StageRcpt, Match: "gone@*", Code: 550, Enhanced: "5.1.1", Text: "The email account that you tried to reach does not exist"},
		{Stage: fakemx.StageRcpt, Match: "fine@*", Code: 550, Enhanced: "5.7.1", Text: "Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"},
	}})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.send("app@sender.test", []string{"gone@dest.test"}, msgText("app@sender.test", "1"))
	c.send("app@sender.test", []string{"fine@dest.test"}, msgText("app@sender.test", "2"))
	w.waitEvent("bounce of gone@", typed(events.Bounced, "gone@dest.test"))
	bl := w.waitEvent("bounce of fine@", typed(events.Bounced, "fine@dest.test"))
	if bl.Hard || bl.Reason != "blocked" {
		t.Errorf("blocklist bounce read as %s hard=%v (rule %s)", bl.Reason, bl.Hard, bl.Rule)
	}
	w.waitEvent("suppression", typed(events.Suppressed, "gone@dest.test"))
	if e, ok := suppressed(w, "", "gone@dest.test"); !ok || e.Reason != "userunknown" || e.Source != suppress.SourceReply {
		t.Fatalf("gone@ not suppressed as userunknown: %+v %v", e, ok)
	}
	// The sender's fault never punishes the address (invariant 5).
	if _, ok := suppressed(w, "", "fine@dest.test"); ok {
		t.Fatal("a blocklist refusal suppressed the recipient")
	}
	// The next submission to the suppressed address is refused at RCPT.
	c.must("MAIL FROM:<app@sender.test>", 250)
	code, msg := c.cmd("RCPT TO:<gone@dest.test>")
	if code != 550 || !strings.Contains(msg, "5.7.1") || !strings.Contains(strings.ToLower(msg), "suppress") {
		t.Fatalf("suppressed recipient: %d %s", code, msg)
	}
	c.must("RCPT TO:<fine@dest.test>", 250)
}

func TestSuppressedRecipientDroppedWhenConfigured(t *testing.T) {
	w := newWorld(t, func(c *configs.Config) { c.Suppression.RcptAction = suppress.RcptDrop })
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	if _, _, err := w.srv.suppress.Add(suppress.Entry{Address: "no@dest.test", Reason: "userunknown", Source: suppress.SourceManual, Created: w.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	if code, msg := c.send("app@sender.test", []string{"no@dest.test", "yes@dest.test"}, msgText("app@sender.test", "x")); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	got := mx.WaitMessages(t, 1)[0]
	if len(got.Rcpts) != 1 || got.Rcpts[0] != "yes@dest.test" {
		t.Fatalf("delivered to %v", got.Rcpts)
	}
	w.waitEvent("drop", typed(events.Dropped, "no@dest.test"))
}

func TestRepeatedMailboxFullSuppresses(t *testing.T) {
	w := newWorld(t, nil)
	w.mx(2, fakemx.Config{Rules: []fakemx.Rule{
		{Stage: fakemx.StageRcpt, Match: "full@*", Code: 452, Enhanced: "4.2.2", Text: "The email account that you tried to reach is over quota"},
	}})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	for i := 0; i < 3; i++ {
		c.send("app@sender.test", []string{"full@dest.test"}, msgText("app@sender.test", fmt.Sprint(i)))
		waitFor(t, "a deferral", func() bool { return w.count(typed(events.Deferred, "full@dest.test")) > i })
		if i < 2 {
			if _, ok := suppressed(w, "", "full@dest.test"); ok {
				t.Fatalf("suppressed after %d soft failures", i+1)
			}
		}
	}
	w.waitEvent("suppression", typed(events.Suppressed, "full@dest.test"))
	e, ok := suppressed(w, "", "full@dest.test")
	if !ok || e.Source != suppress.SourceSoftFailure || e.Expires.IsZero() {
		t.Fatalf("want a soft-failure suppression with an expiry, got %+v %v", e, ok)
	}
}

// bounceWorld turns VERP on with a bounce listener, and delivers one message
// to rcpt so a report can come back to its return path.
func bounceWorld(t *testing.T, rcpt string) (*world, string, string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bounceAddr := l.Addr().String()
	l.Close()
	w := newWorld(t, func(c *configs.Config) {
		untrusted(c)
		c.Accounts[0].SenderDomains = []string{"sender.test"}
		c.Bounce.Domain = "bounces.kiln.test"
		c.Bounce.Listen = []configs.HostPort{configs.HostPort(bounceAddr)}
	})
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
	if code, msg := c.send("news@sender.test", []string{rcpt}, msgText("news@sender.test", "campaign")); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	got := mx.WaitMessages(t, 1)[0]
	if !strings.HasPrefix(got.From, "b-") || !strings.HasSuffix(got.From, "@bounces.kiln.test") {
		t.Fatalf("return path %q is not a VERP address", got.From)
	}
	w.waitEvent("delivery", typed(events.Delivered, rcpt))
	return w, bounceAddr, got.From
}

func sendReport(t *testing.T, addr, to, report string) (int, string) {
	c := dialSMTP(t, addr)
	c.must("EHLO mx.dest.test", 250)
	c.must("MAIL FROM:<>", 250)
	code, msg := c.cmd("RCPT TO:<" + to + ">")
	if code != 250 {
		return code, msg
	}
	c.must("DATA", 354)
	c.raw(strings.ReplaceAll(report, "\n", "\r\n") + ".\r\n")
	return c.reply()
}

func TestLateDSNSuppresses(t *testing.T) {
	w, bounceAddr, rp := bounceWorld(t, "ann@dest.test")
	dsn := `From: Mail Delivery System <MAILER-DAEMON@mx.dest.test>
To: <` + rp + `>
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Your message could not be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.dest.test

Final-Recipient: rfc822; ann@dest.test
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <ann@dest.test>: Recipient address rejected: User unknown in virtual mailbox table

--b1--
`
	if code, msg := sendReport(t, bounceAddr, rp, dsn); code != 250 {
		t.Fatalf("report refused: %d %s", code, msg)
	}
	w.waitEvent("suppression", typed(events.Suppressed, "ann@dest.test"))
	e, ok := suppressed(w, "news", "ann@dest.test")
	if !ok || e.Source != suppress.SourceLateBounce || e.Reason != "userunknown" {
		t.Fatalf("want a late-bounce suppression, got %+v %v", e, ok)
	}
}

func TestComplaintSuppressesForTheAccount(t *testing.T) {
	w, bounceAddr, rp := bounceWorld(t, "bob@dest.test")
	arf := `From: feedback@dest.test
To: <` + rp + `>
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="b2"

--b2
Content-Type: text/plain

This is an abuse report.

--b2
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: FBL/1.0
Version: 1
Original-Rcpt-To: bob@dest.test

--b2
Content-Type: message/rfc822

From: news@sender.test
To: bob@dest.test
Subject: campaign

Hello.
--b2--
`
	if code, msg := sendReport(t, bounceAddr, rp, arf); code != 250 {
		t.Fatalf("report refused: %d %s", code, msg)
	}
	w.waitEvent("complaint", typed(events.Complaint, "bob@dest.test"))
	w.waitEvent("suppression", typed(events.Suppressed, "bob@dest.test"))
	e, ok := suppressed(w, "news", "bob@dest.test")
	if !ok || e.Source != suppress.SourceComplaint || e.Scope != "news" {
		t.Fatalf("want a complaint suppression in the account's scope, got %+v %v", e, ok)
	}
	if _, ok := suppressed(w, "other-account", "bob@dest.test"); ok {
		t.Fatal("a complaint about one account's mail suppressed the address for everyone")
	}
}

func TestForgedBounceIsRefused(t *testing.T) {
	w, bounceAddr, rp := bounceWorld(t, "carol@dest.test")
	forged := "b-" + rp[2:18] + "-" + rcptHash("carol@dest.test") + "-000000000000@bounces.kiln.test"
	for _, to := range []string{forged, "postmaster@bounces.kiln.test", "someone@elsewhere.test"} {
		code, msg := sendReport(t, bounceAddr, to, "Subject: x\n\nx\n")
		if code/100 != 5 {
			t.Errorf("RCPT %s: %d %s", to, code, msg)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if _, ok := suppressed(w, "news", "carol@dest.test"); ok {
		t.Fatal("a forged report suppressed the recipient")
	}
}
