// Package warmup decides how much mail each egress address may send to each
// mailbox provider, and when: warm-up plans with daily caps per (egress,
// provider), spread over a sending window; per-provider shaping; overflow
// between the egresses of a pool; priority when capacity is short; and
// adaptive control that holds, steps back or pauses a provider that
// complains, and resumes by itself. The delivery scheduler asks; warmup
// answers and remembers, in kiln's badger store, so that a restart neither
// resets nor double-counts a day.
//
// # Sites
//
// Limits apply per site, not per recipient domain. Site(domain, mxHosts)
// maps a domain to the provider whose MX suffixes match all of its MX hosts
// (Google counts its limits per MX group, PROVIDERS.md §1), else to the
// domain's own MX set ("mx:" and the sorted hosts), so domains sharing an MX
// set share a queue and limits. A domain with its own [[shaping]] entry is a
// site of its own ("domain:example.com").
//
// # How the scheduler uses it
//
//	c, err := warmup.New(cfg, db, clock.Real{}, onEvent) // cfg.Validate() errors name their keys
//	go c.Run(ctx)                                        // persists every second, reaps, reports pause ends
//	defer c.Close()
//
//	site := c.Site(domain, mxHosts)             // once per domain per MX answer; cache it
//	sh := c.Shaping(egress, site, now)          // connections, messages per connection for the pool
//
// Per delivery decision, for the next message of a (pool, site) queue:
//
//	d := c.Reserve(pool, site, priority, now)
//	if !d.OK {
//		// park the message until d.RetryAt; when d.CapWait, the wait is
//		// warm-up capacity: add d.RetryAt.Sub(now) to the message's
//		// deadline so its max age is not spent waiting for the cap
//		return
//	}
//	// send through d.Egress (bind its source address); the message is
//	// already counted against today's cap. If no attempt is made after all
//	// (connection failed before the message was offered, shutdown):
//	c.Release(d, now)
//
// Per reply, per recipient (and per complaint when a feedback report
// arrives):
//
//	c.Observe(d.Egress, site, warmup.SignalDelivered, now) // or Deferral, Rate, Block, Complaint
//
// ParseSignal reads the signal words of kiln's reply classifier ("deferral",
// "rate", "block", "complaint"), so the caller can pass them through without
// this package importing the classifier. A pool is a [[pool]] name, or an
// egress name for that egress alone.
//
// Reserve counts at decision time rather than after the send, so that many
// workers deciding at once cannot overshoot a cap. A message that was offered
// and deferred keeps its count: the provider saw it.
//
// # Plans and days
//
// Each egress has a start date and a plan: daily caps per provider, one list
// per provider and a default list for every other site (config
// [[warmup.plan]], or the built-in "default", PROVIDERS.md §4a/§4d: 50 per
// large provider on day 1 to 4.1 million on day 42, half that for the
// others, no cap from day 43). Days begin at midnight in warmup.timezone. With
// warmup.days = "calendar" every day counts; with "sending" only days on
// which the egress sent to that site. A site the egress has never sent to
// starts at the egress's day (calendar: days since its start date; sending:
// the day it was set to, normally 1). An egress idle for longer than
// warmup.idle_restart starts again at day 1. A plan's caps never shrink;
// going back is adaptive control's job.
//
// Today's cap is spread over the sending window (warmup.window, default
// 08:00-20:00): at each hour boundary the pace is set to what is left today
// over the time left in the window, and a token bucket
// (golang.org/x/time/rate, burst of one second's worth) hands out the
// messages evenly, so a day never bursts at the window's start and unused
// capacity is spread over the hours that remain. Warm egresses and completed
// plans are bound only by their shaping rate.
//
// # Overflow
//
// A pool draws an egress for each message by weight (smooth weighted
// round-robin). With overflow "wait", a message the drawn egress cannot send
// now waits for it (RetryAt). With "spill", it goes through a warm egress of
// the pool (marked warm, or with a completed plan for that site) that can
// take it now; Decision.Spilled says so.
//
// # Priority
//
// Priorities run from 0 (normal) to MaxPriority. When a request is refused
// for capacity (cap, window, spread, rate), its priority class is recorded as
// waiting until its RetryAt plus two seconds; while a higher class is
// waiting, lower classes are refused with ReasonPriority. So when a cap
// binds, the next slot goes to the highest class that wants it, whatever the
// order in which the scheduler asks, and lower classes get capacity as soon
// as nobody above them is waiting.
//
// # Adaptive control
//
// Observe feeds per-(egress, site) sliding windows. A rule ([[warmup.rule]],
// or DefaultRules) fires when, within its window, its signal was seen at
// least Min times and at least Fraction of the attempts (complaints: of the
// deliveries). Actions: hold (today does not count toward the next plan day;
// back off: one connection at warmup.backoff_rate for warmup.backoff), step
// back (one plan day down now, then hold), pause (nothing to that site from
// that egress for the rule's cool-down, warmup.pause_step_back days down;
// then it resumes by itself, held for the rest of the day). Every change is
// an Event naming the rule and the signal. States: ramping, held, paused,
// warm.
//
// # Status and control
//
// Status and Plan return plain structs with JSON tags (the admin API serves
// them to "kiln warmup status" and "kiln warmup plan"); Pause, Resume and
// SetDay are the operator's controls.
//
// # Persistence
//
// The Controller owns the keys under "warmup/" in the shared store (see
// store.go). Counters are absolute values for a local day, written at most
// once a second and on Close; a crash loses at most the last second's
// reservations and never counts one twice. Live state is kept per (egress,
// site) in memory; keys idle for longer than any rule's window are reaped
// from memory and read again on next use, and records idle for longer than
// warmup.idle_restart are deleted.
package warmup
