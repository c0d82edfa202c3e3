// Package smtpclient is kiln's outbound SMTP client: one connection to one
// mail exchanger, carrying as many transactions as the delivery engine gives
// it, and turning every outcome into a policy.Reply per recipient.
//
// It is kiln's own rather than go-smtp's client because an outbound MTA needs
// what that client lacks: the real EHLO name before STARTTLS (go-smtp sends
// "localhost"), a plaintext retry when an opportunistic handshake fails,
// PIPELINING (RFC 2920), a bound source address and context cancellation.
//
// How the delivery engine uses it:
//
//	d := &smtpclient.Dialer{LocalName: "out1.example.com", LocalAddr: egressIP}
//	c, err := d.Dial(ctx, "192.0.2.25:25", "mx1.example.net")
//	if err != nil {
//		// *Error: err.(*smtpclient.Error).Reply is the outcome for every
//		// recipient meant for this host; try the next MX host when it is
//		// temporary (or a 5xx greeting), then defer.
//	}
//	res := c.Send(ctx, from, rcpts, signatureHeader, body)
//	// res.Rcpts[i] is the outcome of rcpts[i]; res.Err != nil means the
//	// connection is gone and the next message needs a new Dial.
//	...more Sends on the same connection...
//	c.Close() // QUIT
//
// Anything that is not an SMTP reply (a refused or reset connection, a
// timeout, a TLS failure, a malformed reply) becomes a policy.Reply with
// Code 0, Temporary true, Command naming the stage, and Line describing what
// happened. A few outcomes are decided locally before any byte is sent and
// carry the code a receiver would have used: a message with a bare CR, bare
// LF or NUL (554 5.6.0, the SMTP smuggling guard), a message over the
// server's SIZE (552 5.3.4), a non-ASCII address for a server without
// SMTPUTF8 (553 5.6.7), an address that would break the command line
// (553 5.1.3 / 5.1.7).
package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"kiln/policy"
)

// TLSMode says how hard the client tries for TLS.
type TLSMode int

const (
	// TLSOpportunistic uses STARTTLS when the server offers it, without
	// checking the certificate (most MX certificates would not verify, and
	// an unauthenticated channel still beats plaintext, RFC 7435). When the
	// handshake fails, Dial connects again and continues in plaintext
	// itself; TLSInfo.Fallback says why.
	TLSOpportunistic TLSMode = iota
	// TLSRequired fails (temporarily: Code 0, Command "STARTTLS") when the
	// server does not offer STARTTLS, refuses it or the handshake fails.
	TLSRequired
	// TLSNone never sends STARTTLS.
	TLSNone
)

// ParseTLSMode reads the config's words: "opportunistic", "required", "none".
func ParseTLSMode(s string) (TLSMode, error) {
	switch strings.ToLower(s) {
	case "", "opportunistic":
		return TLSOpportunistic, nil
	case "required":
		return TLSRequired, nil
	case "none":
		return TLSNone, nil
	}
	return 0, fmt.Errorf("tls %q: want opportunistic, required or none", s)
}

