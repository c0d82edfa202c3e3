package policy

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"kiln/internal/keyerr"
)

// defaultRules is kiln's own rules file: the reason table, the command hints
// read from bounce reports, and the ordered classification rules. Its comments
// are the reference for every rule name an event can carry.
//
//go:embed rules.toml
var defaultRules []byte

// RulesFile is the schema of a rules file: the embedded one, a file named by
// [classify] rules, or the [classify] section itself (whose inline rules and
// reason overrides use the same shapes).
type RulesFile struct {
	Reasons  map[string]ReasonConfig `toml:"reason"`
	Commands []CommandHint           `toml:"command"`
	Rules    []RuleConfig            `toml:"rule"`
}

// ReasonConfig is one row of the action table (DESIGN.md, "Bounce
// vocabulary"): what a reason means for the address and for the egress IP.
type ReasonConfig struct {
	// Hard says when the reason condemns the address: "always" (when the
	// failure is permanent or final), "permanent" (only with a 5.x.x status or
	// 5xx code), or "never". Only address reasons may be hard (invariant 5).
	Hard string `toml:"hard"`
	// Signal is what the reason says about the egress IP at this provider:
	// none, deferral, rate, block or complaint. A temporary failure whose
	// reason carries no signal reports "deferral".
	Signal string `toml:"signal"`
	// SoftFail says when the failure counts toward the repeated-soft-failure
	// rule: "always", "final" (only when delivery was given up), or "never".
	SoftFail string `toml:"softfail"`
	// Status is the RFC 3463 status reported when the reply carried none.
	Status string `toml:"status"`
	// Doc says what the reason means.
	Doc string `toml:"doc"`
}

// CommandHint tells, from the words of a bounce report, which SMTP command the
// quoted reply answered ("in reply to RCPT TO command", "after end of data",
// ">>> DATA"). When several hints match, the one found last in the text wins:
// transcripts list commands in order and the failing one comes last.
type CommandHint struct {
	Command string   `toml:"command"`
	Pattern []string `toml:"pattern"`
}

// RuleConfig is one named classification rule. Every filter given must hold;
// when Match or Pattern are given, at least one of them must be found in the
// reply line. Rules are tried in order and the first that holds decides.
type RuleConfig struct {
	Name   string `toml:"name"`
	Reason string `toml:"reason"`
	// Match lists case-insensitive substrings of the reply line; any one will do.
	Match []string `toml:"match"`
	// Pattern lists RE2 regular expressions (case-insensitive); any one will do.
	Pattern []string `toml:"pattern"`
	// Unless lists case-insensitive substrings that stop the rule from holding.
	Unless []string `toml:"unless"`
	// Like names another rule whose match, pattern and unless lists this rule
	// uses when it gives none of its own, so that one list of words can be
	// read differently at different SMTP stages.
	Like string `toml:"like"`
	// Codes are reply codes: "550", "55x", "5xx"; "0" is no reply at all.
	Codes []string `toml:"codes"`
	// Status are RFC 3463 codes with "x" for any digits: "5.1.1", "x.7.1", "5.x.x".
	Status []string `toml:"status"`
	// Commands scope the rule to replies to these SMTP commands (CONNECT,
	// HELO, STARTTLS, AUTH, MAIL, RCPT, DATA, DNS). DATA covers the end of data.
	// A reply whose command is unknown never matches a scoped rule.
	Commands []string `toml:"commands"`
	// Hosts scope the rule to remote hosts with one of these suffixes
	// (".google.com" matches "aspmx.l.google.com"; "google.com" also matches
	// the name itself).
	Hosts []string `toml:"hosts"`
	// Permanent scopes the rule to permanent (true) or temporary (false) failures.
	Permanent *bool `toml:"permanent"`
	// Final scopes the rule to the last reply before delivery was given up
	// (true), or to a reply during delivery (false).
	Final *bool `toml:"final"`
	// Hard = false keeps an address reason from suppressing the address for
	// this rule. It can never make a reason hard.
	Hard *bool `toml:"hard"`
	// Signal overrides the reason's signal for the egress IP.
	Signal string `toml:"signal"`
	// Disable drops a rule of the same name from the rules loaded before.
	Disable bool `toml:"disable"`
	// Doc says why the rule exists and where its words come from.
	Doc string `toml:"doc"`
}

