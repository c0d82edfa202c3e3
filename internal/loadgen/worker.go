package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// shard holds counters for a group of workers. Workers share a few shards
// rather than owning one each, so thousands of connections do not mean
// thousands of histograms.
type shard struct {
	mu sync.Mutex
	stats
}

type stats struct {
	messages, accepted, failed int
	rcptOK, rcptRefused        int
	bytes                      int64
	conns, tlsConns            int
	errors                     map[string]int
	lat                        hist
}

func (s *stats) add(o *stats) {
	s.messages += o.messages
	s.accepted += o.accepted
	s.failed += o.failed
	s.rcptOK += o.rcptOK
	s.rcptRefused += o.rcptRefused
	s.bytes += o.bytes
	s.conns += o.conns
	s.tlsConns += o.tlsConns
	for k, v := range o.errors {
		if s.errors == nil {
			s.errors = map[string]int{}
		}
		s.errors[k] += v
	}
	s.lat.merge(&o.lat)
}

// worker is one connection's loop.
type worker struct {
	r     *run
	sh    *shard
	c     *smtp.Client
	conn  *countConn
	sent  int // messages on this connection
	hdr   []byte
	rcpts []string
	ok    []string
}

func newWorker(r *run, i int) *worker {
	return &worker{r: r, sh: r.shards[i%len(r.shards)], hdr: make([]byte, 0, 512)}
}

func (w *worker) loop(ctx context.Context) {
	defer w.close(true)
	for {
		seq, ok := w.r.take(ctx)
		if !ok {
			return
		}
		w.one(seq)
	}
}

// one sends message seq.
func (w *worker) one(seq int) {
	cfg := &w.r.cfg
	if w.c != nil && cfg.PerConn > 0 && w.sent >= cfg.PerConn {
		w.close(true)
	}
	if w.c == nil {
		if stage, err := w.dial(); err != nil {
			w.fail(stage, err)
			return
		}
	}
	w.sent++
	w.rcpts = w.rcpts[:0]
	for j := range cfg.Rcpts {
		w.rcpts = append(w.rcpts, cfg.rcpt(seq*cfg.Rcpts+j))
	}
	if err := w.c.Mail(cfg.From, nil); err != nil {
		w.fail("MAIL", err)
		return
	}
	w.ok = w.ok[:0]
	var refused []string
	for _, to := range w.rcpts {
		err := w.c.Rcpt(to, nil)
		if err == nil {
			w.ok = append(w.ok, to)
			continue
		}
		if connGone(err) {
			w.fail("RCPT", err)
			return
		}
		refused = append(refused, errKey("RCPT", err))
	}
	if len(refused) > 0 {
		w.sh.mu.Lock()
		w.sh.rcptRefused += len(refused)
		for _, k := range refused {
			w.sh.count(k)
		}
		if len(w.ok) == 0 {
			w.sh.messages++
			w.sh.failed++
		}
		w.sh.mu.Unlock()
	}
	if len(w.ok) == 0 {
		if err := w.c.Reset(); err != nil {
			w.close(false)
		}
		return
	}
	wc, err := w.c.Data()
	if err != nil {
		w.fail("DATA", err)
		return
	}
	w.hdr = w.r.appendHeader(w.hdr[:0], seq, w.rcpts[0])
	wc.Write(w.hdr)
	wc.Write(w.r.body)
	t0 := time.Now()
	resp, err := wc.CloseWithResponse()
	lat := time.Since(t0)
	if err != nil {
		w.fail("DOT", err)
		return
	}
	w.sh.mu.Lock()
	w.sh.messages++
	w.sh.accepted++
	w.sh.rcptOK += len(w.ok)
	w.sh.bytes += int64(len(w.hdr) + len(w.r.body))
	w.sh.lat.add(lat)
	w.sh.mu.Unlock()
	if w.r.ack != nil {
		w.r.logAck(w.r.appendMessageID(nil, seq), "250 "+resp.StatusText, w.ok)
	}
}

func (sh *shard) count(key string) {
	if sh.errors == nil {
		sh.errors = map[string]int{}
	}
	sh.errors[key]++
}

// fail counts message failure at a stage, and drops the connection when the
// error left it unusable.
func (w *worker) fail(stage string, err error) {
	w.sh.mu.Lock()
	w.sh.messages++
	w.sh.failed++
	w.sh.count(errKey(stage, err))
	w.sh.mu.Unlock()
	if w.c != nil && connGone(err) {
		w.close(false)
	}
}

func isReply(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se)
}

// connGone reports whether err leaves the connection unusable: anything
// but an SMTP reply, or a 421 (the server is closing it).
func connGone(err error) bool {
	var se *smtp.SMTPError
	return !errors.As(err, &se) || se.Code == 421
}

