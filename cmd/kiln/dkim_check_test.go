package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/dkim"
	"kiln/internal/fakedns"
)

// readinessWorld is a fake DNS server and a config file naming it, with two
// Ed25519 keys for example.test (selectors "a" and "b", b retired) and one
// egress address.
type readinessWorld struct {
	dns    *fakedns.Server
	config string
	keyA   *dkim.Key
	keyB   *dkim.Key
}

func newReadinessWorld(t *testing.T, extra string) *readinessWorld {
	t.Helper()
	w := &readinessWorld{dns: fakedns.Start(t)}
	dir := t.TempDir()
	var entries strings.Builder
	for i, sel := range []string{"a", "b"} {
		priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 1)}, ed25519.SeedSize))
		path := filepath.Join(dir, dkim.KeyFileName(sel, "example.test"))
		if err := dkim.WriteKeyFile(path, priv); err != nil {
			t.Fatal(err)
		}
		k, err := dkim.NewKey("example.test", sel, priv)
		if err != nil {
			t.Fatal(err)
		}
		if sel == "a" {
			w.keyA = k
		} else {
			w.keyB = k
		}
		fmt.Fprintf(&entries, "[[dkim]]\ndomain = \"example.test\"\nselector = %q\nkey = %q\nretired = %v\n\n", sel, path, sel == "b")
	}
	w.config = filepath.Join(dir, "kiln.toml")
	cfg := fmt.Sprintf(`hostname = "mta.kiln.test"
data_dir = %q

[dns]
servers = [%q]
timeout = "500ms"

%s
%s`, filepath.Join(dir, "data"), w.dns.Addr(), entries.String(), extra)
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// runReadinessCmd runs the command line as main does, and returns what it wrote to
// standard output and standard error, and its exit status. Commands write
// their results to os.Stdout, which is swapped for a file meanwhile.
func runReadinessCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	saved := os.Stdout
	os.Stdout = f
	var out, errb bytes.Buffer
	code = runMain(args, &out, &errb)
	os.Stdout = saved
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	return out.String() + string(b), errb.String(), code
}

func TestDKIMCheck(t *testing.T) {
	w := newReadinessWorld(t, "")
	w.dns.AddTXT(w.keyA.RecordName(), w.keyA.Record())

	// a matches; b (retired) is missing.
	out, errs, code := runReadinessCmd(t, "dkim", "check", "--config", w.config)
	if code != 1 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{
		"match     a._domainkey.example.test (ed25519)\n",
		"missing   b._domainkey.example.test (ed25519, retired): no TXT record at b._domainkey.example.test\n",
		"          publish: b._domainkey.example.test. IN TXT \"v=DKIM1; k=ed25519; p=",
		"1 of 2 keys match (resolver " + w.dns.Addr() + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Only a: all match.
	out, _, code = runReadinessCmd(t, "dkim", "check", "--config", w.config, "--selector", "a")
	if code != 0 || !strings.Contains(out, "1 of 1 keys match") {
		t.Errorf("--selector a: exit %d\n%s", code, out)
	}
	out, _, code = runReadinessCmd(t, "dkim", "check", "--config", w.config, "--domain", "Example.Test.", "--selector", "a")
	if code != 0 || !strings.Contains(out, "match     a._domainkey.example.test") {
		t.Errorf("--domain --selector: exit %d\n%s", code, out)
	}

	// b published with a's key: a mismatch, with what was found.
	w.dns.AddTXT(w.keyB.RecordName(), w.keyA.Record())
	out, _, code = runReadinessCmd(t, "dkim", "check", "--config", w.config, "--selector", "b")
	if code != 1 || !strings.Contains(out, "mismatch  b._domainkey.example.test (ed25519, retired): p= holds a different public key") ||
		!strings.Contains(out, "          found:   "+w.keyA.Record()+"\n") {
		t.Errorf("mismatch: exit %d\n%s", code, out)
	}

	// A DNS failure.
	w.dns.SetFault(w.keyA.RecordName(), fakedns.ServFail)
	out, _, code = runReadinessCmd(t, "dkim", "check", "--config", w.config, "--selector", "a", "--json")
	if code != 1 {
		t.Errorf("DNS failure: exit %d", code)
	}
	var js struct {
		Keys []struct {
			Name, Status, Reason, Record, Zone string
			Bits                               int
		}
		Resolvers []string
		OK        bool
	}
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if js.OK || len(js.Keys) != 1 || js.Keys[0].Status != "dns-error" || !strings.Contains(js.Keys[0].Reason, "SERVFAIL") ||
		js.Keys[0].Record != w.keyA.Record() || js.Keys[0].Bits != 256 || len(js.Resolvers) != 1 {
		t.Errorf("JSON: %+v", js)
	}
}

func TestDKIMCheckErrors(t *testing.T) {
	w := newReadinessWorld(t, "")
	for _, c := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"dkim", "check", "--config", w.config, "--selector", "zz"}, 1, "no [[dkim]] key with selector zz"},
		{[]string{"dkim", "check", "--config", w.config, "--domain", "other.test"}, 1, "no [[dkim]] key for domain other.test"},
		{[]string{"dkim", "check", "--config", w.config, "--domain", "other.test", "--selector", "a"}, 1, "for domain other.test with selector a"},
		{[]string{"dkim", "check"}, 1, "has no [[dkim]] keys"},
		{[]string{"dkim", "check", "--config", w.config, "extra"}, 2, "unexpected argument"},
		{[]string{"dkim", "check", "--config", filepath.Join(t.TempDir(), "none.toml")}, 1, "none.toml"},
	} {
		_, errs, code := runReadinessCmd(t, c.args...)
		if code != c.code || !strings.Contains(errs, c.err) {
			t.Errorf("%q: exit %d, stderr %q", c.args, code, errs)
		}
	}
}
