package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"kiln/policy/suppress"
)

// kiln suppress ls|add|rm|check|import|export: the suppression list, through
// the daemon's admin API (/api/v1/suppressions).

// suppScopeFlags select a scope: one account's, the global one, or (for listing)
// every scope.
type suppScopeFlags struct {
	account *string
	global  *bool
}

func addSuppScopeFlags(fs *flag.FlagSet, accountHelp, globalHelp string) *suppScopeFlags {
	s := &suppScopeFlags{account: fs.String("account", "", accountHelp)}
	if globalHelp != "" {
		s.global = fs.Bool("global", false, globalHelp)
	}
	return s
}

// query adds the scope to q: scope=NAME, "scope=" for the global scope, or
// nothing for every scope.
func (s *suppScopeFlags) query(q url.Values) error {
	if s.global != nil && *s.global {
		if *s.account != "" {
			return usagef("--account and --global exclude each other")
		}
		q.Set("scope", "")
		return nil
	}
	if *s.account != "" {
		q.Set("scope", *s.account)
	}
	return nil
}

// suppFilterFlags are the list and export filters.
type suppFilterFlags struct {
	scope  *suppScopeFlags
	reason *string
	source *string
	search *string
	prefix *string
	since  *string
}

func addSuppFilterFlags(fs *flag.FlagSet) *suppFilterFlags {
	return &suppFilterFlags{
		scope:  addSuppScopeFlags(fs, "only this account's entries", "only the global entries"),
		reason: fs.String("reason", "", "only this reason (userunknown, mailboxfull, feedback, ...)"),
		source: fs.String("source", "", "only this source: reply, late-bounce, complaint, unsubscribe, soft-failure, manual, import"),
		search: fs.String("search", "", "only addresses containing this (\"@example.com\" for a domain)"),
		prefix: fs.String("prefix", "", "only addresses starting with this"),
		since:  fs.String("since", "", "only entries made since: a date, an RFC 3339 time, or a duration ago (\"7d\")"),
	}
}

func (f *suppFilterFlags) query() (url.Values, error) {
	q := url.Values{}
	if err := f.scope.query(q); err != nil {
		return nil, err
	}
	for k, v := range map[string]string{"reason": *f.reason, "source": *f.source, "q": *f.search, "prefix": *f.prefix} {
		if v != "" {
			q.Set(k, strings.ToLower(v))
		}
	}
	if *f.since != "" {
		t, err := suppParseWhen(*f.since, time.Now(), -1)
		if err != nil {
			return nil, usagef("--since: %v", err)
		}
		q.Set("since", t.UTC().Format(time.RFC3339))
	}
	return q, nil
}

// suppParseWhen reads a time as a date, an RFC 3339 time, or a duration from now
// (sign -1: ago, +1: from now).
func suppParseWhen(s string, now time.Time, sign int) (time.Time, error) {
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	d, err := suppress.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither a date (2006-01-02), a time (RFC 3339) nor a duration (30d)", s)
	}
	return now.Add(time.Duration(sign) * d.D()), nil
}

func suppScopeLabel(s string) string {
	if s == "" {
		return "global"
	}
	return s
}

func suppDate(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func suppClip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func suppTable(entries []suppress.Entry, header bool) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	if header {
		fmt.Fprintln(tw, "ADDRESS\tSCOPE\tREASON\tSOURCE\tCREATED\tEXPIRES\tDETAIL")
	}
	for _, e := range entries {
		detail := e.Rule
		if e.Note != "" {
			detail = strings.TrimSpace(detail + " " + e.Note)
		}
		if detail == "" {
			detail = e.Reply
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Address, suppScopeLabel(e.Scope), e.Reason, e.Source,
			suppDate(e.Created), suppDate(e.Expires), orDash(suppClip(detail, 60)))
	}
	tw.Flush()
}

func suppDescribe(e suppress.Entry) string {
	s := fmt.Sprintf("%s (%s, reason %s, source %s, ", e.Address, suppScopeLabel(e.Scope), e.Reason, e.Source)
	if e.Expires.IsZero() {
		return s + "no expiry)"
	}
	return s + "expires " + suppDate(e.Expires) + ")"
}

