package readiness

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
	"golang.org/x/net/publicsuffix"

	"kiln/mta/resolve"
)

// walkIP is the address a walk of the SPF tree evaluates for when no source
// is known: TEST-NET-1 (RFC 5737), which no record should authorise.
var walkIP = netip.MustParseAddr("192.0.2.1")

// checkSPF reports the domain's SPF record and whether it authorises each
// source.
func (c *Checker) checkSPF(ctx context.Context, domain string, sources []Source) []Finding {
	rf := Finding{Check: SPF, Subject: domain}
	txt, err := c.Resolver.LookupTXT(ctx, domain)
	if err != nil && !resolve.IsNotFound(err) {
		rf.Severity, rf.Summary, rf.Detail = Fail, "SPF lookup failed", err.Error()
		rf.Fix = "check the resolver and the domain's name servers, then run the check again"
		return []Finding{rf}
	}
	var records []string
	for _, t := range txt {
		if IsSPF(t) {
			records = append(records, t)
		}
	}
	var addTerms []string
	for _, s := range sources {
		addTerms = append(addTerms, ipTerm(s.Addr))
	}

	switch len(records) {
	case 0:
		rf.Severity, rf.Summary = Fail, "no SPF record: receivers cannot tell kiln's addresses from a forger's"
		if len(addTerms) > 0 {
			rf.Fix = "publish an SPF record that authorises kiln's addresses; add the other services that send mail as " + domain + " (their include: or ip4: terms) before ~all"
			rf.Record = zoneTXT(domain, "v=spf1 "+strings.Join(addTerms, " ")+" ~all")
		} else {
			rf.Fix = "publish an SPF record (v=spf1 ... ~all) naming every address that sends mail as " + domain
		}
		return []Finding{rf}
	case 1:
	default:
		rf.Severity = Fail
		rf.Summary = fmt.Sprintf("%d SPF records: receivers treat this as a permanent error (RFC 7208 §4.5) and authorise nothing", len(records))
		rf.Detail = strings.Join(records, " | ")
		rf.Fix = "merge them into one record and delete the others"
		rf.Record = zoneTXT(domain, mergeSPF(records, addTerms))
		return []Finding{rf}
	}

	rec, err := ParseSPF(records[0])
	if err != nil {
		rf.Severity, rf.Summary = Fail, "SPF record is invalid, so receivers treat it as a permanent error: "+err.Error()
		rf.Detail = records[0]
		rf.Fix = "correct the record"
		return []Finding{rf}
	}

	// The record as such.
	rf.Summary = "one SPF record: " + records[0]
	var notes []string
	if q := allQualifier(rec); q == '+' {
		rf.Severity = Warn
		notes = append(notes, `"+all" authorises every address on the internet: anyone can pass SPF as `+domain+`; end the record with ~all or -all`)
	}
	if slices.ContainsFunc(rec.Terms, func(t SPFTerm) bool { return t.Mechanism == "ptr" }) {
		rf.Severity = Warn
		notes = append(notes, `the ptr mechanism is slow and unreliable and must not be used (RFC 7208 §5.5); some receivers ignore it`)
	}
	wq := SPFQuery{IP: walkIP, Domain: domain}
	if len(sources) > 0 {
		wq.IP, wq.HELO = sources[0].Addr, sources[0].EHLO
	}
	w := WalkSPF(ctx, c.Resolver, wq)
	if w.Lookups > MaxSPFLookups {
		rf.Severity = Warn
		notes = append(notes, fmt.Sprintf("evaluating the whole record takes %d DNS lookups; receivers stop at %d with a permanent error, so every address listed after that fails SPF: replace includes with the addresses they hold", w.Lookups, MaxSPFLookups))
	} else {
		rf.Summary += fmt.Sprintf(" (needs %d of the %d DNS lookups allowed)", w.Lookups, MaxSPFLookups)
	}
	if w.VoidLookups > MaxSPFVoidLookups {
		rf.Severity = Warn
		notes = append(notes, fmt.Sprintf("%d lookups find no record; receivers stop at %d with a permanent error (RFC 7208 §4.6.4): remove the terms naming domains that do not exist", w.VoidLookups, MaxSPFVoidLookups))
	}
	for _, p := range w.Problems {
		rf.Severity = Warn
		notes = append(notes, p)
	}
	if len(w.Unknown) > 0 {
		notes = append(notes, "cannot be evaluated without a message: "+strings.Join(w.Unknown, "; "))
	}
	rf.Detail = strings.Join(notes, "; ")
	if rf.Severity != OK {
		rf.Fix = "correct the record as the details say"
	}
	out := []Finding{rf}

	// Each source.
	var missing []string
	type result struct {
		src Source
		o   SPFOutcome
	}
	var results []result
	for _, s := range sources {
		o := CheckSPF(ctx, c.Resolver, SPFQuery{IP: s.Addr, Domain: domain, HELO: s.EHLO})
		results = append(results, result{s, o})
		switch o.Result {
		case SPFPass, SPFTempError:
		default:
			missing = append(missing, ipTerm(s.Addr))
		}
	}
	fixed := ""
	if len(missing) > 0 {
		fixed = zoneTXT(domain, "v=spf1 "+strings.Join(missing, " ")+records[0][6:])
	}
	for _, r := range results {
		f := Finding{Check: SPF, Subject: r.src.String()}
		o := r.o
		switch o.Result {
		case SPFPass:
			f.Summary = "authorised by " + o.Match
		case SPFTempError:
			f.Severity, f.Summary, f.Detail = Fail, "SPF evaluation failed on a DNS error (temperror)", o.Reason
			f.Fix = "check the resolver and the name servers of the domains the record names, then run the check again"
		case SPFUnknown:
			f.Severity, f.Summary, f.Detail = Warn, "cannot evaluate SPF for this address ahead of a message", o.Reason
			f.Fix = "to be sure, add the address to the record, before the terms that need a message"
			f.Record = fixed
		case SPFPermError:
			f.Severity, f.Summary, f.Detail = Fail, "receivers get a permanent error (permerror), which is not a pass", o.Reason
			f.Fix = "add the address at the front of the record, where receivers match it before any lookup, and correct the record"
			f.Record = fixed
		default:
			f.Severity, f.Summary = Fail, "not authorised: SPF "+string(o.Result)
			if o.Match != "" {
				f.Summary += " (" + o.Match + " matched)"
			}
			f.Detail = o.Reason
			f.Fix = "add the address to the record"
			f.Record = fixed
		}
		if r.src.Assumed {
			f.Detail = strings.TrimPrefix(f.Detail+"; address assumed from the hostname", "; ")
		}
		out = append(out, f)
	}
	return out
}

