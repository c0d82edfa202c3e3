package fakemx

import "time"

// ConventionRules is a ready-made script keyed on the recipient's local part,
// so an end-to-end test can ask for an outcome by choosing an address:
//
//	hard*  550 5.1.1 user unknown          (RCPT)
//	soft*  450 4.2.1 try again later       (RCPT)
//	full*  452 4.2.2 mailbox full          (RCPT)
//	block* 550 5.7.1 sender IP blocklisted (RCPT)
//	rate*  451 4.7.28 rate limited         (RCPT)
//	slow*  accepted after 1s               (RCPT)
//	spam*  554 5.7.1 content rejected      (after DATA)
//	defer* 451 4.3.0 try again             (after DATA)
//	drop*  connection dropped after DATA, before the reply
//
// Every other recipient is accepted.
func ConventionRules() []Rule {
	return []Rule{
		{Stage: StageRcpt, Match: "hard*@*", Code: 550, Enhanced: "5.1.1", Text: "<{addr}>: user unknown"},
		{Stage: StageRcpt, Match: "soft*@*", Code: 450, Enhanced: "4.2.1", Text: "<{addr}>: mailbox temporarily unavailable, try again later"},
		{Stage: StageRcpt, Match: "full*@*", Code: 452, Enhanced: "4.2.2", Text: "<{addr}>: mailbox full"},
		{Stage: StageRcpt, Match: "block*@*", Code: 550, Enhanced: "5.7.1", Text: "service refused: sending IP listed at a blocklist"},
		{Stage: StageRcpt, Match: "rate*@*", Code: 451, Enhanced: "4.7.28", Text: "rate limited: too much mail from your IP, slow down"},
		{Stage: StageRcpt, Match: "slow*@*", Delay: time.Second},
		{Stage: StageData, Match: "spam*@*", Code: 554, Enhanced: "5.7.1", Text: "message content rejected as spam"},
		{Stage: StageData, Match: "defer*@*", Code: 451, Enhanced: "4.3.0", Text: "temporary local problem, try again"},
		{Stage: StageData, Match: "drop*@*", Drop: true},
	}
}
