package configs

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"kiln/dkim"
	"kiln/events/webhook"
	"kiln/internal/keyerr"
)

// Validate checks every value that decoding alone cannot, and returns all the
// problems found (joined), each a *keyerr.Error naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) { errs = append(errs, keyerr.New(key, format, a...)) }

	if strings.TrimSpace(c.Hostname) == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		add("hostname", "must be a host name without spaces")
	}
	if strings.TrimSpace(c.DataDir) == "" {
		add("data_dir", "must not be empty")
	}

	s := c.Submission
	if len(s.Listen) == 0 && len(s.ListenTLS) == 0 {
		add("submission.listen", "at least one of submission.listen and submission.listen_tls is needed")
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		add("submission.tls_cert", "tls_cert and tls_key go together")
	}
	positive(add, "submission.max_message_size", int64(s.MaxMessageSize))
	positive(add, "submission.max_recipients", int64(s.MaxRecipients))
	if s.MaxLineLength < 1000 {
		add("submission.max_line_length", "must be at least 1000 (RFC 5321 §4.5.3.1.6 allows text lines of 1000 octets)")
	}
	positive(add, "submission.read_timeout", int64(s.ReadTimeout))
	positive(add, "submission.write_timeout", int64(s.WriteTimeout))
	positive(add, "submission.session_timeout", int64(s.SessionTimeout))
	positive(add, "submission.max_connections", int64(s.MaxConnections))
	positive(add, "submission.max_connections_per_ip", int64(s.MaxConnectionsPerIP))
	positive(add, "submission.auth_failures", int64(s.AuthFailures))
	positive(add, "submission.auth_failure_window", int64(s.AuthFailureWindow))

	if c.Admin.Listen == "" {
		add("admin.listen", "must be a host:port")
	}
	if c.Admin.KeyHash != "" {
		if _, err := bcrypt.Cost([]byte(c.Admin.KeyHash)); err != nil {
			add("admin.key_hash", "is not a bcrypt hash (make one with \"kiln account hash\")")
		}
	}
	positive(add, "dns.timeout", int64(c.DNS.Timeout))

	d := c.Delivery
	if d.Port <= 0 || d.Port > 65535 {
		add("delivery.port", "must be a TCP port (1-65535)")
	}
	positive(add, "delivery.max_connections", int64(d.MaxConnections))
	positive(add, "delivery.max_connections_per_destination", int64(d.MaxConnectionsPerDestination))
	positive(add, "delivery.max_messages_per_connection", int64(d.MaxMessagesPerConnection))
	positive(add, "delivery.connect_timeout", int64(d.ConnectTimeout))
	positive(add, "delivery.idle_timeout", int64(d.IdleTimeout))
	if err := checkTLSMode(d.TLS, false); err != nil {
		add("delivery.tls", "%v", err)
	}
	for i, dom := range d.RequireTLS {
		if !validDomain(dom) {
			add(fmt.Sprintf("delivery.require_tls[%d]", i), "%q is not a domain", dom)
		}
	}

	q := c.Queue
	positive(add, "queue.max_age", int64(q.MaxAge))
	positive(add, "queue.retry_first", int64(q.RetryFirst))
	if q.RetryMax < q.RetryFirst {
		add("queue.retry_max", "must not be shorter than queue.retry_first")
	}
	positive(add, "queue.gc_interval", int64(q.GCInterval))
	if q.MinFreeDisk != 0 && q.MinFreeDisk < MinFreeDiskFloor {
		add("queue.min_free_disk", "must be 0 (no guard) or at least 64MiB: the store's files are mapped into memory and fill their room after the guard has stopped new mail, and a write that finds the disk full crashes it")
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		add("log.format", "must be text or json, not %q", c.Log.Format)
	}

	seenRoute := map[string]int{}
	for i, r := range c.Routes {
		key := fmt.Sprintf("route[%d]", i)
		dom := strings.ToLower(r.Domain)
		switch {
		case dom == "":
			add(key+".domain", "is required (a domain, \"*.domain\" or \"*\")")
		case dom != "*" && !validDomain(strings.TrimPrefix(dom, "*.")):
			add(key+".domain", "%q is not a domain, \"*.domain\" or \"*\"", r.Domain)
		}
		if j, dup := seenRoute[dom]; dup && dom != "" {
			add(key+".domain", "%q is already routed by route[%d]", r.Domain, j)
		}
		seenRoute[dom] = i
		if r.Smarthost == "" {
			add(key+".smarthost", "is required (host:port)")
		}
		if err := checkTLSMode(r.TLS, true); err != nil {
			add(key+".tls", "%v", err)
		}
		if (r.Username == "") != (r.Password == "") {
			add(key+".username", "username and password go together")
		}
	}

	if b := c.Bounce; b.Domain != "" || len(b.Listen) > 0 {
		if !validDomain(b.Domain) {
			add("bounce.domain", "must be the domain bounce reports are sent to (its MX points at kiln's bounce listener)")
		}
		if b.Secret != "" && len(b.Secret) < 16 {
			add("bounce.secret", "must be at least 16 characters (or empty: kiln makes one)")
		}
	}
	positive(add, "bounce.max_size", int64(c.Bounce.MaxSize))
	if u := c.Unsubscribe; u.URL != "" || u.Listen != "" {
		if !strings.HasPrefix(u.URL, "https://") && !strings.HasPrefix(u.URL, "http://") {
			add("unsubscribe.url", "must be the public http(s) base URL of the unsubscribe endpoint")
		}
		if u.Listen == "" {
			add("unsubscribe.listen", "is needed to serve the links (host:port)")
		}
		if u.Secret != "" && len(u.Secret) < 16 {
			add("unsubscribe.secret", "must be at least 16 characters (or empty: kiln makes one)")
		}
	}
	positive(add, "events.retention", int64(c.Events.Retention))
	if err := c.Classify.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, keyerr.Under("classify", e))
		}
	}
	if err := c.Suppression.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, keyerr.Under("suppression", e))
		}
	}
	errs = append(errs, unjoin(webhook.ValidateAll(c.Webhooks))...)
	accounts := map[string]bool{}
	for _, a := range c.Accounts {
		accounts[a.Name] = true
	}
	for i, wh := range c.Webhooks {
		if wh.Account != "" && !accounts[wh.Account] {
			add(fmt.Sprintf("webhook[%d].account", i), "%q is not an [[account]]", wh.Account)
		}
	}
	errs = append(errs, unjoin(dkim.ValidateKeys(c.DKIM))...)
	if err := c.Signing.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, keyerr.Under("signing", e))
		}
	}
	if err := c.Signing.CheckMaxAge(c.Queue.MaxAge.D()); err != nil {
		errs = append(errs, keyerr.Under("signing", err))
	}
	errs = append(errs, unjoin(c.Config.Validate())...)
	pools := map[string]bool{}
	for _, p := range c.Pool {
		pools[p.Name] = true
	}
	for _, e := range c.Egress {
		pools[e.Name] = true
	}
	dkimDomains := map[string]bool{}
	for _, k := range c.DKIM {
		dkimDomains[strings.ToLower(k.Domain)] = true
	}

	seenAccount := map[string]int{}
	for i, a := range c.Accounts {
		key := fmt.Sprintf("account[%d]", i)
		if a.Name == "" || strings.ContainsAny(a.Name, " \t\r\n:") {
			add(key+".name", "is required and may not contain spaces or ':'")
		} else if j, dup := seenAccount[a.Name]; dup {
			add(key+".name", "%q is already the name of account[%d]", a.Name, j)
		}
		seenAccount[a.Name] = i
		if _, err := bcrypt.Cost([]byte(a.PasswordHash)); err != nil {
			add(key+".password_hash", "is not a bcrypt hash (make one with \"kiln account hash\")")
		}
		if a.APIKeyHash != "" {
			if _, err := bcrypt.Cost([]byte(a.APIKeyHash)); err != nil {
				add(key+".api_key_hash", "is not a bcrypt hash (make one with \"kiln account hash\")")
			}
		}
		if len(a.SenderDomains) == 0 {
			add(key+".sender_domains", "needs at least one domain the account may send from")
		}
		for j, dom := range a.SenderDomains {
			if !validDomain(dom) {
				add(fmt.Sprintf("%s.sender_domains[%d]", key, j), "%q is not a domain", dom)
			}
		}
		if a.Pool != "" && !pools[a.Pool] {
			add(key+".pool", "%q is neither a [[pool]] nor an [[egress]]", a.Pool)
		}
		switch a.DKIMUnaligned {
		case "", "unsigned", "refuse":
		case "default_domain":
			if a.DKIMDomain == "" {
				add(key+".dkim_domain", "dkim_unaligned = \"default_domain\" needs dkim_domain")
			}
		default:
			add(key+".dkim_unaligned", "must be default_domain, refuse or unsigned, not %q", a.DKIMUnaligned)
		}
		if a.Unsubscribe && c.Unsubscribe.URL == "" {
			add(key+".unsubscribe", "needs [unsubscribe] url and listen")
		}
		if a.DKIMDomain != "" && !dkimDomains[strings.ToLower(a.DKIMDomain)] {
			add(key+".dkim_domain", "no [[dkim]] key is configured for %q", a.DKIMDomain)
		}
	}
	return errors.Join(errs...)
}

func positive(add func(string, string, ...any), key string, v int64) {
	if v <= 0 {
		add(key, "must be greater than zero")
	}
}

func checkTLSMode(mode string, emptyOK bool) error {
	switch mode {
	case "opportunistic", "required", "none":
		return nil
	case "":
		if emptyOK {
			return nil
		}
	}
	return fmt.Errorf("must be opportunistic, required or none, not %q", mode)
}

// validDomain accepts a DNS name of letters, digits, hyphens and dots, at most
// 253 octets with labels of at most 63 (RFC 1035 §2.3.4). Internationalised
// names must be written in their A-label (xn--) form.
func validDomain(d string) bool {
	d = strings.TrimSuffix(d, ".")
	if d == "" || len(d) > 253 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
