// Package fakemx provides fake mail exchangers: real SMTP servers (go-smtp)
// on loopback whose replies are scripted, and which record every message they
// receive byte for byte. Delivery tests point kiln at them; the same engine is
// meant to back a rehearsal sink, so the script is data (a list of Rule), not
// Go callbacks.
//
// A Server offers PIPELINING, 8BITMIME, SIZE and CHUNKING (go-smtp always
// does), and STARTTLS with a self-signed certificate unless Config.TLS says
// otherwise. STARTTLS is on by default because most real exchangers offer it,
// so the common path of kiln's client (upgrade, then EHLO again) is the one
// every test exercises; TLSOff and TLSBroken give the other two cases.
//
//	mx := fakemx.Start(t, fakemx.Config{Rules: fakemx.ConventionRules()})
//	... deliver to mx.Addr() ...
//	msgs := mx.WaitMessages(t, 2)
//
// Messages are recorded as go-smtp hands them over: dot-unstuffed, with the
// line endings as received (CRLF normally; a bare LF or CR that a broken
// client sent is kept, so smuggling tests can count them).
//
// For peers that no SMTP server library would ever be (a greeting that never
// comes, garbage replies, a server that accepts TCP and then says nothing),
// use StartRaw.
package fakemx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TLSMode says what the server does about STARTTLS.
type TLSMode string

const (
	// TLSOn offers STARTTLS with a self-signed certificate (the default).
	TLSOn TLSMode = ""
	// TLSOff does not offer STARTTLS.
	TLSOff TLSMode = "off"
	// TLSBroken offers STARTTLS, answers it with 220, then fails every
	// handshake: the case where an opportunistic client must fall back to
	// plaintext on a new connection.
	TLSBroken TLSMode = "broken"
)

// Config describes a fake MX. The zero value is a loopback server that
// accepts everything.
type Config struct {
	// Addr to listen on; default "127.0.0.1:0" (a free port). Several
	// servers on 127.0.0.2, 127.0.0.3, ... with one fixed port stand for the
	// MX hosts of a domain when the client dials a single port.
	Addr string
	// Domain is the name in the greeting and the certificate; default
	// "mx.fakemx.test".
	Domain string
	TLS    TLSMode
	// Rules script the replies; see Rule.
	Rules []Rule
	// SMTPUTF8 advertises RFC 6531 support; without it go-smtp refuses a
	// MAIL FROM that asks for it.
	SMTPUTF8 bool
	// MaxMessageBytes is advertised as SIZE and enforced (552 5.3.4); 0 means
	// no limit.
	MaxMessageBytes int64
	// MaxRecipients per transaction (452 4.5.3 beyond, and advertised as
	// LIMITS RCPTMAX); 0 means no limit.
	MaxRecipients int
	// Users enables AUTH PLAIN (over TLS only) for these user names and
	// passwords, for tests of relaying through a smarthost.
	Users map[string]string
	// ReadTimeout and WriteTimeout bound each command and reply; default a
	// minute each (go-smtp's own default is no timeout at all).
	ReadTimeout, WriteTimeout time.Duration
	// Discard keeps counts but not messages, for long rehearsals where the
	// bodies would only fill memory.
	Discard bool
	// ErrorLog receives go-smtp's connection errors; default: discarded.
	ErrorLog smtp.Logger
	// Debug, when set, receives a trace of every session (both directions),
	// for tests that check exactly what a client sent.
	Debug io.Writer
}

// Message is one transaction whose body the server read completely.
type Message struct {
	ID       string   // queue id given in the 250 reply, "" when not accepted
	From     string   // envelope sender, "" for the null sender
	Rcpts    []string // accepted recipients, in RCPT order
	Data     []byte   // the body, dot-unstuffed, line endings as received
	Helo     string   // the EHLO/HELO name
	TLS      bool     // the transaction ran over TLS
	AuthUser string   // the AUTH user, "" without AUTH
	Body     string   // MAIL's BODY= value ("8BITMIME", ...), "" when absent
	UTF8     bool     // MAIL carried SMTPUTF8
	Size     int64    // MAIL's SIZE= value, 0 when absent
	Session  int      // number of the connection it came on, from 1
	Client   string   // the client's address (ip:port): which source address it used
	Reply    string   // the reply sent after the dot, "" when dropped
	Dropped  bool     // a rule dropped the connection instead of replying
	At       time.Time
}

