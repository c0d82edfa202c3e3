package mta

import (
	"context"
	"errors"
	"net/netip"
	"strconv"

	"github.com/emersion/go-smtp"
)

// Submission is a message offered other than over SMTP (the HTTP API): it
// goes through the same checks as SMTP submission and is durable before
// Submit returns.
type Submission struct {
	// Account sends the message; "" is the operator (no sender-domain
	// restriction, like a trusted network).
	Account string
	// From is the envelope sender; "" is the null sender (operators only).
	From string
	To   []string
	// Data is the whole RFC 5322 message. Bare LF line endings are turned
	// into CRLF; a bare CR or NUL is refused.
	Data     []byte
	Tags     []string
	Metadata map[string]string
	// Priority: higher goes first when a warm-up cap binds (0-9).
	Priority int
	// Client is the address the request came from, for the Received field.
	Client netip.Addr
}

// SubmitError is a refusal, with the SMTP reply kiln would have given.
type SubmitError struct {
	Code     int    // 4xx: try again later; 5xx: do not
	Enhanced string // "5.7.1"
	Message  string
	// Field names what in the submission was wrong, when one thing was
	// ("to[2]", "from"); "" otherwise.
	Field string
}

func (e *SubmitError) Error() string { return e.Message }

// Temporary reports whether trying again later may succeed.
func (e *SubmitError) Temporary() bool { return e.Code/100 == 4 }

// ErrUnknownAccount is returned for a submission naming no configured account.
var ErrUnknownAccount = errors.New("unknown account")

// Submit checks and stores a message and returns its queue id.
func (srv *Server) Submit(ctx context.Context, s Submission) (string, error) {
	if srv.draining() {
		return "", asSubmitError(errShuttingDown, "")
	}
	var acct *account
	if s.Account != "" {
		acct = srv.accounts.byName[s.Account]
		if acct == nil {
			return "", ErrUnknownAccount
		}
	}
	if s.From != "" && !validAddress(s.From) {
		return "", asSubmitError(errBadSender, "from")
	}
	if acct != nil {
		if s.From == "" {
			return "", asSubmitError(errNullSender, "from")
		}
		if dom := domainOf(s.From); !inDomains(dom, acct.domains) {
			return "", asSubmitError(senderDomainDenied(dom), "from")
		}
	}
	if len(s.To) == 0 {
		return "", asSubmitError(errNoValidRcpts, "to")
	}
	if len(s.To) > srv.cfg.Submission.MaxRecipients {
		return "", &SubmitError{Code: 452, Enhanced: "4.5.3", Field: "to",
			Message: "Too many recipients (at most " + itoa(srv.cfg.Submission.MaxRecipients) + ")"}
	}
	if int64(len(s.Data)) > int64(srv.cfg.Submission.MaxMessageSize) {
		return "", asSubmitError(smtp.ErrDataTooLarge, "")
	}
	in := &incoming{from: s.From, client: s.Client, account: acct, tags: s.Tags, metadata: s.Metadata, priority: s.Priority}
	for i, to := range s.To {
		if !validAddress(to) {
			return "", asSubmitError(errBadRecipient, "to["+itoa(i)+"]")
		}
		if e, ok := srv.suppressedFor(s.Account, to); ok {
			if srv.cfg.Suppression.RcptAction == "drop" {
				in.dropped = append(in.dropped, to)
				continue
			}
			return "", &SubmitError{Code: 550, Enhanced: "5.7.1", Field: "to[" + itoa(i) + "]",
				Message: to + " is on the suppression list (" + e.Reason + ", " + string(e.Source) + ")"}
		}
		in.rcpts = append(in.rcpts, to)
	}
	data, err := normalizeData(s.Data)
	if err != nil {
		return "", asSubmitError(errBareCRReply, "")
	}
	hdr := scanHeader(data)
	switch {
	case len(hdr.from) == 0:
		return "", asSubmitError(errNoFrom, "")
	case len(hdr.from) > 1:
		return "", asSubmitError(errManyFrom, "")
	}
	if acct != nil {
		dom, err := fromDomain(hdr.from[0])
		if err != nil {
			return "", asSubmitError(errBadFrom, "")
		}
		if !inDomains(dom, acct.domains) {
			return "", asSubmitError(senderDomainDenied(dom), "")
		}
	}
	in.data, in.hdr = data, hdr
	id, _, err := srv.accept(in)
	if err != nil {
		return "", asSubmitError(err, "")
	}
	return id, nil
}

func asSubmitError(err error, field string) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &SubmitError{Code: se.Code, Enhanced: enhanced(se.EnhancedCode), Message: se.Message, Field: field}
	}
	return &SubmitError{Code: 451, Enhanced: "4.3.0", Message: "Temporary local problem, try again later", Field: field}
}

func enhanced(c smtp.EnhancedCode) string {
	return itoa(c[0]) + "." + itoa(c[1]) + "." + itoa(c[2])
}

func itoa(n int) string { return strconv.Itoa(n) }
