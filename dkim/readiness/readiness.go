package readiness

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"kiln/dkim"
	"kiln/mta/resolve"
)

// Resolver is the DNS the checks read. *resolve.Resolver satisfies it; its
// errors are told apart with resolve.IsNotFound (the record does not exist)
// and resolve.IsTemporary (nothing is known), so a fake must return
// *resolve.Error values.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupA(ctx context.Context, host string) ([]netip.Addr, error)
	LookupAAAA(ctx context.Context, host string) ([]netip.Addr, error)
	LookupMX(ctx context.Context, domain string) ([]resolve.Host, error)
	LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error)
}

// Severity grades a finding.
type Severity int

const (
	// OK: nothing to do.
	OK Severity = iota
	// Warn: mail goes out, but something weakens delivery or protection.
	Warn
	// Fail: receivers will not authenticate kiln's mail for the domain, or
	// the check could not be made (a DNS failure).
	Fail
)

func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// MarshalText writes the severity as "ok", "warn" or "fail".
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads "ok", "warn" or "fail".
func (s *Severity) UnmarshalText(b []byte) error {
	switch string(b) {
	case "ok":
		*s = OK
	case "warn":
		*s = Warn
	case "fail":
		*s = Fail
	default:
		return fmt.Errorf("unknown severity %q", b)
	}
	return nil
}

// The checks a finding comes from: the four parts of a domain's readiness,
// and Egress, which says how the source addresses were chosen when no
// egress is configured.
const (
	DKIM   = "dkim"
	SPF    = "spf"
	DMARC  = "dmarc"
	FCrDNS = "fcrdns"
	Egress = "egress"
)

// Finding is one result of a check.
type Finding struct {
	// Check is DKIM, SPF, DMARC, FCrDNS or Egress.
	Check string `json:"check"`
	// Subject is what the finding is about: a record's DNS name, a source
	// address.
	Subject  string   `json:"subject"`
	Severity Severity `json:"severity"`
	// Summary says what was found, on one line.
	Summary string `json:"summary"`
	// Detail adds what the operator needs to understand it, if anything.
	Detail string `json:"detail,omitempty"`
	// Fix says what to do when the finding is not ok.
	Fix string `json:"fix,omitempty"`
	// Record is the DNS record to publish (or ask for) to fix it, as one
	// zone-file line; empty when no record fixes it.
	Record string `json:"record,omitempty"`
}

// Source is an address kiln sends from, with the name it announces there.
type Source struct {
	// Name is the [[egress]] name; empty for an address given otherwise.
	Name string     `json:"name,omitempty"`
	Addr netip.Addr `json:"addr"`
	// EHLO is the name kiln announces from Addr: the egress's ehlo, or
	// kiln's hostname.
	EHLO string `json:"ehlo"`
	// Assumed marks an address the checker guessed (see Checker.Sources).
	Assumed bool `json:"assumed,omitempty"`
}

func (s Source) String() string {
	if s.Name != "" {
		return s.Name + " " + s.Addr.String()
	}
	return s.Addr.String()
}

// Report is the readiness of one domain.
type Report struct {
	Domain string `json:"domain"`
	// Result is the worst severity of the findings (see Worst), set by
	// Checker.Check.
	Result Severity `json:"result"`
	// Resolvers are the DNS servers asked, for the reader (set by the
	// caller; the Checker only knows its Resolver interface).
	Resolvers []string  `json:"resolvers,omitempty"`
	Sources   []Source  `json:"sources"`
	Findings  []Finding `json:"findings"`
}

// Worst is the highest severity among the findings (OK when there are none).
func (r *Report) Worst() Severity {
	w := OK
	for _, f := range r.Findings {
		w = max(w, f.Severity)
	}
	return w
}

// Count returns how many findings have severity s.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Checker checks domains against kiln's configuration.
type Checker struct {
	Resolver Resolver
	// Keys are kiln's DKIM keys, retired ones included.
	Keys []*dkim.Key
	// Sources are the addresses kiln sends from. When there are none (no
	// [[egress]] configured, kiln sends from the machine's default address,
	// which no config names), Check assumes the addresses Hostname resolves
	// to, and says so in a warning; when Hostname has none either, SPF
	// authorisation and FCrDNS cannot be checked, which is also a warning.
	Sources []Source
	// Hostname is kiln's own name, the EHLO name of assumed sources.
	Hostname string
}

