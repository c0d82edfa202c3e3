package dkim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
)

// fixedNow is the clock of the golden files.
var fixedNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testKeys are the committed keys under testdata/keys, made with
// "kiln dkim keygen", whose output is saved beside each key as NAME.txt.
var testKeys = []KeyConfig{
	{Domain: "example.com", Selector: "r2025", Key: "testdata/keys/r2025._domainkey.example.com.pem"},
	{Domain: "example.com", Selector: "e2025", Key: "testdata/keys/e2025._domainkey.example.com.pem"},
	{Domain: "rsa.example", Selector: "s1", Key: "testdata/keys/s1._domainkey.rsa.example.pem"},
	{Domain: "ed.example", Selector: "s1", Key: "testdata/keys/s1._domainkey.ed.example.pem"},
	{Domain: "mta.example.net", Selector: "op", Key: "testdata/keys/op._domainkey.mta.example.net.pem"},
}

func testSigner(t testing.TB, cfg SigningConfig) *Signer {
	t.Helper()
	s, err := NewSigner(testKeys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var quoted = regexp.MustCompile(`"([^"]*)"`)

// parseZoneLine reads a line printed by "kiln dkim keygen": the record
// name and its character-strings.
func parseZoneLine(t testing.TB, line string) (name string, strs []string) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 4 || f[1] != "IN" || f[2] != "TXT" {
		t.Fatalf("not a zone line: %q", line)
	}
	for _, m := range quoted.FindAllStringSubmatch(line, -1) {
		strs = append(strs, m[1])
	}
	return strings.TrimSuffix(f[0], "."), strs
}

// keygenRecords returns the TXT records that keygen printed for the test
// keys, by name, joined as a resolver joins them.
func keygenRecords(t testing.TB) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("testdata/keys/*.txt")
	recs := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name, strs := parseZoneLine(t, strings.TrimSpace(string(data)))
		recs[name] = strings.Join(strs, "")
	}
	if len(recs) != len(testKeys) {
		t.Fatalf("found %d keygen records, want %d", len(recs), len(testKeys))
	}
	return recs
}

// verifyGo checks every signature of msg with go-msgauth and returns the
// verifications.
func verifyGo(t testing.TB, msg []byte, recs map[string]string) []*msgauth.Verification {
	t.Helper()
	vs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), &msgauth.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if r, ok := recs[name]; ok {
				return []string{r}, nil
			}
			return nil, &notFound{name}
		},
	})
	if err != nil {
		t.Fatalf("go-msgauth: %v", err)
	}
	return vs
}

type notFound struct{ name string }

func (e *notFound) Error() string   { return "no such name " + e.name }
func (e *notFound) Temporary() bool { return false }
func (e *notFound) Timeout() bool   { return false }

type pyResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

const systemPython = "/usr/bin/python3"

// dkimpyAvailable skips the test when Debian's python3-dkim is missing,
// except in CI (CI=true), where its absence is a failure: the independent
// verifier is part of what "done" means.
func dkimpyAvailable(t testing.TB) {
	t.Helper()
	if err := exec.Command(systemPython, "-c", "import dkim").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dkimpy (python3-dkim) is required in CI: %s -c 'import dkim': %v", systemPython, err)
		}
		t.Skipf("dkimpy (python3-dkim) not installed: %v", err)
	}
}

// verifyPy verifies every signature of every message with dkimpy in one
// process and returns the results per message, per signature.
func verifyPy(t testing.TB, msgs [][]byte, recs map[string]string) [][]pyResult {
	t.Helper()
	dkimpyAvailable(t)
	req := map[string]any{"records": recs}
	var enc []string
	for _, m := range msgs {
		enc = append(enc, base64.StdEncoding.EncodeToString(m))
	}
	req["messages"] = enc
	in, _ := json.Marshal(req)
	cmd := exec.Command(systemPython, "testdata/dkimpy_verify.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
	}
	var res [][]pyResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("dkimpy output: %v\n%s", err, out)
	}
	if len(res) != len(msgs) {
		t.Fatalf("dkimpy returned %d results for %d messages", len(res), len(msgs))
	}
	return res
}

// sigTags parses the tags of each DKIM-Signature field in hdrs.
func sigTags(t testing.TB, hdrs []byte) []map[string]string {
	t.Helper()
	var out []map[string]string
	fields, err := parseHeader(hdrs, hdrs, nil)
	if err != nil {
		t.Fatalf("signature fields: %v\n%s", err, hdrs)
	}
	for _, f := range fields {
		if !strings.EqualFold(string(f.name), "DKIM-Signature") {
			t.Fatalf("unexpected field %s", f.name)
		}
		l, err := parseTagList(string(f.value))
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, tg := range l {
			m[tg.name] = stripFWS(tg.value)
		}
		out = append(out, m)
	}
	return out
}
