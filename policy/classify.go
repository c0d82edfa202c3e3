package policy

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"kiln/internal/keyerr"
)

// Classifier decides what a reply means (Classify) from an ordered list of
// named rules. It is safe for concurrent use; build it once (NewClassifier or
// DefaultClassifier) and share it.
type Classifier struct {
	rules    []*rule
	reasons  map[string]reasonInfo
	commands []commandHint
	lits     *literalSet
	scratch  sync.Pool // *scratch: the lower-cased reply and its literal bits
}

// scratch is the per-call working memory of classify, pooled so that
// classifying allocates nothing.
type scratch struct {
	text  []byte
	bits  []uint64 // literals present in text
	rules []uint64 // rules that read a literal present in text
}

type reasonInfo struct {
	hard     string
	signal   Signal
	softFail string
	// statusByClass is the reason's default status as 2.s.d, 4.s.d and
	// 5.s.d, built once so that deciding does not format strings.
	statusByClass [3]string
}

type commandHint struct {
	command string
	re      []*regexp.Regexp
}

var (
	defaultOnce       sync.Once
	defaultClassifier *Classifier
)

// DefaultClassifier returns the classifier built from the embedded rules
// alone. The embedded file is checked by the tests, so a failure here is a
// build defect and panics.
func DefaultClassifier() *Classifier {
	defaultOnce.Do(func() {
		c, err := NewClassifier(ClassifyConfig{})
		if err != nil {
			panic(fmt.Sprintf("policy: embedded rules: %v", err))
		}
		defaultClassifier = c
	})
	return defaultClassifier
}

// NewClassifier builds a classifier from the embedded rules extended by cfg
// (see ClassifyConfig for how the layers combine). Errors are *keyerr.Error
// naming the key relative to the [classify] section.
func NewClassifier(cfg ClassifyConfig) (*Classifier, error) {
	base, err := decodeRules(defaultRules)
	if err != nil {
		return nil, fmt.Errorf("embedded rules: %v", err)
	}
	if err := validateFile(base, true); err != nil {
		return nil, fmt.Errorf("embedded rules: %v", err)
	}
	if err := validateFile(&RulesFile{Reasons: cfg.Reasons, Rules: cfg.Rule}, false); err != nil {
		return nil, err
	}
	var file *RulesFile
	if cfg.Rules != "" {
		if file, err = cfg.loadRulesFile(); err != nil {
			return nil, err
		}
	} else {
		file = &RulesFile{}
	}

	reasons := map[string]ReasonConfig{}
	for _, layer := range []map[string]ReasonConfig{base.Reasons, file.Reasons, cfg.Reasons} {
		for name, rc := range layer {
			cur := reasons[name]
			if rc.Hard != "" {
				cur.Hard = rc.Hard
			}
			if rc.Signal != "" {
				cur.Signal = rc.Signal
			}
			if rc.SoftFail != "" {
				cur.SoftFail = rc.SoftFail
			}
			if rc.Status != "" {
				cur.Status = rc.Status
			}
			reasons[name] = cur
		}
	}
	c := &Classifier{reasons: map[string]reasonInfo{}}
	for name, rc := range reasons {
		ri := reasonInfo{hard: rc.Hard, signal: signalNames[rc.Signal], softFail: rc.SoftFail}
		if st, ok := parseStatus(rc.Status); ok {
			for i, class := range []int16{2, 4, 5} {
				ri.statusByClass[i] = fmt.Sprintf("%d.%d.%d", class, st[1], st[2])
			}
		}
		c.reasons[name] = ri
	}
	for _, h := range append(append([]CommandHint(nil), file.Commands...), base.Commands...) {
		ch := commandHint{command: h.Command}
		for _, p := range h.Pattern {
			ch.re = append(ch.re, regexp.MustCompile(p)) // validated above
		}
		c.commands = append(c.commands, ch)
	}
	merged, err := resolveLikes(mergeRules(base.Rules, cfg.Rule, file.Rules))
	if err != nil {
		return nil, err
	}
	for i, rc := range merged {
		r, err := compileRule(rc)
		if err != nil {
			return nil, keyerr.New(fmt.Sprintf("rule[%d]", i), "%v", err)
		}
		c.rules = append(c.rules, r)
	}
	c.lits = newLiteralSet()
	for i, r := range c.rules {
		ri := int32(i)
		for _, m := range r.match {
			id := c.lits.add(string(m))
			r.matchIDs = append(r.matchIDs, id)
			c.lits.use(id, ri)
		}
		for _, u := range r.unless {
			r.unlessIDs = append(r.unlessIDs, c.lits.add(string(u)))
		}
		r.needIDs = make([][]int32, len(r.need))
		r.gated = r.hasText
		for j, need := range r.need {
			if need == nil {
				r.gated = false
			}
			for _, l := range need {
				id := c.lits.add(string(l))
				r.needIDs[j] = append(r.needIDs[j], id)
				c.lits.use(id, ri)
			}
		}
	}
	c.lits.build()
	words, ruleWords := c.lits.words(), (len(c.rules)+63)/64
	c.scratch.New = func() any {
		return &scratch{text: make([]byte, 0, 512), bits: make([]uint64, words), rules: make([]uint64, ruleWords)}
	}
	return c, nil
}

