package e2e

import (
	"fmt"
	"testing"
	"time"

	"kiln/internal/fakemx"
	"kiln/internal/loadgen"
)

// Many distinct destinations: one message to each of n domains, each with
// its own MX host name in the fake DNS (all answering on one fake MX), so
// kiln resolves, schedules and connects n separate sites. Every
// acknowledged message arrives once. 2,000 domains in CI, 100,000 in the
// full run (KILN_DOMAINS to choose); the run reports the injection and
// delivery rates, the DNS queries and kiln's peak memory.
func TestManyDomains(t *testing.T) {
	n := 2000
	if fullRun() {
		n = 100000
	}
	n = envInt("KILN_DOMAINS", n)
	w := newWorld(t)
	domains := make([]string, n)
	for i := range domains {
		domains[i] = fmt.Sprintf("d%d.test", i+1)
		w.domain(domains[i], 2)
	}
	led := newLedger()
	mx := w.mx(2, fakemx.Config{Discard: true, TLS: fakemx.TLSOff, OnMessage: led.onMessage})
	d := w.start("")

	start := time.Now()
	acked, injected := injectAll(t, loadgen.Config{
		Addr: d.submit, Concurrency: 20, Messages: n, PerConn: 100, Size: 1500,
		Domains: domains, FromDomain: "sender.test", Timeout: 2 * time.Minute,
	})
	timeout := 5 * time.Minute
	if n > 20000 {
		timeout = 30 * time.Minute
	}
	waitUntil(t, fmt.Sprintf("all %d messages to arrive", n), timeout, func() bool {
		_, distinct := led.count()
		return distinct >= n
	})
	delivered := time.Since(start)
	time.Sleep(time.Second)
	missing, dups := led.reconcile(acked)
	if len(missing) > 0 {
		t.Errorf("%d acknowledged messages never arrived, e.g. %s", len(missing), missing[0])
	}
	if dups > 0 {
		t.Errorf("%d duplicates", dups)
	}
	if !d.alive() {
		t.Fatalf("kiln died:\n%s", d.logTail())
	}
	report(t, "%d messages of 1.5 KB to %d distinct domains: injected in %v (%.0f/s), all delivered %v after the start (%.0f/s), %d duplicates; %d DNS queries; peak RSS %d MiB; MX stats %+v",
		n, n, injected.Round(time.Millisecond), float64(n)/injected.Seconds(), delivered.Round(time.Millisecond),
		float64(n)/delivered.Seconds(), dups, w.dns.TotalQueries(), hwmKiB(d)/1024, mx.Stats())
}