func init() {
	register(&command{
		path:  "suppress ls",
		short: "list the suppression list",
		long: `Lists suppressed addresses with their scope ("global" or an account),
reason, source, when they were added and when they expire. Filters combine.
A page holds --limit entries; "more: ..." prints the command for the next
page, and --all pages through everything (with --json, one entry per line).
Expired entries are not shown. For a large list, "kiln suppress export" is
faster.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			ff := addSuppFilterFlags(fs)
			limit := fs.Int("limit", 100, "at most this many entries per page (1-10000)")
			cursor := fs.String("cursor", "", "continue after this cursor (from \"more: ...\")")
			all := fs.Bool("all", false, "page through every matching entry")
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments (use --search to find an address)")
				}
				if *limit < 1 || *limit > suppress.MaxPage {
					return usagef("--limit must be between 1 and %d", suppress.MaxPage)
				}
				q, err := ff.query()
				if err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				q.Set("limit", strconv.Itoa(*limit))
				next := *cursor
				first := true
				for {
					if next != "" {
						q.Set("cursor", next)
					}
					var raw json.RawMessage
					if err := c.do("GET", "/api/v1/suppressions?"+q.Encode(), nil, &raw); err != nil {
						return err
					}
					var page struct {
						Suppressions []suppress.Entry `json:"suppressions"`
						Next         string           `json:"next"`
					}
					if err := json.Unmarshal(raw, &page); err != nil {
						return err
					}
					switch {
					case *af.json && !*all:
						_, err := os.Stdout.Write(raw)
						return err
					case *af.json:
						enc := json.NewEncoder(os.Stdout)
						enc.SetEscapeHTML(false)
						for _, e := range page.Suppressions {
							if err := enc.Encode(e); err != nil {
								return err
							}
						}
					default:
						if first && len(page.Suppressions) == 0 {
							fmt.Println("no suppressed addresses match")
						} else {
							suppTable(page.Suppressions, first)
						}
					}
					first = false
					next = page.Next
					if next == "" {
						return nil
					}
					if !*all {
						fmt.Printf("more: kiln suppress ls %s--cursor %s\n", suppLsArgs(fs), next)
						return nil
					}
				}
			}
		},
	})
	register(&command{
		path:  "suppress add",
		args:  "ADDRESS...",
		short: "suppress addresses (source manual unless --source)",
		long: `Adds each address to the global list, or to one account's with --account.
The reason defaults to "suppressed" and the expiry to what the config says
for the reason and source (never, unless configured); --expires sets it.
An address already suppressed as strongly is left as it is, and the entry
in force is shown.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			sf := addSuppScopeFlags(fs, "add to this account's list (default: the global list)", "")
			reason := fs.String("reason", "", "the reason, in kiln's vocabulary (default: suppressed)")
			source := fs.String("source", "manual", "the source: manual, import, unsubscribe, complaint, ...")
			note := fs.String("note", "", "a comment kept with the entry")
			expires := fs.String("expires", "", "when it expires: a duration from now (\"30d\"), a date, an RFC 3339 time, or \"never\"")
			return func(args []string) error {
				if len(args) == 0 {
					return usagef("name at least one address")
				}
				reqs := make([]suppress.AddRequest, 0, len(args))
				for _, a := range args {
					r := suppress.AddRequest{Address: a, Scope: *sf.account, Reason: *reason, Source: suppress.Source(*source), Note: *note}
					if *expires != "" {
						if _, err := suppress.ParseDuration(*expires); err == nil {
							r.ExpiresIn = *expires
						} else if t, err := suppParseWhen(*expires, time.Now(), 1); err == nil {
							r.Expires = t
						} else {
							return usagef("--expires: %v", err)
						}
					}
					reqs = append(reqs, r)
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var res struct {
					Results []suppress.AddResult `json:"results"`
				}
				if err := c.do("POST", "/api/v1/suppressions", reqs, &res); err != nil {
					return err
				}
				if *af.json {
					return printJSON(res)
				}
				for _, r := range res.Results {
					if r.Changed {
						fmt.Println("suppressed", suppDescribe(r.Entry))
					} else {
						fmt.Println("already suppressed", suppDescribe(r.Entry))
					}
				}
				return nil
			}
		},
	})
	register(&command{
		path:  "suppress rm",
		args:  "ADDRESS...",
		short: "remove addresses from the suppression list",
		long: `Removes each address from the global list, from one account's with
--account, or from every list with --all-scopes. Removing an address that is
not there is not an error; the output says so.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			sf := addSuppScopeFlags(fs, "remove from this account's list (default: the global list)", "")
			every := fs.Bool("all-scopes", false, "remove from the global list and every account's")
			return func(args []string) error {
				if len(args) == 0 {
					return usagef("name at least one address")
				}
				if *every && *sf.account != "" {
					return usagef("--account and --all-scopes exclude each other")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var all []suppress.Entry
				for _, a := range args {
					q := url.Values{"address": {a}}
					if *every {
						q.Set("all_scopes", "true")
					} else {
						q.Set("scope", *sf.account)
					}
					var res struct {
						Removed []suppress.Entry `json:"removed"`
					}
					if err := c.do("DELETE", "/api/v1/suppressions?"+q.Encode(), nil, &res); err != nil {
						return fmt.Errorf("%s: %w", a, err)
					}
					all = append(all, res.Removed...)
					if *af.json {
						continue
					}
					if len(res.Removed) == 0 {
						where := "the " + suppScopeLabel(*sf.account) + " list"
						if *every {
							where = "any list"
						}
						fmt.Printf("%s was not on %s\n", a, where)
					}
					for _, e := range res.Removed {
						fmt.Printf("removed %s from %s\n", e.Address, suppScopeLabel(e.Scope))
					}
				}
				if *af.json {
					if all == nil {
						all = []suppress.Entry{}
					}
					return printJSON(map[string]any{"removed": all})
				}
				return nil
			}
		},
	})
	register(&command{
		path:  "suppress check",
		args:  "ADDRESS",
		short: "tell whether a delivery to an address would be suppressed",
		long: `Looks the address up as a delivery for the account would: in the
account's list, then in the global list (just the global list without
--account). Exits with status 1 when the address is suppressed.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			account := fs.String("account", "", "the account that would send")
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("name one address")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				q := url.Values{"address": {args[0]}}
				if *account != "" {
					q.Set("account", *account)
				}
				var res struct {
					Suppressed bool            `json:"suppressed"`
					Entry      *suppress.Entry `json:"entry"`
				}
				if err := c.do("GET", "/api/v1/suppressions/check?"+q.Encode(), nil, &res); err != nil {
					return err
				}
				if *af.json {
					if err := printJSON(res); err != nil {
						return err
					}
				} else if res.Suppressed && res.Entry != nil {
					e := res.Entry
					fmt.Println("suppressed", suppDescribe(*e))
					fmt.Printf("  since %s", suppDate(e.Created))
					if e.Rule != "" {
						fmt.Printf(", rule %s", e.Rule)
					}
					if e.QueueID != "" {
						fmt.Printf(", message %s", e.QueueID)
					}
					fmt.Println()
					if e.Reply != "" {
						fmt.Printf("  reply: %s\n", e.Reply)
					}
					if e.Note != "" {
						fmt.Printf("  note: %s\n", e.Note)
					}
				} else {
					fmt.Println(args[0], "is not suppressed")
				}
				if res.Suppressed {
					return exitError{1}
				}
				return nil
			}
		},
	})
	register(&command{
		path:  "suppress import",
		args:  "FILE",
		short: "import a CSV file of addresses into the suppression list",
		long: `Streams a CSV file ("-" for standard input) to the daemon, which adds its
rows as they arrive. The first line names the columns; only "address" (or
"email") is required, the others are optional:

  address, scope, reason, source, created, expires, rule, queue_id,
  status, reply, note

A file of bare addresses, one a line, without a header, works too. Rows go
to the global list, or to --account's (a row's own scope column wins).
Each row follows the add rules: an address already suppressed as strongly
is left alone. Malformed rows are reported by line number and the rest are
imported. A progress bar on standard error shows rows per second and, for a
file, the percentage done.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			account := fs.String("account", "", "import into this account's list (default: the global list)")
			source := fs.String("source", "import", "the source of rows that name none: import, manual, unsubscribe, complaint, ...")
			quiet := fs.Bool("quiet", false, "no progress bar")
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("name one file, or - for standard input")
				}
				var in io.Reader = os.Stdin
				size := int64(-1)
				if args[0] != "-" {
					f, err := os.Open(args[0])
					if err != nil {
						return err
					}
					defer f.Close()
					if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
						size = st.Size()
					}
					in = f
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				q := url.Values{"source": {*source}}
				if *account != "" {
					q.Set("scope", *account)
				}
				bar := newSuppProgress("import", size, *quiet)
				body := &suppProgressReader{r: in, bar: bar}
				resp, err := suppStream(c, "POST", "/api/v1/suppressions/import?"+q.Encode(), body, size, "text/csv")
				bar.done()
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				var rep suppress.ImportReport
				data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
				if err != nil {
					return err
				}
				if *af.json {
					_, err := os.Stdout.Write(data)
					return err
				}
				if err := json.Unmarshal(data, &rep); err != nil {
					return fmt.Errorf("unreadable import report: %v", err)
				}
				rate := ""
				if rep.Seconds > 0 {
					rate = fmt.Sprintf(" (%s rows/s)", suppThousands(int64(float64(rep.Rows)/rep.Seconds)))
				}
				fmt.Printf("read %s rows in %.1fs%s: %s added, %s already suppressed, %s expired, %s malformed\n",
					suppThousands(rep.Rows), rep.Seconds, rate, suppThousands(rep.Added), suppThousands(rep.Unchanged),
					suppThousands(rep.Expired), suppThousands(rep.Invalid))
				if len(rep.IgnoredColumns) > 0 {
					fmt.Printf("ignored columns: %s\n", strings.Join(rep.IgnoredColumns, ", "))
				}
				for _, e := range rep.Errors {
					fmt.Printf("  line %d: %s\n", e.Line, e.Message)
				}
				if rep.Invalid > int64(len(rep.Errors)) {
					fmt.Printf("  ... and %s more malformed rows\n", suppThousands(rep.Invalid-int64(len(rep.Errors))))
				}
				return nil
			}
		},
	})
	register(&command{
		path:  "suppress export",
		args:  "[FILE]",
		short: "export the suppression list as CSV",
		long: `Writes the matching entries as CSV, to FILE or standard output, streamed
from the daemon: columns address, scope, reason, source, created, expires,
rule, queue_id, status, reply, note, times in RFC 3339 UTC and "never" for
no expiry. "kiln suppress import" reads the file back. A progress count on
standard error shows rows and rows per second.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			ff := addSuppFilterFlags(fs)
			quiet := fs.Bool("quiet", false, "no progress count")
			return func(args []string) error {
				if len(args) > 1 {
					return usagef("name at most one file")
				}
				q, err := ff.query()
				if err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var out io.Writer = os.Stdout
				var f *os.File
				if len(args) == 1 && args[0] != "-" {
					// Write beside the target and rename at the end, so a
					// failed export never leaves a short file in its place.
					f, err = os.CreateTemp(suppDirOf(args[0]), ".kiln-export-*")
					if err != nil {
						return err
					}
					defer os.Remove(f.Name())
					defer f.Close()
					out = f
				}
				resp, err := suppStream(c, "GET", "/api/v1/suppressions/export?"+q.Encode(), nil, -1, "")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				bar := newSuppProgress("export", -1, *quiet || out == os.Stdout && suppIsTerminal(os.Stdout))
				bar.countLines = true
				_, err = io.Copy(out, &suppProgressReader{r: resp.Body, bar: bar})
				bar.done()
				if err != nil {
					return fmt.Errorf("export cut short: %w", err)
				}
				if msg := resp.Trailer.Get(suppress.TrailerExportError); msg != "" {
					return fmt.Errorf("export cut short: %s", msg)
				}
				if resp.Trailer.Get(suppress.TrailerExportRows) == "" {
					return errors.New("export cut short: the daemon did not say it finished")
				}
				if f != nil {
					if err := f.Sync(); err != nil {
						return err
					}
					if err := f.Close(); err != nil {
						return err
					}
					if err := os.Rename(f.Name(), args[0]); err != nil {
						return err
					}
					if !*quiet {
						fmt.Fprintf(os.Stderr, "exported %s rows to %s\n", suppThousands(max(bar.lines-1, 0)), args[0])
					}
				}
				return nil
			}
		},
	})
}

