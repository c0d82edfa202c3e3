package mta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/emersion/go-smtp"

	"kiln/configs"
	"kiln/dkim"
	"kiln/events"
	"kiln/events/stats"
	"kiln/events/store"
	"kiln/events/webhook"
	"kiln/internal/clock"
	"kiln/mta/resolve"
	"kiln/policy"
	"kiln/policy/suppress"
	"kiln/queue"
	"kiln/warmup"
)

// Classifier decides what a reply means (policy.Classifier in production).
type Classifier interface {
	Classify(policy.Reply) policy.Decision
}

// Options are the parts of a Server that tests replace.
type Options struct {
	Clock clock.Clock
	Log   *slog.Logger
	// Wire replaces SMTP over TCP for delivery.
	Wire Wire
	// Lookup replaces DNS for routing.
	Lookup MXLookup
	// Classifier replaces the reply classifier.
	Classifier Classifier
	// MaxActive bounds the messages the scheduler holds in memory.
	MaxActive int
}

// Server is the kiln daemon: submission listeners, queue, scheduler,
// delivery and admin API.
type Server struct {
	cfg        *configs.Config
	log        *slog.Logger
	clk        clock.Clock
	db         *badger.DB
	store      *queue.Store
	bus        *events.Bus
	evlog      *events.Log
	metrics    *metrics
	accounts   *accounts
	authLimit  *authLimiter
	tlsConfig  *tls.Config
	resolver   *resolve.Resolver
	router     *router
	wire       Wire
	classifier Classifier
	policy     *policy.Classifier // the configured rules, also for bounce reports
	suppress   *suppress.List
	breaker    *suppress.Breaker
	verp       *verp
	unsub      *unsubscriber
	unsubHTTP  *http.Server
	signer     *dkim.Signer
	warm       *warmup.Controller
	events     *store.Store
	stats      *stats.Stats
	hooks      *webhook.Dispatcher
	warmActive bool // there are [[egress]] addresses: reservations apply
	egresses   map[string]*Egress
	sched      *scheduler

	defaultEgress *Egress

	ctx       context.Context // ends when the daemon stops delivering
	cancel    context.CancelFunc
	stopping  atomic.Bool
	smtpSrvs  []*smtp.Server
	listeners []net.Listener
	admin     *http.Server
	adminLn   net.Listener
	wg        sync.WaitGroup // the scheduler, maintenance and listeners
	inflight  sync.WaitGroup // workers and other background work of the scheduler
	closeOnce sync.Once
}

