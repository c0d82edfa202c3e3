package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"kiln/internal/fakedns"
	"kiln/internal/fakemx"
)

// event is the part of an event-log line the suites look at.
type event struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Recipient string `json:"recipient"`
	Code      int    `json:"code"`
	Enhanced  string `json:"enhanced"`
	Reply     string `json:"reply"`
	Reason    string `json:"reason"`
	Hard      bool   `json:"hard"`
	Rule      string `json:"rule"`
}

// eventsOf reads the world's event log.
func (w *world) eventsOf() []event {
	var out []event
	for _, line := range w.events() {
		var e event
		if json.Unmarshal([]byte(line), &e) == nil && e.Type != "" {
			out = append(out, e)
		}
	}
	return out
}

// waitEvents waits until the event log holds an event of each type for each
// recipient named as "type rcpt", and returns the first of each.
func (w *world) waitEvents(t *testing.T, timeout time.Duration, want ...string) map[string]event {
	t.Helper()
	got := map[string]event{}
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range w.eventsOf() {
			k := e.Type + " " + e.Recipient
			if _, ok := got[k]; !ok {
				got[k] = e
			}
		}
		var missing []string
		for _, k := range want {
			if _, ok := got[k]; !ok {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event %q after %v; the log has:\n%s", missing, timeout, strings.Join(w.events(), "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *world) count(typ, rcpt string) int {
	n := 0
	for _, e := range w.eventsOf() {
		if e.Type == typ && e.Recipient == rcpt {
			n++
		}
	}
	return n
}

// Every remote fault of the core relay, once through the real binary: a
// remote that refuses connections, one that never answers, one that answers
// 421 at the greeting, one that drops the connection after the final dot,
// and mixed replies per recipient in one transaction. Temporary faults are
// deferred, never bounced; the dropped transaction is retried and arrives;
// each recipient of the mixed message gets its own outcome, the hard one a
// bounce notice to the sender. In the full run the dead remotes come back
// and their mail is delivered after kiln's pause for a dead destination.
func TestRemoteFaults(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.domain("refused.test", 3) // nothing listens on 127.0.0.3
	silent, err := fakemx.ListenRaw(fmt.Sprintf("127.0.0.4:%d", w.mxPort), fakemx.Silent)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	w.domain("silent.test", 4)
	busy := w.mx(5, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageConnect, Code: 421, Enhanced: "4.7.0", Text: "Too busy, try later"}}})
	w.domain("busy.test", 5)
	drop := w.mx(6, fakemx.Config{Rules: []fakemx.Rule{{Stage: fakemx.StageData, Drop: true, Times: 1}}})
	w.domain("drop.test", 6)
	mixed := w.mx(7, fakemx.Config{Rules: []fakemx.Rule{
		{Stage: fakemx.StageRcpt, Match: "soft@*", Code: 451, Enhanced: "4.3.0", Text: "try again later", Times: 1},
		{Stage: fakemx.StageRcpt, Match: "full@*", Code: 452, Enhanced: "4.2.2", Text: "mailbox full", Times: 1},
		{Stage: fakemx.StageRcpt, Match: "gone@*", Code: 550, Enhanced: "5.1.1", Text: "no such user"},
	}})
	w.domain("mixed.test", 7)
	senderMX := w.mx(8, fakemx.Config{})
	w.domain("sender.test", 8)
	d := w.start("")

	rc := dialRaw(t, d.submit)
	rc.must("EHLO app.test", 250)
	for _, r := range []string{"r@refused.test", "r@silent.test", "r@busy.test", "r@drop.test"} {
		if code, msg := rc.send("app@sender.test", []string{r}, message("app@sender.test", "<fault-"+r+">", "fault", 200)); code != 250 {
			t.Fatalf("%s: %d %s", r, code, msg)
		}
	}
	mixedRcpts := []string{"ok@mixed.test", "soft@mixed.test", "full@mixed.test", "gone@mixed.test"}
	if code, msg := rc.send("app@sender.test", mixedRcpts, message("app@sender.test", "<fault-mixed@e2e.test>", "mixed", 200)); code != 250 {
		t.Fatalf("mixed: %d %s", code, msg)
	}
	rc.cmd("QUIT")

	ev := w.waitEvents(t, 60*time.Second,
		"deferred r@refused.test", "deferred r@silent.test", "deferred r@busy.test",
		"deferred r@drop.test", "delivered r@drop.test",
		"delivered ok@mixed.test", "deferred soft@mixed.test", "delivered soft@mixed.test",
		"deferred full@mixed.test", "delivered full@mixed.test", "bounced gone@mixed.test")
	if e := ev["deferred r@refused.test"]; !strings.Contains(e.Reply, "refused") {
		t.Errorf("refused connection: %+v", e)
	}
	if e := ev["deferred r@busy.test"]; e.Code != 421 {
		t.Errorf("421 at greeting: %+v", e)
	}
	if e := ev["bounced gone@mixed.test"]; !e.Hard || e.Reason != "userunknown" || e.Code != 550 {
		t.Errorf("550 5.1.1: %+v", e)
	}
	if e := ev["deferred full@mixed.test"]; e.Reason != "mailboxfull" {
		t.Errorf("452 4.2.2: %+v", e)
	}
	for _, r := range []string{"r@refused.test", "r@silent.test", "r@busy.test", "r@drop.test", "ok@mixed.test", "soft@mixed.test", "full@mixed.test"} {
		if n := w.count("bounced", r); n != 0 {
			t.Errorf("%s bounced on a temporary fault", r)
		}
	}
	// The drop after the dot left the outcome unknown: one retry, and the
	// message arrived (twice at most: the first copy may have counted).
	if n := len(drop.Attempts()); n != 2 {
		t.Errorf("drop.test saw %d attempts, want 2", n)
	}
	// Each mixed recipient got the message once; the hard one got a notice.
	count := map[string]int{}
	for _, m := range mixed.Messages() {
		for _, r := range m.Rcpts {
			count[r]++
		}
	}
	for _, r := range mixedRcpts[:3] {
		if count[r] != 1 {
			t.Errorf("%s received the message %d times", r, count[r])
		}
	}
	if count["gone@mixed.test"] != 0 {
		t.Errorf("gone@ received the message")
	}
	notice := senderMX.WaitMessages(t, 1)[0]
	if notice.From != "" || !bytes.Contains(notice.Data, []byte("Final-Recipient: rfc822; gone@mixed.test")) {
		t.Errorf("bounce notice from %q:\n%s", notice.From, notice.Data)
	}
	if n := len(busy.Messages()); n != 0 {
		t.Errorf("the 421 remote got %d messages", n)
	}

	if !fullRun() {
		report(t, "refused, silent and 421 remotes deferred; drop after the dot retried and delivered; mixed replies: delivered, 2 deferred then delivered, 1 bounced with a notice")
		return
	}
	// The dead remotes come back: their mail goes out once kiln tries the
	// destinations again (it leaves a dead one alone for a minute).
	silent.Close()
	mxs := []*fakemx.Server{w.mx(3, fakemx.Config{}), w.mx(4, fakemx.Config{})}
	busy.SetRules()
	w.waitEvents(t, 5*time.Minute, "delivered r@refused.test", "delivered r@silent.test", "delivered r@busy.test")
	for i, mx := range append(mxs, busy) {
		if n := len(mx.Messages()); n != 1 {
			t.Errorf("remote %d got %d messages once back, want 1", i, n)
		}
	}
	report(t, "refused, silent and 421 remotes deferred, then delivered once back; drop after the dot retried and delivered; mixed replies: delivered, 2 deferred then delivered, 1 bounced with a notice")
}