func (m TLSMode) String() string {
	switch m {
	case TLSOpportunistic:
		return "opportunistic"
	case TLSRequired:
		return "required"
	case TLSNone:
		return "none"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// Default timeouts, RFC 5321 §4.5.3.2 where it names one.
const (
	DefaultConnectTimeout   = 30 * time.Second
	DefaultGreetingTimeout  = 5 * time.Minute  // §4.5.3.2.1
	DefaultEHLOTimeout      = 5 * time.Minute  // as Postfix's smtp_helo_timeout
	DefaultTLSTimeout       = 5 * time.Minute  // as Postfix's smtp_starttls_timeout
	DefaultMailTimeout      = 5 * time.Minute  // §4.5.3.2.2
	DefaultRcptTimeout      = 5 * time.Minute  // §4.5.3.2.3
	DefaultDataInitTimeout  = 2 * time.Minute  // §4.5.3.2.4
	DefaultDataBlockTimeout = 3 * time.Minute  // §4.5.3.2.5
	DefaultDataDoneTimeout  = 10 * time.Minute // §4.5.3.2.6
	DefaultRsetTimeout      = 20 * time.Second // as Postfix's smtp_rset_timeout
	DefaultQuitTimeout      = 5 * time.Second  // nothing rides on the QUIT reply
)

// Auth holds credentials for AUTH PLAIN (RFC 4616) to a smarthost. They are
// only ever sent over TLS.
type Auth struct {
	Username, Password string
}

// Dialer holds what every connection from one egress identity shares. Set
// its fields before the first Dial and do not change them after; a Dialer is
// safe for concurrent use and keeps a TLS session cache for resumption.
type Dialer struct {
	// LocalName is the EHLO name; it should be the forward-confirmed PTR
	// name of LocalAddr, or receivers may penalise the mail. Required.
	LocalName string
	// LocalAddr is the source address (the egress IP); zero lets the
	// system choose.
	LocalAddr netip.Addr
	TLS       TLSMode
	// VerifyTLS checks the certificate chain and that it names the MX host.
	// A failed check is a failed handshake: with TLSRequired the delivery
	// is deferred (what MTA-STS "enforce" needs); with TLSOpportunistic it
	// falls back to plaintext, so it only makes sense with TLSRequired.
	VerifyTLS bool
	// RootCAs for VerifyTLS; nil means the system's roots.
	RootCAs *x509.CertPool
	// Auth, when set, authenticates with AUTH PLAIN after STARTTLS. Without
	// TLS, or when the server offers no PLAIN, Dial fails (temporarily).
	Auth *Auth

	ConnectTimeout   time.Duration
	GreetingTimeout  time.Duration
	EHLOTimeout      time.Duration
	TLSTimeout       time.Duration
	MailTimeout      time.Duration
	RcptTimeout      time.Duration
	DataInitTimeout  time.Duration
	DataBlockTimeout time.Duration
	DataDoneTimeout  time.Duration
	RsetTimeout      time.Duration
	QuitTimeout      time.Duration

	once     sync.Once
	sessions tls.ClientSessionCache
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// timeouts is the Dialer's timeouts with defaults filled in.
type timeouts struct {
	connect, greeting, ehlo, tls, mail, rcpt, dataInit, dataBlock, dataDone, rset, quit time.Duration
}

func (d *Dialer) timeouts() timeouts {
	return timeouts{
		connect:   orDefault(d.ConnectTimeout, DefaultConnectTimeout),
		greeting:  orDefault(d.GreetingTimeout, DefaultGreetingTimeout),
		ehlo:      orDefault(d.EHLOTimeout, DefaultEHLOTimeout),
		tls:       orDefault(d.TLSTimeout, DefaultTLSTimeout),
		mail:      orDefault(d.MailTimeout, DefaultMailTimeout),
		rcpt:      orDefault(d.RcptTimeout, DefaultRcptTimeout),
		dataInit:  orDefault(d.DataInitTimeout, DefaultDataInitTimeout),
		dataBlock: orDefault(d.DataBlockTimeout, DefaultDataBlockTimeout),
		dataDone:  orDefault(d.DataDoneTimeout, DefaultDataDoneTimeout),
		rset:      orDefault(d.RsetTimeout, DefaultRsetTimeout),
		quit:      orDefault(d.QuitTimeout, DefaultQuitTimeout),
	}
}

// TLSInfo describes the connection's TLS, for events.
type TLSInfo struct {
	Version  string // "TLS 1.3"; "" in plaintext
	Cipher   string // "TLS_AES_128_GCM_SHA256"
	Verified bool   // the certificate was checked (VerifyTLS) and passed
	// Fallback says why the connection is in plaintext although STARTTLS
	// was offered: the failed handshake (then Dial connected again) or the
	// server's refusal of the STARTTLS command.
	Fallback string
}

// Error is a failed Dial or a connection lost during Send. Reply is the
// outcome to record for the recipients it concerns.
type Error struct {
	Reply policy.Reply
	Err   error // the network or TLS error; nil when Reply is the server's
}

func (e *Error) Error() string {
	if e.Reply.Host != "" {
		return e.Reply.Host + ": " + e.Reply.Line
	}
	return e.Reply.Line
}

func (e *Error) Unwrap() error { return e.Err }

// ErrTLSHandshake is wrapped by errors from a failed STARTTLS handshake.
var ErrTLSHandshake = errors.New("TLS handshake failed")

// ErrClosed is wrapped by the error of a Send on a closed or broken client.
var ErrClosed = errors.New("connection closed")

// Client is one SMTP connection. Its methods must not be called
// concurrently; one delivery worker owns it.
type Client struct {
	d        *Dialer
	t        timeouts
	host     string
	raw      net.Conn // the TCP connection, closed to abort anything
	conn     net.Conn // raw, or the TLS connection over it
	rr       replyReader
	bw       *bufio.Writer
	ext      extensions
	tlsInfo  TLSInfo
	greeting string

	writeTimeout time.Duration
	broken       error // set once the connection is unusable
	dirty        bool  // a transaction was left open: RSET before the next
	scratch      []byte
	state        []int8
	txns         int
}

// Dial connects to addr (ip:port), reads the greeting, says EHLO, and does
// STARTTLS (and AUTH) as the Dialer says. host is the MX host name: the TLS
// server name and the Host of every Reply. The error is always an *Error.
//
// In TLSOpportunistic mode a failed handshake is handled here: the client
// connects again, skips STARTTLS, and the returned Client's TLS().Fallback
// names the failure. The context bounds the whole dial; cancelling it later
// has no effect on the returned Client (each Send takes its own).
func (d *Dialer) Dial(ctx context.Context, addr, host string) (*Client, error) {
	c, err := d.dial(ctx, addr, host, d.TLS)
	if err != nil && d.TLS == TLSOpportunistic && errors.Is(err, ErrTLSHandshake) && ctx.Err() == nil {
		c, err2 := d.dial(ctx, addr, host, TLSNone)
		if err2 != nil {
			return nil, err2
		}
		c.tlsInfo.Fallback = err.(*Error).Reply.Line
		return c, nil
	}
	return c, err
}

func (d *Dialer) dial(ctx context.Context, addr, host string, mode TLSMode) (*Client, error) {
	c := &Client{d: d, t: d.timeouts(), host: host}
	fail := func(rep policy.Reply, err error) (*Client, error) {
		if ctx.Err() != nil {
			rep.Line += " (" + ctx.Err().Error() + ")"
		}
		if c.raw != nil {
			c.raw.Close()
		}
		rep.Code, rep.Host, rep.Temporary = 0, host, true
		return nil, &Error{Reply: rep, Err: err}
	}
	nd := net.Dialer{Timeout: c.t.connect}
	if d.LocalAddr.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: d.LocalAddr.AsSlice()}
	}
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fail(policy.Reply{Command: "CONNECT", Enhanced: "4.4.1", Line: "connect to " + addr + " failed: " + netErrText(err)}, err)
	}
	c.raw, c.conn = raw, raw
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	c.setConn(raw)

	code, err := c.readReply(c.t.greeting)
	if err != nil {
		return fail(policy.Reply{Command: "CONNECT", Enhanced: "4.4.2", Line: "reading the greeting from " + addr + ": " + netErrText(err)}, err)
	}
	c.greeting = c.rr.text()
	if code/100 != 2 {
		// 421, or 554 "no service here" (RFC 5321 §3.1). Say QUIT without
		// waiting, as the RFC asks after a 554.
		rep := c.rr.reply("CONNECT", host)
		c.quitNow()
		return nil, &Error{Reply: rep}
	}

	if rep, err := c.hello(); err != nil {
		return fail(rep, err)
	} else if rep.Code != 0 {
		c.quitNow()
		return nil, &Error{Reply: rep}
	}

	if mode != TLSNone {
		if !c.ext.starttls {
			if mode == TLSRequired {
				c.quitNow()
				return nil, &Error{Reply: policy.Reply{Command: "STARTTLS", Enhanced: "4.7.10", Host: host, Temporary: true,
					Line: "TLS is required but " + host + " does not offer STARTTLS"}}
			}
		} else {
			if rep, err := c.startTLS(ctx, mode); err != nil {
				rep.Command = "STARTTLS"
				return fail(rep, err)
			} else if rep.Code != 0 {
				if mode == TLSRequired {
					// Temporary whatever the code: the server may offer TLS
					// later, and the recipient is not at fault.
					c.quitNow()
					return nil, &Error{Reply: policy.Reply{Command: "STARTTLS", Enhanced: "4.7.10", Host: host, Temporary: true,
						Line: "TLS is required but " + host + " refused it: " + rep.Line}}
				}
				c.tlsInfo.Fallback = "STARTTLS refused: " + rep.Line
			}
		}
	}

	if d.Auth != nil {
		if rep, err := c.auth(); err != nil {
			return fail(rep, err)
		} else if rep.Code != 0 || rep.Line != "" {
			c.quitNow()
			return nil, &Error{Reply: rep}
		}
	}
	return c, nil
}

