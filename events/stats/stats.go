package stats

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/events"
	"kiln/internal/clock"
	"kiln/warmup"
)

// Defaults.
const (
	DefaultMinuteKeep = 48 * time.Hour
	DefaultHourKeep   = 30 * 24 * time.Hour
	DefaultMaxValues  = 500
	DefaultFlushEvery = time.Minute
	DefaultDaysKeep   = 60
)

// Dim is what a series is broken down by.
type Dim string

// Dimensions. ByTotal is the type's total.
const (
	ByTotal   Dim = ""
	ByReason  Dim = "reason"  // events.Event.Reason: the bounce or deferral reason, the warm-up cause
	BySite    Dim = "site"    // events.Event.Site: provider name or MX set
	ByAccount Dim = "account" // events.Event.Account
	ByEgress  Dim = "egress"  // events.Event.Egress
)

// Other is the value under which events are counted once a dimension already
// holds MaxValues distinct values.
const Other = "(other)"

// dims lists the dimensions with their one-letter codes in keys, in the
// order Handle counts them.
var dims = [...]struct {
	d      Dim
	letter byte
}{{ByTotal, 't'}, {ByReason, 'r'}, {BySite, 's'}, {ByAccount, 'a'}, {ByEgress, 'e'}}

func dimIndex(d Dim) (int, bool) {
	for i, x := range dims {
		if x.d == d {
			return i, true
		}
	}
	return 0, false
}

func dimByLetter(b byte) (int, bool) {
	for i, x := range dims {
		if x.letter == b {
			return i, true
		}
	}
	return 0, false
}

// WarmupSource is what the warm-up history samples: warmup.Controller.
type WarmupSource interface {
	Status(now time.Time) warmup.Status
}

var (
	_ events.Sink  = (*Stats)(nil)
	_ WarmupSource = (*warmup.Controller)(nil)
)

// Options tune Stats. Zero values take the defaults.
type Options struct {
	Clock clock.Clock  // default clock.Real
	Log   *slog.Logger // default slog.Default()
	// MinuteKeep is how long counts are kept a minute at a time (default
	// 48 hours, rounded up to whole hours).
	MinuteKeep time.Duration
	// HourKeep is how long counts are kept an hour at a time (default 30
	// days, rounded up to whole days).
	HourKeep time.Duration
	// MaxValues bounds the distinct values of each dimension (default 500).
	MaxValues int
	// FlushEvery paces the writes to the database (default one minute). It
	// paces disk writes, not decisions, so it runs on the wall clock.
	FlushEvery time.Duration
	// Warmup, when set, is sampled at every flush for the warm-up history.
	Warmup WarmupSource
	// DaysKeep is how many days of warm-up history are kept per (egress,
	// site) (default 60).
	DaysKeep int
}

// Stats is the time-series aggregator: an events.Sink. It is safe for
// concurrent use.
type Stats struct {
	db   *badger.DB
	opts Options
	clk  clock.Clock
	log  *slog.Logger

	flushMu sync.Mutex // one flush at a time

	mu       sync.Mutex
	series   map[key]*series
	byType   map[string]*typeSeries    // the same series, for Handle's lookups
	values   [len(dims)]map[string]int // distinct values per dimension, with their number of series
	dels     [][]byte                  // keys to delete from the database at the next flush
	days     map[dayKey]*dayHist
	overflow uint64 // events counted under Other
	lastErr  error

	nMin, nHour int // chunks in the rings

	stop chan struct{}
	done chan struct{}
}

type key struct {
	typ string
	dim uint8 // index in dims
	val string
}

// typeSeries finds the series of one type with one lookup of a plain string
// per dimension, cheaper than hashing a key struct.
type typeSeries struct {
	by [len(dims)]map[string]*series
}

type series struct {
	k    key
	min  ring // chunks of 60 minutes
	hour ring // chunks of 24 hours
}

// ring is a circular list of chunks; chunk i holds units [tag*width,
// (tag+1)*width) and lives at slot tag mod len(chunks).
type ring struct {
	width  int64
	chunks []*chunk
}

type chunk struct {
	tag   int64
	dirty bool // changed since the last flush
	saved bool // written to the database at least once
	n     []uint32
}

const (
	kindMinute = 'm'
	kindHour   = 'h'
	kindWarmup = 'w'
)

