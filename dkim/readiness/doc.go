// Package readiness says whether a sending domain is ready for kiln to send
// its mail: whether what the domain publishes in DNS lets receivers
// authenticate the mail kiln sends for it. It backs "kiln dkim check" and
// "kiln domain check".
//
// A domain is ready when
//
//   - every DKIM key kiln signs its mail with (the domain's own keys, or its
//     nearest parent's under relaxed alignment) has its record published at
//     selector._domainkey.domain, and the record holds that key (RFC 6376);
//   - the domain publishes exactly one SPF record, and that record authorises
//     every address kiln sends from (RFC 7208);
//   - _dmarc.domain (or the organizational domain's) holds a DMARC record
//     (RFC 7489) whose policy protects the domain: Gmail and Yahoo require one
//     from bulk senders, and p=none only starts the reports;
//   - every source address has a PTR record naming kiln's EHLO name for it,
//     and that name resolves back to the address (forward-confirmed reverse
//     DNS), which most large receivers require before accepting mail.
//
// Each finding carries a severity (ok, warn, fail) and, when not ok, what to
// publish to fix it, written as a zone-file line, so the operator can copy it.
//
// SPF is evaluated as a receiver would evaluate it (RFC 7208 §4 and §5),
// including the ten-lookup and two-void-lookup limits. The macros that depend
// on the message's envelope sender (%{s}, %{l}) or on a validated reverse name
// (%{p}) cannot be known ahead of a message: a mechanism that needs them is
// reported as "cannot evaluate" (a warning) instead of guessed. Every other
// macro (%{d}, %{o}, %{i}, %{v}, %{h}) is expanded, with the domain checked
// as the sender's domain and the source's EHLO name as %{h}.
//
// Two limits of RFC 7208 are approximated by kiln's resolver, which looks up
// at most ten MX hosts in preference order (RFC 7208 §4.6.4 makes more than
// ten a permerror; here the rest are ignored) and resolves the MX hosts' A
// and AAAA records itself (a host whose lookup fails temporarily is skipped
// where a receiver might give temperror).
//
// Source addresses receivers never see (private, loopback, link-local: kiln
// behind a NAT) are not checked, with a warning: SPF and reverse DNS are
// judged on the address the receiver sees.
//
// All lookups go through the Resolver interface, which kiln's resolver
// (kiln/mta/resolve) satisfies; the checks never fail outright on DNS
// trouble, they report it as a finding.
package readiness
