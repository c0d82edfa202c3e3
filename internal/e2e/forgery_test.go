package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/events/webhook"
	"kiln/internal/fakemx"
)

// flip changes the character at i of s to another one of the same kind, so
// the result still looks well-formed.
func flip(s string, i int) string {
	b := []byte(s)
	switch c := b[i]; {
	case c >= '0' && c <= '8', c >= 'a' && c <= 'y', c >= 'A' && c <= 'Y':
		b[i]++
	default:
		b[i] = '0'
	}
	return string(b)
}

// suppressed asks the admin API whether an address is suppressed (for an
// account, or globally with account "").
func suppressed(t *testing.T, d *daemon, key, account, addr string) bool {
	t.Helper()
	var r struct{ Suppressed bool }
	adminJSON(t, d, key, "/api/v1/suppressions/check?address="+url.QueryEscape(addr)+"&account="+url.QueryEscape(account), &r)
	return r.Suppressed
}

// reportTo sends a bounce report to a listener from the null sender and
// returns the reply to RCPT, or to the final dot when RCPT was accepted.
func reportTo(t *testing.T, addr, to, report string) (int, string) {
	rc := dialRaw(t, addr)
	defer rc.cmd("QUIT")
	rc.must("EHLO mx.dest.test", 250)
	rc.must("MAIL FROM:<>", 250)
	if code, msg := rc.cmd("RCPT TO:<" + to + ">"); code != 250 {
		return code, msg
	}
	rc.must("DATA", 354)
	rc.raw(strings.ReplaceAll(report, "\n", "\r\n") + ".\r\n")
	return rc.reply()
}

func dsn(rp, rcpt string) string {
	return `From: Mail Delivery System <MAILER-DAEMON@mx.dest.test>
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

Final-Recipient: rfc822; ` + rcpt + `
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <` + rcpt + `>: user unknown

--b1--
`
}