// ipTerm is the SPF mechanism authorising exactly a.
func ipTerm(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "ip4:" + a.Unmap().String()
	}
	return "ip6:" + a.String()
}

// allQualifier returns the qualifier of the record's all mechanism, 0 when
// it has none.
func allQualifier(r *SPFRecord) byte {
	for _, t := range r.Terms {
		if t.Mechanism == "all" {
			return t.Qualifier
		}
	}
	return 0
}

// mergeSPF makes one record of several: kiln's terms, every term of the
// others except all and redirect, once each, and ~all.
func mergeSPF(records []string, add []string) string {
	terms := append([]string(nil), add...)
	for _, rec := range records {
		for _, w := range strings.Fields(rec)[1:] {
			l := strings.ToLower(strings.TrimLeft(w, "+-~?"))
			if l == "all" || strings.HasPrefix(l, "redirect=") || slices.Contains(terms, w) {
				continue
			}
			terms = append(terms, w)
		}
	}
	return "v=spf1 " + strings.Join(append(terms, "~all"), " ")
}

// checkDMARC reports the DMARC record that governs domain, and returns it
// (nil when there is none) for the DKIM alignment check.
func (c *Checker) checkDMARC(ctx context.Context, domain string) ([]Finding, *DMARCRecord) {
	name := "_dmarc." + domain
	suggest := "v=DMARC1; p=quarantine; rua=mailto:dmarc@" + domain
	f := Finding{Check: DMARC, Subject: name}

	rec, bad := c.lookupDMARC(ctx, name)
	if bad != nil {
		bad.Subject = name
		if bad.Fix == "" {
			bad.Fix = "publish one valid DMARC record"
			bad.Record = zoneTXT(name, suggest)
		}
		return []Finding{*bad}, nil
	}

	// No record of its own: the organizational domain's applies, its sp=
	// for a subdomain (RFC 7489 §6.6.3).
	sub := false
	recName := name
	if rec == nil {
		org, err := publicsuffix.EffectiveTLDPlusOne(domain)
		if err == nil && org != domain {
			orgName := "_dmarc." + org
			orec, obad := c.lookupDMARC(ctx, orgName)
			if obad != nil {
				obad.Subject = orgName
				obad.Summary = "no record at " + name + ", and the organizational domain's: " + obad.Summary
				obad.Fix = "publish a DMARC record for " + domain
				obad.Record = zoneTXT(name, suggest)
				return []Finding{*obad}, nil
			}
			if orec != nil {
				rec, sub, recName = orec, true, orgName
			}
		}
	}
	if rec == nil {
		f.Severity, f.Summary = Fail, "no DMARC record: Gmail and Yahoo require one from bulk senders, and nothing stops others sending as "+domain
		f.Fix = "publish a DMARC record; rua= receives the daily aggregate reports (create the mailbox, or name a report service)"
		f.Record = zoneTXT(name, suggest)
		return []Finding{f}, nil
	}

	f.Subject = recName
	policy := rec.Effective(sub)
	tag := "p"
	if sub && rec.SubdomainPolicy != "" {
		tag = "sp"
	}
	f.Summary = tag + "=" + policy
	if !sub && rec.SubdomainPolicy != "" {
		f.Summary += ", sp=" + rec.SubdomainPolicy
	}
	if sub {
		f.Summary = "no record at " + name + "; " + recName + " applies to it: " + f.Summary
	}
	if rec.Pct < 100 {
		f.Summary += fmt.Sprintf(", pct=%d (the policy covers %d%% of failing mail)", rec.Pct, rec.Pct)
	}
	if len(rec.RUA) > 0 {
		f.Summary += ", reports to " + strings.Join(rec.RUA, ",")
	}
	fixed := rec
	var notes []string
	if policy == "none" {
		f.Severity = Warn
		notes = append(notes, tag+"=none only asks for reports: failing mail is still delivered, and mailbox providers expect bulk senders to move to quarantine or reject once the reports show their mail passes")
		fixed = fixed.With(tag, "quarantine")
	}
	if len(rec.RUA) == 0 {
		f.Severity = Warn
		notes = append(notes, "no rua=: nobody receives the aggregate reports, so authentication failures go unseen")
		fixed = fixed.With("rua", "mailto:dmarc@"+domain)
	}
	for _, u := range rec.RUA {
		if mailtoDomain(u) == "" && !strings.HasPrefix(strings.ToLower(u), "https:") {
			f.Severity = Warn
			notes = append(notes, fmt.Sprintf("rua entry %q is not a mailto: URI", u))
		}
	}
	f.Detail = strings.Join(notes, "; ")
	if f.Severity != OK {
		f.Fix = "publish the record below"
		if sub {
			f.Fix = "publish the record below for " + domain + " (or change " + recName + ")"
		}
		f.Record = zoneTXT(name, fixed.String())
	}
	out := []Finding{f}
	policyDomain := strings.TrimPrefix(recName, "_dmarc.")
	out = append(out, c.checkReportAuth(ctx, policyDomain, rec.RUA)...)
	return out, rec
}