// suppLsArgs repeats the flags a "kiln suppress ls" was given, for the "more:"
// line, leaving out --cursor.
func suppLsArgs(fs *flag.FlagSet) string {
	var b strings.Builder
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "cursor" {
			return
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			fmt.Fprintf(&b, "--%s ", f.Name)
			return
		}
		fmt.Fprintf(&b, "--%s %s ", f.Name, suppShellQuote(f.Value.String()))
	})
	return b.String()
}

func suppShellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._-+:/=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func suppDirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i+1]
	}
	return "."
}

// suppStream sends a request whose body (or answer) is streamed rather
// than held in memory, and turns an error answer into the API's message.
func suppStream(c *adminClient, method, path string, body io.Reader, size int64, contentType string) (*http.Response, error) {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size // -1: chunked
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	// No overall timeout: a million rows take a while, and the transfer
	// itself shows it is alive.
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach kiln's admin API at %s (is kiln running? --config or --admin name it): %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%s (%s)", e.Error.Message, e.Error.Code)
		}
		return nil, fmt.Errorf("admin API: %s", resp.Status)
	}
	return resp, nil
}

// suppProgressReader counts what passes through it for a progress bar.
type suppProgressReader struct {
	r   io.Reader
	bar *suppProgress
}

func (p *suppProgressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.bar.add(b[:n])
	return n, err
}