// ClassifyConfig is the [classify] section of kiln's config: it extends or
// overrides the embedded rules.
//
//	[classify]
//	rules = "rules.d/local.toml"   # a rules file, same schema as the embedded one
//
//	[[classify.rule]]              # inline rules, tried before everything else
//	name = "local-bigcorp-quota"
//	reason = "mailboxfull"
//	match = ["storage allotment exceeded"]
//
//	[classify.reason.onhold]       # change a row of the action table
//	hard = "permanent"
//
// A rule whose name matches an embedded rule replaces it in place (keeping its
// position); any other rule is tried before the embedded ones, the inline
// rules first. "disable = true" removes the embedded rule of that name.
type ClassifyConfig struct {
	Rules   string                  `toml:"rules"`
	Rule    []RuleConfig            `toml:"rule"`
	Reasons map[string]ReasonConfig `toml:"reason"`
	// BaseDir resolves a relative Rules path (the config loader sets it to
	// the config file's directory).
	BaseDir string `toml:"-"`
}

// Validate checks the section without building a classifier. A problem is a
// *keyerr.Error naming the key relative to the section ("rule[2].pattern");
// a problem inside the rules file names that file.
func (c ClassifyConfig) Validate() error {
	if err := validateFile(&RulesFile{Reasons: c.Reasons, Rules: c.Rule}, false); err != nil {
		return err
	}
	if c.Rules != "" {
		if _, err := c.loadRulesFile(); err != nil {
			return err
		}
	}
	return nil
}

func (c ClassifyConfig) rulesPath() string {
	if c.BaseDir != "" && !filepath.IsAbs(c.Rules) {
		return filepath.Join(c.BaseDir, c.Rules)
	}
	return c.Rules
}

func (c ClassifyConfig) loadRulesFile() (*RulesFile, error) {
	path := c.rulesPath()
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, keyerr.New("rules", "%v", err)
	}
	f, err := decodeRules(data)
	if err == nil {
		err = validateFile(f, false)
	}
	if err != nil {
		return nil, keyerr.New("rules", "%s: %v", path, err)
	}
	return f, nil
}

// decodeRules reads a rules file strictly: an unknown key is an error, so a
// misspelt filter never silently widens a rule.
func decodeRules(data []byte) (*RulesFile, error) {
	var f RulesFile
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		if de, ok := err.(*toml.DecodeError); ok {
			row, col := de.Position()
			return nil, fmt.Errorf("line %d column %d: %s", row, col, de.Error())
		}
		if se, ok := err.(*toml.StrictMissingError); ok && len(se.Errors) > 0 {
			row, _ := se.Errors[0].Position()
			return nil, keyerr.New(strings.Join(se.Errors[0].Key(), "."), "unknown key (line %d)", row)
		}
		return nil, err
	}
	return &f, nil
}

// The reasons of DESIGN.md's vocabulary.
var vocabulary = map[string]bool{
	"userunknown": true, "hostunknown": true, "hasmoved": true, "notaccept": true,
	"mailboxfull": true, "suspend": true, "exceedlimit": true, "mesgtoobig": true,
	"blocked": true, "spamdetected": true, "policyviolation": true, "badreputation": true,
	"authfailure": true, "requireptr": true, "securityerror": true, "rejected": true,
	"norelaying": true, "toomanyconn": true, "speeding": true, "expired": true,
	"filtered": true, "contenterror": true, "virusdetected": true, "systemerror": true,
	"systemfull": true, "networkerror": true, "mailererror": true, "syntaxerror": true,
	"notcompliantrfc": true, "failedstarttls": true, "feedback": true, "vacation": true,
	"onhold": true, "undefined": true, "delivered": true, "suppressed": true,
}

