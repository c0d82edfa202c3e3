package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/internal/clock"
)

// Options are the dispatcher's collaborators. Zero values take defaults.
type Options struct {
	Clock clock.Clock  // default clock.Real
	Log   *slog.Logger // default slog.Default()
	// HTTPClient sends the POSTs (default: a client with its own
	// transport). Redirects are never followed, whatever the client says:
	// a 3xx is a failed attempt.
	HTTPClient *http.Client
	// FlushEvery is the longest an event waits in memory before it is in
	// the outbox (default 100ms); FlushBatch events waiting write sooner
	// (default 1000). They pace disk writes and run on the wall clock.
	FlushEvery time.Duration
	FlushBatch int
	// MaxPending bounds the events waiting in memory (default 100,000);
	// beyond it events are dropped, counted and logged.
	MaxPending int
}

const (
	defaultFlushEvery = 100 * time.Millisecond
	defaultFlushBatch = 1000
	defaultMaxPending = 100_000
	// maxErrorBody is how much of a failed response is kept for Stats.
	maxErrorBody = 200
)

var prefixOutbox = []byte("wh/o/")

// Dispatcher sends events to webhook endpoints through a durable outbox.
type Dispatcher struct {
	db     *badger.DB
	clk    clock.Clock
	log    *slog.Logger
	client *http.Client
	opts   Options
	eps    []*endpoint

	mu      sync.Mutex
	pending []events.Event
	spare   []events.Event
	closed  bool
	running bool

	kick    chan struct{}
	flushRq chan chan struct{}
	stop    chan struct{} // closed by Close
	writer  sync.WaitGroup
	senders sync.WaitGroup

	dropped     atomic.Uint64
	lastDropLog uint64
	lastDropAt  time.Time
	rndMu       sync.Mutex
	rnd         *rand.Rand
}

type endpoint struct {
	cfg    Config
	url    string // redacted, for logs and stats
	prefix []byte // wh/o/<id>/
	types  map[string]bool
	wake   chan struct{}
	log    *slog.Logger

	next uint64 // next outbox sequence number; the writer's
	head uint64 // first sequence number not yet acknowledged; the sender's

	queued                                 atomic.Int64
	sent, expired, overflow, failedPosts   atomic.Uint64
	mu                                     sync.Mutex
	failing                                int
	lastErr                                string
	lastSuccess, nextAttempt, lastOverflow time.Time
}

// Stats is a snapshot of the dispatcher.
type Stats struct {
	Pending   int    // events in memory, not yet in the outbox
	Dropped   uint64 // events dropped: memory bound reached, or after Close
	Endpoints []EndpointStats
}

// EndpointStats describes one endpoint.
type EndpointStats struct {
	Account     string
	URL         string // without credentials
	Queued      int64  // events in the outbox
	Sent        uint64 // events acknowledged
	Expired     uint64 // events given up at max_age
	Overflow    uint64 // events dropped at max_queued
	FailedPosts uint64 // failed attempts
	Failing     int    // failed attempts in a row, 0 when healthy
	LastError   string
	LastSuccess time.Time
	NextAttempt time.Time // when failing
}

