// Package suppress is kiln's suppression list and the rules that feed it: the
// addresses kiln must not mail again, why, and for how long.
//
// # The list
//
// An Entry is keyed by its scope (the global scope "", or an account's name)
// and its normalised address (see Normalize). It keeps the reason in
// DESIGN.md's vocabulary, the source that put it there (reply, late-bounce,
// complaint, unsubscribe, soft-failure, manual, import), the remote's words,
// the rule that decided, kiln's queue id of the message that caused it, when
// it was made and when it expires. Expiry is chosen by the Config: by reason,
// else by source; hard bounces, complaints and unsubscribes never expire by
// default, the repeated-soft-failure rule's entries after 90 days.
//
// Check is called for every recipient at RCPT time and before every delivery
// attempt: it looks up the account's scope, then the global scope (two badger
// Gets, about a microsecond each when the address is absent), and ignores
// entries that have expired. Sweep (or Run) deletes expired entries through a
// time index, so a sweep reads only what is due.
//
// Add never weakens what is there: an entry replaces the one in place only
// when the old one has expired, when the new one suppresses for longer, or
// when it suppresses as long and comes from a stronger source (complaint and
// unsubscribe, then bounces, then manual and import, then the soft-failure
// rule). Adding the same thing twice changes nothing.
//
// Every write goes through one writer goroutine that applies concurrent
// requests in order, in shared transactions: the shared store syncs every
// commit, so concurrent adds share one sync, and an add racing a remove of the
// same address always ends with the entry and its expiry index agreeing.
//
// # Addresses
//
// Normalize trims angle brackets and spaces, lower-cases the whole address
// (local parts are case-insensitive at every provider that matters) and
// writes an internationalised domain in its ASCII (punycode) form. It does not
// strip "+tags": user+a@example.com and user@example.com are different
// entries, because some systems treat "+" as an ordinary character and
// stripping it could suppress a stranger. With match_base_address, an entry
// for the base address user@example.com also covers user+anything@example.com
// (never the other way round).
//
// # Feeding the list
//
// Record turns what the delivery engine learned about one recipient (a
// policy.Decision, or a policy.Bounce through BounceResult) into the right
// action: a hard decision suppresses, a complaint or unsubscribe suppresses in
// the account's scope, a soft failure counts toward the repeated-soft-failure
// rule (SoftFail: N distinct messages within a window), and a delivery clears
// that count (Delivered).
//
// # Circuit breaker
//
// A Breaker watches each account's recent outcomes and trips when its
// hard-bounce rate or complaint rate reaches the configured limit; the engine
// then holds the account's queue until an operator resets it. A trip is kept in
// the store, so it survives a restart.
//
// # Store keys
//
// The package owns the prefix "supp/" of kiln's shared badger store:
//
//	supp/e/<scope> 0x00 <address>                      an entry (binary, see record.go)
//	supp/x/<expires, 8 bytes BE><kind><scope> 0x00 <address>  expiry index: kind 'e' entry, 's' soft count
//	supp/s/<scope> 0x00 <address>                      soft-failure count (binary)
//	supp/b/<account>                                   a tripped breaker (JSON)
//
// # Admin API
//
// Handler serves the suppression endpoints of the admin API (list, add,
// remove, check, CSV import and export) and, given a Breaker, the breaker's
// (list trips, reset). A caller limited to one account's scope carries that
// limit in its request context (WithScope).
package suppress
