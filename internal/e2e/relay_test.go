package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"kiln/internal/fakemx"
)

// swaks injects mail into the real binary; every message arrives once at the
// fake MX, a recipient refused with 4xx is retried until it is delivered,
// and one refused with 5xx bounces with a notice to the sender.
func TestSwaksRelay(t *testing.T) {
	swaks := needTool(t, "swaks")
	w := newWorld(t)
	dest := w.mx(2, fakemx.Config{Rules: []fakemx.Rule{
		{Stage: fakemx.StageRcpt, Match: "soft@*", Code: 451, Enhanced: "4.3.0", Text: "try later", Times: 2},
		{Stage: fakemx.StageRcpt, Match: "hard@*", Code: 550, Enhanced: "5.1.1", Text: "no such user"},
	}})
	senderMX := w.mx(3, fakemx.Config{})
	w.domain("dest.test", 2)
	w.domain("sender.test", 3)
	d := w.start("")
	rcpts := []string{"ok1@dest.test", "ok2@dest.test", "ok3@dest.test", "soft@dest.test", "hard@dest.test"}
	for i, r := range rcpts {
		out, err := exec.Command(swaks, "--server", d.submit, "--from", "app@sender.test", "--to", r,
			"--header", fmt.Sprintf("Message-ID: <swaks-%d@e2e.test>", i), "--timeout", "20s").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks to %s: %v\n%s", r, err, out)
		}
		if !bytes.Contains(out, []byte("250 2.0.0 OK: queued as")) {
			t.Fatalf("swaks to %s: no 250:\n%s", r, out)
		}
	}
	waitUntil(t, "four deliveries", 60*time.Second, func() bool { return len(dest.Messages()) >= 4 })
	ids := messageIDs(dest.Messages())
	for i := 0; i < 4; i++ {
		if n := ids[fmt.Sprintf("<swaks-%d@e2e.test>", i)]; n != 1 {
			t.Errorf("message %d (%s) arrived %d times", i, rcpts[i], n)
		}
	}
	notice := senderMX.WaitMessages(t, 1)[0]
	if notice.From != "" || !bytes.Contains(notice.Data, []byte("Final-Recipient: rfc822; hard@dest.test")) {
		t.Errorf("bounce notice: from %q\n%s", notice.From, notice.Data)
	}
	ev := strings.Join(w.events(), "\n")
	if n := strings.Count(ev, `"type":"deferred","id"`); n < 2 {
		t.Errorf("want at least 2 deferrals of soft@, event log has %d", n)
	}
	if !strings.Contains(ev, `"type":"bounced"`) || !strings.Contains(ev, `"recipient":"hard@dest.test"`) {
		t.Errorf("no bounce event for hard@")
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(dest.Messages()); n != 4 {
		t.Errorf("dest MX has %d messages, want 4", n)
	}
}

// Postfix's smtp-source pushes a few hundred messages over parallel
// sessions; each arrives exactly once.
func TestSmtpSourceRelay(t *testing.T) {
	src := needTool(t, "smtp-source", "/usr/sbin/smtp-source")
	w := newWorld(t)
	dest := w.mx(2, fakemx.Config{Discard: false})
	w.domain("dest.test", 2)
	d := w.start("")
	const n = 300
	out, err := exec.Command(src, "-s", "10", "-m", fmt.Sprint(n), "-l", "2048", "-f", "app@sender.test",
		"-t", "rcpt@dest.test", d.submit).CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}
	waitUntil(t, fmt.Sprintf("%d deliveries", n), 60*time.Second, func() bool { return len(dest.Messages()) >= n })
	time.Sleep(500 * time.Millisecond)
	if got := len(dest.Messages()); got != n {
		t.Fatalf("dest MX got %d messages, want %d", got, n)
	}
	for _, m := range dest.Messages() {
		if m.BareCRLF() != 0 {
			t.Fatalf("a relayed message has bare line endings")
		}
	}
}
