package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
	"kiln/policy/suppress"
)

// suppressWorld is a suppression list behind the admin handler on loopback,
// as the daemon serves it.
type suppressWorld struct {
	list *suppress.List
	url  string
}

func newSuppressWorld(t *testing.T) *suppressWorld {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithSyncWrites(true).WithDetectConflicts(false).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := suppress.Open(db, clock.NewFake(time.Now()), suppress.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := suppress.NewBreaker(db, suppress.BreakerConfig{}, log)
	srv := httptest.NewServer(suppress.Handler(l, suppress.HandlerOptions{Breaker: b, Log: log}))
	t.Cleanup(func() {
		srv.Close()
		l.Close()
		db.Close()
	})
	return &suppressWorld{list: l, url: srv.URL}
}

// runSuppress runs "kiln suppress ..." against the world and returns its
// standard output, standard error and exit status.
func (w *suppressWorld) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	outF, _ := os.Create(filepath.Join(dir, "stdout"))
	errF, _ := os.Create(filepath.Join(dir, "stderr"))
	defer outF.Close()
	defer errF.Close()
	savedOut, savedErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outF, errF
	var out, errb bytes.Buffer
	code = runMain(append(append([]string{"suppress"}, args...), "--admin", w.url), &out, &errb)
	os.Stdout, os.Stderr = savedOut, savedErr
	o, _ := os.ReadFile(outF.Name())
	e, _ := os.ReadFile(errF.Name())
	return out.String() + string(o), errb.String() + string(e), code
}

func TestSuppressCLIRoundTrip(t *testing.T) {
	w := newSuppressWorld(t)
	out, errs, code := w.run(t, "add", "One@Example.com", "two@example.com", "--note", "asked by phone", "--expires", "30d")
	if code != 0 || !strings.Contains(out, "suppressed one@example.com (global, reason suppressed, source manual, expires ") ||
		!strings.Contains(out, "suppressed two@example.com") {
		t.Fatalf("add: %d %q %q", code, out, errs)
	}
	out, _, _ = w.run(t, "add", "one@example.com", "--expires", "10d")
	if !strings.Contains(out, "already suppressed one@example.com") {
		t.Errorf("second add: %q", out)
	}
	out, _, code = w.run(t, "add", "x@example.com", "--account", "acme", "--reason", "userunknown", "--source", "import", "--json")
	var added struct{ Results []suppress.AddResult }
	if code != 0 || json.Unmarshal([]byte(out), &added) != nil || added.Results[0].Entry.Scope != "acme" {
		t.Errorf("add --json: %d %q", code, out)
	}
	if _, errs, code := w.run(t, "add", "not-an-address"); code != 1 || !strings.Contains(errs, "bad_request") {
		t.Errorf("bad add: %d %q", code, errs)
	}
	if _, errs, code := w.run(t, "add"); code != 2 || !strings.Contains(errs, "usage: kiln suppress add") {
		t.Errorf("add without addresses: %d %q", code, errs)
	}

	out, _, code = w.run(t, "ls")
	if code != 0 || !strings.Contains(out, "ADDRESS") || !strings.Contains(out, "one@example.com  global") ||
		!strings.Contains(out, "x@example.com    acme") || !strings.Contains(out, "asked by phone") {
		t.Errorf("ls: %d\n%s", code, out)
	}
	out, _, _ = w.run(t, "ls", "--account", "acme")
	if strings.Contains(out, "one@example.com") || !strings.Contains(out, "x@example.com") {
		t.Errorf("ls --account: %s", out)
	}
	out, _, _ = w.run(t, "ls", "--global", "--limit", "1")
	if !strings.Contains(out, "one@example.com") || !strings.Contains(out, "more: kiln suppress ls ") || !strings.Contains(out, "--global --limit 1 --cursor ") {
		t.Errorf("ls page: %s", out)
	}
	cursor := out[strings.LastIndex(out, "--cursor ")+len("--cursor ") : len(out)-1]
	out, _, _ = w.run(t, "ls", "--global", "--limit", "1", "--cursor", cursor)
	if !strings.Contains(out, "two@example.com") || strings.Contains(out, "more:") {
		t.Errorf("ls next page: %s", out)
	}
	out, _, _ = w.run(t, "ls", "--all", "--limit", "1", "--json")
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("ls --all --json: %d lines\n%s", n, out)
	}
	out, _, _ = w.run(t, "ls", "--search", "nobody")
	if !strings.Contains(out, "no suppressed addresses match") {
		t.Errorf("ls with no match: %s", out)
	}
	if _, _, code := w.run(t, "ls", "--account", "a", "--global"); code != 2 {
		t.Errorf("ls --account --global: %d", code)
	}

	out, _, code = w.run(t, "check", "x@example.com", "--account", "acme")
	if code != 1 || !strings.Contains(out, "suppressed x@example.com (acme, reason userunknown") {
		t.Errorf("check: %d %q", code, out)
	}
	out, _, code = w.run(t, "check", "x@example.com")
	if code != 0 || !strings.Contains(out, "is not suppressed") {
		t.Errorf("check without the account: %d %q", code, out)
	}

	out, _, code = w.run(t, "rm", "one@example.com", "nobody@example.com")
	if code != 0 || !strings.Contains(out, "removed one@example.com from global") ||
		!strings.Contains(out, "nobody@example.com was not on the global list") {
		t.Errorf("rm: %d %q", code, out)
	}
	out, _, _ = w.run(t, "rm", "x@example.com", "--all-scopes", "--json")
	var rm struct{ Removed []suppress.Entry }
	if json.Unmarshal([]byte(out), &rm) != nil || len(rm.Removed) != 1 || rm.Removed[0].Scope != "acme" {
		t.Errorf("rm --all-scopes --json: %q", out)
	}
}