// New opens the outbox of every endpoint in db, discarding those of
// endpoints no longer configured, and starts writing handled events to it.
// Run sends them; Close stops both.
func New(db *badger.DB, cfgs []Config, opts Options) (*Dispatcher, error) {
	if err := ValidateAll(cfgs); err != nil {
		return nil, err
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = defaultFlushEvery
	}
	if opts.FlushBatch <= 0 {
		opts.FlushBatch = defaultFlushBatch
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = defaultMaxPending
	}
	client := defaultClient()
	if opts.HTTPClient != nil {
		c := *opts.HTTPClient
		client = &c
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	seed := newEventID()
	d := &Dispatcher{
		db: db, clk: opts.Clock, log: opts.Log.With("component", "webhook"), client: client, opts: opts,
		kick: make(chan struct{}, 1), flushRq: make(chan chan struct{}), stop: make(chan struct{}),
		rnd: rand.New(rand.NewPCG(binary.BigEndian.Uint64([]byte(seed[:8])), binary.BigEndian.Uint64([]byte(seed[8:16])))),
	}
	for _, c := range cfgs {
		c = c.withDefaults()
		sum := sha256.Sum256([]byte(c.Account + "\x00" + c.URL))
		ep := &endpoint{
			cfg: c, url: redact(c.URL), types: map[string]bool{}, wake: make(chan struct{}, 1),
			prefix: append(append(slices.Clip(prefixOutbox), sum[:8]...), '/'),
		}
		ep.log = d.log.With("account", c.Account, "url", ep.url)
		for _, name := range c.Events {
			for _, typ := range kilnTypes(name) {
				ep.types[typ] = true
			}
		}
		d.eps = append(d.eps, ep)
	}
	if err := d.readOutbox(); err != nil {
		return nil, fmt.Errorf("webhook outbox: %w", err)
	}
	d.writer.Add(1)
	go d.write()
	return d, nil
}

// kilnTypes lists the kiln event types a payload name (or "all") stands for.
func kilnTypes(name string) []string {
	var out []string
	for _, typ := range []string{events.Received, events.Delivered, events.Deferred, events.Bounced, events.Expired,
		events.Dropped, events.Held, events.Suppressed, events.Complaint, events.Unsubscribe} {
		if p := payloadName(typ); p == name || name == "all" {
			out = append(out, typ)
		}
	}
	return out
}

func defaultClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: time.Minute,
	}}
}

// readOutbox reads the outbox back: each endpoint's first and last sequence
// numbers and its depth. Outboxes of endpoints no longer configured are
// deleted, with a warning saying how many events went with them.
func (d *Dispatcher) readOutbox() error {
	known := map[string]*endpoint{}
	for _, ep := range d.eps {
		known[string(ep.prefix)] = ep
	}
	orphans := map[string]int{}
	err := d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixOutbox})
		defer it.Close()
		for it.Seek(prefixOutbox); it.ValidForPrefix(prefixOutbox); it.Next() {
			k := it.Item().Key()
			if len(k) != len(prefixOutbox)+8+1+8 {
				continue
			}
			p := string(k[:len(k)-8])
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			ep := known[p]
			if ep == nil {
				orphans[p]++
				continue
			}
			if ep.queued.Load() == 0 {
				ep.head = seq
			}
			ep.next = seq + 1
			ep.queued.Add(1)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p, n := range orphans {
		if err := deletePrefix(d.db, []byte(p)); err != nil {
			return err
		}
		d.log.Warn("discarded the outbox of a webhook endpoint no longer configured", "outbox", fmt.Sprintf("%x", p[len(prefixOutbox):len(p)-1]), "events", n)
	}
	for _, ep := range d.eps {
		if n := ep.queued.Load(); n > 0 {
			ep.log.Info("webhook outbox recovered", "events", n)
		}
	}
	return nil
}

func deletePrefix(db *badger.DB, prefix []byte) error {
	for {
		var keys [][]byte
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(prefix); it.ValidForPrefix(prefix) && len(keys) < 10000; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		w := newTxnWriter(db)
		for _, k := range keys {
			if err := w.delete(k); err != nil {
				w.discard()
				return err
			}
		}
		if err := w.commit(); err != nil {
			return err
		}
	}
}

