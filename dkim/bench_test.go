package dkim

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"io"
	"strings"
	"testing"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// benchMessage is a typical bulk message of about size bytes: the headers
// a marketing sender sets, then quoted-printable HTML in 76-column lines.
func benchMessage(size int) []byte {
	var b strings.Builder
	b.WriteString("From: \"Example Shop\" <news@example.com>\r\n" +
		"To: customer@example.org\r\n" +
		"Subject: This week's offers, picked for you\r\n" +
		"Date: Sun, 01 Jun 2025 12:00:00 +0000\r\n" +
		"Message-ID: <20250601120000.42@example.com>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/html; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: quoted-printable\r\n" +
		"List-Unsubscribe: <https://example.com/u/42?t=abcdef>, <mailto:u-42@example.com>\r\n" +
		"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
		"Feedback-ID: 42:weekly:example:kiln\r\n\r\n")
	words := strings.Fields("<p>Dear customer, our <b>new</b> collection is here: shoes, bags and coats at =\r\n prices you will like. <a href=3D\"https://example.com/c/42\">Shop now</a></p>")
	line := 0
	for i := 0; b.Len() < size; i++ {
		w := words[i%len(words)]
		if line+len(w)+1 > 75 {
			b.WriteString("=\r\n")
			line = 0
		}
		b.WriteString(w)
		b.WriteByte(' ')
		line += len(w) + 1
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

var benchSizes = []struct {
	name string
	size int
}{{"4KB", 4 << 10}, {"100KB", 100 << 10}}

// benchSetups are the ways kiln signs, with the From domain each aligns.
var benchSetups = []struct {
	name string
	from string
	cfg  SigningConfig
}{
	{"rsa2048", "mta.example.net", SigningConfig{}},
	{"ed25519", "ed.example", SigningConfig{}},
	{"dual", "example.com", SigningConfig{}},
	{"dual+operator", "example.com", SigningConfig{OperatorDomain: "mta.example.net"}},
}

// BenchmarkSign measures kiln's signing per message on one core: ns/op is
// the CPU cost per message, MB/s the body throughput.
func BenchmarkSign(b *testing.B) {
	for _, setup := range benchSetups {
		s := testSigner(b, setup.cfg)
		for _, sz := range benchSizes {
			msg := benchMessage(sz.size)
			msg = bytes.Replace(msg, []byte("news@example.com"), []byte("news@"+setup.from), 1)
			b.Run(setup.name+"/"+sz.name, func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Sign(msg, setup.from, fixedNow); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSignParallel is dual signing from every core at once, as
// concurrent submission sessions do.
func BenchmarkSignParallel(b *testing.B) {
	s := testSigner(b, SigningConfig{})
	for _, sz := range benchSizes {
		msg := benchMessage(sz.size)
		b.Run("dual/"+sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Sign(msg, "example.com", fixedNow); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkBodyHash is the relaxed body canonicalisation and SHA-256 alone.
func BenchmarkBodyHash(b *testing.B) {
	for _, sz := range benchSizes {
		msg := benchMessage(sz.size)
		_, body := splitMessage(msg)
		b.Run(sz.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			h := sha256.New()
			for b.Loop() {
				h.Reset()
				if err := hashBody(h, msg, len(msg)-len(body), body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGoMsgauth is the same work done with go-msgauth's Signer (one
// per key, fed through an io.MultiWriter), for comparison.
func BenchmarkGoMsgauth(b *testing.B) {
	load := func(i int) benchKey {
		k, err := LoadKey(testKeys[i].Key)
		if err != nil {
			b.Fatal(err)
		}
		return benchKey{testKeys[i], k}
	}
	setups := map[string][]benchKey{
		"rsa2048": {load(4)},
		"ed25519": {load(3)},
		"dual":    {load(0), load(1)},
	}
	for _, name := range []string{"rsa2048", "ed25519", "dual"} {
		keys := setups[name]
		for _, sz := range benchSizes {
			msg := benchMessage(sz.size)
			b.Run(name+"/"+sz.name, func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					var ws []io.Writer
					var ss []*msgauth.Signer
					for _, k := range keys {
						s, err := msgauth.NewSigner(&msgauth.SignOptions{
							Domain: k.cfg.Domain, Selector: k.cfg.Selector, Signer: k.priv,
							HeaderCanonicalization: msgauth.CanonicalizationRelaxed,
							BodyCanonicalization:   msgauth.CanonicalizationRelaxed,
							HeaderKeys:             []string{"From", "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID"},
						})
						if err != nil {
							b.Fatal(err)
						}
						ss = append(ss, s)
						ws = append(ws, s)
					}
					if _, err := io.MultiWriter(ws...).Write(msg); err != nil {
						b.Fatal(err)
					}
					for _, s := range ss {
						if err := s.Close(); err != nil {
							b.Fatal(err)
						}
						_ = s.Signature()
					}
				}
			})
		}
	}
}

type benchKey struct {
	cfg  KeyConfig
	priv crypto.Signer
}

// BenchmarkPrimitive is the private-key operation alone (Go's crypto),
// the floor under BenchmarkSign.
func BenchmarkPrimitive(b *testing.B) {
	digest := sha256.Sum256([]byte("x"))
	for _, i := range []int{4, 3} {
		k, err := LoadKey(testKeys[i].Key)
		if err != nil {
			b.Fatal(err)
		}
		key, _ := NewKey("example.com", "s", k)
		name := "rsa2048"
		if key.Algorithm() == Ed25519 {
			name = "ed25519"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := signDigest(key, digest[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
