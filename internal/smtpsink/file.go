package smtpsink

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// File is a sink rules file: a small TOML document (configs/sink.toml is
// the documented example). Load and Parse check it completely; Config turns
// it into a server's Config.
type File struct {
	Path string `toml:"-"`

	Listen         []string `toml:"listen"`
	ListenTLS      []string `toml:"listen_tls"`
	Hostname       string   `toml:"hostname"`
	Seed           uint64   `toml:"seed"`
	Latency        Duration `toml:"latency"`
	MaxMessageSize int64    `toml:"max_message_size"`
	MaxRecipients  int      `toml:"max_recipients"`
	SMTPUTF8       bool     `toml:"smtputf8"`
	ReadTimeout    Duration `toml:"read_timeout"`
	WriteTimeout   Duration `toml:"write_timeout"`

	TLS      FileTLS        `toml:"tls"`
	Auth     FileAuth       `toml:"auth"`
	Output   FileOutput     `toml:"output"`
	Reply    []FileRule     `toml:"reply"`
	Throttle []FileThrottle `toml:"throttle"`

	cert *tls.Certificate
}

// FileTLS is the [tls] section.
type FileTLS struct {
	Mode string `toml:"mode"` // on (default), off, broken
	Cert string `toml:"cert"` // PEM certificate chain; empty: self-signed
	Key  string `toml:"key"`  // PEM private key
}

// FileAuth is the [auth] section.
type FileAuth struct {
	Users     map[string]string `toml:"users"`
	Plaintext bool              `toml:"plaintext"`
}

// FileOutput is the [output] section: what the sink reports and keeps.
type FileOutput struct {
	Every        Duration `toml:"every"`         // counters printed this often; 0: at exit only
	CountersFile string   `toml:"counters_file"` // JSON counters, rewritten at every report
	LogFile      string   `toml:"log_file"`      // one JSON line per message
	SaveDir      string   `toml:"save_dir"`      // accepted messages, one file each
}

// FileRule is one [[reply]] entry: a Rule.
type FileRule struct {
	Stage     string   `toml:"stage"`
	Match     string   `toml:"match"`
	Code      int      `toml:"code"`
	Enhanced  string   `toml:"enhanced"`
	Text      string   `toml:"text"`
	Delay     Duration `toml:"delay"`
	Drop      bool     `toml:"drop"`
	DropAfter int64    `toml:"drop_after"`
	Times     int      `toml:"times"`
	Share     float64  `toml:"share"`
}

// FileThrottle is one [[throttle]] entry: a Throttle, with "as" naming a
// provider whose reply it gives.
type FileThrottle struct {
	Match    string `toml:"match"`
	PerHour  int    `toml:"per_hour"`
	As       string `toml:"as"`
	Stage    string `toml:"stage"`
	Code     int    `toml:"code"`
	Enhanced string `toml:"enhanced"`
	Text     string `toml:"text"`
}

// Duration is a time.Duration written as a string: "250ms", "1s", "5m".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (write it like \"250ms\", \"1s\" or \"5m\")", b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// FileError is a problem in a rules file, placed at its line and key.
type FileError struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *FileError) Error() string {
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

// Load reads and checks the rules file at path. The error, if any, is a
// *FileError (or several joined) naming the file, line and key.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes and checks data as the rules file named name. Relative
// paths in it (certificate, key) are taken as they are, from the working
// directory.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Path: name, Output: FileOutput{Every: Duration(10 * time.Second)}}
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		return nil, decodeError(name, err)
	}
	if errs := f.check(); len(errs) > 0 {
		lines := keyLines(data)
		var out []error
		for _, ke := range errs {
			out = append(out, &FileError{File: name, Line: lineOf(lines, ke.key), Key: ke.key, Msg: ke.msg})
		}
		return nil, errors.Join(out...)
	}
	return f, nil
}

func decodeError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		var errs []error
		for _, e := range strict.Errors {
			line, _ := e.Position()
			errs = append(errs, &FileError{File: name, Line: line, Key: strings.Join(e.Key(), "."), Msg: "unknown key"})
		}
		return errors.Join(errs...)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		msg := plainTypeError(strings.TrimPrefix(de.Error(), "toml: "))
		return &FileError{File: name, Line: line, Key: strings.Join(de.Key(), "."), Msg: msg}
	}
	return &FileError{File: name, Msg: err.Error()}
}

