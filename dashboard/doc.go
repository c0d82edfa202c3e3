// Package dashboard is the operator's web UI: an overview of delivered,
// deferred and bounced mail over time, the queues by provider and domain,
// warm-up progress (cap against sent per day, state, last signal), suppression
// search and removal, and message lookup. The pages are plain HTML, CSS and
// JavaScript embedded in the binary; the charts are SVG drawn by the page's own
// script. Nothing is fetched from anywhere but kiln.
//
// # Mounting
//
// New returns one http.Handler for two path trees, both mounted outside the
// admin API's bearer check, because the handler does its own (see below):
//
//	st, _ := stats.New(db, stats.Options{Clock: clk, Warmup: warm})
//	bus.Subscribe(st)
//	h := dashboard.New(dashboard.Sources{Stats: st, Warmup: warm, Events: eventStore,
//		Queue: queueStore, Suppressions: dashboard.SuppressList(list, clk), Clock: clk},
//		dashboard.Options{Authorize: isAdminKey})
//	mux.Handle("/dashboard/", h)
//	mux.Handle("/api/v1/dashboard/", h)
//
// The pages live under /dashboard/ (overview, queues, warmup, suppressions,
// messages, login, static/...), their JSON under /api/v1/dashboard/:
//
//	GET  session                 the session's CSRF token, the page's poll interval
//	GET  overview?range=6h       delivered/deferred/bounced series, totals, top reasons and sites, queue size
//	GET  series?type=&by=&value=&range=|since=&until=&step=   one statistics series
//	GET  queues                  queue size, held, waiting by lane and site, pending by domain
//	GET  warmup                  warm-up status with each (egress, site)'s days: recorded, today, planned
//	GET  suppressions?q=&account=&cursor=&limit=
//	POST suppressions/remove     {"account", "address"}
//	GET  messages?id= | recipient= | message_id= [&cursor=]
//
// Errors have the admin API's shape: {"error": {"code", "message"}}.
//
// # Sources
//
// The handler reads kiln through small interfaces (Sources), so that tests
// use fakes: the statistics aggregator (events/stats), the warm-up controller,
// the event store, the queue and the suppression list. Every endpoint answers
// from an index or an aggregate: statistics are in memory, message lookups walk
// the event store's indexes, and the queue's counts, which the queue can only
// give by counting keys, are taken at most once per QueueRefresh by one
// goroutine, whatever the number of viewers; a page shows how old they are.
//
// # Login and CSRF
//
// Every request under /api/v1/dashboard/ and every page but the login page
// needs the admin key, given one of two ways:
//
//   - "Authorization: Bearer <key>", as for the rest of the admin API (scripts,
//     curl). Such requests carry no ambient credential, so they need no CSRF
//     token.
//   - A session cookie. The login page posts the key in a form; on success the
//     handler sets "kiln_session", a random 256-bit token, HttpOnly,
//     SameSite=Strict, Path=/, Secure when the request came over TLS (or
//     Options.SecureCookie), and kept server-side (hashed) with its expiry.
//     Sessions end after SessionTTL, at logout, and when kiln restarts.
//
// A state-changing request on a session (removing a suppression, logging out)
// must also carry the session's CSRF token in the X-Kiln-CSRF header; the page
// reads it from GET /api/v1/dashboard/session. Independently of the token, an
// unsafe request whose Origin header names another origin, or whose
// Sec-Fetch-Site says cross-site, is refused, and SameSite=Strict keeps the
// cookie off cross-site requests in the first place. The login form itself is
// checked the same way, so no other site can log a browser in. Failed logins
// are rate-limited and logged without the key. Pages are served with a
// Content-Security-Policy that allows scripts, styles and connections from
// kiln only, and forbids framing.
package dashboard
