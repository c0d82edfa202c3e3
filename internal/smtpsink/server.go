// Package smtpsink is a fake mail exchanger: a real SMTP server (go-smtp)
// whose replies are scripted as data, which counts and can record every
// message it receives byte for byte. It is the engine of "kiln sink" (a
// rehearsal MX driven by a rules file, see File) and of the test helper
// internal/fakemx; it does not import the testing package, so the product
// binary can carry it.
//
// What it can script (see Rule and Throttle): replies per stage chosen by
// address pattern, for the first N matches (Times) or a seeded random share
// of them (Share); delays; 421 at the greeting; connections dropped after the
// final dot or in the middle of DATA; a fixed latency before the reply to the
// final dot; and per-client-IP hourly limits that answer the way Gmail, Yahoo
// or Microsoft do when they rate-limit a sending IP. A 421 reply always closes
// the connection afterwards, as RFC 5321 §3.8 has it.
//
// A Server offers PIPELINING, 8BITMIME, SIZE and CHUNKING (go-smtp always
// does), and STARTTLS with a self-signed certificate unless Config.TLS says
// otherwise (TLSOff, or TLSBroken: every handshake fails). Listeners in
// Config.ListenTLS speak TLS from the first byte (RFC 8314).
//
// Messages are recorded as go-smtp hands them over: dot-unstuffed, with the
// line endings as received (CRLF normally; a bare LF or CR that a broken
// client sent is kept, so smuggling tests can count them). With Discard only
// the counters are kept, and Config.OnMessage sees each message as it comes.
package smtpsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"kiln/internal/clock"
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

// Config describes a server. The zero value is a loopback server on a free
// port that accepts everything.
type Config struct {
	// Addr to listen on; default "127.0.0.1:0" (a free port) when neither
	// Listen nor ListenTLS names one. Several servers on 127.0.0.2,
	// 127.0.0.3, ... with one fixed port stand for the MX hosts of a domain
	// when the client dials a single port.
	Addr string
	// Listen holds more addresses for plain SMTP (after Addr); one server
	// with several listeners shares its rules, throttles and counters.
	Listen []string
	// ListenTLS holds addresses where TLS starts at connect (RFC 8314).
	ListenTLS []string
	// Domain is the name in the greeting and the certificate; default
	// "mx.sink.test".
	Domain string
	TLS    TLSMode
	// Certificate for STARTTLS and ListenTLS; nil makes a self-signed one.
	Certificate *tls.Certificate
	// Rules script the replies; see Rule.
	Rules []Rule
	// Throttles limit each client IP per hour; see Throttle.
	Throttles []Throttle
	// Latency is waited before every reply to a final dot, on top of a
	// rule's Delay: the time a real MX spends scanning a message.
	Latency time.Duration
	// Seed seeds the random draws of Rule.Share: the same seed gives the
	// same sequence of decisions, so the number of deferrals among N
	// messages is reproducible.
	Seed uint64
	// Clock dates the throttle windows; nil is the wall clock.
	Clock clock.Clock
	// SMTPUTF8 advertises RFC 6531 support; without it go-smtp refuses a
	// MAIL FROM that asks for it.
	SMTPUTF8 bool
	// MaxMessageBytes is advertised as SIZE and enforced (552 5.3.4); 0 means
	// no limit.
	MaxMessageBytes int64
	// MaxRecipients per transaction (452 4.5.3 beyond, and advertised as
	// LIMITS RCPTMAX); 0 means no limit.
	MaxRecipients int
	// Users enables AUTH PLAIN and LOGIN for these user names and
	// passwords, over TLS only unless AuthPlaintext is set.
	Users         map[string]string
	AuthPlaintext bool
	// ReadTimeout and WriteTimeout bound each command and reply; default a
	// minute each (go-smtp's own default is no timeout at all).
	ReadTimeout, WriteTimeout time.Duration
	// Discard keeps counts but not messages, for long rehearsals where the
	// bodies would only fill memory.
	Discard bool
	// OnMessage, when set, is called for every transaction whose body was
	// read (accepted, refused or dropped after the dot) and for every
	// connection dropped mid-DATA (Partial), before the reply is sent, from
	// the session's goroutine. With Discard, m.Data is only valid during
	// the call.
	OnMessage func(m *Message)
	// ErrorLog receives go-smtp's connection errors; default: discarded.
	ErrorLog smtp.Logger
	// Debug, when set, receives a trace of every session (both directions).
	Debug io.Writer
}

