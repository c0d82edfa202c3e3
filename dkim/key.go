package dkim

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Algorithm is a DKIM key type, as written in the k= tag of the key record.
type Algorithm string

const (
	// RSA keys sign with rsa-sha256 (RFC 6376 §3.3, RFC 8301).
	RSA Algorithm = "rsa"
	// Ed25519 keys sign with ed25519-sha256 (RFC 8463).
	Ed25519 Algorithm = "ed25519"
)

// RSA key sizes. RFC 8301 §3.2: signers MUST use at least 1024 bits and
// SHOULD use at least 2048; verifiers MUST accept 1024 to 4096 bits, so a
// longer key may not verify everywhere (and its record no longer fits a
// plain 512-byte DNS answer).
const (
	MinRSABits     = 1024
	MaxRSABits     = 4096
	DefaultRSABits = 2048
)

// maxKeyFile bounds what LoadKey reads: a 4096-bit RSA key in PEM is about
// 3.3 KB, so anything far larger is the wrong file.
const maxKeyFile = 64 << 10

// Key is one signing key: a private key published under
// selector._domainkey.domain.
type Key struct {
	// Domain is the signing domain (the d= tag), lower case.
	Domain string
	// Selector names the key record under the domain (the s= tag).
	Selector string
	// File is the PEM file the key was loaded from ("" when built in memory).
	File string
	// Retired keys are kept so their records can still be checked, but
	// kiln no longer signs with them (a rotation in progress).
	Retired bool

	priv crypto.Signer
	algo Algorithm
	// rsaSigner makes priv's RSA signatures when the build has a faster
	// implementation than crypto/rsa (see newRSASigner); nil otherwise.
	rsaSigner crypto.Signer
	// record is the key record text, computed once.
	record string
}

// NewKey checks priv (an *rsa.PrivateKey of MinRSABits to MaxRSABits bits,
// or an ed25519.PrivateKey) and returns it as the key for selector and
// domain.
func NewKey(domain, selector string, priv crypto.Signer) (*Key, error) {
	algo, err := keyAlgorithm(priv)
	if err != nil {
		return nil, err
	}
	k := &Key{Domain: normDomain(domain), Selector: selector, priv: priv, algo: algo}
	if p, ok := priv.(*rsa.PrivateKey); ok && newRSASigner != nil {
		k.rsaSigner = newRSASigner(k.RecordName(), p)
	}
	k.record, err = Record(priv.Public())
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Algorithm reports the key type, which picks the signature algorithm.
func (k *Key) Algorithm() Algorithm { return k.algo }

// Bits is the RSA modulus size, or 256 for Ed25519.
func (k *Key) Bits() int {
	if r, ok := k.priv.(*rsa.PrivateKey); ok {
		return r.N.BitLen()
	}
	return 256
}

// Public returns the public half (*rsa.PublicKey or ed25519.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.priv.Public() }

// RecordName is the DNS name of the key record: selector._domainkey.domain.
func (k *Key) RecordName() string { return RecordName(k.Selector, k.Domain) }

// Record is the text of the key record to publish ("v=DKIM1; k=...; p=...").
func (k *Key) Record() string { return k.record }

// Check compares the published TXT record at RecordName with this key; see
// CheckRecord.
func (k *Key) Check(published []string) error { return CheckRecord(published, k.Public()) }

func (k *Key) String() string {
	return fmt.Sprintf("%s (%s %d bits)", k.RecordName(), k.algo, k.Bits())
}

// newRSASigner is set by cgo builds (openssl.go) to wrap an
// RSA key in a crypto.Signer that makes the same PKCS#1 v1.5 signatures
// with OpenSSL's libcrypto; name is the key's record name, for its log
// lines. It is nil in builds without cgo or with the purego tag, where
// crypto/rsa signs.
var newRSASigner func(name string, priv *rsa.PrivateKey) crypto.Signer

// keyAlgorithm tells RSA from Ed25519 and refuses everything else, including
// RSA keys of unusable size.
func keyAlgorithm(priv any) (Algorithm, error) {
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		bits := p.N.BitLen()
		if bits < MinRSABits {
			return "", fmt.Errorf("RSA key of %d bits is too short: DKIM needs at least %d (RFC 8301 §3.2), %d recommended", bits, MinRSABits, DefaultRSABits)
		}
		if bits > MaxRSABits {
			return "", fmt.Errorf("RSA key of %d bits is too long: verifiers need only accept up to %d (RFC 8301 §3.2)", bits, MaxRSABits)
		}
		return RSA, nil
	case ed25519.PrivateKey:
		if len(p) != ed25519.PrivateKeySize {
			return "", errors.New("malformed Ed25519 key")
		}
		return Ed25519, nil
	case *ecdsa.PrivateKey, *ecdh.PrivateKey:
		return "", errors.New("holds an elliptic-curve (ECDSA/ECDH) key: DKIM signs only with RSA (RFC 8301) or Ed25519 (RFC 8463)")
	case nil:
		return "", errors.New("no key")
	default:
		return "", fmt.Errorf("holds a %T key: DKIM signs only with RSA or Ed25519", priv)
	}
}

