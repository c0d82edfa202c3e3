// Command kiln is the one binary: the daemon (serve), admin subcommands that talk
// to the running daemon over its admin API, and offline tools.
//
// Commands register themselves in a table (one file per command group); the
// help strings in that table are the reference documentation printed by
// "kiln help".
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one entry of the command table.
type command struct {
	path  string // words that select it: "queue ls"
	args  string // what follows the flags, for the usage line: "FILE"
	short string // one line for the overview
	long  string // the full help, printed by "kiln help PATH" and on a usage error
	// setup declares the command's flags on fs and returns the function that
	// runs it with the positional arguments once fs has been parsed. The run
	// function returns a usageError for bad invocations, any other error for
	// failures.
	setup func(fs *flag.FlagSet) func(args []string) error
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// usageError marks an error in how the command was called: kiln prints the
// command's help after it and exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitError carries a specific exit status (for checks that report findings).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printOverview(stdout)
		return 0
	}
	if args[0] == "help" {
		if c, _ := find(args[1:]); c != nil {
			printHelp(stdout, c)
			return 0
		}
		printOverview(stdout)
		return 0
	}
	c, rest := find(args)
	if c == nil {
		fmt.Fprintf(stderr, "kiln: unknown command %q\n\n", strings.Join(args, " "))
		printOverview(stderr)
		return 2
	}
	fs := newFlags(c.path)
	run := c.setup(fs)
	positional, err := parseFlags(fs, rest)
	if err == nil {
		err = run(positional)
	}
	if err == nil {
		return 0
	}
	var ue usageError
	var ee exitError
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, c)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "kiln %s: %s\n\n", c.path, ue.msg)
		printHelp(stderr, c)
		return 2
	case errors.As(err, &ee):
		return ee.code
	}
	fmt.Fprintf(stderr, "kiln %s: %v\n", c.path, err)
	return 1
}

// find returns the command whose path is the longest prefix of args.
func find(args []string) (*command, []string) {
	var best *command
	n := 0
	for _, c := range commands {
		words := strings.Fields(c.path)
		if len(words) <= n || len(words) > len(args) {
			continue
		}
		match := true
		for i, w := range words {
			if args[i] != w {
				match = false
				break
			}
		}
		if match {
			best, n = c, len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[n:]
}

func printOverview(w io.Writer) {
	fmt.Fprintln(w, "kiln: an outbound sending MTA\n\nusage: kiln COMMAND [flags] [args]\n\ncommands:")
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].path < sorted[j].path })
	for _, c := range sorted {
		fmt.Fprintf(w, "  %-22s %s\n", c.path, c.short)
	}
	fmt.Fprintln(w, "\n\"kiln help COMMAND\" prints a command's flags and details.")
}

func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: kiln %s [flags] %s\n\n%s\n", c.path, c.args, c.short)
	if c.long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.long))
	}
	fs := newFlags(c.path)
	c.setup(fs)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nflags:")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// newFlags returns a flag set that reports errors instead of exiting, so the
// command table prints the right help.
func newFlags(path string) *flag.FlagSet {
	fs := flag.NewFlagSet("kiln "+path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args with fs, allowing flags after positional arguments
// ("kiln suppress add ADDR --reason manual"), and turns flag errors into usage
// errors. A "--" ends flag parsing.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}
