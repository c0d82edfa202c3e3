// Package httpapi is kiln's JSON API for the applications that send through
// it and for operators: send a message, look up a message's state and
// history, query events, and manage an account's suppression list. It is
// served on the admin listener beside the operator's endpoints, which it can
// guard too (Authenticate, RequireAdmin, RequireAny), and it serves the
// OpenAPI document of the whole listener.
//
// The package does not know the daemon: it is given plain functions and
// small interfaces (Deps), so the daemon can import it.
//
// # Mounting
//
// The API checks keys itself, so it is mounted beside the admin routes'
// guard, not behind it; Mount registers its paths (Paths) on the listener's
// root mux, and the suppression list's handler is passed in to be served
// through the API's keys:
//
//	sh := suppress.Handler(list, suppress.HandlerOptions{...})
//	api := httpapi.New(httpapi.Deps{Submit: submit, Queue: queueStore, Events: eventStore,
//		Suppressions: sh, Accounts: cfg.Accounts, AdminKeyHash: cfg.Admin.KeyHash,
//		Clock: clk, Log: log, MaxMessageBytes: int64(cfg.Submission.MaxMessageSize)})
//	api.Mount(root)                   // /api/v1/messages..., events, suppressions..., openapi.json
//	root.Handle("/", guard(adminMux)) // queue, warm-up, breakers, metrics (api.RequireAdmin fits)
//
// Submit is the daemon's submission path adapted to Submission and
// SubmitError.
//
// # Keys
//
// A request carries a key as "Authorization: Bearer <key>". The admin key is
// whatever the operator hashed into [admin] key_hash. An account's key has
// the shape
//
//	kiln_<account>_<secret>
//
// with a secret of at least 32 characters and no "_", for example 32 hex
// digits, and the whole key no longer than 72 bytes (bcrypt reads no more).
// The operator makes one and hashes the whole key into the account's
// api_key_hash:
//
//	key="kiln_shop_$(openssl rand -hex 16)"
//	printf '%s\n' "$key" | kiln account hash      # -> api_key_hash = "$2a$10$..."
//
// (NewKey makes one in Go.) The account named in the key says which hash to
// try, so a request costs one bcrypt comparison, not one per account. A key
// naming no account with an API key is checked against the admin key. A key
// that passed is remembered by its SHA-256 (at most 1024 of them), so only
// its first use pays for bcrypt; wrong keys are never remembered, and at
// most a few comparisons run at once, so a flood of wrong keys cannot take
// every core. A missing or wrong key is answered 401 and logged with the
// client's address and the reason, never with the key.
//
// With no [admin] key_hash, a loopback client is the admin, as on the rest
// of the admin listener, unless it sends an account's key: that key is
// checked, so a mistyped one is refused instead of quietly given the
// admin's reach. Other clients need an account's key.
//
// # Who sees what
//
// The admin sees everything and may send as the operator (no "account") or
// on behalf of an account (naming it). An account key sends for its own
// account only, and sees only its account's messages, events and
// suppressions; another account's message id is answered 404, exactly like
// an id that does not exist, so ids cannot be probed.
//
// # Errors
//
// Every error is {"error": {"code", "message", "field"?}}: field names the
// part of the request at fault ("to[1]", "headers.X-Campaign", "limit").
// A refusal by the submission checks also carries "smtp_code" and "enhanced",
// the reply SMTP submission would have given. Codes:
//
//	400 malformed_json, invalid_type, unknown_field, missing_field, invalid_value,
//	    header_injection, unknown_account, too_many_recipients
//	401 unauthorized   403 forbidden   404 not_found   405 method_not_allowed
//	413 too_large (with "limit", in bytes)   415 unsupported_media_type
//	422 rejected (a permanent SMTP refusal: 5xx)
//	503 unavailable (a temporary refusal: 4xx; Retry-After says when to try again)
//	500 store, internal
//
// # Endpoints
//
//	POST /api/v1/messages          send; 202 {"id", "message_id"} once the message is durable
//	GET  /api/v1/messages/{id}     MessageStatus: state per recipient, and the events
//	GET  /api/v1/events            ?type=&recipient=&id=&message_id=&account=&since=&until=&cursor=&limit=
//	                               {"events": [...], "next": "CURSOR"}, newest first
//	*    /api/v1/suppressions...   the suppression list (see kiln/policy/suppress), in
//	                               the account's scope for an account key
//	GET  /api/v1/openapi.json      the OpenAPI 3.1 document (no key needed)
//
// A message is sent either raw, {"from", "to": [...], "raw": "<RFC 5322
// message>"}, or built from fields: from (envelope sender and From field;
// "Name <addr>" is fine), to, cc, bcc (envelope only), reply_to, subject,
// text, html, headers (extra fields), and for both forms tags, metadata,
// priority (0-9) and, for the admin, account. The built message is
// text/plain, text/html or multipart/alternative, with RFC 2047 encoded
// words for non-ASCII header text, 7bit, quoted-printable or base64 bodies as
// suits each, a Date and a Message-ID. A CR or LF in anything that becomes
// a header field is refused (header_injection), naming the field.
package httpapi
