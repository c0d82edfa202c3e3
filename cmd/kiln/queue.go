package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"text/tabwriter"
	"time"
)

// queueMessage mirrors the admin API's view of a message.
type queueMessage struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Account   string    `json:"account"`
	From      string    `json:"from"`
	MessageID string    `json:"message_id"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	Due       time.Time `json:"due"`
	Attempts  int       `json:"attempts"`
	Size      int64     `json:"size"`
	Rcpts     []struct {
		Address  string     `json:"address"`
		State    string     `json:"state"`
		Attempts int        `json:"attempts"`
		Next     *time.Time `json:"next_attempt"`
		Reply    string     `json:"last_reply"`
		Host     string     `json:"remote_host"`
		Reason   string     `json:"reason"`
		Rule     string     `json:"rule"`
	} `json:"recipients"`
}

type selectorFlags struct {
	id, account, sender, rcpt *string
	all                       *bool
}

func addSelector(fs *flag.FlagSet, allHelp string) *selectorFlags {
	s := &selectorFlags{
		id:      fs.String("id", "", "a message's queue id"),
		account: fs.String("account", "", "messages of this account"),
		sender:  fs.String("sender-domain", "", "messages from this envelope sender domain"),
		rcpt:    fs.String("recipient-domain", "", "messages with a pending recipient in this domain"),
	}
	if allHelp != "" {
		s.all = fs.Bool("all", false, allHelp)
	}
	return s
}

func (s *selectorFlags) body() map[string]any {
	b := map[string]any{"id": *s.id, "account": *s.account, "sender_domain": *s.sender, "recipient_domain": *s.rcpt}
	if s.all != nil {
		b["all"] = *s.all
	}
	return b
}

func (s *selectorFlags) empty() bool {
	return *s.id == "" && *s.account == "" && *s.sender == "" && *s.rcpt == "" && (s.all == nil || !*s.all)
}

func init() {
	register(&command{
		path:  "queue ls",
		short: "list queued messages",
		long: `Lists the messages in the queue, oldest first, with their state