// Message is one transaction whose body the server read.
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
	Partial  bool     // dropped in the middle of DATA: Data is what was read
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
	Sessions       int   `json:"sessions"`         // TCP connections accepted
	TLS            int   `json:"tls"`              // connections that completed a TLS handshake
	Transactions   int   `json:"transactions"`     // message bodies read in full
	Messages       int   `json:"messages"`         // of those, accepted (2xx after the dot)
	Recipients     int   `json:"recipients"`       // recipients of the accepted messages
	Bytes          int64 `json:"bytes"`            // size of the accepted messages
	Dropped        int   `json:"dropped"`          // connections a rule dropped
	DroppedMidData int   `json:"dropped_mid_data"` // of those, in the middle of DATA
	Throttled      int   `json:"throttled"`        // refusals given by a throttle
}

// Server is a running fake MX.
type Server struct {
	cfg      Config
	srv      *smtp.Server
	addrs    []string
	tlsAddrs []string
	cert     *x509.Certificate
	lns      []*listener
	clk      clock.Clock
	done     chan struct{}

	mu       sync.Mutex
	rules    []Rule
	used     []int
	rng      *rand.Rand
	thr      *throttles
	msgs     []Message
	attempts []Message
	stats    Stats
	refused  map[string]int // scripted refusals by "stage code"
	conns    map[*mxConn]struct{}
	changed  chan struct{} // closed and replaced whenever a record changes
	nextID   int
}

// New starts a server as cfg says. Close stops it.
func New(cfg Config) (*Server, error) {
	if err := ValidateRules(cfg.Rules); err != nil {
		return nil, err
	}
	for i, t := range cfg.Throttles {
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("throttle %d: %w", i+1, err)
		}
	}
	switch cfg.TLS {
	case TLSOn, TLSOff, TLSBroken:
	default:
		return nil, fmt.Errorf("tls %q: want \"\", off or broken", cfg.TLS)
	}
	if cfg.TLS == TLSOff && len(cfg.ListenTLS) > 0 {
		return nil, errors.New("listen_tls needs TLS")
	}
	plain := cfg.Listen
	if cfg.Addr != "" {
		plain = append([]string{cfg.Addr}, cfg.Listen...)
	}
	if len(plain) == 0 && len(cfg.ListenTLS) == 0 {
		plain = []string{"127.0.0.1:0"}
	}
	if cfg.Domain == "" {
		cfg.Domain = "mx.sink.test"
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
	s := &Server{
		cfg:     cfg,
		clk:     cfg.Clock,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x6b696c6e73696e6b)),
		thr:     newThrottles(append([]Throttle(nil), cfg.Throttles...)),
		refused: map[string]int{},
		conns:   map[*mxConn]struct{}{},
	}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	s.setRulesLocked(cfg.Rules)

	var lns []*listener
	closeAll := func() {
		for _, l := range lns {
			l.Listener.Close()
		}
	}
	for i, addr := range append(append([]string(nil), plain...), cfg.ListenTLS...) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return nil, err
		}
		l := &listener{Listener: ln, s: s, tls: i >= len(plain)}
		lns = append(lns, l)
		if l.tls {
			s.tlsAddrs = append(s.tlsAddrs, ln.Addr().String())
		} else {
			s.addrs = append(s.addrs, ln.Addr().String())
		}
	}

	be := smtp.BackendFunc(s.newSession)
	srv := smtp.NewServer(be)
	srv.Domain = cfg.Domain
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = cfg.MaxRecipients
	srv.EnableSMTPUTF8 = cfg.SMTPUTF8
	srv.AllowInsecureAuth = cfg.AuthPlaintext
	srv.ErrorLog = cfg.ErrorLog
	if cfg.Debug != nil {
		srv.Debug = &lockedWriter{w: cfg.Debug}
	}
	if cfg.TLS != TLSOff {
		tc, err := s.tlsConfig()
		if err != nil {
			closeAll()
			return nil, err
		}
		srv.TLSConfig = tc
		for _, l := range lns {
			l.tlsConfig = tc
		}
	}
	s.srv, s.lns = srv, lns
	for _, l := range lns {
		go srv.Serve(l)
	}
	return s, nil
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	if s.cfg.TLS == TLSBroken {
		return &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("smtpsink: handshake broken on purpose")
		}}, nil
	}
	cert := s.cfg.Certificate
	if cert == nil {
		var ips []net.IP
		for _, a := range append(append([]string(nil), s.addrs...), s.tlsAddrs...) {
			h, _, _ := net.SplitHostPort(a)
			if ip := net.ParseIP(h); ip != nil {
				ips = append(ips, ip)
			}
		}
		c, _, err := selfSigned([]string{s.cfg.Domain, "localhost"}, ips)
		if err != nil {
			return nil, err
		}
		cert = &c
	}
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	s.cert = leaf
	return &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}, nil
}

