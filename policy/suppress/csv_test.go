package suppress

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSplitLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{`a@x.com,userunknown`, []string{"a@x.com", "userunknown"}, false},
		{` a@x.com , userunknown `, []string{"a@x.com", "userunknown"}, false},
		{`"a,b@x.com","say ""hi""",`, []string{`a,b@x.com`, `say "hi"`, ""}, false},
		{`"""odd""@x.com" ,x`, []string{`"odd"@x.com`, "x"}, false},
		{`"a"b@x.com,c`, nil, true},
		{`a@x.com,,`, []string{"a@x.com", "", ""}, false},
		{`"unclosed,x`, nil, true},
		{`"a"b,c`, nil, true},
		{`a"b,c`, nil, true},
		{``, []string{""}, false},
	} {
		got, err := splitLine([]byte(c.in), ',', nil)
		if (err != nil) != c.bad || (!c.bad && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("splitLine(%q) = %q, %v; want %q (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestImportMalformedRows(t *testing.T) {
	w := newWorld(t, Config{})
	in := "\uFEFFEmail,Reason,Created,Comment,Extra\r\n" + // 1: aliases, a BOM, CRLF, an unknown column
		"good1@example.com,userunknown,2024-01-02,first,x\r\n" + // 2
		"not-an-address,userunknown,,,\r\n" + // 3
		"good2@example.com,,,,\r\n" + // 4
		"\r\n" + // 5: blank
		"bad@example.com,notareason,,,\r\n" + // 6
		"bad@example.com,userunknown,yesterday,,\r\n" + // 7
		"\"unclosed@example.com,userunknown,,,\r\n" + // 8
		"a@example.com,userunknown,,,,,,\r\n" + // 9: too many fields
		"GOOD1@example.com,userunknown,,,\r\n" + // 10: again, unchanged
		"good3@example.com,mailboxfull,1700000000,,\r\n" + // 11
		"good4@example.com" // 12: no newline at the end, fewer fields
	var calls int
	rep, err := w.l.Import(strings.NewReader(in), ImportOptions{Progress: func(rows, bytes int64) { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	wantErrs := []int64{3, 6, 7, 8, 9}
	var gotErrs []int64
	for _, e := range rep.Errors {
		gotErrs = append(gotErrs, e.Line)
	}
	if !reflect.DeepEqual(gotErrs, wantErrs) {
		t.Errorf("errors on lines %v, want %v: %+v", gotErrs, wantErrs, rep.Errors)
	}
	if rep.Rows != 10 || rep.Added != 4 || rep.Unchanged != 1 || rep.Invalid != 5 || rep.Expired != 0 ||
		!reflect.DeepEqual(rep.IgnoredColumns, []string{"Extra"}) || rep.Bytes != int64(len(in)) || calls != 1 {
		t.Errorf("report %+v (progress calls %d)", rep, calls)
	}
	e, ok := checked(t, w.l, "", "good1@example.com", w.clk.Now())
	if !ok || e.Reason != "userunknown" || e.Source != SourceImport || e.Note != "first" ||
		!e.Created.Equal(time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("good1 = %+v", e)
	}
	if e, _ := checked(t, w.l, "", "good2@example.com", w.clk.Now()); e.Reason != "suppressed" {
		t.Errorf("good2 reason = %q, want the import default", e.Reason)
	}
	if e, _ := checked(t, w.l, "", "good3@example.com", w.clk.Now()); !e.Created.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("good3 created %v", e.Created)
	}
	if _, ok := checked(t, w.l, "", "good4@example.com", w.clk.Now()); !ok {
		t.Error("the last line without a newline was lost")
	}
	for _, e := range rep.Errors {
		if e.Message == "" {
			t.Errorf("line %d: empty message", e.Line)
		}
	}
}

func TestImportFormats(t *testing.T) {
	w := newWorld(t, Config{})
	// A plain list of addresses, no header.
	rep, err := w.l.Import(strings.NewReader("One@example.com\ntwo@example.com\n\nbad address\n"), ImportOptions{Scope: "acme"})
	if err != nil || rep.Added != 2 || rep.Invalid != 1 || rep.Errors[0].Line != 4 {
		t.Fatalf("plain list: %+v, %v", rep, err)
	}
	if e, ok := checked(t, w.l, "acme", "one@example.com", t0); !ok || e.Scope != "acme" {
		t.Errorf("plain list entry: %+v", e)
	}
	// Semicolons, as some spreadsheets write.
	rep, err = w.l.Import(strings.NewReader("address;reason;source\nsemi@example.com;feedback;complaint\n"), ImportOptions{})
	if err != nil || rep.Added != 1 {
		t.Fatalf("semicolons: %+v, %v", rep, err)
	}
	if e, _ := checked(t, w.l, "", "semi@example.com", t0); e.Source != SourceComplaint || e.Reason != "feedback" {
		t.Errorf("semicolons: %+v", e)
	}
	// No header.
	if _, err := w.l.Import(strings.NewReader("a@example.com,userunknown\n"), ImportOptions{}); !errors.Is(err, ErrNoHeader) {
		t.Errorf("no header: %v", err)
	}
	if _, err := w.l.Import(strings.NewReader("reason,source\n"), ImportOptions{}); !errors.Is(err, ErrNoHeader) {
		t.Errorf("header without address: %v", err)
	}
	if _, err := w.l.Import(strings.NewReader(""), ImportOptions{}); !errors.Is(err, ErrNoHeader) {
		t.Errorf("empty: %v", err)
	}
	// Expiry: given, never, passed, by config.
	in := "address,source,expires\n" +
		"given@example.com,manual,2025-04-01T00:00:00Z\n" +
		"never@example.com,soft-failure,never\n" +
		"past@example.com,manual,2020-01-01\n" +
		"config@example.com,soft-failure,\n"
	rep, err = w.l.Import(strings.NewReader(in), ImportOptions{})
	if err != nil || rep.Added != 3 || rep.Expired != 1 {
		t.Fatalf("expiries: %+v %v", rep, err)
	}
	for addr, want := range map[string]time.Time{
		"given@example.com":  time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
		"never@example.com":  {},
		"config@example.com": t0.Add(90 * 24 * time.Hour),
	} {
		if e, _ := checked(t, w.l, "", addr, t0); !e.Expires.Equal(want) {
			t.Errorf("%s expires %v, want %v", addr, e.Expires, want)
		}
	}
	consistent(t, w.db)
	// A restricted import may not write another scope.
	rep, err = w.l.Import(strings.NewReader("address,scope\nmine@example.com,\nmine2@example.com,acme\ntheirs@example.com,zeta\n"),
		ImportOptions{Scope: "acme", Restricted: true})
	if err != nil || rep.Added != 2 || rep.Invalid != 1 || rep.Errors[0].Line != 4 {
		t.Errorf("restricted: %+v %v", rep, err)
	}
	// An unrestricted one follows the file.
	rep, _ = w.l.Import(strings.NewReader("address,scope\ntheirs@example.com,zeta\n"), ImportOptions{Scope: "acme"})
	if _, ok := checked(t, w.l, "zeta", "theirs@example.com", t0); !ok || rep.Added != 1 {
		t.Error("a row's scope was not used")
	}
	// A very long line is one malformed row.
	long := "address,note\nlong@example.com," + strings.Repeat("x", maxLine+10) + "\nafter@example.com,\n"
	rep, err = w.l.Import(strings.NewReader(long), ImportOptions{})
	if err != nil || rep.Invalid != 1 || rep.Added != 1 || rep.Errors[0].Line != 2 {
		t.Errorf("long line: %+v %v", rep, err)
	}
}

// errReader fails after its data.
type errReader struct{ r io.Reader }

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestImportReadError(t *testing.T) {
	w := newWorld(t, Config{})
	var in strings.Builder
	in.WriteString("address\n")
	for i := 0; i < 2500; i++ {
		fmt.Fprintf(&in, "u%d@example.com\n", i)
	}
	rep, err := w.l.Import(&errReader{strings.NewReader(in.String())}, ImportOptions{})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err = %v", err)
	}
	// What was read before the failure is in: every complete chunk, and
	// the report says so.
	if rep.Added != 2000 || countPrefix(t, w.db, prefixEntry) != 2000 {
		t.Errorf("report %+v, %d entries", rep, countPrefix(t, w.db, prefixEntry))
	}
}

func TestExportImportRoundTrip(t *testing.T) {
	w := newWorld(t, Config{})
	entries := []Entry{
		{Address: "a@example.com", Reason: "userunknown", Source: SourceReply, Reply: `550 5.1.1 "a@example.com", no such user`,
			Rule: "user-unknown", QueueID: "q1", Status: "5.1.1"},
		{Scope: "acme", Address: "b@example.com", Source: SourceComplaint, Note: "line one, with a comma"},
		{Address: "c@example.com", Reason: "mailboxfull", Source: SourceSoftFailure, Rule: RuleSoftFailure},
		{Scope: "zeta", Address: "ü@bücher.de", Source: SourceManual, Expires: t0.Add(48 * time.Hour)},
	}
	for _, e := range entries {
		mustAdd(t, w.l, e)
	}
	var buf bytes.Buffer
	var pages []int64
	n, err := w.l.Export(&buf, Filter{}, t0, func(rows int64) { pages = append(pages, rows) })
	if err != nil || n != 4 || len(pages) != 1 || pages[0] != 4 {
		t.Fatalf("Export = %d, %v, progress %v", n, err, pages)
	}
	recs, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
	if err != nil || len(recs) != 5 || !reflect.DeepEqual(recs[0], Columns) {
		t.Fatalf("export is not the documented CSV: %v\n%s", err, buf.String())
	}
	w2 := newWorld(t, Config{})
	rep, err := w2.l.Import(bytes.NewReader(buf.Bytes()), ImportOptions{})
	if err != nil || rep.Added != 4 || rep.Invalid != 0 {
		t.Fatalf("re-import: %+v %v", rep, err)
	}
	want, _, _ := w.l.List(Filter{}, "", 100, t0)
	got, _, _ := w2.l.List(Filter{}, "", 100, t0)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Filters apply.
	buf.Reset()
	if n, _ := w.l.Export(&buf, Filter{Scope: "acme"}, t0, nil); n != 1 || !strings.Contains(buf.String(), "b@example.com") {
		t.Errorf("scoped export: %d rows\n%s", n, buf.String())
	}
}

// countingSource generates a CSV of n rows without holding it in memory.
type countingSource struct {
	n, i int
	buf  []byte
}

func (s *countingSource) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.i <= s.n {
		if s.i == 0 {
			s.buf = append(s.buf, "address,reason,source,created\n"...)
		} else {
			reason := "userunknown"
			if s.i%7 == 0 {
				reason = "mailboxfull"
			}
			s.buf = fmt.Appendf(s.buf, "user%09d@domain%04d.example,%s,import,2024-05-01T10:00:00Z\n", s.i, s.i%5000, reason)
		}
		s.i++
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// BenchmarkImport imports b.N rows in one file into a store on disk that
// syncs every commit, and reports rows/s and the peak heap. Run with
// -benchtime=1000000x for the million-row figure.
func BenchmarkImport(b *testing.B) {
	w := newWorld(b, Config{})
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	runtime.GC()
	b.ResetTimer()
	rep, err := w.l.Import(&countingSource{n: b.N}, ImportOptions{})
	b.StopTimer()
	close(stop)
	<-sampled
	if err != nil || rep.Added != int64(b.N) {
		b.Fatalf("%+v %v", rep, err)
	}
	b.ReportMetric(float64(b.N)/rep.Seconds, "rows/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}

func BenchmarkCheck(b *testing.B) {
	w := newWorld(b, Config{})
	rep, err := w.l.Import(&countingSource{n: 200000}, ImportOptions{})
	if err != nil || rep.Added != 200000 {
		b.Fatal(rep, err)
	}
	mustAdd(b, w.l, Entry{Scope: "acme", Address: "scoped@example.com", Source: SourceComplaint})
	b.Run("miss", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok, _ := w.l.Check("acme", fmt.Sprintf("nobody%d@domain%04d.example", i, i%5000), t0); ok {
				b.Fatal("hit")
			}
		}
	})
	b.Run("hit-global", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok, _ := w.l.Check("acme", fmt.Sprintf("user%09d@domain%04d.example", i%200000+1, (i%200000+1)%5000), t0); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("hit-account", func(b *testing.B) {
		for b.Loop() {
			if _, ok, _ := w.l.Check("acme", "scoped@example.com", t0); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkAddConcurrent measures adds from many goroutines sharing commits.
func BenchmarkAddConcurrent(b *testing.B) {
	w := newWorld(b, Config{})
	var n atomic.Int64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			if _, _, err := w.l.Add(Entry{Address: fmt.Sprintf("p%d@example.com", i), Reason: "userunknown", Source: SourceReply}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
