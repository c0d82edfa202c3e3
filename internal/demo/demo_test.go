package demo

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the demo writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRecipients(t *testing.T) {
	rcpts := recipients(64)
	if len(rcpts) != 64 {
		t.Fatalf("%d recipients, want 64", len(rcpts))
	}
	seen := map[string]bool{}
	per := map[string]int{}
	unknown := map[string]int{}
	full := map[string]int{}
	for _, r := range rcpts {
		if seen[r] {
			t.Errorf("%s twice", r)
		}
		seen[r] = true
		p := providerOf(r)
		if p == nil {
			t.Fatalf("%s belongs to no provider", r)
		}
		per[p.Key]++
		switch {
		case strings.HasPrefix(r, unknownLocal):
			unknown[p.Key]++
		case strings.HasPrefix(r, fullLocal):
			full[p.Key]++
		}
	}
	for _, p := range providers {
		if want := 64 * p.Share / 100; per[p.Key] < want-1 || per[p.Key] > want+1 {
			t.Errorf("%s: %d recipients, want about %d", p.Key, per[p.Key], want)
		}
		if unknown[p.Key] == 0 || full[p.Key] == 0 {
			t.Errorf("%s: %d unknown users and %d full mailboxes, want some of each", p.Key, unknown[p.Key], full[p.Key])
		}
	}
	if strings.Join(recipients(64), ",") != strings.Join(rcpts, ",") {
		t.Error("the campaign differs between two calls")
	}
}

