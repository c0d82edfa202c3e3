package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"kiln/warmup"
)

func init() {
	register(&command{
		path:  "warmup status",
		short: "show each egress's warm-up per provider: plan day, today's cap and sends, state, last signal",
		long: `For every egress and every provider (site) it has sent to: the plan day,
today's cap, what was sent today and what is left, the hourly pace now,
the state (ramping, held, paused, warm) and the last signal that was not a
delivery (deferral, rate, block, complaint), with what caused the last
change.`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var st warmup.Status
				var raw json.RawMessage
				if err := c.do("GET", "/api/v1/warmup/status", nil, &raw); err != nil {
					return err
				}
				if *af.json {
					_, err := os.Stdout.Write(raw)
					return err
				}
				if err := json.Unmarshal(raw, &st); err != nil {
					return err
				}
				fmt.Printf("%s (%s), window %s, %s days\n", st.Date, st.Timezone, st.Window, st.Days)
				if len(st.Egress) == 0 {
					fmt.Println("no [[egress]] is configured: kiln sends from the system's default address without warm-up caps")
					return nil
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "EGRESS\tSITE\tSTATE\tDAY\tCAP\tSENT\tLEFT\tPER HOUR\tLAST SIGNAL\tCAUSE")
				for _, e := range st.Egress {
					if len(e.Sites) == 0 {
						state := "ramping"
						if e.Warm {
							state = "warm"
						}
						if e.Paused {
							state = "paused"
						}
						fmt.Fprintf(tw, "%s\t-\t%s\t%d\t-\t-\t-\t-\t-\t-\n", e.Name, state, e.Day)
					}
					for _, s := range e.Sites {
						last := "-"
						if s.LastSignal != warmup.SignalNone {
							last = s.LastSignal.String() + " " + ago(s.LastSignalAt, st.Time)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", e.Name, s.Site, s.State,
							dayOf(s.Day, s.PlanDays), num(s.Cap), s.Sent, num(s.Left), num(s.Hourly), last, orDash(s.Cause))
					}
				}
				return tw.Flush()
			}
		},
	})
	register(&command{
		path:  "warmup plan",
		short: "show the rest of an egress's warm-up plan, day by day",
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			egress := fs.String("egress", "", "the egress (required)")
			return func(args []string) error {
				if len(args) != 0 || *egress == "" {
					return usagef("--egress NAME is required")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var raw json.RawMessage
				if err := c.do("GET", "/api/v1/warmup/plan?egress="+url.QueryEscape(*egress), nil, &raw); err != nil {
					return err
				}
				if *af.json {
					_, err := os.Stdout.Write(raw)
					return err
				}
				var p warmup.PlanView
				if err := json.Unmarshal(raw, &p); err != nil {
					return err
				}
				fmt.Printf("egress %s, plan %s, %s (%s)\n", p.Egress, orDash(p.Plan), p.Date, p.Timezone)
				if p.Warm {
					fmt.Println("warm: no warm-up caps")
				}
				for _, s := range p.Sites {
					fmt.Printf("\n%s (%s, day %d)\n", s.Site, s.State, s.Day)
					tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
					fmt.Fprintln(tw, "  DAY\tDATE\tCAP\tPER HOUR")
					for _, d := range s.Days {
						fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", d.Day, d.Date, num(d.Cap), num(d.Hourly))
					}
					tw.Flush()
				}
				return nil
			}
		},
	})
	control := func(path, short, endpoint string, flags func(fs *flag.FlagSet) func() (map[string]any, error)) {
		register(&command{path: path, short: short, setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			body := flags(fs)
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments")
				}
				b, err := body()
				if err != nil {
					return err
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				var res map[string]any
				if err := c.do("POST", "/api/v1/warmup/"+endpoint, b, &res); err != nil {
					return err
				}
				if *af.json {
					return printJSON(res)
				}
				fmt.Println("done; \"kiln warmup status\" shows the new state")
				return nil
			}
		}})
	}
	control("warmup pause", "stop sending from an egress (to one provider, or to all) for a while or until resumed", "pause",
		func(fs *flag.FlagSet) func() (map[string]any, error) {
			egress := fs.String("egress", "", "the egress (required)")
			site := fs.String("site", "", "only this provider or site (default: the whole egress)")
			d := fs.String("for", "", "how long, e.g. 2h (default: until resumed)")
			return func() (map[string]any, error) {
				if *egress == "" {
					return nil, usagef("--egress is required")
				}
				return map[string]any{"egress": *egress, "site": *site, "for": *d}, nil
			}
		})
	control("warmup resume", "resume an egress (or one provider of it) paused by an operator or by adaptive control", "resume",
		func(fs *flag.FlagSet) func() (map[string]any, error) {
			egress := fs.String("egress", "", "the egress (required)")
			site := fs.String("site", "", "only this provider or site")
			return func() (map[string]any, error) {
				if *egress == "" {
					return nil, usagef("--egress is required")
				}
				return map[string]any{"egress": *egress, "site": *site}, nil
			}
		})
	control("warmup set-day", "move an egress to a plan day by hand", "day",
		func(fs *flag.FlagSet) func() (map[string]any, error) {
			egress := fs.String("egress", "", "the egress (required)")
			day := fs.Int("day", 0, "the plan day, 1 or more (required)")
			return func() (map[string]any, error) {
				if *egress == "" || *day < 1 {
					return nil, usagef("--egress and --day (1 or more) are required")
				}
				return map[string]any{"egress": *egress, "day": *day}, nil
			}
		})
}

func num(n int) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func dayOf(day, of int) string {
	if of == 0 {
		return "warm"
	}
	return fmt.Sprintf("%d/%d", day, of)
}

func ago(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