// lookupDMARC fetches and parses the DMARC record at name: (nil, nil)
// when there is none, a finding when the lookup failed or what is published
// is unusable.
func (c *Checker) lookupDMARC(ctx context.Context, name string) (*DMARCRecord, *Finding) {
	txt, err := c.Resolver.LookupTXT(ctx, name)
	if resolve.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, &Finding{Check: DMARC, Severity: Fail, Summary: "DMARC lookup failed", Detail: err.Error(),
			Fix: "check the resolver and the domain's name servers, then run the check again"}
	}
	var recs []string
	for _, t := range txt {
		if IsDMARC(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, &Finding{Check: DMARC, Severity: Fail,
			Summary: fmt.Sprintf("%d DMARC records: receivers apply none of them (RFC 7489 §6.6.3)", len(recs)),
			Detail:  strings.Join(recs, " | ")}
	}
	rec, err := ParseDMARC(recs[0])
	if err != nil {
		return nil, &Finding{Check: DMARC, Severity: Fail, Summary: "DMARC record is invalid: " + err.Error(), Detail: recs[0]}
	}
	return rec, nil
}

// checkReportAuth checks that every report domain outside the policy
// domain's organization agrees to receive its reports: receivers send
// nothing to it otherwise (RFC 7489 §7.1).
func (c *Checker) checkReportAuth(ctx context.Context, policyDomain string, rua []string) []Finding {
	org, _ := publicsuffix.EffectiveTLDPlusOne(policyDomain)
	var out []Finding
	seen := map[string]bool{}
	for _, u := range rua {
		d := mailtoDomain(u)
		if d == "" || seen[d] {
			continue
		}
		seen[d] = true
		if o, _ := publicsuffix.EffectiveTLDPlusOne(d); o == org {
			continue
		}
		name := policyDomain + "._report._dmarc." + d
		f := Finding{Check: DMARC, Subject: name}
		txt, err := c.Resolver.LookupTXT(ctx, name)
		switch {
		case err == nil && slices.ContainsFunc(txt, IsDMARC):
			f.Summary = d + " accepts reports for " + policyDomain
		case err == nil || resolve.IsNotFound(err):
			f.Severity = Warn
			f.Summary = d + " has not agreed to receive " + policyDomain + "'s reports, so receivers send it none (RFC 7489 §7.1)"
			f.Fix = "ask " + d + "'s operator to publish the record below (report services do it when the domain is registered with them)"
			f.Record = zoneTXT(name, "v=DMARC1")
		default:
			f.Severity, f.Summary, f.Detail = Warn, "lookup of the report authorization failed", err.Error()
			f.Fix = "check the resolver, then run the check again"
		}
		out = append(out, f)
	}
	return out
}

