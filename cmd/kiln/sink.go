package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"kiln/internal/smtpsink"
)

func init() {
	register(&command{
		path:  "sink",
		args:  "[RULES.toml]",
		short: "run a fake mail exchanger for rehearsals and tests",
		long: `Runs an SMTP server that plays a receiving mail exchanger, driven by a
small rules file (the documented example is configs/sink.toml). Point kiln's
delivery at it to rehearse a campaign or a warm-up before going live: latency,
a seeded share of deferrals, replies chosen by recipient pattern, 421 at the
greeting, connections dropped after the final dot or in the middle of DATA,
STARTTLS with a self-signed certificate, and hourly limits per client IP that
answer the way Gmail (421 4.7.28), Yahoo (421 4.7.0 [TSS04]) or Microsoft
(451 4.7.650) do when they rate-limit a sending IP. A 421 always closes the
connection after it.

Without RULES.toml it accepts everything on 127.0.0.1:2525 and offers
STARTTLS. A bad rules file is reported as FILE:LINE: KEY: what is wrong.

Rules file, in short (every key optional; see configs/sink.toml):

  listen = ["127.0.0.1:2526"]    plain SMTP listeners (STARTTLS offered)
  listen_tls = []                 TLS from the first byte (RFC 8314)
  hostname, seed, latency = "20ms", max_message_size, max_recipients,
  smtputf8, read_timeout, write_timeout
  [tls]     mode = "on" | "off" | "broken", cert, key (PEM; default self-signed)
  [auth]    users = { name = "password" }, plaintext = false
  [output]  every = "10s", counters_file, log_file, save_dir
  [[reply]] stage = "connect" | "mail" | "rcpt" | "data", match = "unknown*@*",
            code, enhanced, text ({addr}, {ip}), delay, drop, drop_after
            (bytes, data only: cut DATA short), times, share (0..1)
  [[throttle]] match = "*@gmail.test", per_hour = 500,
            as = "gmail" | "yahoo" | "microsoft" (or code, enhanced, text),
            stage = "rcpt" (default) | "connect" | "mail" | "data"

For each event the first [[reply]] of its stage that matches answers; at
"data" the accepted recipients are tried in RCPT order. Draws for "share" come
from one source seeded by "seed", so the same run gives the same number of
deferrals. A throttle counts the accepted messages with a matching recipient
per client IP over the last 60 minutes; once a client reaches per_hour, its
matching mail is refused at the throttle's stage, and always after the final
dot, so the limit holds exactly however many connections are open.

Counters (sessions, TLS, messages, recipients, bytes, refusals by stage and
code, drops, throttled) are printed to standard error every --every and at
exit, and written as JSON to --counters. --log appends one JSON line per
message (time, queue id, session, client, helo, tls, auth, from, rcpts, size,
message_id, reply, dropped, partial, file), written before the reply is sent,
so every message the sink acknowledged is in the log. --save keeps each
accepted message as DIR/START-QUEUEID.eml. SIGINT or SIGTERM stops the sink.

  kiln sink configs/sink.toml
  kiln sink --listen 127.0.0.1:2526 --log sink.jsonl --counters sink.json
  kiln sink --check my-rules.toml`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			listen := fs.String("listen", "", "plain SMTP `addresses` to listen on, comma-separated (replaces the file's listen)")
			listenTLS := fs.String("listen-tls", "", "implicit TLS `addresses`, comma-separated (replaces the file's listen_tls)")
			logFile := fs.String("log", "", "append one JSON line per message to `FILE` (replaces output.log_file)")
			saveDir := fs.String("save", "", "save accepted messages in `DIR` (replaces output.save_dir)")
			counters := fs.String("counters", "", "write the counters as JSON to `FILE` (replaces output.counters_file)")
			every := fs.Duration("every", 0, "print the counters this often, e.g. 5s; 0 prints them at exit only (replaces output.every)")
			seed := fs.Uint64("seed", 0, "seed of the share draws (replaces seed)")
			maxMessages := fs.Int("max-messages", 0, "exit after this many accepted messages; 0: run until stopped")
			check := fs.Bool("check", false, "only check the rules file and exit")
			return func(args []string) error {
				if len(args) > 1 {
					return usagef("want at most one rules file")
				}
				f, _ := smtpsink.Parse("", nil)
				if len(args) == 1 {
					var err error
					if f, err = smtpsink.Load(args[0]); err != nil {
						fmt.Fprintln(os.Stderr, err)
						return exitError{1}
					}
				}
				if len(f.Listen) == 0 && len(f.ListenTLS) == 0 {
					f.Listen = []string{"127.0.0.1:2525"}
				}
				if *check {
					if len(args) == 0 {
						return usagef("--check needs a rules file")
					}
					fmt.Printf("%s: ok\n", f.Path)
					return nil
				}
				set := map[string]bool{}
				fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
				if set["listen"] {
					f.Listen = sinkAddrList(*listen)
				}
				if set["listen-tls"] {
					f.ListenTLS = sinkAddrList(*listenTLS)
				}
				if set["log"] {
					f.Output.LogFile = *logFile
				}
				if set["save"] {
					f.Output.SaveDir = *saveDir
				}
				if set["counters"] {
					f.Output.CountersFile = *counters
				}
				if set["every"] {
					f.Output.Every = smtpsink.Duration(*every)
				}
				if set["seed"] {
					f.Seed = *seed
				}
				if *every < 0 || *maxMessages < 0 {
					return usagef("--every and --max-messages must not be negative")
				}
				return runSink(f, *maxMessages)
			}
		},
	})
}

func runSink(f *smtpsink.File, maxMessages int) error {
	k, err := smtpsink.Open(f)
	if err != nil {
		return err
	}
	tls := "STARTTLS"
	switch f.TLS.Mode {
	case "off":
		tls = "no STARTTLS"
	case "broken":
		tls = "STARTTLS that always fails"
	}
	for _, a := range k.Addrs() {
		fmt.Fprintf(os.Stderr, "kiln sink: listening on %s (%s)\n", a, tls)
	}
	for _, a := range k.TLSAddrs() {
		fmt.Fprintf(os.Stderr, "kiln sink: listening on %s (implicit TLS)\n", a)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return k.Run(ctx, sinkReportWriter{"kiln sink: "}, time.Duration(f.Output.Every), maxMessages)
}

// sinkReportWriter writes each report line to standard error after a prefix.
type sinkReportWriter struct{ prefix string }

func (p sinkReportWriter) Write(b []byte) (int, error) {
	if _, err := os.Stderr.WriteString(p.prefix + string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// sinkAddrList splits a comma-separated flag value, dropping empty items.
func sinkAddrList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