// TestDemo runs a small campaign on a fast clock and checks that it shows what
// the demo promises: relaying, unknown users bounced and suppressed (and
// refused when mailed again), the Gmail-like provider's throttling deferred
// and paused, the Microsoft-like block bounced without suppression, and mail
// held back by the warm-up caps until the next day.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs kiln for several seconds")
	}
	const n = 100
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The dashboard address printed at the start answers.
	dash := make(chan error, 1)
	go func() {
		re := regexp.MustCompile(`dashboard\s+(?:\x1b\[1m)?(http://127\.0\.0\.1:\d+/dashboard/)`)
		for ctx.Err() == nil {
			if m := re.FindStringSubmatch(out.String()); m != nil {
				resp, err := http.Get(m[1])
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = &url200{m[1], resp.Status}
					}
				}
				dash <- err
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		dash <- ctx.Err()
	}()

	res, err := Run(ctx, Config{
		Messages: n, Duration: 90 * time.Second, Speed: 4 * 3600, Step: 20 * time.Millisecond,
		Out: out, Live: true, Color: true, Log: io.Discard,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if err := <-dash; err != nil {
		t.Errorf("the dashboard: %v", err)
	}
	output := out.String()
	t.Logf("simulated %v in %v; complete %v\n%s", res.End.Sub(res.Start), res.Elapsed, res.Complete,
		strings.Join(summaryText(output), "\n"))
	if !strings.Contains(output, "\x1b[J") || !strings.Contains(output, "Summary after") {
		t.Error("the live output has no redrawn table or no summary")
	}

	tl := res.tally
	tot := res.Total
	// Relaying: every recipient accepted, most delivered.
	if tot.Received != n || tot.Delivered == 0 {
		t.Errorf("sent %d, delivered %d: want all %d accepted and some delivered", tot.Received, tot.Delivered, n)
	}

	// Unknown users: bounced as userunknown and suppressed; nothing else
	// suppressed.
	unknownDone := 0
	for _, r := range recipients(n) {
		st := tl.rcpts[r]
		if st == nil {
			continue
		}
		if strings.HasPrefix(r, unknownLocal) {
			if st.final == "" {
				continue
			}
			unknownDone++
			if st.final != "bounced" || st.reason != "userunknown" || !st.suppressed {
				t.Errorf("%s: %s (%s), suppressed %v; want bounced as userunknown and suppressed", r, st.final, st.reason, st.suppressed)
			}
		} else if st.suppressed {
			t.Errorf("%s was suppressed (%s %s): only unknown users should be", r, st.final, st.reason)
		}
	}
	if unknownDone == 0 {
		t.Error("no unknown user was bounced")
	}
	if tot.Suppressed != unknownDone {
		t.Errorf("%d suppressions for %d unknown users bounced", tot.Suppressed, unknownDone)
	}
	// Mailed again, the suppressed addresses are refused at submission.
	if res.Resent == 0 || res.ResentRefused != res.Resent || tot.Refused != res.Resent {
		t.Errorf("sent again to %d suppressed addresses, %d refused (%d refusals in all); want every one refused",
			res.Resent, res.ResentRefused, tot.Refused)
	}

	// The Gmail-like provider throttles: 421 4.7.28 deferrals, retried,
	// and kiln's warm-up paused the provider.
	if got := tl.deferStatus["gmail"]["4.7.28"]; got == 0 {
		t.Errorf("no 4.7.28 deferral from the Gmail-like provider: %v", tl.deferStatus["gmail"])
	}
	if reactions(tl, "google") == 0 {
		t.Error("the warm-up never held or paused google after its rate limit")
	}
	if res.Providers["gmail"].Bounced != unknownAt(tl, "gmail") {
		t.Errorf("gmail: %d bounced, %d of them unknown users: a throttle must not bounce", res.Providers["gmail"].Bounced, unknownAt(tl, "gmail"))
	}

	// The Microsoft-like block bounces the message and keeps the
	// recipient; the rate limit for reputation defers.
	ms := res.Providers["outlook"]
	if ms.BouncedBy["blocked"] != msBlocked {
		t.Errorf("outlook: %d bounced as blocked, want %d: %v", ms.BouncedBy["blocked"], msBlocked, ms.BouncedBy)
	}
	for addr, st := range tl.rcpts {
		if st.reason == "blocked" && st.suppressed {
			t.Errorf("%s was blocked and suppressed: a block is not the address's fault", addr)
		}
	}
	if tl.deferStatus["outlook"]["4.7.650"] != msRateLimited {
		t.Errorf("outlook: %d deferrals with 4.7.650, want %d", tl.deferStatus["outlook"]["4.7.650"], msRateLimited)
	}
	if reactions(tl, "microsoft") == 0 {
		t.Error("the warm-up never held or paused microsoft after its block")
	}

	// Warm-up caps: mail waited for capacity, and the Yahoo-like provider,
	// which refuses nothing but unknown users and full mailboxes, got no
	// more on day 1 than its day-1 cap, and the rest on later days.
	if tot.PeakCapWait == 0 {
		t.Error("nothing ever waited for warm-up capacity")
	}
	capYahoo := plan(sharesOf(recipients(n))).Providers["yahoo"][0]
	day1 := res.Start.UTC().Format("2006-01-02")
	var first, later int
	for addr, st := range tl.rcpts {
		if providerOf(addr).Key != "yahoo" || st.final != "delivered" {
			continue
		}
		if st.at.UTC().Format("2006-01-02") == day1 {
			first++
		} else {
			later++
		}
	}
	if first == 0 || first > capYahoo || later == 0 {
		t.Errorf("yahoo: %d delivered on day 1 (cap %d), %d later; want the cap to hold some back to the next day", first, capYahoo, later)
	}
	var yahoo bool
	for _, s := range res.Warmup {
		if s.Site == "yahoo" {
			yahoo = true
			if s.Day < 2 {
				t.Errorf("yahoo is on warm-up day %d at the end, want 2 or later", s.Day)
			}
		}
	}
	if !yahoo {
		t.Errorf("no warm-up status for yahoo: %+v", res.Warmup)
	}

	// Bounce notices reached the campaign's sender.
	if res.Notices.Delivered == 0 {
		t.Error("no bounce notice was delivered to the sender")
	}
}

// TestDemoPlain runs a short demo with plain output and stops it early.
func TestDemoPlain(t *testing.T) {
	out := &syncBuffer{}
	res, err := Run(context.Background(), Config{
		Messages: 12, Duration: 2 * time.Second, Speed: 4 * 3600, Every: 500 * time.Millisecond,
		Out: out, Log: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "\x1b[") {
		t.Error("plain output has ANSI escapes")
	}
	for _, want := range []string{"dashboard   http://127.0.0.1:", "[d1 ", "gmail", "Summary after"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if res.Total.Received != 12 {
		t.Errorf("sent %d, want 12", res.Total.Received)
	}
}

// A busy port is an error that names it, not a hang or a crash.
func TestDemoPortBusy(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Run(context.Background(), Config{Admin: l.Addr().String(), Out: io.Discard, Log: io.Discard})
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) {
		t.Fatalf("Run with a busy admin port: %v; want an error naming %s", err, l.Addr())
	}
}

// reactions counts the warm-up's adaptive reactions at a site (kiln's
// classifier decides whether a reply is a rate signal, which holds, or a
// block signal, which pauses).
func reactions(tl *tally, site string) int {
	p, h := tl.reactionsAt(site)
	return p + h
}

type url200 struct{ url, status string }

func (e *url200) Error() string { return e.url + ": " + e.status }

func unknownAt(tl *tally, key string) int {
	n := 0
	for addr, st := range tl.rcpts {
		if strings.HasPrefix(addr, unknownLocal) && providerOf(addr).Key == key && st.final == "bounced" {
			n++
		}
	}
	return n
}

// summaryText returns the summary at the end of the output, without escapes.
func summaryText(out string) []string {
	i := strings.LastIndex(out, "Summary after")
	if i < 0 {
		return nil
	}
	return strings.Split(regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]`).ReplaceAllString(out[i:], ""), "\n")
}