// ParseKey decodes a PEM private key: PKCS#8 ("PRIVATE KEY") holding RSA
// or Ed25519, or PKCS#1 ("RSA PRIVATE KEY"). Other blocks (certificates,
// public keys) may surround it; exactly one private key must be present.
// The error says what was found instead, without the file name (LoadKey
// adds it).
func ParseKey(data []byte) (crypto.Signer, error) {
	var found []string
	var key crypto.Signer
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			found = append(found, b.Type)
			continue
		}
		if key != nil {
			return nil, errors.New("holds more than one private key")
		}
		k, err := parsePrivateBlock(b)
		if err != nil {
			return nil, err
		}
		key = k
	}
	if key != nil {
		return key, nil
	}
	if len(found) > 0 {
		return nil, fmt.Errorf("holds %s, not a private key", describeBlocks(found))
	}
	return nil, errors.New("holds no PEM private key (expected a PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\" block)")
}

func parsePrivateBlock(b *pem.Block) (crypto.Signer, error) {
	if _, ok := b.Headers["Proc-Type"]; ok || b.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("holds an encrypted private key: kiln needs it unencrypted (protect the file with its permissions)")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		if err != nil {
			// Some tools label PKCS#8 as RSA; accept what the bytes are.
			if k2, err2 := x509.ParsePKCS8PrivateKey(b.Bytes); err2 == nil {
				k, err = k2, nil
			}
		}
	case "EC PRIVATE KEY":
		return nil, errors.New("holds an elliptic-curve (ECDSA) key: DKIM signs only with RSA (RFC 8301) or Ed25519 (RFC 8463)")
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("holds an OpenSSH-format key: convert it to PKCS#8 PEM first")
	default:
		return nil, fmt.Errorf("holds an unsupported %q block", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("holds a malformed %q block: %v", b.Type, strings.TrimPrefix(err.Error(), "x509: "))
	}
	if _, err := keyAlgorithm(k); err != nil {
		return nil, err
	}
	return k.(crypto.Signer), nil
}

func describeBlocks(types []string) string {
	seen := map[string]bool{}
	var out []string
	for _, t := range types {
		if !seen[t] {
			seen[t] = true
			out = append(out, fmt.Sprintf("a %q block", t))
		}
	}
	return strings.Join(out, " and ")
}

// LoadKey reads and parses the PEM key file at path. Every error names the
// file and says what is wrong on one line: missing, unreadable, not a key,
// the wrong type, or too short.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err == nil {
		var k crypto.Signer
		if k, err = ParseKey(data); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("key file %s: %v", path, err)
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, pathErr(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, errors.New("is a directory, not a key file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, pathErr(err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("is larger than %d KB: not a key file", maxKeyFile>>10)
	}
	return data, nil
}

// pathErr drops the operation and path from an *fs.PathError: the caller
// names the file once.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		switch {
		case errors.Is(pe.Err, fs.ErrNotExist):
			return errors.New("does not exist")
		case errors.Is(pe.Err, fs.ErrPermission):
			return errors.New("cannot be read: permission denied")
		}
		return fmt.Errorf("cannot be read: %v", pe.Err)
	}
	return err
}

// GenerateKey makes a new key: RSA of the given size (0 means
// DefaultRSABits), or Ed25519 (bits ignored).
func GenerateKey(algo Algorithm, bits int) (crypto.Signer, error) {
	switch algo {
	case RSA:
		if bits == 0 {
			bits = DefaultRSABits
		}
		if bits < MinRSABits || bits > MaxRSABits {
			return nil, fmt.Errorf("RSA keys must have %d to %d bits (RFC 8301 §3.2), not %d", MinRSABits, MaxRSABits, bits)
		}
		return rsa.GenerateKey(rand.Reader, bits)
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("unknown key algorithm %q (rsa or ed25519)", algo)
}

// MarshalKey encodes a private key as PKCS#8 PEM, the form kiln writes.
func MarshalKey(priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// KeyFileName is the file name kiln gives a generated key: the record's DNS
// name plus ".pem" (sel._domainkey.example.com.pem), so a directory of keys
// reads like the zone it needs.
func KeyFileName(selector, domain string) string {
	return RecordName(selector, domain) + ".pem"
}

// WriteKeyFile writes priv as PKCS#8 PEM to path with mode 0600, creating
// the file: an existing file is never overwritten, since it may be the only
// copy of a key whose record is published.
func WriteKeyFile(path string, priv crypto.Signer) error {
	data, err := MarshalKey(priv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite a key (move it away or choose another selector)", path)
		}
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %v", path, err)
	}
	return nil
}
