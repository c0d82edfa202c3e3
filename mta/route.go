package mta

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"kiln/configs"
	"kiln/policy"
)

// MXLookup finds the mail exchangers of a domain, in the order to try them,
// with how long the answer may be cached. On failure it returns the reply
// that explains why: temporary (Code 0, Temporary) for DNS trouble, permanent
// when the domain provably cannot receive mail (NXDOMAIN, null MX).
type MXLookup func(ctx context.Context, domain string) (hosts []Host, ttl time.Duration, fail *policy.Reply)

// router decides where a recipient domain's mail goes: a configured route
// (smarthost) when one matches, else the domain's MX hosts.
type router struct {
	routes []configs.Route
	port   int
	tls    string
	reqTLS map[string]bool
	lookup MXLookup
}

func newRouter(cfg *configs.Config, lookup MXLookup) *router {
	r := &router{routes: cfg.Routes, port: cfg.Delivery.Port, tls: cfg.Delivery.TLS, reqTLS: map[string]bool{}, lookup: lookup}
	for _, d := range cfg.Delivery.RequireTLS {
		r.reqTLS[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	return r
}

// static returns the configured route for domain: an exact domain beats the
// longest "*.suffix", which beats "*".
func (r *router) static(domain string) *configs.Route {
	var best *configs.Route
	bestLen := -1
	for i := range r.routes {
		rt := &r.routes[i]
		d := strings.ToLower(rt.Domain)
		n := -1
		switch {
		case d == domain:
			n = 1 << 20
		case strings.HasPrefix(d, "*.") && strings.HasSuffix(domain, d[1:]):
			n = len(d)
		case d == "*":
			n = 0
		}
		if n > bestLen {
			best, bestLen = rt, n
		}
	}
	return best
}

// route resolves a domain to a destination. A static route needs no DNS
// unless its smarthost is a name.
func (r *router) route(ctx context.Context, domain string) (*Destination, time.Duration, *policy.Reply) {
	tlsMode := r.tls
	if r.reqTLS[domain] {
		tlsMode = "required"
	}
	if rt := r.static(domain); rt != nil {
		host, portStr, _ := net.SplitHostPort(string(rt.Smarthost))
		port, _ := strconv.Atoi(portStr)
		if rt.TLS != "" {
			tlsMode = rt.TLS
		}
		if r.reqTLS[domain] {
			tlsMode = "required"
		}
		d := &Destination{Key: "route:" + string(rt.Smarthost) + ":" + tlsMode, Domain: domain, Port: port,
			TLS: tlsMode, Username: rt.Username, Password: rt.Password}
		if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
			d.Hosts = []Host{{Name: host, Addrs: []netip.Addr{a}}}
			return d, 24 * time.Hour, nil
		}
		// A smarthost given by name: resolve its addresses like an
		// implicit MX (the lookup falls back to address records).
		hosts, ttl, fail := r.lookup(ctx, host)
		if fail != nil {
			return nil, 0, fail
		}
		for _, h := range hosts {
			if strings.EqualFold(strings.TrimSuffix(h.Name, "."), host) {
				d.Hosts = []Host{h}
			}
		}
		if len(d.Hosts) == 0 {
			d.Hosts = hosts
		}
		return d, ttl, nil
	}
	hosts, ttl, fail := r.lookup(ctx, domain)
	if fail != nil {
		return nil, ttl, fail
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = strings.ToLower(strings.TrimSuffix(h.Name, "."))
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	// Domains that share an MX set share a destination: one queue, one
	// set of connections, one set of limits.
	return &Destination{Key: "mx:" + strings.Join(sorted, ",") + ":" + tlsMode, Domain: domain, Hosts: hosts,
		Port: r.port, TLS: tlsMode}, ttl, nil
}
