package resolve

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Host is one mail exchanger of a domain with its addresses.
type Host struct {
	Name     string       // lowercase, without the trailing dot
	Pref     uint16       // MX preference; 0 for an implicit MX
	Addrs    []netip.Addr // IPv4 (A) first, then IPv6 (AAAA); never empty
	Implicit bool         // no MX: the domain's own address records (RFC 5321 §5.1)
}

// LookupMX finds where mail for domain goes (RFC 5321 §5.1): the MX hosts in
// preference order, hosts of equal preference shuffled so load spreads over
// them, at most MaxMXHosts of them, each with its A and AAAA addresses. Hosts
// without any address are left out; the delivery engine tries the rest in
// order.
//
//   - No MX record (NODATA): the domain itself is the host ("implicit MX"),
//     when it has an address.
//   - A null MX ("MX 0 ."): *Error NullMX, permanent (RFC 7505).
//   - NXDOMAIN: *Error NXDomain, permanent.
//   - No host has an address: *Error NoAddress, permanent, unless some host's
//     lookup failed temporarily, which makes the whole answer temporary.
//   - SERVFAIL, REFUSED, timeouts: *Error Temporary.
//
// An address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]") is returned as
// its own host without asking DNS. Non-ASCII domains are looked up by their
// A-label. Whether an address is acceptable (loopback, private ranges) is
// the caller's policy, not the resolver's.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]Host, error) {
	if a, ok := addressLiteral(domain); ok {
		return []Host{{Name: domain, Addrs: []netip.Addr{a}, Implicit: true}}, nil
	}
	d, ok := normalize(domain)
	if !ok {
		return nil, &Error{Domain: domain, Name: domain, Type: "MX", Kind: BadName}
	}
	ans, err := r.lookup(ctx, d, dns.TypeMX)
	if err != nil {
		return nil, &Error{Domain: d, Name: d, Type: "MX", Err: err}
	}
	if ans.err != nil {
		return nil, &Error{Domain: d, Name: d, Type: "MX", Err: ans.err}
	}
	if ans.rcode == dns.RcodeNameError {
		return nil, &Error{Domain: d, Name: d, Type: "MX", Kind: NXDomain}
	}
	if len(ans.rrs) == 0 {
		// NODATA: implicit MX. The MX query said the name exists, so
		// whatever the address lookups find is about this very name.
		addrs, err := r.addrs(ctx, d)
		if err != nil {
			err.Domain = d
			if err.Kind == NoData {
				err.Kind = NoAddress
			}
			return nil, err
		}
		return []Host{{Name: d, Addrs: addrs, Implicit: true}}, nil
	}

	hosts := make([]Host, 0, len(ans.rrs))
	null := false
	for _, rr := range ans.rrs {
		mx := rr.(*dns.MX)
		name := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if name == "" {
			// "MX 0 .": RFC 7505 says a null MX must stand alone; when it
			// does not, the other records are still usable.
			null = true
			continue
		}
		if !slices.ContainsFunc(hosts, func(h Host) bool { return h.Name == name }) {
			hosts = append(hosts, Host{Name: name, Pref: mx.Preference})
		}
	}
	if len(hosts) == 0 && null {
		return nil, &Error{Domain: d, Name: d, Type: "MX", Kind: NullMX}
	}
	// Random order among equal preferences (RFC 5321 §5.1): shuffle, then a
	// stable sort by preference keeps the shuffle inside each group.
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b Host) int { return int(a.Pref) - int(b.Pref) })
	if len(hosts) > r.cfg.MaxMXHosts {
		hosts = hosts[:r.cfg.MaxMXHosts]
	}

	errs := make([]*Error, len(hosts))
	var wg sync.WaitGroup
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hosts[i].Addrs, errs[i] = r.addrs(ctx, hosts[i].Name)
		}()
	}
	wg.Wait()

	out := hosts[:0]
	var temp, perm *Error
	for i, h := range hosts {
		switch e := errs[i]; {
		case e == nil:
			out = append(out, h)
		case e.Temporary():
			if temp == nil {
				temp = e
			}
		default:
			if perm == nil {
				perm = e
			}
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if temp != nil {
		temp.Domain = d
		return nil, temp
	}
	e := &Error{Domain: d, Name: d, Type: "MX", Kind: NoAddress}
	if perm != nil {
		e.Err = perm
	}
	return nil, e
}

// addrs looks up A and AAAA of a host name (already normalized) at the same
// time. Addresses from either are enough; a temporary failure of one is
// forgiven when the other has addresses. With none: Temporary if either
// lookup failed, NXDomain if the name does not exist, else NoData.
func (r *Resolver) addrs(ctx context.Context, host string) ([]netip.Addr, *Error) {
	var (
		v6   []netip.Addr
		err6 *Error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		v6, err6 = r.typedAddrs(ctx, host, dns.TypeAAAA)
	}()
	v4, err4 := r.typedAddrs(ctx, host, dns.TypeA)
	<-done
	if all := append(v4, v6...); len(all) > 0 {
		return all, nil
	}
	switch {
	case err4 != nil && err4.Temporary():
		return nil, err4
	case err6 != nil && err6.Temporary():
		return nil, err6
	case err4 != nil && err4.Kind == NXDomain:
		return nil, err4
	case err6 != nil && err6.Kind == NXDomain:
		return nil, err6
	}
	return nil, &Error{Name: host, Type: "A/AAAA", Kind: NoData}
}

// typedAddrs returns the addresses of one type.
func (r *Resolver) typedAddrs(ctx context.Context, host string, qtype uint16) ([]netip.Addr, *Error) {
	ans, e := r.records(ctx, host, qtype)
	if e != nil {
		return nil, e
	}
	out := make([]netip.Addr, 0, len(ans))
	for _, rr := range ans {
		var ip []byte
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A.To4()
		case *dns.AAAA:
			ip = v.AAAA.To16()
		}
		if a, ok := netip.AddrFromSlice(ip); ok && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// records runs one lookup of a normalized name and turns a DNS result into
// records or a typed error.
func (r *Resolver) records(ctx context.Context, name string, qtype uint16) ([]dns.RR, *Error) {
	t := dns.TypeToString[qtype]
	ans, err := r.lookup(ctx, name, qtype)
	switch {
	case err != nil:
		return nil, &Error{Name: name, Type: t, Err: err}
	case ans.err != nil:
		return nil, &Error{Name: name, Type: t, Err: ans.err}
	case ans.rcode == dns.RcodeNameError:
		return nil, &Error{Name: name, Type: t, Kind: NXDomain}
	case len(ans.rrs) == 0:
		return nil, &Error{Name: name, Type: t, Kind: NoData}
	}
	return ans.rrs, nil
}

// named normalizes name for a lookup of type t and runs it.
func (r *Resolver) named(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	n, ok := normalize(name)
	if !ok {
		return nil, &Error{Domain: name, Name: name, Type: dns.TypeToString[qtype], Kind: BadName}
	}
	rrs, e := r.records(ctx, n, qtype)
	if e != nil {
		e.Domain = n
		return nil, e
	}
	return rrs, nil
}

// LookupTXT returns the TXT records of name, each one's character-strings
// joined into one string (as DKIM keys and SPF records are read, RFC 6376
// §3.6.2.2, RFC 7208 §3.3). No record is an error for which IsNotFound holds.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := r.named(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return out, nil
}

// LookupA returns the IPv4 addresses of host.
func (r *Resolver) LookupA(ctx context.Context, host string) ([]netip.Addr, error) {
	return r.lookupAddrType(ctx, host, dns.TypeA)
}

// LookupAAAA returns the IPv6 addresses of host.
func (r *Resolver) LookupAAAA(ctx context.Context, host string) ([]netip.Addr, error) {
	return r.lookupAddrType(ctx, host, dns.TypeAAAA)
}

func (r *Resolver) lookupAddrType(ctx context.Context, host string, qtype uint16) ([]netip.Addr, error) {
	n, ok := normalize(host)
	if !ok {
		return nil, &Error{Domain: host, Name: host, Type: dns.TypeToString[qtype], Kind: BadName}
	}
	addrs, e := r.typedAddrs(ctx, n, qtype)
	if e != nil {
		e.Domain = n
		return nil, e
	}
	return addrs, nil
}

// LookupAddrs returns the IPv4 then IPv6 addresses of host (A and AAAA asked
// at once), as LookupMX does for each mail host.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	n, ok := normalize(host)
	if !ok {
		return nil, &Error{Domain: host, Name: host, Type: "A/AAAA", Kind: BadName}
	}
	addrs, e := r.addrs(ctx, n)
	if e != nil {
		e.Domain = n
		return nil, e
	}
	return addrs, nil
}

// LookupPTR returns the names the reverse zone gives for addr, lowercase and
// without the trailing dot: the first half of a forward-confirmed reverse DNS
// check (the second is LookupAddrs on each name).
func (r *Resolver) LookupPTR(ctx context.Context, addr netip.Addr) ([]string, error) {
	rev, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return nil, &Error{Name: addr.String(), Type: "PTR", Kind: BadName}
	}
	name := strings.TrimSuffix(rev, ".")
	rrs, e := r.records(ctx, name, dns.TypePTR)
	if e != nil {
		e.Domain = addr.String()
		return nil, e
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.ToLower(strings.TrimSuffix(rr.(*dns.PTR).Ptr, ".")))
	}
	return out, nil
}
