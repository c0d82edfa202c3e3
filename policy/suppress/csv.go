package suppress

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// CSV files, for Import and Export.
//
// The first line is a header naming the columns, in any order; names are
// case-insensitive and unknown columns are ignored (and listed in the
// report). Only address is required:
//
//	address     the recipient (also: email, email_address, recipient)
//	scope       "" for global, else an account (also: account); default: the import's scope
//	reason      DESIGN.md's vocabulary; default: the source's (suppressed for manual and import)
//	source      reply, late-bounce, complaint, unsubscribe, soft-failure, manual, import; default: the import's source
//	created     RFC 3339, "2006-01-02 15:04:05", "2006-01-02" or Unix seconds, UTC unless it says; default: now
//	expires     the same forms, or "never"; default: chosen by the config from reason and source
//	rule        the rule that decided
//	queue_id    kiln's id of the message that caused it (also: message_id)
//	status      RFC 3463 status
//	reply       the remote's words (also: diagnostic, words)
//	note        a comment (also: comment)
//
// A file whose first line is a single address and no header is read as a
// plain list of addresses, one a line. The separator is a comma, or a
// semicolon or tab when the header has those and no comma. Fields may be
// quoted as in RFC 4180, but each record is one line: a quoted field does not
// run on to the next line, so one malformed line never swallows the rest of
// the file. A byte-order mark, CRLF line ends and blank lines are accepted.
//
// Export writes the columns in the order above, a header first, times in RFC
// 3339 UTC and "never" for an entry without expiry, so an export imports back
// as it was.

// Columns is the header Export writes.
var Columns = []string{"address", "scope", "reason", "source", "created", "expires", "rule", "queue_id", "status", "reply", "note"}

const (
	colAddress = iota
	colScope
	colReason
	colSource
	colCreated
	colExpires
	colRule
	colQueueID
	colStatus
	colReply
	colNote
	numCols
)

var columnAliases = map[string]int{
	"address": colAddress, "email": colAddress, "email_address": colAddress, "e-mail": colAddress,
	"recipient": colAddress, "mail": colAddress,
	"scope": colScope, "account": colScope,
	"reason": colReason, "source": colSource,
	"created": colCreated, "created_at": colCreated, "date": colCreated,
	"expires": colExpires, "expires_at": colExpires,
	"rule": colRule, "queue_id": colQueueID, "message_id": colQueueID,
	"status": colStatus, "reply": colReply, "diagnostic": colReply, "words": colReply,
	"note": colNote, "comment": colNote,
}

// ImportOptions says where rows go and who is importing.
type ImportOptions struct {
	// Scope is the scope of rows that name none ("" is global).
	Scope string
	// Restricted limits every row to Scope: a row naming another scope is
	// refused (a caller limited to its own account).
	Restricted bool
	// Source is the source of rows that name none (default import).
	Source Source
	// Progress, when set, is called every 10,000 rows and at the end with
	// the data rows read and the bytes read.
	Progress func(rows, bytes int64)
}

// ImportReport is what an import did.
type ImportReport struct {
	Rows      int64 `json:"rows"`      // data rows read (not the header, not blank lines)
	Added     int64 `json:"added"`     // rows that added an entry or replaced a weaker one
	Unchanged int64 `json:"unchanged"` // rows already on the list as strongly (or repeated in the file)
	Expired   int64 `json:"expired"`   // rows whose expiry had already passed
	Invalid   int64 `json:"invalid"`   // malformed rows, not imported
	// Errors lists the first MaxImportErrors malformed rows by line number.
	Errors         []RowError `json:"errors,omitempty"`
	IgnoredColumns []string   `json:"ignored_columns,omitempty"`
	Bytes          int64      `json:"bytes"`
	Seconds        float64    `json:"seconds"`
}

// RowError is one malformed row.
type RowError struct {
	Line    int64  `json:"line"`
	Message string `json:"message"`
}

// MaxImportErrors is how many malformed rows an ImportReport lists.
const MaxImportErrors = 1000

// maxLine is the longest line Import reads; a longer one is a malformed row.
const maxLine = 64 << 10

