package readiness

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DMARCTag is one tag=value pair of a DMARC record, as written.
type DMARCTag struct {
	Name, Value string
}

// DMARCRecord is a parsed DMARC record (RFC 7489 §6.3). The typed fields
// hold the defaults for tags left out; Tags keeps every tag in order,
// unknown ones included, so the record can be written back with a change.
type DMARCRecord struct {
	// Policy is p=: none, quarantine or reject.
	Policy string
	// SubdomainPolicy is sp=; "" when absent (Policy applies).
	SubdomainPolicy string
	// Pct is pct=, the percentage of failing mail the policy applies to;
	// 100 when absent.
	Pct int
	// RUA and RUF are the aggregate and failure report URIs, each as
	// written (a "!size" suffix included).
	RUA, RUF []string
	// ADKIM and ASPF are the alignment modes, "r" (relaxed, the default)
	// or "s" (strict).
	ADKIM, ASPF string
	Tags        []DMARCTag
}

// IsDMARC reports whether a TXT record is a DMARC record: its first tag is
// v=DMARC1 (RFC 7489 §6.6.3 discards the others).
func IsDMARC(txt string) bool {
	name, value, _ := strings.Cut(strings.TrimLeft(txt, " \t"), "=")
	value, _, _ = strings.Cut(value, ";")
	return strings.TrimRight(name, " \t") == "v" && strings.Trim(value, " \t") == "DMARC1"
}

// ParseDMARC parses a DMARC record: a tag list (RFC 7489 §6.4) starting
// with v=DMARC1, with a valid p= (a record without one is ignored by
// receivers unless it names report addresses, §6.6.3). Tags it does not know
// are kept and ignored (§6.3).
func ParseDMARC(txt string) (*DMARCRecord, error) {
	if !IsDMARC(txt) {
		return nil, errors.New(`not a DMARC record: it must start with "v=DMARC1"`)
	}
	r := &DMARCRecord{Pct: 100, ADKIM: "r", ASPF: "r"}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(txt, ";") {
		item = strings.Trim(item, " \t\r\n")
		if item == "" {
			continue // RFC 7489 allows a trailing ";"
		}
		name, value, ok := strings.Cut(item, "=")
		name = strings.ToLower(strings.TrimRight(name, " \t\r\n"))
		value = strings.TrimLeft(value, " \t\r\n")
		if !ok || !validTagName(name) {
			return nil, fmt.Errorf("%q is not a tag=value pair", item)
		}
		if seen[name] {
			return nil, fmt.Errorf("tag %s appears twice", name)
		}
		seen[name] = true
		for _, c := range []byte(value) {
			if c < 0x20 || c > 0x7e {
				return nil, fmt.Errorf("tag %s holds a character that is not visible ASCII", name)
			}
		}
		r.Tags = append(r.Tags, DMARCTag{Name: name, Value: value})
		switch name {
		case "p", "sp":
			v := strings.ToLower(value)
			if v != "none" && v != "quarantine" && v != "reject" {
				return nil, fmt.Errorf("%s=%s: must be none, quarantine or reject", name, value)
			}
			if name == "p" {
				r.Policy = v
			} else {
				r.SubdomainPolicy = v
			}
		case "pct":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > 100 || value[0] == '+' {
				return nil, fmt.Errorf("pct=%s: must be a whole number from 0 to 100", value)
			}
			r.Pct = n
		case "adkim", "aspf":
			v := strings.ToLower(value)
			if v != "r" && v != "s" {
				return nil, fmt.Errorf("%s=%s: must be r (relaxed) or s (strict)", name, value)
			}
			if name == "adkim" {
				r.ADKIM = v
			} else {
				r.ASPF = v
			}
		case "rua", "ruf":
			var uris []string
			for u := range strings.SplitSeq(value, ",") {
				if u = strings.Trim(u, " \t"); u != "" {
					uris = append(uris, u)
				}
			}
			if name == "rua" {
				r.RUA = uris
			} else {
				r.RUF = uris
			}
		}
	}
	if r.Policy == "" {
		return nil, errors.New("no p= tag: receivers ignore the record (RFC 7489 §6.6.3)")
	}
	return r, nil
}

func validTagName(n string) bool {
	if n == "" || !isAlpha(n[0]) {
		return false
	}
	for _, c := range []byte(n) {
		if !isAlpha(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

// String writes the record back, its tags in order.
func (r *DMARCRecord) String() string {
	parts := make([]string, len(r.Tags))
	for i, t := range r.Tags {
		parts[i] = t.Name + "=" + t.Value
	}
	return strings.Join(parts, "; ")
}

// With returns a copy of the record with tag name set to value: replaced
// where it is, or added at the end (p= right after v=).
func (r *DMARCRecord) With(name, value string) *DMARCRecord {
	tags := make([]DMARCTag, 0, len(r.Tags)+1)
	done := false
	for _, t := range r.Tags {
		if t.Name == name {
			t.Value, done = value, true
		}
		tags = append(tags, t)
	}
	if !done {
		at := len(tags)
		if name == "p" {
			at = 1
		}
		tags = append(tags[:at], append([]DMARCTag{{name, value}}, tags[at:]...)...)
	}
	out, err := ParseDMARC((&DMARCRecord{Tags: tags}).String())
	if err != nil {
		// The change made the record invalid: keep the tags anyway.
		return &DMARCRecord{Tags: tags}
	}
	return out
}

// Effective is the policy for mail from a subdomain when sub is true.
func (r *DMARCRecord) Effective(sub bool) string {
	if sub && r.SubdomainPolicy != "" {
		return r.SubdomainPolicy
	}
	return r.Policy
}

// mailtoDomain returns the domain of a "mailto:" report URI ("" for any
// other).
func mailtoDomain(uri string) string {
	if i := strings.LastIndexByte(uri, '!'); i > 0 {
		uri = uri[:i]
	}
	if len(uri) < 7 || !strings.EqualFold(uri[:7], "mailto:") {
		return ""
	}
	addr := uri[7:]
	if i := strings.IndexByte(addr, '?'); i >= 0 {
		addr = addr[:i]
	}
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return ""
	}
	return normalizeDomain(addr[i+1:])
}