// DNS faults through the real binary: SERVFAIL, REFUSED and a server that
// never answers defer the message (they say nothing about the domain);
// NXDOMAIN and a null MX bounce it at once with 550 5.1.2 and 556 5.1.10 and
// a notice to the sender. In the full run the broken zones are repaired and
// the deferred mail is delivered.
func TestDNSFaults(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	senderMX := w.mx(8, fakemx.Config{})
	w.domain("sender.test", 8)
	w.dns.AddNullMX("nomail.test")
	w.dns.SetFault("servfail.test", fakedns.ServFail)
	w.dns.SetFault("refused.test", fakedns.Refused)
	w.dns.SetFault("timeout.test", fakedns.Timeout)
	d := w.start("")
	rc := dialRaw(t, d.submit)
	rc.must("EHLO app.test", 250)
	rcpts := []string{"r@servfail.test", "r@refused.test", "r@timeout.test", "r@nxdomain.test", "r@nomail.test"}
	for _, r := range rcpts {
		if code, msg := rc.send("app@sender.test", []string{r}, message("app@sender.test", "<dns-"+r+">", "dns", 200)); code != 250 {
			t.Fatalf("%s: %d %s", r, code, msg)
		}
	}
	rc.cmd("QUIT")
	ev := w.waitEvents(t, 90*time.Second, "deferred r@servfail.test", "deferred r@refused.test", "deferred r@timeout.test",
		"bounced r@nxdomain.test", "bounced r@nomail.test")
	if e := ev["bounced r@nxdomain.test"]; !e.Hard || e.Reason != "hostunknown" || e.Code != 550 || e.Enhanced != "5.1.2" {
		t.Errorf("NXDOMAIN: %+v", e)
	}
	if e := ev["bounced r@nomail.test"]; e.Code != 556 || e.Enhanced != "5.1.10" {
		t.Errorf("null MX: %+v", e)
	}
	for _, r := range rcpts[:3] {
		if w.count("bounced", r) != 0 {
			t.Errorf("%s bounced on a resolver failure", r)
		}
	}
	notices := senderMX.WaitMessages(t, 2)
	var all []byte
	for _, n := range notices {
		all = append(all, n.Data...)
	}
	for _, r := range rcpts[3:] {
		if !bytes.Contains(all, []byte("Final-Recipient: rfc822; "+r)) {
			t.Errorf("no bounce notice names %s", r)
		}
	}
	if !fullRun() {
		report(t, "SERVFAIL, REFUSED and timeout deferred; NXDOMAIN bounced 550 5.1.2, null MX 556 5.1.10, each with a notice")
		return
	}
	mx := w.mx(2, fakemx.Config{})
	for _, dom := range []string{"servfail.test", "refused.test", "timeout.test"} {
		w.dns.SetFault(dom, fakedns.None)
		w.domain(dom, 2)
	}
	w.waitEvents(t, 5*time.Minute, "delivered r@servfail.test", "delivered r@refused.test", "delivered r@timeout.test")
	if n := len(mx.Messages()); n != 3 {
		t.Errorf("%d messages arrived once DNS was repaired, want 3", n)
	}
	report(t, "SERVFAIL, REFUSED and timeout deferred, then delivered once DNS answered; NXDOMAIN bounced 550 5.1.2, null MX 556 5.1.10, each with a notice")
}
