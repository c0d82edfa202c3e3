package dkim

import (
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/internal/keyerr"
)

func TestLoadKeyTypes(t *testing.T) {
	for path, want := range map[string]Algorithm{
		"testdata/keys/r2025._domainkey.example.com.pem": RSA,
		"testdata/keys/e2025._domainkey.example.com.pem": Ed25519,
		"testdata/keys/s1._domainkey.rsa.example.pem":    RSA,
		"testdata/pkcs1/rsa1024-pkcs1.pem":               RSA,
	} {
		priv, err := LoadKey(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		k, err := NewKey("example.com", "s", priv)
		if err != nil || k.Algorithm() != want {
			t.Errorf("%s: %v %v, want %s", path, k, err, want)
		}
	}
	// The PKCS#1 file is the same key as the PKCS#8 one.
	a, _ := LoadKey("testdata/pkcs1/rsa1024-pkcs1.pem")
	b, _ := LoadKey("testdata/keys/s1._domainkey.rsa.example.pem")
	if !a.(*rsa.PrivateKey).Equal(b) {
		t.Error("PKCS#1 and PKCS#8 files differ")
	}
}

// TestLoadKeyErrors: every bad key file gives one line naming the file
// and the problem.
func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "unreadable.pem")
	data, _ := os.ReadFile("testdata/keys/s1._domainkey.ed.example.pem")
	os.WriteFile(unreadable, data, 0o000)
	big := filepath.Join(dir, "big.pem")
	os.WriteFile(big, make([]byte, 100<<10), 0o600)
	cases := map[string]string{
		filepath.Join(dir, "missing.pem"):  "does not exist",
		dir:                                "is a directory",
		big:                                "larger than",
		"testdata/badkeys/rsa512.pem":      "RSA key of 512 bits is too short",
		"testdata/badkeys/ecdsa-pkcs8.pem": "elliptic-curve",
		"testdata/badkeys/ecdsa-sec1.pem":  "elliptic-curve",
		"testdata/badkeys/certificate.pem": `holds a "CERTIFICATE" block, not a private key`,
		"testdata/badkeys/public.pem":      `holds a "PUBLIC KEY" block, not a private key`,
		"testdata/badkeys/encrypted.pem":   "encrypted",
		"testdata/badkeys/garbage.pem":     "holds no PEM private key",
		"testdata/badkeys/empty.pem":       "holds no PEM private key",
	}
	if os.Geteuid() != 0 { // root reads any file
		cases[unreadable] = "permission denied"
	}
	for path, want := range cases {
		_, err := LoadKey(path)
		if err == nil {
			t.Errorf("%s: loaded", path)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, path) || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q, want one line naming the file and %q", path, msg, want)
		}
	}
}

