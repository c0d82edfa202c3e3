package fakedns

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func query(t *testing.T, s *Server, net, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m, err := exchange(s, net, name, qtype, time.Second)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return m
}

func exchange(s *Server, net, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: net, Timeout: timeout}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	m, _, err := c.Exchange(q, s.Addr())
	return m, err
}

func TestRecordsOverUDPAndTCP(t *testing.T) {
	s := Start(t)
	s.AddMX("Example.TEST", 10, "mx1.example.test")
	s.AddMX("example.test", 20, "mx2.example.test")
	s.AddA("mx1.example.test", "127.0.0.2")
	s.AddA("mx1.example.test", "::1")
	s.AddTXT("example.test", "v=spf1 -all")
	s.AddPTR("127.0.0.2", "mx1.example.test")
	s.AddNullMX("nomail.test")

	for _, netw := range []string{"udp", "tcp"} {
		m := query(t, s, netw, "example.test", dns.TypeMX)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 {
			t.Fatalf("%s MX: %v", netw, m)
		}
		if mx := m.Answer[0].(*dns.MX); mx.Preference != 10 || mx.Mx != "mx1.example.test." || mx.Hdr.Ttl != DefaultTTL {
			t.Fatalf("%s MX[0] = %v", netw, mx)
		}
		m = query(t, s, netw, "mx1.example.test", dns.TypeA)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "127.0.0.2" {
			t.Fatalf("%s A: %v", netw, m.Answer)
		}
		m = query(t, s, netw, "mx1.example.test", dns.TypeAAAA)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.AAAA).AAAA.String() != "::1" {
			t.Fatalf("%s AAAA: %v", netw, m.Answer)
		}
		m = query(t, s, netw, "example.test", dns.TypeTXT)
		if len(m.Answer) != 1 || strings.Join(m.Answer[0].(*dns.TXT).Txt, "") != "v=spf1 -all" {
			t.Fatalf("%s TXT: %v", netw, m.Answer)
		}
		m = query(t, s, netw, "2.0.0.127.in-addr.arpa", dns.TypePTR)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.PTR).Ptr != "mx1.example.test." {
			t.Fatalf("%s PTR: %v", netw, m.Answer)
		}
		m = query(t, s, netw, "nomail.test", dns.TypeMX)
		if len(m.Answer) != 1 || m.Answer[0].(*dns.MX).Mx != "." || m.Answer[0].(*dns.MX).Preference != 0 {
			t.Fatalf("%s null MX: %v", netw, m.Answer)
		}
	}
}

func TestNXDomainAndNoDataCarrySOA(t *testing.T) {
	s := Start(t)
	s.AddA("host.example.test", "127.0.0.1")
	s.SetNegativeTTL(42)

	m := query(t, s, "udp", "missing.example.test", dns.TypeMX)
	if m.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name: rcode %s", dns.RcodeToString[m.Rcode])
	}
	if len(m.Ns) != 1 || m.Ns[0].(*dns.SOA).Minttl != 42 || m.Ns[0].Header().Ttl != 42 {
		t.Fatalf("NXDOMAIN authority: %v", m.Ns)
	}
	m = query(t, s, "udp", "host.example.test", dns.TypeMX)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || len(m.Ns) != 1 {
		t.Fatalf("NODATA: %v", m)
	}
}

func TestCNAMEIsChased(t *testing.T) {
	s := Start(t)
	s.AddCNAME("alias.example.test", "real.example.test")
	s.AddA("real.example.test", "127.0.0.3")
	s.AddCNAME("dangling.example.test", "nowhere.example.test")

	m := query(t, s, "udp", "alias.example.test", dns.TypeA)
	if len(m.Answer) != 2 {
		t.Fatalf("answer: %v", m.Answer)
	}
	if _, ok := m.Answer[0].(*dns.CNAME); !ok {
		t.Fatalf("first record is %T", m.Answer[0])
	}
	if a := m.Answer[1].(*dns.A); a.A.String() != "127.0.0.3" || a.Hdr.Name != "real.example.test." {
		t.Fatalf("second record: %v", a)
	}
	m = query(t, s, "udp", "dangling.example.test", dns.TypeA)
	if m.Rcode != dns.RcodeNameError || len(m.Answer) != 1 {
		t.Fatalf("dangling CNAME: %v", m)
	}
	m = query(t, s, "udp", "alias.example.test", dns.TypeCNAME)
	if len(m.Answer) != 1 {
		t.Fatalf("CNAME query: %v", m.Answer)
	}
}

