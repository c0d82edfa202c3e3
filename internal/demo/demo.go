// Package demo is "kiln demo": kiln running in-process with simulated mailbox
// providers on loopback, a small campaign injected through its SMTP
// submission port, and live progress in the terminal, so that a newcomer sees
// relaying, bouncing, suppression and warm-up within a minute, with no
// internet, no DNS and no configuration.
//
// What is simulated, and how:
//
//   - The providers are one SMTP server (internal/smtpsink) on a free port of
//     127.0.0.1 whose replies are scripted per recipient domain: a Gmail-like
//     provider that answers 421 4.7.28 once kiln's IP passes an hourly
//     limit, a Microsoft-like one that has kiln's IP on its block list for
//     the first messages (550 5.7.1, S3150) and then rate-limits it for its
//     reputation (451 4.7.650), a Yahoo-like one and a hosting company that
//     take everything, and, everywhere, unknown users (550 5.1.1) and full
//     mailboxes (452 4.2.2, for a while).
//   - DNS: kiln's MX lookup is replaced by a table that gives each simulated
//     domain its provider's real-looking MX host name (which is what kiln's
//     warm-up groups providers by) at 127.0.0.1; [delivery] port points at
//     the server.
//   - Time: kiln reads a clock that runs Speed times faster than the wall
//     clock (two hours a second by default), so warm-up days, the sending
//     window, retry backoffs, pauses and the providers' hourly limits play out
//     in seconds. Only the clock is fast; every decision is kiln's own.
//
// Everything else is the real kiln: submission, the durable queue, the
// scheduler, warm-up caps and adaptive control, the reply classifier, the
// suppression list, bounce notices, the event log, the admin API and the
// dashboard.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"kiln/events"
	"kiln/mta"
	"kiln/warmup"
)

// DefaultSpeed runs the simulated clock at two hours a second: a warm-up day
// in 12 seconds, so that the default campaign is over within a minute.
const DefaultSpeed = 7200

// Config is one run of the demo. Zero fields take the defaults noted.
type Config struct {
	// Messages is the campaign's size: one message per recipient; default
	// 300.
	Messages int
	// Duration is the longest the demo waits for the campaign to finish
	// (every recipient delivered, bounced or dropped); default one minute.
	Duration time.Duration
	// Speed is how many simulated seconds pass per real second; default
	// DefaultSpeed. 1 is real time.
	Speed float64
	// DataDir keeps kiln's data (queue, suppression list, warm-up counters,
	// logs); "" uses a temporary directory removed at the end. A kept
	// directory remembers the simulated time, so a second run goes on from
	// there.
	DataDir string
	// Keep leaves kiln running after the campaign, until ctx ends, so the
	// dashboard can be explored.
	Keep bool
	// Listen and Admin are kiln's submission and admin (dashboard)
	// listeners; default 127.0.0.1:0, a free port.
	Listen, Admin string
	// Out receives the introduction, the progress and the summary; default
	// standard output.
	Out io.Writer
	// Live redraws the progress in place with ANSI escapes (for a
	// terminal); otherwise progress is printed as lines every Every
	// (default 5s), with what happened in between.
	Live  bool
	Color bool
	Every time.Duration
	// Log receives kiln's own log; default kiln.log in the data directory.
	Log io.Writer
	// Step is the wall time between two steps of the simulated clock;
	// default 50ms.
	Step time.Duration
}