// suppProgress draws the progress of a transfer on standard error: a bar and
// percentage when the total size is known, rows (lines) and rows per second
// always. On a terminal it redraws one line ten times a second; otherwise it
// prints a line every five seconds, so logs stay readable.
type suppProgress struct {
	label      string
	total      int64
	off        bool
	tty        bool
	countLines bool
	w          io.Writer

	mu         sync.Mutex
	bytes      int64
	lines      int64
	start      time.Time
	last       time.Time
	drawn      bool
	lastLength int
}

func newSuppProgress(label string, total int64, off bool) *suppProgress {
	now := time.Now()
	return &suppProgress{label: label, total: total, off: off, tty: suppIsTerminal(os.Stderr), countLines: true,
		w: os.Stderr, start: now, last: now}
}

func suppIsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (p *suppProgress) add(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes += int64(len(b))
	if p.countLines {
		p.lines += int64(bytes.Count(b, []byte{'\n'}))
	}
	if p.off {
		return
	}
	now := time.Now()
	every := 100 * time.Millisecond
	if !p.tty {
		every = 5 * time.Second
	}
	if now.Sub(p.last) >= every {
		p.last = now
		p.draw(now, false)
	}
}

// done draws the final state and ends the line.
func (p *suppProgress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.off || !p.drawn && time.Since(p.start) < time.Second {
		return
	}
	p.draw(time.Now(), true)
}

