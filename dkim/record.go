package dkim

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// RecordName is the DNS name of a key record: selector._domainkey.domain
// (RFC 6376 §3.6.2.1).
func RecordName(selector, domain string) string {
	return selector + "._domainkey." + normDomain(domain)
}

// Record returns the key record text for a public key (RFC 6376 §3.6.1):
// "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or, for Ed25519,
// "v=DKIM1; k=ed25519; p=<base64 of the 32-byte key>" (RFC 8463 §4.2).
// A private key's public half is taken if one is given.
func Record(pub crypto.PublicKey) (string, error) {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	switch p := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(p)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(p), nil
	}
	return "", fmt.Errorf("dkim: no key record for a %T key", pub)
}

// SplitTXT cuts a record into the character-strings of one TXT record, each
// at most 255 bytes (RFC 1035 §3.3.14); a verifier joins them without
// separators (RFC 6376 §3.6.2.2). The first cut falls after "p=" where the
// record allows it, so zone files read well.
func SplitTXT(record string) []string {
	var out []string
	if i := strings.Index(record, "p="); i > 0 && i+2 <= 255 && len(record) > 255 {
		out = append(out, record[:i+2])
		record = record[i+2:]
	}
	for len(record) > 255 {
		out = append(out, record[:255])
		record = record[255:]
	}
	return append(out, record)
}

// ZoneRecord is the record as one zone-file line, the form "kiln dkim
// keygen" prints:
//
//	sel._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=" "MIIBIjAN..." "..."
func ZoneRecord(selector, domain string, pub crypto.PublicKey) (string, error) {
	rec, err := Record(pub)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(RecordName(selector, domain))
	b.WriteString(". IN TXT")
	for _, s := range SplitTXT(rec) {
		b.WriteString(` "`)
		b.WriteString(s) // base64 and tags have no quote or backslash
		b.WriteString(`"`)
	}
	return b.String(), nil
}

// CheckRecords compares every TXT record published at a key's name with
// the key: RFC 6376 §3.6.2.2 leaves several records undefined, and verifiers
// then pick one at random or fail, so more than one is itself an error. Each
// record is given as its character-strings (net.LookupTXT joins them already,
// which is the same thing).
func CheckRecords(records [][]string, pub crypto.PublicKey) error {
	switch len(records) {
	case 0:
		return errors.New("no TXT record published")
	case 1:
		return CheckRecord(records[0], pub)
	}
	return fmt.Errorf("%d TXT records published at the name: verifiers need exactly one (RFC 6376 §3.6.2.2)", len(records))
}

// CheckRecord reports whether the published TXT record (its
// character-strings, joined without separators as RFC 6376 §3.6.2.2 says)
// lets verifiers check signatures made with the private key whose public
// half is pub. It returns nil when it does, and otherwise an error saying
// why not, in words an operator can act on.
func CheckRecord(txt []string, pub crypto.PublicKey) error {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	var want Algorithm
	switch pub.(type) {
	case *rsa.PublicKey:
		want = RSA
	case ed25519.PublicKey:
		want = Ed25519
	default:
		return fmt.Errorf("cannot check a %T key", pub)
	}
	tags, err := parseTagList(strings.Join(txt, ""))
	if err != nil {
		return fmt.Errorf("record is not a DKIM key record: %v", err)
	}
	if v, ok := tags.get("v"); ok {
		if v != "DKIM1" {
			return fmt.Errorf("record has v=%s: must be v=DKIM1", v)
		}
		if tags[0].name != "v" {
			return errors.New("v=DKIM1 must be the first tag of the record (RFC 6376 §3.6.1)")
		}
	}
	k, ok := tags.get("k")
	if !ok {
		k = "rsa" // RFC 6376 §3.6.1: the default
	}
	if Algorithm(k) != want {
		return fmt.Errorf("record has k=%s but the key is %s", k, want)
	}
	if h, ok := tags.get("h"); ok && !hasListItem(h, "sha256") {
		return fmt.Errorf("record has h=%s, which does not allow sha256", h)
	}
	if s, ok := tags.get("s"); ok && !hasListItem(s, "email") && !hasListItem(s, "*") {
		return fmt.Errorf("record has s=%s, which does not allow email", s)
	}
	if t, ok := tags.get("t"); ok && hasListItem(t, "y") {
		return errors.New("record has t=y (testing): receivers treat the signed mail as unsigned (RFC 6376 §3.6.1); remove it")
	}
	p, ok := tags.get("p")
	if !ok {
		return errors.New("record has no p= tag")
	}
	if p == "" {
		return errors.New("record has an empty p=: the key is revoked (RFC 6376 §3.6.1)")
	}
	der, err := base64.StdEncoding.DecodeString(stripFWS(p))
	if err != nil {
		return errors.New("p= is not valid base64 (was the record cut or quoted wrongly?)")
	}
	switch pk := pub.(type) {
	case *rsa.PublicKey:
		got, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			// Erratum 3017: some publish a bare PKCS#1 RSAPublicKey, and
			// verifiers such as go-msgauth and dkimpy accept it.
			got, err = x509.ParsePKCS1PublicKey(der)
		}
		if err != nil {
			return errors.New("p= does not hold an RSA public key (was the record cut or quoted wrongly?)")
		}
		if r, ok := got.(*rsa.PublicKey); !ok || !pk.Equal(r) {
			return errors.New("p= holds a different public key: the record does not match this key")
		}
	case ed25519.PublicKey:
		if len(der) != ed25519.PublicKeySize {
			return fmt.Errorf("p= holds %d bytes: an Ed25519 key record holds the raw 32-byte key (RFC 8463 §4.2)", len(der))
		}
		if !bytes.Equal(der, pk) {
			return errors.New("p= holds a different public key: the record does not match this key")
		}
	}
	return nil
}

type tag struct{ name, value string }

type tagList []tag

func (l tagList) get(name string) (string, bool) {
	for _, t := range l {
		if t.name == name {
			return t.value, true
		}
	}
	return "", false
}

// parseTagList reads an RFC 6376 §3.2 tag=value list: tags separated by
// ";", whitespace around names and values ignored, a trailing ";" allowed,
// duplicate names an error.
func parseTagList(s string) (tagList, error) {
	var l tagList
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not a tag=value pair", strings.TrimSpace(part))
		}
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, errors.New("a tag has no name")
		}
		if _, dup := l.get(name); dup {
			return nil, fmt.Errorf("tag %s appears twice", name)
		}
		l = append(l, tag{name, strings.TrimSpace(value)})
	}
	if len(l) == 0 {
		return nil, errors.New("no tags")
	}
	return l, nil
}

func hasListItem(list, item string) bool {
	for _, x := range strings.Split(list, ":") {
		if strings.TrimSpace(x) == item {
			return true
		}
	}
	return false
}

func stripFWS(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
}
