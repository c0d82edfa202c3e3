// Package policy decides what a remote's reply or a later bounce report means and
// what kiln does about it: the classification rules, DSN and ARF parsing, the retry
// schedule, the suppression list and its rules, and per-domain shaping defaults.
//
// Every decision names the rule that made it (DESIGN.md, invariant 4), and only a
// reply that blames the address suppresses the address (invariant 5).
//
// # Replies
//
// A Classifier holds the ordered, named rules of rules.toml (embedded; a config
// file's [classify] section extends or overrides them, see ClassifyConfig).
// Classify decides a reply received during delivery; ClassifyFinal decides the
// last reply once delivery was given up. Both return a Decision: the reason in
// DESIGN.md's vocabulary, whether the address is condemned (Hard), what happens
// to the message (Action), whether it counts as a soft failure, what it says
// about the egress IP (Signal), the rule's name and an RFC 3463 status.
//
// # Bounce reports
//
// ParseBounce reads a report that arrives later (RFC 3464 DSN, RFC 5965 ARF,
// RFC 3834 auto-reply, Amazon SES notification, or an MTA's own text format,
// read by the sub-package dsn) and classifies each recipient it names with the
// same rules, reading the SMTP stage and the remote host from the report's words.
package policy
