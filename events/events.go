// Package events carries what happens to each message to whoever needs to
// know: the JSON event log (one line per state change), and later webhooks,
// the event query and metrics. Producers call Bus.Emit; sinks subscribe.
package events

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Types of event, named the way list managers already ingest them.
const (
	Received    = "received"   // accepted and queued
	Delivered   = "delivered"  // the remote took it for this recipient
	Deferred    = "deferred"   // a temporary failure; kiln will retry
	Bounced     = "bounced"    // a permanent failure for this recipient
	Expired     = "expired"    // still failing at the message's maximum age
	Dropped     = "dropped"    // removed without delivery (operator, suppression)
	Held        = "held"       // parked by a hold rule
	Suppressed  = "suppressed" // an address was added to the suppression list
	Complaint   = "spamreport" // a recipient reported the message as spam
	Unsubscribe = "unsubscribe"
	Warmup      = "warmup" // an egress's warm-up changed state at a provider
)

// Event is one state change of one message (for one recipient, where that
// applies). Fields that do not apply are left empty.
type Event struct {
	Time      time.Time `json:"time"`
	Type      string    `json:"type"`
	ID        string    `json:"id"`                   // kiln's queue id
	MessageID string    `json:"message_id,omitempty"` // the Message-ID header
	Account   string    `json:"account,omitempty"`
	From      string    `json:"from,omitempty"`
	Recipient string    `json:"recipient,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	// The remote's answer, kept in its own words.
	RemoteHost string `json:"remote_host,omitempty"`
	RemoteIP   string `json:"remote_ip,omitempty"`
	TLS        string `json:"tls,omitempty"`
	Code       int    `json:"code,omitempty"`
	Enhanced   string `json:"enhanced,omitempty"`
	Reply      string `json:"reply,omitempty"`
	// What kiln made of it.
	Reason string `json:"reason,omitempty"`
	Hard   bool   `json:"hard,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Where it went out, where it came in.
	Egress string `json:"egress,omitempty"`
	Site   string `json:"site,omitempty"`
	Client string `json:"client,omitempty"`
	Size   int64  `json:"size,omitempty"`
	// Timings in milliseconds: since the message was received, and of this
	// attempt.
	QueueMs   int64             `json:"queue_ms,omitempty"`
	AttemptMs int64             `json:"attempt_ms,omitempty"`
	Next      *time.Time        `json:"next_attempt,omitempty"`
	Tags      []string          `json:"tags,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Detail    string            `json:"detail,omitempty"`
}

// Sink receives events. Handle must not block for long: the bus calls it on
// the emitting goroutine.
type Sink interface {
	Handle(Event)
}

// SinkFunc adapts a function.
type SinkFunc func(Event)

func (f SinkFunc) Handle(e Event) { f(e) }

// Bus fans events out to its sinks. The zero value drops everything.
type Bus struct {
	mu    sync.RWMutex
	sinks []Sink
}

// Subscribe adds a sink.
func (b *Bus) Subscribe(s Sink) {
	b.mu.Lock()
	b.sinks = append(b.sinks, s)
	b.mu.Unlock()
}

// Emit sends e to every sink.
func (b *Bus) Emit(e Event) {
	if b == nil {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, s := range b.sinks {
		s.Handle(e)
	}
}

// Log writes events as JSON lines. Lines are buffered and flushed at least
// every flushEvery, and at Close, so a burst of thousands of events a second
// costs one write per interval, not one per event.
type Log struct {
	mu      sync.Mutex
	w       *bufio.Writer
	c       io.Closer
	enc     *json.Encoder
	stop    chan struct{}
	stopped chan struct{}
	log     *slog.Logger
}

const flushEvery = 200 * time.Millisecond

// OpenLog appends to the file at path ("-" is standard output).
func OpenLog(path string, log *slog.Logger) (*Log, error) {
	var wc io.WriteCloser
	if path == "-" {
		wc = nopCloser{os.Stdout}
	} else {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, err
		}
		wc = f
	}
	return NewLog(wc, log), nil
}

// NewLog writes to w.
func NewLog(w io.WriteCloser, log *slog.Logger) *Log {
	if log == nil {
		log = slog.Default()
	}
	l := &Log{w: bufio.NewWriterSize(w, 64<<10), c: w, stop: make(chan struct{}), stopped: make(chan struct{}), log: log}
	l.enc = json.NewEncoder(l.w)
	l.enc.SetEscapeHTML(false)
	go l.flusher()
	return l
}

func (l *Log) Handle(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.enc.Encode(e); err != nil {
		l.log.Error("event log write failed", "err", err)
	}
}

func (l *Log) flusher() {
	defer close(l.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.mu.Lock()
			if err := l.w.Flush(); err != nil {
				l.log.Error("event log flush failed", "err", err)
			}
			l.mu.Unlock()
		case <-l.stop:
			return
		}
	}
}

// Close flushes and closes the log.
func (l *Log) Close() error {
	close(l.stop)
	<-l.stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if cerr := l.c.Close(); err == nil {
		err = cerr
	}
	return err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
