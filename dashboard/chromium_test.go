package dashboard

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"kiln/events"
	"kiln/events/stats"
	"kiln/queue"
)

// TestChromium drives the dashboard in Debian's headless Chromium against
// fake sources whose data changes while the pages are open: it logs in
// through the form, loads every page, checks that the charts drew the data
// the API serves (one path point per data point, in the same order) and that
// they follow when the data changes, removes a suppression through the page
// (session cookie and CSRF token), looks up a message, and writes a
// screenshot of the warm-up page to $DASHBOARD_SCREENSHOT or the test's
// temporary directory (and of every page to $DASHBOARD_SCREENSHOT_DIR). No
// page may log a console error or throw.
//
// Without Chromium the test is skipped, unless CI=true: then it fails.
func TestChromium(t *testing.T) {
	path := findChromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (Debian package chromium); the dashboard must be tested in a browser in CI")
		}
		t.Skip("chromium is not installed (Debian package chromium); with CI=true this fails")
	}
	w := newWorld(t, Options{Refresh: 250 * time.Millisecond, QueueRefresh: 50 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	w.traffic(6 * 60)
	msgID := "0f8zq3x1k2m4n5p6"
	w.q.mu.Lock()
	w.q.msgs[msgID] = &queue.Message{ID: msgID, Account: "shop", From: "news@shop.example", Created: t0.Add(-time.Hour),
		Expires: t0.Add(96 * time.Hour), Due: t0.Add(10 * time.Minute), Attempts: 1, Rcpts: []queue.Rcpt{
			{Addr: "ann@gmail.example", State: queue.RcptDelivered, Attempts: 1, Line: "250 2.0.0 OK"},
			{Addr: "<script>alert(1)</script>@yahoo.example", State: queue.RcptPending, Attempts: 1, Next: t0.Add(10 * time.Minute),
				Line: `421 4.7.0 <img src=x onerror="alert(1)"> try later`, Reason: "toomanyconn"},
		}}
	w.q.mu.Unlock()
	w.evs.add(events.Event{Time: t0.Add(-time.Hour), Type: events.Received, ID: msgID})
	w.evs.add(events.Event{Time: t0.Add(-50 * time.Minute), Type: events.Delivered, ID: msgID, Recipient: "ann@gmail.example", Site: "google", Egress: "ip1", Reply: "250 2.0.0 OK"})
	w.evs.add(events.Event{Time: t0.Add(-50 * time.Minute), Type: events.Deferred, ID: msgID, Recipient: "<script>alert(1)</script>@yahoo.example", Reason: "toomanyconn"})
	w.evs.add(events.Event{Time: t0.Add(-40 * time.Minute), Type: events.Bounced, ID: "0f8zq3x1k2m4n5p7", Recipient: "ann@gmail.example", Reason: "userunknown"})

	api := w.client(t)
	api.key = adminKey
	b := startChromium(t, path)
	p := b.page(t)
	base := w.srv.URL
	noProblems := func(where string) {
		t.Helper()
		// DASHBOARD_SCREENSHOT_DIR keeps a picture of every page, for a look.
		if dir := os.Getenv("DASHBOARD_SCREENSHOT_DIR"); dir != "" {
			p.screenshot(filepath.Join(dir, where+".png"), 1280)
		}
		if probs := p.takeProblems(); len(probs) > 0 {
			t.Fatalf("%s: the page reported errors:\n%v", where, probs)
		}
	}

	// Log in through the form, once with a wrong key.
	p.navigate(base+"/dashboard/overview", "/dashboard/login")
	p.mustEval(`document.querySelector('input[name=key]').value = 'wrong key'; document.querySelector('form').requestSubmit()`, nil)
	p.waitFor("the wrong key's message", `document.querySelector('.error') && document.querySelector('.error').textContent.includes('not the admin key')`)
	p.mustEval(`document.querySelector('input[name=key]').value = `+jsString(adminKey)+`; document.querySelector('form').requestSubmit()`, nil)
	p.waitFor("the overview after login", `location.pathname === '/dashboard/overview' && Number(document.body.dataset.renders) >= 1`)
	var cookie string
	p.mustEval(`document.cookie`, &cookie)
	if cookie != "" {
		t.Fatalf("the session cookie is readable from script: %q", cookie)
	}
	noProblems("login")

	t.Run("overview", func(t *testing.T) {
		checkLines := func(rng string, changed func([]chartPath) bool) []chartPath {
			t.Helper()
			var got []chartPath
			deadline := time.Now().Add(20 * time.Second)
			for {
				var o Overview
				api.getJSON("/api/v1/dashboard/overview?range="+rng, 200, &o)
				got = linePaths(p)
				err := matchLines(got, o.Series)
				if err == "" && (changed == nil || changed(got)) {
					return got
				}
				if time.Now().After(deadline) {
					t.Fatalf("the chart does not show the data (%s): %s; problems: %v", rng, err, p.takeProblems())
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		before := checkLines("6h", nil)
		if n := len(before[0].ys); n < 72 {
			t.Fatalf("6 hours drew %d points", n)
		}
		// A burst of deliveries in the last minute raises the line's end.
		for range 400 {
			w.stats.Handle(events.Event{Time: w.clk.Now().Add(-20 * time.Second), Type: events.Delivered, Site: "google", Account: "shop"})
		}
		checkLines("6h", func(now []chartPath) bool {
			return now[0].ys[len(now[0].ys)-1] < before[0].ys[len(before[0].ys)-1]
		})
		p.mustEval(`document.querySelector('button[data-range="1h"]').click()`, nil)
		p.waitFor("the 1h range", `document.querySelector('svg.line-chart').dataset.points === '60'`)
		checkLines("1h", nil)
		var rows int
		p.mustEval(`document.querySelectorAll('.grid .panel tbody tr').length`, &rows)
		if rows < 3 {
			t.Fatalf("%d rows in the reason and site tables", rows)
		}
		noProblems("overview")
	})

	t.Run("queues", func(t *testing.T) {
		p.navigate(base+"/dashboard/queues", "/dashboard/queues")
		p.waitFor("the provider bars", `document.querySelectorAll('svg.bar-chart rect.bar').length === 3`)
		var first string
		p.mustEval(`document.querySelector('svg.bar-chart text.bar-label').firstChild.textContent`, &first)
		if first != "google" {
			t.Fatalf("largest provider %q", first)
		}
		w.q.setLane("default|microsoft", 9000)
		p.waitFor("the new provider", `document.querySelectorAll('svg.bar-chart rect.bar').length === 4 && `+
			`document.querySelector('svg.bar-chart text.bar-label').firstChild.textContent === 'microsoft'`)
		p.waitFor("the domain table", `[...document.querySelectorAll('td')].some(td => td.textContent === 'gmail.example')`)
		noProblems("queues")
	})

	t.Run("warmup", func(t *testing.T) {
		p.navigate(base+"/dashboard/warmup", "/dashboard/warmup")
		p.waitFor("the site panels", `document.querySelectorAll('.panel.site svg.cap-chart').length === 3`)
		var v WarmupView
		api.getJSON("/api/v1/dashboard/warmup", 200, &v)
		for _, e := range v.Egress {
			for _, s := range e.Sites {
				checkCapChart(t, p, e.Name, s)
			}
		}
		w.warm.setSent("ip1", "google", 390)
		sel := `.egress[data-egress="ip1"] .site[data-site="google"]`
		p.waitFor("today's new count", `document.querySelector('`+sel+` rect.sent.today').dataset.sent === '390'`)
		api.getJSON("/api/v1/dashboard/warmup", 200, &v)
		checkCapChart(t, p, "ip1", v.Egress[0].Sites[0])
		var text string
		p.mustEval(`document.querySelector('`+sel+`').textContent`, &text)
		for _, want := range []string{"held", "rate", "rate-hold", "390 sent of 400"} {
			if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(text) {
				t.Errorf("the google panel does not say %q: %s", want, text)
			}
		}
		shot := os.Getenv("DASHBOARD_SCREENSHOT")
		if shot == "" {
			shot = filepath.Join(t.TempDir(), "warmup.png")
		}
		n := p.screenshot(shot, 1280)
		if n < 10_000 {
			t.Fatalf("screenshot of %d bytes", n)
		}
		t.Logf("warm-up screenshot: %s (%d bytes)", shot, n)
		noProblems("warmup")
	})

	t.Run("suppressions", func(t *testing.T) {
		p.navigate(base+"/dashboard/suppressions", "/dashboard/suppressions")
		p.waitFor("the list", `document.querySelectorAll('tbody tr').length === 3`)
		p.mustEval(`const b = document.querySelector('tr[data-address="gone@gmail.example"] button.remove'); b.click(); b.click()`, nil)
		p.waitFor("the row to go", `!document.querySelector('tr[data-address="gone@gmail.example"]') && document.querySelector('p[role=status]').textContent.startsWith('Removed')`)
		w.sup.mu.Lock()
		removed := slices.Clone(w.sup.removed)
		w.sup.mu.Unlock()
		if !slices.Equal(removed, []string{"shop/gone@gmail.example"}) {
			t.Fatalf("removed %v", removed)
		}
		p.mustEval(`document.querySelector('input[name=q]').value = '@yahoo.example'; document.querySelector('form').requestSubmit()`, nil)
		p.waitFor("the search", `document.querySelectorAll('tbody tr').length === 1`)
		noProblems("suppressions")
	})

	t.Run("messages", func(t *testing.T) {
		p.navigate(base+"/dashboard/messages?id="+msgID, "/dashboard/messages")
		p.waitFor("the message", `document.querySelectorAll('.panel').length === 2 && document.querySelectorAll('.panel')[1].querySelectorAll('tbody tr').length === 3`)
		var rcpts int
		p.mustEval(`document.querySelectorAll('.panel')[0].querySelectorAll('tbody tr').length`, &rcpts)
		if rcpts != 2 {
			t.Fatalf("%d recipients shown", rcpts)
		}
		// Markup in addresses and replies is shown as text.
		var injected bool
		p.mustEval(`!!document.querySelector('main script, main img')`, &injected)
		if injected {
			t.Fatal("a recipient address or a reply line became markup")
		}
		p.mustEval(`document.querySelector('input[name=q]').value = 'ann@gmail.example'; document.querySelector('form').requestSubmit()`, nil)
		p.waitFor("the recipient's events", `location.search === '?recipient=ann%40gmail.example' && document.querySelectorAll('.panel').length === 1 && document.querySelectorAll('tbody tr').length === 2`)
		noProblems("messages")
	})

	t.Run("logout", func(t *testing.T) {
		p.mustEval(`document.getElementById('logout').click()`, nil)
		p.waitFor("the login page", `location.pathname === '/dashboard/login' && document.readyState === 'complete'`)
		p.navigate(base+"/dashboard/overview", "/dashboard/login")
		noProblems("logout")
	})
}

// chartPath is one drawn line: its series and the y of each point.
type chartPath struct {
	series string
	points int // its data-points attribute
	ys     []float64
}

var pointRe = regexp.MustCompile(`[ML](-?[\d.]+) (-?[\d.]+)`)

func parsePath(d string) []float64 {
	var ys []float64
	for _, m := range pointRe.FindAllStringSubmatch(d, -1) {
		y, _ := strconv.ParseFloat(m[2], 64)
		ys = append(ys, y)
	}
	return ys
}

func linePaths(p *cdpPage) []chartPath {
	var raw []struct {
		Series, D string
		Points    string
	}
	p.mustEval(`[...document.querySelectorAll('svg.line-chart path.line')].map(e => ({series: e.dataset.series, d: e.getAttribute('d'), points: e.dataset.points}))`, &raw)
	var out []chartPath
	for _, r := range raw {
		n, _ := strconv.Atoi(r.Points)
		out = append(out, chartPath{series: r.Series, points: n, ys: parsePath(r.D)})
	}
	return out
}

// matchLines reports how the drawn lines differ from the data: a line per
// series, a point per data point, and a higher point wherever the count is
// higher. "" means they match.
func matchLines(got []chartPath, want []stats.Series) string {
	if len(got) != len(want) {
		return strconv.Itoa(len(got)) + " lines for " + strconv.Itoa(len(want)) + " series"
	}
	for i, s := range want {
		g := got[i]
		if g.series != s.Type || g.points != len(s.Points) || len(g.ys) != len(s.Points) {
			return s.Type + ": " + strconv.Itoa(len(g.ys)) + " points drawn for " + strconv.Itoa(len(s.Points))
		}
		if msg := sameOrder(g.ys, s.Points); msg != "" {
			return s.Type + ": " + msg
		}
	}
	return ""
}

// sameOrder checks that y falls where the value rises (SVG's y grows down).
func sameOrder(ys []float64, vals []uint64) string {
	for j := range vals {
		for k := j + 1; k < len(vals); k++ {
			dv, dy := int64(vals[k])-int64(vals[j]), ys[j]-ys[k]
			if (dv > 0) != (dy > 0.05) || (dv == 0) != (dy > -0.05 && dy < 0.05) {
				return "point " + strconv.Itoa(k) + " is not drawn where its count puts it"
			}
		}
	}
	return ""
}

// checkCapChart compares one warm-up chart with its days: a bar per day
// sent (with its count), the cap line through the recorded days and today,
// the plan line from today on.
func checkCapChart(t *testing.T, p *cdpPage, egress string, s SiteView) {
	t.Helper()
	sel := `.egress[data-egress="` + egress + `"] .site[data-site="` + s.Site + `"] svg.cap-chart`
	var got struct {
		Bars []int
		Cap  string
		Plan string
	}
	p.mustEval(`(() => { const c = document.querySelector('`+sel+`');
		const d = (s) => { const e = c.querySelector('path.' + s); return e ? e.getAttribute('d') : '' };
		return {bars: [...c.querySelectorAll('rect.sent')].map(r => Number(r.dataset.sent)), cap: d('cap'), plan: d('plan')} })()`, &got)
	var sent []int
	var caps, plan []int
	for _, d := range s.Days {
		if !d.Planned {
			sent = append(sent, d.Sent)
			if d.Cap >= 0 {
				caps = append(caps, d.Cap)
			}
		}
		if (d.Planned || d.Today) && d.Cap >= 0 {
			plan = append(plan, d.Cap)
		}
	}
	if !slices.Equal(got.Bars, sent) {
		t.Errorf("%s/%s: bars %v, sent %v", egress, s.Site, got.Bars, sent)
	}
	capYs, planYs := parsePath(got.Cap), parsePath(got.Plan)
	if len(capYs) != len(caps) || len(planYs) != len(plan) {
		t.Errorf("%s/%s: %d cap points for %d days, %d plan points for %d", egress, s.Site, len(capYs), len(caps), len(planYs), len(plan))
		return
	}
	u := func(xs []int) []uint64 {
		var out []uint64
		for _, x := range xs {
			out = append(out, uint64(x))
		}
		return out
	}
	if msg := sameOrder(capYs, u(caps)); msg != "" {
		t.Errorf("%s/%s cap: %s", egress, s.Site, msg)
	}
	if msg := sameOrder(planYs, u(plan)); msg != "" {
		t.Errorf("%s/%s plan: %s", egress, s.Site, msg)
	}
}
