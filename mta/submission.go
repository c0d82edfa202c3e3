package mta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"kiln/dkim"
	"kiln/events"
	"kiln/policy/suppress"
	"kiln/queue"
)

// Replies kiln gives submission clients. Each carries a code and an enhanced
// code of kiln's choosing (never Go's error text).
var (
	errAuthRequired   = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	errRelayDenied    = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relay access denied: authenticate first"}
	errEncryptionReq  = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for authentication: use STARTTLS"}
	errAuthInvalid    = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errAuthTooMany    = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentication attempts, try again later"}
	errBadSender      = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Sender address is not a valid address"}
	errBadRecipient   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Recipient address is not a valid address"}
	errNullSender     = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "This account may not send with a null sender"}
	errBareCRReply    = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: it contains a bare CR or a NUL byte (only CRLF may end a line)"}
	errNoFrom         = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: it has no From header (RFC 5322 section 3.6)"}
	errManyFrom       = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: it has more than one From header"}
	errBadFrom        = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message refused: the From header is not a single valid address"}
	errLineTooLong    = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	errDiskFull       = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	errQueueFailed    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errShuttingDown   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	errReadTimeout    = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout reading the message"}
	errNoValidRcpts   = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"}
	errSenderRequired = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL first"}
)

func senderDomainDenied(dom string) error {
	return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: fmt.Sprintf("This account may not send from %s", dom)}
}

// submission is the go-smtp backend of the submission listeners.
type submission struct {
	s *Server
}

func (b *submission) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ip := remoteIP(c.Conn())
	_, isTLS := c.TLSConnectionState()
	return &session{
		s:       b.s,
		conn:    c,
		ip:      ip,
		trusted: b.s.cfg.Submission.Trusted(ip),
		tls:     isTLS,
	}, nil
}

// session is one client connection's state, from EHLO on. go-smtp makes a new
// one after STARTTLS.
type session struct {
	s       *Server
	conn    *smtp.Conn
	ip      netip.Addr
	trusted bool
	tls     bool
	acct    *account

	from     string
	haveFrom bool
	rcpts    []string
	dropped  []string // suppressed recipients accepted and dropped (rcpt_action "drop")
}

var _ smtp.AuthSession = (*session)(nil)

// AUTH is offered over TLS, or in plaintext to a client on loopback (the
// password never leaves the machine), and only when accounts exist.
func (s *session) authAllowed() bool {
	return len(s.s.accounts.byName) > 0 && (s.tls || s.ip.IsLoopback())
}

