//go:build cgo && !purego

package dkim

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// opensslKeyFiles are RSA keys of every size kiln accepts, and one with three
// primes, which OpenSSL and crypto/rsa compute differently.
var opensslKeyFiles = []string{
	"testdata/pkcs1/rsa1024-pkcs1.pem",
	"testdata/keys/r2025._domainkey.example.com.pem",
	"testdata/keys/op._domainkey.mta.example.net.pem",
	"testdata/openssl/rsa2048-3primes.pem",
	"testdata/openssl/rsa3072.pem",
	"testdata/openssl/rsa4096.pem",
}

// opensslKey loads path as a Key and returns its OpenSSL signer, loaded
// into libcrypto; it fails the test if the key would sign with crypto/rsa.
func opensslKey(t testing.TB, path string) (*rsa.PrivateKey, *opensslRSA) {
	t.Helper()
	priv, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKey("example.com", "s", priv)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := k.rsaSigner.(*opensslRSA)
	if !ok {
		t.Fatalf("%s: RSA key's signer is %T, not OpenSSL's", path, k.rsaSigner)
	}
	s.once.Do(s.load)
	if s.pkey == nil {
		_, err := libcrypto()
		if err != nil && os.Getenv("CI") != "true" {
			t.Skipf("OpenSSL's libcrypto is not installed (apt-get install libssl3): %v", err)
		}
		t.Fatalf("%s: not loaded into OpenSSL (libcrypto: %v)", path, err)
	}
	return priv.(*rsa.PrivateKey), s
}

// testDigests are SHA-256-sized digests: the extremes, then pseudo-random
// ones that are the same on every run.
func testDigests(n int) [][]byte {
	out := [][]byte{make([]byte, sha256.Size), bytes.Repeat([]byte{0xff}, sha256.Size)}
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		d := sha256.Sum256(b[:])
		out = append(out, d[:])
	}
	return out
}

// TestOpenSSLSignsAsGo: for every key size, OpenSSL's signature of a digest
// is byte for byte crypto/rsa's (PKCS#1 v1.5 is deterministic), both
// straight from libcrypto and through Sign.
func TestOpenSSLSignsAsGo(t *testing.T) {
	for _, path := range opensslKeyFiles {
		priv, s := opensslKey(t, path)
		for i, d := range testDigests(100) {
			want, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.sign(d)
			if err != nil {
				t.Fatalf("%s: OpenSSL: %v", path, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: digest %d: OpenSSL's signature differs from crypto/rsa's\n got %x\nwant %x", path, i, got, want)
			}
			viaSign, err := s.Sign(nil, d, crypto.SHA256)
			if err != nil || !bytes.Equal(viaSign, want) {
				t.Fatalf("%s: digest %d: Sign: %v, equal %v", path, i, err, bytes.Equal(viaSign, want))
			}
		}
	}
}

// TestOpenSSLGolden: with the openssl tag every RSA key of the golden tests
// signs through OpenSSL, so TestGolden's unchanged .sig files show the
// signatures are the default build's.
func TestOpenSSLGolden(t *testing.T) {
	signer := testSigner(t, SigningConfig{OperatorDomain: "mta.example.net"})
	for _, c := range signGolden(t) {
		want, err := os.ReadFile("testdata/" + c.name + ".sig")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.sig, want) {
			t.Errorf("%s: signature differs from the golden file", c.name)
		}
	}
	// signGolden builds its own Signers; sign with this one so its keys load.
	msg := benchMessage(4 << 10)
	for _, from := range []string{"example.com", "rsa.example", "mta.example.net"} {
		if _, err := signer.SignAs(from, msg, fixedNow); err != nil {
			t.Fatal(err)
		}
	}
	rsaKeys := 0
	for _, k := range signer.Keys() {
		if k.Algorithm() != RSA {
			if k.rsaSigner != nil {
				t.Errorf("%s: an Ed25519 key has an RSA signer", k)
			}
			continue
		}
		rsaKeys++
		s, ok := k.rsaSigner.(*opensslRSA)
		if !ok || s.pkey == nil {
			t.Errorf("%s: does not sign through OpenSSL", k)
		}
	}
	if rsaKeys != 3 {
		t.Errorf("%d RSA test keys, want 3", rsaKeys)
	}
}

