package policy

// Action is what happens to the message for one recipient after a reply.
type Action string

const (
	ActionDelivered Action = "delivered" // the remote took it
	ActionRetry     Action = "retry"     // try again later with backoff
	ActionBounce    Action = "bounce"    // give up on this recipient and notify the sender
)

// Signal is what a reply says about the egress address at this provider, for the
// warm-up controller. It never changes what happens to the recipient.
type Signal string

const (
	SignalNone      Signal = ""          // nothing about the sender
	SignalDeferral  Signal = "deferral"  // a temporary failure not blamed on anyone in particular
	SignalRate      Signal = "rate"      // slow down: rate limited, too many connections
	SignalBlock     Signal = "block"     // the sender is blocked: blocklist, reputation, spam, authentication
	SignalComplaint Signal = "complaint" // a recipient complained (feedback loop)
)

// Decision is the one decision made for one reply (DESIGN.md invariant 4): what it
// means, what to do, and the name of the rule that said so.
type Decision struct {
	Reason   string // Sisimai's vocabulary: userunknown, mailboxfull, blocked, ...
	Hard     bool   // the address itself is bad: suppress it
	Action   Action // what happens to the message for this recipient
	SoftFail bool   // counts as a soft failure of the address (mailbox full, expired)
	Signal   Signal // what it says about the egress address at this provider
	Rule     string // the name of the rule that decided
	// Status is the RFC 3463 status for events and DSNs: the remote's own
	// when it sent one, else the one the reason implies (5.1.1 for
	// userunknown), in the class of the reply (4.x.x when temporary).
	Status string
}