// importChunk is how many rows go to the store in one transaction.
const importChunk = 1000

// ErrRead wraps a failure to read the input of an import (a client that
// went away, a broken file), as opposed to a failure of the store.
var ErrRead = errors.New("reading the import")

// ErrNoHeader is returned when a file has no header and is not a plain list
// of addresses.
var ErrNoHeader = errors.New("the first line must be a header naming the columns (address, reason, source, ...)")

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// lineReader reads lines of at most maxLine bytes; a longer line is returned
// cut, with long set, and the rest of it skipped.
type lineReader struct {
	br   *bufio.Reader
	line int64
	buf  []byte
}

func (lr *lineReader) next() (line []byte, long bool, err error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.br.ReadSlice('\n')
		if len(lr.buf)+len(chunk) <= maxLine {
			lr.buf = append(lr.buf, chunk...)
		} else {
			long = true
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && (len(lr.buf) > 0 || long) && errors.Is(err, io.EOF) {
			err = nil // a last line without a newline
		}
		if err != nil {
			return nil, false, err
		}
		lr.line++
		return bytes.TrimRight(lr.buf, "\r\n"), long, nil
	}
}

// splitLine splits one line into fields: sep separates them, a field that
// starts with a double quote runs to the next lone quote ("" is a quote
// inside it), and unquoted fields are trimmed of spaces.
func splitLine(line []byte, sep byte, fields []string) ([]string, error) {
	fields = fields[:0]
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') && line[i] != sep {
			i++
		}
		if i < len(line) && line[i] == '"' {
			var sb []byte
			j := i + 1
			closed := false
			for j < len(line) {
				if line[j] == '"' {
					if j+1 < len(line) && line[j+1] == '"' {
						sb = append(sb, '"')
						j += 2
						continue
					}
					closed = true
					j++
					break
				}
				sb = append(sb, line[j])
				j++
			}
			if !closed {
				return fields, errors.New("a quoted field is not closed on its line")
			}
			for j < len(line) && (line[j] == ' ' || line[j] == '\t') && line[j] != sep {
				j++
			}
			fields = append(fields, string(sb))
			if j == len(line) {
				return fields, nil
			}
			if line[j] != sep {
				return fields, fmt.Errorf("unexpected %q after a quoted field", line[j])
			}
			i = j + 1
			continue
		}
		j := bytes.IndexByte(line[i:], sep)
		if j < 0 {
			fields = append(fields, string(bytes.TrimSpace(line[i:])))
			return fields, nil
		}
		f := bytes.TrimSpace(line[i : i+j])
		if bytes.IndexByte(f, '"') >= 0 {
			return fields, errors.New("a quote inside an unquoted field")
		}
		fields = append(fields, string(f))
		i += j + 1
	}
}

// parseTime reads a time as import files write it.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1e11 {
		return time.Unix(n, 0).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unreadable time %q (use RFC 3339, 2006-01-02 15:04:05, 2006-01-02 or Unix seconds)", clip(s, 40))
}

// header maps the fields of a header line to columns; cols[i] is the column
// of field i, -1 for an ignored one.
type header struct {
	cols    []int
	ignored []string
}

func readHeader(fields []string) (*header, bool) {
	h := &header{cols: make([]int, len(fields))}
	seen := make([]bool, numCols)
	known := false
	for i, f := range fields {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(f, "\uFEFF")))
		name = strings.ReplaceAll(name, " ", "_")
		c, ok := columnAliases[name]
		if !ok || seen[c] {
			h.cols[i] = -1
			h.ignored = append(h.ignored, f)
			continue
		}
		seen[c], h.cols[i], known = true, c, true
	}
	return h, known && seen[colAddress]
}

type importRow struct {
	line  int64
	e     Entry
	never bool
}

