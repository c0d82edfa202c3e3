package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/net/idna"

	"kiln/configs"
	"kiln/dkim/readiness"
)

func init() {
	register(&command{
		path:  "domain check",
		args:  "DOMAIN",
		short: "check that a sending domain's DKIM, SPF, DMARC and reverse DNS are ready",
		long: `Reports, through the resolver kiln uses ([dns] servers; the system's
resolvers when empty), whether receivers will authenticate the mail kiln sends
for DOMAIN. Works without the daemon.

  dkim    each [[dkim]] key kiln signs DOMAIN's mail with (DOMAIN's own, or its
          nearest parent's) is published at SEL._domainkey.D and matches
  spf     DOMAIN has exactly one valid v=spf1 record, within the limits of 10
          DNS lookups and 2 void lookups, and it authorises every source
          address (the record is evaluated as receivers do, RFC 7208)
  dmarc   _dmarc.DOMAIN (or the organizational domain's record) exists, with
          its policy (p=none is a warning), pct and report addresses; report
          addresses outside the domain must have authorised the reports
  fcrdns  each source address has a PTR naming its EHLO name, and that name
          resolves back to the address

The source addresses are the [[egress]] sources, with their ehlo names (or
hostname). --source replaces them. With neither, kiln sends from the machine's
default address, which no config names: the check assumes the addresses
hostname resolves to and says so in a warning, or, when it has none, warns
that SPF authorisation and FCrDNS cannot be checked. A private or loopback
source (kiln behind a NAT) is not checked, with a warning: receivers judge the
address they see, so name that one with --source ADDR=EHLO.

SPF macros that only a message can give (%{s}, %{l}) and %{p} are not
expanded: a mechanism needing them is reported as "cannot evaluate" (warn).

Each finding is ok, warn or fail; those that are not ok say what to do and,
where a DNS record fixes it, give that record as a zone-file line (the SPF
record with the missing ip4:/ip6: terms added, a DMARC record, the PTR to ask
the hosting provider for). --json prints {"domain","result","resolvers",
"sources":[{"name","addr","ehlo","assumed"}],"findings":[{"check","subject",
"severity","summary","detail","fix","record"}]}.

Exits 0 when no finding is a fail, 1 otherwise.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String("config", "", "config `FILE` (keys, egress addresses, hostname, resolvers)")
			asJSON := fs.Bool("json", false, "print JSON")
			var sources []string
			fs.Func("source", "check this source `ADDR[=EHLO]` instead of the [[egress]] ones (repeatable; EHLO defaults to hostname)", func(s string) error {
				sources = append(sources, s)
				return nil
			})
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one DOMAIN")
				}
				domain, err := domainCheckArg(args[0])
				if err != nil {
					return usagef("%v", err)
				}
				cfg, err := loadConfig(*config)
				if err != nil {
					return err
				}
				srcs, err := domainCheckSources(cfg, sources)
				if err != nil {
					return usagef("%v", err)
				}
				return runDomainCheck(os.Stdout, cfg, domain, srcs, *asJSON)
			}
		},
	})
}

// domainCheckArg turns the DOMAIN argument into a lower-case A-label name.
func domainCheckArg(s string) (string, error) {
	d := strings.TrimSuffix(strings.TrimSpace(s), ".")
	if strings.Contains(d, "@") {
		return "", fmt.Errorf("want a domain, not an address: %q", s)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil || !strings.Contains(a, ".") {
		return "", fmt.Errorf("%q is not a domain name", s)
	}
	return strings.ToLower(a), nil
}

// domainCheckSources returns the addresses to check: those given with --source,
// or the [[egress]] ones; none when neither names any.
func domainCheckSources(cfg *configs.Config, given []string) ([]readiness.Source, error) {
	var out []readiness.Source
	if len(given) > 0 {
		for _, g := range given {
			addr, ehlo, _ := strings.Cut(g, "=")
			a, err := netip.ParseAddr(addr)
			if err != nil {
				return nil, fmt.Errorf("--source %q: not an IP address", g)
			}
			if ehlo == "" {
				ehlo = cfg.Hostname
			}
			out = append(out, readiness.Source{Addr: a.Unmap(), EHLO: ehlo})
		}
		return out, nil
	}
	for i, eg := range cfg.Egress {
		a, err := netip.ParseAddr(eg.Source)
		if err != nil {
			return nil, fmt.Errorf("egress[%d].source %q is not an IP address", i, eg.Source)
		}
		ehlo := eg.EHLO
		if ehlo == "" {
			ehlo = cfg.Hostname
		}
		out = append(out, readiness.Source{Name: eg.Name, Addr: a.Unmap(), EHLO: ehlo})
	}
	return out, nil
}

// runDomainCheck checks domain and writes the report to w.
func runDomainCheck(w io.Writer, cfg *configs.Config, domain string, sources []readiness.Source, asJSON bool) error {
	keys, err := readinessKeys(cfg)
	if err != nil {
		return err
	}
	r, err := readinessResolver(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readinessTimeout)
	defer cancel()
	c := &readiness.Checker{Resolver: r, Keys: keys, Sources: sources, Hostname: cfg.Hostname}
	rep := c.Check(ctx, domain)
	rep.Resolvers = r.Servers()

	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(w)
	}
	if err != nil {
		return err
	}
	if rep.Result == readiness.Fail {
		return exitError{1}
	}
	return nil
}
