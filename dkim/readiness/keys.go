package readiness

import (
	"context"
	"fmt"
	"strings"

	"kiln/dkim"
	"kiln/mta/resolve"
)

// KeyStatus is what the DNS holds for a DKIM key.
type KeyStatus string

const (
	// KeyMatch: exactly one record is published and it holds the key.
	KeyMatch KeyStatus = "match"
	// KeyMissing: no TXT record at the key's name.
	KeyMissing KeyStatus = "missing"
	// KeyMismatch: something is published that does not verify the key's
	// signatures (another key, a revoked or testing record, several records).
	KeyMismatch KeyStatus = "mismatch"
	// KeyDNSError: the lookup failed; nothing is known.
	KeyDNSError KeyStatus = "dns-error"
)

// KeyResult compares one key with its published record.
type KeyResult struct {
	Domain    string         `json:"domain"`
	Selector  string         `json:"selector"`
	Name      string         `json:"name"` // selector._domainkey.domain
	Algorithm dkim.Algorithm `json:"algorithm"`
	Bits      int            `json:"bits"`
	Retired   bool           `json:"retired,omitempty"`
	Status    KeyStatus      `json:"status"`
	// Reason says why the status is not KeyMatch.
	Reason string `json:"reason,omitempty"`
	// Published are the TXT records found at Name.
	Published []string `json:"published,omitempty"`
	// Record is the key record to publish ("v=DKIM1; k=...; p=..."), and
	// Zone the same as a zone-file line.
	Record string `json:"record"`
	Zone   string `json:"zone"`
}

// CheckKey looks the record of k up and compares it with k.
func CheckKey(ctx context.Context, r Resolver, k *dkim.Key) KeyResult {
	res := KeyResult{
		Domain: k.Domain, Selector: k.Selector, Name: k.RecordName(),
		Algorithm: k.Algorithm(), Bits: k.Bits(), Retired: k.Retired,
		Record: k.Record(),
	}
	res.Zone, _ = dkim.ZoneRecord(k.Selector, k.Domain, k.Public())
	txt, err := r.LookupTXT(ctx, res.Name)
	switch {
	case resolve.IsNotFound(err):
		res.Status, res.Reason = KeyMissing, "no TXT record at "+res.Name
		return res
	case err != nil:
		res.Status, res.Reason = KeyDNSError, err.Error()
		return res
	}
	res.Published = txt
	records := make([][]string, len(txt))
	for i, t := range txt {
		records[i] = []string{t}
	}
	if err := dkim.CheckRecords(records, k.Public()); err != nil {
		res.Status, res.Reason = KeyMismatch, err.Error()
		return res
	}
	res.Status = KeyMatch
	return res
}

// CheckKeys checks every key, in order.
func CheckKeys(ctx context.Context, r Resolver, keys []*dkim.Key) []KeyResult {
	out := make([]KeyResult, len(keys))
	for i, k := range keys {
		out[i] = CheckKey(ctx, r, k)
	}
	return out
}

// Finding turns the result into a domain check finding. A retired key's
// problems are warnings: kiln no longer signs with it, but mail signed
// before the rotation may still be queued or in transit.
func (k KeyResult) Finding() Finding {
	desc := fmt.Sprintf("%s %d-bit key", k.Algorithm, k.Bits)
	if k.Algorithm == dkim.Ed25519 {
		desc = "ed25519 key"
	}
	if k.Retired {
		desc = "retired " + desc
	}
	f := Finding{Check: DKIM, Subject: k.Name}
	switch k.Status {
	case KeyMatch:
		f.Summary = "record matches the " + desc
		return f
	case KeyMissing:
		f.Severity, f.Summary = Fail, "no record published for the "+desc
		f.Fix = "publish the key record"
	case KeyMismatch:
		f.Severity, f.Summary = Fail, "record does not match the "+desc+": "+k.Reason
		f.Fix = "replace the published record with the key's record"
		if len(k.Published) > 1 {
			f.Fix = "remove the other records and publish only the key's record"
		}
	case KeyDNSError:
		f.Severity, f.Summary = Fail, "lookup failed for the "+desc
		f.Detail = k.Reason
		f.Fix = "check the resolver, then run the check again; if the record is not published yet, publish it"
	}
	f.Record = k.Zone
	if k.Retired {
		f.Severity = Warn
		f.Detail = strings.TrimSpace(f.Detail + " kiln no longer signs with this key, but mail it signed may still be queued or in transit; keep the record until the queue's max_age has passed, then remove the key from the config")
	}
	return f
}

// alignedKeys returns the keys kiln signs domain's mail with: those of
// domain itself or of its nearest parent that has an active key (relaxed
// alignment, RFC 7489 §3.1.1), as dkim.Signer.Aligned chooses, plus that
// domain's retired keys.
func alignedKeys(keys []*dkim.Key, domain string) (string, []*dkim.Key) {
	for d := domain; d != ""; {
		var found []*dkim.Key
		active := false
		for _, k := range keys {
			if strings.EqualFold(k.Domain, d) {
				found = append(found, k)
				active = active || !k.Retired
			}
		}
		if active {
			return d, found
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return "", nil
}

// checkDomainKeys checks the records of the keys aligned with domain.
func (c *Checker) checkDomainKeys(ctx context.Context, domain string) []Finding {
	signing, keys := alignedKeys(c.Keys, domain)
	if len(keys) == 0 {
		return []Finding{{
			Check: DKIM, Subject: domain, Severity: Fail,
			Summary: "no [[dkim]] key aligns with " + domain + ": its mail goes out without a signature receivers can align with the From domain",
			Fix:     "kiln dkim keygen --domain " + domain + " --selector SELECTOR --out DIR, then add the [[dkim]] entry it prints and publish its record",
		}}
	}
	var out []Finding
	for _, r := range CheckKeys(ctx, c.Resolver, keys) {
		f := r.Finding()
		if signing != domain && f.Severity == OK {
			f.Summary += " (" + signing + " signs for " + domain + " under relaxed alignment)"
		}
		out = append(out, f)
	}
	return out
}

// strictDKIM reports a DMARC record that asks for strict DKIM alignment
// (adkim=s) when kiln signs the domain's mail with a parent domain's key:
// such signatures do not align, and DMARC fails for every message.
func (c *Checker) strictDKIM(domain string, dm *DMARCRecord) []Finding {
	if dm == nil || dm.ADKIM != "s" {
		return nil
	}
	signing, keys := alignedKeys(c.Keys, domain)
	if len(keys) == 0 || signing == domain {
		return nil
	}
	return []Finding{{
		Check: DKIM, Subject: domain, Severity: Fail,
		Summary: "DMARC asks for strict DKIM alignment (adkim=s), but kiln signs " + domain + "'s mail as " + signing + ", which aligns only under relaxed alignment",
		Fix:     "add a [[dkim]] key for " + domain + " itself (kiln dkim keygen --domain " + domain + "), or drop adkim=s from the DMARC record",
	}}
}
