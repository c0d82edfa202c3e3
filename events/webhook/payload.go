package webhook

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"kiln/events"
)

// Payload event names, as list managers already ingest them from SendGrid
// and Mailgun.
const (
	Processed   = "processed"   // events.Received: accepted and queued
	Delivered   = "delivered"   // events.Delivered
	Deferred    = "deferred"    // events.Deferred: kiln retries
	Bounce      = "bounce"      // events.Bounced (hard or soft), events.Expired (soft)
	Dropped     = "dropped"     // events.Dropped: removed without delivery
	SpamReport  = "spamreport"  // events.Complaint
	Unsubscribe = "unsubscribe" // events.Unsubscribe
	Held        = "held"        // events.Held: parked by a hold rule
	Suppressed  = "suppressed"  // events.Suppressed: address added to the suppression list
)

// AllEvents are the payload names an endpoint may choose.
var AllEvents = []string{Processed, Delivered, Deferred, Bounce, Dropped, SpamReport, Unsubscribe, Held, Suppressed}

// DefaultEvents is every name but processed, which would add one POSTed
// event per accepted message that list managers have no use for.
var DefaultEvents = []string{Delivered, Deferred, Bounce, Dropped, SpamReport, Unsubscribe, Held, Suppressed}

// payloadName maps kiln's event type to the payload name; "" is not sent.
func payloadName(typ string) string {
	switch typ {
	case events.Received:
		return Processed
	case events.Delivered:
		return Delivered
	case events.Deferred:
		return Deferred
	case events.Bounced, events.Expired:
		return Bounce
	case events.Dropped:
		return Dropped
	case events.Complaint:
		return SpamReport
	case events.Unsubscribe:
		return Unsubscribe
	case events.Held:
		return Held
	case events.Suppressed:
		return Suppressed
	}
	return ""
}

// Payload is one event as POSTed; a request body is a JSON array of them.
type Payload struct {
	// Event is the payload name; KilnType kiln's own event type, which tells
	// a bounce from an expiry ("bounced", "expired").
	Event    string `json:"event"`
	KilnType string `json:"kiln_type"`
	// EventID is unique to the event: a retried POST repeats it, so a
	// receiver drops what it has already seen.
	EventID string `json:"event_id"`
	// Timestamp is the event time in unix seconds, Time the same with
	// nanoseconds (RFC 3339).
	Timestamp int64     `json:"timestamp"`
	Time      time.Time `json:"time"`
	// QueueID is kiln's id of the message; MessageID its Message-ID header.
	QueueID   string `json:"queue_id,omitempty"`
	MessageID string `json:"message_id,omitempty"`
	Account   string `json:"account,omitempty"`
	From      string `json:"from,omitempty"`
	Recipient string `json:"recipient,omitempty"`
	// BounceType is "hard" (the address is bad: suppress it) or "soft"
	// (the message failed, the address may be fine); bounces only.
	BounceType string `json:"bounce_type,omitempty"`
	// Reason is the classification (userunknown, mailboxfull, expired, ...).
	Reason string `json:"reason,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Code, Status (the enhanced status code) and Reply are the remote
	// server's answer, in its own words.
	Code        int        `json:"code,omitempty"`
	Status      string     `json:"status,omitempty"`
	Reply       string     `json:"reply,omitempty"`
	Attempt     int        `json:"attempt,omitempty"`
	RemoteHost  string     `json:"remote_host,omitempty"`
	RemoteIP    string     `json:"remote_ip,omitempty"`
	TLS         string     `json:"tls,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	Detail      string     `json:"detail,omitempty"`
	// Tags and Metadata are the sender's, as given at submission.
	Tags     []string          `json:"tags,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// newPayload builds the payload of e with a fresh event id.
func newPayload(e *events.Event) Payload {
	p := Payload{
		Event: payloadName(e.Type), KilnType: e.Type, EventID: newEventID(),
		Timestamp: e.Time.Unix(), Time: e.Time.UTC(),
		QueueID: e.ID, MessageID: e.MessageID, Account: e.Account, From: e.From, Recipient: e.Recipient,
		Reason: e.Reason, Rule: e.Rule, Code: e.Code, Status: e.Enhanced, Reply: e.Reply, Attempt: e.Attempt,
		RemoteHost: e.RemoteHost, RemoteIP: e.RemoteIP, TLS: e.TLS, NextAttempt: e.Next, Detail: e.Detail,
		Tags: e.Tags, Metadata: e.Metadata,
	}
	switch e.Type {
	case events.Bounced:
		p.BounceType = "soft"
		if e.Hard {
			p.BounceType = "hard"
		}
	case events.Expired:
		p.BounceType = "soft"
		if p.Reason == "" {
			p.Reason = "expired"
		}
	}
	return p
}

// newEventID returns 128 random bits in hex.
func newEventID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