(due, deferred, held, active), recipients still pending and next attempt.
Filters combine; --limit pages through a large queue (--after continues
from the last id shown).`,
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			sel := addSelector(fs, "")
			state := fs.String("state", "", "only messages in this state: due, deferred, held, active")
			limit := fs.Int("limit", 100, "at most this many messages")
			after := fs.String("after", "", "start after this id")
			return func(args []string) error {
				if len(args) != 0 {
					return usagef("takes no arguments")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				q := url.Values{}
				for k, v := range map[string]string{"id": *sel.id, "account": *sel.account, "sender_domain": *sel.sender,
					"recipient_domain": *sel.rcpt, "state": *state, "after": *after} {
					if v != "" {
						q.Set(k, v)
					}
				}
				q.Set("limit", fmt.Sprint(*limit))
				if *af.json {
					var raw json.RawMessage
					if err := c.do("GET", "/api/v1/queue?"+q.Encode(), nil, &raw); err != nil {
						return err
					}
					_, err := os.Stdout.Write(raw)
					return err
				}
				var res struct {
					Messages []queueMessage `json:"messages"`
					Next     string         `json:"next"`
				}
				if err := c.do("GET", "/api/v1/queue?"+q.Encode(), nil, &res); err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tAGE\tATTEMPTS\tFROM\tPENDING\tNEXT")
				now := time.Now()
				for _, m := range res.Messages {
					var pending []string
					var next *time.Time
					for _, r := range m.Rcpts {
						if r.State == "pending" {
							pending = append(pending, r.Address)
							if r.Next != nil && (next == nil || r.Next.Before(*next)) {
								next = r.Next
							}
						}
					}
					nextS := "-"
					if next != nil {
						nextS = "in " + next.Sub(now).Round(time.Second).String()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.ID, m.State, now.Sub(m.Created).Round(time.Second),
						m.Attempts, orDash(m.From), summarize(pending), nextS)
				}
				tw.Flush()
				if res.Next != "" {
					fmt.Printf("more: kiln queue ls --after %s\n", res.Next)
				}
				return nil
			}
		},
	})
	register(&command{
		path:  "queue show",
		args:  "ID",
		short: "show one queued message and every recipient's state",
		setup: func(fs *flag.FlagSet) func([]string) error {
			af := addAdminFlags(fs)
			return func(args []string) error {
				if len(args) != 1 {
					return usagef("want exactly one message id")
				}
				c, err := af.client()
				if err != nil {
					return err
				}
				if *af.json {
					var raw json.RawMessage
					if err := c.do("GET", "/api/v1/queue/"+url.PathEscape(args[0]), nil, &raw); err != nil {
						return err
					}
					_, err := os.Stdout.Write(raw)
					return err
				}
				var m queueMessage
				if err := c.do("GET", "/api/v1/queue/"+url.PathEscape(args[0]), nil, &m); err != nil {
					return err
				}
				fmt.Printf("id:         %s\nstate:      %s\naccount:    %s\nfrom:       %s\nmessage-id: %s\nsize:       %d\ncreated:    %s\nexpires:    %s\nattempts:   %d\n",
					m.ID, m.State, orDash(m.Account), orDash(m.From), orDash(m.MessageID), m.Size,
					m.Created.Format(time.RFC3339), m.Expires.Format(time.RFC3339), m.Attempts)
				fmt.Println("recipients:")
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "  ADDRESS\tSTATE\tATTEMPTS\tNEXT\tREASON\tLAST REPLY")
				for _, r := range m.Rcpts {
					next := "-"
					if r.Next != nil {
						next = r.Next.Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\n", r.Address, r.State, r.Attempts, next, orDash(r.Reason), orDash(r.Reply))
				}
				return tw.Flush()
			}
		},
	})
	action := func(path, short, long, endpoint, allHelp string, needSelector bool, report func(map[string]any)) {
		register(&command{
			path: path, short: short, long: long,
			setup: func(fs *flag.FlagSet) func([]string) error {
				af := addAdminFlags(fs)
				sel := addSelector(fs, allHelp)
				reason := fs.String("reason", "", "why (kept with the hold rule)")
				return func(args []string) error {
					if len(args) == 1 && *sel.id == "" {
						*sel.id = args[0] // "kiln queue drop ID"
					} else if len(args) > 0 {
						return usagef("takes at most one message id")
					}
					if needSelector && sel.empty() {
						return usagef("%v", errNothingSelected)
					}
					c, err := af.client()
					if err != nil {
						return err
					}
					body := sel.body()
					if endpoint == "hold" {
						body["reason"] = *reason
					}
					var res map[string]any
					if err := c.do("POST", "/api/v1/queue/"+endpoint, body, &res); err != nil {
						return err
					}
					if *af.json {
						return printJSON(res)
					}
					report(res)
					return nil
				}
			},
		})
	}
	action("queue hold", "pause delivery of the selected messages (an empty selection needs --all)",
		`Adds a hold rule: messages it matches stay queued, undelivered, until a
matching "kiln queue release". Rules select by message id, account, sender
domain or recipient domain; --all pauses the whole queue.`,
		"hold", "pause the whole queue", true, func(r map[string]any) {
			rule, _ := r["rule"].(map[string]any)
			fmt.Printf("hold rule %v added\n", rule["id"])
		})
	action("queue release", "remove hold rules and put held messages back in the schedule",
		`Removes the hold rules that select the same messages as the flags (as
given to "kiln queue hold"), or every rule with --all, and makes each held
message that no rule still holds due at once.`,
		"release", "remove every hold rule", true, func(r map[string]any) {
			rules, _ := r["removed_rules"].([]any)
			fmt.Printf("%d hold rule(s) removed, %v message(s) released\n", len(rules), r["released"])
		})
	action("queue flush", "retry the selected deferred messages now",
		`Makes the selected deferred messages (all, without flags) due at once,
ignoring their backoff. Held messages stay held.`,
		"flush", "", false, func(r map[string]any) {
			fmt.Printf("%v message(s) due now\n", r["flushed"])
		})
	action("queue drop", "delete the selected messages without delivering them",
		`Deletes the selected messages from the queue; each pending recipient
gets a "dropped" event. A message in the middle of an attempt is deleted
when the attempt ends. "kiln queue drop ID" drops one message.`,
		"drop", "drop every message", true, func(r map[string]any) {
			fmt.Printf("%v message(s) dropped", r["dropped"])
			if n, _ := r["dropped_after_attempt"].(float64); n > 0 {
				fmt.Printf(", %v more when their attempt ends", n)
			}
			fmt.Println()
		})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func summarize(list []string) string {
	switch len(list) {
	case 0:
		return "-"
	case 1:
		return list[0]
	}
	return fmt.Sprintf("%s +%d", list[0], len(list)-1)
}
