package demo

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"kiln/warmup"
)

// screen writes the demo's output: redrawn in place on a terminal (Live),
// as plain lines otherwise.
type screen struct {
	w     io.Writer
	live  bool
	color bool
	drawn int // lines of the live block now on the screen
	notes int // notes already printed (plain) or considered (live)
	wrap  bool
}

func newScreen(w io.Writer, live, color bool) screen {
	return screen{w: w, live: live, color: color}
}

// ANSI escapes: SGR colours, cursor up, erase below, line wrap off and on.
const (
	ansiReset   = "\x1b[0m"
	ansiBold    = "\x1b[1m"
	ansiDim     = "\x1b[2m"
	ansiRed     = "\x1b[31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiMagenta = "\x1b[35m"
	ansiCyan    = "\x1b[36m"
	wrapOff     = "\x1b[?7l"
	wrapOn      = "\x1b[?7h"
)

func (s *screen) paint(code, text string) string {
	if !s.color || text == "" {
		return text
	}
	return code + text + ansiReset
}

func (s *screen) bold(t string) string { return s.paint(ansiBold, t) }
func (s *screen) dim(t string) string  { return s.paint(ansiDim, t) }

func (s *screen) println(lines ...string) {
	for _, l := range lines {
		fmt.Fprintln(s.w, l)
	}
}

// draw replaces the live block with lines. Line wrapping is turned off while
// the block is on screen, so a line wider than the terminal is cut, not
// wrapped, and the block keeps its height.
func (s *screen) draw(lines []string) {
	var b strings.Builder
	if !s.wrap {
		b.WriteString(wrapOff)
		s.wrap = true
	}
	if s.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", s.drawn)
	}
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\n")
	}
	io.WriteString(s.w, b.String())
	s.drawn = len(lines)
}

// restart leaves the current live block as it is; the next draw starts a new
// one below it.
func (s *screen) restart() { s.drawn = 0 }

// close turns line wrapping back on.
func (s *screen) close() {
	if s.wrap {
		io.WriteString(s.w, wrapOn)
		s.wrap = false
	}
}

func (s *screen) summary(res *Result, lines []string) {
	s.close()
	s.restart()
	s.println("")
	s.println(lines...)
}

// simTime formats a simulated time as the demo's day and the time of day.
func (d *run) simTime(t time.Time) string {
	start := d.res.Start.UTC()
	day0 := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC)
	return fmt.Sprintf("d%d %s", int(t.UTC().Sub(day0)/(24*time.Hour))+1, t.UTC().Format("15:04"))
}

func (d *run) intro() {
	s := &d.screen
	p := plan(d.shares)
	capOf := func(pr *provider) int {
		if c, ok := p.Providers[pr.Site]; ok {
			return c[0]
		}
		return p.Default[0]
	}
	data := d.dataDir + " (removed at the end; --data DIR keeps it)"
	if d.kept {
		data = d.dataDir
	}
	s.println(
		s.bold("kiln demo")+": kiln runs in this process, with simulated mailbox providers on loopback.",
		"Nothing leaves this machine and no DNS is used.",
		"",
		"  dashboard   "+s.bold(d.res.Dashboard),
		"  submission  "+d.res.Submission+" (SMTP; clients on loopback may relay)",
		"  data        "+data,
		"              kiln's log: kiln.log, its events: events.log",
		"",
		fmt.Sprintf("Simulated: the clock runs %s, starting %s UTC (warm-up days begin at midnight,",
			speedText(d.cfg.Speed), d.res.Start.UTC().Format("Mon 2 Jan 15:04")),
		"mail to a warming IP goes out 08:00-20:00). The providers are one SMTP server on "+d.sinkAddr+";",
		"a built-in MX table sends each domain there under its provider's MX host name:",
	)
	for _, pr := range providers {
		story := pr.Story
		if strings.Contains(story, "%d") {
			story = fmt.Sprintf(story, d.gmailPerHour)
		}
		s.println(fmt.Sprintf("  %-8s %-24s %s", pr.Key, strings.Join(pr.Domains, " "), story))
		s.println(fmt.Sprintf("  %-8s %-24s %s", "", "", s.dim("MX "+pr.MX+", warm-up site "+pr.Site)))
	}
	s.println(
		fmt.Sprintf("  everywhere: %s*@ do not exist (550 5.1.1); %s*@ have full mailboxes for a while (452 4.2.2)", unknownLocal, fullLocal),
		"",
		fmt.Sprintf("Warm-up: kiln sends from %s (127.0.0.1), a new IP on a 4-day plan whose caps double daily;", egressName),
	)
	var caps []string
	for _, pr := range providers {
		caps = append(caps, fmt.Sprintf("%s %d", pr.Key, capOf(pr)))
	}
	s.println(
		"day-1 caps: "+strings.Join(caps, ", ")+".",
		fmt.Sprintf("Campaign: %d messages, one recipient each, from %s through the submission port.", len(d.rcpts), sender),
		"",
	)
}

