// Package resolve is kiln's DNS resolver: MX routing for delivery, and the
// TXT, address and PTR lookups that DKIM, SPF, DMARC and forward-confirmed
// reverse DNS need.
//
// It talks DNS itself (miekg/dns) instead of using Go's resolver because an
// MTA must act on distinctions that net.Resolver hides: NXDOMAIN versus NODATA
// (implicit MX applies only to the second), and REFUSED, which Go reports as
// a permanent error although it only says that a resolver is misconfigured.
// Here only an answer that proves the domain cannot receive mail is
// permanent: NXDOMAIN, a null MX (RFC 7505), or mail hosts without any
// address. SERVFAIL, REFUSED, timeouts and network errors are temporary, so a
// broken resolver defers mail instead of bouncing it.
//
// Answers are cached by (name, type) for their TTL, held between a floor and
// a ceiling; negative answers are cached per RFC 2308 (the SOA's TTL and
// MINIMUM, capped short); server failures for a few seconds. Concurrent
// lookups of one name share one query. Time comes from a clock.Clock so tests
// can expire entries.
//
// The delivery engine calls LookupMX and, on error, turns the *Error into
// the recipient's outcome with (*Error).Reply.
package resolve

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"kiln/internal/clock"
)

// Config tunes a Resolver. The zero value is usable: the system's resolvers
// and the defaults below.
type Config struct {
	// Servers are the resolvers to ask, as host:port (a missing port means
	// 53), tried in order. Empty: the nameservers of /etc/resolv.conf, or
	// 127.0.0.1:53 when it names none.
	Servers []string
	// ResolvConf is the file read when Servers is empty; default
	// /etc/resolv.conf.
	ResolvConf string
	// Timeout for one query to one server before the next is tried;
	// default 5s.
	Timeout time.Duration
	// Attempts is how many rounds over all servers a query gets; default 2.
	Attempts int
	// MaxMXHosts caps how many MX hosts LookupMX resolves and returns,
	// after sorting by preference; default 10.
	MaxMXHosts int
	// MinTTL and MaxTTL bound how long a positive answer is cached, whatever
	// its TTL says; defaults 30s and 1h.
	MinTTL, MaxTTL time.Duration
	// MaxNegativeTTL caps the caching of NXDOMAIN and NODATA answers;
	// default 5m. Negative answers without an SOA are not cached (RFC 2308
	// §5). A negative value turns negative caching off.
	MaxNegativeTTL time.Duration
	// FailTTL is how long a temporary failure is remembered, so a burst of
	// deliveries to a broken domain asks once; default 5s (RFC 2308 §7.1
	// allows up to five minutes). A negative value turns it off.
	FailTTL time.Duration
	// CacheSize bounds the number of cached answers; the least recently used
	// go first. Default 10000.
	CacheSize int
	// UDPSize is the EDNS0 buffer size advertised; default 1232, the size
	// that avoids IP fragmentation. Larger answers come over TCP.
	UDPSize uint16
	// Clock drives cache expiry; default the wall clock.
	Clock clock.Clock
}

// Resolver answers lookups through a cache. It is safe for concurrent use.
type Resolver struct {
	cfg     Config
	servers []string
	udp     *dns.Client
	tcp     *dns.Client
	clock   clock.Clock

	mu       sync.Mutex
	cache    map[cacheKey]*list.Element
	lru      *list.List
	inflight map[cacheKey]*call

	queries, hits, misses atomic.Int64
}

// Stats are counters for metrics.
type Stats struct {
	Queries int64 // DNS messages sent (each server tried and each TCP retry counts)
	Hits    int64 // lookups answered from the cache (or by a query in flight)
	Misses  int64 // lookups that needed the network
	Entries int   // answers in the cache now
}

type cacheKey struct {
	name  string
	qtype uint16
}

// answer is one (name, type) result as cached: records of the type asked for,
// owned by the end of any CNAME chain, or a negative or failed result.
type answer struct {
	rcode   int           // RcodeSuccess (possibly NODATA) or RcodeNameError
	rrs     []dns.RR      // never modified once cached
	target  string        // where the CNAME chain ended (the name itself without one)
	err     error         // a temporary failure
	ttl     time.Duration // as the answer gave it; negative: do not cache
	expires time.Time
}

type cacheEntry struct {
	key cacheKey
	ans *answer
}

type call struct {
	done chan struct{}
	ans  *answer
}