func TestFaults(t *testing.T) {
	s := Start(t)
	s.AddMX("example.test", 10, "mx.example.test")
	s.AddA("example.test", "127.0.0.1")
	for _, tc := range []struct {
		fault Fault
		rcode int
	}{
		{NXDomain, dns.RcodeNameError},
		{ServFail, dns.RcodeServerFailure},
		{Refused, dns.RcodeRefused},
		{NoData, dns.RcodeSuccess},
	} {
		s.SetFault("example.test", tc.fault)
		m := query(t, s, "udp", "example.test", dns.TypeMX)
		if m.Rcode != tc.rcode || len(m.Answer) != 0 {
			t.Errorf("%v: rcode %s, %d answers", tc.fault, dns.RcodeToString[m.Rcode], len(m.Answer))
		}
	}
	s.SetFault("example.test", Timeout)
	if _, err := exchange(s, "udp", "example.test", dns.TypeMX, 200*time.Millisecond); err == nil {
		t.Error("timeout fault: got an answer")
	}
	s.SetFault("example.test", None)
	if m := query(t, s, "udp", "example.test", dns.TypeMX); len(m.Answer) != 1 {
		t.Errorf("after clearing: %v", m)
	}

	// A fault for one type leaves the others alone.
	s.SetTypeFault("example.test", dns.TypeMX, ServFail)
	if m := query(t, s, "udp", "example.test", dns.TypeMX); m.Rcode != dns.RcodeServerFailure {
		t.Errorf("MX with type fault: %s", dns.RcodeToString[m.Rcode])
	}
	if m := query(t, s, "udp", "example.test", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("A beside an MX fault: %v", m)
	}
}

func TestTruncateForcesTCP(t *testing.T) {
	s := Start(t)
	s.AddA("example.test", "127.0.0.1")
	s.SetFault("example.test", Truncate)
	m := query(t, s, "udp", "example.test", dns.TypeA)
	if !m.Truncated || len(m.Answer) != 0 {
		t.Fatalf("UDP: %v", m)
	}
	m = query(t, s, "tcp", "example.test", dns.TypeA)
	if m.Truncated || len(m.Answer) != 1 {
		t.Fatalf("TCP: %v", m)
	}
}

func TestLargeAnswerIsTruncatedOverUDP(t *testing.T) {
	s := Start(t)
	for i := range 40 {
		s.AddTXT("big.test", fmt.Sprintf("%03d-%s", i, strings.Repeat("x", 60)))
	}
	long := strings.Repeat("k", 600)
	s.AddTXT("key.test", long)

	if m := query(t, s, "udp", "big.test", dns.TypeTXT); !m.Truncated {
		t.Fatalf("UDP answer of %d records not truncated", len(m.Answer))
	}
	if m := query(t, s, "tcp", "big.test", dns.TypeTXT); m.Truncated || len(m.Answer) != 40 {
		t.Fatalf("TCP: truncated=%v, %d records", m.Truncated, len(m.Answer))
	}
	m := query(t, s, "tcp", "key.test", dns.TypeTXT)
	txt := m.Answer[0].(*dns.TXT).Txt
	if len(txt) != 3 || strings.Join(txt, "") != long {
		t.Fatalf("long TXT split into %d strings", len(txt))
	}
}

func TestQueryCounter(t *testing.T) {
	s := Start(t)
	s.AddA("example.test", "127.0.0.1")
	for range 3 {
		query(t, s, "udp", "EXAMPLE.test", dns.TypeA)
	}
	query(t, s, "tcp", "example.test", dns.TypeMX)
	if n := s.Queries("example.test", dns.TypeA); n != 3 {
		t.Errorf("A queries = %d, want 3", n)
	}
	if n := s.Queries("example.test.", dns.TypeMX); n != 1 {
		t.Errorf("MX queries = %d, want 1", n)
	}
	if n := s.TotalQueries(); n != 4 {
		t.Errorf("total = %d, want 4", n)
	}
	s.ResetCounts()
	if s.TotalQueries() != 0 || s.Queries("example.test", dns.TypeA) != 0 {
		t.Error("counts not reset")
	}
}

func TestZoneSyntaxAndRemove(t *testing.T) {
	s := Start(t)
	s.Add("example.test. 7 IN MX 5 mx.example.test.")
	m := query(t, s, "udp", "example.test", dns.TypeMX)
	if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 7 {
		t.Fatalf("answer: %v", m.Answer)
	}
	s.Remove("example.test")
	if m := query(t, s, "udp", "example.test", dns.TypeMX); m.Rcode != dns.RcodeNameError {
		t.Fatalf("after Remove: %s", dns.RcodeToString[m.Rcode])
	}
	s.SetDefaultTTL(9)
	s.AddA("example.test", "127.0.0.1")
	if m := query(t, s, "udp", "example.test", dns.TypeA); m.Answer[0].Header().Ttl != 9 {
		t.Fatalf("TTL = %d", m.Answer[0].Header().Ttl)
	}
}

func TestConcurrentChangesWhileServing(t *testing.T) {
	s := Start(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 20 {
				name := fmt.Sprintf("h%d-%d.test", i, j)
				s.AddA(name, "127.0.0.1")
				s.SetFault(name, ServFail)
				s.SetFault(name, None)
			}
		}()
		go func() {
			defer wg.Done()
			for j := range 20 {
				if _, err := exchange(s, "udp", fmt.Sprintf("h%d-%d.test", i, j), dns.TypeA, time.Second); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if s.TotalQueries() != 160 {
		t.Errorf("total = %d", s.TotalQueries())
	}
}

func TestDelay(t *testing.T) {
	s := Start(t)
	s.AddA("example.test", "127.0.0.1")
	s.SetDelay(100 * time.Millisecond)
	start := time.Now()
	query(t, s, "udp", "example.test", dns.TypeA)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("answered after %v", d)
	}
}
