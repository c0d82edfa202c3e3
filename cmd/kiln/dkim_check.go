package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"kiln/configs"
	"kiln/dkim"
	"kiln/dkim/readiness"
	"kiln/mta/resolve"
)

func init() {
	register(&command{
		path:  "dkim check",
		short: "check that each DKIM key's record is published and matches the key",
		long: `Looks up SELECTOR._domainkey.DOMAIN (TXT) for every [[dkim]] key of the
config, retired ones included, through the resolver kiln uses ([dns] servers;
the system's resolvers when empty), and compares what is published with the
key. --domain and --selector narrow the check to some keys. Works without the
daemon.

Each key gets one line:

  match     SEL._domainkey.DOMAIN (rsa 2048)
  missing   SEL._domainkey.DOMAIN (ed25519): no TXT record at SEL._domainkey.DOMAIN
  mismatch  SEL._domainkey.DOMAIN (rsa 2048): p= holds a different public key: ...
  dns-error SEL._domainkey.DOMAIN (rsa 2048): resolve TXT ...: SERVFAIL ...

followed, when it is not a match, by the records found and the record to
publish, as a zone-file line. --json prints
{"keys":[{"domain","selector","name","algorithm","bits","retired","status",
"reason","published","record","zone"}],"resolvers":[...],"ok":BOOL}.

Exits 0 when every key checked matches, 1 otherwise.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			config := fs.String("config", "", "config `FILE` holding the [[dkim]] keys")
			domain := fs.String("domain", "", "check only the keys of this `domain`")
			selector := fs.String("selector", "", "check only the keys with this `selector`")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				cfg, err := loadConfig(*config)
				if err != nil {
					return err
				}
				return runDKIMCheck(os.Stdout, cfg, *domain, *selector, *asJSON)
			}
		},
	})
}

// runDKIMCheck checks the records of cfg's keys, filtered by domain and
// selector, and writes the results to w.
func runDKIMCheck(w io.Writer, cfg *configs.Config, domain, selector string, asJSON bool) error {
	all, err := readinessKeys(cfg)
	if err != nil {
		return err
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	var keys []*dkim.Key
	for _, k := range all {
		if (domain == "" || k.Domain == domain) && (selector == "" || k.Selector == selector) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		where := "the config"
		if cfg.File != "" {
			where = cfg.File
		}
		switch {
		case len(all) == 0:
			return fmt.Errorf("%s has no [[dkim]] keys (name the config with --config FILE)", where)
		case domain != "" && selector != "":
			return fmt.Errorf("%s has no [[dkim]] key for domain %s with selector %s", where, domain, selector)
		case domain != "":
			return fmt.Errorf("%s has no [[dkim]] key for domain %s", where, domain)
		default:
			return fmt.Errorf("%s has no [[dkim]] key with selector %s", where, selector)
		}
	}

	r, err := readinessResolver(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readinessTimeout)
	defer cancel()
	results := readiness.CheckKeys(ctx, r, keys)
	ok := true
	for _, res := range results {
		ok = ok && res.Status == readiness.KeyMatch
	}

	if asJSON {
		out := struct {
			Keys      []readiness.KeyResult `json:"keys"`
			Resolvers []string              `json:"resolvers"`
			OK        bool                  `json:"ok"`
		}{results, r.Servers(), ok}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		writeDKIMCheck(w, results, r.Servers())
	}
	if !ok {
		return exitError{1}
	}
	return nil
}

func writeDKIMCheck(w io.Writer, results []readiness.KeyResult, servers []string) {
	var b strings.Builder
	match := 0
	for _, res := range results {
		desc := fmt.Sprintf("%s %d", res.Algorithm, res.Bits)
		if res.Algorithm == dkim.Ed25519 {
			desc = string(res.Algorithm)
		}
		if res.Retired {
			desc += ", retired"
		}
		fmt.Fprintf(&b, "%-9s %s (%s)", res.Status, res.Name, desc)
		if res.Status == readiness.KeyMatch {
			match++
			b.WriteString("\n")
			continue
		}
		b.WriteString(": " + res.Reason + "\n")
		for _, p := range res.Published {
			b.WriteString("          found:   " + p + "\n")
		}
		b.WriteString("          publish: " + res.Zone + "\n")
	}
	fmt.Fprintf(&b, "\n%d of %d keys match (resolver %s)\n", match, len(results), strings.Join(servers, ", "))
	io.WriteString(w, b.String())
}

// readinessTimeout bounds a whole check; each query has [dns] timeout.
const readinessTimeout = 2 * time.Minute

// readinessKeys loads every [[dkim]] key of cfg, retired ones included.
func readinessKeys(cfg *configs.Config) ([]*dkim.Key, error) {
	s, err := dkim.NewSigner(cfg.DKIM, cfg.Signing)
	if err != nil {
		return nil, err
	}
	return s.Keys(), nil
}

// readinessResolver makes the resolver kiln uses: [dns] servers, or the system's.
func readinessResolver(cfg *configs.Config) (*resolve.Resolver, error) {
	var servers []string
	for _, s := range cfg.DNS.Servers {
		servers = append(servers, string(s))
	}
	r, err := resolve.New(resolve.Config{Servers: servers, Timeout: cfg.DNS.Timeout.D()})
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	return r, nil
}