// Accepted reports whether the server took responsibility for the message.
func (m Message) Accepted() bool { return strings.HasPrefix(m.Reply, "2") }

// BareCRLF counts CR not followed by LF and LF not preceded by CR in the
// body: what an SMTP smuggling probe looks for in relayed mail.
func (m Message) BareCRLF() int { return CountBareCRLF(m.Data) }

// CountBareCRLF counts bare CR and bare LF bytes in b.
func CountBareCRLF(b []byte) int {
	n := 0
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				n++
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				n++
			}
		}
	}
	return n
}

// Stats are the server's counters.
type Stats struct {
	Sessions     int // TCP connections accepted
	TLS          int // connections that completed STARTTLS
	Transactions int // message bodies read in full
	Messages     int // of those, accepted (2xx after the dot)
	Dropped      int // connections a rule dropped
}

// Server is a running fake MX.
type Server struct {
	cfg  Config
	srv  *smtp.Server
	addr string
	cert *x509.Certificate
	done chan struct{}

	mu       sync.Mutex
	rules    []Rule
	used     []int
	msgs     []Message
	attempts []Message
	stats    Stats
	changed  chan struct{} // closed and replaced whenever a record changes
	nextID   int
}

// Start starts a server for a test and stops it when the test ends. It fails
// the test on a bad config.
func Start(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("fakemx: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// New starts a server as cfg says. Close stops it.
func New(cfg Config) (*Server, error) {
	if err := ValidateRules(cfg.Rules); err != nil {
		return nil, err
	}
	switch cfg.TLS {
	case TLSOn, TLSOff, TLSBroken:
	default:
		return nil, fmt.Errorf("tls %q: want \"\", off or broken", cfg.TLS)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "mx.fakemx.test"
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = time.Minute
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = time.Minute
	}
	if cfg.ErrorLog == nil {
		cfg.ErrorLog = log.New(io.Discard, "", 0)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		addr:    ln.Addr().String(),
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	s.setRulesLocked(cfg.Rules)

	be := smtp.BackendFunc(s.newSession)
	srv := smtp.NewServer(be)
	srv.Domain = cfg.Domain
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.EnableSMTPUTF8 = cfg.SMTPUTF8
	srv.ErrorLog = cfg.ErrorLog
	if cfg.Debug != nil {
		srv.Debug = &lockedWriter{w: cfg.Debug}
	}
	if cfg.TLS != TLSOff {
		host, _, _ := net.SplitHostPort(s.addr)
		cert, leaf, err := selfSigned([]string{cfg.Domain, "localhost"}, []net.IP{net.ParseIP(host)})
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.cert = leaf
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if cfg.TLS == TLSBroken {
			tc = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return nil, errors.New("fakemx: handshake broken on purpose")
			}}
		}
		srv.TLSConfig = tc
	}
	s.srv = srv
	go srv.Serve(&listener{Listener: ln, s: s})
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// Host is the IP address part of Addr.
func (s *Server) Host() string { h, _, _ := net.SplitHostPort(s.addr); return h }

// Port is the TCP port of Addr.
func (s *Server) Port() string { _, p, _ := net.SplitHostPort(s.addr); return p }

// Certificate is the self-signed certificate offered in STARTTLS (nil with
// TLSOff).
func (s *Server) Certificate() *x509.Certificate { return s.cert }

// CertPool holds the server's certificate, for clients that verify.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	if s.cert != nil {
		p.AddCert(s.cert)
	}
	return p
}

// Close stops the server and closes every connection; delays in progress
// end at once.
func (s *Server) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	return s.srv.Close()
}

// SetRules replaces the script; the Times counters start again.
func (s *Server) SetRules(rules ...Rule) error {
	if err := ValidateRules(rules); err != nil {
		return err
	}
	s.mu.Lock()
	s.setRulesLocked(rules)
	s.mu.Unlock()
	return nil
}

func (s *Server) setRulesLocked(rules []Rule) {
	s.rules = append([]Rule(nil), rules...)
	s.used = make([]int, len(rules))
}

// rule finds the rule for an event and counts its use.
func (s *Server) rule(stage Stage, addr string) (Rule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ruleLocked(stage, addr)
}

func (s *Server) ruleLocked(stage Stage, addr string) (Rule, bool) {
	for i, r := range s.rules {
		if r.Stage != stage || (r.Times > 0 && s.used[i] >= r.Times) {
			continue
		}
		if stage != StageConnect && !match(r.Match, addr) {
			continue
		}
		s.used[i]++
		return r, true
	}
	return Rule{}, false
}

