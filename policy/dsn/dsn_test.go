package dsn

import (
	"strings"
	"testing"
)

func TestDSNFields(t *testing.T) {
	body := `Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon, 3 Mar 2025 10:00:00 +0000

Final-Recipient: rfc822; <a@dest.example>
Action: failed
Status: 5.1.1 (user unknown)
Remote-MTA: dns; mx1.dest.example
Diagnostic-Code: smtp; 550 5.1.1 <a@dest.example>: Recipient address
    rejected: User unknown
Final-Recipient: RFC822;b@dest.example
Action: delayed
Status: 4.4.1
Original-Recipient: <orig-b@dest.example>

X-Actual-Recipient: rfc822; |/usr/bin/prog c@dest.example
Action: failed
Status: 5.0.0
`
	d := parseDSNFields([]byte(body))
	if d.reportingMTA != "mx.example.org" {
		t.Errorf("reporting MTA %q", d.reportingMTA)
	}
	if len(d.recipients) != 3 {
		t.Fatalf("got %d recipients: %+v", len(d.recipients), d.recipients)
	}
	a, b, c := d.recipients[0], d.recipients[1], d.recipients[2]
	if a.address() != "a@dest.example" || a.status != "5.1.1" || a.action != "failed" || a.remoteMTA != "mx1.dest.example" || a.diagType != "smtp" ||
		a.diagnostic != "550 5.1.1 <a@dest.example>: Recipient address rejected: User unknown" {
		t.Errorf("first: %+v", a)
	}
	if b.address() != "b@dest.example" || b.original != "orig-b@dest.example" || b.action != "delayed" || b.status != "4.4.1" {
		t.Errorf("second (no blank line before it): %+v", b)
	}
	if c.address() != "c@dest.example" {
		t.Errorf("third: %+v", c)
	}
}

func TestFeedback(t *testing.T) {
	fb := parseFeedback([]byte("Feedback-Type: Abuse\nUser-Agent: X/1\nVersion: 1\nOriginal-Rcpt-To: <a@x.example>\nOriginal-Rcpt-To: b@x.example\nSource-IP: 192.0.2.1\n"))
	if fb.Type != "abuse" || len(fb.OriginalRcptTo) != 2 || fb.OriginalRcptTo[0] != "a@x.example" || fb.SourceIP != "192.0.2.1" {
		t.Errorf("%+v", fb)
	}
}

func TestSplitOriginal(t *testing.T) {
	cases := []struct{ text, marker string }{
		{"error\n\n------ This is a copy of the message, including all the headers. ------\n\nFrom: a@b\n", "From: a@b"},
		{"error\n--- Below this line is a copy of the message.\n\nReturn-Path: <a@b>\n", "Return-Path: <a@b>"},
		{"error\n----- Original message -----\n\nReceived: x\n", "Received: x"},
		{"error\nMessage headers follow.\n\nSubject: hi\n", "Subject: hi"},
		{"error\n\nReturn-Path: <a@b>\nReceived: x\nMessage-ID: <1@b>\nSubject: s\n\nbody", "Return-Path: <a@b>"},
	}
	for _, tc := range cases {
		notice, orig := splitOriginal(tc.text)
		if !strings.HasPrefix(orig, tc.marker) || !strings.HasPrefix(notice, "error") || strings.Contains(notice, tc.marker) {
			t.Errorf("%q: notice %q orig %q", tc.text, notice, orig)
		}
	}
	// "The original message was received at ..." opens sendmail's notice;
	// it is not the returned message.
	if _, orig := splitOriginal("The original message was received at Mon\nfrom x\n\n<a@b.example>\n    (reason: 550 no)\n"); orig != "" {
		t.Errorf("cut at sendmail's first line: %q", orig)
	}
}

func TestRecipientBlocks(t *testing.T) {
	text := `I'm afraid I wasn't able to deliver your message to the following addresses.

<a@x.example>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 user unknown

<b@x.example>:
Sorry, no mailbox here by that name.

And a closing remark that belongs to nobody.`
	blocks := recipientBlocks(text, []string{"a@x.example", "b@x.example"})
	if !strings.Contains(blocks["a@x.example"], "550 5.1.1") || strings.Contains(blocks["a@x.example"], "no mailbox") {
		t.Errorf("a: %q", blocks["a@x.example"])
	}
	if !strings.Contains(blocks["b@x.example"], "no mailbox") || strings.Contains(blocks["b@x.example"], "closing remark") {
		t.Errorf("b: %q", blocks["b@x.example"])
	}
	shared := sharedText(text, blocks)
	if !strings.Contains(shared, "closing remark") || strings.Contains(shared, "user unknown") {
		t.Errorf("shared: %q", shared)
	}
}

func TestTranscriptReply(t *testing.T) {
	text := `... while talking to mx.example.jp.:
>>> RCPT To:<a@example.jp>
<<< 250 ok
>>> RCPT To:<b@example.jp>
<<< 550-5.1.1 no such
<<< 550 5.1.1 user
>>> DATA
<<< 554 no valid recipients`
	tr := readTranscript(text)
	if got := tr.replyFor("b@example.jp"); got != "550-5.1.1 no such 550 5.1.1 user" {
		t.Errorf("b: %q", got)
	}
	if got := tr.replyFor("c@example.jp"); got != "550-5.1.1 no such 550 5.1.1 user" {
		t.Errorf("not in the transcript: %q", got)
	}
}

