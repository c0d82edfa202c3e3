package main

import (
	"encoding/json"
	"strings"
	"testing"
)

const readinessEgress = `[[egress]]
name = "out1"
source = "192.0.2.10"
ehlo = "out1.kiln.test"

[[egress]]
name = "out2"
source = "192.0.2.11"
`

// publishReady publishes everything example.test needs for out1 and out2.
func (w *readinessWorld) publishReady() {
	d := w.dns
	d.AddTXT(w.keyA.RecordName(), w.keyA.Record())
	d.AddTXT(w.keyB.RecordName(), w.keyB.Record())
	d.AddTXT("example.test", "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 -all")
	d.AddTXT("_dmarc.example.test", "v=DMARC1; p=reject; rua=mailto:dmarc@example.test")
	d.AddPTR("192.0.2.10", "out1.kiln.test")
	d.AddA("out1.kiln.test", "192.0.2.10")
	d.AddPTR("192.0.2.11", "mta.kiln.test")
	d.AddA("mta.kiln.test", "192.0.2.11")
}

func TestDomainCheckReady(t *testing.T) {
	w := newReadinessWorld(t, readinessEgress)
	w.publishReady()
	out, errs, code := runReadinessCmd(t, "domain", "check", "example.test", "--config", w.config)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q\n%s", code, errs, out)
	}
	for _, want := range []string{
		"domain example.test\n",
		"resolver " + w.dns.Addr() + "\n",
		"source out1 192.0.2.10 (ehlo out1.kiln.test)\n",
		"source out2 192.0.2.11 (ehlo mta.kiln.test)\n",
		"ok    dkim    a._domainkey.example.test",
		"ok    spf     out2 192.0.2.11",
		"ok    fcrdns  out2 192.0.2.11",
		"\nready: 8 ok, 0 warn, 0 fail\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestDomainCheckFindings(t *testing.T) {
	w := newReadinessWorld(t, readinessEgress)
	w.publishReady()
	w.dns.Remove("example.test")
	w.dns.AddTXT("example.test", "v=spf1 ip4:192.0.2.10 include:_spf.esp.test ~all")
	w.dns.AddTXT("_spf.esp.test", "v=spf1 ip4:203.0.113.0/24 -all")
	w.dns.Remove("_dmarc.example.test")
	w.dns.AddTXT("_dmarc.example.test", "v=DMARC1; p=none; rua=mailto:dmarc@example.test")

	out, _, code := runReadinessCmd(t, "domain", "check", "--config", w.config, "example.test")
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{
		"fail  spf     out2 192.0.2.11",
		"not authorised: SPF softfail (~all matched)",
		`example.test. IN TXT "v=spf1 ip4:192.0.2.11 ip4:192.0.2.10 include:_spf.esp.test ~all"`,
		"warn  dmarc   _dmarc.example.test",
		`_dmarc.example.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.test"`,
		"not ready: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, _, code = runReadinessCmd(t, "domain", "check", "--config", w.config, "--json", "example.test")
	if code != 1 {
		t.Errorf("--json: exit %d", code)
	}
	var rep struct {
		Domain    string
		Result    string
		Resolvers []string
		Sources   []struct{ Name, Addr, EHLO string }
		Findings  []struct{ Check, Subject, Severity, Summary, Fix, Record string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Domain != "example.test" || rep.Result != "fail" || len(rep.Sources) != 2 || rep.Sources[1].EHLO != "mta.kiln.test" {
		t.Errorf("JSON: %+v", rep)
	}
	fails := 0
	for _, f := range rep.Findings {
		if f.Severity == "fail" {
			fails++
			if f.Record == "" || f.Fix == "" {
				t.Errorf("fail without a fix: %+v", f)
			}
		}
	}
	if fails != 1 {
		t.Errorf("%d fails: %+v", fails, rep.Findings)
	}

	// A warning alone exits 0.
	w.dns.Remove("example.test")
	w.dns.AddTXT("example.test", "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 ~all")
	out, _, code = runReadinessCmd(t, "domain", "check", "--config", w.config, "example.test")
	if code != 0 || !strings.Contains(out, "ready, with warnings: ") {
		t.Errorf("warnings only: exit %d\n%s", code, out)
	}
}

func TestDomainCheckSources(t *testing.T) {
	// No [[egress]]: the hostname's addresses are assumed.
	w := newReadinessWorld(t, "")
	w.publishReady()
	out, _, code := runReadinessCmd(t, "domain", "check", "--config", w.config, "example.test")
	if code != 0 || !strings.Contains(out, "source 192.0.2.11 (ehlo mta.kiln.test, assumed)") ||
		!strings.Contains(out, "warn  egress  mta.kiln.test") || !strings.Contains(out, "assuming kiln sends from the addresses of its hostname") {
		t.Errorf("assumed: exit %d\n%s", code, out)
	}

	// --source replaces them.
	out, _, code = runReadinessCmd(t, "domain", "check", "--config", w.config, "--source", "192.0.2.10=out1.kiln.test", "--source", "192.0.2.12", "example.test")
	if code != 1 || !strings.Contains(out, "source 192.0.2.10 (ehlo out1.kiln.test)") ||
		!strings.Contains(out, "fail  fcrdns  192.0.2.12") || !strings.Contains(out, "12.2.0.192.in-addr.arpa. IN PTR mta.kiln.test.") {
		t.Errorf("--source: exit %d\n%s", code, out)
	}
}

func TestDomainCheckUsage(t *testing.T) {
	w := newReadinessWorld(t, "")
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"domain", "check"}, "want exactly one DOMAIN"},
		{[]string{"domain", "check", "a.test", "b.test"}, "want exactly one DOMAIN"},
		{[]string{"domain", "check", "postmaster@example.test"}, "not an address"},
		{[]string{"domain", "check", "localhost"}, "not a domain name"},
		{[]string{"domain", "check", "--config", w.config, "--source", "not-an-ip", "example.test"}, "not an IP address"},
		{[]string{"domain", "check", "--bogus", "example.test"}, "flag provided but not defined"},
	} {
		_, errs, code := runReadinessCmd(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.err) {
			t.Errorf("%q: exit %d, stderr %q", c.args, code, errs)
		}
	}
}

func TestDomainCheckIDN(t *testing.T) {
	d, err := domainCheckArg("Bücher.Example.")
	if err != nil || d != "xn--bcher-kva.example" {
		t.Errorf("%q, %v", d, err)
	}
}
