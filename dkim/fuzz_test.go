package dkim

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseKey feeds arbitrary bytes to the PEM key loader: it must never
// panic, and a key it accepts must sign and match its own record.
func FuzzParseKey(f *testing.F) {
	for _, dir := range []string{"testdata/keys", "testdata/badkeys", "testdata/pkcs1"} {
		files, _ := filepath.Glob(dir + "/*.pem")
		for _, file := range files {
			data, _ := os.ReadFile(file)
			f.Add(data)
		}
	}
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		priv, err := ParseKey(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		k, err := NewKey("example.com", "s", priv)
		if err != nil {
			t.Fatalf("ParseKey accepted what NewKey refuses: %v", err)
		}
		if err := k.Check(SplitTXT(k.Record())); err != nil {
			t.Fatalf("own record: %v", err)
		}
		s, err := New([]*Key{k}, SigningConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sign([]byte("From: a@example.com\r\n\r\nb\r\n"), "example.com", fixedNow); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzSign signs arbitrary messages (made CRLF-only, as kiln normalises
// them at submission) and checks every signature with go-msgauth: the two
// implementations must agree on canonicalisation wherever go-msgauth can
// read the message. Header parsing must never panic on raw input either.
func FuzzSign(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		f.Add(data)
	}
	for _, m := range variants("example.com") {
		if len(m) < 4096 { // large seeds slow the mutator to a crawl
			f.Add(m)
		}
	}
	f.Add([]byte("From: a@example.com\r\n\r\n \t \r\n\t\r\n"))
	f.Add([]byte("From: a@example.com\n\nbare\rline\nends"))
	// One Ed25519 key: the point is canonicalisation, and RSA's cost
	// would make each run (and the fuzzer's minimising) a hundred times
	// slower.
	priv, err := LoadKey("testdata/keys/e2025._domainkey.example.com.pem")
	if err != nil {
		f.Fatal(err)
	}
	key, _ := NewKey("example.com", "e2025", priv)
	s, _ := New([]*Key{key}, SigningConfig{})
	recs := keygenRecords(f)
	now := time.Now()
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Raw input: errors are fine, panics are not.
		FromDomain(raw)
		s.Sign(raw, "example.com", now)

		msg := toCRLF(raw)
		hdrs, err := s.Sign(msg, "example.com", now)
		if err != nil {
			if _, ok := err.(*MessageError); !ok {
				t.Fatalf("CRLF message: %v", err)
			}
			return
		}
		signed := append(hdrs, msg...)
		if !bytes.HasSuffix(signed, crlf) {
			signed = append(signed, crlf...) // as SMTP transmits it
		}
		if header, _ := splitMessage(msg); len(header) == len(msg) {
			signed = append(signed, crlf...) // go-msgauth needs the blank line
		}
		for i, v := range verifyGo(t, signed, recs) {
			if v.Err != nil {
				t.Fatalf("signature %d (d=%s): %v\n%q", i, v.Domain, v.Err, signed)
			}
		}
	})
}

// toCRLF turns every CR, LF and CRLF into CRLF.
func toCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\r':
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// FuzzFromDomain: any header gives a domain or an error, never a panic,
// and a domain is lower case and non-empty.
func FuzzFromDomain(f *testing.F) {
	f.Add([]byte("From: a@Example.com\r\n\r\n"))
	f.Add([]byte("From: \"x\" <a@b.example>, c@d.example\r\n\r\n"))
	f.Add([]byte("From: =?utf-8?q?=C3=A9?= <a@b.example>\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		d, err := FromDomain(msg)
		if err == nil && (d == "" || d != strings.ToLower(d)) {
			t.Fatalf("domain %q", d)
		}
	})
}
