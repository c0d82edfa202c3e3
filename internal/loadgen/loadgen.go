// Package loadgen is kiln's SMTP load generator ("kiln loadgen"): it injects
// messages into an SMTP server over many connections, at a given rate or as
// fast as the server takes them, and measures what an operator wants to know
// about acceptance: messages per second, the replies that were not 250, and
// the latency of the 250 that answers each final dot, the moment a durable
// MTA has written and synced the message. Each acknowledged message can be
// recorded (its Message-ID and the queue id from the 250 reply) so that a
// crash test can reconcile what was acknowledged with what arrived.
//
// The wire is go-smtp's client rather than kiln's own mta/smtpclient. Both
// were weighed: smtpclient is the leaner of the two (it pipelines, and in a
// loopback benchmark against a do-nothing server it spent about 40% of the
// CPU per message go-smtp's client did), but it is an outbound MTA's client
// and deliberately lacks what an injector must do: it refuses to send AUTH
// without TLS (kiln's submission server accepts AUTH in plaintext from
// loopback clients), offers neither AUTH LOGIN nor implicit TLS (RFC 8314),
// and times a whole transaction, where the figure wanted here is the wait
// after the final dot alone. go-smtp's client does all of that. To keep the
// generator from being the bottleneck, message bodies are built once and
// shared, each message's header is assembled in a per-connection buffer, and
// latencies go into fixed-size histograms rather than growing slices.
package loadgen

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLSMode says how the generator secures its connections.
type TLSMode string

const (
	TLSNone     TLSMode = "none"     // plaintext
	TLSStartTLS TLSMode = "starttls" // STARTTLS after EHLO (RFC 3207); fails if not offered
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (RFC 8314)
)

// Config describes a run. Zero fields take the defaults noted.
type Config struct {
	// Addr is the server's host:port. Required.
	Addr string
	// Helo is the EHLO name; default "loadgen.invalid".
	Helo string
	TLS  TLSMode // default TLSNone
	// Insecure skips the certificate check; otherwise the server's
	// certificate must verify against RootCAs (nil: the system's roots)
	// for ServerName (default: the host of Addr).
	Insecure   bool
	RootCAs    *x509.CertPool
	ServerName string
	// NoResume turns off TLS session resumption between the generator's
	// own connections (on by default, so one connection per message does
	// not cost two full handshakes each).
	NoResume bool
	// Auth is "plain" or "login" to authenticate as User with Password;
	// "" sends no AUTH.
	Auth           string
	User, Password string

	// Concurrency is the number of connections working at once; default 1.
	Concurrency int
	// Messages is how many messages to send; with Duration, whichever
	// comes first ends the run. Without either, one message.
	Messages int
	Duration time.Duration
	// Rate caps the messages started per second across all connections;
	// 0 sends as fast as the server answers. The schedule is fixed in
	// advance (message i starts at i/Rate seconds), so a server that
	// stalls meets the backlog when it recovers, as it would in life.
	Rate float64
	// PerConn is how many messages a connection carries before the
	// generator says QUIT and opens another; 0 means no limit, 1 a
	// connection per message.
	PerConn int

	// Size is the message size in bytes, header included (about: the
	// header grows with the message number); default 4096.
	Size int
	// Rcpts is the number of recipients per message; default 1.
	Rcpts int
	// Domains are the recipient domains, used in turn; default
	// ["dom1.test"]. Locals are the local parts, used in turn; default
	// ["rcpt"]. With Users > 0 each local part gets a number from 1 to
	// Users, so the recipients are rcpt1@dom1.test, rcpt1@dom2.test, ...
	Domains []string
	Locals  []string
	Users   int
	// FromDomain is the domain of the From header and of the default
	// envelope sender; default "loadgen.test". From is the envelope
	// sender; default "loadgen@" + FromDomain.
	FromDomain string
	From       string

	// Timeout bounds each command and reply; default one minute.
	Timeout time.Duration

	// AckLog, when set, receives one JSON line (AckEntry) per message the
	// server acknowledged. Lines are buffered and written at least every
	// second and at the end of the run.
	AckLog io.Writer
	// Progress, when set, receives a line every Every (default 5s).
	Progress io.Writer
	Every    time.Duration
}