var typeError = regexp.MustCompile(`^cannot decode TOML (\w+) into struct field \S+ of type (\S+)$`)

// plainTypeError says what go-toml's type mismatch means without Go's type
// names.
func plainTypeError(msg string) string {
	m := typeError.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := map[string]string{
		"int": "an integer", "int64": "an integer", "uint64": "an integer", "float64": "a number",
		"string": "a string", "bool": "true or false", "[]string": "a list of strings",
		"smtpsink.Duration": "a duration such as \"250ms\" or \"1s\"", "map[string]string": "a table of strings",
	}[m[2]]
	if want == "" {
		return msg
	}
	return "want " + want + ", not a TOML " + m[1]
}

// keyErr is a bad value found after decoding, by key path.
type keyErr struct{ key, msg string }

// check validates every value and converts the sections, collecting every
// problem rather than stopping at the first.
func (f *File) check() []keyErr {
	var errs []keyErr
	bad := func(key, format string, a ...any) { errs = append(errs, keyErr{key, fmt.Sprintf(format, a...)}) }
	for i, a := range f.Listen {
		if err := checkAddr(a); err != nil {
			bad(fmt.Sprintf("listen[%d]", i), "%v", err)
		}
	}
	for i, a := range f.ListenTLS {
		if err := checkAddr(a); err != nil {
			bad(fmt.Sprintf("listen_tls[%d]", i), "%v", err)
		}
	}
	if f.MaxMessageSize < 0 {
		bad("max_message_size", "must not be negative")
	}
	if f.MaxRecipients < 0 {
		bad("max_recipients", "must not be negative")
	}
	switch f.TLS.Mode {
	case "", "on", "off", "broken":
	default:
		bad("tls.mode", "%q: want on, off or broken", f.TLS.Mode)
	}
	if f.TLS.Mode == "off" && len(f.ListenTLS) > 0 {
		bad("listen_tls", "needs TLS, but tls.mode is off")
	}
	if (f.TLS.Cert == "") != (f.TLS.Key == "") {
		bad("tls.cert", "give both cert and key, or neither (a self-signed certificate)")
	} else if f.TLS.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.TLS.Cert, f.TLS.Key)
		if err != nil {
			bad("tls.cert", "%v", err)
		} else {
			f.cert = &c
		}
	}
	for u := range f.Auth.Users {
		if u == "" || strings.ContainsAny(u, "\x00\r\n") {
			bad("auth.users", "user name %q is not usable", u)
		}
	}
	for i, r := range f.Reply {
		key := fmt.Sprintf("reply[%d]", i)
		if r.Stage == "" {
			bad(key+".stage", "missing: want connect, mail, rcpt or data")
			continue
		}
		if err := r.rule().Validate(); err != nil {
			bad(key+"."+fieldOf(err, "stage"), "%v", err)
		}
	}
	for i, t := range f.Throttle {
		key := fmt.Sprintf("throttle[%d]", i)
		th, err := t.throttle()
		if err != nil {
			bad(key+"."+err.key, "%s", err.msg)
			continue
		}
		if err := th.Validate(); err != nil {
			bad(key+"."+fieldOf(err, "code"), "%v", err)
		}
	}
	return errs
}

// fieldOf is the field a validation error names, or def.
func fieldOf(err error, def string) string {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe.field
	}
	return def
}

func checkAddr(a string) error {
	h, p, err := splitHostPort(a)
	if err != nil {
		return err
	}
	if h == "" {
		return fmt.Errorf("%q: name the address to listen on, such as 127.0.0.1:2525", a)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: bad port", a)
	}
	return nil
}

func splitHostPort(a string) (string, string, error) {
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return "", "", fmt.Errorf("%q: want host:port", a)
	}
	return strings.Trim(a[:i], "[]"), a[i+1:], nil
}

func (r FileRule) rule() Rule {
	return Rule{
		Stage: Stage(r.Stage), Match: r.Match, Code: r.Code, Enhanced: r.Enhanced, Text: r.Text,
		Delay: r.Delay.D(), Drop: r.Drop, DropAfter: r.DropAfter, Times: r.Times, Share: r.Share,
	}
}

