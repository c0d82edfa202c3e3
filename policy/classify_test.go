package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/internal/keyerr"
)

func TestDefaultRulesLoad(t *testing.T) {
	c := DefaultClassifier()
	if len(c.rules) < 100 {
		t.Fatalf("only %d rules loaded", len(c.rules))
	}
	for reason := range vocabulary {
		if _, ok := c.reasons[reason]; !ok {
			t.Errorf("reason %s missing from the action table", reason)
		}
	}
	names := map[string]bool{}
	for _, r := range c.rules {
		if names[r.name] {
			t.Errorf("duplicate rule name %s", r.name)
		}
		names[r.name] = true
	}
}

type classifyCase struct {
	command, line, host string
	final               bool
	reason              string
	hard                bool
	action              Action
	signal              Signal
}

var classifyCases = []classifyCase{
	// The address's fault.
	{"RCPT", "550 5.1.1 <a@example.com>: Recipient address rejected: User unknown in local recipient table", "", false, "userunknown", true, ActionBounce, SignalNone},
	{"RCPT", "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser - gsmtp", "gmail-smtp-in.l.google.com", false, "userunknown", true, ActionBounce, SignalNone},
	{"RCPT", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "", false, "userunknown", true, ActionBounce, SignalNone},
	{"RCPT", "554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0] - mta1.mail.yahoo.com", "", false, "userunknown", true, ActionBounce, SignalNone},
	{"RCPT", "550 5.1.2 <a@nowhere.example>: Recipient address rejected: Domain not found", "", false, "hostunknown", true, ActionBounce, SignalNone},
	{"RCPT", "551 User not local; please try <b@example.org>", "", false, "hasmoved", true, ActionBounce, SignalNone},
	// A 4xx is never hard during delivery (RFC 5321 section 4.2.1), even
	// when it says the user is unknown; a final report condemns it.
	{"RCPT", "450 4.1.1 <a@example.com>: Recipient address rejected: User unknown in virtual alias table", "", false, "userunknown", false, ActionRetry, SignalDeferral},
	{"RCPT", "450 4.1.1 <a@example.com>: Recipient address rejected: User unknown in virtual alias table", "", true, "userunknown", true, ActionBounce, SignalDeferral},
	// 'User unknown' after DATA: the RCPT was accepted, a filter spoke.
	{"DATA", "550 Unknown user someone@example.jp", "", false, "filtered", false, ActionBounce, SignalNone},
	// The mailbox, temporarily.
	{"RCPT", "452 4.2.2 The email account that you tried to reach is over quota. - gsmtp", "", false, "mailboxfull", false, ActionRetry, SignalDeferral},
	{"RCPT", "552 5.2.2 <a@example.com>: Recipient address rejected: Mailbox full", "", false, "mailboxfull", false, ActionBounce, SignalNone},
	{"RCPT", "550 5.2.1 The email account that you tried to reach is disabled. - gsmtp", "", false, "suspend", false, ActionBounce, SignalNone},
	// The sender's fault: never hard (DESIGN.md invariant 5).
	{"RCPT", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", "", false, "blocked", false, ActionBounce, SignalBlock},
	{"DATA", "550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", "", false, "blocked", false, ActionBounce, SignalBlock},
	{"DATA", "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy. - gsmtp", "", false, "authfailure", false, ActionBounce, SignalBlock},
	{"DATA", "550 5.7.1 Our system has detected that this message is likely unsolicited mail. - gsmtp", "", false, "spamdetected", false, ActionBounce, SignalBlock},
	{"MAIL", "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1", "", false, "badreputation", false, ActionRetry, SignalBlock},
	{"MAIL", "451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP reputation. (S775)", "", false, "badreputation", false, ActionRetry, SignalRate},
	{"RCPT", "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. - gsmtp", "", false, "blocked", false, ActionRetry, SignalRate},
	{"DATA", "550 5.7.25 The IP address sending this message does not have a PTR record setup - gsmtp", "", false, "requireptr", false, ActionBounce, SignalBlock},
	{"CONNECT", "421 4.7.0 Too many connections from your IP", "", false, "toomanyconn", false, ActionRetry, SignalRate},
	{"RCPT", "450 4.2.1 The user you are trying to contact is receiving mail too quickly. - gsmtp", "", false, "speeding", false, ActionRetry, SignalRate},
	{"RCPT", "554 5.7.1 <a@example.org>: Relay access denied", "", false, "norelaying", false, ActionBounce, SignalNone},
	{"CONNECT", "554 mx.example.com ESMTP not accepting connections", "", false, "blocked", false, ActionBounce, SignalBlock},
	// A user-unknown text with a blocklist text: the sender's fault wins.
	{"RCPT", "550 5.7.1 Mail from 192.0.2.1 refused: listed at bl.example.net; user unknown", "", false, "blocked", false, ActionBounce, SignalBlock},
	// Temporary, nobody's fault; the end of it.
	{"DATA", "451 4.3.0 Error: queue file write error", "", false, "systemerror", false, ActionRetry, SignalDeferral},
	{"DATA", "421 4.4.2 Connection timed out", "", true, "expired", false, ActionBounce, SignalDeferral},
	{"RCPT", "451 4.4.0 Something odd", "", false, "networkerror", false, ActionRetry, SignalDeferral},
	{"RCPT", "451 4.4.0 Something odd", "", true, "expired", false, ActionBounce, SignalDeferral},
	// Success.
	{"DATA", "250 2.0.0 OK 1700000000 - gsmtp", "", false, "delivered", false, ActionDelivered, SignalNone},
	// A provider rule scoped by host does not fire elsewhere; the generic
	// rules still read the words.
	{"RCPT", "550 5.7.606 Access denied, banned sending IP [192.0.2.1]", "", false, "blocked", false, ActionBounce, SignalBlock},
}

func TestClassify(t *testing.T) {
	c := DefaultClassifier()
	for _, tc := range classifyCases {
		r := ParseReply(tc.command, tc.line)
		r.Host = tc.host
		var d Decision
		if tc.final {
			d = c.ClassifyFinal(r)
		} else {
			d = c.Classify(r)
		}
		if d.Reason != tc.reason || d.Hard != tc.hard || d.Action != tc.action || d.Signal != tc.signal {
			t.Errorf("%s %q final=%v:\n got %s hard=%v %s signal=%q (rule %s)\nwant %s hard=%v %s signal=%q",
				tc.command, tc.line, tc.final, d.Reason, d.Hard, d.Action, d.Signal, d.Rule,
				tc.reason, tc.hard, tc.action, tc.signal)
		}
		if d.Rule == "" {
			t.Errorf("%q: no rule name (invariant 4)", tc.line)
		}
		if d.Status == "" && d.Action != ActionDelivered {
			t.Errorf("%q: no status", tc.line)
		}
	}
}

// TestSenderFaultNeverHard checks DESIGN.md invariant 5 against every rule of
// the embedded file: whatever reply a rule decides, only an address reason
// may be hard, at every stage, live or final.
func TestSenderFaultNeverHard(t *testing.T) {
	c := DefaultClassifier()
	for _, r := range c.rules {
		for _, final := range []bool{false, true} {
			d := c.decide(r.reason, r.name, Reply{Code: 550}, false, true, false, final, r)
			if d.Hard && !mayBeHard[d.Reason] {
				t.Errorf("rule %s: reason %s is hard", r.name, d.Reason)
			}
			if d.Hard && d.Signal != SignalNone {
				t.Errorf("rule %s: hard and signal %q: an address fault says nothing about the IP", r.name, d.Signal)
			}
		}
	}
	for reason, ri := range c.reasons {
		if ri.hard != "never" && ri.hard != "" && !mayBeHard[reason] {
			t.Errorf("reason %s may be hard", reason)
		}
	}
}

func TestNoReply(t *testing.T) {
	c := DefaultClassifier()
	cases := []struct {
		r      Reply
		reason string
		hard   bool
		action Action
	}{
		{Reply{Command: "DNS", Line: "lookup example.invalid: no such host", Temporary: false}, "hostunknown", true, ActionBounce},
		{Reply{Command: "DNS", Line: "example.com: null MX (RFC 7505)", Temporary: false}, "hostunknown", true, ActionBounce},
		{Reply{Command: "DNS", Line: "lookup example.com: i/o timeout", Temporary: true}, "networkerror", false, ActionRetry},
		{Reply{Command: "CONNECT", Line: "dial tcp 192.0.2.1:25: connect: connection refused", Temporary: true}, "networkerror", false, ActionRetry},
		{Reply{Command: "STARTTLS", Line: "tls: failed to verify certificate", Temporary: true}, "failedstarttls", false, ActionRetry},
		{Reply{Command: "DATA", Line: "read tcp: connection reset by peer", Temporary: true}, "networkerror", false, ActionRetry},
	}
	for _, tc := range cases {
		d := c.Classify(tc.r)
		if d.Reason != tc.reason || d.Hard != tc.hard || d.Action != tc.action {
			t.Errorf("%+v: got %s hard=%v %s (rule %s), want %s hard=%v %s", tc.r, d.Reason, d.Hard, d.Action, d.Rule, tc.reason, tc.hard, tc.action)
		}
	}
	// A connection that timed out until the message expired.
	d := c.ClassifyFinal(Reply{Command: "CONNECT", Line: "dial tcp 192.0.2.1:25: i/o timeout", Temporary: true})
	if d.Reason != "expired" || !d.SoftFail || d.Action != ActionBounce {
		t.Errorf("expired connection: got %+v", d)
	}
}

func TestHostScopedRule(t *testing.T) {
	c := DefaultClassifier()
	r := ParseReply("HELO", "421 4.7.0 Try again later, closing connection.")
	r.Host = "gmail-smtp-in.l.google.com"
	if d := c.Classify(r); d.Rule != "google-try-again-closing" || d.Reason != "blocked" || d.Signal != SignalRate {
		t.Errorf("at Google: %+v", d)
	}
	r.Host = "mx.example.net"
	if d := c.Classify(r); d.Rule == "google-try-again-closing" {
		t.Errorf("elsewhere: %+v", d)
	}
	if !anyHost([]string{".google.com"}, "ASPMX.L.GOOGLE.COM.") || anyHost([]string{".google.com"}, "notgoogle.com") || !anyHost([]string{"google.com"}, "google.com") {
		t.Error("anyHost")
	}
}

func TestAddressMasked(t *testing.T) {
	// A recipient whose local part reads like a reason must not decide it.
	c := DefaultClassifier()
	for _, local := range []string{"virus", "spam", "blocked", "filtered", "mailbox-full"} {
		d := c.Classify(ParseReply("RCPT", "550 5.1.1 <"+local+"@example.com>: user unknown"))
		if d.Reason != "userunknown" {
			t.Errorf("%s@: got %s (rule %s)", local, d.Reason, d.Rule)
		}
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector defeats sync.Pool")
	}
	c := DefaultClassifier()
	for _, r := range benchReplies {
		c.Classify(r) // warm the buffer pool
		if n := testing.AllocsPerRun(100, func() { c.Classify(r) }); n > 0 {
			t.Errorf("%q: %.1f allocations per classification", r.Line, n)
		}
	}
}

func TestCommandIn(t *testing.T) {
	c := DefaultClassifier()
	cases := map[string]string{
		"host mx.example.com[192.0.2.1] said: 550 5.1.1 user unknown (in reply to RCPT TO command)":        "RCPT",
		"host mx.example.com[192.0.2.1] said: 554 5.7.1 rejected (in reply to end of DATA\n    command)":   "DATA",
		"SMTP error from remote mail server after MAIL FROM:<a@example.org> SIZE=1234: 550 go away":        "MAIL",
		"... while talking to mx.example.jp.:\n>>> RCPT To:<a@example.jp>\n<<< 550 User unknown\n>>> DATA": "RCPT",
		"connect to mx.example.com[192.0.2.1]:25: server refused to talk to me: 421 busy":                  "CONNECT",
		"550 5.1.1 user unknown": "",
	}
	for text, want := range cases {
		if got := c.commandIn(text); got != want {
			t.Errorf("%q: got %q, want %q", text, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	yes := true
	cases := []struct {
		cfg ClassifyConfig
		key string
	}{
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "blocked", Pattern: []string{"("}}}}, "rule[0].pattern"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "blocked", Match: []string{"x"}}, {Name: "b", Reason: "nonsense", Match: []string{"x"}}}}, "rule[1].reason"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "blocked", Match: []string{"x"}, Hard: &yes}}}, "rule[0].hard"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown", Pattern: []string{"User Unknown"}}}}, "rule[0].pattern"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown"}}}, "rule[0].match"},
		{ClassifyConfig{Rule: []RuleConfig{{Reason: "userunknown", Match: []string{"x"}}}}, "rule[0].name"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown", Match: []string{"x"}}, {Name: "a", Reason: "userunknown", Match: []string{"y"}}}}, "rule[1].name"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown", Match: []string{"x"}, Codes: []string{"650"}}}}, "rule[0].codes"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown", Match: []string{"x"}, Status: []string{"5.1"}}}}, "rule[0].status"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown", Match: []string{"x"}, Commands: []string{"VRFY"}}}}, "rule[0].commands"},
		{ClassifyConfig{Rule: []RuleConfig{{Name: "a", Reason: "userunknown", Match: []string{"x"}, Signal: "loud"}}}, "rule[0].signal"},
		{ClassifyConfig{Reasons: map[string]ReasonConfig{"blocked": {Hard: "always"}}}, "reason.blocked.hard"},
		{ClassifyConfig{Reasons: map[string]ReasonConfig{"nonsense": {}}}, "reason.nonsense"},
		{ClassifyConfig{Rules: filepath.Join(t.TempDir(), "missing.toml")}, "rules"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		var ke *keyerr.Error
		if !errors.As(err, &ke) {
			t.Errorf("%+v: got %v, want a *keyerr.Error for %s", tc.cfg, err, tc.key)
			continue
		}
		if ke.Key != tc.key {
			t.Errorf("%+v: key %q (%v), want %q", tc.cfg, ke.Key, err, tc.key)
		}
		if _, err := NewClassifier(tc.cfg); err == nil {
			t.Errorf("%+v: NewClassifier accepted what Validate refused", tc.cfg)
		}
	}
	if err := (ClassifyConfig{}).Validate(); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	file := `
[[rule]]
name = "local-bigcorp-quota"
reason = "mailboxfull"
match = ["storage allotment exceeded"]

[[rule]]
name = "google-groups"
disable = true

[reason.onhold]
hard = "permanent"
`
	if err := os.WriteFile(filepath.Join(dir, "extra.toml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := ClassifyConfig{
		Rules:   "extra.toml",
		BaseDir: dir,
		Rule: []RuleConfig{
			// Inline rules come first: this one wins over the file's.
			{Name: "inline-allotment", Reason: "suspend", Match: []string{"allotment exceeded for archived"}},
			// Same name as an embedded rule: replaces it in place.
			{Name: "google-no-such-user", Reason: "userunknown", Pattern: []string{`p=nosuchuser`}, Hard: new(bool)},
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := NewClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := c.Classify(ParseReply("RCPT", "552 storage allotment exceeded"))
	if d.Reason != "mailboxfull" || d.Rule != "local-bigcorp-quota" {
		t.Errorf("file rule: got %+v", d)
	}
	d = c.Classify(ParseReply("RCPT", "552 storage allotment exceeded for archived mailbox"))
	if d.Rule != "inline-allotment" {
		t.Errorf("inline rule should come first: got %+v", d)
	}
	d = c.Classify(ParseReply("RCPT", "550 5.1.1 does not exist https://support.google.com/mail/?p=NoSuchUser"))
	if d.Rule != "google-no-such-user" || d.Hard {
		t.Errorf("override with hard=false: got %+v", d)
	}
	for _, r := range c.rules {
		if r.name == "google-groups" {
			t.Error("disabled rule still present")
		}
	}
	d = c.Classify(Reply{Code: 550, Enhanced: "5.0.0", Line: "550 5.0.0 held", Command: "RCPT"})
	if d.Reason == "onhold" && !d.Hard {
		t.Errorf("reason override: onhold should be hard when permanent: %+v", d)
	}
	// The embedded classifier is untouched.
	if d := DefaultClassifier().Classify(ParseReply("RCPT", "552 storage allotment exceeded")); d.Rule == "local-bigcorp-quota" {
		t.Error("config leaked into the default classifier")
	}
}

func TestRulesFileErrorNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	os.WriteFile(path, []byte("[[rule]]\nname = \"x\"\nreason = \"userunknown\"\nmatch = [\"a\"]\nmatchh = [\"b\"]\n"), 0o644)
	err := ClassifyConfig{Rules: path}.Validate()
	if err == nil || !strings.Contains(err.Error(), "bad.toml") || !strings.Contains(err.Error(), "matchh") {
		t.Errorf("got %v, want an error naming the file and the unknown key", err)
	}
}

func TestPrefilter(t *testing.T) {
	cases := map[string][]string{
		`user (unknown|not found)`:  {"unknown", "not found"},
		`(account|mailbox) is full`: {" is full"},
		`\bspam\b`:                  {"spam"},
		`(ab|cd)x?`:                 {"ab", "cd"},
		`[0-9]+ days?`:              {" day"},
		`.*`:                        nil,
	}
	for p, want := range cases {
		got := prefilter(p)
		if len(got) != len(want) {
			t.Errorf("%s: got %q, want %q", p, got, want)
			continue
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Errorf("%s: got %q, want %q", p, got, want)
			}
		}
	}
}