// New opens the stores and prepares every listener; Run starts them.
func New(cfg *configs.Config, opts Options) (*Server, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MaxActive <= 0 {
		opts.MaxActive = 20000
	}
	srv := &Server{
		cfg: cfg, log: opts.Log, clk: opts.Clock, bus: &events.Bus{}, metrics: newMetrics(),
		accounts:      newAccounts(cfg.Accounts),
		authLimit:     newAuthLimiter(cfg.Submission.AuthFailures, cfg.Submission.AuthFailureWindow.D()),
		classifier:    opts.Classifier,
		defaultEgress: &Egress{Name: "default", EHLO: cfg.Hostname},
	}
	pc, err := policy.NewClassifier(cfg.Classify)
	if err != nil {
		return nil, fmt.Errorf("classify: %w", err)
	}
	srv.policy = pc
	if srv.classifier == nil {
		srv.classifier = pc
	}
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w", cfg.DataDir, err)
	}
	if srv.signer, err = dkim.NewSigner(cfg.DKIM, cfg.Signing); err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	srv.tlsConfig, err = serverTLS(cfg.Submission.TLSCert, cfg.Submission.TLSKey, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	if srv.db, err = queue.OpenDB(filepath.Join(cfg.DataDir, "db"), srv.log); err != nil {
		return nil, err
	}
	srv.store, err = queue.Open(srv.db, queue.Options{
		Dir: cfg.DataDir, Clock: srv.clk, Log: srv.log,
		MinFreeDisk: int64(cfg.Queue.MinFreeDisk), MaxAge: cfg.Queue.MaxAge.D(),
	})
	if err != nil {
		srv.db.Close()
		return nil, err
	}
	if srv.events, err = store.New(srv.db, store.Options{Clock: srv.clk, Log: srv.log, Retention: cfg.Events.Retention.D()}); err != nil {
		srv.closeStores()
		return nil, fmt.Errorf("event store: %w", err)
	}
	srv.bus.Subscribe(srv.events)

	if srv.hooks, err = webhook.New(srv.db, cfg.Webhooks, webhook.Options{Clock: srv.clk, Log: srv.log}); err != nil {
		srv.closeStores()
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	srv.bus.Subscribe(srv.hooks)
	if srv.suppress, err = suppress.Open(srv.db, srv.clk, cfg.Suppression, srv.log); err != nil {
		srv.closeStores()
		return nil, fmt.Errorf("suppression list: %w", err)
	}
	if srv.breaker, err = suppress.NewBreaker(srv.db, cfg.Suppression.Breaker, srv.log); err != nil {
		srv.closeStores()
		return nil, fmt.Errorf("circuit breaker: %w", err)
	}
	if srv.verp, err = newVERP(cfg.Bounce.Domain, cfg.Bounce.Secret, srv.db); err != nil {
		srv.closeStores()
		return nil, err
	}
	if srv.unsub, err = newUnsubscriber(Unsub{URL: cfg.Unsubscribe.URL, Secret: cfg.Unsubscribe.Secret}, cfg.Bounce.Domain, srv.db); err != nil {
		srv.closeStores()
		return nil, err
	}
	if cfg.Log.Events != "" {
		path := cfg.Log.Events
		if path != "-" && !filepath.IsAbs(path) {
			path = filepath.Join(cfg.DataDir, path)
		}
		if srv.evlog, err = events.OpenLog(path, srv.log); err != nil {
			srv.closeStores()
			return nil, fmt.Errorf("event log: %w", err)
		}
		srv.bus.Subscribe(srv.evlog)
	}
	lookup := opts.Lookup
	if lookup == nil {
		var servers []string
		for _, s := range cfg.DNS.Servers {
			servers = append(servers, string(s))
		}
		srv.resolver, err = resolve.New(resolve.Config{Servers: servers, Timeout: cfg.DNS.Timeout.D(), Clock: srv.clk})
		if err != nil {
			srv.closeStores()
			return nil, fmt.Errorf("dns: %w", err)
		}
		lookup = resolverLookup(srv.resolver)
	}
	srv.router = newRouter(cfg, lookup)
	srv.egresses = egressesOf(cfg)
	srv.warmActive = len(cfg.Egress) > 0
	if srv.warm, err = warmup.New(warmConfig(cfg), srv.db, srv.clk, srv.onWarmupEvent); err != nil {
		srv.closeStores()
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	if srv.stats, err = stats.New(srv.db, stats.Options{Clock: srv.clk, Log: srv.log, Warmup: srv.warm}); err != nil {
		srv.closeStores()
		return nil, fmt.Errorf("statistics: %w", err)
	}
	srv.bus.Subscribe(srv.stats)
	srv.wire = opts.Wire
	if srv.wire == nil {
		srv.wire = newSMTPWire(srv)
	}
	srv.sched = newScheduler(srv, opts.MaxActive)
	return srv, nil
}

// resolverLookup adapts the resolver to the router.
func resolverLookup(r *resolve.Resolver) MXLookup {
	return func(ctx context.Context, domain string) ([]Host, time.Duration, *policy.Reply) {
		hosts, err := r.LookupMX(ctx, domain)
		if err != nil {
			var re *resolve.Error
			rep := policy.Reply{Command: "DNS", Line: "DNS lookup for " + domain + " failed: " + err.Error(), Temporary: true}
			if errors.As(err, &re) {
				rep = re.Reply()
			}
			return nil, 0, &rep
		}
		out := make([]Host, len(hosts))
		for i, h := range hosts {
			out[i] = Host{Name: h.Name, Addrs: h.Addrs}
		}
		// The resolver caches by TTL itself; the scheduler's own cache only
		// saves a trip through it for a burst of mail to one domain.
		return out, 30 * time.Second, nil
	}
}

// Run listens and delivers until ctx ends, then shuts down: it stops
// accepting, lets transactions in progress finish until the deadline, and
// leaves the queue consistent on disk.
func (srv *Server) Run(ctx context.Context, ready func()) error {
	if err := srv.listen(); err != nil {
		srv.closeAll()
		return err
	}
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		srv.sched.run(srv.ctx)
	}()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		srv.maintain(srv.ctx)
	}()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		srv.suppress.Run(srv.ctx)
	}()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := srv.hooks.Run(srv.ctx); err != nil && srv.ctx.Err() == nil {
			srv.log.Error("webhook dispatcher stopped", "err", err)
		}
	}()
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := srv.warm.Run(srv.ctx); err != nil && srv.ctx.Err() == nil {
			srv.log.Error("warm-up controller stopped", "err", err)
		}
	}()
	srv.log.Info("kiln started", "submission", srv.cfg.Submission.Listen, "submission_tls", srv.cfg.Submission.ListenTLS,
		"admin", srv.cfg.Admin.Listen, "data_dir", srv.cfg.DataDir)
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	return srv.Shutdown(30 * time.Second)
}

