package mta

import (
	"bytes"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln/configs"
	"kiln/dkim"
	"kiln/events"
	"kiln/internal/fakemx"
)

func TestOneClickUnsubscribe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unsubAddr := l.Addr().String()
	l.Close()
	l, _ = net.Listen("tcp", "127.0.0.1:0")
	bounceAddr := l.Addr().String()
	l.Close()
	priv, err := dkim.GenerateKey(dkim.Ed25519, 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "k.pem")
	if err := dkim.WriteKeyFile(keyPath, priv); err != nil {
		t.Fatal(err)
	}
	rec, _ := dkim.Record(priv)
	w := newWorld(t, func(c *configs.Config) {
		c.DKIM = []dkim.KeyConfig{{Domain: "sender.test", Selector: "s1", Key: keyPath}}
		untrusted(c)
		c.Accounts[0].SenderDomains = []string{"sender.test"}
		c.Accounts[0].Unsubscribe = true
		c.Unsubscribe.URL = "http://" + unsubAddr
		c.Unsubscribe.Listen = configs.HostPort(unsubAddr)
		c.Bounce.Domain = "bounces.kiln.test"
		c.Bounce.Listen = []configs.HostPort{configs.HostPort(bounceAddr)}
	})
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
	for _, r := range []string{"ann@dest.test", "bob@dest.test"} {
		if code, msg := c.send("news@sender.test", []string{r}, msgText("news@sender.test", "news")); code != 250 {
			t.Fatalf("%d %s", code, msg)
		}
	}
	msgs := mx.WaitMessages(t, 2)
	var link, mailto string
	for _, m := range msgs {
		if m.Rcpts[0] != "ann@dest.test" {
			mailto = regexp.MustCompile(`<mailto:([^?>]+)`).FindStringSubmatch(string(m.Data))[1]
			continue
		}
		if !bytes.Contains(m.Data, []byte("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")) {
			t.Fatalf("no List-Unsubscribe-Post:\n%s", m.Data)
		}
		mm := regexp.MustCompile(`List-Unsubscribe: <(http://[^>]+)>`).FindSubmatch(m.Data)
		if mm == nil {
			t.Fatalf("no List-Unsubscribe link:\n%s", m.Data)
		}
		link = string(mm[1])
		// Both fields are covered by the signature (RFC 8058 §4).
		vs := verifyAll(t, m.Data, map[string]string{"s1._domainkey.sender.test": rec})
		h := strings.ToLower(strings.Join(vs[0].HeaderKeys, ":"))
		if !strings.Contains(h, "list-unsubscribe:") || !strings.Contains(h, "list-unsubscribe-post") {
			t.Fatalf("h= %s lacks the unsubscribe fields", h)
		}
	}
	// Opening the link (a scanner, a preview) changes nothing.
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %s", resp.Status)
	}
	if _, ok := suppressed(w, "news", "ann@dest.test"); ok {
		t.Fatal("a GET unsubscribed")
	}
	// A forged token is refused and changes nothing.
	forged := strings.Replace(link, "/unsubscribe/", "/unsubscribe/x", 1)
	resp, _ = http.PostForm(forged, url.Values{"List-Unsubscribe": {"One-Click"}})
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("forged token: %s", resp.Status)
	}
	// The one-click POST (RFC 8058 §3.2) suppresses for this account only.
	for i := 0; i < 2; i++ { // the second is a replay
		resp, err = http.PostForm(link, url.Values{"List-Unsubscribe": {"One-Click"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST: %s", resp.Status)
		}
	}
	w.waitEvent("unsubscribe", typed(events.Unsubscribe, "ann@dest.test"))
	e, ok := suppressed(w, "news", "ann@dest.test")
	if !ok || e.Scope != "news" || string(e.Source) != "unsubscribe" {
		t.Fatalf("want an unsubscribe suppression for the account: %+v %v", e, ok)
	}
	if _, ok := suppressed(w, "", "ann@dest.test"); ok {
		t.Fatal("an unsubscribe from one account suppressed the address globally")
	}
	time.Sleep(100 * time.Millisecond)
	if n := w.count(typed(events.Unsubscribe, "ann@dest.test")); n != 1 {
		t.Fatalf("%d unsubscribe events: the replay counted", n)
	}
	// The mailto form: a message to it unsubscribes bob.
	if code, msg := sendReport(t, bounceAddr, mailto, "Subject: unsubscribe\n\nunsubscribe\n"); code != 250 {
		t.Fatalf("mailto unsubscribe: %d %s", code, msg)
	}
	w.waitEvent("mail unsubscribe", typed(events.Unsubscribe, "bob@dest.test"))
}
