// Package fakedns is an in-process DNS server for tests: a programmable zone
// served over UDP and TCP on a random 127.0.0.1 port, so that kiln's resolver,
// MX routing and authentication checks run against real DNS packets without
// touching the network.
//
// The server behaves like the recursive resolver kiln would normally talk to:
// it answers every name it is asked about, chases CNAMEs inside its zone, puts
// an SOA in the authority section of negative answers (so RFC 2308 negative
// caching can be tested), and truncates UDP answers that do not fit the
// client's buffer (so TCP fallback can be tested). A name exists when it holds
// at least one record; asking for a type it does not hold gives NODATA, asking
// for a name it does not know gives NXDOMAIN.
//
// Faults can be set per name or per name and type: NXDOMAIN, SERVFAIL, REFUSED,
// NODATA, Truncate (UDP answers carry TC and nothing else) and Timeout (no
// answer at all). Every query is counted per name and type so tests can assert
// that a cache did its job.
//
//	s := fakedns.Start(t)
//	s.AddMX("example.test", 10, "mx.example.test")
//	s.AddA("mx.example.test", "127.0.0.2")
//	s.SetFault("broken.test", fakedns.ServFail)
//	r, _ := resolve.New(resolve.Config{Servers: []string{s.Addr()}})
//
// Every method is safe for concurrent use while the server is answering.
package fakedns

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault is what the server does instead of answering from its zone.
type Fault int

const (
	// None answers from the zone.
	None Fault = iota
	// NXDomain answers RCODE 3: the name does not exist.
	NXDomain
	// ServFail answers RCODE 2: the server failed.
	ServFail
	// Refused answers RCODE 5: the server will not answer (a misconfigured
	// resolver); kiln must treat it as temporary.
	Refused
	// NoData answers NOERROR with an empty answer section: the name exists
	// but holds no record of the type asked for.
	NoData
	// Timeout sends nothing back: the client must time out.
	Timeout
	// Truncate answers UDP queries with the TC bit and no records, as a server
	// does when the answer does not fit; TCP queries get the real answer.
	Truncate
)

func (f Fault) String() string {
	switch f {
	case None:
		return "none"
	case NXDomain:
		return "NXDOMAIN"
	case ServFail:
		return "SERVFAIL"
	case Refused:
		return "REFUSED"
	case NoData:
		return "NODATA"
	case Timeout:
		return "timeout"
	case Truncate:
		return "truncate"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// DefaultTTL is the TTL of records added without one.
const DefaultTTL = 300

type rrKey struct {
	name  string // canonical: lowercase, fully qualified
	qtype uint16
}

// Server is a running fake DNS server. Create it with Start or Listen.
type Server struct {
	udp, tcp *dns.Server
	addr     string

	mu         sync.RWMutex
	records    map[rrKey][]dns.RR
	names      map[string]int // records held per name, to tell NXDOMAIN from NODATA
	faults     map[rrKey]Fault
	ttl        uint32
	negTTL     uint32
	delay      time.Duration
	queries    map[rrKey]int
	total      int
	closeOnce  sync.Once
	closeError error
}

// Start starts a server on a random 127.0.0.1 port, UDP and TCP, and stops it
// when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fakedns: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Listen starts a server on addr (host:port) for both UDP and TCP. With port
// 0 a free port is chosen that is free for both.
func Listen(addr string) (*Server, error) {
	s := &Server{
		records: make(map[rrKey][]dns.RR),
		names:   make(map[string]int),
		faults:  make(map[rrKey]Fault),
		queries: make(map[rrKey]int),
		ttl:     DefaultTTL,
		negTTL:  60,
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The UDP and TCP sockets must share a port; with port 0 the kernel picks
	// the UDP one and the TCP one may happen to be taken, so try a few times.
	for range 20 {
		pc, err = net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if !strings.HasSuffix(addr, ":0") {
			return nil, err
		}
	}
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(s.serve)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
	}
	return s, nil
}

// Addr is the host:port to point a resolver at (the same for UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		err1 := s.udp.Shutdown()
		err2 := s.tcp.Shutdown()
		if err1 != nil {
			s.closeError = err1
		} else {
			s.closeError = err2
		}
	})
	return s.closeError
}

// canon returns name in canonical form: lowercase and fully qualified.
func canon(name string) string { return dns.CanonicalName(name) }

// SetDefaultTTL sets the TTL, in seconds, of records added from now on
// without an explicit TTL.
func (s *Server) SetDefaultTTL(ttl uint32) {
	s.mu.Lock()
	s.ttl = ttl
	s.mu.Unlock()
}

// SetNegativeTTL sets the TTL and MINIMUM of the SOA sent with negative
// answers (NXDOMAIN, NODATA), which RFC 2308 §5 makes the negative cache time.
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	s.negTTL = ttl
	s.mu.Unlock()
}

// SetDelay makes every answer wait d before it is sent (0 turns it off).
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Add adds records written in zone-file syntax, one per string, such as
// "example.test. 60 IN MX 10 mx.example.test.". A record without a TTL gets
// the default TTL. It panics on a syntax error: the zone is test code.
func (s *Server) Add(records ...string) {
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil || rr == nil {
			panic(fmt.Sprintf("fakedns: bad record %q: %v", text, err))
		}
		s.AddRR(rr)
	}
}

// AddRR adds one record as is (its TTL included).
func (s *Server) AddRR(rr dns.RR) {
	h := rr.Header()
	h.Name = canon(h.Name)
	if h.Class == 0 {
		h.Class = dns.ClassINET
	}
	k := rrKey{h.Name, h.Rrtype}
	s.mu.Lock()
	s.records[k] = append(s.records[k], rr)
	s.names[h.Name]++
	s.mu.Unlock()
}