func (s *session) AuthMechanisms() []string {
	if !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if len(s.s.accounts.byName) == 0 {
		return nil, smtp.ErrAuthUnsupported
	}
	if !s.authAllowed() {
		return nil, errEncryptionReq
	}
	if s.s.authLimit.blocked(s.ip, s.s.clk.Now()) {
		return nil, errAuthTooMany
	}
	check := func(user, pass string) error {
		acct, ok := s.s.accounts.check(user, pass)
		if !ok {
			n := s.s.authLimit.fail(s.ip, s.s.clk.Now())
			s.s.log.Warn("authentication failed", "client", s.ip, "user", user, "failures", n)
			s.s.metrics.authFailures.Inc()
			// A growing pause before each failure reply slows guessing
			// within a connection as well as across them.
			time.Sleep(time.Duration(min(n, 6)) * 250 * time.Millisecond)
			return errAuthInvalid
		}
		s.acct = acct
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return errAuthInvalid
			}
			return check(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{auth: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// mayRelay: an authenticated account, or a client in a trusted network.
// Nobody else may send anything anywhere (no open relay).
func (s *session) mayRelay() bool { return s.acct != nil || s.trusted }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.s.draining() {
		return errShuttingDown
	}
	if !s.mayRelay() {
		return errAuthRequired
	}
	if from != "" && !validAddress(from) {
		return errBadSender
	}
	if s.acct != nil {
		if from == "" {
			return errNullSender
		}
		if dom := domainOf(from); !inDomains(dom, s.acct.domains) {
			return senderDomainDenied(dom)
		}
	}
	s.from, s.haveFrom = from, true
	s.rcpts = s.rcpts[:0]
	s.dropped = s.dropped[:0]
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.haveFrom {
		return errSenderRequired
	}
	if !s.mayRelay() {
		return errRelayDenied
	}
	if !validAddress(to) {
		return errBadRecipient
	}
	account := ""
	if s.acct != nil {
		account = s.acct.name
		if s.acct.checkDomains {
			if err := s.s.checkDomain(domainOf(to)); err != nil {
				return err
			}
		}
	}
	if e, ok := s.s.suppressedFor(account, to); ok {
		if s.s.cfg.Suppression.RcptAction == suppress.RcptDrop {
			s.dropped = append(s.dropped, to)
			return nil
		}
		code, enh, text := suppress.RcptReply(e)
		return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enh), Message: text}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func (s *session) Data(r io.Reader) error {
	if !s.haveFrom {
		return errSenderRequired
	}
	if len(s.rcpts) == 0 && len(s.dropped) == 0 {
		return errNoValidRcpts
	}
	bp := bodyPool.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 1<<20 {
			bodyPool.Put(bp)
		}
	}()
	raw, err := readAll(r, (*bp)[:0])
	*bp = raw
	if err != nil {
		var ne net.Error
		switch {
		case errors.Is(err, smtp.ErrDataTooLarge):
			return smtp.ErrDataTooLarge
		case errors.Is(err, smtp.ErrTooLongLine):
			return errLineTooLong
		case errors.As(err, &ne) && ne.Timeout():
			return errReadTimeout
		}
		return errQueueFailed
	}
	data, err := normalizeData(raw)
	if err != nil {
		s.s.metrics.refusedSmuggling.Inc()
		return errBareCRReply
	}
	hdr := scanHeader(data)
	switch {
	case len(hdr.from) == 0:
		return errNoFrom
	case len(hdr.from) > 1:
		return errManyFrom
	}
	if s.acct != nil {
		dom, err := fromDomain(hdr.from[0])
		if err != nil {
			return errBadFrom
		}
		if !inDomains(dom, s.acct.domains) {
			return senderDomainDenied(dom)
		}
	}
	id, allDropped, err := s.s.accept(s.submitted(hdr, data))
	if err != nil {
		return err
	}
	if allDropped {
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: accepted as " + id + "; every recipient is suppressed, nothing will be sent"}
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK: queued as " + id}
}

// submitted describes the message for Server.accept.
func (s *session) submitted(hdr headerInfo, data []byte) *incoming {
	in := &incoming{
		from:    s.from,
		rcpts:   append([]string(nil), s.rcpts...),
		dropped: append([]string(nil), s.dropped...),
		data:    data,
		hdr:     hdr,
		client:  s.ip,
		helo:    s.conn.Hostname(),
		tls:     s.tls,
		account: s.acct,
	}
	return in
}

func (s *session) Reset() {
	s.from, s.haveFrom = "", false
	s.rcpts = s.rcpts[:0]
	s.dropped = s.dropped[:0]
}

func (s *session) Logout() error { return nil }

// readAll reads r into buf, growing it.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// incoming is a message that passed the session's checks.
type incoming struct {
	from    string
	rcpts   []string
	dropped []string
	data    []byte
	hdr     headerInfo
	client  netip.Addr
	helo    string
	tls     bool
	account *account
	// Set by the HTTP API.
	tags     []string
	metadata map[string]string
	priority int
}

// accept adds kiln's headers, stores the message durably and hands it to the
// scheduler, and returns its queue id; allDropped says every recipient was
// suppressed and dropped (nothing was queued). Its error is the SMTP reply.
func (srv *Server) accept(in *incoming) (id string, allDropped bool, err error) {
	now := srv.clk.Now()
	id = srv.store.NewID()
	var head bytes.Buffer
	msgID := in.hdr.messageID
	if msgID == "" {
		msgID = "<" + id + "@" + srv.cfg.Hostname + ">"
		head.WriteString("Message-ID: " + msgID + "\r\n")
	}
	if !in.hdr.hasDate {
		head.WriteString("Date: " + now.Format(rfc5322Date) + "\r\n")
	}
	if in.account != nil && in.account.unsubscribe && srv.unsub != nil && len(in.rcpts) == 1 && !in.hdr.hasListUnsubscribe {
		head.WriteString(srv.unsub.headers(in.account.name, in.rcpts[0], id))
	}
	// Sign once, here, before the 250: the signature covers the Message-ID
	// and Date kiln may have added, and is stored with the message so no
	// delivery attempt signs again. The Received field goes on top
	// afterwards; it is not signed (trace fields change on every hop).
	signed := make([]byte, 0, head.Len()+len(in.data))
	signed = append(append(signed, head.Bytes()...), in.data...)
	sig, unsigned, err := srv.sign(in, signed, now)
	if err != nil {
		return "", false, err
	}
	var trace bytes.Buffer
	srv.writeReceived(&trace, in, id, now)
	body := make([]byte, 0, len(sig)+trace.Len()+len(signed))
	body = append(append(append(body, sig...), trace.Bytes()...), signed...)

	m := &queue.Message{
		ID:        id,
		From:      in.from,
		MessageID: msgID,
		Client:    in.client.String(),
		Tags:      in.tags,
		Metadata:  in.metadata,
		Priority:  in.priority,
		Notices:   true,
	}
	if in.account != nil {
		m.Account = in.account.name
		m.Notices = in.account.notices
		m.Pool = in.account.pool
	}
	for _, r := range in.rcpts {
		m.Rcpts = append(m.Rcpts, queue.Rcpt{Addr: r})
	}
	if len(in.rcpts) == 0 {
		// Every recipient was suppressed and dropped: nothing to queue.
		srv.emitDroppedAtSubmission(m, in.dropped, now)
		return id, true, nil
	}
	// When the scheduler has room, the message goes straight to it,
	// already leased, so it never waits for a scan of the index.
	reserved := srv.sched.reserve()
	if reserved {
		m.Leased = true
		m.Due = now.Add(leaseTTL)
	}
	if err := srv.store.Enqueue(context.Background(), m, body); err != nil {
		if reserved {
			srv.sched.unreserve()
		}
		if errors.Is(err, queue.ErrDiskFull) {
			srv.log.Warn("refusing mail: disk nearly full", "err", err)
			return "", false, errDiskFull
		}
		srv.log.Error("queueing failed", "err", err)
		return "", false, errQueueFailed
	}
	srv.metrics.received.Inc()
	srv.bus.Emit(events.Event{
		Time: now, Type: events.Received, ID: id, MessageID: msgID, Account: m.Account,
		From: in.from, Client: m.Client, Size: int64(len(body)), Tags: in.tags, Metadata: in.metadata,
		Detail: unsigned,
	})
	srv.emitDroppedAtSubmission(m, in.dropped, now)
	if reserved {
		srv.sched.submit(m)
	} else {
		srv.sched.poke()
	}
	return id, false, nil
}

// checkDomain refuses a recipient domain that provably cannot receive mail,
// with the reply its MX lookup would give at delivery. Domains routed to a
// smarthost are not looked up; a DNS failure, or a lookup that takes too
// long, accepts the recipient (delivery will find out).
func (srv *Server) checkDomain(domain string) error {
	if srv.router.static(domain) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, fail := srv.router.lookup(ctx, domain)
	if fail == nil || fail.Code < 500 {
		return nil
	}
	enh := smtp.EnhancedCode{5, 1, 2}
	if p := strings.Split(fail.Enhanced, "."); len(p) == 3 {
		a, _ := strconv.Atoi(p[0])
		b, _ := strconv.Atoi(p[1])
		c, _ := strconv.Atoi(p[2])
		enh = smtp.EnhancedCode{a, b, c}
	}
	return &smtp.SMTPError{Code: fail.Code, EnhancedCode: enh, Message: "Recipient domain " + domain + " cannot receive mail: " + fail.Line}
}

// emitDroppedAtSubmission reports the suppressed recipients accepted and
// dropped at RCPT time.
func (srv *Server) emitDroppedAtSubmission(m *queue.Message, dropped []string, now time.Time) {
	for _, r := range dropped {
		e, _ := srv.suppressedFor(m.Account, r)
		srv.bus.Emit(events.Event{Time: now, Type: events.Dropped, ID: m.ID, MessageID: m.MessageID, Account: m.Account,
			From: m.From, Recipient: r, Reason: "suppressed", Rule: e.Rule, Detail: "suppressed (" + e.Reason + "): not sent",
			Tags: m.Tags, Metadata: m.Metadata})
		srv.metrics.outcomes.WithLabelValues(events.Dropped, "suppressed").Inc()
	}
}

var errUnaligned = func(dom string) error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Message refused: no DKIM key is configured for the From domain " + dom + " or a parent of it"}
}

var errUnsignable = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
	Message: "Message refused: its header cannot be signed safely (a line that is not a header field)"}

