package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"kiln/internal/clock"
	"kiln/internal/fakedns"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// setup starts a fake DNS server and a resolver on it with a fake clock.
func setup(t *testing.T, mod ...func(*Config)) (*fakedns.Server, *Resolver, *clock.Fake) {
	t.Helper()
	s := fakedns.Start(t)
	fc := clock.NewFake(t0)
	cfg := Config{Servers: []string{s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1, Clock: fc}
	for _, m := range mod {
		m(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, r, fc
}

func kindOf(t *testing.T, err error) Kind {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *resolve.Error", err, err)
	}
	return e.Kind
}

func names(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Name)
	}
	return out
}

func TestLookupMXPreferenceOrderAndAddresses(t *testing.T) {
	s, r, _ := setup(t)
	s.AddMX("example.test", 20, "backup.example.test")
	s.AddMX("example.test", 10, "MX1.example.test.")
	s.AddA("mx1.example.test", "127.0.0.2")
	s.AddAAAA("mx1.example.test", "::2")
	s.AddA("backup.example.test", "127.0.0.3")

	hosts, err := r.LookupMX(context.Background(), "Example.TEST.")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hosts); !slices.Equal(got, []string{"mx1.example.test", "backup.example.test"}) {
		t.Fatalf("hosts %v", got)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::2")}
	if !slices.Equal(hosts[0].Addrs, want) || hosts[0].Pref != 10 || hosts[0].Implicit {
		t.Errorf("first host %+v", hosts[0])
	}
}

func TestLookupMXShufflesEqualPreferences(t *testing.T) {
	s, r, _ := setup(t)
	for _, h := range []string{"a", "b", "c"} {
		s.AddMX("example.test", 10, h+".example.test")
		s.AddA(h+".example.test", "127.0.0.1")
	}
	s.AddMX("example.test", 5, "first.example.test")
	s.AddA("first.example.test", "127.0.0.9")
	firsts := map[string]int{}
	for range 60 {
		hosts, err := r.LookupMX(context.Background(), "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(hosts) != 4 || hosts[0].Name != "first.example.test" {
			t.Fatalf("order %v", names(hosts))
		}
		firsts[hosts[1].Name]++
	}
	if len(firsts) < 2 {
		t.Errorf("equal preferences never shuffled: %v", firsts)
	}
}

func TestLookupMXCapsHosts(t *testing.T) {
	s, r, _ := setup(t, func(c *Config) { c.MaxMXHosts = 3 })
	for i := range 8 {
		h := fmt.Sprintf("mx%d.example.test", i)
		s.AddMX("example.test", uint16(i), h)
		s.AddA(h, "127.0.0.1")
	}
	hosts, err := r.LookupMX(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hosts); !slices.Equal(got, []string{"mx0.example.test", "mx1.example.test", "mx2.example.test"}) {
		t.Fatalf("hosts %v", got)
	}
	if n := s.Queries("mx5.example.test", dns.TypeA); n != 0 {
		t.Errorf("resolved a host beyond the cap")
	}
}

func TestImplicitMX(t *testing.T) {
	s, r, _ := setup(t)
	s.AddA("example.test", "127.0.0.5")
	hosts, err := r.LookupMX(context.Background(), "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 1 || !hosts[0].Implicit || hosts[0].Name != "example.test" || hosts[0].Addrs[0] != netip.MustParseAddr("127.0.0.5") {
		t.Fatalf("hosts %+v", hosts)
	}

	// A name that exists with neither MX nor address: nowhere to deliver.
	s.AddTXT("textonly.test", "v=spf1 -all")
	_, err = r.LookupMX(context.Background(), "textonly.test")
	if kindOf(t, err) != NoAddress {
		t.Fatalf("err %v", err)
	}
	rep := err.(*Error).Reply()
	if rep.Code != 550 || rep.Enhanced != "5.4.4" || rep.Command != "DNS" || !rep.Permanent() {
		t.Errorf("reply %+v", rep)
	}
}