// Classify classifies a reply received during delivery with the embedded
// rules (DefaultClassifier). The delivery engine should hold the Classifier
// built from the config instead.
func Classify(r Reply) Decision { return DefaultClassifier().Classify(r) }

// Classify decides what a reply received during delivery means: the reason,
// whether the address is condemned, what happens to the message for that
// recipient, and what it says about the egress IP. The fields of r that
// matter are Code, Enhanced, Command (the rules read "user unknown" after
// DATA as a content filter, not a missing mailbox), Line (the words; most
// rules match them), Host (provider rules are scoped by MX host) and, when
// Code is 0, Temporary.
//
// A temporary reply (4xx, or Code 0 with Temporary) is never Hard and its
// Action is retry: the remote itself said trying again could work.
func (c *Classifier) Classify(r Reply) Decision {
	d, _ := c.classify(r, false, false)
	return d
}

// ClassifyFinal decides what the last reply means once delivery has been
// given up: when the message expired in kiln's queue, or for a reply quoted
// by a remote MTA's bounce report. The Action is bounce (or delivered), a
// temporary reply nobody explains is "expired", and an address reason is hard
// even when the last reply was a 4xx.
func (c *Classifier) ClassifyFinal(r Reply) Decision {
	d, _ := c.classify(r, true, false)
	return d
}

// classify returns the decision and, when known is set, whether the reply's
// words are known to the rules: a rule that reads words (or the stage they
// name) holds, even if a status rule before it decided. The bounce parser
// reads more of a report only when they are not.
func (c *Classifier) classify(r Reply, final, known bool) (Decision, bool) {
	st, stOK := parseStatus(r.Enhanced)
	var permanent, success bool
	switch {
	case r.Code >= 200 && r.Code < 600:
		permanent, success = r.Code >= 500, r.Code < 300
	case stOK:
		permanent, success = st[0] == 5, st[0] == 2
	default:
		permanent = !r.Temporary
	}
	cmd := normCommand(r.Command)

	sc := c.scratch.Get().(*scratch)
	text := appendLower(sc.text[:0], r.Line)
	bits, present := sc.bits, sc.rules
	c.lits.scan(text, bits, present)
	defer func() {
		if cap(text) <= 64<<10 {
			sc.text = text[:0]
			c.scratch.Put(sc)
		}
	}()

	var first *rule
	for i, ru := range c.rules {
		if ru.gated && present[i>>6]&(1<<(i&63)) == 0 {
			continue
		}
		if first != nil && !ru.hasText {
			continue
		}
		if ru.final >= 0 && (ru.final == 1) != final {
			continue
		}
		if ru.permanent >= 0 && (ru.permanent == 1) != permanent {
			continue
		}
		if len(ru.codes) > 0 && !anyCode(ru.codes, r.Code) {
			continue
		}
		if len(ru.status) > 0 && (!stOK || !anyStatus(ru.status, st)) {
			continue
		}
		if len(ru.commands) > 0 && !contains(ru.commands, cmd) {
			continue
		}
		if len(ru.hosts) > 0 && !anyHost(ru.hosts, r.Host) {
			continue
		}
		if !ru.textMatches(text, bits) {
			continue
		}
		if first == nil {
			first = ru
		}
		if first.textual || ru.hasText || !known {
			return c.decide(first.reason, first.name, r, stOK, permanent, success, final, first), first.textual || ru.hasText
		}
	}
	if first != nil {
		return c.decide(first.reason, first.name, r, stOK, permanent, success, final, first), false
	}
	return c.decide("undefined", "no-rule", r, stOK, permanent, success, final, nil), false
}

func (ru *rule) textMatches(text []byte, bits []uint64) bool {
	if hasAny(bits, ru.unlessIDs) {
		return false
	}
	if !ru.hasText {
		return true
	}
	if hasAny(bits, ru.matchIDs) {
		return true
	}
	for i, re := range ru.pattern {
		need := ru.needIDs[i]
		if need != nil && !hasAny(bits, need) {
			continue
		}
		if ru.literal[i] || re.Match(text) {
			return true
		}
	}
	return false
}

