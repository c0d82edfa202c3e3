// Package configs holds kiln's configuration: the documented example file
// (kiln.toml, which is also the reference for every key and its default), the
// types it decodes into, and the loader that rejects unknown keys and bad values
// naming the file, the line and the key.
package configs

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"kiln/dkim"
	"kiln/events/webhook"
	"kiln/internal/keyerr"
	"kiln/policy"
	"kiln/policy/suppress"
	"kiln/warmup"
)

// Config is the whole configuration. Section types owned by other packages are
// added to it as those packages grow; every field carries the key name used in
// the file.
type Config struct {
	// Hostname is kiln's own name: the EHLO name when no egress names one, the
	// greeting name, and the host in Received headers and Message-IDs.
	Hostname string `toml:"hostname"`
	// DataDir holds the queue and every other store.
	DataDir string `toml:"data_dir"`

	Submission Submission `toml:"submission"`
	Admin      Admin      `toml:"admin"`
	DNS        DNS        `toml:"dns"`
	Delivery   Delivery   `toml:"delivery"`
	Queue      Queue      `toml:"queue"`
	Log        Log        `toml:"log"`
	Routes     []Route    `toml:"route"`
	Accounts   []Account  `toml:"account"`

	// Bounce is the return path kiln sends with and the listener that
	// takes bounce reports back.
	Bounce Bounce `toml:"bounce"`
	// Events keeps the event history for the API.
	Events Events `toml:"events"`
	// Unsubscribe serves one-click unsubscribe links.
	Unsubscribe Unsubscribe `toml:"unsubscribe"`
	// Webhooks post events to the account's endpoints.
	Webhooks []webhook.Config `toml:"webhook"`
	// Classify extends or overrides the reply classification rules.
	Classify policy.ClassifyConfig `toml:"classify"`
	// Suppression is the suppression list, its rules and the per-account
	// circuit breaker.
	Suppression suppress.Config `toml:"suppression"`

	// DKIM keys ([[dkim]]) and signing options ([signing]).
	DKIM    []dkim.KeyConfig   `toml:"dkim"`
	Signing dkim.SigningConfig `toml:"signing"`

	// Egress addresses, pools, warm-up and shaping: [[egress]], [[pool]],
	// [warmup], [[provider]], [[shaping]].
	warmup.Config

	// File is the path the config was read from, "" for the embedded defaults.
	File string `toml:"-"`
}

// Submission is where applications hand kiln their mail.
type Submission struct {
	// Listen are plain SMTP listeners offering STARTTLS.
	Listen []HostPort `toml:"listen"`
	// ListenTLS are implicit-TLS listeners (RFC 8314, port 465 style).
	ListenTLS []HostPort `toml:"listen_tls"`
	// TrustedNetworks may relay without AUTH.
	TrustedNetworks []Prefix `toml:"trusted_networks"`
	// TLSCert and TLSKey are PEM files; with none, a self-signed certificate
	// for Hostname is made at start so STARTTLS works out of the box.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// MaxMessageSize above which DATA is refused with 552 5.3.4.
	MaxMessageSize Size `toml:"max_message_size"`
	// MaxRecipients per message; more get 452 4.5.3.
	MaxRecipients int `toml:"max_recipients"`
	// MaxLineLength of a command or a message line, CRLF included.
	MaxLineLength int `toml:"max_line_length"`
	// ReadTimeout and WriteTimeout bound each command and reply.
	ReadTimeout  Duration `toml:"read_timeout"`
	WriteTimeout Duration `toml:"write_timeout"`
	// SessionTimeout bounds a whole connection, however active.
	SessionTimeout Duration `toml:"session_timeout"`
	// MaxConnections in total and per client address.
	MaxConnections      int `toml:"max_connections"`
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// AuthFailures failed AUTH attempts per client address within
	// AuthFailureWindow, after which AUTH is refused for the rest of it.
	AuthFailures      int      `toml:"auth_failures"`
	AuthFailureWindow Duration `toml:"auth_failure_window"`
}