// AckEntry is one line of the acknowledgement log.
type AckEntry struct {
	MessageID string    `json:"message_id"` // the Message-ID header sent
	QueueID   string    `json:"queue_id"`   // from "250 ... queued as ID"; "" if the reply names none
	Reply     string    `json:"reply"`      // the 250 reply line
	Rcpts     []string  `json:"rcpts"`      // the recipients the server accepted
	At        time.Time `json:"at"`
}

// ParseDomains reads the --domains flag: a count N gives dom1.test to
// domN.test; anything else is a comma-separated list of domains.
func ParseDomains(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 1_000_000 {
			return nil, fmt.Errorf("domains %d: want 1 to 1000000, or a list", n)
		}
		out := make([]string, n)
		for i := range out {
			out[i] = "dom" + strconv.Itoa(i+1) + ".test"
		}
		return out, nil
	}
	var out []string
	for _, d := range strings.Split(s, ",") {
		d = strings.TrimSpace(d)
		if d == "" {
			continue
		}
		if strings.ContainsAny(d, "@<> \t\r\n") {
			return nil, fmt.Errorf("domain %q is not a domain", d)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, errors.New("no domains")
	}
	return out, nil
}

func (c *Config) defaults() error {
	if c.Addr == "" {
		return errors.New("no server address")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("server address %q: want host:port", c.Addr)
	}
	switch c.TLS {
	case "":
		c.TLS = TLSNone
	case TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fmt.Errorf("tls %q: want none, starttls or implicit", c.TLS)
	}
	switch strings.ToLower(c.Auth) {
	case "":
	case "plain", "login":
		c.Auth = strings.ToLower(c.Auth)
		if c.User == "" {
			return errors.New("AUTH needs a user")
		}
	default:
		return fmt.Errorf("auth %q: want plain or login", c.Auth)
	}
	if c.Concurrency < 0 || c.Messages < 0 || c.Duration < 0 || c.Rate < 0 || c.PerConn < 0 || c.Size < 0 || c.Rcpts < 0 || c.Users < 0 {
		return errors.New("counts, sizes, rates and durations must not be negative")
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Messages == 0 && c.Duration == 0 {
		c.Messages = 1
	}
	if c.Size == 0 {
		c.Size = 4096
	}
	if c.Rcpts == 0 {
		c.Rcpts = 1
	}
	if len(c.Domains) == 0 {
		c.Domains = []string{"dom1.test"}
	}
	if len(c.Locals) == 0 {
		c.Locals = []string{"rcpt"}
	}
	if c.FromDomain == "" {
		c.FromDomain = "loadgen.test"
	}
	if c.From == "" {
		c.From = "loadgen@" + c.FromDomain
	}
	if c.Helo == "" {
		c.Helo = "loadgen.invalid"
	}
	if c.Timeout == 0 {
		c.Timeout = time.Minute
	}
	if c.Every == 0 {
		c.Every = 5 * time.Second
	}
	for _, s := range append([]string{c.From, c.Helo, c.FromDomain}, append(c.Domains, c.Locals...)...) {
		if strings.ContainsAny(s, "<> \t\r\n") {
			return fmt.Errorf("%q cannot go on an SMTP command line", s)
		}
	}
	return nil
}

// rcpt is the address of recipient k (counting across messages).
func (c *Config) rcpt(k int) string {
	d := len(c.Domains)
	dom := c.Domains[k%d]
	u := k / d
	if c.Users > 0 {
		u %= len(c.Locals) * c.Users
		return c.Locals[u%len(c.Locals)] + strconv.Itoa(u/len(c.Locals)+1) + "@" + dom
	}
	return c.Locals[u%len(c.Locals)] + "@" + dom
}

// run is the shared state of one Run.
type run struct {
	cfg     Config
	tlsConf *tls.Config
	start   time.Time
	stop    time.Time // zero without Duration
	next    atomic.Int64
	body    []byte
	header  string // the fixed part of every header
	runID   string
	shards  []*shard

	ackMu  sync.Mutex
	ack    *bufio.Writer
	ackEnc *json.Encoder
}

// Run sends the messages cfg describes and reports what happened. It
// returns early, with what was done so far, when ctx ends; an error means
// the run could not start (a bad Config).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg}
	var id [4]byte
	rand.Read(id[:])
	r.runID = hex.EncodeToString(id[:])
	if cfg.TLS != TLSNone {
		host, _, _ := net.SplitHostPort(cfg.Addr)
		r.tlsConf = &tls.Config{
			InsecureSkipVerify: cfg.Insecure,
			RootCAs:            cfg.RootCAs,
			ServerName:         cfg.ServerName,
			MinVersion:         tls.VersionTLS12,
		}
		if r.tlsConf.ServerName == "" {
			r.tlsConf.ServerName = host
		}
		if !cfg.NoResume {
			r.tlsConf.ClientSessionCache = tls.NewLRUClientSessionCache(cfg.Concurrency * 2)
		}
	}
	r.buildMessage()
	if cfg.AckLog != nil {
		r.ack = bufio.NewWriterSize(cfg.AckLog, 64<<10)
		r.ackEnc = json.NewEncoder(r.ack)
		r.ackEnc.SetEscapeHTML(false) // keep <message-id@host> readable
	}

	cpu0 := cpuTime()
	r.start = time.Now()
	if cfg.Duration > 0 {
		r.stop = r.start.Add(cfg.Duration)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	r.shards = make([]*shard, min(cfg.Concurrency, 16))
	for i := range r.shards {
		r.shards[i] = &shard{}
	}
	var wg sync.WaitGroup
	for i := range cfg.Concurrency {
		w := newWorker(r, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var progress, flush <-chan time.Time
	if cfg.Progress != nil {
		t := time.NewTicker(cfg.Every)
		defer t.Stop()
		progress = t.C
	}
	if r.ack != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		flush = t.C
	}
	last := snapshot{at: r.start}
	for {
		select {
		case <-progress:
			last = r.progress(last)
		case <-flush:
			r.flushAcks()
		case <-done:
			r.flushAcks()
			rep := r.report(time.Since(r.start), cpuTime()-cpu0)
			return rep, nil
		}
	}
}

func (r *run) flushAcks() {
	if r.ack == nil {
		return
	}
	r.ackMu.Lock()
	r.ack.Flush()
	r.ackMu.Unlock()
}

// take hands out the next message number, after waiting for its slot when
// a rate is set; ok is false when the run is over.
func (r *run) take(ctx context.Context) (int, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	seq := int(r.next.Add(1) - 1)
	if r.cfg.Messages > 0 && seq >= r.cfg.Messages {
		return 0, false
	}
	if r.cfg.Rate > 0 {
		at := r.start.Add(time.Duration(float64(seq) / r.cfg.Rate * float64(time.Second)))
		if !r.stop.IsZero() && !at.Before(r.stop) {
			return 0, false
		}
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return 0, false
			}
		}
	}
	if !r.stop.IsZero() && !time.Now().Before(r.stop) {
		return 0, false
	}
	return seq, true
}

