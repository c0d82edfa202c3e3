package mta

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"kiln/configs"
	"kiln/dkim"
	"kiln/events"
	"kiln/internal/fakemx"
)

// dkimWorld has RSA and Ed25519 keys for sender.test (published in the fake
// DNS) and an account whose own domain is acct.test.
func dkimWorld(t *testing.T, unaligned string) (*world, *fakemx.Server, map[string]string) {
	dir := t.TempDir()
	records := map[string]string{}
	var keys []dkim.KeyConfig
	for _, k := range []struct {
		domain, sel string
		algo        dkim.Algorithm
	}{{"sender.test", "rsa1", dkim.RSA}, {"sender.test", "ed1", dkim.Ed25519}, {"acct.test", "a1", dkim.Ed25519}} {
		priv, err := dkim.GenerateKey(k.algo, 2048)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, k.sel+".pem")
		if err := dkim.WriteKeyFile(path, priv); err != nil {
			t.Fatal(err)
		}
		rec, err := dkim.Record(priv)
		if err != nil {
			t.Fatal(err)
		}
		records[k.sel+"._domainkey."+k.domain] = rec
		keys = append(keys, dkim.KeyConfig{Domain: k.domain, Selector: k.sel, Key: path})
	}
	w := newWorld(t, func(c *configs.Config) {
		untrusted(c)
		c.DKIM = keys
		c.Accounts[0].SenderDomains = []string{"sender.test", "other.test"}
		c.Accounts[0].DKIMDomain = "acct.test"
		c.Accounts[0].DKIMUnaligned = unaligned
	})
	mx := w.mx(2, fakemx.Config{})
	w.domain("dest.test", 2)
	return w, mx, records
}

func verifyAll(t *testing.T, data []byte, records map[string]string) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(data), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return []string{records[name]}, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature by %s does not verify: %v", v.Domain, v.Err)
		}
	}
	return vs
}

func TestRelayedMailIsDKIMSigned(t *testing.T) {
	w, mx, records := dkimWorld(t, "")
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
	// No Message-ID or Date: kiln adds both, inside the signed part.
	data := "From: News <news@sender.test>\r\nTo: r@dest.test\r\nSubject: signed\r\nList-Unsubscribe: <mailto:u@sender.test>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nHello\r\n"
	if code, msg := c.send("news@sender.test", []string{"r@dest.test"}, data); code != 250 {
		t.Fatalf("%d %s", code, msg)
	}
	got := mx.WaitMessages(t, 1)[0]
	vs := verifyAll(t, got.Data, records)
	if len(vs) != 2 || vs[0].Domain != "sender.test" || vs[1].Domain != "sender.test" {
		t.Fatalf("want a dual signature by sender.test, got %d", len(vs))
	}
	for _, h := range []string{"message-id", "date", "list-unsubscribe", "list-unsubscribe-post"} {
		found := false
		for _, k := range vs[0].HeaderKeys {
			found = found || strings.EqualFold(k, h)
		}
		if !found {
			t.Errorf("h= lacks %s: %v", h, vs[0].HeaderKeys)
		}
	}
	if !bytes.HasPrefix(got.Data, []byte("DKIM-Signature:")) {
		t.Errorf("signature is not the first field:\n%.200s", got.Data)
	}
}

func TestUnalignedPolicies(t *testing.T) {
	data := msgText("news@other.test", "unaligned")
	t.Run("refuse", func(t *testing.T) {
		w, _, _ := dkimWorld(t, "refuse")
		c := dialSMTP(t, w.submitAddr())
		c.must("EHLO app.test", 250)
		c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
		code, msg := c.send("news@other.test", []string{"r@dest.test"}, data)
		if code != 550 || !strings.Contains(msg, "5.7.1") || !strings.Contains(msg, "other.test") {
			t.Fatalf("%d %s", code, msg)
		}
	})
	t.Run("default_domain", func(t *testing.T) {
		w, mx, records := dkimWorld(t, "default_domain")
		c := dialSMTP(t, w.submitAddr())
		c.must("EHLO app.test", 250)
		c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
		if code, msg := c.send("news@other.test", []string{"r@dest.test"}, data); code != 250 {
			t.Fatalf("%d %s", code, msg)
		}
		vs := verifyAll(t, mx.WaitMessages(t, 1)[0].Data, records)
		if len(vs) != 1 || vs[0].Domain != "acct.test" {
			t.Fatalf("want one signature by acct.test, got %+v", vs)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		w, mx, _ := dkimWorld(t, "unsigned")
		c := dialSMTP(t, w.submitAddr())
		c.must("EHLO app.test", 250)
		c.must("AUTH PLAIN "+plain("news", "s3cret"), 235)
		if code, msg := c.send("news@other.test", []string{"r@dest.test"}, data); code != 250 {
			t.Fatalf("%d %s", code, msg)
		}
		if bytes.Contains(mx.WaitMessages(t, 1)[0].Data, []byte("DKIM-Signature")) {
			t.Fatal("message was signed")
		}
		e := w.waitEvent("received", typed(events.Received, ""))
		if !strings.Contains(e.Detail, "without an aligned signature") {
			t.Fatalf("no warning on the received event: %q", e.Detail)
		}
	})
}
