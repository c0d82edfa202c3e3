package warmup

import (
	"sort"
	"strings"
)

// builtinProvider is one mailbox provider group: the MX host suffixes that
// identify it, and whether the built-in plan gives it the larger (tier A) caps.
type builtinProvider struct {
	name     string
	suffixes []string
	tierA    bool
}

// builtinProviders groups destination domains by the suffix of their MX hosts
// (PROVIDERS.md §1). Google says its per-IP limits apply per MX group, so all
// domains hosted there share one set of limits [G-sg]; a domain belongs to a
// group only when every one of its MX hosts matches (Kumo's MXSuffix rule
// [K-rs domain_matches]).
//
// Suffixes match at a label boundary: "google.com" matches
// "aspmx.l.google.com" and "google.com" but not "notgoogle.com". Names are
// compared lower-case with the trailing dot stripped [K-rs suffix_matches].
//
// Left out on purpose: filtering gateways (Mimecast, Proofpoint, Barracuda).
// They front thousands of unrelated companies and PROVIDERS.md §1 says to
// limit them per site, not per provider, so each customer's MX set stays its
// own site.
var builtinProviders = []builtinProvider{
	// Gmail and Workspace share MX names and IPs [K-ex]; googlemail.com MX
	// appears on older Workspace domains [S lib.go].
	{name: "google", suffixes: []string{"google.com", "googlemail.com"}, tierA: true},
	// Yahoo, AOL (current MX under yahoodns.net), AT&T and Verizon consumer
	// mail [K-ex], [Y-faq], [3P]. The legacy AOL MX names are Yahoo Inc. too
	// and follow the same rules [S lib.go], [Y-faq].
	{name: "yahoo", suffixes: []string{"yahoodns.net", "mail.aol.com", "mx.aol.com"}, tierA: true},
	// Outlook.com consumer edge (hotmail, outlook, live, msn) [K-ex], [MS-hv].
	{name: "microsoft", suffixes: []string{"olc.protection.outlook.com"}, tierA: true},
	// Exchange Online tenants, including the DANE MX set [K-ex].
	{name: "microsoft365", suffixes: []string{"mail.protection.outlook.com", "mx.microsoft"}, tierA: true},
	// iCloud, me.com, mac.com [K-ex], [S lib.go], [A].
	{name: "apple", suffixes: []string{"icloud.com"}},
	{name: "comcast", suffixes: []string{"comcast.net"}},
	{name: "cox", suffixes: []string{"cox.net"}},
	{name: "charter", suffixes: []string{"charter.net"}},
	// Orange and its wanadoo.fr legacy [K-ex], [S lib.go]; La Poste is a
	// separate operator [S lib.go].
	{name: "orange", suffixes: []string{"orange.fr", "wanadoo.fr"}},
	{name: "laposte", suffixes: []string{"laposte.net"}},
	// 1&1: GMX and Web.de share infrastructure and limits [K-co].
	{name: "gmx", suffixes: []string{"gmx.net", "web.de"}},
	// T-Online (mx00..mx03.t-online.de) [TO] (suffix unverified).
	{name: "t-online", suffixes: []string{"t-online.de"}},
	// Mail.ru (mxs.mail.ru) [S] (suffix unverified).
	{name: "mailru", suffixes: []string{"mail.ru"}},
	// Yandex and Yandex 360 (unverified: no source in PROVIDERS.md).
	{name: "yandex", suffixes: []string{"mx.yandex.ru", "mx.yandex.net"}},
	{name: "qq", suffixes: []string{"qq.com"}},
	// NetEase 163/126 (163mx01.mxmail.netease.com) [K-co].
	{name: "netease", suffixes: []string{"netease.com"}},
	// KPN and Netvigator: Kumo's entries carry a trailing dot and never match
	// (PROVIDERS.md §6); written here without it [K-co].
	{name: "kpn", suffixes: []string{"kpnmail.nl"}},
	{name: "netvigator", suffixes: []string{"netvigator.com"}},
	// Yahoo Japan runs its own MX, apart from Yahoo Inc. [K-co], [Y-faq]
	// (suffix unverified).
	{name: "yahoo-japan", suffixes: []string{"yahoo.co.jp"}},
	// Zoho (mx.zoho.com, mx.zoho.eu, mx.zoho.in) and Proton
	// (mail.protonmail.ch, mailsec.protonmail.ch): unverified, not in
	// PROVIDERS.md; from the providers' published MX names as remembered.
	{name: "zoho", suffixes: []string{"zoho.com", "zoho.eu", "zoho.in", "zoho.com.au", "zoho.jp"}},
	{name: "proton", suffixes: []string{"protonmail.ch"}},
}

