package readiness

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report as a table for people: one line per finding
// (severity, check, subject, summary), followed when it is not ok by its
// details, what to do, and the record to publish, indented. A record the
// finding above already showed is not repeated.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "domain %s\n", r.Domain)
	if len(r.Resolvers) > 0 {
		fmt.Fprintf(&b, "resolver %s\n", strings.Join(r.Resolvers, ", "))
	}
	for _, s := range r.Sources {
		how := ""
		if s.Assumed {
			how = ", assumed"
		}
		fmt.Fprintf(&b, "source %s (ehlo %s%s)\n", s, s.EHLO, how)
	}
	b.WriteString("\n")

	width := len("SUBJECT")
	for _, f := range r.Findings {
		width = max(width, min(len(f.Subject), 40))
	}
	fmt.Fprintf(&b, "%-4s  %-6s  %-*s  %s\n", "", "CHECK", width, "SUBJECT", "FINDING")
	const indent = "      "
	last := ""
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "%-4s  %-6s  %-*s  %s\n", f.Severity, f.Check, width, f.Subject, f.Summary)
		if f.Severity == OK {
			continue
		}
		if f.Detail != "" {
			b.WriteString(indent + "why: " + f.Detail + "\n")
		}
		if f.Fix != "" {
			b.WriteString(indent + "fix: " + f.Fix + "\n")
		}
		switch {
		case f.Record == "":
		case f.Record == last:
			b.WriteString(indent + "     (the record above)\n")
		default:
			b.WriteString(indent + "     " + f.Record + "\n")
		}
		last = f.Record
	}
	verdict := "ready"
	switch r.Worst() {
	case Warn:
		verdict = "ready, with warnings"
	case Fail:
		verdict = "not ready"
	}
	fmt.Fprintf(&b, "\n%s: %d ok, %d warn, %d fail\n", verdict, r.Count(OK), r.Count(Warn), r.Count(Fail))
	_, err := io.WriteString(w, b.String())
	return err
}