func (p *suppProgress) draw(now time.Time, final bool) {
	p.drawn = true
	secs := now.Sub(p.start).Seconds()
	rows := max(p.lines-1, 0) // the header
	var b strings.Builder
	fmt.Fprintf(&b, "%s ", p.label)
	if p.total > 0 {
		frac := min(float64(p.bytes)/float64(p.total), 1)
		const width = 30
		full := int(frac * width)
		fmt.Fprintf(&b, "[%s%s] %5.1f%% ", strings.Repeat("#", full), strings.Repeat(".", width-full), 100*frac)
	}
	fmt.Fprintf(&b, "%s rows", suppThousands(rows))
	if secs > 0 {
		fmt.Fprintf(&b, "  %s rows/s", suppThousands(int64(float64(rows)/secs)))
	}
	fmt.Fprintf(&b, "  %s", suppByteSize(p.bytes))
	if p.total > 0 {
		fmt.Fprintf(&b, "/%s", suppByteSize(p.total))
		if !final && p.bytes > 0 && p.bytes < p.total {
			left := time.Duration(float64(now.Sub(p.start)) * float64(p.total-p.bytes) / float64(p.bytes))
			fmt.Fprintf(&b, "  ETA %s", left.Round(time.Second))
		}
	}
	s := b.String()
	if p.tty {
		pad := max(p.lastLength-len(s), 0)
		p.lastLength = len(s)
		fmt.Fprintf(p.w, "\r%s%s", s, strings.Repeat(" ", pad))
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, s)
}

func suppThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func suppByteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