func TestSplitMbox(t *testing.T) {
	one := "Subject: a\n\nbody\n"
	if got := SplitMbox([]byte(one)); len(got) != 1 {
		t.Errorf("plain message split in %d", len(got))
	}
	mbox := "From a@b Mon Jan 1 00:00:00 2024\nSubject: a\n\nbody\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: b\n\nbody\n"
	got := SplitMbox([]byte(mbox))
	if len(got) != 2 || !strings.Contains(string(got[1]), "Subject: b") || strings.Contains(string(got[0]), "Subject: b") {
		t.Errorf("%q", got)
	}
}

func TestSES(t *testing.T) {
	envelope := `{"Type":"Notification","Message":"{\"notificationType\":\"Complaint\",\"complaint\":{\"complainedRecipients\":[{\"emailAddress\":\"a@x.example\"}],\"complaintFeedbackType\":\"abuse\"}}"}`
	m, err := Parse([]byte("From: n@sns.example\nSubject: AWS Notification Message\n\n" + envelope + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindARF || len(m.Recipients) != 1 || m.Recipients[0].Address != "a@x.example" || m.Recipients[0].FeedbackType != "abuse" {
		t.Errorf("%+v", m)
	}
	// A notification folded by a mail system at 998 octets (sendmail's "!").
	folded := `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"b@x.exa!
 mple","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]}}`
	m, _ = Parse([]byte("From: n@sns.example\nSubject: AWS Notification Message\n\n" + folded + "\n"))
	if len(m.Recipients) != 1 || m.Recipients[0].Address != "b@x.example" || m.Recipients[0].Status != "5.1.1" {
		t.Errorf("folded: %+v", m.Recipients)
	}
}

func TestAutoReplyIsNotABounce(t *testing.T) {
	// Exim marks its bounces Auto-Submitted: auto-replied too (RFC 3834
	// section 5): a failure report wins.
	bounce := "From: Mail Delivery System <Mailer-Daemon@x.example>\nAuto-Submitted: auto-replied\nX-Failed-Recipients: a@dest.example\nSubject: Mail delivery failed\n\n  a@dest.example\n    retry timeout exceeded\n"
	m, _ := Parse([]byte(bounce))
	if m.Kind != KindDSN || len(m.Recipients) != 1 {
		t.Errorf("bounce read as %s: %+v", m.Kind, m.Recipients)
	}
	vacation := "From: Bob <bob@dest.example>\nAuto-Submitted: auto-replied\nSubject: Automatic reply: hello\n\nI am away.\n"
	m, _ = Parse([]byte(vacation))
	if m.Kind != KindAutoReply || len(m.Recipients) != 1 || m.Recipients[0].Address != "bob@dest.example" {
		t.Errorf("vacation read as %s: %+v", m.Kind, m.Recipients)
	}
}

func TestRepairs(t *testing.T) {
	// A Content-Type parameter that lost its folding whitespace.
	raw := "From: MAILER-DAEMON@x.example\nContent-Type: multipart/mixed;\nboundary=\"zz\"\n\n--zz\nContent-Type: text/plain\n\n<a@dest.example>: 550 5.1.1 user unknown\n--zz--\n"
	m, _ := Parse([]byte(raw))
	if len(m.Recipients) != 1 || m.Recipients[0].Address != "a@dest.example" {
		t.Errorf("bare boundary parameter: %+v", m.Recipients)
	}
	// A multipart body whose header lost Content-Type.
	raw = "From: MAILER-DAEMON@x.example\nSubject: Returned mail\n\nThis is a MIME-encapsulated message\n\n--b1.x/host\n\n<a@dest.example>\n    (reason: 550 user unknown)\n\n--b1.x/host\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@dest.example\nAction: failed\nStatus: 5.1.1\n\n--b1.x/host--\n"
	m, _ = Parse([]byte(raw))
	if m.Format != "rfc3464" || len(m.Recipients) != 1 || m.Recipients[0].Status != "5.1.1" {
		t.Errorf("lost Content-Type: %s %+v", m.Format, m.Recipients)
	}
	if got := decodeQP("a=3Db=\nc =ZZ"); got != "a=bc =ZZ" {
		t.Errorf("decodeQP: %q", got)
	}
}

func TestLimits(t *testing.T) {
	big := "From: MAILER-DAEMON@x.example\nSubject: Undelivered\n\n" + strings.Repeat("x", MaxSize+10)
	m, err := Parse([]byte(big))
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated {
		t.Error("not marked truncated")
	}
	if len(m.Text) > maxText {
		t.Errorf("text of %d bytes kept", len(m.Text))
	}
	if _, err := Parse([]byte("  \n ")); err != ErrEmpty {
		t.Errorf("empty: %v", err)
	}
}