func TestNullMX(t *testing.T) {
	s, r, _ := setup(t)
	s.AddNullMX("nomail.test")
	s.AddA("nomail.test", "127.0.0.1") // an address must not bring implicit MX back
	_, err := r.LookupMX(context.Background(), "nomail.test")
	if kindOf(t, err) != NullMX {
		t.Fatalf("err %v", err)
	}
	rep := err.(*Error).Reply()
	if rep.Code != 556 || rep.Enhanced != "5.1.10" || rep.Command != "DNS" || rep.Temporary || !strings.HasPrefix(rep.Line, "556 5.1.10 nomail.test") {
		t.Errorf("reply %+v", rep)
	}
	if s.Queries("nomail.test", dns.TypeA) != 0 {
		t.Error("null MX domain's address was looked up")
	}

	// A null MX mixed with real ones (against RFC 7505): use the real ones.
	s.AddNullMX("mixed.test")
	s.AddMX("mixed.test", 10, "mx.mixed.test")
	s.AddA("mx.mixed.test", "127.0.0.1")
	if hosts, err := r.LookupMX(context.Background(), "mixed.test"); err != nil || len(hosts) != 1 {
		t.Errorf("mixed: %v %v", hosts, err)
	}
}

func TestNXDomainIsPermanent(t *testing.T) {
	_, r, _ := setup(t)
	_, err := r.LookupMX(context.Background(), "missing.test")
	if kindOf(t, err) != NXDomain || IsTemporary(err) || !IsNotFound(err) {
		t.Fatalf("err %v", err)
	}
	rep := err.(*Error).Reply()
	if rep.Code != 550 || rep.Enhanced != "5.1.2" || rep.Command != "DNS" || !strings.Contains(rep.Line, "domain not found") {
		t.Errorf("reply %+v", rep)
	}
}

