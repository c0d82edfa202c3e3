package mta

import (
	"context"
	"net/netip"

	"kiln/policy"
)

// Wire is the narrow seam between the scheduler and the network: open a
// connection to a destination from an egress, and attempt transactions on it.
// Production uses SMTP over TCP (smtpWire); tests script it without sockets.
type Wire interface {
	// Dial connects to the first host of d that answers. On failure it
	// returns the reply that explains why (Code 0 for network and TLS
	// failures), which applies to every recipient that was to go there.
	Dial(ctx context.Context, d *Destination, e *Egress) (Conn, policy.Reply)
}

// Conn is one open connection to a remote mail exchanger.
type Conn interface {
	// Send attempts one transaction and returns one reply per recipient, in
	// order. usable is false when the connection cannot carry another
	// transaction (it broke, or the remote said goodbye).
	Send(ctx context.Context, from string, rcpts []string, body []byte) (replies []policy.Reply, usable bool)
	Info() ConnInfo
	Close() error
}

// ConnInfo describes a connection for events.
type ConnInfo struct {
	Host string     // the MX host name
	IP   netip.Addr // its address
	TLS  string     // "TLS1.3" etc., "" for plaintext
}

// Destination is where a site's mail goes: a smarthost, or the MX hosts of
// the recipient domains that share them, in the order to try.
type Destination struct {
	Key    string // the site key: "mx:a.example,b.example" or "route:host:port"
	Domain string // a recipient domain that led here (for logs)
	Hosts  []Host
	Port   int
	// TLS is opportunistic, required or none.
	TLS string
	// Username and Password authenticate to a smarthost.
	Username, Password string
}

// Host is one mail exchanger with its addresses.
type Host struct {
	Name  string
	Addrs []netip.Addr
}

// Egress is the local side of a delivery: the source address to bind and
// the EHLO name that address's PTR record matches.
type Egress struct {
	Name   string
	Source netip.Addr // zero: let the system choose
	EHLO   string
}