func speedText(speed float64) string {
	switch {
	case speed == 1:
		return "in real time"
	}
	per := time.Duration(speed * float64(time.Second)).Round(time.Second)
	var unit string
	switch {
	case per%time.Hour == 0:
		unit = fmt.Sprintf("%d h", per/time.Hour)
	case per%time.Minute == 0:
		unit = fmt.Sprintf("%d min", per/time.Minute)
	default:
		unit = per.String()
	}
	return fmt.Sprintf("%gx (1 s = %s)", speed, unit)
}

// columns of the progress table.
var columns = []struct {
	head  string
	width int
	color string
	get   func(Counts) int
}{
	{"received", 9, "", func(c Counts) int { return c.Received }},
	{"delivered", 10, ansiGreen, func(c Counts) int { return c.Delivered }},
	{"deferred", 9, ansiYellow, func(c Counts) int { return c.Deferred }},
	{"bounced", 8, ansiRed, func(c Counts) int { return c.Bounced + c.Expired }},
	{"suppressed", 11, ansiMagenta, func(c Counts) int { return c.Suppressed }},
	{"refused", 8, ansiMagenta, func(c Counts) int { return c.Refused }},
	{"queued", 7, "", func(c Counts) int { return c.Queued }},
	{"for cap", 8, ansiCyan, func(c Counts) int { return c.CapWait }},
}

// table returns the progress table: one row per provider, the total, and
// each provider's warm-up.
func (d *run) table(byKey map[string]Counts, total Counts, sites []warmup.SiteStatus) []string {
	s := &d.screen
	var head strings.Builder
	fmt.Fprintf(&head, "%-9s", "provider")
	for _, c := range columns {
		fmt.Fprintf(&head, "%*s", c.width, c.head)
	}
	head.WriteString("   warm-up of " + egressName)
	lines := []string{s.bold(head.String())}
	row := func(name string, c Counts, wu string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%-9s", name)
		for _, col := range columns {
			v := col.get(c)
			cell := fmt.Sprintf("%*d", col.width, v)
			if v > 0 && col.color != "" {
				cell = s.paint(col.color, cell)
			}
			b.WriteString(cell)
		}
		if wu != "" {
			b.WriteString("   " + wu)
		}
		return b.String()
	}
	bySite := map[string]warmup.SiteStatus{}
	for _, st := range sites {
		bySite[st.Site] = st
	}
	for _, p := range providers {
		wu := ""
		if st, ok := bySite[p.Site]; ok {
			wu = d.warmupText(st)
		}
		lines = append(lines, row(p.Key, byKey[p.Key], wu))
	}
	lines = append(lines, s.bold(row("total", total, "")))
	return lines
}

// warmupText says where one site stands in its warm-up.
func (d *run) warmupText(st warmup.SiteStatus) string {
	now := d.clk.Now()
	today := fmt.Sprintf("%d/%d today", st.Sent, st.Cap)
	if st.Cap < 0 {
		today = fmt.Sprintf("%d today, no cap", st.Sent)
	}
	var t string
	switch {
	case st.State == warmup.StatePaused && st.PausedUntil.After(now):
		t = s2(d.screen.paint(ansiRed, "paused")+" until %s (%s)", st.PausedUntil.UTC().Format("15:04"), st.Cause)
	case st.State == warmup.StateHeld:
		t = s2("day %d "+d.screen.paint(ansiYellow, "held")+" (%s), %s", st.Day, st.Cause, today)
	default:
		t = s2("day %d %s, %s", st.Day, st.State, today)
	}
	if st.BackoffUntil.After(now) && st.State != warmup.StatePaused {
		t += ", slowed until " + st.BackoffUntil.UTC().Format("15:04")
	}
	return t
}