// Addr is the first host:port the server listens on for plain SMTP (or for
// implicit TLS, when it has no plain listener).
func (s *Server) Addr() string {
	if len(s.addrs) > 0 {
		return s.addrs[0]
	}
	return s.tlsAddrs[0]
}

// Addrs lists the plain SMTP listeners' addresses.
func (s *Server) Addrs() []string { return append([]string(nil), s.addrs...) }

// TLSAddrs lists the implicit TLS listeners' addresses.
func (s *Server) TLSAddrs() []string { return append([]string(nil), s.tlsAddrs...) }

// Host is the IP address part of Addr.
func (s *Server) Host() string { h, _, _ := net.SplitHostPort(s.Addr()); return h }

// Port is the TCP port of Addr.
func (s *Server) Port() string { _, p, _ := net.SplitHostPort(s.Addr()); return p }

// Certificate is the certificate offered in TLS (nil with TLSOff or
// TLSBroken).
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
	// go-smtp closes only the listeners its Serve has registered, and
	// Serve runs in its own goroutine: close them here too, so a port is
	// free once Close returns.
	var err error
	for _, l := range s.lns {
		if e := l.Listener.Close(); e != nil && err == nil {
			err = e
		}
	}
	s.srv.Close() // the connections; its listeners are closed already
	s.mu.Lock()
	left := make([]*mxConn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left { // those go-smtp had not taken over yet
		c.Close()
	}
	return err
}

// Shutdown stops accepting connections and waits for the open ones to end
// (the client says QUIT, or gives up) until ctx ends; then it closes what is
// left, as Close does. Replies already decided, such as the 250 to a message
// just recorded, still reach their clients.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, l := range s.lns {
		l.Listener.Close()
	}
	for {
		s.mu.Lock()
		n, ch := len(s.conns), s.changed
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
		case <-s.done:
		}
		break
	}
	return s.Close()
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

// ruleLocked finds the rule for an event and counts its use.
func (s *Server) ruleLocked(stage Stage, addr string) (Rule, bool) {
	for i, r := range s.rules {
		if r.Stage != stage || (r.Times > 0 && s.used[i] >= r.Times) {
			continue
		}
		if stage != StageConnect && !Match(r.Match, addr) {
			continue
		}
		if r.Share > 0 && s.rng.Float64() >= r.Share {
			continue
		}
		s.used[i]++
		return r, true
	}
	return Rule{}, false
}