// BuiltinProviders returns the names of the built-in provider groups and
// their MX suffixes, for documentation and "config check".
func BuiltinProviders() map[string][]string {
	m := make(map[string][]string, len(builtinProviders))
	for _, p := range builtinProviders {
		m[p.name] = append([]string(nil), p.suffixes...)
	}
	return m
}

// providerTable is the merged built-in and configured table.
type providerTable struct {
	names    []string       // by index
	tierA    []bool         // by index
	bySuffix map[string]int // normalized suffix -> index
	byName   map[string]int
}

// newProviderTable merges the built-in table with the config's [[provider]]
// entries: an entry named like a built-in replaces its suffixes, any other
// adds a group. Validate has already rejected overlaps.
func newProviderTable(extra []Provider) *providerTable {
	t := &providerTable{bySuffix: map[string]int{}, byName: map[string]int{}}
	override := map[string][]string{}
	for _, p := range extra {
		override[p.Name] = p.MXSuffixes
	}
	add := func(name string, suffixes []string, tierA bool) {
		i, ok := t.byName[name]
		if !ok {
			i = len(t.names)
			t.names = append(t.names, name)
			t.tierA = append(t.tierA, tierA)
			t.byName[name] = i
		}
		for _, s := range suffixes {
			t.bySuffix[normSuffix(s)] = i
		}
	}
	for _, b := range builtinProviders {
		if s, ok := override[b.name]; ok {
			add(b.name, s, b.tierA)
			delete(override, b.name)
			continue
		}
		add(b.name, b.suffixes, b.tierA)
	}
	for _, p := range extra {
		if _, ok := override[p.Name]; ok {
			add(p.Name, p.MXSuffixes, false)
		}
	}
	return t
}

// normSuffix lower-cases a suffix and strips the leading and trailing dots,
// so ".google.com", "google.com." and "google.com" are one suffix.
func normSuffix(s string) string {
	return strings.Trim(strings.ToLower(strings.TrimSpace(s)), ".")
}

// normHost lower-cases an MX host name and strips its trailing dot, without
// allocating when it is already in that form.
func normHost(h string) string {
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// match returns the provider index of host, by its longest matching suffix,
// or -1.
func (t *providerTable) match(host string) int {
	for s := host; ; {
		if i, ok := t.bySuffix[s]; ok {
			return i
		}
		dot := strings.IndexByte(s, '.')
		if dot < 0 {
			return -1
		}
		s = s[dot+1:]
	}
}

// Site key prefixes. A provider site is the bare provider name (provider names
// cannot contain ':'); the others say what they are.
const (
	mxSitePrefix     = "mx:"
	domainSitePrefix = "domain:"
)

// classify maps a domain's MX hosts to a site key: the provider's name when
// every host belongs to the same provider, otherwise "mx:" and the sorted,
// de-duplicated host list, so that domains sharing an MX set share a site.
func (t *providerTable) classify(mxHosts []string) string {
	prov := -1
	for i, h := range mxHosts {
		p := t.match(normHost(h))
		if p < 0 || (i > 0 && p != prov) {
			prov = -1
			break
		}
		prov = p
	}
	if prov >= 0 {
		return t.names[prov]
	}
	hosts := make([]string, 0, len(mxHosts))
	for _, h := range mxHosts {
		hosts = append(hosts, normHost(strings.TrimSpace(h)))
	}
	sort.Strings(hosts)
	out := hosts[:0]
	for i, h := range hosts {
		if h == "" || (i > 0 && h == hosts[i-1]) {
			continue
		}
		out = append(out, h)
	}
	return mxSitePrefix + strings.Join(out, ",")
}