// Admin is the HTTP listener for the admin API, metrics and dashboard.
type Admin struct {
	Listen HostPort `toml:"listen"`
	// KeyHash is the bcrypt hash of the admin key ("kiln account hash"
	// makes one). With it, every request needs "Authorization: Bearer
	// <key>" (the CLI's --key or $KILN_ADMIN_KEY) and the dashboard asks for
	// the key. Without it, only clients on loopback are served.
	KeyHash string `toml:"key_hash"`
}

// DNS is the resolver used for MX lookups and checks.
type DNS struct {
	// Servers as host:port; empty means the system's resolvers
	// (/etc/resolv.conf).
	Servers []HostPort `toml:"servers"`
	Timeout Duration   `toml:"timeout"`
}

// Delivery is how kiln talks to remote mail exchangers.
type Delivery struct {
	// Port of remote SMTP servers.
	Port int `toml:"port"`
	// MaxConnections open at once, in total and per destination.
	MaxConnections               int `toml:"max_connections"`
	MaxConnectionsPerDestination int `toml:"max_connections_per_destination"`
	// MaxMessagesPerConnection before the connection is closed and a new one
	// opened.
	MaxMessagesPerConnection int `toml:"max_messages_per_connection"`
	// ConnectTimeout for the TCP connection; IdleTimeout keeps a connection
	// with nothing to send open for reuse.
	ConnectTimeout Duration `toml:"connect_timeout"`
	IdleTimeout    Duration `toml:"idle_timeout"`
	// TLS is "opportunistic" (STARTTLS when offered, plaintext when the
	// handshake fails), "required" (defer when TLS cannot be had) or "none".
	TLS string `toml:"tls"`
	// RequireTLS lists recipient domains whose mail must go over TLS.
	RequireTLS []string `toml:"require_tls"`
}

// Queue is the durable store and its retry policy.
type Queue struct {
	// MaxAge after which a message still undelivered is bounced as expired.
	MaxAge Duration `toml:"max_age"`
	// RetryFirst is the wait after the first temporary failure; each further
	// failure doubles it up to RetryMax.
	RetryFirst Duration `toml:"retry_first"`
	RetryMax   Duration `toml:"retry_max"`
	// MinFreeDisk: below this much free space on the data disk, new mail is
	// refused with 452 4.3.1 (the store would crash on a full disk). 0 turns
	// the guard off; otherwise at least MinFreeDiskFloor.
	MinFreeDisk Size `toml:"min_free_disk"`
	// GCInterval is how often the store's value log is garbage collected.
	GCInterval Duration `toml:"gc_interval"`
}

// MinFreeDiskFloor is the least min_free_disk kiln takes. The store writes
// through memory-mapped files created at full size and filled later: the
// active write-ahead log (32 MiB), the table a memtable flushes to (16 MiB)
// and compaction's output. That room must still be free after the guard has
// stopped new mail, since deliveries and events keep writing.
const MinFreeDiskFloor = Size(64 << 20)

// Log is kiln's operational log and event stream.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `toml:"level"`
	// Format is text or json.
	Format string `toml:"format"`
	// Events is the file that receives one JSON line per message state change,
	// relative to data_dir; "-" is standard output, "" turns it off.
	Events string `toml:"events"`
}

// Bounce configures VERP return paths and the bounce listener.
type Bounce struct {
	// Domain, when set, turns VERP on: each recipient's copy is sent with
	// a return path b-<token>@Domain naming the message and the recipient,
	// signed with Secret, so a bounce report that arrives later is matched
	// to its recipient and a forged one is refused. Its MX must point at
	// kiln's bounce listener.
	Domain string `toml:"domain"`
	// Listen are SMTP listeners for bounce reports (DSNs, complaint
	// reports) addressed to Domain. They relay nothing.
	Listen []HostPort `toml:"listen"`
	// Secret keys the tokens' HMAC; at least 16 characters. Empty: kiln
	// makes one at first start and keeps it in its store.
	Secret string `toml:"secret"`
	// MaxSize of a bounce report; larger ones are refused (552 5.3.4).
	MaxSize Size `toml:"max_size"`
}

