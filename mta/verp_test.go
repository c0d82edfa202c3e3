package mta

import (
	"strings"
	"testing"
)

func TestVERPRoundTrip(t *testing.T) {
	v := &verp{domain: "bounces.kiln.test", key: []byte("0123456789abcdef")}
	rp := v.returnPath("01kqs3efm08yxnxt", "Ann@Example.NET")
	local := rp[:strings.IndexByte(rp, '@')]
	if len(local) > 64 || local != strings.ToLower(local) {
		t.Fatalf("return path %q", rp)
	}
	tok, ok := v.parse(strings.ToUpper(rp)) // an MTA that folds case
	if !ok || tok.ID != "01kqs3efm08yxnxt" || tok.RcptHash != rcptHash("ann@example.net") {
		t.Fatalf("parse(%q) = %+v, %v", rp, tok, ok)
	}
	for _, bad := range []string{
		rp[:2] + "z" + rp[3:], // the id tampered with
		"b-01kqs3efm08yxnxt-" + rcptHash("x@y") + "-000000000000@bounces.kiln.test", // forged mac
		strings.Replace(rp, "bounces.kiln.test", "other.test", 1),                   // another domain
		"postmaster@bounces.kiln.test", "", "b-@bounces.kiln.test",
	} {
		if _, ok := v.parse(bad); ok {
			t.Errorf("parse accepted %q", bad)
		}
	}
	other := &verp{domain: "bounces.kiln.test", key: []byte("another secret!!")}
	if _, ok := other.parse(rp); ok {
		t.Error("a token made with another secret was accepted")
	}
}