func (s *Server) hdr(name string, t uint16) dns.RR_Header {
	s.mu.RLock()
	ttl := s.ttl
	s.mu.RUnlock()
	return dns.RR_Header{Name: canon(name), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// AddMX adds an MX record for domain. A host of "." is a null MX.
func (s *Server) AddMX(domain string, pref uint16, host string) {
	s.AddRR(&dns.MX{Hdr: s.hdr(domain, dns.TypeMX), Preference: pref, Mx: canon(host)})
}

// AddNullMX publishes "MX 0 ." for domain: it accepts no mail (RFC 7505).
func (s *Server) AddNullMX(domain string) { s.AddMX(domain, 0, ".") }

// AddA adds an address record for host: A for an IPv4 address, AAAA for IPv6.
// It panics on a malformed address.
func (s *Server) AddA(host, ip string) {
	a := netip.MustParseAddr(ip)
	if a.Is4() {
		s.AddRR(&dns.A{Hdr: s.hdr(host, dns.TypeA), A: net.IP(a.AsSlice())})
		return
	}
	s.AddRR(&dns.AAAA{Hdr: s.hdr(host, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
}

// AddAAAA adds an AAAA record; it is AddA under a name that reads well in tests.
func (s *Server) AddAAAA(host, ip string) { s.AddA(host, ip) }

// AddTXT adds one TXT record made of parts; a part longer than 255 bytes is
// split into several character-strings, as DNS requires (a long DKIM key).
func (s *Server) AddTXT(name string, parts ...string) {
	var strs []string
	for _, p := range parts {
		for len(p) > 255 {
			strs = append(strs, p[:255])
			p = p[255:]
		}
		strs = append(strs, p)
	}
	s.AddRR(&dns.TXT{Hdr: s.hdr(name, dns.TypeTXT), Txt: strs})
}

// AddPTR adds a PTR record for ip (IPv4 or IPv6) pointing at name.
func (s *Server) AddPTR(ip, name string) {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(fmt.Sprintf("fakedns: bad address %q: %v", ip, err))
	}
	s.AddRR(&dns.PTR{Hdr: s.hdr(rev, dns.TypePTR), Ptr: canon(name)})
}

// AddCNAME makes alias a CNAME for target.
func (s *Server) AddCNAME(alias, target string) {
	s.AddRR(&dns.CNAME{Hdr: s.hdr(alias, dns.TypeCNAME), Target: canon(target)})
}

// Remove deletes every record of name (all types; so the name stops existing
// unless other records are added again).
func (s *Server) Remove(name string) {
	name = canon(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.records {
		if k.name == name {
			delete(s.records, k)
		}
	}
	delete(s.names, name)
}

// SetFault makes every query for name (any type) fail with f; None clears it.
func (s *Server) SetFault(name string, f Fault) { s.SetTypeFault(name, 0, f) }

// SetTypeFault makes queries for name of type qtype (dns.TypeMX, ...) fail
// with f; None clears it. A fault for one type wins over a fault for all.
func (s *Server) SetTypeFault(name string, qtype uint16, f Fault) {
	k := rrKey{canon(name), qtype}
	s.mu.Lock()
	if f == None {
		delete(s.faults, k)
	} else {
		s.faults[k] = f
	}
	s.mu.Unlock()
}

// Queries reports how many queries for name of type qtype arrived (UDP and
// TCP both count; a truncated UDP answer followed by a TCP retry is two).
func (s *Server) Queries(name string, qtype uint16) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queries[rrKey{canon(name), qtype}]
}

// TotalQueries reports how many queries arrived in all.
func (s *Server) TotalQueries() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.total
}

// ResetCounts sets every query counter back to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	clear(s.queries)
	s.total = 0
	s.mu.Unlock()
}

// serve answers one query.
func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := canon(q.Name)
	_, isUDP := w.RemoteAddr().(*net.UDPAddr)

	s.mu.Lock()
	s.queries[rrKey{name, q.Qtype}]++
	s.total++
	fault, ok := s.faults[rrKey{name, q.Qtype}]
	if !ok {
		fault = s.faults[rrKey{name, 0}]
	}
	delay := s.delay
	s.mu.Unlock()

	if fault == Timeout {
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = false
	m.RecursionAvailable = true
	switch fault {
	case ServFail:
		m.Rcode = dns.RcodeServerFailure
	case Refused:
		m.Rcode = dns.RcodeRefused
	case NXDomain:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa(name)}
	case NoData:
		m.Ns = []dns.RR{s.soa(name)}
	case Truncate:
		if isUDP {
			m.Truncated = true
			break
		}
		s.answer(m, name, q.Qtype)
	default:
		s.answer(m, name, q.Qtype)
	}
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer fills m from the zone, chasing CNAMEs the way a recursive resolver
// does: the chain and the final records all go in the answer section.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for range 8 {
		if rrs := s.records[rrKey{name, qtype}]; len(rrs) > 0 {
			for _, rr := range rrs {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
			return
		}
		if qtype != dns.TypeCNAME {
			if c := s.records[rrKey{name, dns.TypeCNAME}]; len(c) > 0 {
				m.Answer = append(m.Answer, dns.Copy(c[0]))
				name = c[0].(*dns.CNAME).Target
				continue
			}
		}
		if s.names[name] == 0 {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = []dns.RR{s.soaLocked(name)}
		return
	}
	m.Rcode = dns.RcodeServerFailure // a CNAME loop
}

func (s *Server) soa(name string) dns.RR {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.soaLocked(name)
}

// soaLocked is the SOA put in a negative answer: the zone is taken to be the
// parent of the name, which is all RFC 2308 caching looks at.
func (s *Server) soaLocked(name string) dns.RR {
	zone := name
	if i := strings.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
		zone = name[i+1:]
	}
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negTTL},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.negTTL,
	}
}
