package dkim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

func crlfText(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// variants are messages covering what the signer must get right; each
// uses the From domain given to it.
func variants(from string) map[string][]byte {
	long := strings.Repeat("All work and no play makes a dull message.  \t \r\n", 2500) // ~100 KB
	return map[string][]byte{
		"plain":             crlfText("From: a@" + from + "\nTo: b@example.org\nSubject: hi\nDate: Sun, 01 Jun 2025 12:00:00 +0000\nMessage-ID: <x@" + from + ">\n\nHello.\n"),
		"8bit-headers":      crlfText("From: Jürgen <jürgen@" + from + ">\nTo: =?utf-8?b?w6lsw6hu?= <b@example.org>\nSubject: Grüße, naïve café — ✓\n\n8-bit body: déjà vu\n"),
		"folded":            crlfText("From: a@" + from + "\nTo: one@example.org,\n two@example.org,\n\tthree@example.org\nSubject: a   long\n   folded\t\tsubject   \nReferences: <1@x>\n <2@x>\n\t<3@x>\n\nbody\n"),
		"crlf-body":         crlfText("From: a@" + from + "\nSubject: s\n\nline 1\n\nline 3  \n  \n\tindented\n\n\n"),
		"empty-body":        crlfText("From: a@" + from + "\nSubject: empty\n\n"),
		"no-trailing-crlf":  crlfText("From: a@" + from + "\nSubject: s\n\nno newline at the end"),
		"trailing-wsp-only": crlfText("From: a@" + from + "\nSubject: s\n\ntext\n \t \n   "),
		"list-unsubscribe":  crlfText("From: a@" + from + "\nSubject: s\nList-Unsubscribe: <https://" + from + "/u/1>\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n\nbody\n"),
		"large":             append(crlfText("From: a@"+from+"\nSubject: big\nContent-Type: text/plain\n\n"), long...),
		"long-line":         append(crlfText("From: a@"+from+"\nSubject: long line\n\n"), []byte(strings.Repeat("x", 990)+"\r\n")...),
		"dot-lines":         crlfText("From: a@" + from + "\nSubject: dots\n\n.\n..\n.leading dot\n"),
		"header-wsp":        crlfText("From:a@" + from + "\nSubject:\tno space after colon\nX-Empty:\nTo:   b@example.org   \n\nbody\n"),
	}
}

type signCase struct {
	name  string
	sign  func(s *Signer, msg []byte, now time.Time) ([]byte, error)
	from  string
	cfg   SigningConfig
	nsigs int
}

func signAligned(from string) func(s *Signer, msg []byte, now time.Time) ([]byte, error) {
	return func(s *Signer, msg []byte, now time.Time) ([]byte, error) { return s.Sign(msg, from, now) }
}

var signCases = []signCase{
	{name: "rsa", sign: signAligned("rsa.example"), from: "rsa.example", nsigs: 1},
	{name: "ed25519", sign: signAligned("ed.example"), from: "ed.example", nsigs: 1},
	{name: "dual", sign: signAligned("example.com"), from: "example.com", nsigs: 2},
	{name: "dual-subdomain", sign: signAligned("bounce.news.example.com"), from: "bounce.news.example.com", nsigs: 2},
	{name: "dual+operator", sign: signAligned("example.com"), from: "example.com", cfg: SigningConfig{OperatorDomain: "mta.example.net"}, nsigs: 3},
	{name: "ed25519+operator", sign: signAligned("ed.example"), from: "ed.example", cfg: SigningConfig{OperatorDomain: "mta.example.net"}, nsigs: 2},
	{name: "dual+expiry", sign: signAligned("example.com"), from: "example.com", cfg: SigningConfig{Expiry: Duration(7 * 24 * time.Hour)}, nsigs: 2},
	{name: "signas", from: "customer.example", nsigs: 2, sign: func(s *Signer, msg []byte, now time.Time) ([]byte, error) {
		return s.SignAs("example.com", msg, now)
	}},
	{name: "operator-only", from: "customer.example", cfg: SigningConfig{OperatorDomain: "mta.example.net"}, nsigs: 1,
		sign: func(s *Signer, msg []byte, now time.Time) ([]byte, error) { return s.SignOperator(msg, now) }},
	{name: "operator-selected-extra-headers", sign: signAligned("rsa.example"), from: "rsa.example", nsigs: 2,
		cfg: SigningConfig{OperatorDomain: "mta.example.net", OperatorSelectors: []string{"op"}, Headers: []string{"X-Campaign", "Subject"}}},
}

// TestVerifyMatrix signs every variant in every way kiln signs (at the
// real time, so x= is in the future) and checks every signature with
// go-msgauth and dkimpy.
func TestVerifyMatrix(t *testing.T) {
	recs := keygenRecords(t)
	now := time.Now()
	var msgs [][]byte
	var labels []string
	var want []int
	for _, c := range signCases {
		s := testSigner(t, c.cfg)
		for vname, msg := range variants(c.from) {
			label := c.name + "/" + vname
			hdrs, err := c.sign(s, msg, now)
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			tags := sigTags(t, hdrs)
			if len(tags) != c.nsigs {
				t.Fatalf("%s: %d signatures, want %d", label, len(tags), c.nsigs)
			}
			signed := append(hdrs, msg...)
			vs := verifyGo(t, signed, recs)
			if len(vs) != c.nsigs {
				t.Errorf("%s: go-msgauth saw %d signatures", label, len(vs))
			}
			for i, v := range vs {
				if v.Err != nil {
					t.Errorf("%s: go-msgauth signature %d (d=%s): %v\n%s", label, i, v.Domain, v.Err, signed)
				}
			}
			// SMTP ends the data with CRLF (RFC 5321 §4.1.1.4), so a
			// message that lacks one arrives with it added, and that is
			// what the signature covers. dkimpy reads a last line of
			// only WSP without CRLF as a line; go-msgauth and kiln drop
			// it, as the receiver of the transmitted message will.
			if !bytes.HasSuffix(signed, crlf) {
				signed = append(signed, crlf...)
				for i, v := range verifyGo(t, signed, recs) {
					if v.Err != nil {
						t.Errorf("%s: go-msgauth signature %d as transmitted: %v", label, i, v.Err)
					}
				}
			}
			msgs = append(msgs, signed)
			labels = append(labels, label)
			want = append(want, c.nsigs)
		}
	}
	for i, r := range verifyPy(t, msgs, recs) {
		if len(r) != want[i] {
			t.Errorf("%s: dkimpy saw %d signatures, want %d", labels[i], len(r), want[i])
		}
		for j, v := range r {
			if !v.OK {
				t.Errorf("%s: dkimpy signature %d failed: %s", labels[i], j, v.Error)
			}
		}
	}
}

// TestTamperingDetected makes sure the verifiers in these tests can fail:
// a changed body, a changed signed header, and a second copy of an
// over-signed header each break every signature, in both verifiers.
func TestTamperingDetected(t *testing.T) {
	recs := keygenRecords(t)
	s := testSigner(t, SigningConfig{})
	msg := crlfText("From: a@example.com\nTo: b@example.org\nSubject: original\n\nbody\n")
	hdrs, err := s.Sign(msg, "example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signed := string(hdrs) + string(msg)
	tampered := map[string]string{
		"body":           strings.Replace(signed, "body", "bodY", 1),
		"subject":        strings.Replace(signed, "original", "changed", 1),
		"second subject": strings.Replace(signed, "Subject: original", "Subject: original\r\nSubject: added", 1),
		"second from":    strings.Replace(signed, "From: a@example.com", "From: evil@example.net\r\nFrom: a@example.com", 1),
		"body appended":  signed + "more\r\n",
	}
	var msgs [][]byte
	var names []string
	for name, m := range tampered {
		for i, v := range verifyGo(t, []byte(m), recs) {
			if v.Err == nil {
				t.Errorf("%s: go-msgauth accepted signature %d", name, i)
			}
		}
		msgs = append(msgs, []byte(m))
		names = append(names, name)
	}
	for i, r := range verifyPy(t, msgs, recs) {
		for j, v := range r {
			if v.OK {
				t.Errorf("%s: dkimpy accepted signature %d", names[i], j)
			}
		}
	}
	// Unchanged header fields added after signing, outside h=, do not
	// matter: a relay's Received line must not break the signature.
	relayed := "Received: from kiln by mx; Sun, 01 Jun 2025 12:00:01 +0000\r\n" + signed
	for i, v := range verifyGo(t, []byte(relayed), recs) {
		if v.Err != nil {
			t.Errorf("relayed: signature %d: %v", i, v.Err)
		}
	}
}

// TestHeaderList checks h=: present fields over-signed (listed once more
// than they appear), From always, absent fields left out, RFC 8058's pair
// both signed, configured extras included, trace fields never.
func TestHeaderList(t *testing.T) {
	s := testSigner(t, SigningConfig{Headers: []string{"X-Campaign"}})
	msg := crlfText(`Received: from a by b
From: a@example.com
To: x@example.org
TO: y@example.org
Subject: s
List-Unsubscribe: <https://example.com/u>
List-Unsubscribe-Post: List-Unsubscribe=One-Click
X-Campaign: 42
X-Other: not signed

body
`)
	hdrs, err := s.Sign(msg, "example.com", fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, tags := range sigTags(t, hdrs) {
		count := map[string]int{}
		for _, h := range strings.Split(tags["h"], ":") {
			count[h]++
		}
		want := map[string]int{"from": 2, "to": 3, "subject": 2, "list-unsubscribe": 2, "list-unsubscribe-post": 2, "x-campaign": 2}
		for h, n := range want {
			if count[h] != n {
				t.Errorf("h= lists %s %d times, want %d (h=%s)", h, count[h], n, tags["h"])
			}
		}
		for h := range count {
			if _, ok := want[h]; !ok {
				t.Errorf("h= lists %s, which it should not (h=%s)", h, tags["h"])
			}
		}
		if tags["c"] != "relaxed/relaxed" || tags["v"] != "1" || tags["t"] != fmt.Sprint(fixedNow.Unix()) {
			t.Errorf("tags: %v", tags)
		}
		if _, ok := tags["x"]; ok {
			t.Errorf("x= without expiry configured")
		}
	}
	// No From at all: From is still listed (signing its absence).
	hdrs, err = s.Sign(crlfText("Subject: s\n\nb\n"), "example.com", fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if h := sigTags(t, hdrs)[0]["h"]; h != "from:subject:subject" {
		t.Errorf("h=%s", h)
	}
}

func TestExpiry(t *testing.T) {
	s := testSigner(t, SigningConfig{Expiry: Duration(10 * 24 * time.Hour)})
	hdrs, err := s.Sign(crlfText("From: a@ed.example\n\nb\n"), "ed.example", fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	tags := sigTags(t, hdrs)[0]
	if want := fmt.Sprint(fixedNow.Add(10 * 24 * time.Hour).Unix()); tags["x"] != want {
		t.Errorf("x=%s, want %s", tags["x"], want)
	}
}

func TestAlignment(t *testing.T) {
	keys := append(append([]KeyConfig(nil), testKeys...),
		KeyConfig{Domain: "retired.example", Selector: "old", Key: testKeys[3].Key, Retired: true})
	s, err := NewSigner(keys, SigningConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for from, want := range map[string]string{
		"example.com":           "example.com",
		"EXAMPLE.com.":          "example.com",
		"news.example.com":      "example.com",
		"a.b.c.example.com":     "example.com",
		"notexample.com":        "",
		"example.com.evil.net":  "",
		"com":                   "",
		"":                      "",
		"rsa.example":           "rsa.example",
		"retired.example":       "",
		"mta.example.net":       "mta.example.net",
		"bücher.example.com":    "example.com",
		"xn--bcher-kva.example": "",
	} {
		got, ok := s.Aligned(from)
		if got != want || ok != (want != "") {
			t.Errorf("Aligned(%q) = %q, %v; want %q", from, got, ok, want)
		}
	}
	msg := crlfText("From: a@other.example\n\nb\n")
	if _, err := s.Sign(msg, "other.example", fixedNow); !errors.Is(err, ErrNotAligned) {
		t.Errorf("Sign unaligned: %v", err)
	}
	if _, err := s.SignAs("other.example", msg, fixedNow); !errors.Is(err, ErrNoKey) {
		t.Errorf("SignAs unknown: %v", err)
	}
	if _, err := s.SignAs("retired.example", msg, fixedNow); !errors.Is(err, ErrNoKey) {
		t.Errorf("SignAs retired: %v", err)
	}
	if h, err := s.SignOperator(msg, fixedNow); h != nil || err != nil {
		t.Errorf("SignOperator without operator: %q, %v", h, err)
	}
	if len(s.Keys()) != 6 {
		t.Errorf("Keys() has %d keys", len(s.Keys()))
	}
	// The operator's own mail is signed once per key, not twice.
	op := testSigner(t, SigningConfig{OperatorDomain: "mta.example.net"})
	h, err := op.Sign(crlfText("From: a@mta.example.net\n\nb\n"), "mta.example.net", fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sigTags(t, h)); n != 1 {
		t.Errorf("operator's own mail got %d signatures", n)
	}
	if op.OperatorDomain() != "mta.example.net" {
		t.Errorf("OperatorDomain() = %q", op.OperatorDomain())
	}
	// Dual signatures come RSA first, then Ed25519, then the operator's.
	h, _ = op.Sign(crlfText("From: a@example.com\n\nb\n"), "example.com", fixedNow)
	var got []string
	for _, tg := range sigTags(t, h) {
		got = append(got, tg["d"]+"/"+tg["a"])
	}
	if want := "example.com/rsa-sha256 example.com/ed25519-sha256 mta.example.net/rsa-sha256"; strings.Join(got, " ") != want {
		t.Errorf("signature order %v", got)
	}
}

func TestSignRefusesMalformed(t *testing.T) {
	s := testSigner(t, SigningConfig{})
	for name, c := range map[string]struct {
		msg  string
		line int
	}{
		"bare LF in body":      {"From: a@example.com\r\n\r\nline\nnext\r\n", 3},
		"bare CR in body":      {"From: a@example.com\r\n\r\nline\rnext\r\n", 3},
		"bare LF at body end":  {"From: a@example.com\r\n\r\nline\r\n\n", 4},
		"bare CR at body end":  {"From: a@example.com\r\n\r\nline\r", 3},
		"bare LF in header":    {"From: a@example.com\nSubject: s\r\n\r\nb\r\n", 1},
		"bare CR in header":    {"From: a@example.com\rSubject: s\r\n\r\nb\r\n", 1},
		"not a field":          {"From: a@example.com\r\nthis is not a field\r\n\r\nb\r\n", 2},
		"space before colon":   {"From : a@example.com\r\n\r\nb\r\n", 1},
		"leading continuation": {" folded\r\nFrom: a@example.com\r\n\r\nb\r\n", 1},
		"8-bit field name":     {"Fröm: a@example.com\r\n\r\nb\r\n", 1},
		"empty field name":     {": value\r\nFrom: a@example.com\r\n\r\nb\r\n", 1},
	} {
		_, err := s.Sign([]byte(c.msg), "example.com", fixedNow)
		var me *MessageError
		if !errors.As(err, &me) {
			t.Errorf("%s: got %v, want a MessageError", name, err)
			continue
		}
		if me.Line != c.line {
			t.Errorf("%s: line %d, want %d (%v)", name, me.Line, c.line, err)
		}
	}
}

func TestFromDomain(t *testing.T) {
	for msg, want := range map[string]string{
		"From: a@Example.COM\r\n\r\n":                            "example.com",
		"From: \"Doe, John\" <j@sub.example.com>\r\n\r\nb":       "sub.example.com",
		"From: =?x-unknown?q?abc?= <a@example.com>\r\n\r\n":      "example.com",
		"Subject: s\r\nfrom:\r\n a@folded.example\r\n\r\n":       "folded.example",
		"From: Jürgen <jürgen@example.de>\r\n":                   "example.de",
		"From: a@example.org (comment)\r\n\r\n":                  "example.org",
		"To: x@y.example\r\nFROM: <bounce@mail.example.net>\r\n": "mail.example.net",
	} {
		got, err := FromDomain([]byte(msg))
		if err != nil || got != want {
			t.Errorf("FromDomain(%q) = %q, %v; want %q", msg, got, err, want)
		}
	}
	for msg, want := range map[string]error{
		"Subject: s\r\n\r\nFrom: a@example.com\r\n":      ErrNoFrom,
		"From: a@example.com\r\nFrom: b@example.com\r\n": ErrMultipleFrom,
		"From: a@example.com, b@example.org\r\n\r\n":     ErrBadFrom,
		"From: not an address\r\n\r\n":                   ErrBadFrom,
		"From: undisclosed-recipients:;\r\n\r\n":         ErrBadFrom,
		"From: <a@>\r\n\r\n":                             ErrBadFrom,
	} {
		if _, err := FromDomain([]byte(msg)); !errors.Is(err, want) {
			t.Errorf("FromDomain(%q): %v, want %v", msg, err, want)
		}
	}
	var me *MessageError
	if _, err := FromDomain([]byte("From a@example.com\r\n\r\n")); !errors.As(err, &me) {
		t.Errorf("malformed header: %v", err)
	}
}

// TestBodyHashMatchesGoMsgauth compares kiln's body hash with go-msgauth's
// relaxed body canonicalisation on awkward bodies.
func TestBodyHashMatchesGoMsgauth(t *testing.T) {
	bodies := []string{
		"", "\r\n", "\r\n\r\n", " ", " \r\n", "\t\r\n \r\n", "a", "a\r\n", "a \r\n", "a\t\r\n", " a", "\ta",
		"a  b", "a\t\tb", "a \t b \t\r\n", "a\r\n\r\n\r\nb\r\n\r\n", "a\r\n \r\nb", "x\r\n\r\n  \r\n\t\r\n",
		"é ü\r\n", strings.Repeat("word  \t", 1000) + "\r\n",
	}
	for _, b := range bodies {
		msg := []byte("From: a@example.com\r\n\r\n" + b)
		h := sha256.New()
		if err := hashBody(h, msg, 23, msg[23:]); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		got := base64.StdEncoding.EncodeToString(h.Sum(nil))
		if want := goMsgauthBodyHash(t, msg); got != want {
			t.Errorf("body %q: bh=%s, go-msgauth bh=%s", b, got, want)
		}
	}
}

func goMsgauthBodyHash(t testing.TB, msg []byte) string {
	t.Helper()
	k, err := LoadKey(testKeys[1].Key)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = msgauth.Sign(&out, bytes.NewReader(msg), &msgauth.SignOptions{
		Domain: "example.com", Selector: "e2025", Signer: k,
		HeaderCanonicalization: msgauth.CanonicalizationRelaxed, BodyCanonicalization: msgauth.CanonicalizationRelaxed,
	})
	if err != nil {
		t.Fatal(err)
	}
	hdrs, _ := splitMessage(out.Bytes())
	fields, err := parseHeader(hdrs, hdrs, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := parseTagList(string(fields[0].value))
	bh, _ := l.get("bh")
	return stripFWS(bh)
}

// TestSignatureShape keeps the signature fields within 78 columns, each
// line CRLF-terminated, and b= last.
func TestSignatureShape(t *testing.T) {
	s := testSigner(t, SigningConfig{OperatorDomain: "mta.example.net", Expiry: Duration(30 * 24 * time.Hour)})
	msg := variants("example.com")["list-unsubscribe"]
	hdrs, err := s.Sign(msg, "example.com", fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(hdrs, crlf) {
		t.Fatal("no final CRLF")
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(hdrs), "\r\n"), "\r\n") {
		if w := len(strings.ReplaceAll(line, "\t", "        ")); w > 78 {
			t.Errorf("line of %d columns: %q", w, line)
		}
		if strings.ContainsAny(line, "\r\n") {
			t.Errorf("stray line break in %q", line)
		}
	}
	for _, f := range strings.Split(string(hdrs), "\r\nDKIM-Signature:") {
		if i, j := strings.LastIndex(f, "b="), strings.LastIndex(f, ";"); i < j {
			t.Errorf("b= is not the last tag:\n%s", f)
		}
	}
}

// TestSignConcurrent signs from many goroutines with one Signer (run with
// -race).
func TestSignConcurrent(t *testing.T) {
	s := testSigner(t, SigningConfig{OperatorDomain: "mta.example.net"})
	msg := variants("example.com")["plain"]
	want, _ := s.Sign(msg, "example.com", fixedNow)
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			for j := 0; j < 10; j++ {
				got, err := s.Sign(msg, "example.com", fixedNow)
				if err == nil && !bytes.Equal(got, want) {
					err = io.ErrUnexpectedEOF
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
