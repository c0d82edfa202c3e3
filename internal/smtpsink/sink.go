package smtpsink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Sink is a Server run the way "kiln sink" runs it: without keeping
// messages in memory, optionally logging every message as a JSON line and
// saving the accepted ones to a directory, and reporting its counters.
type Sink struct {
	*Server
	start time.Time

	logMu   sync.Mutex
	log     *os.File // nil once closed
	logging bool
	saveDir string
	prefix  string // of saved file names, unique to this run
	outErrs int    // failed log writes and saves, under logMu

	countersPath string

	repMu    sync.Mutex
	lastAt   time.Time
	lastMsgs int
}

// LogEntry is one line of the message log.
type LogEntry struct {
	Time      time.Time `json:"time"`
	ID        string    `json:"id,omitempty"` // the queue id in the 250 reply
	Session   int       `json:"session"`
	Client    string    `json:"client"`
	Helo      string    `json:"helo"`
	TLS       bool      `json:"tls"`
	AuthUser  string    `json:"auth,omitempty"`
	From      string    `json:"from"`
	Rcpts     []string  `json:"rcpts"`
	Size      int       `json:"size"`
	MessageID string    `json:"message_id,omitempty"` // the Message-ID header
	Reply     string    `json:"reply,omitempty"`      // what the sink answered after the dot
	Dropped   bool      `json:"dropped,omitempty"`    // the connection was dropped instead
	Partial   bool      `json:"partial,omitempty"`    // dropped in the middle of DATA
	File      string    `json:"file,omitempty"`       // where the message was saved
}

// Counters is what the sink reports: the server's counters, its scripted
// refusals by stage and code, and how long it has run.
type Counters struct {
	Stats
	Refused       map[string]int `json:"refused"`
	UptimeSeconds float64        `json:"uptime_seconds"`
	OutputErrors  int            `json:"output_errors,omitempty"` // failed log writes or saves
}