// Unsubscribe configures one-click unsubscribe (RFC 8058).
type Unsubscribe struct {
	// URL is the public base URL of kiln's unsubscribe endpoint, e.g.
	// "https://mail.example.com" (usually a TLS proxy in front of Listen);
	// links go to URL/unsubscribe/<token>.
	URL string `toml:"url"`
	// Listen is the HTTP listener for the endpoint (host:port).
	Listen HostPort `toml:"listen"`
	// Secret keys the tokens' HMAC, at least 16 characters. Empty: kiln
	// makes one at first start and keeps it in its store.
	Secret string `toml:"secret"`
}

// Events configures the event history.
type Events struct {
	// Retention is how long events are kept for the API and for matching
	// late bounces to their recipient.
	Retention Duration `toml:"retention"`
}

// Route sends a domain's mail to a fixed next hop instead of its MX.
type Route struct {
	// Domain is a recipient domain, "*.example.com" for its subdomains, or "*"
	// for everything.
	Domain string `toml:"domain"`
	// Smarthost is host:port.
	Smarthost HostPort `toml:"smarthost"`
	// TLS overrides delivery.tls for this route.
	TLS string `toml:"tls"`
	// Username and Password authenticate to the smarthost (AUTH PLAIN, over
	// TLS only).
	Username string `toml:"username"`
	Password string `toml:"password"`
}

// Account is an application allowed to send through kiln.
type Account struct {
	Name string `toml:"name"`
	// PasswordHash is a bcrypt hash ("kiln account hash" makes one).
	PasswordHash string `toml:"password_hash"`
	// SenderDomains the account may use in the envelope sender and From.
	SenderDomains []string `toml:"sender_domains"`
	// BounceNotices sends an RFC 3464 notice to the envelope sender when a
	// recipient fails permanently.
	BounceNotices *bool `toml:"bounce_notices"`
	// CheckRecipientDomains refuses, at RCPT time, a recipient whose domain
	// provably cannot receive mail (it does not exist, has a null MX, or no
	// address at all), using the cached resolver, so such addresses never
	// become hard bounces against the sending IP. A DNS failure accepts.
	CheckRecipientDomains bool `toml:"check_recipient_domains"`
	// Unsubscribe adds RFC 8058 one-click unsubscribe headers (a signed
	// link, and a mailto when [bounce] domain is set) to the account's
	// messages that have a single recipient and no List-Unsubscribe of
	// their own; a click suppresses the address for this account.
	Unsubscribe bool `toml:"unsubscribe"`
	// APIKeyHash is the bcrypt hash of the account's key for the HTTP API
	// ("kiln account hash" makes one); empty: the account has no API access.
	APIKeyHash string `toml:"api_key_hash"`
	// Pool is the [[pool]] (or a single [[egress]] by name) the account's
	// mail leaves through; empty: every configured egress, or the
	// system's default source address when there is none.
	Pool string `toml:"pool"`
	// DKIMDomain is the account's own signing domain, used when no key
	// aligns with a message's From domain and DKIMUnaligned says so.
	DKIMDomain string `toml:"dkim_domain"`
	// DKIMUnaligned says what to do with a message whose From domain no
	// [[dkim]] key aligns with: "default_domain" (sign with dkim_domain),
	// "refuse" (550 5.7.1 at submission), or "unsigned" (send it unsigned
	// with a warning event).
	DKIMUnaligned string `toml:"dkim_unaligned"`
}

// Notices reports whether bounce notices are on (the default).
func (a Account) Notices() bool { return a.BounceNotices == nil || *a.BounceNotices }