// New loads the counts kept under "stats/" in db and starts the flusher.
// Close it before closing db.
func New(db *badger.DB, opts Options) (*Stats, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.MinuteKeep <= 0 {
		opts.MinuteKeep = DefaultMinuteKeep
	}
	opts.MinuteKeep = roundUp(opts.MinuteKeep, time.Hour)
	if opts.HourKeep <= 0 {
		opts.HourKeep = DefaultHourKeep
	}
	opts.HourKeep = roundUp(opts.HourKeep, 24*time.Hour)
	if opts.MaxValues <= 0 {
		opts.MaxValues = DefaultMaxValues
	}
	if opts.FlushEvery <= 0 {
		opts.FlushEvery = DefaultFlushEvery
	}
	if opts.DaysKeep <= 0 {
		opts.DaysKeep = DefaultDaysKeep
	}
	s := &Stats{
		db: db, opts: opts, clk: opts.Clock, log: opts.Log.With("component", "stats"),
		series: map[key]*series{}, byType: map[string]*typeSeries{}, days: map[dayKey]*dayHist{},
		stop: make(chan struct{}), done: make(chan struct{}),
		nMin: int(opts.MinuteKeep/time.Hour) + 1, nHour: int(opts.HourKeep/(24*time.Hour)) + 1,
	}
	for i := range s.values {
		s.values[i] = map[string]int{}
	}
	if db != nil {
		if err := s.load(); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
	}
	go s.flusher()
	return s, nil
}

func roundUp(d, unit time.Duration) time.Duration {
	return (d + unit - 1) / unit * unit
}

func (s *Stats) minuteChunks() int { return s.nMin }
func (s *Stats) hourChunks() int   { return s.nHour }

// Handle counts e. It never touches the disk.
func (s *Stats) Handle(e events.Event) {
	if e.Type == "" {
		return
	}
	t := e.Time
	if t.IsZero() {
		t = s.clk.Now()
	}
	m := floorDiv(t.Unix(), 60)
	h := floorDiv(m, 60)
	d := floorDiv(h, 24)
	at := [2]pos{
		{h, floorMod(h, int64(s.minuteChunks())), m - h*60},
		{d, floorMod(d, int64(s.hourChunks())), h - d*24},
	}
	s.mu.Lock()
	ts := s.byType[e.Type]
	if ts == nil {
		ts = s.typeFor(e.Type)
	}
	s.count(ts, e.Type, 0, "", &at)
	if e.Reason != "" {
		s.count(ts, e.Type, 1, e.Reason, &at)
	}
	if e.Site != "" {
		s.count(ts, e.Type, 2, e.Site, &at)
	}
	if e.Account != "" {
		s.count(ts, e.Type, 3, e.Account, &at)
	}
	if e.Egress != "" {
		s.count(ts, e.Type, 4, e.Egress, &at)
	}
	s.mu.Unlock()
}

// count adds one at a minute and its hour (the caller holds s.mu).
func (s *Stats) count(ts *typeSeries, typ string, dim uint8, val string, at *[2]pos) {
	sr := ts.by[dim][val]
	if sr == nil {
		sr = s.seriesFor(key{typ, dim, val}, true)
	}
	sr.min.add(s, kindMinute, sr.k, at[0])
	sr.hour.add(s, kindHour, sr.k, at[1])
}

func (s *Stats) typeFor(typ string) *typeSeries {
	ts := s.byType[typ]
	if ts == nil {
		ts = &typeSeries{}
		for i := range ts.by {
			ts.by[i] = map[string]*series{}
		}
		s.byType[strings.Clone(typ)] = ts
	}
	return ts
}

// seriesFor returns the series of k, creating it; a new value beyond
// MaxValues becomes Other (counted when count says so).
func (s *Stats) seriesFor(k key, count bool) *series {
	if sr := s.series[k]; sr != nil {
		return sr
	}
	if k.dim != 0 {
		vals := s.values[k.dim]
		if _, known := vals[k.val]; !known && len(vals) >= s.opts.MaxValues {
			if count {
				s.overflow++
			}
			k.val = Other
			if sr := s.series[k]; sr != nil {
				return sr
			}
		}
		// The value may be a slice of a larger string the producer built;
		// keep only its own bytes.
		k.val = strings.Clone(k.val)
		vals[k.val]++
	}
	k.typ = strings.Clone(k.typ)
	sr := &series{
		k:    k,
		min:  ring{width: 60, chunks: make([]*chunk, s.minuteChunks())},
		hour: ring{width: 24, chunks: make([]*chunk, s.hourChunks())},
	}
	s.series[k] = sr
	s.typeFor(k.typ).by[k.dim][k.val] = sr
	return sr
}