// decide turns a reason into the full decision using the action table.
func (c *Classifier) decide(reason, ruleName string, r Reply, stOK, permanent, success, final bool, ru *rule) Decision {
	ri := c.reasons[reason]
	d := Decision{Reason: reason, Rule: ruleName}
	switch {
	case success || reason == "delivered" || reason == "feedback" || reason == "vacation":
		d.Action = ActionDelivered
	case permanent || final:
		d.Action = ActionBounce
	default:
		d.Action = ActionRetry
	}
	if d.Action != ActionDelivered {
		switch ri.hard {
		case "always":
			d.Hard = permanent || final
		case "permanent":
			d.Hard = permanent
		}
		if ru != nil && ru.notHard {
			d.Hard = false
		}
	}
	d.Signal = ri.signal
	if ru != nil && ru.hasSignal {
		d.Signal = ru.signal
	}
	if d.Signal == SignalNone && d.Action != ActionDelivered && !permanent {
		d.Signal = SignalDeferral
	}
	if d.Action != ActionDelivered && !d.Hard {
		switch ri.softFail {
		case "always":
			d.SoftFail = true
		case "final":
			d.SoftFail = final
		}
	}
	switch {
	case stOK:
		d.Status = r.Enhanced
	case d.Action == ActionDelivered:
		d.Status = ri.statusByClass[0]
	case permanent:
		d.Status = ri.statusByClass[2]
	default:
		d.Status = ri.statusByClass[1]
	}
	return d
}

// commandIn returns the SMTP command a bounce report's words say the quoted
// reply answered, or "" when they do not say.
func (c *Classifier) commandIn(text string) string {
	cmd, _ := c.commandCut(text)
	return cmd
}

// commandCut is commandIn that also says whether the text holds a
// transcript's failure reply, after which nothing can name the stage.
func (c *Classifier) commandCut(text string) (string, bool) {
	text = strings.ToLower(strings.Join(strings.Fields(text), " "))
	// In a session transcript (">>> RCPT TO", "<<< 550 ...") the failing
	// command is the last one before the first failure reply.
	cut := false
	if loc := transcriptFailure.FindStringIndex(text); loc != nil {
		text, cut = text[:loc[0]], true
	}
	best, at := "", -1
	for _, h := range c.commands {
		for _, re := range h.re {
			locs := re.FindAllStringIndex(text, -1)
			if len(locs) > 0 && locs[len(locs)-1][0] > at {
				best, at = h.command, locs[len(locs)-1][0]
			}
		}
	}
	return best, cut
}

var transcriptFailure = regexp.MustCompile(`<<< [45][0-9][0-9]`)

// normCommand maps the many spellings of an SMTP stage onto the names rules
// use. It does not allocate.
func normCommand(s string) string {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return ""
	case hasPrefixFold(s, "RCPT"):
		return "RCPT"
	case hasPrefixFold(s, "MAIL"):
		return "MAIL"
	case strings.EqualFold(s, "DATA"), strings.EqualFold(s, "DOT"), strings.EqualFold(s, "BDAT"),
		hasPrefixFold(s, "END OF DATA"), hasPrefixFold(s, "BDAT "):
		return "DATA"
	case strings.EqualFold(s, "HELO"), strings.EqualFold(s, "EHLO"), strings.EqualFold(s, "LHLO"):
		return "HELO"
	case strings.EqualFold(s, "CONNECT"), strings.EqualFold(s, "GREETING"), strings.EqualFold(s, "BANNER"):
		return "CONNECT"
	case strings.EqualFold(s, "STARTTLS"), strings.EqualFold(s, "TLS"):
		return "STARTTLS"
	case strings.EqualFold(s, "AUTH"):
		return "AUTH"
	case strings.EqualFold(s, "DNS"), strings.EqualFold(s, "MX"):
		return "DNS"
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// appendLower appends s lower-cased (ASCII only) with the local parts of
// email addresses masked: a recipient named "spam@" or "filtered@" must not
// decide the reason.
func appendLower(dst []byte, s string) []byte {
	start := len(dst)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	b := dst[start:]
	for i := 1; i < len(b); i++ {
		if b[i] != '@' {
			continue
		}
		j := i - 1
		if b[j] == '"' {
			for j--; j >= 0 && b[j] != '"'; j-- {
			}
		} else {
			for j >= 0 && isLocalChar(b[j]) {
				j--
			}
		}
		for k := j + 1; k < i; k++ {
			if b[k] != '"' {
				b[k] = 'x'
			}
		}
	}
	return dst
}

// isLocalChar reports whether c may appear in a dot-atom local part
// (RFC 5322 section 3.2.3).
func isLocalChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~.", c) >= 0
}

func containsAny(text []byte, lits [][]byte) bool {
	for _, l := range lits {
		if bytes.Contains(text, l) {
			return true
		}
	}
	return false
}

func anyCode(ps []codePattern, code int) bool {
	for _, p := range ps {
		if p.matches(code) {
			return true
		}
	}
	return false
}

func anyStatus(ps []statusPattern, st [3]int16) bool {
	for _, p := range ps {
		if p.matches(st) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// anyHost reports whether host ends with one of the suffixes (compared
// without case, ignoring a trailing dot). A suffix without a leading dot also
// matches the name itself.
func anyHost(suffixes []string, host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for _, s := range suffixes {
		bare := strings.TrimPrefix(s, ".")
		if len(host) == len(bare) && strings.EqualFold(host, bare) {
			return true
		}
		if len(host) > len(bare) && strings.EqualFold(host[len(host)-len(bare):], bare) && host[len(host)-len(bare)-1] == '.' {
			return true
		}
	}
	return false
}
