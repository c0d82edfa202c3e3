package configs

import (
	"encoding"
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The documented example must decode to exactly the built-in defaults: the
// file is the reference, so a default changed in code but not in the file (or
// the other way round) fails here.
func TestExampleIsTheDefaults(t *testing.T) {
	c, err := Load("kiln.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.File = "kiln.toml"
	want.Classify.BaseDir = "."
	if !reflect.DeepEqual(c, want) {
		t.Errorf("kiln.toml decodes to\n%+v\nwant the defaults\n%+v", c, want)
	}
}

// Every key the config type knows is written in kiln.toml, commented or not.
func TestExampleDocumentsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("kiln.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range tomlKeys(reflect.TypeOf(Config{})) {
		re := regexp.MustCompile(`(?m)(^#?\s*|[{,]\s*)` + regexp.QuoteMeta(key) + `\s*=`)
		if !re.Match(doc) {
			t.Errorf("kiln.toml does not document key %q", key)
		}
	}
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

func tomlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("toml"), ",")[0]
		if name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous {
			keys = append(keys, tomlKeys(ft)...)
			continue
		}
		if ft.Kind() == reflect.Struct && strings.HasPrefix(ft.PkgPath(), "kiln/") && !reflect.PointerTo(ft).Implements(textUnmarshaler) {
			keys = append(keys, tomlKeys(ft)...)
			continue
		}
		keys = append(keys, name)
	}
	return keys
}

func TestFullExample(t *testing.T) {
	c, err := Load("testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Hostname != "mta.example.com" || c.Submission.MaxMessageSize != 10<<20 {
		t.Errorf("got hostname %q size %d", c.Hostname, c.Submission.MaxMessageSize)
	}
	if len(c.Routes) != 1 || c.Routes[0].Smarthost != "relay.example.net:587" {
		t.Errorf("routes = %+v", c.Routes)
	}
	if len(c.Accounts) != 1 || c.Accounts[0].Notices() {
		t.Errorf("accounts = %+v", c.Accounts)
	}
	if c.Submission.TrustedNetworks[1].String() != "192.0.2.7/32" {
		t.Errorf("single address became %v", c.Submission.TrustedNetworks[1])
	}
}

func TestErrorsNameFileLineAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"unknown key", "[submission]\nlisten = [\"127.0.0.1:25\"]\nlisten_port = 25\n",
			`f.toml:3: submission.listen_port: unknown key`},
		{"unknown section", "hostname = \"a\"\n[bogus]\nx = 1\n",
			`f.toml:2: bogus: unknown key`},
		{"bad duration", "[queue]\nmax_age = \"5 days\"\n",
			`f.toml:2: queue.max_age: invalid duration "5 days"`},
		{"wrong type", "[delivery]\nport = \"25\"\n",
			`f.toml:2: delivery.port: cannot decode TOML string`},
		{"bad network", "[submission]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
			`f.toml:2: submission.trusted_networks: invalid network "10.0.0.0/33"`},
		{"bad size", "[submission]\nmax_message_size = \"10 parsecs\"\n",
			`f.toml:2: submission.max_message_size: invalid size unit`},
		{"validation in second account", "[[account]]\nname = \"a\"\npassword_hash = \"$2a$10$C6UzMDM.H6dfI/f/IKcEeO5Ca6ViI5C2QSBEzAV1u/iNu.HpLgxJ2\"\nsender_domains = [\"a.example\"]\n\n[[account]]\nname = \"b\"\npassword_hash = \"$2a$10$C6UzMDM.H6dfI/f/IKcEeO5Ca6ViI5C2QSBEzAV1u/iNu.HpLgxJ2\"\nsender_domains = [\n  \"ok.example\",\n  \"not a domain\",\n]\n",
			`f.toml:11: account[1].sender_domains[1]: "not a domain" is not a domain`},
		{"not bcrypt", "[[account]]\nname = \"a\"\npassword_hash = \"hunter2\"\nsender_domains = [\"a.example\"]\n",
			`f.toml:3: account[0].password_hash: is not a bcrypt hash`},
		{"missing key falls back to table line", "[[route]]\ndomain = \"*\"\n",
			`f.toml:1: route[0].smarthost: is required`},
		{"bad tls mode", "[delivery]\n\ntls = \"maybe\"\n",
			`f.toml:3: delivery.tls: must be opportunistic, required or none`},
		{"guard below the store's room", "[queue]\nmin_free_disk = \"24MiB\"\n",
			`f.toml:2: queue.min_free_disk: must be 0 (no guard) or at least 64MiB`},
		{"syntax", "[submission\n", `f.toml:1: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("f.toml", []byte(tc.doc))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Errorf("error is %T, want *configs.Error", err)
			}
		})
	}
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := Parse("f.toml", []byte("[queue]\nmax_age = \"0s\"\nretry_first = \"0s\"\n"))
	if err == nil || !strings.Contains(err.Error(), "queue.max_age") || !strings.Contains(err.Error(), "queue.retry_first") {
		t.Fatalf("want both problems, got %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "5m": 5 * time.Minute, "5d": 120 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour, "1.5d": 36 * time.Hour, "250ms": 250 * time.Millisecond,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "5", "d", "5 d", "5x", "-"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	for d, want := range map[time.Duration]string{120 * time.Hour: "5d", 5 * time.Minute: "5m", 90 * time.Second: "1m30s", 4 * time.Hour: "4h"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "25MB": 25e6, "25MiB": 25 << 20, "512 KiB": 512 << 10, "1gb": 1e9} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MB", "5 parsecs"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{"", "hostname = \"x\"\n", "[submission]\nlisten = [\"127.0.0.1:1\"]\n", "[[account]]\nname=\"a\"\n", "[[route]]\ndomain=\"*\"\nsmarthost=\"a:1\"\n"} {
		f.Add([]byte(seed))
	}
	if doc, err := os.ReadFile("kiln.toml"); err == nil {
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Parse("fuzz.toml", doc)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.toml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func TestMissingKeyFileNamed(t *testing.T) {
	doc := "[[dkim]]\ndomain = \"example.com\"\nselector = \"s1\"\nkey = \"/nonexistent/s1.pem\"\n"
	_, err := Parse("f.toml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "f.toml:4: dkim[0].key") || !strings.Contains(err.Error(), "/nonexistent/s1.pem") {
		t.Fatalf("got %v", err)
	}
}

func TestAccountPoolAndDKIMChecked(t *testing.T) {
	doc := "[[account]]\nname = \"a\"\npassword_hash = \"$2a$10$C6UzMDM.H6dfI/f/IKcEeO5Ca6ViI5C2QSBEzAV1u/iNu.HpLgxJ2\"\nsender_domains = [\"a.example\"]\npool = \"nope\"\ndkim_unaligned = \"default_domain\"\n"
	_, err := Parse("f.toml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "f.toml:5: account[0].pool") || !strings.Contains(err.Error(), "account[0].dkim_domain") {
		t.Fatalf("got %v", err)
	}
}