// setConn switches the connection the client reads and writes (the TLS one
// after STARTTLS), with fresh buffers: nothing read before the switch may be
// taken as coming from after it.
func (c *Client) setConn(conn net.Conn) {
	c.conn = conn
	c.rr.r = bufio.NewReaderSize(conn, 4096)
	c.bw = bufio.NewWriterSize(deadlineWriter{c}, 16<<10)
}

// readReply reads one reply within timeout.
func (c *Client) readReply(timeout time.Duration) (int, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	return c.rr.read()
}

// command writes one command line and flushes it.
func (c *Client) command(timeout time.Duration, parts ...string) error {
	c.writeTimeout = timeout
	for _, p := range parts {
		c.bw.WriteString(p)
	}
	c.bw.WriteString("\r\n")
	return c.bw.Flush()
}

// hello says EHLO, or HELO when the server does not know EHLO. A returned
// Reply with a Code is the server's refusal; an error is a broken connection
// (the Reply then describes it).
func (c *Client) hello() (policy.Reply, error) {
	name := c.d.LocalName
	if name == "" {
		name = "localhost"
	}
	if err := c.command(c.t.ehlo, "EHLO ", name); err != nil {
		return c.lost("EHLO", err), err
	}
	code, err := c.readReply(c.t.ehlo)
	if err != nil {
		return c.lost("EHLO", err), err
	}
	if code == 250 {
		c.ext = parseEHLO(c.rr.buf)
		return policy.Reply{}, nil
	}
	if code/100 != 5 {
		return c.rr.reply("EHLO", c.host), nil
	}
	// RFC 5321 §3.2: a server that does not know EHLO answers 500, 502 or
	// similar; HELO is the way on.
	if err := c.command(c.t.ehlo, "HELO ", name); err != nil {
		return c.lost("HELO", err), err
	}
	code, err = c.readReply(c.t.ehlo)
	if err != nil {
		return c.lost("HELO", err), err
	}
	if code != 250 {
		return c.rr.reply("HELO", c.host), nil
	}
	c.ext = extensions{}
	return policy.Reply{}, nil
}

