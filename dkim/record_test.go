package dkim

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"strings"
	"testing"
)

func TestSplitTXT(t *testing.T) {
	for _, n := range []int{0, 1, 254, 255, 256, 600, 1000} {
		rec := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", n)
		parts := SplitTXT(rec)
		if strings.Join(parts, "") != rec {
			t.Errorf("%d: parts do not join back", n)
		}
		for _, p := range parts {
			if len(p) > 255 || len(p) == 0 {
				t.Errorf("%d: part of %d bytes", n, len(p))
			}
		}
		if len(rec) <= 255 && len(parts) != 1 {
			t.Errorf("%d: a short record was split", n)
		}
	}
}

func TestCheckRecord(t *testing.T) {
	rsaKey, _ := LoadKey(testKeys[0].Key)
	other, _ := LoadKey(testKeys[4].Key)
	edKey, _ := LoadKey(testKeys[1].Key)
	rsaRec, _ := Record(rsaKey)
	edRec, _ := Record(edKey)
	otherRec, _ := Record(other)
	pkcs1 := base64.StdEncoding.EncodeToString(x509.MarshalPKCS1PublicKey(rsaKey.Public().(*rsa.PublicKey)))
	p := strings.TrimPrefix(rsaRec, "v=DKIM1; k=rsa; p=")
	for name, c := range map[string]struct {
		txt  []string
		key  any
		want string // "" = matches
	}{
		"rsa":                  {SplitTXT(rsaRec), rsaKey, ""},
		"rsa without v and k":  {[]string{"p=" + p}, rsaKey, ""},
		"rsa pkcs1":            {[]string{"v=DKIM1; p=" + pkcs1}, rsaKey, ""},
		"rsa with spaces in p": {[]string{"v=DKIM1; k=rsa; p=" + p[:50] + " " + p[50:]}, rsaKey, ""},
		"rsa extra tags":       {[]string{"v=DKIM1; h=sha256; s=email; t=s; n=note; k=rsa; p=" + p + ";"}, rsaKey, ""},
		"ed25519":              {[]string{edRec}, edKey, ""},
		"public key given":     {[]string{edRec}, edKey.Public(), ""},
		"other key":            {SplitTXT(otherRec), rsaKey, "different public key"},
		"ed vs rsa":            {[]string{edRec}, rsaKey, "k=ed25519 but the key is rsa"},
		"rsa vs ed":            {SplitTXT(rsaRec), edKey, "k=rsa but the key is ed25519"},
		"revoked":              {[]string{"v=DKIM1; k=rsa; p="}, rsaKey, "revoked"},
		"no p":                 {[]string{"v=DKIM1; k=rsa"}, rsaKey, "no p="},
		"testing":              {[]string{"v=DKIM1; t=y; p=" + p}, rsaKey, "t=y"},
		"sha1 only":            {[]string{"v=DKIM1; h=sha1; p=" + p}, rsaKey, "sha256"},
		"other service":        {[]string{"v=DKIM1; s=tlsrpt; p=" + p}, rsaKey, "email"},
		"wrong version":        {[]string{"v=DKIM2; p=" + p}, rsaKey, "v=DKIM1"},
		"v not first":          {[]string{"k=rsa; v=DKIM1; p=" + p}, rsaKey, "first tag"},
		"truncated":            {[]string{"v=DKIM1; k=rsa; p=" + p[:200]}, rsaKey, "cut or quoted"},
		"bad base64":           {[]string{"v=DKIM1; k=rsa; p=@@@@"}, rsaKey, "not valid base64"},
		"not a record":         {[]string{"v=spf1 -all"}, rsaKey, "must be v=DKIM1"},
		"duplicate tag":        {[]string{"v=DKIM1; p=" + p + "; p=" + p}, rsaKey, "twice"},
		"empty":                {nil, rsaKey, "not a DKIM key record"},
		"ed wrong size":        {[]string{"v=DKIM1; k=ed25519; p=" + p}, edKey, "32-byte"},
	} {
		err := CheckRecord(c.txt, c.key)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error with %q", name, err, c.want)
		}
	}
	if err := CheckRecords([][]string{{rsaRec}, {rsaRec}}, rsaKey); err == nil || !strings.Contains(err.Error(), "2 TXT records") {
		t.Errorf("two records: %v", err)
	}
	if err := CheckRecords(nil, rsaKey); err == nil {
		t.Error("no record: nil")
	}
	if err := CheckRecords([][]string{SplitTXT(rsaRec)}, rsaKey); err != nil {
		t.Error(err)
	}
}
