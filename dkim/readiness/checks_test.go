package readiness

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/dkim"
	"kiln/internal/fakedns"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// testKey is an Ed25519 key made from a fixed seed, so its record is the
// same in every run.
func testKey(t *testing.T, domain, selector string, seed byte) *dkim.Key {
	t.Helper()
	k, err := dkim.NewKey(domain, selector, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestCheckKey(t *testing.T) {
	s, r := world(t)
	good := testKey(t, "example.test", "ed", 1)
	other := testKey(t, "example.test", "other", 2)
	rsaPriv, err := dkim.GenerateKey(dkim.RSA, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, _ := dkim.NewKey("example.test", "rsa", rsaPriv)
	s.AddTXT(good.RecordName(), good.Record())
	s.AddTXT(other.RecordName(), good.Record()) // someone else's key
	s.AddTXT(rsaKey.RecordName(), dkim.SplitTXT(rsaKey.Record())...)
	testing1 := testKey(t, "example.test", "testing", 3)
	s.AddTXT(testing1.RecordName(), testing1.Record()+"; t=y")
	twice := testKey(t, "example.test", "twice", 4)
	s.AddTXT(twice.RecordName(), twice.Record())
	s.AddTXT(twice.RecordName(), other.Record())
	missing := testKey(t, "example.test", "missing", 5)
	broken := testKey(t, "broken.test", "ed", 6)
	s.SetFault(broken.RecordName(), fakedns.ServFail)

	cases := []struct {
		k      *dkim.Key
		status KeyStatus
		reason string
	}{
		{good, KeyMatch, ""},
		{rsaKey, KeyMatch, ""},
		{other, KeyMismatch, "different public key"},
		{testing1, KeyMismatch, "t=y"},
		{twice, KeyMismatch, "2 TXT records"},
		{missing, KeyMissing, "no TXT record at missing._domainkey.example.test"},
		{broken, KeyDNSError, "SERVFAIL"},
	}
	for _, c := range cases {
		res := CheckKey(ctx(t), r, c.k)
		if res.Status != c.status || !strings.Contains(res.Reason, c.reason) {
			t.Errorf("%s: %s %q, want %s %q", c.k.RecordName(), res.Status, res.Reason, c.status, c.reason)
		}
		if res.Record != c.k.Record() || !strings.HasPrefix(res.Zone, c.k.RecordName()+". IN TXT ") {
			t.Errorf("%s: record %q zone %q", c.k.RecordName(), res.Record, res.Zone)
		}
		f := res.Finding()
		if (f.Severity == OK) != (c.status == KeyMatch) || (f.Severity != OK && f.Record != res.Zone) {
			t.Errorf("%s: finding %+v", c.k.RecordName(), f)
		}
	}
	if _, ok := rsaKey.Public().(*rsa.PublicKey); !ok {
		t.Fatal("not an RSA key")
	}

	retired := testKey(t, "example.test", "old", 7)
	retired.Retired = true
	if f := CheckKey(ctx(t), r, retired).Finding(); f.Severity != Warn || !strings.Contains(f.Summary, "retired") {
		t.Errorf("retired key without a record: %+v", f)
	}
}

func TestAlignedKeys(t *testing.T) {
	parent := testKey(t, "example.test", "a", 1)
	child := testKey(t, "news.example.test", "a", 2)
	retired := testKey(t, "mail.example.test", "a", 3)
	retired.Retired = true
	keys := []*dkim.Key{parent, child, retired}
	for d, want := range map[string]string{
		"example.test":        "example.test",
		"news.example.test":   "news.example.test",
		"a.news.example.test": "news.example.test",
		"mail.example.test":   "example.test", // only a retired key of its own
		"other.test":          "",
	} {
		if got, _ := alignedKeys(keys, d); got != want {
			t.Errorf("alignedKeys(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestFCrDNS(t *testing.T) {
	s, r := world(t)
	s.AddPTR("192.0.2.10", "out1.kiln.test")
	s.AddA("out1.kiln.test", "192.0.2.10")
	s.AddA("out2.kiln.test", "192.0.2.11")
	s.AddPTR("192.0.2.12", "out3.kiln.test")
	s.AddA("out3.kiln.test", "192.0.2.99")
	s.AddPTR("192.0.2.13", "host13.provider.test")
	s.AddA("host13.provider.test", "192.0.2.13")
	s.AddA("out4.kiln.test", "192.0.2.13")
	s.AddPTR("192.0.2.14", "host14.provider.test")
	s.AddPTR("192.0.2.15", "out5.kiln.test")
	s.AddPTR("192.0.2.15", "alias.kiln.test")
	s.AddA("out5.kiln.test", "192.0.2.15")
	s.AddPTR("2001:db8::10", "out6.kiln.test")
	s.AddA("out6.kiln.test", "2001:db8::10")
	s.AddA("out6.kiln.test", "192.0.2.16")
	s.SetFault("17.2.0.192.in-addr.arpa", fakedns.ServFail)

	cases := []struct {
		addr, ehlo string
		sev        Severity
		summary    string
		record     string
		fix        string
	}{
		{"192.0.2.10", "Out1.Kiln.Test.", OK, "PTR out1.kiln.test resolves back to 192.0.2.10", "", ""},
		{"192.0.2.11", "out2.kiln.test", Fail, "no PTR record", "11.2.0.192.in-addr.arpa. IN PTR out2.kiln.test.", "reverse DNS to out2.kiln.test"},
		{"192.0.2.18", "out8.kiln.test", Fail, "no PTR record", "18.2.0.192.in-addr.arpa. IN PTR out8.kiln.test.", "publish out8.kiln.test. IN A 192.0.2.18"},
		{"192.0.2.12", "out3.kiln.test", Fail, "does not resolve back", "out3.kiln.test. IN A 192.0.2.12", ""},
		{"192.0.2.13", "out4.kiln.test", Warn, "PTR host13.provider.test resolves back", "13.2.0.192.in-addr.arpa. IN PTR out4.kiln.test.", `set ehlo = "host13.provider.test"`},
		{"192.0.2.14", "out4.kiln.test", Fail, "host14.provider.test does not resolve back", "14.2.0.192.in-addr.arpa. IN PTR out4.kiln.test.", "publish out4.kiln.test. IN A 192.0.2.14"},
		{"192.0.2.15", "out5.kiln.test", Warn, "several PTR records", "15.2.0.192.in-addr.arpa. IN PTR out5.kiln.test.", ""},
		{"2001:db8::10", "out6.kiln.test", OK, "resolves back to 2001:db8::10", "", ""},
		{"192.0.2.17", "out7.kiln.test", Fail, "PTR lookup failed", "", "resolver"},
	}
	ch := &Checker{Resolver: r}
	for _, c := range cases {
		f := ch.fcrdns(ctx(t), Source{Name: "e", Addr: ip(c.addr), EHLO: c.ehlo})
		if f.Severity != c.sev || !strings.Contains(f.Summary, c.summary) || f.Record != c.record || !strings.Contains(f.Fix, c.fix) {
			t.Errorf("%s: %+v", c.addr, f)
		}
		if f.Subject != "e "+c.addr {
			t.Errorf("%s: subject %q", c.addr, f.Subject)
		}
	}
}

// readyWorld publishes what a ready domain needs, and returns the checker.
func readyWorld(t *testing.T) (*fakedns.Server, *Checker) {
	s, r := world(t)
	k := testKey(t, "example.test", "ed", 1)
	s.AddTXT(k.RecordName(), k.Record())
	s.AddTXT("example.test", "v=spf1 ip4:192.0.2.10 include:_spf.esp.test -all")
	s.AddTXT("_spf.esp.test", "v=spf1 ip4:203.0.113.0/24 -all")
	s.AddTXT("_dmarc.example.test", "v=DMARC1; p=reject; rua=mailto:dmarc@example.test")
	s.AddPTR("192.0.2.10", "out1.kiln.test")
	s.AddA("out1.kiln.test", "192.0.2.10")
	return s, &Checker{
		Resolver: r, Keys: []*dkim.Key{k}, Hostname: "mta.kiln.test",
		Sources: []Source{{Name: "out1", Addr: ip("192.0.2.10"), EHLO: "out1.kiln.test"}},
	}
}

func TestCheckReady(t *testing.T) {
	_, c := readyWorld(t)
	rep := c.Check(ctx(t), "Example.Test.")
	if rep.Worst() != OK || rep.Domain != "example.test" {
		for _, f := range rep.Findings {
			t.Logf("%+v", f)
		}
		t.Fatalf("worst %s", rep.Worst())
	}
	want := []string{"dkim ed._domainkey.example.test", "spf example.test", "spf out1 192.0.2.10", "dmarc _dmarc.example.test", "fcrdns out1 192.0.2.10"}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Check+" "+f.Subject)
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("findings %q, want %q", got, want)
	}
}

// TestCheckGolden checks a domain with a bit of everything wrong, and
// compares the table and the JSON with golden files.
func TestCheckGolden(t *testing.T) {
	s, c := readyWorld(t)
	old := testKey(t, "example.test", "old", 2)
	old.Retired = true
	c.Keys = append(c.Keys, old)
	c.Sources = append(c.Sources,
		Source{Name: "out2", Addr: ip("192.0.2.11"), EHLO: "out2.kiln.test"},
		Source{Name: "out3", Addr: ip("2001:db8::11"), EHLO: "out3.kiln.test"})
	s.Remove("example.test")
	s.AddTXT("example.test", "v=spf1 ip4:192.0.2.10 include:_spf.esp.test ~all")
	s.Remove("_dmarc.example.test")
	s.AddTXT("_dmarc.example.test", "v=DMARC1; p=none")
	s.AddPTR("2001:db8::11", "out3.kiln.test")
	s.AddA("out3.kiln.test", "2001:db8::11")

	rep := c.Check(ctx(t), "example.test")
	if rep.Worst() != Fail {
		t.Errorf("worst %s", rep.Worst())
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "report.txt", text.Bytes())
	golden(t, "report.json", append(js, '\n'))

	var back Report
	if err := json.Unmarshal(js, &back); err != nil || back.Worst() != Fail || len(back.Findings) != len(rep.Findings) {
		t.Errorf("JSON does not read back: %v", err)
	}
}

func TestCheckNoSources(t *testing.T) {
	s, c := readyWorld(t)
	c.Sources = nil
	c.Hostname = "out1.kiln.test"
	rep := c.Check(ctx(t), "example.test")
	f := rep.Findings[0]
	if f.Check != Egress || f.Severity != Warn || !strings.Contains(f.Summary, "assuming") || len(rep.Sources) != 1 || !rep.Sources[0].Assumed {
		t.Fatalf("assumed sources: %+v %+v", f, rep.Sources)
	}
	if rep.Worst() != Warn {
		t.Errorf("worst %s", rep.Worst())
	}

	c.Hostname = "nowhere.kiln.test"
	rep = c.Check(ctx(t), "example.test")
	f = rep.Findings[0]
	if f.Check != Egress || f.Severity != Warn || !strings.Contains(f.Summary, "cannot be checked") || len(rep.Sources) != 0 {
		t.Fatalf("no sources: %+v", f)
	}
	for _, f := range rep.Findings {
		if f.Check == FCrDNS || (f.Check == SPF && f.Subject != "example.test") {
			t.Errorf("per-source finding without sources: %+v", f)
		}
	}
	_ = s
}

func TestCheckPrivateSources(t *testing.T) {
	_, c := readyWorld(t)
	c.Sources = append(c.Sources, Source{Name: "nat", Addr: ip("10.0.0.5"), EHLO: "out1.kiln.test"},
		Source{Name: "lo", Addr: ip("::1"), EHLO: "out1.kiln.test"})
	rep := c.Check(ctx(t), "example.test")
	if rep.Result != Warn || len(rep.Sources) != 1 {
		t.Fatalf("result %s, sources %v", rep.Result, rep.Sources)
	}
	var skipped []string
	for _, f := range rep.Findings {
		if f.Check == Egress {
			skipped = append(skipped, f.Subject)
			if f.Severity != Warn || !strings.Contains(f.Summary, "not a public address") {
				t.Errorf("%+v", f)
			}
		}
		if strings.HasPrefix(f.Subject, "nat ") && f.Check != Egress {
			t.Errorf("private address checked: %+v", f)
		}
	}
	if strings.Join(skipped, "|") != "nat 10.0.0.5|lo ::1" {
		t.Errorf("skipped %q", skipped)
	}
}

func TestCheckSPFFindings(t *testing.T) {
	s, c := readyWorld(t)
	s.AddTXT("nospf.test", "something else")
	s.AddTXT("two.test", "v=spf1 ip4:198.51.100.1 -all")
	s.AddTXT("two.test", "v=spf1 include:_spf.esp.test ~all")
	s.AddTXT("bad.test", "v=spf1 ip4:1.2.3 -all")
	s.AddTXT("open.test", "v=spf1 ptr +all")
	var incs []string
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"} {
		s.AddTXT(n+".inc.test", "v=spf1 ip4:203.0.113.1 -all")
		incs = append(incs, "include:"+n+".inc.test")
	}
	s.AddTXT("wide.test", "v=spf1 "+strings.Join(incs, " ")+" -all")
	s.AddTXT("wide-ok.test", "v=spf1 ip4:192.0.2.10 "+strings.Join(incs, " ")+" -all")
	s.AddTXT("macro.test", "v=spf1 exists:%{l}.m.test -all")
	s.SetFault("slow.test", fakedns.ServFail)

	cases := []struct {
		domain string
		n      int
		sev    []Severity
		text   []string // substrings of summary+detail, per finding
		record string   // of the last finding
	}{
		{"nospf.test", 1, []Severity{Fail}, []string{"no SPF record"}, `nospf.test. IN TXT "v=spf1 ip4:192.0.2.10 ~all"`},
		{"two.test", 1, []Severity{Fail}, []string{"2 SPF records"}, `two.test. IN TXT "v=spf1 ip4:192.0.2.10 ip4:198.51.100.1 include:_spf.esp.test ~all"`},
		{"bad.test", 1, []Severity{Fail}, []string{"invalid"}, ""},
		{"open.test", 2, []Severity{Warn, OK}, []string{"+all", "authorised by all"}, ""},
		{"wide.test", 2, []Severity{Warn, Fail}, []string{"takes 11 DNS lookups", "more than 10 DNS lookups"}, `wide.test. IN TXT "v=spf1 ip4:192.0.2.10 include:a.inc.test`},
		{"wide-ok.test", 2, []Severity{Warn, OK}, []string{"takes 11 DNS lookups", "authorised by ip4:192.0.2.10"}, ""},
		{"macro.test", 2, []Severity{OK, Warn}, []string{"without a message", "%{l}"}, `macro.test. IN TXT "v=spf1 ip4:192.0.2.10 exists:%{l}.m.test -all"`},
		{"slow.test", 1, []Severity{Fail}, []string{"lookup failed"}, ""},
	}
	for _, cs := range cases {
		t.Run(cs.domain, func(t *testing.T) {
			fs := c.checkSPF(ctx(t), cs.domain, c.Sources)
			if len(fs) != cs.n {
				t.Fatalf("%d findings: %+v", len(fs), fs)
			}
			for i, f := range fs {
				if f.Severity != cs.sev[i] || !strings.Contains(f.Summary+" "+f.Detail, cs.text[i]) {
					t.Errorf("finding %d: %+v", i, f)
				}
			}
			if last := fs[len(fs)-1]; !strings.HasPrefix(last.Record, cs.record) || (cs.record == "" && last.Record != "") {
				t.Errorf("record %q, want %q", last.Record, cs.record)
			}
		})
	}
}

func TestZoneTXT(t *testing.T) {
	long := "v=spf1 " + strings.Repeat("ip4:192.0.2.100 ", 20) + "-all"
	z := zoneTXT("example.test", long)
	parts := strings.Split(strings.TrimPrefix(z, "example.test. IN TXT "), `" "`)
	if len(parts) != 2 {
		t.Fatalf("%s", z)
	}
	joined := strings.Trim(strings.Join(parts, ""), `"`)
	if joined != long || len(parts[0]) > 256 || !strings.HasSuffix(parts[0], " ") {
		t.Errorf("%s", z)
	}
	if z := zoneTXT("x.test", `a"b\c`); z != `x.test. IN TXT "a\"b\\c"` {
		t.Errorf("escaping: %s", z)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; got:\n%s", name, got)
	}
}