// mayBeHard lists the reasons that can condemn an address. DESIGN.md
// invariant 5: a reply that blames the sender (blocklist, spam, authentication,
// rate, reputation) never suppresses the recipient, so no rules file may make
// those reasons hard. onhold and undefined are allowed because DESIGN.md's
// vocabulary permits them with a 5.x.x status; kiln's default keeps them soft.
var mayBeHard = map[string]bool{
	"userunknown": true, "hostunknown": true, "hasmoved": true, "notaccept": true,
	"onhold": true, "undefined": true,
}

var commandNames = map[string]bool{
	"CONNECT": true, "HELO": true, "STARTTLS": true, "AUTH": true, "MAIL": true,
	"RCPT": true, "DATA": true, "DNS": true,
}

var signalNames = map[string]Signal{
	"none": SignalNone, "deferral": SignalDeferral, "rate": SignalRate,
	"block": SignalBlock, "complaint": SignalComplaint,
}

// validateFile checks a rules file; full says the file must define every
// reason (true for the embedded base).
func validateFile(f *RulesFile, full bool) error {
	for name, rc := range f.Reasons {
		key := "reason." + name
		if !vocabulary[name] {
			return keyerr.New(key, "unknown reason %q", name)
		}
		switch rc.Hard {
		case "", "never":
		case "always", "permanent":
			if !mayBeHard[name] {
				return keyerr.New(key+".hard", "%s blames the sender or the message, not the address: it can never be hard", name)
			}
		default:
			return keyerr.New(key+".hard", "want always, permanent or never, not %q", rc.Hard)
		}
		if _, ok := signalNames[rc.Signal]; rc.Signal != "" && !ok {
			return keyerr.New(key+".signal", "want none, deferral, rate, block or complaint, not %q", rc.Signal)
		}
		switch rc.SoftFail {
		case "", "always", "final", "never":
		default:
			return keyerr.New(key+".softfail", "want always, final or never, not %q", rc.SoftFail)
		}
		if rc.Status != "" && !ValidStatus(rc.Status) {
			return keyerr.New(key+".status", "%q is not an RFC 3463 status", rc.Status)
		}
	}
	if full {
		for name := range vocabulary {
			if _, ok := f.Reasons[name]; !ok {
				return keyerr.New("reason."+name, "missing")
			}
		}
	}
	for i, h := range f.Commands {
		key := fmt.Sprintf("command[%d]", i)
		if !commandNames[h.Command] {
			return keyerr.New(key+".command", "unknown command %q", h.Command)
		}
		if len(h.Pattern) == 0 {
			return keyerr.New(key+".pattern", "empty")
		}
		for _, p := range h.Pattern {
			if err := checkLowerCase(p); err != nil {
				return keyerr.New(key+".pattern", "%q: %v", p, err)
			}
			if _, err := regexp.Compile(p); err != nil {
				return keyerr.New(key+".pattern", "%v", err)
			}
		}
	}
	seen := map[string]bool{}
	for i, rc := range f.Rules {
		if _, err := compileRule(rc); err != nil {
			if ke, ok := err.(*keyerr.Error); ok {
				return keyerr.New(fmt.Sprintf("rule[%d].%s", i, ke.Key), "%s", ke.Msg)
			}
			return keyerr.New(fmt.Sprintf("rule[%d]", i), "%v", err)
		}
		if seen[rc.Name] {
			return keyerr.New(fmt.Sprintf("rule[%d].name", i), "duplicate rule name %q", rc.Name)
		}
		seen[rc.Name] = true
	}
	return nil
}

// rule is a compiled RuleConfig.
type rule struct {
	name    string
	reason  string
	match   [][]byte // lower-case
	pattern []*regexp.Regexp
	need    [][][]byte // per pattern: literals one of which any match contains (nil: none known)
	literal []bool     // per pattern: need lists every string the pattern matches
	unless  [][]byte
	// Ids of match, unless and prefilter literals in the classifier's
	// literalSet, set by NewClassifier.
	matchIDs  []int32
	unlessIDs []int32
	needIDs   [][]int32
	// gated says the rule can only hold when one of its literals occurs
	// (every pattern has a prefilter), so a reply in which none does skips
	// it with one bit test.
	gated     bool
	codes     []codePattern
	status    []statusPattern
	commands  []string
	hosts     []string // lower-case
	permanent int8     // -1 any, 0 temporary, 1 permanent
	final     int8     // -1 any, 0 live, 1 final
	notHard   bool
	signal    Signal
	hasSignal bool
	hasText   bool // has match or pattern filters
	textual   bool // decided by the reply's words (or the stage they name), not only by codes
}

