package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"kiln/dkim"
)

func init() {
	register(&command{
		path:  "dkim keygen",
		short: "generate a DKIM signing key and print the DNS record to publish",
		long: `Writes a new private key to DIR/SELECTOR._domainkey.DOMAIN.pem (PKCS#8 PEM,
mode 0600; an existing file is never overwritten; DIR is created if missing)
and prints on standard output the TXT record to publish, as one zone-file
line with the value split into strings of at most 255 bytes:

  SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=" "MIIBIjAN..." "..."

Then add the key to the config:

  [[dkim]]
  domain = "DOMAIN"
  selector = "SELECTOR"
  key = "DIR/SELECTOR._domainkey.DOMAIN.pem"

RSA keys are 2048 bits unless --bits says otherwise (1024 to 4096; RFC 8301
advises at least 2048). Ed25519 keys (RFC 8463) are small and fast, but not
every receiver verifies them yet: configure an RSA and an Ed25519 key for a
domain, on two selectors, and kiln signs with both.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			domain := fs.String("domain", "", "signing `domain` (d=), e.g. example.com")
			selector := fs.String("selector", "", "`selector` (s=) naming the key record, e.g. s2025")
			algo := fs.String("algo", "rsa", "key type: rsa or ed25519")
			bits := fs.Int("bits", dkim.DefaultRSABits, "RSA key size in bits")
			out := fs.String("out", "", "`DIR`ectory to write the key file into (required)")
			return func(args []string) error {
				if len(args) > 0 {
					return usagef("unexpected argument %q", args[0])
				}
				kc := dkim.KeyConfig{Domain: *domain, Selector: *selector, Key: "-"}
				if err := kc.Validate(); err != nil {
					return usagef("--%v", err)
				}
				if *out == "" {
					return usagef("--out DIR is required")
				}
				a := dkim.Algorithm(*algo)
				if a != dkim.RSA && a != dkim.Ed25519 {
					return usagef("--algo must be rsa or ed25519, not %q", *algo)
				}
				priv, err := dkim.GenerateKey(a, *bits)
				if err != nil {
					return usagef("%v", err)
				}
				zone, err := dkim.ZoneRecord(*selector, *domain, priv.Public())
				if err != nil {
					return err
				}
				path := filepath.Join(*out, dkim.KeyFileName(*selector, *domain))
				if err := dkim.WriteKeyFile(path, priv); err != nil {
					return err
				}
				k, _ := dkim.NewKey(*domain, *selector, priv)
				fmt.Fprintf(os.Stderr, "kiln dkim keygen: wrote %s (%s %d bits); publish:\n", path, k.Algorithm(), k.Bits())
				fmt.Println(zone)
				return nil
			}
		},
	})
}