// TestNewSignerErrors: config problems come back as *keyerr.Error naming
// the key in the file, and key file problems name the file too.
func TestNewSignerErrors(t *testing.T) {
	good := testKeys[0]
	for name, c := range map[string]struct {
		keys    []KeyConfig
		cfg     SigningConfig
		key     string
		message string
	}{
		"missing file": {keys: []KeyConfig{good, {Domain: "b.example", Selector: "s", Key: "testdata/keys/nope.pem"}},
			key: "dkim[1].key", message: "key file testdata/keys/nope.pem: does not exist"},
		"short rsa": {keys: []KeyConfig{{Domain: "b.example", Selector: "s", Key: "testdata/badkeys/rsa512.pem"}},
			key: "dkim[0].key", message: "testdata/badkeys/rsa512.pem: RSA key of 512 bits is too short"},
		"certificate": {keys: []KeyConfig{{Domain: "b.example", Selector: "s", Key: "testdata/badkeys/certificate.pem"}},
			key: "dkim[0].key", message: "testdata/badkeys/certificate.pem"},
		"bad domain": {keys: []KeyConfig{{Domain: "localhost", Selector: "s", Key: good.Key}},
			key: "dkim[0].domain", message: "needs a dot"},
		"bad selector": {keys: []KeyConfig{{Domain: "a.example", Selector: "s_1", Key: good.Key}},
			key: "dkim[0].selector", message: "RFC 6376"},
		"no key": {keys: []KeyConfig{{Domain: "a.example", Selector: "s"}},
			key: "dkim[0].key", message: "path"},
		"duplicate": {keys: []KeyConfig{good, {Domain: "Example.com", Selector: "R2025", Key: good.Key}},
			key: "dkim[1].selector", message: "already configured in dkim[0]"},
		"operator without key": {keys: []KeyConfig{good}, cfg: SigningConfig{OperatorDomain: "mta.example.net"},
			key: "signing.operator_domain", message: "no active [[dkim]] key for mta.example.net"},
		"operator selector missing": {keys: testKeys, cfg: SigningConfig{OperatorDomain: "mta.example.net", OperatorSelectors: []string{"zz"}},
			key: "signing.operator_domain", message: "with selector zz"},
		"bad header": {keys: []KeyConfig{good}, cfg: SigningConfig{Headers: []string{"Subject", "Received"}},
			key: "signing.headers[1]", message: "changed in transit"},
	} {
		_, err := NewSigner(c.keys, c.cfg)
		var ke *keyerr.Error
		if !errors.As(err, &ke) {
			t.Errorf("%s: %v is not a *keyerr.Error", name, err)
			continue
		}
		if ke.Key != c.key || !strings.Contains(ke.Msg, c.message) || strings.Contains(ke.Msg, "\n") {
			t.Errorf("%s: got %s: %s; want %s: ...%s...", name, ke.Key, ke.Msg, c.key, c.message)
		}
	}
	s, err := NewSigner(nil, SigningConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Aligned("example.com"); ok {
		t.Error("an empty Signer aligned")
	}
}

func TestGenerateAndWriteKey(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		algo Algorithm
		bits int
		want int
	}{{RSA, 0, 2048}, {RSA, 1024, 1024}, {Ed25519, 0, 256}} {
		priv, err := GenerateKey(c.algo, c.bits)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "sub", KeyFileName(fmt.Sprintf("s-%s-%d", c.algo, c.bits), "Example.COM"))
		if err := WriteKeyFile(path, priv); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v", path, err, fi.Mode())
		}
		if !strings.HasSuffix(path, "._domainkey.example.com.pem") {
			t.Errorf("file name %s", path)
		}
		back, err := LoadKey(path)
		if err != nil {
			t.Fatal(err)
		}
		k, _ := NewKey("example.com", "s", back)
		if k.Bits() != c.want || k.Algorithm() != c.algo {
			t.Errorf("%s: %d bits %s", path, k.Bits(), k.Algorithm())
		}
		if err := WriteKeyFile(path, priv); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Errorf("overwrite: %v", err)
		}
	}
	for _, bits := range []int{512, 1023, 8192} {
		if _, err := GenerateKey(RSA, bits); err == nil {
			t.Errorf("GenerateKey(rsa, %d) succeeded", bits)
		}
	}
	if _, err := GenerateKey("ecdsa", 0); err == nil {
		t.Error("GenerateKey(ecdsa) succeeded")
	}
}

// TestKeygenOutput: the records committed beside the test keys are what
// ZoneRecord prints for them, every string is at most 255 bytes, and each
// matches its key.
func TestKeygenOutput(t *testing.T) {
	for _, kc := range testKeys {
		priv, err := LoadKey(kc.Key)
		if err != nil {
			t.Fatal(err)
		}
		printed, err := os.ReadFile(strings.TrimSuffix(kc.Key, ".pem") + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		line, err := ZoneRecord(kc.Selector, kc.Domain, priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		if line+"\n" != string(printed) {
			t.Errorf("%s: ZoneRecord\n%s\nkeygen printed\n%s", kc.Key, line, printed)
		}
		name, strs := parseZoneLine(t, line)
		if name != RecordName(kc.Selector, kc.Domain) {
			t.Errorf("record name %s", name)
		}
		for _, s := range strs {
			if len(s) > 255 {
				t.Errorf("%s: string of %d bytes", name, len(s))
			}
		}
		if err := CheckRecord(strs, priv); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		k, _ := NewKey(kc.Domain, kc.Selector, priv)
		if strings.Join(strs, "") != k.Record() || k.Check(strs) != nil {
			t.Errorf("%s: Key.Record/Check disagree", name)
		}
	}
}

func TestNewKeyRefuses(t *testing.T) {
	_, edpriv, _ := ed25519.GenerateKey(nil)
	if _, err := NewKey("example.com", "s", edpriv[:10]); err == nil {
		t.Error("short ed25519 key accepted")
	}
	if _, err := NewKey("example.com", "s", nil); err == nil {
		t.Error("nil key accepted")
	}
}