// codePattern matches a reply code digit by digit; -1 is a wildcard.
type codePattern [3]int8

// statusPattern matches an RFC 3463 status; -1 is a wildcard.
type statusPattern struct{ class, subject, detail int16 }

func compileRule(rc RuleConfig) (*rule, error) {
	if rc.Name == "" {
		return nil, keyerr.New("name", "missing")
	}
	r := &rule{name: rc.Name, reason: rc.Reason, permanent: -1, final: -1}
	if rc.Disable {
		return r, nil
	}
	if !vocabulary[rc.Reason] {
		return nil, keyerr.New("reason", "unknown reason %q", rc.Reason)
	}
	for _, m := range rc.Match {
		if m == "" {
			return nil, keyerr.New("match", "empty string matches everything")
		}
		r.match = append(r.match, []byte(strings.ToLower(m)))
	}
	for _, p := range rc.Pattern {
		if err := checkLowerCase(p); err != nil {
			return nil, keyerr.New("pattern", "%q: %v", p, err)
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, keyerr.New("pattern", "%v", err)
		}
		if re.MatchString("") {
			return nil, keyerr.New("pattern", "%q matches everything", p)
		}
		r.pattern = append(r.pattern, re)
		if lits, ok := expandPattern(p); ok {
			// A finite set of strings: finding one of them is the
			// match, no regexp needs to run.
			r.need = append(r.need, lits)
			r.literal = append(r.literal, true)
		} else {
			r.need = append(r.need, prefilter(p))
			r.literal = append(r.literal, false)
		}
	}
	for _, u := range rc.Unless {
		if u == "" {
			return nil, keyerr.New("unless", "empty string")
		}
		r.unless = append(r.unless, []byte(strings.ToLower(u)))
	}
	// A rule decides by the report's words when it reads the text or the
	// SMTP stage the text names; only code and status fallbacks do not.
	r.hasText = len(r.match) > 0 || len(r.pattern) > 0
	r.textual = r.hasText || len(rc.Commands) > 0 || rc.Like != ""
	for _, c := range rc.Codes {
		cp, ok := parseCodePattern(c)
		if !ok {
			return nil, keyerr.New("codes", "%q: want a reply code like 550, 55x, 5xx or 0", c)
		}
		r.codes = append(r.codes, cp)
	}
	for _, s := range rc.Status {
		sp, ok := parseStatusPattern(s)
		if !ok {
			return nil, keyerr.New("status", "%q: want an RFC 3463 status like 5.1.1 or x.7.x", s)
		}
		r.status = append(r.status, sp)
	}
	for _, c := range rc.Commands {
		c = strings.ToUpper(c)
		if !commandNames[c] {
			return nil, keyerr.New("commands", "unknown command %q", c)
		}
		r.commands = append(r.commands, c)
	}
	for _, h := range rc.Hosts {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if h == "" || h == "." {
			return nil, keyerr.New("hosts", "empty host suffix")
		}
		r.hosts = append(r.hosts, h)
	}
	if rc.Permanent != nil {
		r.permanent = boolInt8(*rc.Permanent)
	}
	if rc.Final != nil {
		r.final = boolInt8(*rc.Final)
	}
	if rc.Hard != nil {
		if *rc.Hard {
			return nil, keyerr.New("hard", "a rule can only keep a reason from being hard (hard = false); the reason table decides hardness")
		}
		r.notHard = true
	}
	if rc.Signal != "" {
		s, ok := signalNames[rc.Signal]
		if !ok {
			return nil, keyerr.New("signal", "want none, deferral, rate, block or complaint, not %q", rc.Signal)
		}
		r.signal, r.hasSignal = s, true
	}
	if !r.textual && !r.hasText && len(r.codes) == 0 && len(r.status) == 0 && len(r.commands) == 0 && len(r.hosts) == 0 && r.permanent < 0 && r.final < 0 {
		return nil, keyerr.New("match", "the rule has no condition and would match every reply")
	}
	return r, nil
}