func TestExpandPattern(t *testing.T) {
	cases := map[string][]string{
		`over ?quota`:              {"over quota", "overquota"},
		`user (unknown|not found)`: {"user unknown", "user not found"},
		`[0-9]+ days`:              nil, // an unbounded repetition: left to the regexp
		`doesn.t`:                  nil, // any character
		`\bspam\b`:                 nil, // word boundaries
	}
	for p, want := range cases {
		got, ok := expandPattern(p)
		if want == nil {
			if ok {
				t.Errorf("%s: expanded to %q", p, got)
			}
			continue
		}
		if !ok || len(got) != len(want) {
			t.Errorf("%s: got %q %v, want %q", p, got, ok, want)
			continue
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Errorf("%s: got %q, want %q", p, got, want)
			}
		}
	}
}

// TestLiteralSet checks the one-pass literal scan against bytes.Contains.
func TestLiteralSet(t *testing.T) {
	ls := newLiteralSet()
	lits := []string{"he", "she", "his", "hers", "user unknown", "unknown", "a"}
	for i, l := range lits {
		ls.use(ls.add(l), int32(i))
	}
	ls.build()
	for _, text := range []string{"ushers", "550 user unknown here", "", "nothing to see", "hishe"} {
		bits := make([]uint64, ls.words())
		rules := make([]uint64, 1)
		ls.scan([]byte(text), bits, rules)
		for i, l := range lits {
			want := strings.Contains(text, l)
			if has(bits, int32(i)) != want || has(rules, int32(i)) != want {
				t.Errorf("%q in %q: got %v, want %v", l, text, has(bits, int32(i)), want)
			}
		}
	}
}

// TestConcurrentClassify runs one classifier from many goroutines (go test
// -race checks the shared scratch pool).
func TestConcurrentClassify(t *testing.T) {
	c := DefaultClassifier()
	want := make([]Decision, len(classifyCases))
	for i, tc := range classifyCases {
		want[i] = c.Classify(ParseReply(tc.command, tc.line))
	}
	done := make(chan bool)
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- true }()
			for n := 0; n < 50; n++ {
				for i, tc := range classifyCases {
					if d := c.Classify(ParseReply(tc.command, tc.line)); d != want[i] {
						t.Errorf("%q: %+v, want %+v", tc.line, d, want[i])
						return
					}
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}
