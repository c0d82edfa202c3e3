// Package fakemx provides fake mail exchangers for tests: real SMTP servers
// (go-smtp) on loopback whose replies are scripted, and which record every
// message they receive byte for byte. Delivery tests point kiln at them.
//
// The engine is internal/smtpsink (which "kiln sink" also runs); this
// package adds what only tests need: Start, which stops the server when the
// test ends, WaitMessages, the ConventionRules script, and Raw servers for
// peers no SMTP library would ever be.
//
//	mx := fakemx.Start(t, fakemx.Config{Rules: fakemx.ConventionRules()})
//	... deliver to mx.Addr() ...
//	msgs := mx.WaitMessages(t, 2)
//
// STARTTLS is on by default because most real exchangers offer it, so the
// common path of kiln's client (upgrade, then EHLO again) is the one every
// test exercises; TLSOff and TLSBroken give the other two cases.
//
// For peers that no SMTP server library would ever be (a greeting that never
// comes, garbage replies, a server that accepts TCP and then says nothing),
// use StartRaw.
package fakemx

import (
	"context"
	"testing"
	"time"

	"kiln/internal/smtpsink"
)

// The script and the records are the engine's own types.
type (
	Config  = smtpsink.Config
	Rule    = smtpsink.Rule
	Stage   = smtpsink.Stage
	TLSMode = smtpsink.TLSMode
	Message = smtpsink.Message
	Stats   = smtpsink.Stats
)

const (
	StageConnect = smtpsink.StageConnect
	StageMail    = smtpsink.StageMail
	StageRcpt    = smtpsink.StageRcpt
	StageData    = smtpsink.StageData

	TLSOn     = smtpsink.TLSOn
	TLSOff    = smtpsink.TLSOff
	TLSBroken = smtpsink.TLSBroken
)

// Server is a running fake MX: the engine's server plus test helpers.
type Server struct {
	*smtpsink.Server
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
	if cfg.Domain == "" {
		cfg.Domain = "mx.fakemx.test"
	}
	s, err := smtpsink.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{s}, nil
}

// ValidateRules checks every rule and names the first bad one by position.
func ValidateRules(rules []Rule) error { return smtpsink.ValidateRules(rules) }

// CountBareCRLF counts bare CR and bare LF bytes in b.
func CountBareCRLF(b []byte) int { return smtpsink.CountBareCRLF(b) }

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
