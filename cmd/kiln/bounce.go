package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"kiln/policy"
	"kiln/policy/dsn"
)

func init() {
	register(&command{
		path:  "bounce parse",
		args:  "FILE",
		short: "parse a bounce report (DSN, ARF, auto-reply, MTA formats) and print what it says per recipient",
		long: `Reads one email from FILE ("-" for standard input) and prints one JSON object:

    {"kind":"dsn","bounces":[{"recipient":"a@example.com","status":"5.1.1",
      "reason":"userunknown","hard":true,"action":"bounce","rule":"user-unknown",
      "diagnostic":"550 5.1.1 <a@example.com>: user unknown","remote_mta":"mx.example.com", ...}]}

kind is dsn (a delivery report), arf (a complaint, RFC 5965), autoreply (RFC
3834: kiln ignores it) or unknown (not a report); format says how it was read:
rfc3464, text (an MTA's own format), amazonses, arf, jmrp, rfc3834. reason
uses the vocabulary of DESIGN.md; hard means the address itself is bad; rule
names the rule that decided. With --headers the original message's header
fields are printed too, as kiln's bounce listener reads them to find its own
Message-ID and VERP token.

At most 4 MiB of FILE is read; a report is never that long, and what follows
is the returned message. FILE may be an mbox: the bounces of all its
messages are listed.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			rules := fs.String("rules", "", "an extra rules file laid over the embedded rules")
			headers := fs.Bool("headers", false, "also print the original message's header fields")
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one FILE")
				}
				c, err := bounceClassifier(*rules)
				if err != nil {
					return err
				}
				var r io.Reader = os.Stdin
				if args[0] != "-" {
					f, err := os.Open(args[0])
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				raw, err := io.ReadAll(io.LimitReader(r, dsn.MaxSize+1))
				if err != nil {
					return err
				}
				// An mbox holds several reports: parse each and list
				// all their bounces.
				var rep *policy.Report
				for _, one := range dsn.SplitMbox(raw) {
					r, err := c.ParseBounce(one)
					if err != nil {
						if rep == nil && len(dsn.SplitMbox(raw)) == 1 {
							return err
						}
						continue
					}
					if rep == nil {
						rep = r
						continue
					}
					rep.Bounces = append(rep.Bounces, r.Bounces...)
				}
				if rep == nil {
					return fmt.Errorf("%s: no message", args[0])
				}
				return printReport(os.Stdout, rep, *headers)
			}
		},
	})
	register(&command{
		path:  "bounce classify",
		short: "classify SMTP reply lines read on standard input, one JSON line out per line in",
		long: `Reads one reply per line on standard input, either a JSON object

    {"id":"r1","reply":"550 5.1.1 <a@example.com>: user unknown","command":"RCPT","host":"mx.example.com"}

or a plain reply line, and prints one JSON object per line, flushed at once:

    {"id":"r1","reason":"userunknown","hard":true,"action":"bounce","rule":"user-unknown",
     "status":"5.1.1","signal":"","softfail":false}

command (CONNECT, HELO, MAIL, RCPT, DATA, ...) and host (the remote MX) are
optional but sharpen the decision: "user unknown" after DATA is a content
filter, and provider rules are scoped by host.

By default a line is read as the last reply before delivery was given up, as
quoted in bounce reports: a temporary reply nothing explains is "expired".
--live reads lines as replies during delivery, the way kiln's delivery
engine calls the classifier: temporary replies are retried, never hard.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			rules := fs.String("rules", "", "an extra rules file laid over the embedded rules")
			live := fs.Bool("live", false, "classify as replies during delivery, not as final replies")
			host := fs.String("host", "", "remote host for lines that do not name one")
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments; reply lines come on standard input")
				}
				c, err := bounceClassifier(*rules)
				if err != nil {
					return err
				}
				return classifyLines(os.Stdin, os.Stdout, c, !*live, *host)
			}
		},
	})
}

func bounceClassifier(rulesFile string) (*policy.Classifier, error) {
	if rulesFile == "" {
		return policy.DefaultClassifier(), nil
	}
	c, err := policy.NewClassifier(policy.ClassifyConfig{Rules: rulesFile})
	if err != nil {
		return nil, fmt.Errorf("--rules: %v", err)
	}
	return c, nil
}

// classifyInput is one JSON input line of "bounce classify".
type classifyInput struct {
	ID      json.RawMessage `json:"id,omitempty"`
	Reply   string          `json:"reply"`
	Command string          `json:"command"`
	Host    string          `json:"host"`
	Final   *bool           `json:"final"`
}

type classifyOutput struct {
	ID       json.RawMessage `json:"id,omitempty"`
	Reason   string          `json:"reason"`
	Hard     bool            `json:"hard"`
	Action   policy.Action   `json:"action"`
	Rule     string          `json:"rule"`
	Status   string          `json:"status"`
	Signal   policy.Signal   `json:"signal"`
	SoftFail bool            `json:"softfail"`
	Error    string          `json:"error,omitempty"`
}

func classifyLines(in io.Reader, out io.Writer, c *policy.Classifier, final bool, host string) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		in := classifyInput{Reply: line}
		var o classifyOutput
		if strings.HasPrefix(line, "{") {
			in = classifyInput{}
			if err := json.Unmarshal([]byte(line), &in); err != nil {
				o.Error = "bad JSON: " + err.Error()
				in.Reply = ""
			}
			o.ID = in.ID
		}
		if o.Error == "" {
			r := policy.ParseQuotedReply(in.Command, in.Reply)
			r.Host = in.Host
			if r.Host == "" {
				r.Host = host
			}
			f := final
			if in.Final != nil {
				f = *in.Final
			}
			var d policy.Decision
			if f {
				d = c.ClassifyFinal(r)
			} else {
				d = c.Classify(r)
			}
			o.Reason, o.Hard, o.Action, o.Rule = d.Reason, d.Hard, d.Action, d.Rule
			o.Status, o.Signal, o.SoftFail = d.Status, d.Signal, d.SoftFail
		}
		if err := enc.Encode(o); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return sc.Err()
}

// printReport writes the "bounce parse" JSON.
func printReport(w io.Writer, rep *policy.Report, headers bool) error {
	out := struct {
		*policy.Report
		OriginalHeaders map[string][]string `json:"original_headers,omitempty"`
	}{Report: rep}
	if headers {
		out.OriginalHeaders = map[string][]string{}
		fields := rep.Original.Fields()
		for fields.Next() {
			k := fields.Key()
			v, err := fields.Text()
			if err != nil {
				v = fields.Value()
			}
			out.OriginalHeaders[k] = append(out.OriginalHeaders[k], v)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}