// buildMessage makes the shared body and the fixed part of the header.
func (r *run) buildMessage() {
	c := &r.cfg
	r.header = "Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"From: kiln loadgen <loadgen@" + c.FromDomain + ">\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n"
	// What each message adds: To, Subject and Message-ID lines and the
	// blank line, about 130 bytes with a short address.
	perMsg := len("To: \r\nSubject: kiln loadgen 000000\r\nMessage-ID: <.000000@>\r\n\r\n") +
		len(c.rcpt(0)) + len(r.runID) + len(c.FromDomain)
	n := c.Size - len(r.header) - perMsg
	body := make([]byte, 0, max(n, 0)+78)
	line := 0
	for len(body) < n {
		// 76 characters and CRLF, never starting with a dot.
		l := "loadgen filler " + strconv.Itoa(line) + " "
		for len(l) < 76 {
			l += "abcdefghijklmnopqrstuvwxyz0123456789"
		}
		l = l[:76]
		if rem := n - len(body); rem < 78 {
			l = l[:max(rem-2, 1)]
		}
		body = append(body, l...)
		body = append(body, '\r', '\n')
		line++
	}
	r.body = body
}

// appendHeader appends message seq's header to b.
func (r *run) appendHeader(b []byte, seq int, to string) []byte {
	b = append(b, r.header...)
	b = append(b, "To: <"...)
	b = append(b, to...)
	b = append(b, ">\r\nSubject: kiln loadgen "...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, "\r\nMessage-ID: "...)
	b = r.appendMessageID(b, seq)
	b = append(b, "\r\n\r\n"...)
	return b
}

func (r *run) appendMessageID(b []byte, seq int) []byte {
	b = append(b, '<')
	b = append(b, r.runID...)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '@')
	b = append(b, r.cfg.FromDomain...)
	return append(b, '>')
}