// Forged VERP bounces: kiln's bounce listener takes a report only for a
// return path it signed. A forged signature, a forged recipient part, a
// made-up token, postmaster and another domain are refused at RCPT and
// suppress nobody; a genuine token cannot suppress an address other than
// its own; the genuine report suppresses its recipient.
func TestForgedBounces(t *testing.T) {
	w := newWorld(t)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	bounceAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := w.start(fmt.Sprintf(`
[bounce]
domain = "bounces.kiln.test"
listen = [%q]
`, bounceAddr))
	if _, err := submit(d.submit, "app@sender.test", "carol@dest.test", "<verp@e2e.test>"); err != nil {
		t.Fatal(err)
	}
	rp := mx.WaitMessages(t, 1)[0].From
	m := regexp.MustCompile(`^b-([^-]+)-([^-]+)-([^-@]+)@bounces\.kiln\.test$`).FindStringSubmatch(rp)
	if m == nil {
		t.Fatalf("return path %q is not kiln's VERP address", rp)
	}
	id, rh, mac := m[1], m[2], m[3]
	forged := map[string]string{
		"forged signature":    "b-" + id + "-" + rh + "-" + flip(mac, len(mac)/2) + "@bounces.kiln.test",
		"forged recipient":    "b-" + id + "-" + flip(rh, 0) + "-" + mac + "@bounces.kiln.test",
		"forged message":      "b-" + flip(id, len(id)-1) + "-" + rh + "-" + mac + "@bounces.kiln.test",
		"made-up token":       "b-0123456789abcdef-00000000-0000000000000000@bounces.kiln.test",
		"postmaster":          "postmaster@bounces.kiln.test",
		"another domain":      "carol@elsewhere.test",
		"truncated signature": "b-" + id + "-" + rh + "-" + mac[:len(mac)-2] + "@bounces.kiln.test",
	}
	for what, to := range forged {
		if to == rp {
			continue // the case changed nothing (an all-digit mac)
		}
		if code, msg := reportTo(t, bounceAddr, to, dsn(to, "carol@dest.test")); code/100 != 5 {
			t.Errorf("%s (%s): %d %s", what, to, code, msg)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if suppressed(t, d, "", "", "carol@dest.test") {
		t.Fatal("a forged report suppressed carol")
	}
	// The genuine return path names its recipient: a report that arrives
	// there counts for carol, whatever address it names (a forwarded
	// mailbox bounces under another name), and never for the one it names.
	if code, msg := reportTo(t, bounceAddr, rp, dsn(rp, "dave@dest.test")); code != 250 {
		t.Fatalf("genuine report: %d %s", code, msg)
	}
	waitUntil(t, "the genuine report to suppress carol", 10*time.Second, func() bool {
		return suppressed(t, d, "", "", "carol@dest.test")
	})
	if suppressed(t, d, "", "", "dave@dest.test") {
		t.Error("a report through carol's return path suppressed dave, whom it named")
	}
	report(t, "%d forged return paths refused at RCPT and suppressed nobody; the genuine one suppressed its own recipient, not the address its report named", len(forged))
}

// Forged unsubscribe tokens: a POST to a tampered one-click link, to a
// made-up one, or a mail to a tampered List-Unsubscribe mailto changes
// nothing; opening the genuine link (a GET, as a link scanner does)
// changes nothing; the genuine POST unsubscribes the address for the
// account.
func TestForgedUnsubscribe(t *testing.T) {
	w := newWorld(t)
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	unsubAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	bounceAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := w.start(fmt.Sprintf(`
[unsubscribe]
url = "http://%s"
listen = %q
[bounce]
domain = "bounces.kiln.test"
listen = [%q]
`, unsubAddr, unsubAddr, bounceAddr) + accountTOML(t, "unsubscribe = true"))

	rc := dialRaw(t, d.submit)
	rc.must("EHLO app.test", 250)
	rc.must("AUTH PLAIN "+authPlain("news", "s3cret"), 235)
	if code, msg := rc.send("app@news.test", []string{"ann@dest.test"}, message("app@news.test", "<unsub@e2e.test>", "news", 100)); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	rc.cmd("QUIT")
	got := mx.WaitMessages(t, 1)[0]
	lu := headerValue(got.Data, "List-Unsubscribe")
	lm := regexp.MustCompile(`<(http://[^>]+/unsubscribe/)([^>]+)>`).FindStringSubmatch(lu)
	mm := regexp.MustCompile(`<mailto:([^?>]+)`).FindStringSubmatch(lu)
	if lm == nil || mm == nil {
		t.Fatalf("List-Unsubscribe %q lacks the link or the mailto", lu)
	}
	base, token, mailto := lm[1], lm[2], mm[1]
	post := func(link string) int {
		resp, err := http.PostForm(link, url.Values{"List-Unsubscribe": {"One-Click"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	isOut := func() bool { return suppressed(t, d, "", "news", "ann@dest.test") }

	// The link's token is a payload and its signature, base64url, joined
	// by a dot: forge the signature, the payload, and a payload naming
	// another address under the genuine signature.
	payload, sig, ok := strings.Cut(token, ".")
	if !ok {
		t.Fatalf("unsubscribe token %q: want payload.signature", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || !strings.Contains(string(raw), "ann@dest.test") {
		t.Fatalf("unsubscribe token payload %q (%v)", raw, err)
	}
	other := base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), "ann@dest.test", "bob@dest.test", 1)))
	forgedTokens := map[string]string{
		"forged signature":    payload + "." + flip(sig, 0),
		"forged payload":      flip(payload, len(payload)/2) + "." + sig,
		"another address":     other + "." + sig,
		"no signature":        payload,
		"truncated signature": payload + "." + sig[:len(sig)-4],
		"made-up token":       strings.Repeat("A", len(token)),
	}
	for what, tok := range forgedTokens {
		if status := post(base + tok); status == 200 {
			t.Errorf("POST with a %s: %d", what, status)
		}
	}
	at := strings.LastIndexByte(mailto, '@')
	if code, msg := reportTo(t, bounceAddr, flip(mailto, at/2), "Subject: unsubscribe\n\nunsubscribe\n"); code/100 != 5 {
		t.Errorf("mail to a tampered unsubscribe address: %d %s", code, msg)
	}
	resp, err := http.Get(base + token)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET of the genuine link: %s", resp.Status)
	}
	time.Sleep(300 * time.Millisecond)
	if isOut() {
		t.Fatal("a forged token or a GET unsubscribed the address")
	}
	if status := post(base + token); status != 200 {
		t.Fatalf("the genuine one-click POST: %d", status)
	}
	waitUntil(t, "the genuine POST to unsubscribe", 10*time.Second, isOut)
	if suppressed(t, d, "", "", "ann@dest.test") {
		t.Error("an unsubscribe from one account suppressed the address globally")
	}
	// The signature's last character carries 2 bits of the MAC and 4
	// padding bits; a lenient decoder takes changed padding bits as the
	// same signature. Not a forgery (the bytes are the genuine MAC), but
	// two spellings of one link; report it.
	malleable := post(base+payload+"."+flip(sig, len(sig)-1)) == 200
	report(t, "%d forged one-click tokens (signature, payload, another address under the genuine signature, ...) and a forged mailto refused, a GET of the genuine link changed nothing, the genuine POST unsubscribed the address for the account only; the signature's padding bits are ignored (another spelling of the same link accepted: %v)",
		len(forgedTokens), malleable)
}

// Webhook signatures: a receiver verifies every POST kiln makes with
// webhook.Verify; the same body tampered by one byte, the signature moved
// onto another body, the wrong secret, a missing header and a replay after
// the tolerance all fail.
func TestWebhookSignatures(t *testing.T) {
	type post struct {
		header string
		body   []byte
	}
	var mu sync.Mutex
	var posts []post
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, post{r.Header.Get(webhook.SignatureHeader), b})
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	const secret = "whsec-0123456789abcdef"

	w := newWorld(t)
	w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	d := w.start(fmt.Sprintf(`
[[webhook]]
url = %q
secret = %q
batch_wait = "100ms"
`, hook.URL+"/hook", secret))
	for i := 0; i < 3; i++ {
		if _, err := submit(d.submit, "app@sender.test", "r@dest.test", fmt.Sprintf("<hook-%d@e2e.test>", i)); err != nil {
			t.Fatal(err)
		}
	}
	var events int
	waitUntil(t, "three delivered events at the webhook", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		events = 0
		for _, p := range posts {
			var batch []webhook.Payload
			json.Unmarshal(p.body, &batch)
			for _, e := range batch {
				if e.Event == webhook.Delivered {
					events++
				}
			}
		}
		return events >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	now := time.Now()
	for i, p := range posts {
		if err := webhook.Verify(secret, p.header, p.body, now, 5*time.Minute); err != nil {
			t.Errorf("POST %d: a genuine signature fails: %v (%q)", i, err, p.header)
		}
		tampered := append([]byte(nil), p.body...)
		tampered[len(tampered)/2] ^= 0x20
		checks := []struct {
			what    string
			secret  string
			header  string
			body    []byte
			now     time.Time
			wantErr error
		}{
			{"a tampered body", secret, p.header, tampered, now, webhook.ErrBadSignature},
			{"a body with a byte added", secret, p.header, append(append([]byte(nil), p.body...), ' '), now, webhook.ErrBadSignature},
			{"the wrong secret", secret + "x", p.header, p.body, now, webhook.ErrBadSignature},
			{"no header", secret, "", p.body, now, webhook.ErrNoSignature},
			{"a replay 10 minutes later", secret, p.header, p.body, now.Add(10 * time.Minute), webhook.ErrStale},
		}
		if len(posts) > 1 {
			other := posts[(i+1)%len(posts)]
			checks = append(checks, struct {
				what    string
				secret  string
				header  string
				body    []byte
				now     time.Time
				wantErr error
			}{"another POST's signature", secret, other.header, p.body, now, webhook.ErrBadSignature})
		}
		for _, c := range checks {
			if err := webhook.Verify(c.secret, c.header, c.body, c.now, 5*time.Minute); !errors.Is(err, c.wantErr) {
				t.Errorf("POST %d with %s: Verify says %v, want %v", i, c.what, err, c.wantErr)
			}
		}
	}
	report(t, "%d POSTs (%d delivered events) verified; tampered, extended or re-signed bodies, the wrong secret, no header and a late replay all refused", len(posts), events)
}