// decide picks what answers an event at a stage other than data: a
// throttle the client has used up, else a rule. ok is false for the normal
// reply.
func (s *Server) decide(stage Stage, addr, ip string) (rp reply, r Rule, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := minuteOf(s.clk.Now())
	for i, t := range s.thr.rules {
		if t.stage() != stage || (stage == StageRcpt && !Match(t.Match, addr)) {
			continue
		}
		if s.thr.over(i, ip, m) {
			s.stats.Throttled++
			rp = t.reply(addr, ip)
			s.refusedLocked(stage, rp.code)
			s.signalLocked()
			return rp, Rule{}, true
		}
	}
	r, ok = s.ruleLocked(stage, addr)
	if !ok {
		return reply{}, r, false
	}
	if r.Code != 0 && r.Code/100 != 2 && !r.Drop {
		s.refusedLocked(stage, r.Code)
	}
	return r.reply(addr, ip), r, true
}

func (s *Server) refusedLocked(stage Stage, code int) {
	s.refused[string(stage)+" "+strconv.Itoa(code)]++
}

// dataDecision is what answers a final dot.
type dataDecision struct {
	rule      Rule
	ruled     bool
	throttled bool
	reply     reply // the throttle's refusal
	addr      string
	reserved  []int // throttles that counted this message
	minute    int64
}

// decideData decides the reply to a transaction before its body is read
// (a rule may cut DATA short): a used-up throttle, else the first data rule
// matched by a recipient in RCPT order. A message that stays within its
// throttles is counted against them now, so concurrent sessions cannot
// overrun a limit; release takes it back if the message is not accepted.
func (s *Server) decideData(rcpts []string, ip string) dataDecision {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := dataDecision{minute: minuteOf(s.clk.Now())}
	var counts []int
	for i, t := range s.thr.rules {
		for _, rc := range rcpts {
			if !Match(t.Match, rc) {
				continue
			}
			if s.thr.over(i, ip, d.minute) {
				d.throttled, d.reply, d.addr = true, t.reply(rc, ip), rc
				return d
			}
			counts = append(counts, i)
			break
		}
	}
	for _, i := range counts {
		s.thr.reserve(i, ip, d.minute)
	}
	d.reserved = counts
	for _, rc := range rcpts {
		if r, ok := s.ruleLocked(StageData, rc); ok {
			d.rule, d.ruled, d.addr = r, true, rc
			break
		}
	}
	return d
}

func (s *Server) release(d dataDecision, ip string) {
	if len(d.reserved) == 0 {
		return
	}
	s.mu.Lock()
	for _, i := range d.reserved {
		s.thr.release(i, ip, d.minute)
	}
	s.mu.Unlock()
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Refusals counts the scripted refusals (rules and throttles) by stage and
// code, as "rcpt 550" or "data 451".
func (s *Server) Refusals() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]int, len(s.refused))
	for k, v := range s.refused {
		m[k] = v
	}
	return m
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

// Reset forgets the recorded messages and zeroes the counters (the
// throttles keep their windows).
func (s *Server) Reset() {
	s.mu.Lock()
	s.msgs, s.attempts, s.stats, s.refused = nil, nil, Stats{}, map[string]int{}
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
			return errors.New("smtpsink: server closed")
		}
	}
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
	s         *Server
	tls       bool // TLS from the first byte
	tlsConfig *tls.Config
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
		st := &connState{id: s.stats.Sessions, closed: make(chan struct{}), ip: hostOf(c.RemoteAddr())}
		mc := &mxConn{Conn: c, s: s, st: st}
		st.conn = mc
		s.conns[mc] = struct{}{}
		s.signalLocked()
		s.mu.Unlock()
		rp, r, ok := s.decide(StageConnect, "", st.ip)
		var conn net.Conn = mc
		if l.tls {
			conn = tls.Server(mc, l.tlsConfig)
		}
		if ok && (r.Drop || (rp.code != 0 && rp.code/100 != 2)) {
			go s.refuse(conn, st, r, rp)
			continue
		}
		if ok {
			mc.greetDelay = r.Delay
		}
		return conn, nil
	}
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	h, _, _ := net.SplitHostPort(a.String())
	return h
}