func (c *Config) defaults() {
	if c.Messages == 0 {
		c.Messages = 300
	}
	if c.Duration == 0 {
		c.Duration = time.Minute
	}
	if c.Speed == 0 {
		c.Speed = DefaultSpeed
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.Admin == "" {
		c.Admin = "127.0.0.1:0"
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Every == 0 {
		c.Every = 5 * time.Second
	}
	if c.Step == 0 {
		c.Step = 50 * time.Millisecond
	}
}

// Result is what a run showed.
type Result struct {
	Submission string `json:"submission"`
	Dashboard  string `json:"dashboard"`
	DataDir    string `json:"data_dir,omitempty"` // only when kept
	// Elapsed is wall time from the campaign's start; Start and End are the
	// simulated times.
	Elapsed time.Duration `json:"-"`
	Seconds float64       `json:"elapsed_seconds"`
	Start   time.Time     `json:"simulated_start"`
	End     time.Time     `json:"simulated_end"`
	// Complete: every recipient kiln accepted reached a final state.
	Complete    bool `json:"complete"`
	Interrupted bool `json:"interrupted,omitempty"`
	// Campaign is the number of recipients of the first wave; Resent is how
	// many mails to suppressed addresses the campaign sent again the next
	// day, ResentRefused how many of them kiln refused at submission.
	Campaign      int `json:"campaign"`
	Resent        int `json:"resent"`
	ResentRefused int `json:"resent_refused"`
	// Per provider (gmail, outlook, yahoo, hosting) and in total.
	Providers map[string]Counts `json:"providers"`
	Total     Counts            `json:"total"`
	// Notices are the bounce notices kiln sent to the campaign's sender.
	Notices Counts `json:"bounce_notices"`
	// Warmup is the last warm-up status of the demo's egress; Pauses and
	// Holds count the warm-up's adaptive reactions per site (a rule that
	// paused the site, or held its plan day).
	Warmup []warmup.SiteStatus `json:"warmup"`
	Pauses map[string]int      `json:"warmup_pauses"`
	Holds  map[string]int      `json:"warmup_holds"`
	Notes  []Note              `json:"notes"`

	tally *tally
}

// Run runs the demo until the campaign is over or Duration has passed, then
// (with Keep) until ctx ends. Cancelling ctx stops it cleanly at any time,
// with the result so far. An error means the demo could not run: a port was
// busy, the data directory could not be used, kiln failed to start or stopped
// taking mail.
func Run(ctx context.Context, c Config) (*Result, error) {
	c.defaults()
	if c.Messages < 1 || c.Messages > 100000 {
		return nil, fmt.Errorf("messages must be between 1 and 100000")
	}
	if c.Speed < 1 || c.Speed > 100000 {
		return nil, fmt.Errorf("speed must be between 1 and 100000")
	}
	dataDir, kept := c.DataDir, c.DataDir != ""
	if kept {
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	} else {
		var err error
		if dataDir, err = os.MkdirTemp("", "kiln-demo-"); err != nil {
			return nil, fmt.Errorf("temporary data directory: %w", err)
		}
		defer os.RemoveAll(dataDir)
	}
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}

	rcpts := recipients(c.Messages)
	shares := sharesOf(rcpts)

	// The clock stands still until kiln is ready, so the campaign starts at
	// the simulated start time however long kiln takes to open its stores.
	clk := newSimClock(startTime(dataDir, time.Now()), c.Speed, c.Step)
	clkCtx, stopClock := context.WithCancel(context.Background())
	defer stopClock()

	sink, err := newSink(clk, rcpts)
	if err != nil {
		return nil, fmt.Errorf("starting the simulated providers on 127.0.0.1: %w", err)
	}
	defer sink.Close()
	sinkHost, sinkPortS, _ := net.SplitHostPort(sink.Addr())
	sinkPort, _ := strconv.Atoi(sinkPortS)
	sinkIP, _ := netip.ParseAddr(sinkHost)

	cfg, err := kilnConfig(&c, dataDir, sinkPort, shares)
	if err != nil {
		return nil, err
	}
	logw := c.Log
	if logw == nil {
		f, err := os.OpenFile(filepath.Join(dataDir, "kiln.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("kiln's log: %w", err)
		}
		defer f.Close()
		logw = f
	}
	srv, err := mta.New(cfg, mta.Options{
		Clock:  clk,
		Log:    slog.New(slog.NewTextHandler(logw, nil)),
		Lookup: lookup(sinkIP),
	})
	if err != nil {
		return nil, fmt.Errorf("starting kiln: %w", err)
	}
	t := newTally()
	srv.Bus().Subscribe(t)

	srvCtx, stopSrv := context.WithCancel(context.Background())
	ready := make(chan struct{})
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(srvCtx, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-runErr:
		stopSrv()
		return nil, fmt.Errorf("starting kiln: %w", err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopSrv()
		err := <-runErr
		if kept {
			if serr := saveTime(dataDir, clk.Now()); serr != nil && err == nil {
				err = serr
			}
		}
		return err
	}
	defer stop()

	d := &run{
		cfg: c, clk: clk, srv: srv, tally: t, rcpts: rcpts, shares: shares, dataDir: dataDir, kept: kept,
		sinkAddr: sink.Addr(), gmailPerHour: gmailPerHour(shares["gmail"]),
		res: &Result{
			Submission: srv.SubmissionAddrs()[0],
			Dashboard:  "http://" + srv.AdminAddr() + "/dashboard/",
			Campaign:   len(rcpts),
			tally:      t,
		},
		http: &http.Client{Timeout: 5 * time.Second},
	}
	if kept {
		d.res.DataDir = dataDir
	}
	go clk.run(clkCtx)
	err = d.campaign(ctx)
	if serr := stop(); serr != nil && err == nil {
		err = fmt.Errorf("stopping kiln: %w", serr)
	}
	return d.res, err
}

// run is the state of one demo.
type run struct {
	cfg          Config
	clk          *simClock
	srv          *mta.Server
	tally        *tally
	rcpts        []string
	shares       map[string]int
	dataDir      string
	kept         bool
	sinkAddr     string
	gmailPerHour int
	res          *Result
	http         *http.Client
	screen       screen

	mu            sync.Mutex
	wave1Done     bool
	wave2Started  bool
	wave2Done     bool
	injectErr     error
	resent        int
	resentRefused int
}

// campaign injects the mail, follows it until it is over (or Duration has
// passed), prints the summary and, with Keep, goes on until ctx ends.
func (d *run) campaign(ctx context.Context) error {
	start := time.Now()
	d.res.Start = d.clk.Now()
	d.screen = newScreen(d.cfg.Out, d.cfg.Live, d.cfg.Color)
	d.intro()
	defer d.screen.close()

	injCtx, stopInject := context.WithCancel(ctx)
	defer stopInject()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := inject(injCtx, d.res.Submission, d.rcpts, 8, d.clk.Now, func(in injected) { d.tally.submitted(in, d.clk.Now(), 1) })
		d.mu.Lock()
		d.wave1Done, d.injectErr = true, err
		d.mu.Unlock()
	}()
	midnight := nextMidnight(d.res.Start)

	refresh := 250 * time.Millisecond
	if !d.cfg.Live {
		refresh = 100 * time.Millisecond // notes as they come; status lines every Every
	}
	tick := time.NewTicker(refresh)
	defer tick.Stop()
	lastStatus := time.Time{}
	lastScan := time.Time{}
	deadline := start.Add(d.cfg.Duration)
	for {
		select {
		case <-ctx.Done():
			d.res.Interrupted = true
		case <-tick.C:
		}
		now := time.Now()
		if now.Sub(lastScan) >= 500*time.Millisecond || d.res.Interrupted {
			if err := d.tally.scan(d.srv.Store()); err != nil {
				return fmt.Errorf("reading kiln's queue: %w", err)
			}
			lastScan = now
		}
		d.mu.Lock()
		injErr, wave1Done, wave2Started, wave2Done := d.injectErr, d.wave1Done, d.wave2Started, d.wave2Done
		d.mu.Unlock()
		if injErr != nil && ctx.Err() == nil {
			d.status(now.Sub(start), true)
			return fmt.Errorf("injecting the campaign: %w", injErr)
		}
		_, total := d.tally.snapshot()
		finals := total.Delivered + total.Bounced + total.Expired + total.Dropped
		over := wave1Done && finals >= total.Received
		if wave1Done && !wave2Started && (over || !d.clk.Now().Before(midnight)) {
			d.mu.Lock()
			d.wave2Started = true
			d.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); d.resend(injCtx) }()
			wave2Started = true
		}
		done := over && wave2Done
		full := now.Sub(lastStatus) >= d.cfg.Every
		if d.cfg.Live || full || done || d.res.Interrupted || !now.Before(deadline) {
			lastStatus = now
			d.status(now.Sub(start), full)
		}
		if done || d.res.Interrupted || !now.Before(deadline) {
			d.res.Complete = done
			break
		}
	}
	stopInject()
	wg.Wait()
	d.finish(time.Since(start))
	d.screen.summary(d.res, d.summaryLines())
	if d.cfg.Keep && !d.res.Interrupted {
		admin := "http://" + d.srv.AdminAddr()
		d.screen.println("",
			d.screen.bold("kiln keeps running: explore the dashboard at "+d.res.Dashboard),
			"  or ask it from another terminal: kiln warmup status --admin "+admin,
			"                                   kiln suppress ls --admin "+admin,
			"                                   kiln queue ls --admin "+admin,
			"  its submission port "+d.res.Submission+" takes more mail. Ctrl-C stops kiln.",
			"")
		d.screen.restart()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		lastStatus = time.Now()
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case now := <-t.C:
				d.tally.scan(d.srv.Store())
				full := now.Sub(lastStatus) >= d.cfg.Every
				if full {
					lastStatus = now
				}
				d.status(time.Since(start), full)
			}
		}
		d.screen.close()
		d.finish(time.Since(start))
	}
	return nil
}

