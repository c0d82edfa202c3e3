package mta

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"kiln/configs"
	"kiln/events"
	"kiln/internal/fakemx"
	"kiln/warmup"
)

// warmWorld has one egress on a small test plan, a Google-hosted domain and
// another domain, each with its own fake MX.
func warmWorld(t *testing.T) (*world, *fakemx.Server, *fakemx.Server) {
	w := newWorld(t, func(c *configs.Config) {
		c.Egress = []warmup.Egress{{Name: "out1", Source: "127.0.0.1", Start: "2026-05-04", Plan: "test"}}
		c.Warmup.Plan = []warmup.Plan{{Name: "test", Default: []int{4, 8, 16, 32}, Providers: map[string][]int{"google": {3, 6, 12, 24}}}}
		// A day of lifetime: the messages wait longer than that for the
		// cap, and must not expire for it.
		c.Queue.MaxAge = configs.Duration(24 * time.Hour)
	})
	google := w.mx(2, fakemx.Config{})
	other := w.mx(4, fakemx.Config{})
	w.dns.AddMX("gmail.test", 5, "gmail-smtp-in.l.google.com")
	w.dns.AddA("gmail-smtp-in.l.google.com", "127.0.0.2")
	w.domain("other.test", 4)
	return w, google, other
}

// runDay steps the fake clock through the rest of the day to the next
// midnight, letting kiln work at each step.
func (w *world) runDay() {
	now := w.clk.Now()
	w.runUntil(time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC))
}

func (w *world) runUntil(end time.Time) {
	for w.clk.Now().Before(end) {
		step := 20 * time.Minute
		if d := end.Sub(w.clk.Now()); d < step {
			step = d
		}
		w.advance(step)
	}
	time.Sleep(100 * time.Millisecond)
}

func TestWarmupCapsSpreadAndWait(t *testing.T) {
	if raceDetector {
		t.Skip("a simulation of days: the run without -race covers it")
	}
	w, google, other := warmWorld(t)
	c := dialSMTP(t, w.submitAddr())
	c.must("EHLO app.test", 250)
	for i := 0; i < 10; i++ {
		for _, d := range []string{"gmail.test", "other.test"} {
			if code, msg := c.send("app@sender.test", []string{fmt.Sprintf("r%d@%s", i, d)}, msgText("app@sender.test", "warm")); code != 250 {
				t.Fatalf("%d %s", code, msg)
			}
		}
	}
	// Day 1: caps 3 (Google) and 4 (others), spread over the window.
	time.Sleep(200 * time.Millisecond)
	if n := len(google.Messages()); n > 1 {
		t.Errorf("%d messages to Google at once: the day's cap is not spread", n)
	}
	w.runUntil(time.Date(2026, 5, 4, 23, 0, 0, 0, time.UTC))
	if g, o := len(google.Messages()), len(other.Messages()); g != 3 || o != 4 {
		t.Fatalf("day 1: Google got %d (cap 3), other got %d (cap 4)", g, o)
	}
	// The status the admin API reports counts what the MX hosts received.
	var st warmup.Status
	getJSON(t, "http://"+w.srv.AdminAddr()+"/api/v1/warmup/status", &st)
	sent, caps := map[string]int{}, map[string]int{}
	for _, e := range st.Egress {
		for _, s := range e.Sites {
			sent[s.Site], caps[s.Site] = s.Sent, s.Cap
		}
	}
	if sent["google"] != 3 || caps["google"] != 3 || sent["mx:mx4.other.test"] != 4 {
		t.Fatalf("status after day 1: sent %v, caps %v", sent, caps)
	}
	w.runDay()
	total, _, _ := w.srv.store.Count()
	if total != 13 {
		t.Fatalf("%d messages queued after day 1, want 13 waiting", total)
	}
	// Day 2: caps 6 and 8. Stop and start kiln in the middle of the day:
	// the counts survive.
	w.advance(13 * time.Hour)
	midday := len(google.Messages()) - 3
	w.restart()
	w.runDay()
	if g := len(google.Messages()) - 3; g != 6 {
		t.Fatalf("day 2: Google got %d (cap 6; %d before the restart)", g, midday)
	}
	if o := len(other.Messages()); o != 10 {
		t.Fatalf("day 2: other got %d in all, want all 10", o)
	}
	// Day 3: the last Google message goes; nothing expired on the way,
	// although the queue's max age is one day.
	w.runDay()
	if g := len(google.Messages()); g != 10 {
		t.Fatalf("day 3: Google got %d in all, want 10", g)
	}
	if n := w.count(typed(events.Expired, "")); n != 0 {
		t.Fatalf("%d messages expired while waiting for the cap", n)
	}
	var plan warmup.PlanView
	getJSON(t, "http://"+w.srv.AdminAddr()+"/api/v1/warmup/plan?egress=out1", &plan)
	if plan.Egress != "out1" || len(plan.Sites) == 0 {
		t.Fatalf("plan: %+v", plan)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