// dataRule finds the data rule for a transaction: its recipients are tried
// in order and the first match decides.
func (s *Server) dataRule(rcpts []string) (Rule, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rc := range rcpts {
		if r, ok := s.ruleLocked(StageData, rc); ok {
			return r, rc, true
		}
	}
	return Rule{}, "", false
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Messages returns the accepted messages, in arrival order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Attempts returns every transaction whose body was read, accepted or not
// (refused after the dot, or dropped), in arrival order.
func (s *Server) Attempts() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.attempts...)
}

// Count reports how many accepted messages included rcpt (case-insensitive):
// the number a duplicate check compares with 1.
func (s *Server) Count(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.msgs {
		for _, r := range m.Rcpts {
			if strings.EqualFold(r, rcpt) {
				n++
			}
		}
	}
	return n
}

// Reset forgets the recorded messages and zeroes the counters.
func (s *Server) Reset() {
	s.mu.Lock()
	s.msgs, s.attempts, s.stats = nil, nil, Stats{}
	s.signalLocked()
	s.mu.Unlock()
}

func (s *Server) signalLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Wait blocks until cond holds for the counters, the context ends, or the
// server is closed.
func (s *Server) Wait(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		ok, ch := cond(s.stats), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return errors.New("fakemx: server closed")
		}
	}
}

// WaitTimeout bounds WaitMessages.
var WaitTimeout = 10 * time.Second

// WaitMessages waits until at least n messages were accepted and returns
// them; it fails the test after WaitTimeout.
func (s *Server) WaitMessages(tb testing.TB, n int) []Message {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	if err := s.Wait(ctx, func(st Stats) bool { return st.Messages >= n }); err != nil {
		tb.Fatalf("fakemx: waiting for %d messages: %v (stats %+v)", n, err, s.Stats())
	}
	return s.Messages()
}

// sleep waits d, or less if the connection or the server closes first.
func (s *Server) sleep(st *connState, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-st.closed:
	case <-s.done:
	}
	return false
}

// listener hands go-smtp the accepted connections, after applying the
// connect rules itself: go-smtp creates a session only at EHLO, too late to
// refuse or delay the greeting.
type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		s.mu.Lock()
		s.stats.Sessions++
		st := &connState{id: s.stats.Sessions, closed: make(chan struct{})}
		s.signalLocked()
		r, ok := s.ruleLocked(StageConnect, "")
		s.mu.Unlock()
		mc := &mxConn{Conn: c, s: s, st: st}
		st.conn = mc
		if ok && (r.Drop || (r.Code != 0 && r.Code/100 != 2)) {
			go s.refuse(mc, r)
			continue
		}
		if ok {
			mc.greetDelay = r.Delay
		}
		return mc, nil
	}
}

// refuse answers a connection with the connect rule's reply (or nothing, for
// a drop) and closes it.
func (s *Server) refuse(c *mxConn, r Rule) {
	defer c.Close()
	if !s.sleep(c.st, r.Delay) {
		return
	}
	if r.Drop {
		s.countDrop()
		return
	}
	c.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	io.WriteString(c, r.replyLine("")+"\r\n")
}

func (s *Server) countDrop() {
	s.mu.Lock()
	s.stats.Dropped++
	s.signalLocked()
	s.mu.Unlock()
}

// connState is what the server knows about one TCP connection across the
// go-smtp sessions on it (STARTTLS starts a new session).
type connState struct {
	id        int
	conn      *mxConn
	closed    chan struct{}
	closeOnce sync.Once
	tls       bool
}

// mxConn is the accepted connection as go-smtp sees it: it can hold the
// greeting back, and lets a rule drop the connection at any point.
type mxConn struct {
	net.Conn
	s          *Server
	st         *connState
	greetDelay time.Duration
	greeted    atomic.Bool
}

