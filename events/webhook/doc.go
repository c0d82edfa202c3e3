// Package webhook POSTs kiln's events to the HTTP endpoints of the
// applications that send through it, so their lists stay clean without
// polling: batched, signed, retried from a durable outbox until acknowledged.
//
// # Endpoints
//
// Each [[webhook]] entry of the config (Config) names an account ("" for
// every account), a URL, the events it wants and a secret. An event goes to
// every endpoint of its account and to every endpoint for all accounts whose
// event list holds its name. URLs are configured by the operator only; they
// are not input from accounts over the API, and a URL must be http or https.
// Redirects are not followed.
//
// # Payload
//
// A POST carries a JSON array of events (Payload), at most batch_size of
// them, in the order kiln emitted them:
//
//	[{"event":"bounce","kiln_type":"bounced","event_id":"9f1c0e5e2b7a4d08a3c1f0b2d4e6a8c0",
//	  "timestamp":1741003200,"time":"2025-03-03T12:00:00.123456789Z",
//	  "queue_id":"0QZ8T4K2","message_id":"<42.spring@shop.example>","account":"shop",
//	  "from":"news@shop.example","recipient":"ann@example.net",
//	  "bounce_type":"hard","reason":"userunknown","rule":"generic.userunknown",
//	  "code":550,"status":"5.1.1","reply":"550 5.1.1 <ann@example.net>: user unknown",
//	  "attempt":1,"remote_host":"mx.example.net","remote_ip":"192.0.2.25","tls":"TLS1.3",
//	  "tags":["spring-sale"],"metadata":{"campaign":"42"}}]
//
// Event names follow what list managers already ingest from SendGrid and
// Mailgun. kiln's event types map as follows:
//
//	kiln type     payload event   notes
//	received      processed       not sent unless chosen: one per accepted message
//	delivered     delivered
//	deferred      deferred        next_attempt says when kiln retries
//	bounced       bounce          bounce_type "hard" (suppress the address) or "soft"
//	expired       bounce          bounce_type "soft", reason "expired": retried until the queue's max age
//	dropped       dropped         detail says why
//	spamreport    spamreport
//	unsubscribe   unsubscribe
//	held          held
//	suppressed    suppressed      kiln added the address to its suppression list
//
// Fields that do not apply are left out. event_id is unique per event and is
// the same in every retry of it: receivers deduplicate on it.
//
// # Signature
//
// Every POST has the headers
//
//	Kiln-Timestamp: 1741003260
//	Kiln-Signature: t=1741003260,v1=<hex HMAC-SHA256(secret, "1741003260." + body)>
//
// A receiver recomputes the HMAC over the raw body, compares in constant time
// and refuses a timestamp far from its clock (replays); Verify does all three.
//
// # Delivery
//
// Handle (the events.Sink) only buffers the event. A writer puts the buffered
// events into the endpoint's outbox in badger every 100ms, one synced
// transaction for all of them; kiln's database is shared, and this package
// owns the "wh/" key prefix:
//
//	wh/o/<endpoint id>/<seq>   8-byte enqueue time (unix ns), then the payload JSON
//
// The endpoint id is derived from its account and URL, so changing either
// starts a new outbox; at start, the outbox of an endpoint no longer
// configured is discarded with a warning. <seq> is big-endian and grows, so the
// outbox is read in order.
//
// One sender per endpoint POSTs the head of its outbox: up to batch_size
// events, or fewer once the oldest has waited batch_wait. A 2xx deletes them;
// anything else (an error status, a redirect, a timeout, a refused
// connection) is retried after Backoff, with the same head, so a failed batch
// holds back the events behind it for that endpoint only, and an endpoint
// receives its events in order. Events still failing max_age (default 3
// days) after they entered the outbox are given up, counted and logged.
//
// # Guarantees
//
// At-least-once. An event in the outbox survives a restart or a crash and is
// sent after it. A batch whose POST was in flight when kiln stopped (the
// receiver may have taken it, but kiln never saw the 2xx) is sent again, with
// the same event ids. Events not yet in the outbox are lost in a crash: at
// most the last 100ms. Memory is bounded: when the disk cannot keep up and
// 100,000 events wait, new ones are dropped, counted (Stats) and logged; an
// endpoint's outbox is bounded by max_queued the same way.
package webhook