// sign returns the DKIM-Signature fields for msg under the account's policy.
// unsigned is a warning for the received event when the message goes out
// without an aligned signature; a non-nil error is the SMTP refusal.
func (srv *Server) sign(in *incoming, msg []byte, now time.Time) (sig []byte, unsigned string, err error) {
	if srv.signer == nil || len(srv.cfg.DKIM) == 0 {
		return nil, "", nil
	}
	dom, ferr := fromDomain(in.hdr.from[0])
	if ferr != nil {
		return nil, "", errBadFrom
	}
	if _, ok := srv.signer.Aligned(dom); ok {
		sig, err = srv.signer.Sign(msg, dom, now)
	} else {
		policy := ""
		if in.account != nil {
			policy = in.account.dkimUnaligned
		}
		switch policy {
		case "refuse":
			return nil, "", errUnaligned(dom)
		case "default_domain":
			sig, err = srv.signer.SignAs(in.account.dkimDomain, msg, now)
			unsigned = "DKIM: no key aligns with " + dom + "; signed as " + in.account.dkimDomain
		default:
			// Unsigned by the From domain; the operator's signature, if
			// configured, still goes on.
			sig, err = srv.signer.SignOperator(msg, now)
			unsigned = "DKIM: no key aligns with " + dom + "; sent without an aligned signature"
		}
	}
	var me *dkim.MessageError
	if errors.As(err, &me) {
		return nil, "", errUnsignable
	}
	if err != nil {
		srv.log.Error("DKIM signing failed", "from_domain", dom, "err", err)
		return nil, "", errQueueFailed
	}
	return sig, unsigned, nil
}