func (c *mxConn) Write(b []byte) (int, error) {
	if c.greetDelay > 0 && !c.greeted.Swap(true) {
		if !c.s.sleep(c.st, c.greetDelay) {
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(b)
}

func (c *mxConn) Close() error {
	c.st.closeOnce.Do(func() { close(c.st.closed) })
	return c.Conn.Close()
}

// stateOf finds the connState behind a go-smtp connection, through the TLS
// layer after STARTTLS.
func stateOf(c net.Conn) *connState {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if mc, ok := c.(*mxConn); ok {
		return mc.st
	}
	return &connState{closed: make(chan struct{})}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	st := stateOf(c.Conn())
	if _, isTLS := c.TLSConnectionState(); isTLS && !st.tls {
		st.tls = true
		s.mu.Lock()
		s.stats.TLS++
		s.signalLocked()
		s.mu.Unlock()
	}
	return &session{s: s, st: st, c: c}, nil
}

// session is one go-smtp session: a connection between two EHLOs.
type session struct {
	s    *Server
	st   *connState
	c    *smtp.Conn
	user string

	from  string
	opts  smtp.MailOptions
	rcpts []string
}

// apply carries out a rule for an event: wait, then drop or reply. It
// returns nil for the normal reply.
func (se *session) apply(r Rule, addr string) error {
	if !se.s.sleep(se.st, r.Delay) {
		return errors.New("fakemx: closed while waiting")
	}
	if r.Drop {
		se.s.countDrop()
		se.st.conn.Close()
		return errors.New("fakemx: connection dropped by rule")
	}
	if r.Code != 0 && r.Code/100 != 2 {
		return r.smtpError(addr)
	}
	return nil
}

func (se *session) Reset() {
	se.from, se.opts, se.rcpts = "", smtp.MailOptions{}, nil
}

func (se *session) Logout() error { return nil }

func (se *session) Mail(from string, opts *smtp.MailOptions) error {
	addr := from
	if addr == "" {
		addr = "<>"
	}
	if r, ok := se.s.rule(StageMail, addr); ok {
		if err := se.apply(r, addr); err != nil {
			return err
		}
	}
	se.from = from
	if opts != nil {
		se.opts = *opts
	}
	se.rcpts = nil
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if r, ok := se.s.rule(StageRcpt, to); ok {
		if err := se.apply(r, to); err != nil {
			return err
		}
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err // ErrDataTooLarge carries its own 552
	}
	s := se.s
	_, isTLS := se.c.TLSConnectionState()
	m := Message{
		From:     se.from,
		Rcpts:    append([]string(nil), se.rcpts...),
		Data:     data,
		Helo:     se.c.Hostname(),
		TLS:      isTLS,
		AuthUser: se.user,
		Body:     string(se.opts.Body),
		UTF8:     se.opts.UTF8,
		Size:     se.opts.Size,
		Session:  se.st.id,
		Client:   se.c.Conn().RemoteAddr().String(),
		At:       time.Now(),
	}
	rule, addr, ok := s.dataRule(m.Rcpts)
	var reply error
	if ok {
		reply = se.apply(rule, addr)
	}
	if ok && rule.Drop {
		m.Dropped = true
		s.record(m)
		return reply
	}
	if reply == nil {
		s.mu.Lock()
		s.nextID++
		m.ID = fmt.Sprintf("Q%06d", s.nextID)
		s.mu.Unlock()
		ok2 := &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + m.ID}
		if ok && rule.Code/100 == 2 {
			ok2 = rule.smtpError(addr)
			ok2.Message += " (" + m.ID + ")"
		}
		m.Reply = fmt.Sprintf("%d %d.%d.%d %s", ok2.Code, ok2.EnhancedCode[0], ok2.EnhancedCode[1], ok2.EnhancedCode[2], ok2.Message)
		s.record(m)
		return ok2
	}
	m.Reply = rule.replyLine(addr)
	s.record(m)
	return reply
}

func (s *Server) record(m Message) {
	if s.cfg.Discard {
		m.Data = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Transactions++
	if !s.cfg.Discard {
		s.attempts = append(s.attempts, m)
	}
	if m.Accepted() {
		s.stats.Messages++
		if !s.cfg.Discard {
			s.msgs = append(s.msgs, m)
		}
	}
	s.signalLocked()
}

// AuthMechanisms offers PLAIN when the config has users; go-smtp advertises
// it only over TLS.
func (se *session) AuthMechanisms() []string {
	if len(se.s.cfg.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || len(se.s.cfg.Users) == 0 {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if want, ok := se.s.cfg.Users[username]; !ok || want != password || (identity != "" && identity != username) {
			return smtp.ErrAuthFailed
		}
		se.user = username
		return nil
	}), nil
}

var _ smtp.AuthSession = (*session)(nil)

// lockedWriter serialises the traces of concurrent sessions.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
