package mta

import (
	"context"
	"errors"
	"net/netip"
	"sync"

	"kiln/mta/smtpclient"
	"kiln/policy"
)

// smtpWire delivers over SMTP: it tries a destination's hosts in order, each
// host's addresses in order, and keeps one smtpclient.Dialer per egress
// identity (its TLS session cache makes reconnections cheap).
type smtpWire struct {
	srv *Server

	mu      sync.Mutex
	dialers map[dialerKey]*smtpclient.Dialer
}

type dialerKey struct {
	egress, tls, user string
}

func newSMTPWire(srv *Server) *smtpWire {
	return &smtpWire{srv: srv, dialers: map[dialerKey]*smtpclient.Dialer{}}
}

func (w *smtpWire) dialer(d *Destination, e *Egress) *smtpclient.Dialer {
	k := dialerKey{e.Name, d.TLS, d.Username}
	w.mu.Lock()
	defer w.mu.Unlock()
	if dl := w.dialers[k]; dl != nil {
		return dl
	}
	mode, err := smtpclient.ParseTLSMode(d.TLS)
	if err != nil {
		mode = smtpclient.TLSOpportunistic
	}
	dl := &smtpclient.Dialer{
		LocalName:      e.EHLO,
		LocalAddr:      e.Source,
		TLS:            mode,
		ConnectTimeout: w.srv.cfg.Delivery.ConnectTimeout.D(),
	}
	if d.Username != "" {
		dl.Auth = &smtpclient.Auth{Username: d.Username, Password: d.Password}
	}
	w.dialers[k] = dl
	return dl
}

func (w *smtpWire) Dial(ctx context.Context, d *Destination, e *Egress) (Conn, policy.Reply) {
	dl := w.dialer(d, e)
	var last policy.Reply
	for _, h := range d.Hosts {
		for _, a := range h.Addrs {
			if ctx.Err() != nil {
				break
			}
			addr := netip.AddrPortFrom(a, uint16(d.Port)).String()
			c, err := dl.Dial(ctx, addr, h.Name)
			if err == nil {
				return &smtpConn{c: c, info: ConnInfo{Host: h.Name, IP: a, TLS: c.TLS().Version}}, policy.Reply{}
			}
			var se *smtpclient.Error
			if errors.As(err, &se) {
				last = se.Reply
			} else {
				last = policy.Reply{Command: "CONNECT", Line: err.Error(), Host: h.Name, Temporary: true}
			}
			// Any failure to talk to one host, a 5xx greeting included,
			// sends kiln on to the next (RFC 5321 §5.1; Postfix's
			// smtp_skip_5xx_greeting).
		}
	}
	if last.Line == "" {
		last = policy.Reply{Command: "CONNECT", Line: "no mail exchanger address to connect to for " + d.Domain, Temporary: true}
	}
	return nil, last
}

type smtpConn struct {
	c    *smtpclient.Client
	info ConnInfo
}

// Send splits the recipients by the server's LIMITS RCPTMAX, one transaction
// per slice.
func (c *smtpConn) Send(ctx context.Context, from string, rcpts []string, body []byte) ([]policy.Reply, bool) {
	max := c.c.MaxRecipients()
	if max <= 0 {
		max = len(rcpts)
	}
	out := make([]policy.Reply, 0, len(rcpts))
	for start := 0; start < len(rcpts); start += max {
		part := rcpts[start:min(start+max, len(rcpts))]
		if !c.c.Usable() {
			// The connection broke during an earlier slice: the rest
			// were not tried.
			lost := policy.Reply{Command: "MAIL", Line: "connection lost before this recipient was tried", Host: c.info.Host, Temporary: true}
			for range part {
				out = append(out, lost)
			}
			continue
		}
		res := c.c.Send(ctx, from, part, nil, body)
		out = append(out, res.Rcpts...)
	}
	return out, c.c.Usable()
}

func (c *smtpConn) Info() ConnInfo { return c.info }
func (c *smtpConn) Close() error   { return c.c.Close() }