func s2(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// status shows the progress: the live block, or (plain) the notes since the
// last call and, when full, one status line per provider.
func (d *run) status(elapsed time.Duration, full bool) {
	s := &d.screen
	byKey, total := d.tally.snapshot()
	sites := d.warmupStatus()
	now := d.clk.Now()
	clock := fmt.Sprintf("simulated %s UTC", d.simTime(now))
	if !d.cfg.Live {
		notes, next := d.tally.notesSince(s.notes)
		s.notes = next
		for _, n := range notes {
			s.println(fmt.Sprintf("[%s] %s", d.simTime(n.Time), n.Text))
		}
		if !full {
			return
		}
		s.println(fmt.Sprintf("[%s] after %s: %d received, %d delivered, %d deferrals, %d bounced, %d suppressed, %d queued (%d waiting for the warm-up cap)",
			d.simTime(now), fmtElapsed(elapsed), total.Received, total.Delivered, total.Deferred, total.Bounced+total.Expired, total.Suppressed,
			total.Queued, total.CapWait))
		bySite := map[string]warmup.SiteStatus{}
		for _, st := range sites {
			bySite[st.Site] = st
		}
		for _, p := range providers {
			c := byKey[p.Key]
			wu := ""
			if st, ok := bySite[p.Site]; ok {
				wu = "; warm-up " + d.warmupText(st)
			}
			s.println(fmt.Sprintf("[%s]   %-8s %d received, %d delivered, %d deferrals, %d bounced, %d suppressed, %d queued (%d for the cap)%s",
				d.simTime(now), p.Key, c.Received, c.Delivered, c.Deferred, c.Bounced+c.Expired, c.Suppressed, c.Queued, c.CapWait, wu))
		}
		return
	}
	lines := []string{
		fmt.Sprintf("%s  %s  %s", s.bold(clock), s.dim("elapsed "+fmtElapsed(elapsed)+" of "+fmtElapsed(d.cfg.Duration)), s.dim(d.res.Dashboard)),
		"",
	}
	lines = append(lines, d.table(byKey, total, sites)...)
	lines = append(lines, "", s.bold("what happened (simulated time)"))
	notes, _ := d.tally.notesSince(0)
	const shown = 8
	if len(notes) > shown {
		notes = notes[len(notes)-shown:]
	}
	for _, n := range notes {
		lines = append(lines, "  "+s.dim(d.simTime(n.Time))+" "+n.Text)
	}
	for range shown - len(notes) {
		lines = append(lines, "")
	}
	s.draw(lines)
}

func fmtElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// summaryLines tells what the run showed, in numbers.
func (d *run) summaryLines() []string {
	s := &d.screen
	res := d.res
	t := res.Total
	sim := res.End.Sub(res.Start).Round(time.Hour)
	head := fmt.Sprintf("Summary after %s (simulated %s)", fmtElapsed(res.Elapsed), fmtSim(sim))
	switch {
	case res.Interrupted:
		head += ", stopped early"
	case !res.Complete:
		head += ", time is up"
	}
	lines := []string{s.bold(head + ":")}
	add := func(label, format string, a ...any) {
		lines = append(lines, fmt.Sprintf("  %-13s %s", label, fmt.Sprintf(format, a...)))
	}
	if !d.cfg.Live {
		byKey, _ := d.tally.snapshot()
		lines = append(lines, d.table(byKey, t, res.Warmup)...)
		lines = append(lines, "")
	}
	add("relayed", "%d of the %d recipients kiln accepted were delivered", t.Delivered, t.Received)
	add("bounced", "%d: %s", t.Bounced+t.Expired, byReason(t.BouncedBy))
	blocked := 0
	for _, p := range providers {
		if p.Site == "microsoft" {
			blocked = res.Providers[p.Key].BouncedBy["blocked"]
		}
	}
	supp := fmt.Sprintf("%d addresses that do not exist", t.Suppressed)
	if blocked > 0 {
		supp += fmt.Sprintf("; the %d blocked at outlook were kept (a block is the sender's fault)", blocked)
	}
	add("suppressed", "%s", supp)
	if res.Resent > 0 {
		add("sent again", "%d mails to suppressed addresses the next day: kiln refused %d at submission", res.Resent, res.ResentRefused)
	}
	add("deferred", "%d deferrals, each retried later: %s", t.Deferred, byReason(t.DeferredBy))
	var pauses []string
	for _, p := range providers {
		var r []string
		if n := res.Pauses[p.Site]; n > 0 {
			r = append(r, fmt.Sprintf("paused %d×", n))
		}
		if n := res.Holds[p.Site]; n > 0 {
			r = append(r, fmt.Sprintf("held %d×", n))
		}
		if len(r) > 0 {
			pauses = append(pauses, p.Site+" "+strings.Join(r, " and "))
		}
	}
	wu := fmt.Sprintf("up to %d recipients waited for warm-up capacity at once", t.PeakCapWait)
	if len(pauses) > 0 {
		wu += "; kiln's warm-up reacted to the providers: " + strings.Join(pauses, ", ")
	}
	add("warm-up", "%s", wu)
	if res.Notices.Delivered > 0 {
		add("notices", "%d bounce notices (RFC 3464) delivered to the sender %s", res.Notices.Delivered, sender)
	}
	if t.Queued > 0 {
		add("still queued", "%d (%d waiting for warm-up capacity); kiln would keep trying", t.Queued, t.CapWait)
	}
	return lines
}

func fmtSim(d time.Duration) string {
	days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	switch {
	case days == 0:
		return fmt.Sprintf("%d h", hours)
	case days == 1:
		return fmt.Sprintf("1 day %d h", hours)
	}
	return fmt.Sprintf("%d days %d h", days, hours)
}

// byReason lists counts by reason, largest first.
func byReason(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%d %s", e.v, e.k))
	}
	return strings.Join(parts, ", ")
}
