package dashboard

import (
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// LaneCount is the number of messages waiting in one lane (a pool and a
// destination site) for sending capacity.
type LaneCount struct {
	Lane    string `json:"lane"`
	Pool    string `json:"pool"`
	Site    string `json:"site"`
	Waiting int    `json:"waiting"`
}

// SiteCount sums the lanes of one site over every pool.
type SiteCount struct {
	Site    string `json:"site"`
	Waiting int    `json:"waiting"`
}

// QueueSnapshot is the queue's counts as of one moment.
type QueueSnapshot struct {
	Now    time.Time `json:"now"` // when it was served
	At     time.Time `json:"as_of"`
	TookMs float64   `json:"took_ms"` // how long counting took
	Total  int       `json:"total"`
	Held   int       `json:"held"`
	// Lanes and Sites are the messages waiting for warm-up or shaping
	// capacity, by lane and by destination site (provider or MX set).
	Lanes []LaneCount `json:"lanes"`
	Sites []SiteCount `json:"sites"`
	// Domains is the pending recipients by recipient domain, most first;
	// DomainsAvailable is false when the queue cannot count them cheaply.
	Domains          []DomainCount `json:"domains"`
	DomainsAvailable bool          `json:"domains_available"`
	Error            string        `json:"error,omitempty"`
}

// maxDomains is how many domains a snapshot lists.
const maxDomains = 100

// queueCache counts the queue at most once per refresh, on one goroutine,
// whatever the number of viewers: readers get the last snapshot at once, and
// a stale one starts a recount in the background.
type queueCache struct {
	src     Sources
	refresh time.Duration
	log     *slog.Logger

	mu       sync.Mutex
	snap     *QueueSnapshot
	taken    time.Time // wall clock, for refresh
	counting bool
	ready    chan struct{} // closed when the first count is done
}

func newQueueCache(src Sources, refresh time.Duration, log *slog.Logger) *queueCache {
	return &queueCache{src: src, refresh: refresh, log: log, ready: make(chan struct{})}
}

// get returns the latest snapshot, waiting only for the very first count.
func (c *queueCache) get() *QueueSnapshot {
	c.mu.Lock()
	if !c.counting && (c.snap == nil || time.Since(c.taken) >= c.refresh) {
		c.counting = true
		go c.count()
	}
	snap := c.snap
	c.mu.Unlock()
	if snap != nil {
		return snap
	}
	<-c.ready
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

func (c *queueCache) count() {
	snap := &QueueSnapshot{Lanes: []LaneCount{}, Sites: []SiteCount{}, Domains: []DomainCount{}}
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("counting the queue panicked", "panic", p, "stack", string(debug.Stack()))
			snap.Error = "counting the queue failed"
		}
		snap.TookMs = float64(time.Since(start).Microseconds()) / 1000
		c.mu.Lock()
		first := c.snap == nil
		c.snap, c.taken, c.counting = snap, time.Now(), false
		c.mu.Unlock()
		if first {
			close(c.ready)
		}
	}()
	snap.At = c.src.Clock.Now()
	if c.src.Queue == nil {
		snap.Error = "the queue is not available"
		return
	}
	var err error
	if snap.Total, snap.Held, err = c.src.Queue.Count(); err != nil {
		snap.Error = "counting the queue failed"
		c.log.Error("counting the queue failed", "err", err)
	}
	lanes, err := c.src.Queue.Lanes()
	if err != nil {
		snap.Error = "listing the lanes failed"
		c.log.Error("listing the queue's lanes failed", "err", err)
	}
	sites := map[string]int{}
	for _, ln := range lanes {
		n := c.src.Queue.CountWaiting(ln)
		if n == 0 {
			continue
		}
		// A lane is "<pool>|<site>"; pool names hold no "|".
		pool, site, ok := strings.Cut(ln, "|")
		if !ok {
			pool, site = "", ln
		}
		snap.Lanes = append(snap.Lanes, LaneCount{Lane: ln, Pool: pool, Site: site, Waiting: n})
		sites[site] += n
	}
	slices.SortFunc(snap.Lanes, func(a, b LaneCount) int { return b.Waiting - a.Waiting })
	for s, n := range sites {
		snap.Sites = append(snap.Sites, SiteCount{s, n})
	}
	slices.SortFunc(snap.Sites, func(a, b SiteCount) int {
		if a.Waiting != b.Waiting {
			return b.Waiting - a.Waiting
		}
		return strings.Compare(a.Site, b.Site)
	})
	if c.src.PendingByDomain != nil {
		d, err := c.src.PendingByDomain(maxDomains)
		if err != nil {
			c.log.Error("counting pending recipients by domain failed", "err", err)
		} else {
			snap.Domains, snap.DomainsAvailable = d, true
			if snap.Domains == nil {
				snap.Domains = []DomainCount{}
			}
		}
	}
}
