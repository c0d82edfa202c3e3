package readiness

import (
	"reflect"
	"testing"
)

// FuzzParseSPF: the parser never panics, and a record it accepts writes
// back (String) to a record that parses to the same terms.
func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all",
		"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx/24//64 ptr:example.com ~all",
		"v=spf1 include:_spf.google.com include:%{ir}.%{v}._spf.%{d2} redirect=_spf.example.com",
		"v=spf1 exists:%{l1r+-}.%{d}.example.com exp=explain.%{d} foo=%{c}%%%_%- ?all",
		"V=SPF1 +A:Mail.Example.COM/0 -MX:x.example//0",
		"v=spf1 a:foo/bar.example.com/24",
		"v=spf1 ip6:::ffff:192.0.2.1/120",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSPF(s)
		if err != nil {
			return
		}
		out := r.String()
		r2, err := ParseSPF(out)
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", s, out, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("%q: %+v\nwritten back as %q: %+v", s, r.Terms, out, r2.Terms)
		}
		if r2.String() != out {
			t.Fatalf("String is not stable: %q then %q", out, r2.String())
		}
		// Every domain-spec the parser accepts expands without a panic,
		// to a name of at most 253 bytes.
		for _, q := range []SPFQuery{
			{IP: ip("192.0.2.1"), Domain: "example.com", Sender: "a-b@example.com", HELO: "mx.example.com"},
			{IP: ip("2001:db8::1"), Domain: "example.com"},
		} {
			e := newSPFEval(t.Context(), nil, q, false)
			for _, term := range r.Terms {
				spec := term.Domain
				if term.Name == "redirect" || term.Name == "exp" {
					spec = term.Value
				}
				if spec == "" {
					continue
				}
				if name, err := e.expandMacros(spec, "example.com"); err == nil && len(name) > 253 {
					t.Fatalf("%q expands to %d bytes", spec, len(name))
				}
			}
		}
	})
}

// FuzzParseDMARC: the parser never panics, and a record it accepts writes
// back to one that parses the same.
func FuzzParseDMARC(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=none",
		"v=DMARC1; p=reject; sp=quarantine; pct=50; adkim=s; aspf=r; rua=mailto:a@example.com,mailto:b@example.net!10m; ruf=mailto:f@example.com; fo=1:d; rf=afrf; ri=86400",
		" v = DMARC1 ;P=Quarantine;; np=reject;",
		"v=DMARC1; p=none; pct=007",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseDMARC(s)
		if err != nil {
			return
		}
		out := r.String()
		r2, err := ParseDMARC(out)
		if err != nil {
			t.Fatalf("%q parsed, but its String %q does not: %v", s, out, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("%q: %+v\nwritten back as %q: %+v", s, r, out, r2)
		}
		if r.Policy == "" || r.Pct < 0 || r.Pct > 100 {
			t.Fatalf("%q: accepted with %+v", s, r)
		}
	})
}
