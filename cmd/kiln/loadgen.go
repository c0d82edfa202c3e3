package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"kiln/internal/loadgen"
)

func init() {
	register(&command{
		path:  "loadgen",
		args:  "HOST:PORT",
		short: "inject test messages over SMTP and measure acceptance",
		long: `Sends messages to an SMTP server (kiln's submission listener, or any other)
over --concurrency connections, as fast as it answers or at --rate messages
per second, until --messages were sent or --duration is over. Every few
seconds it prints its progress; at the end, messages per second, the
refusals and lost connections by stage and reply code ("RCPT 550 5.1.1",
"DOT 451 4.3.0", "CONNECT connection refused"), and the latency of the 250
that answers each final dot (p50, p90, p99, max): the time a durable MTA
takes to write and sync a message before acknowledging it. --json prints the
same as one JSON object instead (latencies in milliseconds).

Connections: --tls none | starttls | implicit, with the certificate checked
unless --insecure (or against --ca FILE); --auth plain | login with --user
and --password (kiln accepts AUTH in plaintext from loopback clients only);
--per-conn N says QUIT after N messages and opens a new connection, 1 for a
connection per message, 0 (the default) to keep each connection for the
whole run.

Messages: about --size bytes each (header included), with a unique
Message-ID <RUN.N@FROM-DOMAIN>, From loadgen@--from-domain (the domain the
account must be allowed to send from), --rcpts recipients each. Recipients
cycle over --domains (a count N: dom1.test .. domN.test, or a list) and over
the local parts of --to, numbered 1 to --users when --users is set:
--to rcpt --users 2 --domains 2 gives rcpt1@dom1.test, rcpt1@dom2.test,
rcpt2@dom1.test, rcpt2@dom2.test.

--ack-log FILE appends one JSON line per acknowledged message:
{"message_id":"<...>","queue_id":"...","reply":"250 2.0.0 OK: queued as ...",
"rcpts":[...],"at":"..."}: after a crash, every message_id in it must reach
the destination (compare with "kiln sink --log").

With --rate the schedule is fixed in advance (message i starts i/rate seconds
after the start), so a server that stalls meets the backlog when it
recovers, and the latency figures are those of a fixed injection rate.
SIGINT stops the run after the transactions in progress and prints the
report; a second SIGINT exits at once.

  kiln loadgen --messages 20000 --concurrency 16 127.0.0.1:2525
  kiln loadgen --tls starttls --insecure --auth plain --user app --password pw \
      --from-domain news.example.com --duration 60s --rate 500 --json 127.0.0.1:587
  kiln loadgen --domains gmail.test,yahoo.test --ack-log acks.jsonl 127.0.0.1:2525`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			var cfg loadgen.Config
			tlsMode := fs.String("tls", "none", "none, starttls or implicit")
			fs.BoolVar(&cfg.Insecure, "insecure", false, "do not check the server's certificate")
			ca := fs.String("ca", "", "check the server's certificate against the PEM certificates in `FILE`")
			fs.StringVar(&cfg.ServerName, "server-name", "", "name the certificate must carry (default: the host of HOST:PORT)")
			fs.StringVar(&cfg.Auth, "auth", "", "plain or login; empty: no AUTH")
			fs.StringVar(&cfg.User, "user", "", "AUTH user name")
			fs.StringVar(&cfg.Password, "password", "", "AUTH password (visible to other users in the process list; prefer $KILN_LOADGEN_PASSWORD)")
			fs.IntVar(&cfg.Concurrency, "concurrency", 8, "connections working at once")
			fs.IntVar(&cfg.Messages, "messages", 0, "messages to send (default 1000 without --duration)")
			fs.DurationVar(&cfg.Duration, "duration", 0, "stop starting messages after this long, e.g. 60s")
			fs.Float64Var(&cfg.Rate, "rate", 0, "messages per second across all connections; 0: as fast as the server answers")
			fs.IntVar(&cfg.PerConn, "per-conn", 0, "messages per connection before QUIT; 1: a connection per message; 0: no limit")
			fs.IntVar(&cfg.Size, "size", 4096, "message size in `bytes`, header included")
			fs.IntVar(&cfg.Rcpts, "rcpts", 1, "recipients per message")
			domains := fs.String("domains", "1", "recipient domains: a count N (dom1.test .. domN.test) or a comma-separated list")
			to := fs.String("to", "rcpt", "recipient local parts, comma-separated, used in turn")
			fs.IntVar(&cfg.Users, "users", 0, "number each local part from 1 to N (rcpt1, rcpt2, ...); 0: no numbers")
			fs.StringVar(&cfg.FromDomain, "from-domain", "loadgen.test", "domain of the From header and the default sender")
			fs.StringVar(&cfg.From, "from", "", "envelope sender (default loadgen@FROM-DOMAIN)")
			fs.StringVar(&cfg.Helo, "helo", "loadgen.invalid", "EHLO name")
			fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "limit on each command and reply")
			fs.BoolVar(&cfg.NoResume, "no-tls-resume", false, "make a full TLS handshake on every connection")
			every := fs.Duration("every", 5*time.Second, "print progress this often; 0: never")
			ackLog := fs.String("ack-log", "", "append one JSON line per acknowledged message to `FILE`")
			asJSON := fs.Bool("json", false, "print the summary as JSON")
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want the server's HOST:PORT")
				}
				cfg.Addr = args[0]
				cfg.TLS = loadgen.TLSMode(*tlsMode)
				if cfg.Password == "" {
					cfg.Password = os.Getenv("KILN_LOADGEN_PASSWORD")
				}
				if cfg.Messages == 0 && cfg.Duration == 0 {
					cfg.Messages = 1000
				}
				var err error
				if cfg.Domains, err = loadgen.ParseDomains(*domains); err != nil {
					return usagef("--domains: %v", err)
				}
				for _, l := range strings.Split(*to, ",") {
					if l = strings.TrimSpace(l); l != "" {
						cfg.Locals = append(cfg.Locals, l)
					}
				}
				if *ca != "" {
					pem, err := os.ReadFile(*ca)
					if err != nil {
						return err
					}
					cfg.RootCAs = x509.NewCertPool()
					if !cfg.RootCAs.AppendCertsFromPEM(pem) {
						return fmt.Errorf("%s: no PEM certificate in it", *ca)
					}
				}
				if *every > 0 {
					cfg.Progress, cfg.Every = loadgenProgress{}, *every
				}
				if *ackLog != "" {
					f, err := os.OpenFile(*ackLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
					if err != nil {
						return err
					}
					defer f.Close()
					cfg.AckLog = f
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				go func() {
					<-ctx.Done()
					stop() // a second signal ends the process at once
				}()
				rep, err := loadgen.Run(ctx, cfg)
				if err != nil {
					return usagef("%v", err)
				}
				if *asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				rep.WriteText(os.Stdout)
				return nil
			}
		},
	})
}

// loadgenProgress writes progress lines to standard error.
type loadgenProgress struct{}

func (loadgenProgress) Write(b []byte) (int, error) {
	if _, err := os.Stderr.WriteString("kiln loadgen: " + string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