// listen opens every listener before serving any, so a busy port fails the
// start cleanly.
func (srv *Server) listen() error {
	sub := srv.cfg.Submission
	for _, addr := range sub.Listen {
		if err := srv.serveSMTP(string(addr), false); err != nil {
			return err
		}
	}
	for _, addr := range sub.ListenTLS {
		if err := srv.serveSMTP(string(addr), true); err != nil {
			return err
		}
	}
	if srv.unsub != nil && srv.cfg.Unsubscribe.Listen != "" {
		if err := srv.serveUnsubscribe(string(srv.cfg.Unsubscribe.Listen)); err != nil {
			return err
		}
	}
	for _, addr := range srv.cfg.Bounce.Listen {
		if err := srv.serveBounce(string(addr)); err != nil {
			return err
		}
	}
	return srv.serveAdmin()
}

func (srv *Server) serveSMTP(addr string, implicitTLS bool) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("submission listen %s: %w", addr, err)
	}
	sub := srv.cfg.Submission
	s := smtp.NewServer(&submission{s: srv})
	s.Domain = srv.cfg.Hostname
	s.MaxMessageBytes = int64(sub.MaxMessageSize)
	s.MaxRecipients = sub.MaxRecipients
	s.MaxLineLength = sub.MaxLineLength
	s.ReadTimeout = sub.ReadTimeout.D()
	s.WriteTimeout = sub.WriteTimeout.D()
	s.AllowInsecureAuth = true // kiln decides itself: TLS, or a loopback client
	s.TLSConfig = srv.tlsConfig
	s.EnableSMTPUTF8 = true
	s.ErrorLog = slogPrinter{srv.log}
	var l net.Listener = newLimitListener(ln, sub.MaxConnections, sub.MaxConnectionsPerIP, sub.SessionTimeout.D())
	if implicitTLS {
		l = tls.NewListener(l, srv.tlsConfig)
	}
	srv.smtpSrvs = append(srv.smtpSrvs, s)
	srv.listeners = append(srv.listeners, ln)
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := s.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !srv.stopping.Load() {
			srv.log.Error("submission listener stopped", "addr", addr, "err", err)
		}
	}()
	return nil
}

// draining reports whether new mail should be refused because kiln is
// stopping.
func (srv *Server) draining() bool { return srv.stopping.Load() }

