package demo

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"kiln/configs"
	"kiln/internal/smtpsink"
	"kiln/mta"
	"kiln/policy"
	"kiln/warmup"
)

// provider is one simulated mailbox provider: its recipient domains, the MX
// host name that makes kiln's warm-up count it as a provider (PROVIDERS.md
// §1), the warm-up site kiln files it under, and what it does.
type provider struct {
	Key     string   // row label
	Domains []string // recipient domains
	MX      string   // MX host name of every domain
	Site    string   // kiln's warm-up site key for that MX
	Share   int      // percent of the campaign's recipients
	Story   string   // what it does, for the introduction (%d: its hourly limit)
}

// The simulated providers. Share adds up to 100.
var providers = []*provider{
	{Key: "gmail", Domains: []string{"gmail.demo"}, MX: "gmail-smtp-in.l.google.com", Site: "google", Share: 30,
		Story: "throttles like Gmail: 421 4.7.28 once kiln's IP passes %d messages an hour (about the pace of kiln's day-1 cap)"},
	{Key: "outlook", Domains: []string{"outlook.demo"}, MX: "outlook-demo.olc.protection.outlook.com", Site: "microsoft", Share: 20,
		Story: "blocks like Microsoft: kiln's IP is on its block list (550 5.7.1 S3150), then rate-limited for reputation (451 4.7.650), then let through"},
	{Key: "yahoo", Domains: []string{"yahoo.demo"}, MX: "mta5.am0.yahoodns.net", Site: "yahoo", Share: 20,
		Story: "takes everything: only kiln's warm-up caps hold mail back"},
	{Key: "hosting", Domains: []string{"example.demo", "shop.demo"}, MX: "mx1.hosting.demo", Site: "mx:mx1.hosting.demo", Share: 30,
		Story: "two domains on one MX host: one warm-up site, plain acceptance"},
}

// Local parts of the recipients every provider refuses.
const (
	unknownLocal = "nobody" // 550 5.1.1: the address does not exist
	fullLocal    = "full"   // 452 4.2.2: the mailbox is full, twice per address on average, then emptied
)

// Reply texts, worded as the providers word them (PROVIDERS.md §3); the parts
// kiln's classifier matches are verbatim.
const (
	gmailUnknown   = "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser - gsmtp"
	gmailFull      = "The recipient's inbox is out of storage space. Please direct the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp"
	msBlockList    = "Unfortunately, messages from [{ip}] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."
	msRecipUnknown = "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
	genericUnknown = "<{addr}>: Recipient address rejected: User unknown in virtual mailbox table"
	genericFull    = "<{addr}>: Mailbox full, try again later"
)

// msBlocked and msRateLimited are how many RCPTs the Microsoft-like provider
// blocks, then rate-limits, before it lets kiln's IP through.
const (
	msBlocked     = 2
	msRateLimited = 1
)

// plan is the demo's warm-up plan: per provider, four days of caps that
// double, the first a bit under half of what the campaign sends there, so
// that on day 1 the caps visibly hold mail back until the next day. Google's
// day-1 cap is sized against the Gmail-like provider's hourly limit: spread
// over the 12-hour sending window it comes close to the limit (the pace rises
// when a pause leaves fewer hours for what is left), and day 2's double pace
// goes over it, so kiln's adaptive warm-up has something to react to.
func plan(shares map[string]int) warmup.Plan {
	doubling := func(c int) []int { return []int{c, 2 * c, 4 * c, 8 * c} }
	p := warmup.Plan{Name: "demo", Providers: map[string][]int{}}
	for _, pr := range providers {
		c := doubling(max(2, shares[pr.Key]*45/100))
		switch {
		case pr.Site == "google":
			p.Providers[pr.Site] = doubling(12*gmailPerHour(shares[pr.Key]) - 2)
		case strings.HasPrefix(pr.Site, "mx:"):
			p.Default = c
		default:
			p.Providers[pr.Site] = c
		}
	}
	return p
}

// gmailPerHour is the Gmail-like provider's hourly limit for a campaign that
// sends it gmailRcpts: the limit whose day-1 cap (12 hours at the limit, less
// two messages) is nearest to 45% of the campaign's Gmail mail.
func gmailPerHour(gmailRcpts int) int {
	return max(1, (gmailRcpts*45/100+2+6)/12)
}

