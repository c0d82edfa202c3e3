package resolve

import (
	"errors"
	"fmt"

	"github.com/miekg/dns"

	"kiln/policy"
)

// Kind says what a failed lookup proved. The zero value is Temporary, so an
// error nobody classified can only ever cause a retry, never a bounce.
type Kind int

const (
	// Temporary: SERVFAIL, REFUSED, a timeout, a network error, a malformed
	// answer. Nothing is known about the domain; try again later.
	Temporary Kind = iota
	// NXDomain: the name does not exist (RCODE 3). Permanent.
	NXDomain
	// NoData: the name exists but holds no record of the type asked for.
	// LookupMX never returns it (no MX means implicit MX); the other lookups
	// do, and callers such as SPF treat it as "none".
	NoData
	// NullMX: the domain publishes "MX 0 ." and accepts no mail (RFC 7505).
	// Permanent.
	NullMX
	// NoAddress: the domain's mail hosts (or, with no MX, the domain itself)
	// have no A or AAAA record. Permanent.
	NoAddress
	// BadName: the name is not a valid domain name. Permanent.
	BadName
)

func (k Kind) String() string {
	switch k {
	case Temporary:
		return "temporary"
	case NXDomain:
		return "nxdomain"
	case NoData:
		return "nodata"
	case NullMX:
		return "nullmx"
	case NoAddress:
		return "noaddress"
	case BadName:
		return "badname"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a failed lookup. Domain is what the caller asked about; Name and
// Type are the query that failed (an MX host's A record, say).
type Error struct {
	Domain string
	Name   string
	Type   string
	Kind   Kind
	Err    error // the underlying cause for Temporary: *RcodeError, a network error, ...
}

func (e *Error) Error() string {
	s := "resolve " + e.Type + " " + e.Name
	if e.Domain != "" && e.Domain != e.Name {
		s += " (for " + e.Domain + ")"
	}
	switch e.Kind {
	case Temporary:
		if e.Err != nil {
			return s + ": " + e.Err.Error()
		}
		return s + ": temporary failure"
	case NXDomain:
		return s + ": no such domain (NXDOMAIN)"
	case NoData:
		return s + ": no " + e.Type + " record"
	case NullMX:
		return s + ": null MX, the domain accepts no mail"
	case NoAddress:
		if e.Err != nil {
			return s + ": no address for any mail host: " + e.Err.Error()
		}
		return s + ": no address for any mail host"
	case BadName:
		return s + ": invalid domain name"
	}
	return s + ": " + e.Kind.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying again later could give another answer.
func (e *Error) Temporary() bool { return e.Kind == Temporary }

// Reply is the failure as the typed outcome the classifier reads, with
// Command "DNS". Temporary failures have no code (Code 0, Temporary true,
// status 4.4.3 "routing server failure", RFC 3463); the permanent ones carry
// the conventional code and status a receiving MTA would have used:
//
//	null MX            556 5.1.10  (RFC 7505)
//	NXDOMAIN           550 5.1.2   bad destination system address
//	no address / data  550 5.4.4   unable to route
//	invalid name       553 5.1.3   bad destination address syntax
func (e *Error) Reply() policy.Reply {
	domain := e.Domain
	if domain == "" {
		domain = e.Name
	}
	r := policy.Reply{Command: "DNS"}
	switch e.Kind {
	case NullMX:
		r.Code, r.Enhanced = 556, "5.1.10"
		r.Line = "556 5.1.10 " + domain + " does not accept mail (null MX)"
	case NXDomain:
		r.Code, r.Enhanced = 550, "5.1.2"
		r.Line = "550 5.1.2 " + domain + ": domain not found (NXDOMAIN for " + e.Name + ")"
	case NoAddress, NoData:
		r.Code, r.Enhanced = 550, "5.4.4"
		r.Line = "550 5.4.4 " + domain + ": unable to route, no address for its mail hosts"
	case BadName:
		r.Code, r.Enhanced = 553, "5.1.3"
		r.Line = "553 5.1.3 " + domain + ": invalid domain name"
	default:
		r.Enhanced = "4.4.3"
		r.Temporary = true
		r.Line = "DNS lookup failed: " + e.Error()
	}
	return r
}

// RcodeError is an answer whose RCODE says the server could not answer.
type RcodeError struct {
	Rcode  int
	Server string
}

func (e *RcodeError) Error() string {
	name, ok := dns.RcodeToString[e.Rcode]
	if !ok {
		name = fmt.Sprintf("RCODE %d", e.Rcode)
	}
	return name + " from " + e.Server
}

// IsNotFound reports whether err proves the record does not exist: NXDOMAIN
// or NODATA.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Kind == NXDomain || e.Kind == NoData)
}

// IsTemporary reports whether err is a failure that may go away: any error
// that is not a *Error with a permanent Kind.
func IsTemporary(err error) bool {
	if err == nil {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return true
}
