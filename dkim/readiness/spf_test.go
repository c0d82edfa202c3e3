package readiness

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"kiln/internal/fakedns"
)

func TestParseSPF(t *testing.T) {
	good := []struct{ in, canon string }{
		{"v=spf1", "v=spf1"},
		{"v=spf1 -all", "v=spf1 -all"},
		{"V=SPF1 +A MX/24 ~ALL", "v=spf1 a mx/24 ~all"},
		{"v=spf1  ip4:192.0.2.0/24  ip6:2001:db8::/32 ?all ", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ?all"},
		{"v=spf1 ip4:192.0.2.1/32 ip6:2001:db8::1/128", "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1"},
		{"v=spf1 a:mail.example.com/24//64 mx//48 a/0", "v=spf1 a:mail.example.com/24//64 mx//48 a/0"},
		{"v=spf1 include:_spf.example.net redirect=_spf.example.com", "v=spf1 include:_spf.example.net redirect=_spf.example.com"},
		{"v=spf1 exists:%{ir}.%{v}._spf.%{d} -all", "v=spf1 exists:%{ir}.%{v}._spf.%{d} -all"},
		{"v=spf1 exists:%{l1r+-}.%{d2}.example.com", "v=spf1 exists:%{l1r+-}.%{d2}.example.com"},
		{"v=spf1 ptr ptr:example.com", "v=spf1 ptr ptr:example.com"},
		{"v=spf1 exp=explain.%{d} foo=%{c}bar -all", "v=spf1 exp=explain.%{d} foo=%{c}bar -all"},
		{"v=spf1 include:example.com.", "v=spf1 include:example.com."},
		{"v=spf1 include:%{d}", "v=spf1 include:%{d}"},
		{"v=spf1 a:x-1.example.co-op", "v=spf1 a:x-1.example.co-op"},
		{"v=spf1 ip6:::ffff:192.0.2.1", "v=spf1 ip6:::ffff:192.0.2.1"},
	}
	for _, c := range good {
		r, err := ParseSPF(c.in)
		if err != nil {
			t.Errorf("ParseSPF(%q): %v", c.in, err)
			continue
		}
		if got := r.String(); got != c.canon {
			t.Errorf("ParseSPF(%q).String() = %q, want %q", c.in, got, c.canon)
		}
	}

	bad := map[string]string{
		"v=spf10":                     "v=spf1",
		"spf1 -all":                   "v=spf1",
		"v=spf1 ip4:192.0.2.300":      "not an IPv4",
		"v=spf1 ip4:2001:db8::1":      "not an IPv4",
		"v=spf1 ip6:192.0.2.1":        "not an IPv6",
		"v=spf1 ip4:192.0.2.0/33":     "longer than 32",
		"v=spf1 ip6:2001:db8::/129":   "longer than 128",
		"v=spf1 a/33":                 "longer than 32",
		"v=spf1 mx//129":              "longer than 128",
		"v=spf1 a/x":                  "CIDR",
		"v=spf1 ip4":                  "needs an address",
		"v=spf1 include":              "needs a domain",
		"v=spf1 include:":             "empty domain",
		"v=spf1 include:localhost":    "needs a dot",
		"v=spf1 include:192.0.2.1":    "top-level label",
		"v=spf1 include:example.com-": "top-level label",
		"v=spf1 all:example.com":      "no argument",
		"v=spf1 -all/24":              "no argument",
		"v=spf1 ptr/24":               "CIDR",
		"v=spf1 foo:example.com":      "unknown mechanism",
		"v=spf1 +":                    "unknown mechanism",
		"v=spf1 redirect=a.example redirect=b.example": "twice",
		"v=spf1 exp=a.example exp=b.example":           "twice",
		"v=spf1 exists:%{x}.example.com":               "unknown macro letter",
		"v=spf1 exists:%{c}.example.com":               "only in exp",
		"v=spf1 exists:%{d0}.example.com":              "must not be zero",
		"v=spf1 exists:%{d}%":                          "percent",
		"v=spf1 exists:%x.example.com":                 "not a macro",
		"v=spf1 exists:%{d.example.com":                "not closed",
		"v=spf1 exists:%{d!}.example.com":              "delimiter",
		"v=spf1 1foo=bar":                              "modifier name",
		"v=spf1 +redirect=example.com":                 "modifier name",
		"v=spf1 redirect=":                             "empty domain",
		"v=spf1 a:exa\x01mple.com":                     "visible ASCII",
	}
	for in, want := range bad {
		_, err := ParseSPF(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSPF(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

// spfZone is a set of SPF records and addresses the evaluation tests share.
func spfZone(s *fakedns.Server) {
	txt := map[string]string{
		"pass.test":         "v=spf1 ip4:192.0.2.10 -all",
		"net.test":          "v=spf1 ip4:192.0.2.0/24 -all",
		"soft.test":         "v=spf1 ip4:192.0.2.10 ~all",
		"neutral.test":      "v=spf1 ip4:192.0.2.10 ?all",
		"noall.test":        "v=spf1 ip4:192.0.2.10",
		"v6.test":           "v=spf1 ip6:2001:db8::/32 -all",
		"a.test":            "v=spf1 a -all",
		"acidr.test":        "v=spf1 a:host.acidr.test/24 -all",
		"a6.test":           "v=spf1 a//64 -all",
		"mx.test":           "v=spf1 mx -all",
		"mxcidr.test":       "v=spf1 mx/24 -all",
		"implicit.test":     "v=spf1 mx -all",
		"nullmx.test":       "v=spf1 mx -all",
		"chain.test":        "v=spf1 include:_spf.a.chain.test -all",
		"_spf.a.chain.test": "v=spf1 include:_spf.b.chain.test ~all",
		"_spf.b.chain.test": "v=spf1 ip4:198.51.100.0/24 -all",
		"skip.test":         "v=spf1 include:_spf.other.test ip4:192.0.2.10 -all",
		"_spf.other.test":   "v=spf1 ip4:203.0.113.0/24 -all",
		"incnone.test":      "v=spf1 include:nothing.test -all",
		"incall.test":       "v=spf1 include:open.test -all",
		"open.test":         "v=spf1 +all",
		"redir.test":        "v=spf1 redirect=_spf.redir.test",
		"_spf.redir.test":   "v=spf1 ip4:192.0.2.10 -all",
		"redirall.test":     "v=spf1 ?all redirect=_spf.redir.test",
		"redirnone.test":    "v=spf1 redirect=nothing.test",
		"loop1.test":        "v=spf1 include:loop2.test -all",
		"loop2.test":        "v=spf1 include:loop1.test -all",
		"selfredir.test":    "v=spf1 redirect=selfredir.test",
		"syntax.test":       "v=spf1 ip4:192.0.2.300 -all",
		"servfail.test":     "v=spf1 include:broken.test -all",
		"voids2.test":       "v=spf1 a:n1.test a:n2.test ip4:192.0.2.10 -all",
		"voids3.test":       "v=spf1 a:n1.test a:n2.test mx:n3.test ip4:192.0.2.10 -all",
		"exists.test":       "v=spf1 exists:ok.exists.test -all",
		"existsi.test":      "v=spf1 exists:%{i}._spf.existsi.test -all",
		"existsir.test":     "v=spf1 exists:%{ir}.%{v}._spf.existsir.test -all",
		"existsl.test":      "v=spf1 exists:%{l}._spf.existsl.test -all",
		"existsh.test":      "v=spf1 exists:%{h}.%{d2} -all",
		"existsp.test":      "v=spf1 ip4:192.0.2.99 exists:%{p}.x.test -all",
		"ptr.test":          "v=spf1 ptr -all",
		"ptrother.test":     "v=spf1 ptr:other.test -all",
		"upper.test":        "V=SPF1 IP4:192.0.2.10 -ALL",
	}
	for n, v := range txt {
		s.AddTXT(n, v)
	}
	s.AddTXT("multi.test", "v=spf1 ip4:192.0.2.10 -all")
	s.AddTXT("multi.test", "v=spf1 ip4:192.0.2.11 -all")
	s.AddTXT("other-txt.test", "google-site-verification=abc")
	s.AddTXT("other-txt.test", "v=spf1 ip4:192.0.2.10 -all")
	s.AddTXT("nospf.test", "google-site-verification=abc")

	s.AddA("a.test", "192.0.2.10")
	s.AddA("host.acidr.test", "192.0.2.1")
	s.AddA("a6.test", "2001:db8:1::1")
	s.AddMX("mx.test", 10, "mx1.mx.test")
	s.AddMX("mx.test", 20, "mx2.mx.test")
	s.AddA("mx1.mx.test", "192.0.2.20")
	s.AddA("mx2.mx.test", "192.0.2.21")
	s.AddMX("mxcidr.test", 10, "mx1.mx.test")
	s.AddA("implicit.test", "192.0.2.30")
	s.AddNullMX("nullmx.test")
	s.AddA("nullmx.test", "192.0.2.31")
	s.AddA("ok.exists.test", "127.0.0.2")
	s.AddA("192.0.2.10._spf.existsi.test", "127.0.0.2")
	s.AddA("2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1._spf.existsi.test", "127.0.0.2")
	s.AddA("10.2.0.192.in-addr._spf.existsir.test", "127.0.0.2")
	s.AddA("out1.kiln.test.existsh.test", "127.0.0.2")
	s.AddPTR("192.0.2.10", "mail.ptr.test")
	s.AddA("mail.ptr.test", "192.0.2.10")
	s.SetFault("broken.test", fakedns.ServFail)
	s.AddA("n3.test", "192.0.2.1") // exists, but has no MX: a void MX lookup

	// Exactly ten lookups reach the address; eleven do not.
	for i := 1; i <= 11; i++ {
		s.AddTXT(fmt.Sprintf("d%d.deep.test", i), fmt.Sprintf("v=spf1 include:d%d.deep.test -all", i+1))
	}
	s.AddTXT("d12.deep.test", "v=spf1 ip4:192.0.2.10 -all")
}

func TestCheckSPF(t *testing.T) {
	s, r := world(t)
	spfZone(s)
	cases := []struct {
		domain, ip string
		want       SPFResult
		match      string // substring of Match, or of Reason when no match
		lookups    int    // checked when > 0
	}{
		{"pass.test", "192.0.2.10", SPFPass, "ip4:192.0.2.10", 0},
		{"pass.test", "192.0.2.11", SPFFail, "-all", 0},
		{"net.test", "192.0.2.77", SPFPass, "ip4:192.0.2.0/24", 0},
		{"net.test", "192.0.3.1", SPFFail, "-all", 0},
		{"soft.test", "198.51.100.1", SPFSoftFail, "~all", 0},
		{"neutral.test", "198.51.100.1", SPFNeutral, "?all", 0},
		{"noall.test", "198.51.100.1", SPFNeutral, "no mechanism matched", 0},
		{"v6.test", "2001:db8:ffff::1", SPFPass, "ip6:2001:db8::/32", 0},
		{"v6.test", "2001:db9::1", SPFFail, "-all", 0},
		{"v6.test", "192.0.2.10", SPFFail, "-all", 0},
		{"pass.test", "::ffff:192.0.2.10", SPFPass, "ip4:192.0.2.10", 0},
		{"a.test", "192.0.2.10", SPFPass, "a", 1},
		{"a.test", "192.0.2.11", SPFFail, "-all", 1},
		{"acidr.test", "192.0.2.99", SPFPass, "a:host.acidr.test/24", 1},
		{"acidr.test", "192.0.3.1", SPFFail, "-all", 1},
		{"a6.test", "2001:db8:1::abcd", SPFPass, "a//64", 1},
		{"a6.test", "2001:db8:2::1", SPFFail, "-all", 1},
		{"mx.test", "192.0.2.21", SPFPass, "mx", 1},
		{"mx.test", "192.0.2.22", SPFFail, "-all", 1},
		{"mxcidr.test", "192.0.2.200", SPFPass, "mx/24", 1},
		{"implicit.test", "192.0.2.30", SPFFail, "-all", 1}, // no implicit MX in SPF
		{"nullmx.test", "192.0.2.31", SPFFail, "-all", 1},
		{"chain.test", "198.51.100.5", SPFPass, "include:_spf.a.chain.test → include:_spf.b.chain.test → ip4:198.51.100.0/24", 2},
		{"chain.test", "192.0.2.10", SPFFail, "-all", 2},
		{"skip.test", "192.0.2.10", SPFPass, "ip4:192.0.2.10", 1},
		{"incnone.test", "192.0.2.10", SPFPermError, "nothing.test publishes no SPF record", 0},
		{"incall.test", "198.51.100.1", SPFPass, "include:open.test → all", 0},
		{"redir.test", "192.0.2.10", SPFPass, "redirect=_spf.redir.test → ip4:192.0.2.10", 1},
		{"redir.test", "192.0.2.11", SPFFail, "-all", 1},
		{"redirall.test", "192.0.2.10", SPFNeutral, "?all", 0},
		{"redirnone.test", "192.0.2.10", SPFPermError, "redirect=nothing.test", 0},
		{"loop1.test", "192.0.2.10", SPFPermError, "loop: loop1.test → loop2.test → loop1.test", 0},
		{"selfredir.test", "192.0.2.10", SPFPermError, "loop", 0},
		{"syntax.test", "192.0.2.10", SPFPermError, "not an IPv4", 0},
		{"multi.test", "192.0.2.10", SPFPermError, "2 SPF records", 0},
		{"other-txt.test", "192.0.2.10", SPFPass, "ip4:192.0.2.10", 0},
		{"nospf.test", "192.0.2.10", SPFNone, "no SPF record", 0},
		{"missing.test", "192.0.2.10", SPFNone, "no SPF record", 0},
		{"localhost", "192.0.2.10", SPFNone, "not a valid domain", 0},
		{"servfail.test", "192.0.2.10", SPFTempError, "include:broken.test", 0},
		{"voids2.test", "192.0.2.10", SPFPass, "ip4:192.0.2.10", 2},
		{"voids3.test", "192.0.2.10", SPFPermError, "void lookups", 3},
		{"d1.deep.test", "192.0.2.10", SPFPermError, "more than 10 DNS lookups", 11},
		{"d2.deep.test", "192.0.2.10", SPFPass, "ip4:192.0.2.10", 10},
		{"exists.test", "192.0.2.10", SPFPass, "exists:ok.exists.test", 1},
		{"existsi.test", "192.0.2.10", SPFPass, "exists:%{i}._spf.existsi.test", 1},
		{"existsi.test", "192.0.2.11", SPFFail, "-all", 1},
		{"existsi.test", "2001:db8::1", SPFPass, "exists:%{i}", 1},
		{"existsir.test", "192.0.2.10", SPFPass, "exists:%{ir}.%{v}", 1},
		{"existsl.test", "192.0.2.10", SPFUnknown, "%{l}", 1},
		{"existsh.test", "192.0.2.10", SPFPass, "exists:%{h}.%{d2}", 1},
		{"existsp.test", "192.0.2.99", SPFPass, "ip4:192.0.2.99", 0},
		{"existsp.test", "192.0.2.10", SPFUnknown, "%{p}", 1},
		{"ptr.test", "192.0.2.10", SPFPass, "ptr", 1},
		{"ptrother.test", "192.0.2.10", SPFFail, "-all", 1},
		{"upper.test", "192.0.2.10", SPFPass, "ip4:192.0.2.10", 0},
	}
	for _, c := range cases {
		t.Run(c.domain+"/"+c.ip, func(t *testing.T) {
			o := CheckSPF(ctx(t), r, SPFQuery{IP: ip(c.ip), Domain: c.domain, HELO: "out1.kiln.test"})
			if o.Result != c.want {
				t.Fatalf("result %s, want %s (%+v)", o.Result, c.want, o)
			}
			got := o.Match
			if got == "" {
				got = o.Reason
			}
			if !strings.Contains(got, c.match) {
				t.Errorf("match/reason %q, want it to contain %q", got, c.match)
			}
			if c.lookups > 0 && o.Lookups != c.lookups {
				t.Errorf("lookups %d, want %d", o.Lookups, c.lookups)
			}
		})
	}
}

func TestCheckSPFSender(t *testing.T) {
	s, r := world(t)
	spfZone(s)
	s.AddA("bounce._spf.existsl.test", "127.0.0.2")
	o := CheckSPF(ctx(t), r, SPFQuery{IP: ip("192.0.2.10"), Domain: "existsl.test", Sender: "bounce@existsl.test"})
	if o.Result != SPFPass {
		t.Fatalf("with a known sender: %+v", o)
	}
}

func TestCheckSPFTimeout(t *testing.T) {
	s, r := world(t)
	s.SetFault("slow.test", fakedns.Timeout)
	o := CheckSPF(ctx(t), r, SPFQuery{IP: ip("192.0.2.10"), Domain: "slow.test"})
	if o.Result != SPFTempError {
		t.Fatalf("%+v", o)
	}
}

func TestWalkSPF(t *testing.T) {
	s, r := world(t)
	spfZone(s)
	var incs []string
	for i := range 12 {
		n := fmt.Sprintf("w%d.wide.test", i)
		s.AddTXT(n, "v=spf1 ip4:203.0.113."+fmt.Sprint(i)+" -all")
		incs = append(incs, "include:"+n)
	}
	s.AddTXT("wide.test", "v=spf1 "+strings.Join(incs, " ")+" -all")
	s.AddTXT("mixed.test", "v=spf1 include:nothing.test include:broken.test exists:%{l}.x.test a:n1.test a:n2.test mx:n3.test ip4:192.0.2.10 -all")

	w := WalkSPF(ctx(t), r, SPFQuery{IP: ip("192.0.2.10"), Domain: "wide.test"})
	if w.Lookups != 12 || len(w.Problems) != 0 {
		t.Errorf("wide: %+v", w)
	}
	w = WalkSPF(ctx(t), r, SPFQuery{IP: ip("192.0.2.10"), Domain: "mixed.test"})
	if w.Lookups != 6 || w.VoidLookups != 3 || len(w.Problems) != 2 || len(w.Unknown) != 1 {
		t.Errorf("mixed: %+v", w)
	}
	w = WalkSPF(ctx(t), r, SPFQuery{IP: ip("192.0.2.10"), Domain: "loop1.test"})
	if len(w.Problems) != 1 || !strings.Contains(w.Problems[0], "loop") {
		t.Errorf("loop: %+v", w)
	}
	w = WalkSPF(ctx(t), r, SPFQuery{IP: ip("192.0.2.10"), Domain: "redir.test"})
	if w.Lookups != 1 || len(w.Problems) != 0 {
		t.Errorf("redirect: %+v", w)
	}
}

func TestMacroTransformers(t *testing.T) {
	e := newSPFEval(ctx(t), nil, SPFQuery{IP: ip("192.0.2.3"), Domain: "email.example.com", Sender: "strong-bad@email.example.com", HELO: "mx.example.org"}, false)
	// The examples of RFC 7208 §7.4.
	cases := map[string]string{
		"%{s}":                              "strong-bad@email.example.com",
		"%{o}":                              "email.example.com",
		"%{d}":                              "email.example.com",
		"%{d4}":                             "email.example.com",
		"%{d3}":                             "email.example.com",
		"%{d2}":                             "example.com",
		"%{d1}":                             "com",
		"%{dr}":                             "com.example.email",
		"%{d2r}":                            "example.email",
		"%{l}":                              "strong-bad",
		"%{l-}":                             "strong.bad",
		"%{lr}":                             "strong-bad",
		"%{lr-}":                            "bad.strong",
		"%{l1r-}":                           "strong",
		"%{ir}.%{v}._spf.%{d2}":             "3.2.0.192.in-addr._spf.example.com",
		"%{lr-}.lp._spf.%{d2}":              "bad.strong.lp._spf.example.com",
		"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}":   "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
		"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}":  "3.2.0.192.in-addr.strong.lp._spf.example.com",
		"%{d2}.trusted-domains.example.net": "example.com.trusted-domains.example.net",
		"%{h}.x":                            "mx.example.org.x",
		"%%.%_.%-":                          "%. .%20",
		"%{S}":                              "strong-bad%40email.example.com",
	}
	for in, want := range cases {
		got, err := e.expandMacros(in, "email.example.com")
		if err != nil || got != want {
			t.Errorf("%s = %q, %v; want %q", in, got, err, want)
		}
	}
	e6 := newSPFEval(ctx(t), nil, SPFQuery{IP: ip("2001:db8::cb01"), Domain: "email.example.com"}, false)
	got, _ := e6.expandMacros("%{ir}.%{v}._spf.%{d2}", "email.example.com")
	if want := "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"; got != want {
		t.Errorf("IPv6 %%{ir}: %q", got)
	}
	long := strings.Repeat("abcdefghij.", 30) + "example.com"
	got, _ = e.expandMacros("%{d}", long)
	if len(got) > 253 || !strings.HasSuffix(got, "example.com") {
		t.Errorf("long name kept %d bytes: %q", len(got), got)
	}
}

func TestParseSPFRoundTrip(t *testing.T) {
	for _, in := range []string{"v=spf1 a/24//64 mx:x.example.com/0 -ip4:10.0.0.0/8 ~all", "v=spf1 redirect=%{d}.example.com"} {
		a, err := ParseSPF(in)
		if err != nil {
			t.Fatal(err)
		}
		b, err := ParseSPF(a.String())
		if err != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("%q: %v %v", in, a, b)
		}
	}
}
