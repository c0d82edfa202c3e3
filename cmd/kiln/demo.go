package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"kiln/internal/demo"
)

func init() {
	register(&command{
		path:  "demo",
		short: "watch kiln relay, bounce, suppress and warm up, against simulated providers",
		long: `Starts kiln in this process with simulated mailbox providers on loopback,
sends it a small campaign through its SMTP submission port, and shows what
happens to every recipient as it happens. No internet, no DNS and no config
are needed; kiln's data goes to a temporary directory (or --data DIR).

What is simulated:
  - the providers: one SMTP server on 127.0.0.1 playing a Gmail-like provider
    that throttles (421 4.7.28 past an hourly limit), a Microsoft-like one
    that blocks kiln's IP (550 5.7.1 S3150, then 451 4.7.650), a Yahoo-like
    one and a hosting company that take everything, and everywhere unknown
    users (550 5.1.1) and full mailboxes (452 4.2.2);
  - DNS: a built-in MX table gives each demo domain its provider's MX host
    name, which is how kiln's warm-up tells providers apart;
  - time: kiln's clock runs --speed times faster than the wall clock (two
    hours a second by default), so warm-up days, retries and pauses take
    seconds; network timeouts stay on the wall clock.
Everything else is kiln itself: the queue, the warm-up caps and adaptive
pauses, the reply classifier, the suppression list, bounce notices, the admin
API and the dashboard, whose address is printed first.

On a terminal the table is redrawn in place; otherwise (or with --plain)
notable events and periodic status lines are printed. The demo ends when
every recipient is delivered, bounced or dropped, or after --duration; with
--keep kiln keeps running (the dashboard stays up, the submission port takes
more mail) until Ctrl-C. Ctrl-C stops it cleanly at any time. --json prints
the final counts as JSON on standard output, the progress on standard error.

The demo exits with status 1 and says why when it cannot run: a listener's
port is busy, the data directory is in use by another kiln, kiln stopped
taking mail.

  kiln demo
  kiln demo --keep --admin 127.0.0.1:8025
  kiln demo --messages 1000 --duration 2m --plain`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			messages := fs.Int("messages", 300, "campaign size: messages, one recipient each (1-100000)")
			duration := fs.Duration("duration", time.Minute, "longest wait for the campaign to finish")
			speed := fs.Float64("speed", demo.DefaultSpeed, "simulated seconds per real second (1: real time)")
			data := fs.String("data", "", "keep kiln's data in `DIR` (default: a temporary directory, removed at the end)")
			keep := fs.Bool("keep", false, "keep kiln running after the campaign, until Ctrl-C")
			admin := fs.String("admin", "127.0.0.1:0", "admin and dashboard listener (`host:port`; port 0: a free one)")
			listen := fs.String("listen", "127.0.0.1:0", "SMTP submission listener (`host:port`; port 0: a free one)")
			noColor := fs.Bool("no-color", false, "no colours (also when NO_COLOR is set)")
			plain := fs.Bool("plain", false, "print progress as plain lines, not a table redrawn in place")
			every := fs.Duration("every", 5*time.Second, "with --plain: a status line this often")
			asJSON := fs.Bool("json", false, "print the final counts as JSON on standard output")
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments")
				}
				switch {
				case *messages < 1 || *messages > 100000:
					return usagef("--messages must be between 1 and 100000")
				case *duration <= 0:
					return usagef("--duration must be positive")
				case *speed < 1 || *speed > 100000:
					return usagef("--speed must be between 1 and 100000")
				case *every <= 0:
					return usagef("--every must be positive")
				}
				var out io.Writer = os.Stdout
				outFile := os.Stdout
				if *asJSON {
					out, outFile = os.Stderr, os.Stderr
				}
				tty := isTerminal(outFile) && os.Getenv("TERM") != "dumb"
				cfg := demo.Config{
					Messages: *messages, Duration: *duration, Speed: *speed, DataDir: *data, Keep: *keep,
					Admin: *admin, Listen: *listen, Out: out, Every: *every,
					Live:  tty && !*plain,
					Color: tty && !*plain && !*noColor && os.Getenv("NO_COLOR") == "",
				}
				ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				res, err := demo.Run(ctx, cfg)
				if err != nil {
					return err
				}
				if *asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(res)
				}
				msg := "\nkiln has stopped."
				if !*keep {
					msg += " \"kiln demo --keep\" leaves it running after the campaign, to explore the dashboard."
				}
				fmt.Fprintln(out, msg)
				return nil
			}
		},
	})
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