// checkLowerCase rejects upper-case letters in a pattern: the reply is
// lower-cased once before matching (so that no pattern pays for case
// folding), and an upper-case letter would never match. Escapes such as \S
// and \B keep their meaning.
func checkLowerCase(p string) error {
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++ // the escaped character
			if i+1 < len(p) && (p[i] == 'p' || p[i] == 'P') && p[i+1] == '{' {
				if j := strings.IndexByte(p[i:], '}'); j > 0 {
					i += j
				}
			}
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("patterns match the lower-cased reply: write %q in lower case", c)
		}
	}
	return nil
}

// prefilter returns literals one of which must occur in any text the
// pattern matches, so that classification can skip the pattern with a
// substring test (most replies match few rules). nil means no such set is
// known and the pattern always runs.
func prefilter(p string) [][]byte {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil
	}
	lits := needed(re.Simplify())
	if len(lits) == 0 {
		return nil
	}
	out := make([][]byte, 0, len(lits))
	for _, l := range lits {
		out = append(out, []byte(l))
	}
	return out
}

// expandPattern returns every string a pattern matches when they are few
// and the pattern has no anchors, word boundaries or open classes: such a
// pattern is a list of literals in regexp clothing ("user (unknown|not
// found)", "over ?quota").
func expandPattern(p string) ([][]byte, bool) {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil, false
	}
	set, ok := expand(re.Simplify())
	if !ok || len(set) == 0 {
		return nil, false
	}
	out := make([][]byte, 0, len(set))
	for _, s := range set {
		if s == "" {
			return nil, false
		}
		out = append(out, []byte(s))
	}
	return out, true
}

const maxExpansion = 64

func expand(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= 4 {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, true
	case syntax.OpCapture:
		return expand(re.Sub[0])
	case syntax.OpQuest:
		sub, ok := expand(re.Sub[0])
		if !ok {
			return nil, false
		}
		return append(sub, ""), true
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			set, ok := expand(sub)
			if !ok || len(out)+len(set) > maxExpansion {
				return nil, false
			}
			out = append(out, set...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			set, ok := expand(sub)
			if !ok || len(out)*len(set) > maxExpansion {
				return nil, false
			}
			next := make([]string, 0, len(out)*len(set))
			for _, a := range out {
				for _, b := range set {
					next = append(next, a+b)
				}
			}
			out = next
		}
		return out, true
	}
	return nil, false
}

// needed computes the literal set for a syntax tree: for a concatenation,
// the best set of any part (every match contains a match of each part); for
// an alternation, the union of its branches' sets (unknown if any branch's
// is); for a repetition of at least one, its body's set.
func needed(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		s := string(re.Rune)
		if re.Flags&syntax.FoldCase != 0 {
			s = strings.ToLower(s)
		}
		return []string{s}
	case syntax.OpCapture:
		return needed(re.Sub[0])
	case syntax.OpPlus:
		return needed(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return needed(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []string
		for _, sub := range re.Sub {
			if set := needed(sub); set != nil && better(set, best) {
				best = set
			}
		}
		return best
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			set := needed(sub)
			if set == nil {
				return nil
			}
			all = append(all, set...)
		}
		if len(all) > 16 {
			return nil
		}
		return all
	}
	return nil
}

// better prefers the set whose shortest literal is longer (fewer false hits),
// then the smaller set.
func better(a, b []string) bool {
	if b == nil {
		return true
	}
	minLen := func(set []string) int {
		m := 1 << 30
		for _, s := range set {
			m = min(m, len(s))
		}
		return m
	}
	if ma, mb := minLen(a), minLen(b); ma != mb {
		return ma > mb
	}
	return len(a) < len(b)
}

func boolInt8(b bool) int8 {
	if b {
		return 1
	}
	return 0
}