// checkFCrDNS checks each source's reverse DNS.
func (c *Checker) checkFCrDNS(ctx context.Context, sources []Source) []Finding {
	out := make([]Finding, 0, len(sources))
	for _, s := range sources {
		out = append(out, c.fcrdns(ctx, s))
	}
	return out
}

// fcrdns checks that s.Addr has a PTR record naming s.EHLO and that the
// name resolves back to s.Addr (forward-confirmed reverse DNS).
func (c *Checker) fcrdns(ctx context.Context, s Source) Finding {
	addr := s.Addr.Unmap()
	f := Finding{Check: FCrDNS, Subject: s.String()}
	if s.Assumed {
		f.Detail = "address assumed from the hostname"
	}
	rev, _ := dns.ReverseAddr(addr.String())
	ehlo := normalizeDomain(s.EHLO)
	ptrRecord := rev + " IN PTR " + ehlo + "."
	rtype := "A"
	if addr.Is6() {
		rtype = "AAAA"
	}
	addrRecord := ehlo + ". IN " + rtype + " " + addr.String()

	forward := func(name string) ([]netip.Addr, error) {
		if addr.Is4() {
			return c.Resolver.LookupA(ctx, name)
		}
		return c.Resolver.LookupAAAA(ctx, name)
	}
	confirms := func(name string) bool {
		a, err := forward(name)
		return err == nil && slices.ContainsFunc(a, func(x netip.Addr) bool { return x.Unmap() == addr })
	}
	ehloOK := confirms(ehlo)
	ehloFix := ""
	if !ehloOK {
		ehloFix = ", and publish " + addrRecord
	}
	note := func(s string) { f.Detail = strings.TrimPrefix(f.Detail+"; "+s, "; ") }

	names, err := c.Resolver.LookupPTR(ctx, addr)
	switch {
	case resolve.IsNotFound(err):
		f.Severity, f.Summary = Fail, "no PTR record: most large receivers refuse or junk mail from an address without reverse DNS"
		f.Fix = "ask whoever assigned " + addr.String() + " (the hosting provider) to set its reverse DNS to " + ehlo + ehloFix
		f.Record = ptrRecord
		return f
	case err != nil:
		f.Severity, f.Summary = Fail, "PTR lookup failed"
		note(err.Error())
		f.Fix = "check the resolver, then run the check again"
		return f
	}

	var confirmed []string
	for _, n := range names[:min(len(names), maxSPFNames)] {
		if n == ehlo && ehloOK || n != ehlo && confirms(n) {
			confirmed = append(confirmed, n)
		}
	}
	list := strings.Join(names, ", ")
	switch {
	case slices.Contains(names, ehlo) && ehloOK:
		f.Summary = "PTR " + ehlo + " resolves back to " + addr.String() + " and is the EHLO name"
		if len(names) > 1 {
			f.Severity = Warn
			f.Summary = "several PTR records (" + list + "): receivers may check any one of them"
			f.Fix = "ask the hosting provider to keep only the PTR to " + ehlo
			f.Record = ptrRecord
		}
	case slices.Contains(names, ehlo):
		f.Severity, f.Summary = Fail, "PTR "+ehlo+" does not resolve back to "+addr.String()
		f.Fix = "publish the " + rtype + " record below"
		f.Record = addrRecord
	case len(confirmed) > 0:
		f.Severity = Warn
		f.Summary = "PTR " + confirmed[0] + " resolves back (FCrDNS passes), but kiln announces itself as " + ehlo + " from this address"
		f.Fix = fmt.Sprintf("set ehlo = %q for this address, or ask the hosting provider for the PTR below%s", confirmed[0], ehloFix)
		f.Record = ptrRecord
	default:
		f.Severity = Fail
		f.Summary = "PTR " + list + " does not resolve back to " + addr.String() + ", and kiln announces itself as " + ehlo
		f.Fix = "ask the hosting provider to set the reverse DNS of " + addr.String() + " to " + ehlo + ehloFix
		f.Record = ptrRecord
	}
	return f
}