// refuse answers a connection with the connect rule's (or throttle's) reply,
// or nothing for a drop, and closes it.
func (s *Server) refuse(c net.Conn, st *connState, r Rule, rp reply) {
	defer c.Close()
	if !s.sleep(st, r.Delay) {
		return
	}
	if r.Drop {
		s.countDrop(false)
		return
	}
	c.SetDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if tc, ok := c.(*tls.Conn); ok {
		if tc.Handshake() != nil {
			return
		}
		s.countTLS()
	}
	io.WriteString(c, rp.line()+"\r\n")
}

func (s *Server) countDrop(midData bool) {
	s.mu.Lock()
	s.stats.Dropped++
	if midData {
		s.stats.DroppedMidData++
	}
	s.signalLocked()
	s.mu.Unlock()
}

func (s *Server) countTLS() {
	s.mu.Lock()
	s.stats.TLS++
	s.signalLocked()
	s.mu.Unlock()
}

// connState is what the server knows about one TCP connection across the
// go-smtp sessions on it (STARTTLS starts a new session).
type connState struct {
	id        int
	ip        string
	conn      *mxConn
	closed    chan struct{}
	closeOnce sync.Once
	tls       bool
	// closeAfter asks for the connection to be closed once the next reply
	// is written: after a 421 (RFC 5321 §3.8).
	closeAfter atomic.Bool
}

// mxConn is the accepted connection as go-smtp sees it: it can hold the
// greeting back, close the connection after a 421, and lets a rule drop the
// connection at any point.
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
	n, err := c.Conn.Write(b)
	if c.st.closeAfter.Load() {
		c.Close()
	}
	return n, err
}

