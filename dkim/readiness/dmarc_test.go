package readiness

import (
	"reflect"
	"strings"
	"testing"

	"kiln/internal/fakedns"
)

func TestParseDMARC(t *testing.T) {
	good := []struct {
		in   string
		want DMARCRecord // Tags not compared
	}{
		{"v=DMARC1; p=none", DMARCRecord{Policy: "none", Pct: 100, ADKIM: "r", ASPF: "r"}},
		{"v=DMARC1;p=reject;", DMARCRecord{Policy: "reject", Pct: 100, ADKIM: "r", ASPF: "r"}},
		{" v = DMARC1 ; P = Quarantine ; sp=none; pct=25; adkim=s; aspf=S; rua=mailto:a@example.com, mailto:b@example.net!10m ;ruf=mailto:f@example.com; fo=1; ri=3600; np=reject",
			DMARCRecord{Policy: "quarantine", SubdomainPolicy: "none", Pct: 25, ADKIM: "s", ASPF: "s",
				RUA: []string{"mailto:a@example.com", "mailto:b@example.net!10m"}, RUF: []string{"mailto:f@example.com"}}},
		{"v=DMARC1; p=none; pct=0", DMARCRecord{Policy: "none", Pct: 0, ADKIM: "r", ASPF: "r"}},
	}
	for _, c := range good {
		r, err := ParseDMARC(c.in)
		if err != nil {
			t.Errorf("ParseDMARC(%q): %v", c.in, err)
			continue
		}
		got := *r
		got.Tags = nil
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseDMARC(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}

	bad := map[string]string{
		"":                                    "v=DMARC1",
		"v=spf1 -all":                         "v=DMARC1",
		"p=reject; v=DMARC1":                  "v=DMARC1",
		"v=DMARC2; p=reject":                  "v=DMARC1",
		"v=dmarc1; p=reject":                  "v=DMARC1",
		"v=DMARC1":                            "no p=",
		"v=DMARC1; rua=mailto:a@example.com":  "no p=",
		"v=DMARC1; p=strict":                  "none, quarantine or reject",
		"v=DMARC1; p=none; sp=all":            "none, quarantine or reject",
		"v=DMARC1; p=none; pct=101":           "0 to 100",
		"v=DMARC1; p=none; pct=-1":            "0 to 100",
		"v=DMARC1; p=none; pct=+5":            "0 to 100",
		"v=DMARC1; p=none; pct=half":          "0 to 100",
		"v=DMARC1; p=none; adkim=x":           "relaxed",
		"v=DMARC1; p=none; p=reject":          "twice",
		"v=DMARC1; p=none; garbage":           "tag=value",
		"v=DMARC1; p=none; 1x=y":              "tag=value",
		"v=DMARC1; p=none; rua=mailto:a@\x01": "visible ASCII",
	}
	for in, want := range bad {
		_, err := ParseDMARC(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDMARC(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

func TestDMARCWith(t *testing.T) {
	r, err := ParseDMARC("v=DMARC1; p=none; fo=1")
	if err != nil {
		t.Fatal(err)
	}
	got := r.With("p", "quarantine").With("rua", "mailto:dmarc@example.com")
	if s := got.String(); s != "v=DMARC1; p=quarantine; fo=1; rua=mailto:dmarc@example.com" {
		t.Errorf("With: %q", s)
	}
	if got.Policy != "quarantine" || len(got.RUA) != 1 {
		t.Errorf("With did not reparse: %+v", got)
	}
	if r.String() != "v=DMARC1; p=none; fo=1" {
		t.Errorf("With changed the original: %q", r)
	}
	if e := got.With("sp", "none"); e.Effective(true) != "none" || e.Effective(false) != "quarantine" {
		t.Errorf("Effective: %+v", e)
	}
}

func TestMailtoDomain(t *testing.T) {
	for in, want := range map[string]string{
		"mailto:dmarc@Example.COM":     "example.com",
		"mailto:d@reports.example!10m": "reports.example",
		"MAILTO:x@y.example?subject=z": "y.example",
		"https://example.com/report":   "",
		"mailto:nobody":                "",
		"mailto:a@":                    "",
	} {
		if got := mailtoDomain(in); got != want {
			t.Errorf("mailtoDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckDMARC(t *testing.T) {
	s, r := world(t)
	s.AddTXT("_dmarc.good.test", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@good.test")
	s.AddTXT("_dmarc.none.test", "v=DMARC1; p=none; rua=mailto:dmarc@none.test")
	s.AddTXT("_dmarc.norua.test", "v=DMARC1; p=quarantine; pct=50")
	s.AddTXT("_dmarc.bad.test", "v=DMARC1; p=maybe")
	s.AddTXT("_dmarc.two.test", "v=DMARC1; p=none")
	s.AddTXT("_dmarc.two.test", "v=DMARC1; p=reject")
	s.AddTXT("_dmarc.org.test", "v=DMARC1; p=reject; sp=none; rua=mailto:d@org.test")
	s.AddTXT("_dmarc.ext.test", "v=DMARC1; p=reject; rua=mailto:a@reports.example,mailto:b@ok.example,mailto:c@sub.ext.test")
	s.AddTXT("ext.test._report._dmarc.ok.example", "v=DMARC1")
	s.AddTXT("_dmarc.other.test", "some other text")
	s.SetFault("_dmarc.fail.test", fakedns.ServFail)

	cases := []struct {
		domain  string
		sev     Severity
		subject string
		summary string
		record  string
	}{
		{"good.test", OK, "_dmarc.good.test", "p=reject, sp=quarantine, reports to mailto:dmarc@good.test", ""},
		{"none.test", Warn, "_dmarc.none.test", "p=none", `_dmarc.none.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@none.test"`},
		{"norua.test", Warn, "_dmarc.norua.test", "pct=50", `_dmarc.norua.test. IN TXT "v=DMARC1; p=quarantine; pct=50; rua=mailto:dmarc@norua.test"`},
		{"bad.test", Fail, "_dmarc.bad.test", "invalid", `_dmarc.bad.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@bad.test"`},
		{"two.test", Fail, "_dmarc.two.test", "2 DMARC records", `_dmarc.two.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@two.test"`},
		{"missing.test", Fail, "_dmarc.missing.test", "no DMARC record", `_dmarc.missing.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@missing.test"`},
		{"other.test", Fail, "_dmarc.other.test", "no DMARC record", `"v=DMARC1; p=quarantine; rua=mailto:dmarc@other.test"`},
		{"fail.test", Fail, "_dmarc.fail.test", "lookup failed", ""},
		{"mail.good.test", OK, "_dmarc.good.test", "good.test applies to it: sp=quarantine", ""},
		{"news.org.test", Warn, "_dmarc.org.test", "sp=none", `_dmarc.news.org.test. IN TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@org.test"`},
		{"mail.missing.test", Fail, "_dmarc.mail.missing.test", "no DMARC record", ""},
	}
	for _, c := range cases {
		t.Run(c.domain, func(t *testing.T) {
			ch := &Checker{Resolver: r}
			fs, _ := ch.checkDMARC(ctx(t), c.domain)
			f := fs[0]
			if f.Severity != c.sev || f.Subject != c.subject || !strings.Contains(f.Summary, c.summary) || !strings.Contains(f.Record, c.record) {
				t.Errorf("got %+v", f)
			}
			if f.Severity != OK && f.Fix == "" {
				t.Errorf("no fix: %+v", f)
			}
		})
	}

	ch := &Checker{Resolver: r}
	fs, rec := ch.checkDMARC(ctx(t), "ext.test")
	if rec == nil || len(fs) != 3 {
		t.Fatalf("ext.test: %+v", fs)
	}
	if fs[1].Subject != "ext.test._report._dmarc.reports.example" || fs[1].Severity != Warn ||
		fs[1].Record != `ext.test._report._dmarc.reports.example. IN TXT "v=DMARC1"` {
		t.Errorf("unauthorised report domain: %+v", fs[1])
	}
	if fs[2].Subject != "ext.test._report._dmarc.ok.example" || fs[2].Severity != OK {
		t.Errorf("authorised report domain: %+v", fs[2])
	}
}