// resend is the campaign's second wave, the next day: the application mails
// every address kiln suppressed again, as an application that ignores bounces
// would. Kiln refuses each at RCPT, so nothing reaches the provider.
func (d *run) resend(ctx context.Context) {
	defer func() {
		d.mu.Lock()
		d.wave2Done = true
		d.mu.Unlock()
	}()
	addrs := d.tally.suppressedAddrs()
	if len(addrs) == 0 {
		return
	}
	d.tally.addNote(d.clk.Now(), "campaign     the app sends again to the %d suppressed addresses (wave 2)", len(addrs))
	refused := 0
	var mu sync.Mutex
	err := inject(ctx, d.res.Submission, addrs, 2, d.clk.Now, func(in injected) {
		d.tally.submitted(in, d.clk.Now(), 2)
		mu.Lock()
		if !in.ok {
			refused++
		}
		mu.Unlock()
	})
	d.mu.Lock()
	d.resent, d.resentRefused = len(addrs), refused
	if err != nil && d.injectErr == nil {
		d.injectErr = err
	}
	d.mu.Unlock()
	d.tally.addNote(d.clk.Now(), "campaign     kiln refused %d of the %d at submission: suppressed addresses are never mailed again", refused, len(addrs))
}

// finish fills in the result.
func (d *run) finish(elapsed time.Duration) {
	d.tally.scan(d.srv.Store())
	d.res.Elapsed = elapsed
	d.res.Seconds = elapsed.Round(time.Millisecond).Seconds()
	d.res.End = d.clk.Now()
	d.res.Providers, d.res.Total = d.tally.snapshot()
	d.tally.mu.Lock()
	d.res.Notices = d.tally.notices
	d.tally.mu.Unlock()
	d.res.Notes, _ = d.tally.notesSince(0)
	d.mu.Lock()
	d.res.Resent, d.res.ResentRefused = d.resent, d.resentRefused
	d.mu.Unlock()
	d.res.Warmup = d.warmupStatus()
	d.res.Pauses, d.res.Holds = map[string]int{}, map[string]int{}
	for _, p := range providers {
		d.res.Pauses[p.Site], d.res.Holds[p.Site] = d.tally.reactionsAt(p.Site)
	}
}

// warmupStatus asks kiln's admin API for the warm-up of the demo's egress,
// as "kiln warmup status" does; nil when it cannot be had.
func (d *run) warmupStatus() []warmup.SiteStatus {
	resp, err := d.http.Get("http://" + d.srv.AdminAddr() + "/api/v1/warmup/status")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var st warmup.Status
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return nil
	}
	for _, e := range st.Egress {
		if e.Name == egressName {
			return e.Sites
		}
	}
	return nil
}

func nextMidnight(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
}

var _ events.Sink = (*tally)(nil)