// New makes a Resolver from cfg, filling in defaults.
func New(cfg Config) (*Resolver, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 2
	}
	if cfg.MaxMXHosts <= 0 {
		cfg.MaxMXHosts = 10
	}
	if cfg.MinTTL <= 0 {
		cfg.MinTTL = 30 * time.Second
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.MaxTTL < cfg.MinTTL {
		cfg.MaxTTL = cfg.MinTTL
	}
	if cfg.MaxNegativeTTL == 0 {
		cfg.MaxNegativeTTL = 5 * time.Minute
	}
	if cfg.FailTTL == 0 {
		cfg.FailTTL = 5 * time.Second
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.UDPSize == 0 {
		cfg.UDPSize = 1232
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	servers, err := serverList(cfg.Servers, cfg.ResolvConf)
	if err != nil {
		return nil, err
	}
	return &Resolver{
		cfg:      cfg,
		servers:  servers,
		udp:      &dns.Client{Net: "udp", UDPSize: cfg.UDPSize, Timeout: cfg.Timeout},
		tcp:      &dns.Client{Net: "tcp", Timeout: cfg.Timeout},
		clock:    cfg.Clock,
		cache:    make(map[cacheKey]*list.Element),
		lru:      list.New(),
		inflight: make(map[cacheKey]*call),
	}, nil
}

// serverList applies the defaults for the list of servers.
func serverList(configured []string, resolvConf string) ([]string, error) {
	var out []string
	for _, s := range configured {
		s = strings.TrimSpace(s)
		if _, _, err := net.SplitHostPort(s); err != nil {
			if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") { // bare IPv6
				s = net.JoinHostPort(s, "53")
			} else if !strings.Contains(s, ":") {
				s = net.JoinHostPort(s, "53")
			} else {
				return nil, fmt.Errorf("resolve: DNS server %q: want host:port", s)
			}
		}
		out = append(out, s)
	}
	if len(out) > 0 {
		return out, nil
	}
	if cc, err := dns.ClientConfigFromFile(resolvConf); err == nil {
		for _, s := range cc.Servers {
			out = append(out, net.JoinHostPort(s, cc.Port))
		}
	}
	if len(out) == 0 {
		out = []string{"127.0.0.1:53"}
	}
	return out, nil
}

// Servers returns the resolvers in use, in the order they are tried.
func (r *Resolver) Servers() []string { return append([]string(nil), r.servers...) }

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	n := r.lru.Len()
	r.mu.Unlock()
	return Stats{Queries: r.queries.Load(), Hits: r.hits.Load(), Misses: r.misses.Load(), Entries: n}
}

// Flush empties the cache.
func (r *Resolver) Flush() {
	r.mu.Lock()
	clear(r.cache)
	r.lru.Init()
	r.mu.Unlock()
}

// lookup returns the records of type qtype for the canonical name, through
// the cache, following a CNAME chain that the server left unfinished.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) (*answer, error) {
	for range 8 {
		a, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, err
		}
		if a.err != nil || a.rcode != dns.RcodeSuccess || len(a.rrs) > 0 || a.target == name {
			return a, nil
		}
		name = a.target // a CNAME whose target the server did not resolve
	}
	return &answer{err: errors.New("CNAME chain too long")}, nil
}

// query answers one (name, type) from the cache or, once for all concurrent
// callers, from the network. The error is only the caller's context ending;
// DNS failures are in answer.err.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*answer, error) {
	k := cacheKey{name, qtype}
	r.mu.Lock()
	if el, ok := r.cache[k]; ok {
		e := el.Value.(*cacheEntry)
		if r.clock.Now().Before(e.ans.expires) {
			r.lru.MoveToFront(el)
			r.mu.Unlock()
			r.hits.Add(1)
			return e.ans, nil
		}
		r.lru.Remove(el)
		delete(r.cache, k)
	}
	c, ok := r.inflight[k]
	if !ok {
		c = &call{done: make(chan struct{})}
		r.inflight[k] = c
		r.misses.Add(1)
		// The query runs on its own, bounded by the resolver's own timeouts,
		// so that one caller giving up does not fail the others waiting on it.
		go r.fetch(k, c)
	} else {
		r.hits.Add(1)
	}
	r.mu.Unlock()
	select {
	case <-c.done:
		return c.ans, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *Resolver) fetch(k cacheKey, c *call) {
	budget := r.cfg.Timeout*time.Duration(r.cfg.Attempts*len(r.servers)*2) + time.Second
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	a := r.exchange(ctx, k.name, k.qtype)

	r.mu.Lock()
	delete(r.inflight, k)
	if ttl := r.cacheTime(a); ttl > 0 {
		a.expires = r.clock.Now().Add(ttl)
		r.cache[k] = r.lru.PushFront(&cacheEntry{key: k, ans: a})
		for r.lru.Len() > r.cfg.CacheSize {
			old := r.lru.Back()
			r.lru.Remove(old)
			delete(r.cache, old.Value.(*cacheEntry).key)
		}
	}
	r.mu.Unlock()
	c.ans = a
	close(c.done)
}