// Open starts the sink the file describes.
func Open(f *File) (*Sink, error) {
	k := &Sink{start: time.Now(), saveDir: f.Output.SaveDir, countersPath: f.Output.CountersFile}
	k.lastAt = k.start
	k.prefix = k.start.UTC().Format("20060102T150405")
	if f.Output.LogFile != "" {
		lf, err := os.OpenFile(f.Output.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		k.log, k.logging = lf, true
	}
	if k.saveDir != "" {
		if err := os.MkdirAll(k.saveDir, 0o700); err != nil {
			k.closeLog()
			return nil, fmt.Errorf("save directory: %w", err)
		}
	}
	cfg := f.Config()
	cfg.Discard = true
	if k.logging || k.saveDir != "" {
		cfg.OnMessage = k.observe
	}
	srv, err := New(cfg)
	if err != nil {
		k.closeLog()
		return nil, err
	}
	k.Server = srv
	return k, nil
}

// observe logs and saves one message; it runs before the reply is sent, so
// a message the sink acknowledged is already in the log and the directory.
func (k *Sink) observe(m *Message) {
	e := LogEntry{
		Time: m.At, ID: m.ID, Session: m.Session, Client: m.Client, Helo: m.Helo, TLS: m.TLS,
		AuthUser: m.AuthUser, From: m.From, Rcpts: m.Rcpts, Size: len(m.Data),
		MessageID: HeaderValue(m.Data, "Message-ID"), Reply: m.Reply, Dropped: m.Dropped, Partial: m.Partial,
	}
	if e.Rcpts == nil {
		e.Rcpts = []string{}
	}
	var failed bool
	if k.saveDir != "" && m.Accepted() {
		name := filepath.Join(k.saveDir, k.prefix+"-"+m.ID+".eml")
		if err := os.WriteFile(name, m.Data, 0o600); err != nil {
			failed = true
		} else {
			e.File = name
		}
	}
	var line []byte
	if k.logging {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // keep <message-id@host> readable
		enc.Encode(e)
		line = b.Bytes()
	}
	k.logMu.Lock()
	defer k.logMu.Unlock()
	if line != nil && k.log != nil {
		if _, err := k.log.Write(line); err != nil {
			failed = true
		}
	}
	if failed {
		k.outErrs++
	}
}

// Counters returns the counters now.
func (k *Sink) Counters() Counters {
	k.logMu.Lock()
	errs := k.outErrs
	k.logMu.Unlock()
	return Counters{Stats: k.Stats(), Refused: k.Refusals(), UptimeSeconds: time.Since(k.start).Seconds(), OutputErrors: errs}
}

// Report is one line describing the counters, with the message rate since
// the previous report.
func (k *Sink) Report() string {
	c := k.Counters()
	now := time.Now()
	k.repMu.Lock()
	rate := float64(c.Messages-k.lastMsgs) / now.Sub(k.lastAt).Seconds()
	k.lastAt, k.lastMsgs = now, c.Messages
	k.repMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d messages (%.0f/s), %d recipients, %s; %d sessions (%d TLS)",
		time.Duration(c.UptimeSeconds*float64(time.Second)).Round(time.Second), c.Messages, rate, c.Recipients,
		formatBytes(c.Bytes), c.Sessions, c.TLS)
	if len(c.Refused) > 0 {
		keys := make([]string, 0, len(c.Refused))
		for key := range c.Refused {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		b.WriteString("; refused:")
		for _, key := range keys {
			fmt.Fprintf(&b, " %s=%d", key, c.Refused[key])
		}
	}
	if c.Dropped > 0 {
		fmt.Fprintf(&b, "; dropped %d (%d mid-DATA)", c.Dropped, c.DroppedMidData)
	}
	if c.Throttled > 0 {
		fmt.Fprintf(&b, "; throttled %d", c.Throttled)
	}
	if c.OutputErrors > 0 {
		fmt.Fprintf(&b, "; %d log or save errors", c.OutputErrors)
	}
	return b.String()
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// WriteCounters writes the counters as JSON to the counters file, if the
// rules file names one, replacing it whole (a reader never sees half).
func (k *Sink) WriteCounters() error {
	if k.countersPath == "" {
		return nil
	}
	data, err := json.MarshalIndent(k.Counters(), "", "  ")
	if err != nil {
		return err
	}
	tmp := k.countersPath + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, k.countersPath)
}

// Run reports the counters to out every interval (never when every is 0)
// until ctx ends or, when maxMessages > 0, that many messages were
// accepted; then it closes the sink and makes a last report.
func (k *Sink) Run(ctx context.Context, out io.Writer, every time.Duration, maxMessages int) error {
	if maxMessages > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			if k.Wait(ctx, func(s Stats) bool { return s.Messages >= maxMessages }) == nil {
				cancel()
			}
		}()
	}
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	var werr error
	for {
		select {
		case <-tick:
			fmt.Fprintln(out, k.Report())
			if err := k.WriteCounters(); err != nil && werr == nil {
				werr = err
				fmt.Fprintf(out, "counters file: %v\n", err)
			}
		case <-ctx.Done():
			k.shutdown()
			fmt.Fprintln(out, k.Report())
			if err := k.WriteCounters(); err != nil {
				return fmt.Errorf("counters file: %w", err)
			}
			return nil
		}
	}
}

// ShutdownGrace is how long Run waits at the end for clients to finish
// their sessions before it closes their connections.
var ShutdownGrace = time.Second

// shutdown lets the replies in flight go out, then closes everything.
func (k *Sink) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
	defer cancel()
	k.Server.Shutdown(ctx)
	k.closeLog()
}

// Close stops the server and closes the log.
func (k *Sink) Close() error {
	err := k.Server.Close()
	k.closeLog()
	return err
}

func (k *Sink) closeLog() {
	k.logMu.Lock()
	defer k.logMu.Unlock()
	if k.log != nil {
		k.log.Close()
		k.log = nil
	}
}

// HeaderValue returns the unfolded value of the first header field called
// name in a message's header section, "" when there is none.
func HeaderValue(msg []byte, name string) string {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		line := msg
		if i >= 0 {
			line, msg = msg[:i+1], msg[i+1:]
		} else {
			msg = nil
		}
		l := bytes.TrimRight(line, "\r\n")
		if len(l) == 0 {
			return "" // end of the header section
		}
		if len(l) <= len(name) || l[len(name)] != ':' || !strings.EqualFold(string(l[:len(name)]), name) {
			continue
		}
		v := string(bytes.TrimSpace(l[len(name)+1:]))
		for len(msg) > 0 && (msg[0] == ' ' || msg[0] == '\t') {
			j := bytes.IndexByte(msg, '\n')
			if j < 0 {
				j = len(msg) - 1
			}
			v += " " + string(bytes.TrimSpace(msg[:j+1]))
			msg = msg[j+1:]
		}
		return strings.TrimSpace(v)
	}
	return ""
}