// Handle queues e for the outbox if an endpoint wants it. It never blocks on
// the disk or the network.
func (d *Dispatcher) Handle(e events.Event) {
	if !d.wanted(&e) {
		return
	}
	if e.Tags != nil {
		e.Tags = slices.Clone(e.Tags)
	}
	if e.Metadata != nil {
		e.Metadata = maps.Clone(e.Metadata)
	}
	if e.Next != nil {
		n := *e.Next
		e.Next = &n
	}
	d.mu.Lock()
	if d.closed || len(d.pending) >= d.opts.MaxPending {
		d.mu.Unlock()
		d.dropped.Add(1)
		return
	}
	d.pending = append(d.pending, e)
	n := len(d.pending)
	d.mu.Unlock()
	if n >= d.opts.FlushBatch {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// wanted reports whether some endpoint takes e.
func (d *Dispatcher) wanted(e *events.Event) bool {
	for _, ep := range d.eps {
		if ep.wants(e) {
			return true
		}
	}
	return false
}

func (ep *endpoint) wants(e *events.Event) bool {
	return ep.types[e.Type] && (ep.cfg.Account == "" || ep.cfg.Account == e.Account)
}

// Flush writes every handled event to the outbox before returning.
func (d *Dispatcher) Flush() {
	ch := make(chan struct{})
	select {
	case d.flushRq <- ch:
		<-ch
	case <-d.stop:
	}
}

func (d *Dispatcher) write() {
	defer d.writer.Done()
	t := time.NewTicker(d.opts.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-d.kick:
		case ch := <-d.flushRq:
			d.flush()
			close(ch)
			continue
		case <-d.stop:
			d.flush()
			return
		}
		d.flush()
	}
}

// flush moves the buffered events into the outbox in one synced
// transaction (more if badger finds it too big) and wakes the senders.
func (d *Dispatcher) flush() {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("webhook writer panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	d.mu.Lock()
	batch := d.pending
	d.pending = d.spare[:0]
	d.mu.Unlock()
	if len(batch) > 0 {
		d.enqueue(batch)
	}
	clear(batch)
	d.mu.Lock()
	d.spare = batch[:0]
	d.mu.Unlock()
	d.logDrops()
}

func (d *Dispatcher) enqueue(batch []events.Event) {
	now := d.clk.Now()
	added := make([]int64, len(d.eps))
	w := newTxnWriter(d.db)
	defer w.discard()
	err := func() error {
		for i := range batch {
			e := &batch[i]
			if e.Time.IsZero() {
				e.Time = now
			}
			var val []byte
			for j, ep := range d.eps {
				if !ep.wants(e) {
					continue
				}
				if ep.queued.Load()+added[j] >= int64(ep.cfg.MaxQueued) {
					ep.overflow.Add(1)
					continue
				}
				if val == nil {
					js, err := json.Marshal(newPayload(e))
					if err != nil {
						return err
					}
					val = binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(js)), uint64(now.UnixNano()))
					val = append(val, js...)
				}
				key := binary.BigEndian.AppendUint64(slices.Clip(ep.prefix), ep.next)
				if err := w.set(key, val); err != nil {
					return err
				}
				ep.next++
				added[j]++
			}
		}
		return w.commit()
	}()
	if err != nil {
		// Part may have been committed: count what the outbox holds.
		d.log.Error("webhook outbox write failed; events lost", "events", len(batch), "err", err)
		d.recount()
	} else {
		for j, ep := range d.eps {
			ep.queued.Add(added[j])
		}
	}
	for j, ep := range d.eps {
		if added[j] > 0 || err != nil {
			select {
			case ep.wake <- struct{}{}:
			default:
			}
		}
		if n := ep.overflow.Load(); n > 0 {
			ep.mu.Lock()
			if time.Since(ep.lastOverflow) > time.Minute {
				ep.lastOverflow = time.Now()
				ep.log.Warn("webhook outbox full (max_queued); events dropped", "dropped_total", n)
			}
			ep.mu.Unlock()
		}
	}
}

// recount sets every endpoint's depth from the outbox itself.
func (d *Dispatcher) recount() {
	for _, ep := range d.eps {
		var n int64
		d.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: ep.prefix})
			defer it.Close()
			for it.Seek(ep.prefix); it.ValidForPrefix(ep.prefix); it.Next() {
				n++
			}
			return nil
		})
		ep.queued.Store(n)
	}
}

// logDrops reports events dropped for memory at most every ten seconds.
func (d *Dispatcher) logDrops() {
	n := d.dropped.Load()
	if n == d.lastDropLog || time.Since(d.lastDropAt) < 10*time.Second {
		return
	}
	d.log.Warn("webhook buffer full or closed; events dropped", "dropped", n-d.lastDropLog, "dropped_total", n)
	d.lastDropLog, d.lastDropAt = n, time.Now()
}

// Run sends each endpoint's outbox until ctx ends or Close is called; one
// goroutine per endpoint, so a failing endpoint holds up only its own events.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.closed || d.running {
		d.mu.Unlock()
		return errors.New("webhook: dispatcher closed or already running")
	}
	d.running = true
	d.senders.Add(len(d.eps))
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, ep := range d.eps {
		go d.send(ctx, ep)
	}
	d.senders.Wait()
	return nil
}

// Close stops the senders (an interrupted POST is retried after the next
// start), writes what is buffered to the outbox, and stops the writer. Close
// the badger database only after Close returns.
func (d *Dispatcher) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	d.senders.Wait()
	d.writer.Wait()
	return nil
}