func parseCodePattern(s string) (codePattern, bool) {
	var cp codePattern
	if s == "0" {
		return codePattern{0, 0, 0}, true
	}
	if len(s) != 3 || s[0] < '2' || s[0] > '5' {
		return cp, false
	}
	for i := 0; i < 3; i++ {
		switch c := s[i]; {
		case c == 'x' || c == 'X':
			cp[i] = -1
		case c >= '0' && c <= '9':
			cp[i] = int8(c - '0')
		default:
			return cp, false
		}
	}
	return cp, true
}

func (cp codePattern) matches(code int) bool {
	if code < 0 || code > 999 {
		return false
	}
	d := [3]int8{int8(code / 100), int8(code / 10 % 10), int8(code % 10)}
	for i := range d {
		if cp[i] >= 0 && cp[i] != d[i] {
			return false
		}
	}
	return true
}

func parseStatusPattern(s string) (statusPattern, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return statusPattern{}, false
	}
	var v [3]int16
	for i, p := range parts {
		if p == "x" || p == "X" {
			v[i] = -1
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 || (i == 0 && n != 2 && n != 4 && n != 5) {
			return statusPattern{}, false
		}
		v[i] = int16(n)
	}
	return statusPattern{v[0], v[1], v[2]}, true
}

// parseStatus splits a valid "c.s.d" into numbers; ok is false for anything else.
func parseStatus(s string) (st [3]int16, ok bool) {
	if s == "" {
		return st, false
	}
	part, n := 0, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			if n < 0 {
				n = 0
			}
			n = n*10 + int(c-'0')
			if n > 999 {
				return st, false
			}
		case c == '.' && n >= 0 && part < 2:
			st[part] = int16(n)
			part, n = part+1, -1
		default:
			return st, false
		}
	}
	if part != 2 || n < 0 {
		return st, false
	}
	st[2] = int16(n)
	return st, st[0] == 2 || st[0] == 4 || st[0] == 5
}

func (sp statusPattern) matches(st [3]int16) bool {
	return (sp.class < 0 || sp.class == st[0]) &&
		(sp.subject < 0 || sp.subject == st[1]) &&
		(sp.detail < 0 || sp.detail == st[2])
}

// resolveLikes copies the text filters of the rules named by "like".
func resolveLikes(rules []RuleConfig) ([]RuleConfig, error) {
	byName := map[string]int{}
	for i, rc := range rules {
		byName[rc.Name] = i
	}
	out := append([]RuleConfig(nil), rules...)
	for i, rc := range out {
		if rc.Like == "" {
			continue
		}
		j, ok := byName[rc.Like]
		if !ok {
			return nil, keyerr.New(fmt.Sprintf("rule[%d].like", i), "no rule named %q", rc.Like)
		}
		src := rules[j]
		if src.Like != "" {
			return nil, keyerr.New(fmt.Sprintf("rule[%d].like", i), "rule %q is itself a like rule", rc.Like)
		}
		if len(rc.Match) == 0 && len(rc.Pattern) == 0 {
			out[i].Match, out[i].Pattern = src.Match, src.Pattern
		}
		if len(rc.Unless) == 0 {
			out[i].Unless = src.Unless
		}
	}
	return out, nil
}

// mergeRules lays extra rules over base: a rule named like a base rule
// replaces it in place (or removes it when disabled); the others go first, in
// their own order.
func mergeRules(base []RuleConfig, extra ...[]RuleConfig) []RuleConfig {
	out := append([]RuleConfig(nil), base...)
	for i := len(extra) - 1; i >= 0; i-- {
		var front []RuleConfig
		for _, rc := range extra[i] {
			replaced := false
			for j := range out {
				if out[j].Name == rc.Name {
					out[j] = rc
					replaced = true
					break
				}
			}
			if !replaced && !rc.Disable {
				front = append(front, rc)
			}
		}
		out = append(front, out...)
	}
	kept := out[:0]
	for _, rc := range out {
		if !rc.Disable {
			kept = append(kept, rc)
		}
	}
	return kept
}