// Shutdown stops accepting mail, waits up to grace for sessions and
// transactions in progress, then stops delivery and closes the stores.
// Everything acknowledged is on disk before it returns; messages in flight
// keep their lease and are retried first at the next start.
func (srv *Server) Shutdown(grace time.Duration) error {
	var err error
	srv.closeOnce.Do(func() {
		srv.stopping.Store(true)
		srv.log.Info("kiln stopping")
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		var wg sync.WaitGroup
		for _, s := range srv.smtpSrvs {
			wg.Add(1)
			go func(s *smtp.Server) {
				defer wg.Done()
				if s.Shutdown(ctx) != nil {
					s.Close()
				}
			}(s)
		}
		// Meanwhile, stop dispatching and let each worker finish the
		// transaction it is in, until the grace period ends.
		srv.sched.do(ctx, srv.sched.stop)
		for {
			var open int
			if srv.sched.do(ctx, func() { open = srv.sched.workers() }) != nil || open == 0 {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		wg.Wait()
		// go-smtp registers a listener only once its Serve runs: close them
		// ourselves in case Shutdown came first.
		for _, l := range srv.listeners {
			l.Close()
		}
		if srv.admin != nil {
			srv.admin.Shutdown(ctx)
		}
		if srv.unsubHTTP != nil {
			srv.unsubHTTP.Shutdown(ctx)
		}
		srv.cancel() // aborts transactions still running, stops the scheduler
		srv.wg.Wait()
		srv.inflight.Wait()
		err = srv.closeStores()
		srv.log.Info("kiln stopped")
	})
	return err
}

func (srv *Server) closeAll() {
	srv.stopping.Store(true)
	for _, s := range srv.smtpSrvs {
		s.Close()
	}
	for _, l := range srv.listeners {
		l.Close()
	}
	if srv.admin != nil {
		srv.admin.Close()
	}
	srv.cancel()
	srv.wg.Wait()
	srv.inflight.Wait()
	srv.closeStores()
}

func (srv *Server) closeStores() error {
	var errs []error
	// Nothing emits any more: flush the event sinks, then the stores.
	if srv.hooks != nil {
		errs = append(errs, srv.hooks.Close())
		srv.hooks = nil
	}
	if srv.stats != nil {
		errs = append(errs, srv.stats.Close())
		srv.stats = nil
	}
	if srv.events != nil {
		errs = append(errs, srv.events.Close())
		srv.events = nil
	}
	if srv.evlog != nil {
		errs = append(errs, srv.evlog.Close())
		srv.evlog = nil
	}
	if srv.warm != nil {
		errs = append(errs, srv.warm.Close())
		srv.warm = nil
	}
	if srv.suppress != nil {
		errs = append(errs, srv.suppress.Close())
		srv.suppress = nil
	}
	if srv.store != nil {
		errs = append(errs, srv.store.Close())
		srv.store = nil
	}
	if srv.db != nil {
		errs = append(errs, srv.db.Close())
		srv.db = nil
	}
	return errors.Join(errs...)
}

// Bus is the event bus (for tests and embedding).
func (srv *Server) Bus() *events.Bus { return srv.bus }

// Store is the queue (for tests and embedding).
func (srv *Server) Store() *queue.Store { return srv.store }

// slogPrinter adapts go-smtp's logger to slog.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if bdatHangUp(msg) {
		p.l.Info("a client hung up during a BDAT chunk; nothing was accepted", "component", "smtp",
			"remote", strings.TrimSuffix(strings.Fields(msg)[2], ":"))
		return
	}
	p.l.Warn(msg, "component", "smtp")
}

// bdatHangUp tells go-smtp's report of a race of its own (v0.25): a session
// that ends while the goroutine it starts for a first BDAT chunk has not yet
// asked for the session finds none, and the nil dereference is recovered and
// logged as a panic with its stack. The connection is already closed and no
// message was acknowledged, so kiln logs one line instead.
func bdatHangUp(msg string) bool {
	return strings.HasPrefix(msg, "panic serving ") && strings.Contains(msg, "nil pointer dereference") &&
		strings.Contains(msg, "(*Conn).handleBdat.func1()")
}
func (p slogPrinter) Println(v ...any) { p.l.Warn(fmt.Sprint(v...), "component", "smtp") }

// SubmissionAddrs are the addresses the submission listeners are bound to
// (useful when a configured port was 0).
func (srv *Server) SubmissionAddrs() []string {
	var out []string
	for _, l := range srv.listeners {
		out = append(out, l.Addr().String())
	}
	return out
}