func (r *run) logAck(msgID []byte, reply string, rcpts []string) {
	e := AckEntry{MessageID: string(msgID), QueueID: QueueID(reply), Reply: reply, Rcpts: rcpts, At: time.Now().UTC()}
	r.ackMu.Lock()
	r.ackEnc.Encode(e) // one line, with a newline
	r.ackMu.Unlock()
}

// QueueID finds the queue id in a 250 reply such as "250 2.0.0 OK: queued
// as 01HX..." (kiln's and Postfix's wording); "" when there is none.
func QueueID(reply string) string {
	i := strings.Index(strings.ToLower(reply), "queued as ")
	if i < 0 {
		return ""
	}
	f := strings.Fields(reply[i+len("queued as "):])
	if len(f) == 0 {
		return ""
	}
	return strings.Trim(f[0], "<>[]().,;")
}

// dial opens a connection and gets it ready for MAIL: greeting, EHLO,
// STARTTLS and AUTH as configured. It returns the stage that failed.
func (w *worker) dial() (string, error) {
	cfg := &w.r.cfg
	d := net.Dialer{Timeout: cfg.Timeout}
	raw, err := d.Dial("tcp", cfg.Addr)
	if err != nil {
		return "CONNECT", err
	}
	w.conn = &countConn{Conn: raw}
	var conn net.Conn = w.conn
	if cfg.TLS == TLSImplicit {
		tc := tls.Client(w.conn, w.r.tlsConf)
		tc.SetDeadline(time.Now().Add(cfg.Timeout))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return "TLS", err
		}
		tc.SetDeadline(time.Time{})
		w.conn.written.Store(0) // count from the first command
		conn = tc
	}
	var c *smtp.Client
	if cfg.TLS == TLSStartTLS {
		// go-smtp says "EHLO localhost" before STARTTLS and our name only
		// inside TLS; a submission server does not mind.
		c, err = smtp.NewClientStartTLS(conn, w.r.tlsConf)
		if err != nil {
			raw.Close()
			if w.conn.written.Load() == 0 {
				return "CONNECT", err
			}
			if strings.Contains(err.Error(), "doesn't support STARTTLS") {
				err = errNotOffered
			}
			return "STARTTLS", err
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout, c.SubmissionTimeout = cfg.Timeout, cfg.Timeout
	w.c = c
	before := w.conn.written.Load()
	if err := c.Hello(cfg.Helo); err != nil {
		stage := "EHLO"
		switch {
		case before == 0 && w.conn.written.Load() == 0:
			stage = "CONNECT" // nothing sent: the greeting itself was the refusal
		case cfg.TLS == TLSStartTLS && !isReply(err):
			stage = "STARTTLS" // the handshake runs at the first write after STARTTLS
		}
		w.close(false)
		return stage, err
	}
	if cfg.Auth != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			w.close(true)
			return "AUTH", errNotOffered
		}
		var a sasl.Client
		if cfg.Auth == "login" {
			a = sasl.NewLoginClient(cfg.User, cfg.Password)
		} else {
			a = sasl.NewPlainClient("", cfg.User, cfg.Password)
		}
		if err := c.Auth(a); err != nil {
			w.close(!connGone(err))
			return "AUTH", err
		}
	}
	w.sh.mu.Lock()
	w.sh.conns++
	if cfg.TLS != TLSNone {
		w.sh.tlsConns++
	}
	w.sh.mu.Unlock()
	w.sent = 0
	return "", nil
}

var errNotOffered = errors.New("not offered")

// close ends the connection, with QUIT when polite.
func (w *worker) close(polite bool) {
	if w.c == nil {
		return
	}
	if polite {
		if w.c.Quit() == nil {
			w.c, w.conn = nil, nil
			return
		}
	}
	w.c.Close()
	w.c, w.conn = nil, nil
}

// countConn counts the bytes written, so a failed Hello can tell a refused
// greeting (nothing sent yet) from a refused EHLO.
type countConn struct {
	net.Conn
	written atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// errKey names a failure for the error counts: the stage, then the reply
// code and enhanced code ("RCPT 550 5.1.1"), or what happened to the
// connection ("DOT connection lost").
func errKey(stage string, err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		e := se.EnhancedCode
		if e == (smtp.EnhancedCode{}) || e == smtp.NoEnhancedCode {
			return fmt.Sprintf("%s %d", stage, se.Code)
		}
		return fmt.Sprintf("%s %d %d.%d.%d", stage, se.Code, e[0], e[1], e[2])
	}
	return stage + " " + netClass(err)
}

func netClass(err error) string {
	var ne net.Error
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	switch {
	case errors.Is(err, errNotOffered):
		return "not offered"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &unknown):
		return "TLS: certificate signed by an unknown authority"
	case errors.As(err, &hostErr):
		return "TLS: certificate is not for this host"
	case errors.As(err, &invalid):
		return "TLS: certificate invalid"
	case errors.As(err, &alert):
		return "TLS: alert " + alert.Error()
	case errors.As(err, &rec):
		return "TLS: the server did not speak TLS"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "connection lost"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return "error: " + s
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
