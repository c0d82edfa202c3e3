package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseBounce feeds arbitrary bytes to the report parser: it must never
// panic, every bounce must name a rule, carry valid UTF-8, and never be hard
// for a reason that blames the sender (invariant 5).
func FuzzParseBounce(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, name := range files {
		if raw, err := os.ReadFile(name); err == nil {
			f.Add(raw)
		}
	}
	c := DefaultClassifier()
	f.Fuzz(func(t *testing.T, raw []byte) {
		rep, err := c.ParseBounce(raw)
		if err != nil {
			return
		}
		for _, b := range rep.Bounces {
			if b.Rule == "" {
				t.Fatalf("bounce without a rule: %+v", b)
			}
			if b.Hard && !mayBeHard[b.Reason] {
				t.Fatalf("hard %s: %+v", b.Reason, b)
			}
			if !utf8.ValidString(b.Diagnostic) || !utf8.ValidString(b.Recipient) {
				t.Fatalf("invalid UTF-8: %+v", b)
			}
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzClassify checks the classifier's promises for any reply: a decision
// with a rule and a known reason, never hard for a temporary reply during
// delivery, never hard for a sender-fault reason, and retry only for
// temporary replies.
func FuzzClassify(f *testing.F) {
	for _, r := range benchReplies {
		f.Add(r.Command, r.Line, "", false)
	}
	for _, tc := range classifyCases {
		f.Add(tc.command, tc.line, tc.host, tc.final)
	}
	c := DefaultClassifier()
	f.Fuzz(func(t *testing.T, command, line, host string, final bool) {
		r := ParseReply(command, line)
		r.Host = host
		var d Decision
		if final {
			d = c.ClassifyFinal(r)
		} else {
			d = c.Classify(r)
		}
		if d.Rule == "" || !vocabulary[d.Reason] {
			t.Fatalf("%q: %+v", line, d)
		}
		if d.Hard && !mayBeHard[d.Reason] {
			t.Fatalf("%q: hard %s", line, d.Reason)
		}
		if !final && d.Hard && !r.Permanent() {
			t.Fatalf("%q: a temporary reply condemned the address: %+v", line, d)
		}
		if d.Action == ActionRetry && (final || r.Permanent()) {
			t.Fatalf("%q: retry after a permanent or final reply: %+v", line, d)
		}
		if d.Status != "" && !ValidStatus(d.Status) {
			t.Fatalf("%q: status %q", line, d.Status)
		}
	})
}

// FuzzParseReply: any input gives a Reply whose code and status are
// well-formed and whose line keeps the words.
func FuzzParseReply(f *testing.F) {
	f.Add("RCPT", "550 5.1.1 <a@example.com>: user unknown")
	f.Add("DATA", "550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third")
	f.Add("", "421")
	f.Add("MAIL", "250 ok")
	f.Add("", "5.1.1 no code")
	f.Fuzz(func(t *testing.T, command, line string) {
		r := ParseReply(command, line)
		if r.Code != 0 && (r.Code < 200 || r.Code > 599) {
			t.Fatalf("%q: code %d", line, r.Code)
		}
		if r.Enhanced != "" && !ValidStatus(r.Enhanced) {
			t.Fatalf("%q: status %q", line, r.Enhanced)
		}
		if r.Command != command {
			t.Fatalf("command %q became %q", command, r.Command)
		}
		if strings.ContainsAny(r.Line, "\r\n") {
			t.Fatalf("%q: line %q is not one line", line, r.Line)
		}
	})
}
