package mta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"kiln/events"
	"kiln/policy"
	"kiln/policy/suppress"
	"kiln/warmup"
)

// The bounce listener takes reports sent back to kiln's VERP return paths:
// delivery status notifications, complaint (ARF) reports, auto-replies. It
// accepts a recipient only when its address is a valid token (so a forged
// report is refused at RCPT and can suppress nobody), relays nothing, and
// answers 250 to every report it read, whether or not it understood it, so
// no reporting MTA sends a bounce of the bounce.

var (
	errNoBounceAddress = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such bounce address"}
	errBounceRelay     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "This server only takes bounce reports for its own addresses"}
)

type bounceBackend struct{ s *Server }

func (b *bounceBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &bounceSession{s: b.s, client: remoteIP(c.Conn()).String()}, nil
}

type bounceSession struct {
	s      *Server
	client string
	tokens []verpToken
	unsubs []verpToken
}

func (b *bounceSession) Mail(from string, opts *smtp.MailOptions) error { return nil }

func (b *bounceSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if b.s.verp == nil {
		return errBounceRelay
	}
	if tok, ok := b.s.unsub.parseMail(to); ok {
		// An unsubscribe by mail (the List-Unsubscribe mailto): the
		// address is the request; the body does not matter.
		b.unsubs = append(b.unsubs, tok)
		return nil
	}
	tok, ok := b.s.verp.parse(to)
	if !ok {
		if at := strings.LastIndexByte(to, '@'); at < 0 || !strings.EqualFold(to[at+1:], b.s.verp.domain) {
			return errBounceRelay
		}
		b.s.log.Warn("bounce report for an address kiln did not make: refused", "rcpt", to, "client", b.client)
		return errNoBounceAddress
	}
	b.tokens = append(b.tokens, tok)
	return nil
}

func (b *bounceSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) {
			return smtp.ErrDataTooLarge
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errReadTimeout
		}
		return errQueueFailed
	}
	for _, tok := range b.unsubs {
		st := b.s.recipientOf(tok, &policy.Report{})
		if st.addr != "" {
			b.s.unsubscribe(st.account, st.addr, tok.ID, "unsubscribe by mail (List-Unsubscribe mailto) from "+b.client)
		}
	}
	if len(b.tokens) == 0 {
		return nil
	}
	report, err := b.s.policy.ParseBounce(raw)
	if err != nil {
		b.s.log.Warn("unreadable bounce report accepted and ignored", "client", b.client, "err", err, "bytes", len(raw))
		return nil
	}
	for _, tok := range b.tokens {
		b.s.lateReport(tok, report)
	}
	return nil
}

func (b *bounceSession) Reset()        { b.tokens, b.unsubs = b.tokens[:0], b.unsubs[:0] }
func (b *bounceSession) Logout() error { return nil }

// sentTo is what kiln knows of the recipient a token names.
type sentTo struct {
	addr, account, egress, site string
}

// recipientOf finds the recipient a token names: in the queue if the
// message is still there, else in the event history.
func (srv *Server) recipientOf(tok verpToken, report *policy.Report) sentTo {
	if m, err := srv.store.Get(tok.ID); err == nil {
		for _, r := range m.Rcpts {
			if rcptHash(r.Addr) == tok.RcptHash {
				return sentTo{addr: r.Addr, account: m.Account}
			}
		}
	}
	find := func() sentTo {
		evs, err := srv.events.ByMessage(context.Background(), tok.ID)
		if err != nil {
			return sentTo{}
		}
		var found sentTo
		for _, e := range evs {
			if e.Recipient != "" && rcptHash(e.Recipient) == tok.RcptHash {
				found = sentTo{addr: e.Recipient, account: e.Account, egress: e.Egress, site: e.Site}
			}
		}
		return found
	}
	st := find()
	if st.addr == "" {
		// The delivery's events may still be in the store's buffer.
		srv.events.Flush()
		st = find()
	}
	if st.addr == "" {
		// Past the event history: trust the report's recipient if it is
		// the one the token names.
		for _, b := range report.Bounces {
			if rcptHash(b.Recipient) == tok.RcptHash {
				st.addr = b.Recipient
			}
		}
	}
	return st
}

// lateReport acts on a report that came back to one return path.
func (srv *Server) lateReport(tok verpToken, report *policy.Report) {
	now := srv.clk.Now()
	if report.Kind == "autoreply" {
		srv.log.Debug("auto-reply to a return path ignored", "id", tok.ID)
		return
	}
	st := srv.recipientOf(tok, report)
	if st.addr == "" {
		srv.log.Warn("bounce report for a recipient kiln no longer knows", "id", tok.ID)
		return
	}
	// The row about our recipient; a report that lists others (a DSN for
	// several recipients) is about them too, but the token speaks for one.
	var row *policy.Bounce
	for i := range report.Bounces {
		if strings.EqualFold(report.Bounces[i].Recipient, st.addr) || rcptHash(report.Bounces[i].Recipient) == tok.RcptHash {
			row = &report.Bounces[i]
		}
	}
	if row == nil && len(report.Bounces) == 1 {
		row = &report.Bounces[0]
	}
	if row == nil {
		srv.log.Info("bounce report without a row for its recipient ignored", "id", tok.ID, "kind", report.Kind)
		return
	}
	d := row.Decision()
	if d.Action == policy.ActionDelivered && d.Signal != policy.SignalComplaint {
		return // a success report (Action: delivered/relayed/expanded)
	}
	typ := events.Bounced
	if d.Signal == policy.SignalComplaint {
		typ = events.Complaint
	}
	srv.bus.Emit(events.Event{Time: now, Type: typ, ID: tok.ID, Account: st.account, Recipient: st.addr,
		Reply: row.Diagnostic, Enhanced: row.Status, Reason: d.Reason, Hard: d.Hard, Rule: d.Rule,
		RemoteHost: row.RemoteMTA, Egress: st.egress, Site: st.site,
		Detail: fmt.Sprintf("late %s report (%s)", report.Kind, report.Format)})
	if res, ok := suppress.BounceResult(st.account, tok.ID, *row); ok {
		res.Address = st.addr
		srv.recordResult(res, now)
	}
	if d.Signal == policy.SignalComplaint && st.egress != "" && st.site != "" && srv.warm != nil {
		srv.warm.Observe(st.egress, st.site, warmup.SignalComplaint, now)
	}
}

// serveBounce starts the bounce listeners.
func (srv *Server) serveBounce(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("bounce listen %s: %w", addr, err)
	}
	s := smtp.NewServer(&bounceBackend{s: srv})
	s.Domain = srv.cfg.Hostname
	s.MaxMessageBytes = int64(srv.cfg.Bounce.MaxSize)
	s.MaxRecipients = 100
	s.ReadTimeout = 2 * time.Minute
	s.WriteTimeout = time.Minute
	s.TLSConfig = srv.tlsConfig
	s.ErrorLog = slogPrinter{srv.log}
	l := newLimitListener(ln, 500, 50, 10*time.Minute)
	srv.smtpSrvs = append(srv.smtpSrvs, s)
	srv.listeners = append(srv.listeners, ln)
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := s.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !srv.stopping.Load() {
			srv.log.Error("bounce listener stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}