// Default returns the configuration used when kiln runs without a file: a
// newcomer can relay through 127.0.0.1:2525 from loopback at once.
func Default() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return &Config{
		Hostname: host,
		DataDir:  "./kiln-data",
		Submission: Submission{
			Listen:              []HostPort{"127.0.0.1:2525"},
			ListenTLS:           []HostPort{},
			TrustedNetworks:     []Prefix{mustPrefix("127.0.0.0/8"), mustPrefix("::1/128")},
			MaxMessageSize:      Size(25 << 20),
			MaxRecipients:       1000,
			MaxLineLength:       2000,
			ReadTimeout:         Duration(5 * time.Minute),
			WriteTimeout:        Duration(time.Minute),
			SessionTimeout:      Duration(30 * time.Minute),
			MaxConnections:      2000,
			MaxConnectionsPerIP: 200,
			AuthFailures:        5,
			AuthFailureWindow:   Duration(5 * time.Minute),
		},
		Admin: Admin{Listen: "127.0.0.1:8025"},
		DNS:   DNS{Servers: []HostPort{}, Timeout: Duration(5 * time.Second)},
		Delivery: Delivery{
			Port:                         25,
			MaxConnections:               1000,
			MaxConnectionsPerDestination: 20,
			MaxMessagesPerConnection:     100,
			ConnectTimeout:               Duration(30 * time.Second),
			IdleTimeout:                  Duration(5 * time.Second),
			TLS:                          "opportunistic",
			RequireTLS:                   []string{},
		},
		Queue: Queue{
			MaxAge:      Duration(5 * 24 * time.Hour),
			RetryFirst:  Duration(5 * time.Minute),
			RetryMax:    Duration(4 * time.Hour),
			MinFreeDisk: Size(512 << 20),
			GCInterval:  Duration(5 * time.Minute),
		},
		Log:         Log{Level: "info", Format: "text", Events: "events.log"},
		Bounce:      Bounce{Listen: []HostPort{}, MaxSize: Size(4 << 20)},
		Events:      Events{Retention: Duration(30 * 24 * time.Hour)},
		Suppression: suppress.DefaultConfig(),
		Webhooks:    nil,
	}
}

func mustPrefix(s string) Prefix {
	var p Prefix
	if err := p.UnmarshalText([]byte(s)); err != nil {
		panic(err)
	}
	return p
}

// Error is a problem in a config file, placed at its line and key.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Load reads and checks the config file at path. Keys left out keep their
// defaults. The error, if any, is an *Error (or several joined) naming the
// file, line and key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data as the config file named name.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	c.File = name
	c.Classify.BaseDir = filepath.Dir(name)
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return nil, decodeError(name, err)
	}
	if err := c.Validate(); err != nil {
		return nil, placeErrors(name, data, err)
	}
	if err := c.checkFiles(); err != nil {
		return nil, placeErrors(name, data, err)
	}
	return c, nil
}

func decodeError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var errs []error
		for _, e := range strict.Errors {
			line, _ := e.Position()
			errs = append(errs, &Error{File: name, Line: line, Key: strings.Join(e.Key(), "."), Msg: "unknown key"})
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		return &Error{File: name, Line: line, Key: strings.Join(de.Key(), "."), Msg: msg}
	}
	return &Error{File: name, Msg: err.Error()}
}

// placeErrors turns the *keyerr.Error values in err into *Error values with
// the line each key was written on.
func placeErrors(name string, data []byte, err error) error {
	lines := keyLines(data)
	var out []error
	for _, e := range unjoin(err) {
		var ke *keyerr.Error
		if errors.As(e, &ke) {
			out = append(out, &Error{File: name, Line: lineOf(lines, ke.Key), Key: ke.Key, Msg: ke.Msg})
		} else {
			out = append(out, &Error{File: name, Msg: e.Error()})
		}
	}
	return errors.Join(out...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var all []error
		for _, e := range j.Unwrap() {
			all = append(all, unjoin(e)...)
		}
		return all
	}
	return []error{err}
}

// checkFiles opens the files the config names (DKIM keys, the TLS
// certificate), so that a missing or wrong file stops kiln at start with the
// key that names it, not at the first message.
func (c *Config) checkFiles() error {
	var errs []error
	if _, err := dkim.NewSigner(c.DKIM, c.Signing); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	if c.Submission.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(c.Submission.TLSCert, c.Submission.TLSKey); err != nil {
			errs = append(errs, keyerr.New("submission.tls_cert", "%s / %s: %v", c.Submission.TLSCert, c.Submission.TLSKey, err))
		}
	}
	return errors.Join(errs...)
}

// Trusted reports whether a client address is in the trusted networks.
func (s Submission) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.TrustedNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