func TestSuppressCLIImportExport(t *testing.T) {
	w := newSuppressWorld(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	var b strings.Builder
	b.WriteString("email,reason,created\n")
	for i := 0; i < 30000; i++ {
		fmt.Fprintf(&b, "user%05d@example.com,userunknown,2024-01-01\n", i)
	}
	b.WriteString("not-an-address,userunknown,\n")
	b.WriteString("bad@example.com,notareason,\n")
	os.WriteFile(in, []byte(b.String()), 0o600)

	out, errs, code := w.run(t, "import", in, "--account", "acme")
	if code != 0 || !strings.Contains(out, "read 30,002 rows") || !strings.Contains(out, "30,000 added") ||
		!strings.Contains(out, "2 malformed") || !strings.Contains(out, "line 30002: ") || !strings.Contains(out, "line 30003: unknown reason") {
		t.Fatalf("import: %d\n%s\n%s", code, out, errs)
	}
	if errs != "" && !strings.Contains(errs, "import") {
		t.Errorf("import stderr: %q", errs)
	}
	if _, ok, _ := w.list.Check("acme", "user00042@example.com", time.Now()); !ok {
		t.Error("an imported address is not suppressed")
	}
	// From standard input, as JSON.
	saved := os.Stdin
	r, wr, _ := os.Pipe()
	os.Stdin = r
	go func() { wr.Write([]byte("address\nstdin@example.com\n")); wr.Close() }()
	out, _, code = w.run(t, "import", "-", "--json")
	os.Stdin = saved
	var rep suppress.ImportReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Added != 1 {
		t.Errorf("import from stdin: %d %q", code, out)
	}
	if _, errs, code := w.run(t, "import", filepath.Join(dir, "missing.csv")); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("import of a missing file: %d %q", code, errs)
	}
	os.WriteFile(filepath.Join(dir, "noheader.csv"), []byte("a@example.com,userunknown\n"), 0o600)
	if _, errs, code := w.run(t, "import", filepath.Join(dir, "noheader.csv")); code != 1 || !strings.Contains(errs, "header") {
		t.Errorf("import without a header: %d %q", code, errs)
	}

	exported := filepath.Join(dir, "out.csv")
	_, errs, code = w.run(t, "export", exported, "--account", "acme")
	if code != 0 || !strings.Contains(errs, "exported 30,000 rows to "+exported) {
		t.Fatalf("export: %d %q", code, errs)
	}
	data, _ := os.ReadFile(exported)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 30001 || lines[0] != strings.Join(suppress.Columns, ",") ||
		!strings.HasPrefix(lines[1], "user00000@example.com,acme,userunknown,import,2024-01-01T00:00:00Z,never,") {
		t.Errorf("export: %d lines, %q", len(lines), lines[:2])
	}
	out, _, _ = w.run(t, "export", "--search", "stdin")
	if !strings.Contains(out, "stdin@example.com,,suppressed,import,") {
		t.Errorf("export to stdout: %q", out)
	}
	// The export imports back unchanged.
	out, _, _ = w.run(t, "import", exported)
	if !strings.Contains(out, "30,000 already suppressed") {
		t.Errorf("re-import: %q", out)
	}
}

func TestSuppressProgressBar(t *testing.T) {
	var buf bytes.Buffer
	p := newSuppProgress("import", 1000, false)
	p.w, p.tty = &buf, true
	p.start = time.Now().Add(-2 * time.Second)
	p.add([]byte("address\n" + strings.Repeat("a@example.com\n", 35)))
	p.last = time.Time{}
	p.add(nil)
	p.done()
	s := buf.String()
	for _, want := range []string{"\rimport [", "]  49.8% 35 rows", "rows/s", "498 B/1000 B", "ETA"} {
		if !strings.Contains(s, want) {
			t.Errorf("progress %q lacks %q", s, want)
		}
	}
	if !strings.HasSuffix(s, "\n") {
		t.Errorf("progress %q does not end its line", s)
	}
	if got := suppThousands(1234567); got != "1,234,567" {
		t.Errorf("suppThousands = %q", got)
	}
}

// An export the daemon did not finish (no completion trailer) fails and
// leaves no file behind.
func TestSuppressExportCutShort(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", suppress.TrailerExportRows+", "+suppress.TrailerExportError)
		io.WriteString(w, strings.Join(suppress.Columns, ",")+"\na@example.com,,suppressed,manual,2024-01-01T00:00:00Z,never,,,,,\n")
		w.Header().Set(suppress.TrailerExportError, "export failed after 1 rows")
	}))
	defer srv.Close()
	w := &suppressWorld{url: srv.URL}
	target := filepath.Join(t.TempDir(), "out.csv")
	_, errs, code := w.run(t, "export", target)
	if code != 1 || !strings.Contains(errs, "export cut short: export failed after 1 rows") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("a failed export left %s: %v", target, err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(target), ".kiln-export-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
