// Package policy decides what a remote's reply or a later bounce report means and
// what kiln does about it: the classification rules, DSN and ARF parsing, the retry
// schedule, the suppression list and its rules, and per-domain shaping defaults.
//
// Every decision names the rule that made it (DESIGN.md, invariant 4), and only a
// reply that blames the address suppresses the address (invariant 5).
package policy