// TestOpenSSLConcurrent: one key, many goroutines, as submission sessions
// sign (run with -race too).
func TestOpenSSLConcurrent(t *testing.T) {
	priv, s := opensslKey(t, "testdata/keys/r2025._domainkey.example.com.pem")
	digests := testDigests(30)
	want := make([][]byte, len(digests))
	for i, d := range digests {
		want[i], _ = rsa.SignPKCS1v15(nil, priv, crypto.SHA256, d)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range digests {
				j := (i + g*7) % len(digests)
				got, err := s.Sign(nil, digests[j], crypto.SHA256)
				if err != nil || !bytes.Equal(got, want[j]) {
					t.Errorf("goroutine %d, digest %d: %v, equal %v", g, j, err, bytes.Equal(got, want[j]))
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestOpenSSLOtherSignatures: what DKIM does not use (PSS, other hashes)
// is left to crypto/rsa.
func TestOpenSSLOtherSignatures(t *testing.T) {
	priv, s := opensslKey(t, "testdata/keys/r2025._domainkey.example.com.pem")
	d256 := sha256.Sum256([]byte("m"))
	pss := &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash}
	sig, err := s.Sign(rand.Reader, d256[:], pss)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(&priv.PublicKey, crypto.SHA256, d256[:], sig, pss); err != nil {
		t.Errorf("PSS: %v", err)
	}
	d1 := sha1.Sum([]byte("m"))
	sig, err = s.Sign(nil, d1[:], crypto.SHA1)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(&priv.PublicKey, crypto.SHA1, d1[:], sig); err != nil {
		t.Errorf("SHA-1: %v", err)
	}
}

func TestOpenLibcryptoErrors(t *testing.T) {
	if _, err := openLibcrypto([]string{"libkiln-absent.so.9"}); err == nil || !strings.Contains(err.Error(), "libkiln-absent.so.9") {
		t.Errorf("absent library: %v", err)
	}
	// The C library loads but is not libcrypto.
	if _, err := openLibcrypto([]string{"libc.so.6"}); err == nil || !strings.Contains(err.Error(), "has no OpenSSL_version_num") {
		t.Errorf("not libcrypto: %v", err)
	}
}

// TestOpenSSLMissing runs this test binary again with no libcrypto to find:
// every signature is still made, the same as the golden files, by crypto/rsa,
// and the log has one warning saying so.
func TestOpenSSLMissing(t *testing.T) {
	if os.Getenv("KILN_DKIM_TEST_NO_LIBCRYPTO") == "1" {
		libcryptoNames = []string{"libkiln-absent.so.9"}
		slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, nil)))
		for range 3 {
			for _, c := range signGolden(t) {
				want, err := os.ReadFile("testdata/" + c.name + ".sig")
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(c.sig, want) {
					t.Errorf("%s: signature differs from the golden file", c.name)
				}
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenSSLMissing$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KILN_DKIM_TEST_NO_LIBCRYPTO=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s%s", err, out, stderr.Bytes())
	}
	var warnings []string
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if rec.Level != "WARN" {
			t.Errorf("unexpected log line: %s", line)
			continue
		}
		warnings = append(warnings, line)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "crypto/rsa") || !strings.Contains(warnings[0], "libkiln-absent.so.9") {
		t.Errorf("want one warning naming the library and crypto/rsa, got %d:\n%s", len(warnings), strings.Join(warnings, "\n"))
	}
}

// BenchmarkRSA is the RSA-2048 private-key operation by crypto/rsa and by
// OpenSSL, side by side.
func BenchmarkRSA(b *testing.B) {
	priv, s := opensslKey(b, "testdata/keys/r2025._domainkey.example.com.pem")
	digest := sha256.Sum256([]byte("x"))
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(nil, priv, crypto.SHA256, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("openssl", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Sign(nil, digest[:], crypto.SHA256); err != nil {
				b.Fatal(err)
			}
		}
	})
}
