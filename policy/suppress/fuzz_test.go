package suppress

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"kiln/internal/clock"
)

// FuzzImport feeds arbitrary files to Import: it never panics, accounts for
// every data row, and stores only addresses in their normal form.
func FuzzImport(f *testing.F) {
	for _, s := range []string{
		"address,reason\na@example.com,userunknown\n",
		"\uFEFFemail;reason;created\r\nB@Example.com;mailboxfull;2024-01-01\r\n",
		"address,scope,reason,source,created,expires,rule,queue_id,status,reply,note\n" +
			"a@x.com,acme,feedback,complaint,2024-01-01T00:00:00Z,never,r,q,5.7.1,\"say \"\"no\"\"\",n\n",
		"a@example.com\nb@example.com\n",
		"address\n\"unclosed@example.com\n",
		"address,expires\na@example.com,1999-01-01\n",
		"address,reason\nü@bücher.de,userunknown\n",
		"",
	} {
		f.Add([]byte(s))
	}
	db := openDB(f, "")
	defer db.Close()
	l, err := Open(db, clock.NewFake(t0), Config{}, quietLog())
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := l.Import(bytes.NewReader(data), ImportOptions{Scope: "fuzz"})
		if err != nil {
			return
		}
		if rep.Rows != rep.Added+rep.Unchanged+rep.Expired+rep.Invalid {
			t.Fatalf("rows %d != added %d + unchanged %d + expired %d + invalid %d",
				rep.Rows, rep.Added, rep.Unchanged, rep.Expired, rep.Invalid)
		}
		if int64(len(rep.Errors)) != min(rep.Invalid, MaxImportErrors) {
			t.Fatalf("%d errors listed for %d invalid rows", len(rep.Errors), rep.Invalid)
		}
		page, _, err := l.List(Filter{}, "", 50, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if n, err := Normalize(e.Address); err != nil || n != e.Address {
				t.Fatalf("stored %q, which normalises to %q (%v)", e.Address, n, err)
			}
			if ValidScope(e.Scope) != nil {
				t.Fatalf("stored scope %q", e.Scope)
			}
		}
	})
}

// FuzzSplitLine: fields written by encoding/csv on one line read back the
// same, and no line panics.
func FuzzSplitLine(f *testing.F) {
	f.Add("a@example.com", "reply, with \"quotes\"", " spaced ")
	f.Add("", "", "")
	f.Add("\"", ",", ";")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		splitLine([]byte(a+b+c), ',', nil) // must not panic
		fields := []string{a, b, c}
		for _, s := range fields {
			if strings.ContainsAny(s, "\r\n") {
				return // one record is one line
			}
		}
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		w.Write(fields)
		w.Flush()
		got, err := splitLine(bytes.TrimRight(buf.Bytes(), "\n"), ',', nil)
		if err != nil {
			t.Fatalf("%q: %v", buf.String(), err)
		}
		if len(got) != len(fields) {
			t.Fatalf("%q read back as %q", fields, got)
		}
		for i := range got {
			// encoding/csv quotes a field with a leading space, but not
			// one with only a trailing space, which splitLine trims.
			if got[i] != fields[i] && got[i] != strings.TrimSpace(fields[i]) {
				t.Fatalf("%q read back as %q", fields, got)
			}
		}
	})
}

// FuzzNormalize: the normal form is a fixed point, and never holds the
// key separator.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"User@Example.COM", "<a@b.c>", "x@Bücher.de", "a+b@c.d", "\"q\"@x.y", "a@[1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		if strings.IndexByte(n, 0) >= 0 {
			t.Fatalf("%q normalises to %q, with a NUL", s, n)
		}
		n2, err := Normalize(n)
		if err != nil || n2 != n {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", s, n, n, n2, err)
		}
	})
}