// cacheTime is how long an answer may be kept: its own TTL within the
// configured bounds.
func (r *Resolver) cacheTime(a *answer) time.Duration {
	if a.err != nil {
		return max(r.cfg.FailTTL, 0)
	}
	ttl := a.ttl
	if a.rcode != dns.RcodeSuccess || len(a.rrs) == 0 {
		if ttl < 0 || r.cfg.MaxNegativeTTL < 0 {
			return 0
		}
		return min(ttl, r.cfg.MaxNegativeTTL)
	}
	return min(max(ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// exchange asks the servers in turn, Attempts rounds, until one gives a
// usable answer: NOERROR or NXDOMAIN. SERVFAIL and REFUSED from one server
// send the query to the next; only when all fail is the result a failure.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) *answer {
	var lastErr error
	for range r.cfg.Attempts {
		for _, srv := range r.servers {
			resp, err := r.exchangeOne(ctx, srv, name, qtype, true)
			if err == nil && resp.Rcode == dns.RcodeFormatError {
				// An old server that does not speak EDNS0 (RFC 6891 §7).
				resp, err = r.exchangeOne(ctx, srv, name, qtype, false)
			}
			if err != nil {
				lastErr = err
				if ctx.Err() != nil {
					return &answer{err: lastErr}
				}
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return parse(resp, name, qtype)
			}
			lastErr = &RcodeError{Rcode: resp.Rcode, Server: srv}
		}
	}
	if lastErr == nil {
		lastErr = errors.New("no DNS server to ask")
	}
	return &answer{err: lastErr}
}

// exchangeOne sends one query to one server over UDP, and again over TCP when
// the answer comes back truncated.
func (r *Resolver) exchangeOne(ctx context.Context, srv, name string, qtype uint16, edns bool) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	if edns {
		m.SetEdns0(r.cfg.UDPSize, false)
	}
	qctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	r.queries.Add(1)
	resp, _, err := r.udp.ExchangeContext(qctx, m, srv)
	if err == nil && resp.Truncated {
		r.queries.Add(1)
		resp, _, err = r.tcp.ExchangeContext(qctx, m, srv)
	}
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		return nil, errors.New("truncated answer over TCP from " + srv)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, m.Question[0].Name) || resp.Question[0].Qtype != qtype {
		return nil, errors.New("answer from " + srv + " does not match the question")
	}
	return resp, nil
}

// parse keeps what an answer says about (name, qtype): the records of that
// type at the end of the CNAME chain, or a negative result with the TTL RFC
// 2308 §5 gives it (the SOA's TTL capped by its MINIMUM; none without an SOA).
func parse(resp *dns.Msg, name string, qtype uint16) *answer {
	a := &answer{rcode: resp.Rcode, target: name}
	ttl := uint32(1<<31 - 1)
	for range 10 {
		next := ""
		for _, rr := range resp.Answer {
			h := rr.Header()
			if h.Class != dns.ClassINET || !strings.EqualFold(strings.TrimSuffix(h.Name, "."), a.target) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				a.rrs = append(a.rrs, rr)
				ttl = min(ttl, h.Ttl)
			case h.Rrtype == dns.TypeCNAME && qtype != dns.TypeCNAME && next == "":
				next = strings.ToLower(strings.TrimSuffix(rr.(*dns.CNAME).Target, "."))
				ttl = min(ttl, h.Ttl)
			}
		}
		if len(a.rrs) > 0 || next == "" || next == a.target {
			break
		}
		a.target = next
	}
	if len(a.rrs) > 0 && a.rcode == dns.RcodeSuccess {
		a.ttl = time.Duration(ttl) * time.Second
		return a
	}
	a.rrs = nil
	neg := time.Duration(-1)
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			neg = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			break
		}
	}
	if a.target != name && a.rcode == dns.RcodeSuccess {
		// A CNAME whose target the server left for us to resolve: cache the
		// pointer itself for its TTL.
		neg = time.Duration(ttl) * time.Second
	}
	a.ttl = neg
	return a
}
