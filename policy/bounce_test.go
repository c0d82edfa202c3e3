package policy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"kiln/policy/dsn"
)

var update = flag.Bool("update", false, "rewrite the golden .json files under testdata")

// golden is what a golden file holds for one report.
type golden struct {
	Kind              string   `json:"kind"`
	Format            string   `json:"format"`
	Bounces           []Bounce `json:"bounces"`
	OriginalMessageID string   `json:"original_message_id,omitempty"`
}

// TestGolden parses every testdata/NN-name.eml and compares the result with
// NN-name.json (go test -run TestGolden -update rewrites them).
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden samples: %v", err)
	}
	for _, eml := range files {
		name := strings.TrimSuffix(filepath.Base(eml), ".eml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(eml)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ParseBounce(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(golden{rep.Kind, rep.Format, rep.Bounces, rep.OriginalMessageID()}, "", "  ")
			got = append(got, '\n')
			path := strings.TrimSuffix(eml, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s:\n%s", eml, path, got)
			}
		})
	}
}

// TestGoldenMeaning states what the golden samples must mean, so that an
// -update cannot quietly bless a wrong answer.
func TestGoldenMeaning(t *testing.T) {
	type want struct {
		recipient, reason string
		hard              bool
	}
	cases := map[string][]want{
		"01-postfix-dsn":           {{"nobody@dest.example", "userunknown", true}, {"full@dest.example", "mailboxfull", false}},
		"02-exim-blocklist":        {{"alice@blocking.example", "blocked", false}},
		"03-qmail-two":             {{"carol@dest.example", "mailboxfull", false}, {"dave@qm.dest.example", "userunknown", true}},
		"04-arf-abuse":             {{"erin@isp.example", "feedback", false}},
		"05-autoreply":             {{"frank@dest.example", "vacation", false}},
		"06-sendmail-dmarc":        {{"grace@gmail.example", "authfailure", false}},
		"07-ses-bounce":            {{"henry@dest.example", "userunknown", true}},
		"08-delayed":               {{"ivan@slow.example", "networkerror", false}},
		"09-exchange-ndr":          {{"judy@corp.example", "userunknown", true}},
		"10-bounce-of-bounce":      {{"kate@loop.example", "userunknown", true}},
		"11-sendmail-data-unknown": {{"leo@carrier.example", "filtered", false}},
		"12-latin1":                {{"müller@de.example", "userunknown", true}},
		"13-truncated":             {{"nobody@dest.example", "userunknown", true}},
		"14-no-recipient":          {},
		"15-not-a-report":          {},
		"16-broken-mime":           {{"olga@broken.example", "userunknown", true}},
	}
	for name, wants := range cases {
		raw, err := os.ReadFile(filepath.Join("testdata", name+".eml"))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ParseBounce(raw)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(rep.Bounces) < len(wants) || (len(wants) == 0 && len(rep.Bounces) != 0) {
			t.Errorf("%s: got %d bounces %+v, want %d", name, len(rep.Bounces), rep.Bounces, len(wants))
			continue
		}
		for i, w := range wants {
			b := rep.Bounces[i]
			if !strings.EqualFold(b.Recipient, w.recipient) || b.Reason != w.reason || b.Hard != w.hard {
				t.Errorf("%s #%d: got %s %s hard=%v (rule %s), want %s %s hard=%v", name, i, b.Recipient, b.Reason, b.Hard, b.Rule, w.recipient, w.reason, w.hard)
			}
			if b.Rule == "" {
				t.Errorf("%s #%d: no rule name", name, i)
			}
		}
	}
}