// startTLS upgrades the connection (RFC 3207) and says EHLO again, as §4.2
// requires: what the server said before TLS is forgotten.
func (c *Client) startTLS(ctx context.Context, mode TLSMode) (policy.Reply, error) {
	if err := c.command(c.t.tls, "STARTTLS"); err != nil {
		return c.lost("STARTTLS", err), err
	}
	code, err := c.readReply(c.t.tls)
	if err != nil {
		return c.lost("STARTTLS", err), err
	}
	if code != 220 {
		return c.rr.reply("STARTTLS", c.host), nil
	}
	if c.rr.r.Buffered() > 0 {
		// Bytes after the 220 that arrived in plaintext would be taken as
		// coming from inside TLS: the STARTTLS command injection attack.
		err := fmt.Errorf("%w: the server sent data after its STARTTLS reply", ErrTLSHandshake)
		return policy.Reply{Line: err.Error()}, err
	}
	c.d.once.Do(func() { c.d.sessions = tls.NewLRUClientSessionCache(256) })
	cfg := &tls.Config{
		ServerName:         c.host,
		InsecureSkipVerify: !c.d.VerifyTLS,
		RootCAs:            c.d.RootCAs,
		ClientSessionCache: c.d.sessions,
		MinVersion:         tls.VersionTLS10, // old MX hosts still speak 1.0; better than plaintext
	}
	if c.d.VerifyTLS {
		cfg.MinVersion = tls.VersionTLS12
	}
	if net.ParseIP(c.host) != nil {
		cfg.ServerName = ""
	}
	tc := tls.Client(c.raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, c.t.tls)
	defer cancel()
	c.raw.SetDeadline(time.Now().Add(c.t.tls))
	if err := tc.HandshakeContext(hctx); err != nil {
		err = fmt.Errorf("%w with %s: %v", ErrTLSHandshake, c.host, err)
		return policy.Reply{Enhanced: "4.7.5", Line: err.Error()}, err
	}
	c.raw.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tlsInfo = TLSInfo{Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite), Verified: c.d.VerifyTLS}
	c.setConn(tc)
	rep, err := c.hello()
	if err != nil {
		// Some servers finish the handshake and then hang up (with TLS 1.3
		// a rejected handshake can surface only at the first read): treat
		// it as a failed handshake so opportunistic mode retries in
		// plaintext.
		err = fmt.Errorf("%w: connection lost right after the handshake: %w", ErrTLSHandshake, err)
		rep.Line = err.Error()
		rep.Enhanced = "4.7.5"
		return rep, err
	}
	if rep.Code != 0 && mode == TLSOpportunistic {
		// A server that will not talk after TLS is as good as a failed
		// handshake: let Dial retry in plaintext.
		err = fmt.Errorf("%w: EHLO after STARTTLS refused: %s", ErrTLSHandshake, rep.Line)
		rep.Line = err.Error()
	}
	return rep, err
}