func (t FileThrottle) throttle() (Throttle, *keyErr) {
	th := Throttle{Match: t.Match, PerHour: t.PerHour, Stage: Stage(t.Stage), Code: t.Code, Enhanced: t.Enhanced, Text: t.Text}
	if t.PerHour <= 0 {
		return th, &keyErr{"per_hour", "missing: how many messages per hour one client IP may send"}
	}
	if t.As != "" {
		p, ok := Provider(t.As)
		if !ok {
			return th, &keyErr{"as", fmt.Sprintf("%q: want one of %s, or code, enhanced and text", t.As, strings.Join(Providers(), ", "))}
		}
		if t.Code != 0 || t.Enhanced != "" || t.Text != "" {
			return th, &keyErr{"as", "give either as or code, enhanced and text, not both"}
		}
		th.Code, th.Enhanced, th.Text = p.Code, p.Enhanced, p.Text
	} else if t.Code == 0 {
		return th, &keyErr{"code", "missing: name a provider with as, or give code, enhanced and text"}
	}
	return th, nil
}

// Config is the server configuration the file describes.
func (f *File) Config() Config {
	c := Config{
		Listen:          f.Listen,
		ListenTLS:       f.ListenTLS,
		Domain:          f.Hostname,
		Certificate:     f.cert,
		Latency:         f.Latency.D(),
		Seed:            f.Seed,
		SMTPUTF8:        f.SMTPUTF8,
		MaxMessageBytes: f.MaxMessageSize,
		MaxRecipients:   f.MaxRecipients,
		Users:           f.Auth.Users,
		AuthPlaintext:   f.Auth.Plaintext,
		ReadTimeout:     f.ReadTimeout.D(),
		WriteTimeout:    f.WriteTimeout.D(),
	}
	switch f.TLS.Mode {
	case "off":
		c.TLS = TLSOff
	case "broken":
		c.TLS = TLSBroken
	}
	for _, r := range f.Reply {
		c.Rules = append(c.Rules, r.rule())
	}
	for _, t := range f.Throttle {
		th, _ := t.throttle()
		c.Throttles = append(c.Throttles, th)
	}
	return c
}

// keyLines maps the key paths written in a rules file ("reply[2].code",
// "tls.mode") to the line each was written on, so a value found bad after
// decoding is reported at its line. Tables and arrays of tables map to the
// line of their header.
func keyLines(doc []byte) map[string]int {
	lines := map[string]int{}
	p := unstable.Parser{}
	p.Reset(doc)
	counts := map[string]int{}
	table := ""
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			var parts []string
			for it := n.Key(); it.Next(); {
				parts = append(parts, string(it.Node().Data))
			}
			path := strings.Join(parts, ".")
			if n.Kind == unstable.ArrayTable {
				idx := counts[path]
				counts[path] = idx + 1
				path += "[" + strconv.Itoa(idx) + "]"
			}
			table = path
			if first := n.Child(); first != nil {
				lines[table] = lineAt(&p, first)
			}
		case unstable.KeyValue:
			path := table
			var first *unstable.Node
			for it := n.Key(); it.Next(); {
				if first == nil {
					first = it.Node()
				}
				if path != "" {
					path += "."
				}
				path += string(it.Node().Data)
			}
			if first == nil {
				continue
			}
			lines[path] = lineAt(&p, first)
			if v := n.Value(); v.Kind == unstable.Array {
				i := 0
				for it := v.Children(); it.Next(); i++ {
					if l := lineAt(&p, it.Node()); l > 0 {
						lines[path+"["+strconv.Itoa(i)+"]"] = l
					}
				}
			}
		}
	}
	return lines
}

func lineAt(p *unstable.Parser, n *unstable.Node) (line int) {
	if n.Raw.Length == 0 && n.Raw.Offset == 0 {
		return 0
	}
	defer func() {
		if recover() != nil {
			line = 0
		}
	}()
	return p.Shape(n.Raw).Start.Line
}

// lineOf finds the line of key, or of its nearest written parent.
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok && l > 0 {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}