// sinkRules are the scripted replies of the simulated providers, first match
// first.
func sinkRules(fullGmail, fullOther int) []smtpsink.Rule {
	return []smtpsink.Rule{
		// Microsoft's block is about the sending IP, so it comes before any
		// check of the recipient.
		{Stage: smtpsink.StageRcpt, Match: "*@outlook.demo", Code: 550, Enhanced: "5.7.1", Text: msBlockList, Times: msBlocked},
		{Stage: smtpsink.StageRcpt, Match: "*@outlook.demo", Code: 451, Enhanced: "4.7.650",
			Text: "The mail server [{ip}] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)", Times: msRateLimited},
		{Stage: smtpsink.StageRcpt, Match: unknownLocal + "*@gmail.demo", Code: 550, Enhanced: "5.1.1", Text: gmailUnknown},
		{Stage: smtpsink.StageRcpt, Match: unknownLocal + "*@outlook.demo", Code: 550, Enhanced: "5.1.10", Text: msRecipUnknown},
		{Stage: smtpsink.StageRcpt, Match: unknownLocal + "*@*", Code: 550, Enhanced: "5.1.1", Text: genericUnknown},
		{Stage: smtpsink.StageRcpt, Match: fullLocal + "*@gmail.demo", Code: 452, Enhanced: "4.2.2", Text: gmailFull, Times: 2 * fullGmail},
		{Stage: smtpsink.StageRcpt, Match: fullLocal + "*@*", Code: 452, Enhanced: "4.2.2", Text: genericFull, Times: 2 * fullOther},
	}
}

// newSink starts the one SMTP server that plays every simulated provider's
// MX host, on a free port of 127.0.0.1: kiln delivers to it because the
// demo's MX lookup answers 127.0.0.1 for every MX host and [delivery] port
// names its port. One server with rules per recipient domain, rather than
// one per provider on 127.0.0.2 and up, runs where only 127.0.0.1 is
// configured on the loopback interface.
func newSink(clk *simClock, rcpts []string) (*smtpsink.Server, error) {
	gmailRcpts, fullGmail, fullOther := 0, 0, 0
	for _, r := range rcpts {
		gmail := providerOf(r).Site == "google"
		if gmail {
			gmailRcpts++
		}
		if strings.HasPrefix(r, fullLocal) {
			if gmail {
				fullGmail++
			} else {
				fullOther++
			}
		}
	}
	th, _ := smtpsink.Provider("gmail")
	th.Match = "*@gmail.demo"
	th.PerHour = gmailPerHour(gmailRcpts)
	return smtpsink.New(smtpsink.Config{
		Addr:      "127.0.0.1:0",
		Domain:    "mx.kiln.demo",
		Rules:     sinkRules(fullGmail, fullOther),
		Throttles: []smtpsink.Throttle{th},
		Clock:     clk,
		Discard:   true,
	})
}

// providerOf returns the provider of a recipient address or domain.
func providerOf(addr string) *provider {
	dom := strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
	for _, p := range providers {
		for _, d := range p.Domains {
			if d == dom {
				return p
			}
		}
	}
	return nil
}

// lookup replaces DNS: every simulated domain has its provider's MX host,
// at the sink's address; any other domain does not exist.
func lookup(sinkIP netip.Addr) mta.MXLookup {
	return func(ctx context.Context, domain string) ([]mta.Host, time.Duration, *policy.Reply) {
		if strings.EqualFold(domain, domainOf(sender)) {
			// The campaign's own domain takes kiln's bounce notices.
			return []mta.Host{{Name: "mx." + domainOf(sender), Addrs: []netip.Addr{sinkIP}}}, time.Hour, nil
		}
		p := providerOf("@" + domain)
		if p == nil {
			r := policy.Reply{Code: 550, Enhanced: "5.1.2", Command: "DNS",
				Line: "550 5.1.2 " + domain + ": domain not found (the demo knows only its simulated providers)"}
			return nil, 0, &r
		}
		return []mta.Host{{Name: p.MX, Addrs: []netip.Addr{sinkIP}}}, time.Hour, nil
	}
}

// egressName is the demo's one egress address.
const egressName = "demo-ip"

// kilnConfig is kiln's configuration for the demo: its defaults, with the
// listeners on loopback, delivery to the sink's port, and one egress on
// 127.0.0.1 warming up on the demo plan.
func kilnConfig(c *Config, dataDir string, sinkPort int, shares map[string]int) (*configs.Config, error) {
	cfg := configs.Default()
	cfg.Hostname = "kiln.demo"
	cfg.DataDir = dataDir
	cfg.Submission.Listen = []configs.HostPort{configs.HostPort(c.Listen)}
	cfg.Admin.Listen = configs.HostPort(c.Admin)
	cfg.Delivery.Port = sinkPort
	// The demo's data is small; do not refuse it on a nearly full disk.
	cfg.Queue.MinFreeDisk = 0
	cfg.Log.Events = "events.log"
	cfg.Egress = []warmup.Egress{{Name: egressName, Source: "127.0.0.1", EHLO: "out1.kiln.demo", Plan: "demo"}}
	cfg.Warmup.Plan = []warmup.Plan{plan(shares)}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("the demo's configuration: %w", err)
	}
	return cfg, nil
}