// pos is where one unit lies in a ring: its chunk's tag, the chunk's slot
// and the unit's offset in the chunk. Handle computes it once per event for
// all its series.
type pos struct {
	tag, slot, off int64
}

func (r *ring) pos(u int64) pos {
	tag := floorDiv(u, r.width)
	return pos{tag, floorMod(tag, int64(len(r.chunks))), u - tag*r.width}
}

// add counts one at p. A unit older than what the ring holds is dropped; a
// newer one takes over its slot.
func (r *ring) add(s *Stats, kind byte, k key, p pos) {
	c := r.chunks[p.slot]
	switch {
	case c == nil:
		c = &chunk{tag: p.tag, n: make([]uint32, r.width)}
		r.chunks[p.slot] = c
	case c.tag == p.tag:
	case c.tag > p.tag:
		return
	default:
		if c.saved {
			s.dels = append(s.dels, chunkKey(kind, c.tag, k))
		}
		clear(c.n)
		c.tag, c.saved = p.tag, false
	}
	c.n[p.off]++
	c.dirty = true
}

// get returns the count at unit u, zero when the ring does not hold it.
func (r *ring) get(u int64) uint64 {
	tag := floorDiv(u, r.width)
	c := r.chunks[floorMod(tag, int64(len(r.chunks)))]
	if c == nil || c.tag != tag {
		return 0
	}
	return uint64(c.n[u-tag*r.width])
}

// reap drops the chunks that left the ring's retention, whose tag is before
// oldest.
func (r *ring) reap(s *Stats, kind byte, k key, oldest int64) (live int) {
	for i, c := range r.chunks {
		if c == nil {
			continue
		}
		if c.tag < oldest {
			if c.saved {
				s.dels = append(s.dels, chunkKey(kind, c.tag, k))
			}
			r.chunks[i] = nil
			continue
		}
		live++
	}
	return live
}

// oldestHour and oldestDay are the first tags the rings keep at now.
func (s *Stats) oldestHour(now time.Time) int64 {
	return floorDiv(now.Unix(), 3600) - int64(s.minuteChunks()-1)
}

func (s *Stats) oldestDay(now time.Time) int64 {
	return floorDiv(now.Unix(), 86400) - int64(s.hourChunks()-1)
}

// reap forgets old chunks and the series left empty (the caller holds s.mu).
func (s *Stats) reap(now time.Time) {
	oh, od := s.oldestHour(now), s.oldestDay(now)
	for k, sr := range s.series {
		live := sr.min.reap(s, kindMinute, k, oh) + sr.hour.reap(s, kindHour, k, od)
		if live == 0 {
			delete(s.series, k)
			if ts := s.byType[k.typ]; ts != nil {
				delete(ts.by[k.dim], k.val)
			}
			if k.dim != 0 {
				vals := s.values[k.dim]
				if vals[k.val]--; vals[k.val] <= 0 {
					delete(vals, k.val)
				}
			}
		}
	}
	cutoff := now.UTC().AddDate(0, 0, -s.opts.DaysKeep).Format("2006-01-02")
	for k, h := range s.days {
		if len(h.days) == 0 || h.days[len(h.days)-1].Date < cutoff {
			delete(s.days, k)
			s.dels = append(s.dels, warmupKey(k))
		}
	}
}

// Info is what Stats holds and has done.
type Info struct {
	Series   int    `json:"series"`
	Chunks   int    `json:"chunks"`
	Overflow uint64 `json:"overflow"` // events counted under Other
	Error    string `json:"error,omitempty"`
}

// Info reports the size of the aggregate and the last flush error.
func (s *Stats) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := Info{Series: len(s.series), Overflow: s.overflow}
	for _, sr := range s.series {
		for _, r := range []*ring{&sr.min, &sr.hour} {
			for _, c := range r.chunks {
				if c != nil {
					in.Chunks++
				}
			}
		}
	}
	if s.lastErr != nil {
		in.Error = s.lastErr.Error()
	}
	return in
}

// Close stops the flusher after a last flush. Events handled after Close are
// counted in memory only.
func (s *Stats) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.done
	return s.Flush()
}

func (s *Stats) flusher() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.safeFlush()
		}
	}
}

// safeFlush keeps the flusher alive through a panic, which it logs.
func (s *Stats) safeFlush() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("stats flush panicked", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	if err := s.Flush(); err != nil {
		s.log.Error("writing statistics failed", "err", err)
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