func TestOriginalHeaders(t *testing.T) {
	for name, id := range map[string]string{
		"01-postfix-dsn":    "m1.20250303@sender.example",
		"02-exim-blocklist": "m2.20250304@sender.example",
		"03-qmail-two":      "m3.20250305@sender.example",
		"04-arf-abuse":      "m4.20250306@sender.example",
		"09-exchange-ndr":   "m9.20250311@sender.example",
	} {
		raw, _ := os.ReadFile(filepath.Join("testdata", name+".eml"))
		rep, err := ParseBounce(raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.OriginalMessageID(); got != id {
			t.Errorf("%s: original Message-ID %q, want %q", name, got, id)
		}
	}
	// The VERP return path of the returned message is there too.
	raw, _ := os.ReadFile(filepath.Join("testdata", "01-postfix-dsn.eml"))
	rep, _ := ParseBounce(raw)
	if got := rep.Original.Get("Return-Path"); !strings.Contains(got, "bounce+t1.abcdef@") {
		t.Errorf("Return-Path %q", got)
	}
}

// TestBounceOfBounce: a report whose returned message is itself a report
// must not report the inner report's recipients.
func TestBounceOfBounce(t *testing.T) {
	raw, _ := os.ReadFile(filepath.Join("testdata", "10-bounce-of-bounce.eml"))
	rep, err := ParseBounce(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bounces) != 1 || rep.Bounces[0].Recipient != "kate@loop.example" {
		t.Fatalf("got %+v", rep.Bounces)
	}
	if rep.OriginalMessageID() != "inner10@other.example" {
		t.Errorf("original Message-ID %q", rep.OriginalMessageID())
	}
}

func TestBadInput(t *testing.T) {
	if _, err := ParseBounce(nil); err == nil {
		t.Error("empty input: no error")
	}
	if _, err := ParseBounce([]byte("   \r\n\r\n")); err == nil {
		t.Error("blank input: no error")
	}
	cases := map[string]string{
		"header only":        "From: MAILER-DAEMON@x.example\r\nSubject: failure",
		"garbage":            "\x00\x01\x02\xff\xfe not a message at all \x80\x81",
		"unterminated part":  "Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b.example\r\nStatus: 5.1.1\r\n",
		"no boundary param":  "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nuser unknown a@b.example\r\n--x--\r\n",
		"bad encoding":       "From: MAILER-DAEMON@x.example\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!! not base64 ####\r\n",
		"unknown charset":    "From: MAILER-DAEMON@x.example\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\n<a@b.example>: 550 5.1.1 user unknown\r\n",
		"nested too deep":    strings.Repeat("Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n", 50) + "\r\nhi\r\n",
		"dsn no recipient":   "Content-Type: multipart/report; boundary=y\r\n\r\n--y\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\n--y--\r\n",
		"invalid utf-8 diag": "From: MAILER-DAEMON@x.example\r\nSubject: Undelivered\r\n\r\n<a@b.example>: 550 5.1.1 \xff\xfe user unknown \xc3\x28\r\n",
	}
	for name, in := range cases {
		rep, err := ParseBounce([]byte(in))
		if err != nil {
			continue // a clear error is fine; a panic is not
		}
		for _, b := range rep.Bounces {
			if !utf8.ValidString(b.Diagnostic) || !utf8.ValidString(b.Recipient) {
				t.Errorf("%s: invalid UTF-8 in %+v", name, b)
			}
			if b.Rule == "" {
				t.Errorf("%s: bounce without a rule: %+v", name, b)
			}
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestHugeBounce: a report of tens of megabytes (a huge returned message, or
// a flood of recipients) is read only in part, quickly, in bounded memory.
func TestHugeBounce(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\nContent-Type: multipart/report; boundary=h\r\n\r\n--h\r\nContent-Type: text/plain\r\n\r\n")
	for i := 0; b.Len() < 2<<20; i++ {
		fmt.Fprintf(&b, "<user%d@dest.example>: host mx.dest.example[192.0.2.1] said: 550 5.1.1 user unknown (in reply to RCPT TO command)\r\n\r\n", i)
	}
	b.WriteString("--h\r\nContent-Type: message/rfc822\r\n\r\nSubject: big\r\n\r\n")
	for b.Len() < 40<<20 {
		b.WriteString(strings.Repeat("A", 998) + "\r\n")
	}
	raw := b.Bytes()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	rep, err := DefaultClassifier().ReadBounce(bytes.NewReader(raw))
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Truncated {
		t.Error("a 40 MB report should be marked truncated")
	}
	if len(rep.Bounces) == 0 || len(rep.Bounces) > 1000 {
		t.Errorf("%d bounces", len(rep.Bounces))
	}
	if elapsed > 20*time.Second && !raceEnabled {
		t.Errorf("took %v", elapsed)
	}
	if grown := int64(after.TotalAlloc - before.TotalAlloc); grown > 1<<30 && !raceEnabled {
		t.Errorf("allocated %d MB for a report read in part", grown>>20)
	}
	t.Logf("%d bounces in %v, %d MB allocated", len(rep.Bounces), elapsed, (after.TotalAlloc-before.TotalAlloc)>>20)
}

// The corpus of real bounces lives outside the repository (DESIGN.md, "The
// test world"); CI runs on a clean clone without it.
const corpusDir = "../../shared/bounces"

type corpusRow struct {
	Recipient  string `json:"recipient"`
	Reason     string `json:"reason"`
	HardBounce bool   `json:"hardbounce"`
}

// TestCorpusAccuracy runs the whole development corpus and holds kiln to
// the accuracy floor of issue 3: late bounces hardsoft >= 0.97, reason >=
// 0.90, parsed >= 0.95; reply lines hardsoft >= 0.93, reason >= 0.75.
// A report row is matched to a bounce by recipient address, else by position
// (a report may name a recipient differently, or not at all).
func TestCorpusAccuracy(t *testing.T) {
	manifest := filepath.Join(corpusDir, "dev.jsonl")
	if _, err := os.Stat(manifest); err != nil {
		t.Skipf("bounce corpus not found at %s (it is not part of the repository, so a clean clone, CI included, skips this test): %v", corpusDir, err)
	}
	c := DefaultClassifier()

	f, err := os.Open(manifest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows, hard, reason, samples, parsed int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var s struct {
			File   string      `json:"file"`
			Expect []corpusRow `json:"expect"`
		}
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(corpusDir, "dev", s.File))
		if err != nil {
			t.Fatal(err)
		}
		samples++
		// As "kiln bounce parse" does: an mbox file holds several reports.
		var got []Bounce
		for _, one := range dsn.SplitMbox(raw) {
			if rep, err := c.ParseBounce(one); err == nil {
				got = append(got, rep.Bounces...)
			}
		}
		if len(got) > 0 {
			parsed++
		}
		used := map[int]bool{}
		for i, e := range s.Expect {
			rows++
			match := -1
			for j, g := range got {
				if !used[j] && strings.EqualFold(g.Recipient, e.Recipient) {
					match = j
					break
				}
			}
			if match < 0 && i < len(got) && !used[i] {
				match = i
			}
			if match < 0 {
				continue
			}
			used[match] = true
			if got[match].Reason == e.Reason {
				reason++
			}
			if got[match].Hard == e.HardBounce {
				hard++
			}
		}
	}
	hs, rs, ps := float64(hard)/float64(rows), float64(reason)/float64(rows), float64(parsed)/float64(samples)
	t.Logf("late bounces: hardsoft=%.3f reason=%.3f parsed=%.3f (%d samples, %d rows)", hs, rs, ps, samples, rows)
	if hs < 0.97 || rs < 0.90 || ps < 0.95 {
		t.Errorf("late bounces below the floor: hardsoft=%.3f (0.97) reason=%.3f (0.90) parsed=%.3f (0.95)", hs, rs, ps)
	}

	rf, err := os.Open(filepath.Join(corpusDir, "replies-dev.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	rows, hard, reason = 0, 0, 0
	sc = bufio.NewScanner(rf)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r struct {
			Reply      string `json:"reply"`
			Command    string `json:"command"`
			Reason     string `json:"reason"`
			HardBounce bool   `json:"hardbounce"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		rows++
		// Reply lines are quoted from bounce reports: the last reply
		// before delivery was given up.
		d := c.ClassifyFinal(ParseQuotedReply(r.Command, r.Reply))
		if d.Reason == r.Reason {
			reason++
		}
		if d.Hard == r.HardBounce {
			hard++
		}
	}
	hs, rs = float64(hard)/float64(rows), float64(reason)/float64(rows)
	t.Logf("reply lines: hardsoft=%.3f reason=%.3f (%d lines)", hs, rs, rows)
	if hs < 0.93 || rs < 0.75 {
		t.Errorf("reply lines below the floor: hardsoft=%.3f (0.93) reason=%.3f (0.75)", hs, rs)
	}
}

func BenchmarkParseBounce(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "01-postfix-dsn.eml"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseBounce(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseQuotedReply(t *testing.T) {
	cases := []struct {
		in       string
		code     int
		enhanced string
	}{
		{"550 5.1.1 <a@b.example>: user unknown", 550, "5.1.1"},
		{"Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'", 550, "5.1.1"},
		{"host mx.example.com[192.0.2.1] said: 452 4.2.2 over quota", 452, "4.2.2"},
		{"550-5.7.1 first part 550-5.7.1 second part 550 5.7.1 last part", 550, "5.7.1"},
		{"Sorry, no mailbox here by that name. (#5.1.1)", 0, "5.1.1"},
		{"retry timeout exceeded", 0, ""},
	}
	for _, tc := range cases {
		r := ParseQuotedReply("", tc.in)
		if r.Code != tc.code || r.Enhanced != tc.enhanced {
			t.Errorf("%q: got %d %q, want %d %q", tc.in, r.Code, r.Enhanced, tc.code, tc.enhanced)
		}
	}
	if r := ParseQuotedReply("", "550-5.7.1 first part 550-5.7.1 second part 550 5.7.1 last part"); r.Line != "550 5.7.1 first part second part last part" {
		t.Errorf("joined line %q", r.Line)
	}
}

// TestManyRecipientsLongNotice: the most recipients kiln reads, each with a
// long shared notice, stay within a second or so.
func TestManyRecipientsLongNotice(t *testing.T) {
	var b bytes.Buffer
	b.WriteString("From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\nContent-Type: multipart/report; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\n")
	for b.Len() < 60<<10 {
		b.WriteString("The mail system could not deliver your message; the reasons follow below, with details. ")
	}
	b.WriteString("\r\n--m\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.example\r\n\r\n")
	for i := 0; i < 3000; i++ {
		fmt.Fprintf(&b, "Final-Recipient: rfc822; u%d@dest.example\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp; 550 rejected for reasons of its own (%d)\r\n\r\n", i, i)
	}
	b.WriteString("--m--\r\n")
	start := time.Now()
	rep, err := ParseBounce(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if len(rep.Bounces) != 1000 || !rep.Truncated {
		t.Errorf("%d bounces, truncated=%v: want the first 1000, marked truncated", len(rep.Bounces), rep.Truncated)
	}
	if elapsed > 10*time.Second && !raceEnabled {
		t.Errorf("took %v", elapsed)
	}
	t.Logf("%d bounces in %v", len(rep.Bounces), elapsed)
}