func (c *mxConn) Close() error {
	c.st.closeOnce.Do(func() {
		close(c.st.closed)
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.signalLocked()
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// stateOf finds the connState behind a go-smtp connection, through the TLS
// layer.
func stateOf(c net.Conn) *connState {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if mc, ok := c.(*mxConn); ok {
		return mc.st
	}
	return &connState{closed: make(chan struct{}), ip: hostOf(c.RemoteAddr())}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	st := stateOf(c.Conn())
	if _, isTLS := c.TLSConnectionState(); isTLS && !st.tls {
		st.tls = true
		s.countTLS()
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

var errDropped = errors.New("smtpsink: connection dropped by rule")

// apply carries out a decision for an event: wait, then drop or reply. It
// returns nil for the normal reply.
func (se *session) apply(rp reply, r Rule, ok bool) error {
	if !ok {
		return nil
	}
	if !se.s.sleep(se.st, r.Delay) {
		return errors.New("smtpsink: closed while waiting")
	}
	if r.Drop {
		se.drop(false)
		return errDropped
	}
	if rp.code != 0 && rp.code/100 != 2 {
		if rp.code == 421 {
			se.st.closeAfter.Store(true)
		}
		return rp.err()
	}
	return nil
}

func (se *session) drop(midData bool) {
	se.s.countDrop(midData)
	se.st.conn.Close()
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
	if err := se.apply(se.s.decide(StageMail, addr, se.st.ip)); err != nil {
		return err
	}
	se.from = from
	if opts != nil {
		se.opts = *opts
	}
	se.rcpts = nil
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if err := se.apply(se.s.decide(StageRcpt, to, se.st.ip)); err != nil {
		return err
	}
	se.rcpts = append(se.rcpts, to)
	return nil
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (se *session) Data(r io.Reader) error {
	s := se.s
	_, isTLS := se.c.TLSConnectionState()
	m := Message{
		From:     se.from,
		Rcpts:    append([]string(nil), se.rcpts...),
		Helo:     se.c.Hostname(),
		TLS:      isTLS,
		AuthUser: se.user,
		Body:     string(se.opts.Body),
		UTF8:     se.opts.UTF8,
		Size:     se.opts.Size,
		Session:  se.st.id,
		Client:   se.c.Conn().RemoteAddr().String(),
	}
	d := s.decideData(m.Rcpts, se.st.ip)
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)

	if d.ruled && d.rule.DropAfter > 0 {
		buf.ReadFrom(io.LimitReader(r, d.rule.DropAfter))
		s.release(d, se.st.ip)
		s.sleep(se.st, d.rule.Delay)
		m.Data, m.Dropped, m.Partial, m.At = buf.Bytes(), true, true, time.Now()
		if s.cfg.OnMessage != nil {
			s.cfg.OnMessage(&m)
		}
		se.drop(true)
		return errDropped
	}

	if _, err := buf.ReadFrom(r); err != nil {
		s.release(d, se.st.ip)
		return err // ErrDataTooLarge carries its own 552
	}
	m.Data = buf.Bytes()
	if !s.cfg.Discard {
		m.Data = bytes.Clone(m.Data)
	}

	delay := s.cfg.Latency
	if d.ruled {
		delay += d.rule.Delay
	}
	if !s.sleep(se.st, delay) {
		s.release(d, se.st.ip)
		return errors.New("smtpsink: closed while waiting")
	}
	var rp reply
	var refusal bool
	switch {
	case d.throttled:
		rp, refusal = d.reply, true
	case d.ruled && d.rule.Drop:
		s.release(d, se.st.ip)
		m.Dropped = true
		s.record(&m, StageData, 0, false) // before the close, so a client that sees it finds the record
		se.drop(false)
		return errDropped
	case d.ruled && d.rule.Code != 0 && d.rule.Code/100 != 2:
		rp, refusal = d.rule.reply(d.addr, se.st.ip), true
	}
	if refusal {
		s.release(d, se.st.ip)
		m.Reply = rp.line()
		if rp.code == 421 {
			se.st.closeAfter.Store(true)
		}
		s.record(&m, StageData, rp.code, d.throttled)
		return rp.err()
	}
	s.mu.Lock()
	s.nextID++
	m.ID = fmt.Sprintf("Q%06d", s.nextID)
	s.mu.Unlock()
	ok := reply{code: 250, enhanced: smtp.EnhancedCode{2, 0, 0}, text: "OK: queued as " + m.ID}
	if d.ruled && d.rule.Code/100 == 2 {
		ok = d.rule.reply(d.addr, se.st.ip)
		ok.text += " (" + m.ID + ")"
	}
	m.Reply = ok.line()
	s.record(&m, StageData, 0, false)
	return ok.err()
}

// record counts a transaction, keeps it unless Discard, and shows it to
// OnMessage. code is a refusal's code (0 otherwise).
func (s *Server) record(m *Message, stage Stage, code int, throttled bool) {
	m.At = time.Now()
	if s.cfg.OnMessage != nil {
		s.cfg.OnMessage(m)
	}
	size := len(m.Data)
	if s.cfg.Discard {
		m.Data = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Transactions++
	if code != 0 {
		s.refusedLocked(stage, code)
	}
	if throttled {
		s.stats.Throttled++
	}
	if !s.cfg.Discard {
		s.attempts = append(s.attempts, *m)
	}
	if m.Accepted() {
		s.stats.Messages++
		s.stats.Recipients += len(m.Rcpts)
		s.stats.Bytes += int64(size)
		if !s.cfg.Discard {
			s.msgs = append(s.msgs, *m)
		}
	}
	s.signalLocked()
}

// AuthMechanisms offers PLAIN and LOGIN when the config has users; go-smtp
// advertises them only over TLS unless AuthPlaintext is set.
func (se *session) AuthMechanisms() []string {
	if len(se.s.cfg.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if len(se.s.cfg.Users) == 0 {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	check := func(username, password string) error {
		if want, ok := se.s.cfg.Users[username]; !ok || want != password {
			return smtp.ErrAuthFailed
		}
		se.user = username
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			return check(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

var _ smtp.AuthSession = (*session)(nil)

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): obsolete but still what many applications'
// SMTP libraries use by default. go-sasl has only the client side.
type loginServer struct {
	auth     func(username, password string) error
	state    int
	username string
}

func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.state {
	case 0:
		if len(response) > 0 { // an initial response carries the user name
			l.username, l.state = string(response), 2
			return []byte("Password:"), false, nil
		}
		l.state = 1
		return []byte("Username:"), false, nil
	case 1:
		l.username, l.state = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.auth(l.username, string(response))
	}
	return nil, false, errors.New("unexpected client response")
}

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