// Stats returns a snapshot of the dispatcher and its endpoints.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	st := Stats{Pending: len(d.pending), Dropped: d.dropped.Load()}
	d.mu.Unlock()
	for _, ep := range d.eps {
		ep.mu.Lock()
		st.Endpoints = append(st.Endpoints, EndpointStats{
			Account: ep.cfg.Account, URL: ep.url, Queued: ep.queued.Load(), Sent: ep.sent.Load(),
			Expired: ep.expired.Load(), Overflow: ep.overflow.Load(), FailedPosts: ep.failedPosts.Load(),
			Failing: ep.failing, LastError: ep.lastErr, LastSuccess: ep.lastSuccess, NextAttempt: ep.nextAttempt,
		})
		ep.mu.Unlock()
	}
	return st
}

type entry struct {
	seq      uint64
	enqueued time.Time
	payload  []byte
}

// send is the endpoint's sender: it POSTs the head of the outbox, deletes
// what the receiver acknowledged, and otherwise retries the same head after a
// backoff, so events arrive in outbox order.
func (d *Dispatcher) send(ctx context.Context, ep *endpoint) {
	defer d.senders.Done()
	defer func() {
		if r := recover(); r != nil {
			ep.log.Error("webhook sender panicked; endpoint stopped until restart", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	failures := 0
	for ctx.Err() == nil {
		batch, err := d.load(ep)
		if err != nil {
			ep.log.Error("webhook outbox read failed", "err", err)
			d.sleep(ctx, RetryFirst)
			continue
		}
		if len(batch) == 0 {
			select {
			case <-ep.wake:
			case <-ctx.Done():
			}
			continue
		}
		now := d.clk.Now()
		if n := expiredHead(batch, now, ep.cfg.MaxAge.D()); n > 0 {
			if err := d.ack(ep, batch[:n]); err != nil {
				ep.log.Error("webhook outbox delete failed", "err", err)
			}
			ep.expired.Add(uint64(n))
			ep.log.Warn("webhook events given up after max_age", "events", n, "max_age", ep.cfg.MaxAge.D().String())
			continue
		}
		if wait := batch[0].enqueued.Add(ep.cfg.BatchWait.D()).Sub(now); len(batch) < ep.cfg.BatchSize && failures == 0 && wait > 0 {
			select {
			case <-ep.wake:
			case <-d.clk.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		err = d.post(ctx, ep, batch)
		if err == nil {
			if failures > 0 {
				ep.log.Info("webhook endpoint recovered", "failed_attempts", failures)
			}
			failures = 0
			ep.sent.Add(uint64(len(batch)))
			ep.mu.Lock()
			ep.failing, ep.lastSuccess, ep.nextAttempt = 0, d.clk.Now(), time.Time{}
			ep.mu.Unlock()
			if err := d.ack(ep, batch); err != nil {
				// The head has moved on in memory; the keys left behind
				// are sent again after a restart (at-least-once).
				ep.log.Error("webhook outbox delete failed", "err", err)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		ep.failedPosts.Add(1)
		d.rndMu.Lock()
		delay := Backoff(failures, d.rnd.Float64())
		d.rndMu.Unlock()
		ep.mu.Lock()
		ep.failing, ep.lastErr, ep.nextAttempt = failures, err.Error(), d.clk.Now().Add(delay)
		ep.mu.Unlock()
		if failures == 1 || failures%10 == 0 {
			ep.log.Warn("webhook POST failed; retrying", "err", err, "failures", failures, "retry_in", delay.Round(time.Second).String(), "queued", ep.queued.Load())
		}
		d.sleep(ctx, delay)
	}
}

func (d *Dispatcher) sleep(ctx context.Context, dur time.Duration) {
	select {
	case <-d.clk.After(dur):
	case <-ctx.Done():
	}
}

// expiredHead counts the leading entries older than maxAge.
func expiredHead(batch []entry, now time.Time, maxAge time.Duration) int {
	n := 0
	for n < len(batch) && now.Sub(batch[n].enqueued) >= maxAge {
		n++
	}
	return n
}

// load reads up to BatchSize entries from the head of ep's outbox. An entry
// that cannot be what kiln wrote is deleted with an error in the log rather
// than sent: the receiver could not parse it either.
func (d *Dispatcher) load(ep *endpoint) ([]entry, error) {
	var out []entry
	var corrupt []entry
	err := d.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: ep.prefix, PrefetchValues: true, PrefetchSize: min(ep.cfg.BatchSize, 100)})
		defer it.Close()
		// Seek past the head rather than to the prefix: acknowledged
		// entries leave tombstones that slow a walk from the start.
		for it.Seek(binary.BigEndian.AppendUint64(slices.Clip(ep.prefix), ep.head)); it.ValidForPrefix(ep.prefix) && len(out) < ep.cfg.BatchSize; it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != len(ep.prefix)+8 {
				continue
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			seq := binary.BigEndian.Uint64(k[len(ep.prefix):])
			if len(v) < 8 || !json.Valid(v[8:]) {
				ep.log.Error("corrupt webhook outbox entry deleted", "key", fmt.Sprintf("%x", k), "value", fmt.Sprintf("%.64q", v))
				corrupt = append(corrupt, entry{seq: seq})
				continue
			}
			out = append(out, entry{seq: seq, enqueued: time.Unix(0, int64(binary.BigEndian.Uint64(v))), payload: v[8:]})
		}
		return nil
	})
	if err == nil && len(corrupt) > 0 {
		w := newTxnWriter(d.db)
		defer w.discard()
		for _, e := range corrupt {
			if err := w.delete(binary.BigEndian.AppendUint64(slices.Clip(ep.prefix), e.seq)); err != nil {
				return nil, err
			}
		}
		if err := w.commit(); err != nil {
			return nil, err
		}
		ep.queued.Add(-int64(len(corrupt)))
	}
	return out, err
}

// ack deletes entries from the outbox and moves the head past them.
func (d *Dispatcher) ack(ep *endpoint, batch []entry) error {
	w := newTxnWriter(d.db)
	defer w.discard()
	for _, e := range batch {
		if err := w.delete(binary.BigEndian.AppendUint64(slices.Clip(ep.prefix), e.seq)); err != nil {
			return err
		}
	}
	err := w.commit()
	ep.head = batch[len(batch)-1].seq + 1
	ep.queued.Add(-int64(len(batch)))
	return err
}

// post sends one batch as a JSON array and reports whether the receiver
// acknowledged it with a 2xx.
func (d *Dispatcher) post(ctx context.Context, ep *endpoint, batch []entry) error {
	var body bytes.Buffer
	body.WriteByte('[')
	for i, e := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e.payload)
	}
	body.WriteByte(']')
	ctx, cancel := context.WithTimeout(ctx, ep.cfg.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.cfg.URL, bytes.NewReader(body.Bytes()))
	if err != nil {
		return err
	}
	t := d.clk.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kiln-webhook/1")
	req.Header.Set(TimestampHeader, strconv.FormatInt(t, 10))
	req.Header.Set(SignatureHeader, Sign(ep.cfg.Secret, t, body.Bytes()))
	resp, err := d.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // drop the method and URL, which may hold credentials
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection can be reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	msg := strings.Join(strings.Fields(string(snippet)), " ")
	return fmt.Errorf("HTTP %d %s", resp.StatusCode, msg)
}

// txnWriter writes into one transaction and, when badger says it has grown
// too big, commits it and carries on in a new one.
type txnWriter struct {
	db  *badger.DB
	txn *badger.Txn
}

func newTxnWriter(db *badger.DB) *txnWriter {
	return &txnWriter{db: db, txn: db.NewTransaction(true)}
}

func (w *txnWriter) set(k, v []byte) error {
	return w.do(func(t *badger.Txn) error { return t.Set(k, v) })
}

func (w *txnWriter) delete(k []byte) error {
	return w.do(func(t *badger.Txn) error { return t.Delete(k) })
}

func (w *txnWriter) do(op func(*badger.Txn) error) error {
	err := op(w.txn)
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err := w.txn.Commit(); err != nil {
			return err
		}
		w.txn = w.db.NewTransaction(true)
		err = op(w.txn)
	}
	return err
}

func (w *txnWriter) commit() error { return w.txn.Commit() }
func (w *txnWriter) discard()      { w.txn.Discard() }