const rfc5322Date = "Mon, 02 Jan 2006 15:04:05 -0700"

// writeReceived writes kiln's trace field (RFC 5321 §4.4), with the protocol
// keyword of RFC 3848 (ESMTP, ESMTPS, ESMTPA, ESMTPSA).
func (srv *Server) writeReceived(w *bytes.Buffer, in *incoming, id string, now time.Time) {
	with := "ESMTP"
	if in.tls {
		with += "S"
	}
	if in.account != nil {
		with += "A"
	}
	if in.helo == "" {
		with = "HTTP"
	}
	helo := sanitizeHeaderText(in.helo)
	if helo == "" {
		helo = "api"
	}
	fmt.Fprintf(w, "Received: from %s ([%s])\r\n\tby %s (kiln) with %s id %s", helo, in.client, srv.cfg.Hostname, with, id)
	if len(in.rcpts) == 1 {
		fmt.Fprintf(w, "\r\n\tfor <%s>", sanitizeHeaderText(in.rcpts[0]))
	}
	fmt.Fprintf(w, "; %s\r\n", now.Format(rfc5322Date))
}

// sanitizeHeaderText keeps printable ASCII only, so a client's EHLO name
// cannot break the header it is copied into.
func sanitizeHeaderText(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < 255; i++ {
		if c := s[i]; c > 32 && c < 127 && c != '(' && c != ')' && c != ';' {
			b = append(b, c)
		}
	}
	return string(b)
}