func TestFailuresAreTemporary(t *testing.T) {
	for _, f := range []fakedns.Fault{fakedns.ServFail, fakedns.Refused, fakedns.Timeout} {
		t.Run(f.String(), func(t *testing.T) {
			s, r, _ := setup(t, func(c *Config) { c.Timeout = 100 * time.Millisecond })
			s.AddMX("example.test", 10, "mx.example.test")
			s.SetFault("example.test", f)
			start := time.Now()
			_, err := r.LookupMX(context.Background(), "example.test")
			if kindOf(t, err) != Temporary || !IsTemporary(err) {
				t.Fatalf("err %v", err)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			rep := err.(*Error).Reply()
			if rep.Code != 0 || !rep.Temporary || rep.Permanent() || rep.Enhanced != "4.4.3" || rep.Command != "DNS" {
				t.Errorf("reply %+v", rep)
			}
			if f != fakedns.Timeout && !strings.Contains(rep.Line, f.String()) {
				t.Errorf("line %q does not name %s", rep.Line, f)
			}
		})
	}
}

func TestMXHostFailures(t *testing.T) {
	s, r, _ := setup(t)
	s.AddMX("partial.test", 10, "gone.partial.test")
	s.AddMX("partial.test", 20, "ok.partial.test")
	s.AddA("ok.partial.test", "127.0.0.7")
	hosts, err := r.LookupMX(context.Background(), "partial.test")
	if err != nil || !slices.Equal(names(hosts), []string{"ok.partial.test"}) {
		t.Fatalf("partial: %v %v", names(hosts), err)
	}

	s.AddMX("allgone.test", 10, "a.allgone.test")
	s.AddMX("allgone.test", 20, "b.allgone.test")
	_, err = r.LookupMX(context.Background(), "allgone.test")
	if kindOf(t, err) != NoAddress {
		t.Fatalf("all hosts missing: %v", err)
	}

	// One host missing, the other failing: the failure may heal, so defer.
	s.AddMX("flaky.test", 10, "a.flaky.test")
	s.AddMX("flaky.test", 20, "b.flaky.test")
	s.AddA("b.flaky.test", "127.0.0.1")
	s.SetFault("b.flaky.test", fakedns.ServFail)
	_, err = r.LookupMX(context.Background(), "flaky.test")
	if kindOf(t, err) != Temporary {
		t.Fatalf("flaky: %v", err)
	}
	if e := err.(*Error); e.Domain != "flaky.test" || e.Name != "b.flaky.test" {
		t.Errorf("error names %q %q", e.Domain, e.Name)
	}

	// AAAA failing beside a good A: the A is enough.
	s.AddMX("v6broken.test", 10, "mx.v6broken.test")
	s.AddA("mx.v6broken.test", "127.0.0.1")
	s.SetTypeFault("mx.v6broken.test", dns.TypeAAAA, fakedns.ServFail)
	if hosts, err := r.LookupMX(context.Background(), "v6broken.test"); err != nil || len(hosts[0].Addrs) != 1 {
		t.Fatalf("v6broken: %v %v", hosts, err)
	}
}

func TestCNAMEMXHost(t *testing.T) {
	s, r, _ := setup(t)
	s.AddMX("example.test", 10, "alias.example.test")
	s.AddCNAME("alias.example.test", "real.example.test")
	s.AddA("real.example.test", "127.0.0.8")
	hosts, err := r.LookupMX(context.Background(), "example.test")
	if err != nil || hosts[0].Name != "alias.example.test" || hosts[0].Addrs[0] != netip.MustParseAddr("127.0.0.8") {
		t.Fatalf("%+v %v", hosts, err)
	}
}

func TestCacheRespectsTTLWithinBounds(t *testing.T) {
	s, r, fc := setup(t, func(c *Config) { c.MinTTL = time.Minute; c.MaxTTL = time.Hour })
	s.Add("short.test. 5 IN A 127.0.0.1", "long.test. 86400 IN A 127.0.0.1", "mid.test. 600 IN A 127.0.0.1")
	ctx := context.Background()
	lookups := func() {
		for _, n := range []string{"short.test", "long.test", "mid.test"} {
			if _, err := r.LookupA(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(n string) int { return s.Queries(n, dns.TypeA) }
	lookups()
	lookups()
	if count("short.test") != 1 || count("long.test") != 1 || count("mid.test") != 1 {
		t.Fatalf("second round was not cached")
	}
	fc.Advance(59 * time.Second) // below the floor: a 5s TTL lives a minute
	lookups()
	if count("short.test") != 1 {
		t.Errorf("floor not applied")
	}
	fc.Advance(2 * time.Second)
	lookups()
	if count("short.test") != 2 || count("mid.test") != 1 {
		t.Errorf("after 61s: short %d, mid %d", count("short.test"), count("mid.test"))
	}
	fc.Advance(10 * time.Minute)
	lookups()
	if count("mid.test") != 2 || count("long.test") != 1 {
		t.Errorf("after 11m: mid %d, long %d", count("mid.test"), count("long.test"))
	}
	fc.Advance(time.Hour) // the ceiling: a day's TTL lives an hour
	lookups()
	if count("long.test") != 2 {
		t.Errorf("ceiling not applied")
	}
	if st := r.Stats(); st.Hits == 0 || st.Misses == 0 || st.Entries != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestNegativeCaching(t *testing.T) {
	s, r, fc := setup(t, func(c *Config) { c.MaxNegativeTTL = 2 * time.Minute })
	ctx := context.Background()
	s.SetNegativeTTL(30)
	for range 3 {
		r.LookupMX(ctx, "missing.test")
	}
	if n := s.Queries("missing.test", dns.TypeMX); n != 1 {
		t.Fatalf("NXDOMAIN asked %d times", n)
	}
	fc.Advance(31 * time.Second)
	r.LookupMX(ctx, "missing.test")
	if n := s.Queries("missing.test", dns.TypeMX); n != 2 {
		t.Fatalf("NXDOMAIN cached past its SOA TTL: %d", n)
	}

	// The cap applies to a long negative TTL; NODATA is negative too.
	s.SetNegativeTTL(86400)
	s.AddTXT("txt.test", "x")
	r.LookupA(ctx, "txt.test")
	fc.Advance(time.Minute)
	r.LookupA(ctx, "txt.test")
	if n := s.Queries("txt.test", dns.TypeA); n != 1 {
		t.Fatalf("NODATA not cached: %d", n)
	}
	fc.Advance(90 * time.Second)
	if _, err := r.LookupA(ctx, "txt.test"); !IsNotFound(err) || kindOf(t, err) != NoData {
		t.Fatalf("NODATA err %v", err)
	}
	if n := s.Queries("txt.test", dns.TypeA); n != 2 {
		t.Fatalf("negative cap not applied: %d", n)
	}
}

func TestFailuresCachedBriefly(t *testing.T) {
	s, r, fc := setup(t, func(c *Config) { c.FailTTL = 5 * time.Second })
	ctx := context.Background()
	s.AddA("example.test", "127.0.0.1")
	s.SetFault("example.test", fakedns.ServFail)
	r.LookupA(ctx, "example.test")
	r.LookupA(ctx, "example.test")
	if n := s.Queries("example.test", dns.TypeA); n != 1 {
		t.Fatalf("SERVFAIL asked %d times within FailTTL", n)
	}
	s.SetFault("example.test", fakedns.None)
	fc.Advance(6 * time.Second)
	if _, err := r.LookupA(ctx, "example.test"); err != nil {
		t.Fatalf("after the failure expired: %v", err)
	}

	_, r2, _ := setup(t, func(c *Config) { c.FailTTL = -1 })
	s2 := fakedns.Start(t)
	r2.servers = []string{s2.Addr()}
	s2.SetFault("example.test", fakedns.ServFail)
	r2.LookupA(ctx, "example.test")
	r2.LookupA(ctx, "example.test")
	if n := s2.Queries("example.test", dns.TypeA); n != 2 {
		t.Fatalf("FailTTL -1 still cached: %d", n)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	s, r, _ := setup(t)
	s.AddTXT("example.test", "v=spf1 ", "-all")
	s.SetDelay(150 * time.Millisecond)
	var wg sync.WaitGroup
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			txt, err := r.LookupTXT(context.Background(), "example.test")
			if err != nil || len(txt) != 1 || txt[0] != "v=spf1 -all" {
				t.Errorf("%q %v", txt, err)
			}
		}()
	}
	wg.Wait()
	if n := s.Queries("example.test", dns.TypeTXT); n != 1 {
		t.Fatalf("%d queries for 30 concurrent lookups", n)
	}
}

func TestCallerCancelDoesNotFailOthers(t *testing.T) {
	s, r, _ := setup(t)
	s.AddA("example.test", "127.0.0.1")
	s.SetDelay(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	other := make(chan error, 1)
	go func() {
		time.Sleep(5 * time.Millisecond)
		_, err := r.LookupA(context.Background(), "example.test")
		other <- err
	}()
	_, err := r.LookupA(ctx, "example.test")
	if !IsTemporary(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled lookup: %v", err)
	}
	if err := <-other; err != nil {
		t.Fatalf("the other caller failed: %v", err)
	}
}

func TestTCPFallbackOnTruncation(t *testing.T) {
	s, r, _ := setup(t)
	s.AddA("example.test", "127.0.0.1")
	s.SetFault("example.test", fakedns.Truncate)
	if addrs, err := r.LookupA(context.Background(), "example.test"); err != nil || len(addrs) != 1 {
		t.Fatalf("%v %v", addrs, err)
	}
	if n := s.Queries("example.test", dns.TypeA); n != 2 {
		t.Errorf("queries %d, want UDP then TCP", n)
	}

	// A real large answer: a DKIM-size key plus many TXT records.
	for i := range 30 {
		s.AddTXT("big.test", fmt.Sprintf("record-%02d-%s", i, strings.Repeat("z", 80)))
	}
	txt, err := r.LookupTXT(context.Background(), "big.test")
	if err != nil || len(txt) != 30 {
		t.Fatalf("big: %d records, %v", len(txt), err)
	}
}

func TestNextServerOnFailure(t *testing.T) {
	bad := fakedns.Start(t)
	bad.SetFault("example.test", fakedns.Refused)
	silent := fakedns.Start(t)
	silent.SetFault("example.test", fakedns.Timeout)
	good := fakedns.Start(t)
	good.AddA("example.test", "127.0.0.1")
	r, err := New(Config{Servers: []string{bad.Addr(), silent.Addr(), good.Addr()}, Timeout: 100 * time.Millisecond, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.LookupA(context.Background(), "example.test"); err != nil {
		t.Fatal(err)
	}
	if bad.TotalQueries() != 1 || silent.TotalQueries() != 1 || good.TotalQueries() != 1 {
		t.Errorf("queries %d %d %d", bad.TotalQueries(), silent.TotalQueries(), good.TotalQueries())
	}

	// Attempts rounds over all servers.
	r2, _ := New(Config{Servers: []string{bad.Addr(), silent.Addr()}, Timeout: 50 * time.Millisecond, Attempts: 3, FailTTL: -1})
	bad.ResetCounts()
	_, err = r2.LookupA(context.Background(), "example.test")
	if kindOf(t, err) != Temporary || bad.TotalQueries() != 3 {
		t.Errorf("err %v, %d queries to the first server", err, bad.TotalQueries())
	}
}

func TestUnreachableServerIsTemporary(t *testing.T) {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	addr := pc.LocalAddr().String()
	pc.Close() // nothing listens there now: ICMP port unreachable
	r, _ := New(Config{Servers: []string{addr}, Timeout: 200 * time.Millisecond, Attempts: 1})
	_, err := r.LookupMX(context.Background(), "example.test")
	if kindOf(t, err) != Temporary {
		t.Fatalf("err %v", err)
	}
}

func TestOtherLookups(t *testing.T) {
	s, r, _ := setup(t)
	ctx := context.Background()
	s.AddPTR("127.0.0.2", "MX.Example.test")
	s.AddPTR("::2", "v6.example.test")
	s.AddA("mx.example.test", "127.0.0.2")
	s.AddAAAA("mx.example.test", "::2")
	long := strings.Repeat("p", 400)
	s.AddTXT("sel._domainkey.example.test", "v=DKIM1; k=rsa; p="+long)

	if ptr, err := r.LookupPTR(ctx, netip.MustParseAddr("127.0.0.2")); err != nil || !slices.Equal(ptr, []string{"mx.example.test"}) {
		t.Errorf("PTR v4: %v %v", ptr, err)
	}
	if ptr, err := r.LookupPTR(ctx, netip.MustParseAddr("::2")); err != nil || !slices.Equal(ptr, []string{"v6.example.test"}) {
		t.Errorf("PTR v6: %v %v", ptr, err)
	}
	if _, err := r.LookupPTR(ctx, netip.MustParseAddr("127.0.0.99")); !IsNotFound(err) {
		t.Errorf("missing PTR: %v", err)
	}
	if a, err := r.LookupA(ctx, "mx.example.test"); err != nil || len(a) != 1 || !a[0].Is4() {
		t.Errorf("A: %v %v", a, err)
	}
	if a, err := r.LookupAAAA(ctx, "mx.example.test"); err != nil || len(a) != 1 || !a[0].Is6() {
		t.Errorf("AAAA: %v %v", a, err)
	}
	if a, err := r.LookupAddrs(ctx, "mx.example.test"); err != nil || len(a) != 2 || !a[0].Is4() {
		t.Errorf("addrs: %v %v", a, err)
	}
	if _, err := r.LookupAddrs(ctx, "nothing.example.test"); kindOf(t, err) != NXDomain {
		t.Errorf("addrs of a missing name: %v", err)
	}
	txt, err := r.LookupTXT(ctx, "sel._domainkey.example.test")
	if err != nil || len(txt) != 1 || txt[0] != "v=DKIM1; k=rsa; p="+long {
		t.Errorf("TXT: %v %v", txt, err)
	}
	if _, err := r.LookupTXT(ctx, "mx.example.test"); kindOf(t, err) != NoData {
		t.Errorf("TXT NODATA: %v", err)
	}
}

func TestNamesAndLiterals(t *testing.T) {
	s, r, _ := setup(t)
	ctx := context.Background()
	s.AddMX("xn--bcher-kva.test", 10, "mx.xn--bcher-kva.test")
	s.AddA("mx.xn--bcher-kva.test", "127.0.0.1")
	if hosts, err := r.LookupMX(ctx, "Bücher.test"); err != nil || len(hosts) != 1 {
		t.Fatalf("IDN: %v %v", hosts, err)
	}

	hosts, err := r.LookupMX(ctx, "[127.0.0.3]")
	if err != nil || hosts[0].Addrs[0] != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("literal: %v %v", hosts, err)
	}
	if hosts, err := r.LookupMX(ctx, "[IPv6:::1]"); err != nil || hosts[0].Addrs[0] != netip.IPv6Loopback() {
		t.Fatalf("v6 literal: %v %v", hosts, err)
	}
	for _, bad := range []string{"", "a..b", "exa mple.test", "x\r\n.test", strings.Repeat("a", 64) + ".test", "[999.1.1.1]"} {
		if _, err := r.LookupMX(ctx, bad); kindOf(t, err) != BadName {
			t.Errorf("%q: %v", bad, err)
		} else if rep := err.(*Error).Reply(); rep.Code != 553 {
			t.Errorf("%q: reply %+v", bad, rep)
		}
	}
	if s.TotalQueries() != 3 { // MX, A and AAAA of the IDN domain only
		t.Errorf("%d queries: bad names or literals reached DNS", s.TotalQueries())
	}
}

func TestPunycode(t *testing.T) {
	for in, want := range map[string]string{
		"bücher":     "bcher-kva",
		"münchen":    "mnchen-3ya",
		"例え":         "r8jz45g",
		"ü":          "tda",
		"παράδειγμα": "hxajbheg2az3al",
	} {
		if got, err := punycode(in); err != nil || got != want {
			t.Errorf("punycode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if d, ok := normalize("ÜBER.Example."); !ok || d != "xn--ber-goa.example" {
		t.Errorf("normalize: %q %v", d, ok)
	}
}

func TestCacheSizeBound(t *testing.T) {
	s, r, _ := setup(t, func(c *Config) { c.CacheSize = 5 })
	ctx := context.Background()
	for i := range 10 {
		n := fmt.Sprintf("h%d.test", i)
		s.AddA(n, "127.0.0.1")
		r.LookupA(ctx, n)
	}
	if st := r.Stats(); st.Entries != 5 {
		t.Fatalf("entries %d", st.Entries)
	}
	r.LookupA(ctx, "h9.test")
	r.LookupA(ctx, "h0.test")
	if s.Queries("h9.test", dns.TypeA) != 1 || s.Queries("h0.test", dns.TypeA) != 2 {
		t.Errorf("LRU: h9 %d, h0 %d", s.Queries("h9.test", dns.TypeA), s.Queries("h0.test", dns.TypeA))
	}
	r.Flush()
	if r.Stats().Entries != 0 {
		t.Error("Flush kept entries")
	}
}

func TestServerList(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:1\n"), 0o644)
	r, err := New(Config{ResolvConf: rc})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Servers(); !slices.Equal(got, []string{"192.0.2.53:53", "[2001:db8::53]:53"}) {
		t.Errorf("from resolv.conf: %v", got)
	}
	r, _ = New(Config{ResolvConf: filepath.Join(dir, "missing")})
	if got := r.Servers(); !slices.Equal(got, []string{"127.0.0.1:53"}) {
		t.Errorf("fallback: %v", got)
	}
	r, _ = New(Config{Servers: []string{"127.0.0.1:5353", "192.0.2.1", "::1"}})
	if got := r.Servers(); !slices.Equal(got, []string{"127.0.0.1:5353", "192.0.2.1:53", "[::1]:53"}) {
		t.Errorf("configured: %v", got)
	}
}