// Import reads a CSV file (see Columns) and adds each row as Add would,
// in transactions of a thousand rows, reading while the last chunk is
// written: a million rows take about five seconds, and the import holds at
// most two chunks of rows in memory, whatever the size of the file. A malformed row
// is counted and reported by line number, and the rest are imported. The
// error is for what stops the import: an unreadable input, a file without a
// header, a failing store; the report then says what was done before it.
func (l *List) Import(r io.Reader, opts ImportOptions) (ImportReport, error) {
	start := time.Now()
	var rep ImportReport
	if opts.Source == "" {
		opts.Source = SourceImport
	}
	if !opts.Source.Valid() {
		return rep, fmt.Errorf("unknown source %q", opts.Source)
	}
	if err := ValidScope(opts.Scope); err != nil {
		return rep, err
	}
	cr := &countingReader{r: r}
	lr := &lineReader{br: bufio.NewReaderSize(cr, 64<<10)}
	now := l.clk.Now()

	bad := func(line int64, format string, a ...any) {
		rep.Invalid++
		if len(rep.Errors) < MaxImportErrors {
			rep.Errors = append(rep.Errors, RowError{Line: line, Message: fmt.Sprintf(format, a...)})
		}
	}

	// In flight: at most two chunks, so reading overlaps writing and memory
	// stays bounded.
	type pending struct {
		req              *request
		added, unchanged *int64
	}
	var inflight []pending
	settle := func(p pending) error {
		<-p.req.done
		if p.req.err != nil {
			return p.req.err
		}
		rep.Added += *p.added
		rep.Unchanged += *p.unchanged
		return nil
	}
	flush := func(rows []importRow) error {
		if len(rows) == 0 {
			return nil
		}
		added, unchanged := new(int64), new(int64)
		req, err := l.submitAsync(len(rows), func(txn *badger.Txn, _ *[]Change) error {
			*added, *unchanged = 0, 0
			for i := range rows {
				_, changed, err := l.addInTxn(txn, rows[i].e, now, nil)
				if err != nil {
					return err
				}
				if changed {
					*added++
				} else {
					*unchanged++
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		inflight = append(inflight, pending{req, added, unchanged})
		if len(inflight) == 2 {
			p := inflight[0]
			inflight = inflight[1:]
			return settle(p)
		}
		return nil
	}
	finish := func(err error) (ImportReport, error) {
		for _, p := range inflight {
			if e := settle(p); e != nil && err == nil {
				err = e
			}
		}
		inflight = nil
		rep.Bytes = cr.n
		rep.Seconds = time.Since(start).Seconds()
		if opts.Progress != nil {
			opts.Progress(rep.Rows, cr.n)
		}
		return rep, err
	}

	var h *header
	sep := byte(',')
	var fields []string
	rows := make([]importRow, 0, importChunk)
	var vals [numCols]string
	for {
		line, long, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return finish(fmt.Errorf("%w: line %d: %w", ErrRead, lr.line+1, err))
		}
		if lr.line == 1 {
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if h == nil {
			if bytes.IndexByte(line, ',') < 0 {
				if bytes.IndexByte(line, ';') >= 0 {
					sep = ';'
				} else if bytes.IndexByte(line, '\t') >= 0 {
					sep = '\t'
				}
			}
			fields, err = splitLine(line, sep, fields)
			var ok bool
			if err == nil {
				h, ok = readHeader(fields)
				rep.IgnoredColumns = h.ignored
			}
			if !ok {
				if err == nil && len(fields) == 1 {
					if _, aerr := Normalize(fields[0]); aerr == nil {
						// A plain list of addresses, one a line.
						h = &header{cols: []int{colAddress}}
						rep.IgnoredColumns = nil
						goto row
					}
				}
				return finish(fmt.Errorf("line %d: %w", lr.line, ErrNoHeader))
			}
			continue
		}
	row:
		rep.Rows++
		if opts.Progress != nil && rep.Rows%10000 == 0 {
			opts.Progress(rep.Rows, cr.n)
		}
		if long {
			bad(lr.line, "line longer than %d bytes", maxLine)
			continue
		}
		fields, err = splitLine(line, sep, fields)
		if err != nil {
			bad(lr.line, "%v", err)
			continue
		}
		if len(fields) > len(h.cols) {
			bad(lr.line, "%d fields, but the header names %d columns", len(fields), len(h.cols))
			continue
		}
		vals = [numCols]string{}
		for i, f := range fields {
			if c := h.cols[i]; c >= 0 {
				vals[c] = f
			}
		}
		ir, msg := l.importEntry(&vals, opts, now)
		if msg != "" {
			bad(lr.line, "%s", msg)
			continue
		}
		if ir.e.Expired(now) {
			rep.Expired++
			continue
		}
		ir.line = lr.line
		rows = append(rows, ir)
		if len(rows) == importChunk {
			if err := flush(rows); err != nil {
				return finish(err)
			}
			rows = make([]importRow, 0, importChunk)
		}
	}
	if h == nil {
		return finish(fmt.Errorf("empty file: %w", ErrNoHeader))
	}
	return finish(flush(rows))
}

// importEntry makes the entry of one row, or says what is wrong with it.
func (l *List) importEntry(v *[numCols]string, opts ImportOptions, now time.Time) (importRow, string) {
	var ir importRow
	if v[colAddress] == "" {
		return ir, "no address"
	}
	e := Entry{Address: v[colAddress], Scope: opts.Scope, Source: opts.Source,
		Rule: v[colRule], QueueID: v[colQueueID], Status: v[colStatus], Reply: v[colReply], Note: v[colNote]}
	if s := v[colScope]; s != "" && s != opts.Scope {
		if opts.Restricted {
			return ir, fmt.Sprintf("scope %q: this import may only add to %q", clip(s, 60), opts.Scope)
		}
		e.Scope = s
	}
	if r := strings.ToLower(v[colReason]); r != "" {
		if !KnownReason(r) {
			return ir, fmt.Sprintf("unknown reason %q (use DESIGN.md's vocabulary: userunknown, hostunknown, mailboxfull, feedback, suppressed, ...)", clip(r, 40))
		}
		e.Reason = r
	}
	if s := strings.ToLower(v[colSource]); s != "" {
		e.Source = Source(s)
		if !e.Source.Valid() {
			return ir, fmt.Sprintf("unknown source %q (use reply, late-bounce, complaint, unsubscribe, soft-failure, manual or import)", clip(s, 40))
		}
	}
	if s := v[colCreated]; s != "" {
		t, err := parseTime(s)
		if err != nil {
			return ir, "created: " + err.Error()
		}
		e.Created = t
	}
	switch s := v[colExpires]; strings.ToLower(s) {
	case "", "0":
	case "never", "none":
		ir.never = true
	default:
		t, err := parseTime(s)
		if err != nil {
			return ir, "expires: " + err.Error()
		}
		e.Expires = t
	}
	e, err := l.cfg.prepare(e, now)
	if err != nil {
		return ir, err.Error()
	}
	if ir.never {
		e.Expires = time.Time{}
	}
	ir.e = e
	return ir, ""
}

// Export writes the entries that match f and have not expired at now as
// CSV (see Columns), a page at a time, and returns how many it wrote.
// progress, when set, is called after every page with the rows written so far.
// A writer that is an http.Flusher is flushed after every page.
func (l *List) Export(w io.Writer, f Filter, now time.Time, progress func(rows int64)) (int64, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(Columns); err != nil {
		return 0, err
	}
	var n int64
	cursor := ""
	rec := make([]string, numCols)
	for {
		page, next, err := l.List(f, cursor, 5000, now)
		if err != nil {
			return n, err
		}
		for _, e := range page {
			rec[colAddress], rec[colScope], rec[colReason], rec[colSource] = e.Address, e.Scope, e.Reason, string(e.Source)
			rec[colCreated] = e.Created.UTC().Format(time.RFC3339)
			rec[colExpires] = "never"
			if !e.Expires.IsZero() {
				rec[colExpires] = e.Expires.UTC().Format(time.RFC3339)
			}
			rec[colRule], rec[colQueueID], rec[colStatus], rec[colReply], rec[colNote] = e.Rule, e.QueueID, e.Status, e.Reply, e.Note
			if err := cw.Write(rec); err != nil {
				return n, err
			}
			n++
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return n, err
		}
		if fl, ok := w.(interface{ Flush() }); ok {
			fl.Flush()
		}
		if progress != nil {
			progress(n)
		}
		if next == "" {
			return n, nil
		}
		cursor = next
	}
}