// Check reports the readiness of domain. The four checks run concurrently;
// the findings come in a fixed order: sources, DKIM, SPF, DMARC, FCrDNS.
func (c *Checker) Check(ctx context.Context, domain string) *Report {
	domain = normalizeDomain(domain)
	rep := &Report{Domain: domain}
	sources, srcFindings := c.sources(ctx)
	rep.Sources = sources

	var parts [4][]Finding
	var dm *DMARCRecord
	var wg sync.WaitGroup
	wg.Go(func() { parts[0] = c.checkDomainKeys(ctx, domain) })
	wg.Go(func() { parts[1] = c.checkSPF(ctx, domain, sources) })
	wg.Go(func() { parts[2], dm = c.checkDMARC(ctx, domain) })
	wg.Go(func() { parts[3] = c.checkFCrDNS(ctx, sources) })
	wg.Wait()
	parts[0] = append(parts[0], c.strictDKIM(domain, dm)...)

	rep.Findings = append(rep.Findings, srcFindings...)
	for _, p := range parts {
		rep.Findings = append(rep.Findings, p...)
	}
	rep.Result = rep.Worst()
	return rep
}

// sources returns the sources to check: the configured ones, or the
// assumed ones, with the findings that say how they were chosen. Addresses
// receivers never see (loopback, private, link-local: kiln behind a NAT)
// are left out, each with a warning, since SPF and reverse DNS are judged on
// the address the receiver sees.
func (c *Checker) sources(ctx context.Context) ([]Source, []Finding) {
	given, findings := c.Sources, []Finding(nil)
	if len(given) == 0 {
		given, findings = c.assumeSources(ctx)
	}
	var out []Source
	for _, s := range given {
		if publicAddr(s.Addr) {
			out = append(out, s)
			continue
		}
		findings = append(findings, Finding{
			Check: Egress, Subject: s.String(), Severity: Warn,
			Summary: "not a public address: receivers see the address it is translated to (NAT), so SPF and FCrDNS are not checked for it",
			Fix:     "check the public address it is translated to instead (kiln domain check --source ADDR=" + s.EHLO + ")",
		})
	}
	return out, findings
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsPrivate() &&
		!a.IsLinkLocalUnicast() && !a.IsMulticast()
}

// assumeSources guesses the sources when none is configured: the addresses
// of Hostname.
func (c *Checker) assumeSources(ctx context.Context) ([]Source, []Finding) {
	f := Finding{Check: Egress, Subject: c.Hostname, Severity: Warn}
	var addrs []netip.Addr
	var failed error
	if c.Hostname != "" {
		for _, look := range []func(context.Context, string) ([]netip.Addr, error){c.Resolver.LookupA, c.Resolver.LookupAAAA} {
			a, err := look(ctx, c.Hostname)
			if err != nil && !resolve.IsNotFound(err) {
				failed = err
			}
			addrs = append(addrs, a...)
		}
	}
	if len(addrs) == 0 {
		f.Summary = "no [[egress]] configured and hostname " + c.Hostname + " has no address: SPF authorisation and FCrDNS cannot be checked"
		if failed != nil {
			f.Detail = failed.Error()
		}
		f.Fix = "configure the addresses kiln sends from as [[egress]] (source, ehlo), or name them with --source"
		return nil, []Finding{f}
	}
	var out []Source
	var list []string
	for _, a := range addrs {
		out = append(out, Source{Addr: a, EHLO: c.Hostname, Assumed: true})
		list = append(list, a.String())
	}
	f.Summary = "no [[egress]] configured: assuming kiln sends from the addresses of its hostname " + c.Hostname + ": " + strings.Join(list, ", ")
	f.Detail = "without [[egress]], kiln sends from the machine's default address, which the config does not name; the SPF and FCrDNS findings hold only if that is one of these"
	f.Fix = "configure the addresses kiln sends from as [[egress]] (source, ehlo), or name them with --source"
	return out, []Finding{f}
}

// normalizeDomain lower-cases a domain and drops a trailing dot.
func normalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

// zoneTXT writes a TXT record as one zone-file line, the value cut into
// character-strings of at most 255 bytes (RFC 1035 §3.3.14), preferably
// after a space; receivers join them without separators.
func zoneTXT(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(". IN TXT")
	for {
		part := value
		if len(part) > 255 {
			cut := 255
			if i := strings.LastIndexByte(value[:255], ' '); i > 0 {
				cut = i + 1
			}
			part = value[:cut]
		}
		b.WriteString(` "`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(part))
		b.WriteString(`"`)
		value = value[len(part):]
		if value == "" {
			return b.String()
		}
	}
}