// auth runs AUTH PLAIN with an initial response (RFC 4954 §4).
func (c *Client) auth() (policy.Reply, error) {
	if c.tlsInfo.Version == "" {
		return policy.Reply{Command: "AUTH", Host: c.host, Temporary: true, Enhanced: "4.7.10",
			Line: "refusing to send credentials to " + c.host + " without TLS"}, nil
	}
	if !strings.Contains(" "+c.ext.auth+" ", " PLAIN ") {
		return policy.Reply{Command: "AUTH", Host: c.host, Temporary: true, Enhanced: "4.7.4",
			Line: c.host + " does not offer AUTH PLAIN"}, nil
	}
	a := c.d.Auth
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + a.Username + "\x00" + a.Password))
	if err := c.command(c.t.ehlo, "AUTH PLAIN ", ir); err != nil {
		return c.lost("AUTH", err), err
	}
	code, err := c.readReply(c.t.ehlo)
	if err != nil {
		return c.lost("AUTH", err), err
	}
	if code != 235 {
		return c.rr.reply("AUTH", c.host), nil
	}
	return policy.Reply{}, nil
}

// lost describes a broken connection at a stage as a temporary outcome.
func (c *Client) lost(command string, err error) policy.Reply {
	return policy.Reply{Command: command, Host: c.host, Temporary: true, Line: lostLine(command, err)}
}

func lostLine(command string, err error) string {
	if errors.Is(err, errProtocol) {
		return "protocol error at " + command + ": " + err.Error()
	}
	return "connection lost at " + command + ": " + netErrText(err)
}

// netErrText is a network error in short words, without Go's address
// noise where the stage already says enough.
func netErrText(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

// quitNow sends QUIT without waiting for the reply and closes.
func (c *Client) quitNow() {
	c.writeTimeout = time.Second
	c.bw.WriteString("QUIT\r\n")
	c.bw.Flush()
	c.raw.Close()
	c.broken = ErrClosed
}

// Host is the MX host name given to Dial.
func (c *Client) Host() string { return c.host }

// Greeting is the server's greeting as received.
func (c *Client) Greeting() string { return c.greeting }

// TLS describes the connection's TLS for events.
func (c *Client) TLS() TLSInfo { return c.tlsInfo }

// Extension reports whether the server announced an EHLO keyword, and its
// parameters.
func (c *Client) Extension(name string) (string, bool) {
	v, ok := c.ext.all[strings.ToUpper(name)]
	return v, ok
}

// MaxSize is the server's SIZE limit in bytes, 0 when it named none.
func (c *Client) MaxSize() int64 { return c.ext.size }

// MaxRecipients is the server's LIMITS RCPTMAX (RFC 9422), 0 when it named
// none. Send does not send more recipients than this in one transaction;
// the engine should split batches by it.
func (c *Client) MaxRecipients() int { return c.ext.rcptMax }

// Transactions is how many Sends reached the server on this connection.
func (c *Client) Transactions() int { return c.txns }

// Usable reports whether the connection can take another transaction.
func (c *Client) Usable() bool { return c.broken == nil }

// Close says QUIT (waiting at most QuitTimeout for the reply) and closes the
// connection. It is safe to call on a broken client and more than once.
func (c *Client) Close() error {
	if c.broken != nil {
		c.raw.Close()
		return nil
	}
	c.broken = ErrClosed
	if err := c.command(c.t.quit, "QUIT"); err == nil {
		c.readReply(c.t.quit)
	}
	return c.raw.Close()
}

// Abort closes the connection at once, without QUIT.
func (c *Client) Abort() {
	c.broken = ErrClosed
	c.raw.Close()
}
