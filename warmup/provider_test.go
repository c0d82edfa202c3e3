package warmup

import (
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	c, err := New(Config{
		Provider: []Provider{
			{Name: "fastmail", MXSuffixes: []string{"messagingengine.com"}},
			{Name: "apple", MXSuffixes: []string{"mail.icloud.com", "apple-mx.example"}}, // replaces the built-in suffixes
		},
		Shaping: []ShapingOverride{{Domain: "Special.Example", Connections: 1}},
	}, openDB(t, t.TempDir()), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		domain string
		mx     []string
		want   string
	}{
		{"gmail.com", []string{"gmail-smtp-in.l.google.com.", "alt1.gmail-smtp-in.l.google.com", "ALT2.gmail-smtp-in.l.google.com"}, "google"},
		{"workspace.example", []string{"aspmx.l.google.com", "alt1.aspmx.l.googlemail.com"}, "google"},
		{"yahoo.com", []string{"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"}, "yahoo"},
		{"aol.com", []string{"mx-aol.mail.gm0.yahoodns.net"}, "yahoo"},
		{"hotmail.com", []string{"hotmail-com.olc.protection.outlook.com"}, "microsoft"},
		{"contoso.com", []string{"contoso-com.mail.protection.outlook.com"}, "microsoft365"},
		{"icloud.com", []string{"mx01.mail.icloud.com", "mx02.mail.icloud.com"}, "apple"},
		{"web.de", []string{"mx-ha02.web.de", "mx-ha03.web.de"}, "gmx"},
		{"gmx.net", []string{"mx00.gmx.net"}, "gmx"},
		{"mail.ru", []string{"mxs.mail.ru"}, "mailru"},
		{"yandex.ru", []string{"mx.yandex.ru"}, "yandex"},
		{"comcast.net", []string{"mx1a1.comcast.net", "mx2c1.comcast.net"}, "comcast"},
		{"zoho.example", []string{"mx.zoho.com", "mx2.zoho.com"}, "zoho"},
		{"proton.me", []string{"mail.protonmail.ch", "mailsec.protonmail.ch"}, "proton"},
		{"fm.example", []string{"in1-smtp.messagingengine.com"}, "fastmail"},
		// A domain that mixes providers is not lumped into either.
		{"mixed.example", []string{"aspmx.l.google.com", "mx.mixed.example"}, "mx:aspmx.l.google.com,mx.mixed.example"},
		// Unmatched: the sorted, de-duplicated, lower-cased MX set.
		{"a.example", []string{"MX2.host.example.", "mx1.host.example", "mx2.host.example"}, "mx:mx1.host.example,mx2.host.example"},
		{"b.example", []string{"mx2.host.example", "mx1.host.example"}, "mx:mx1.host.example,mx2.host.example"},
		// Suffixes match at label boundaries only.
		{"fake.example", []string{"mx.notgoogle.com"}, "mx:mx.notgoogle.com"},
		// Apple's suffixes were replaced: the built-in icloud.com is gone.
		{"old.example", []string{"mx.icloud.com"}, "mx:mx.icloud.com"},
		// A domain with its own shaping is its own site.
		{"special.example.", []string{"aspmx.l.google.com"}, "domain:special.example"},
		{"nomx.example", []string{"nomx.example"}, "mx:nomx.example"},
	}
	for _, tc := range cases {
		if got := c.Site(tc.domain, tc.mx); got != tc.want {
			t.Errorf("Site(%s, %v) = %q, want %q", tc.domain, tc.mx, got, tc.want)
		}
	}
}

func TestShapingDefaultsAndOverrides(t *testing.T) {
	cfg := oneEgress("")
	cfg.Egress = append(cfg.Egress, Egress{Name: "warm", Source: "192.0.2.9", Warm: true})
	cfg.Shaping = []ShapingOverride{{Provider: "yahoo", MessagesPerConnection: 10, Rate: Rate(50)}, {Domain: "tiny.example", Connections: 1}}
	h := newHarness(t, cfg, t0)
	now := t0.Add(9 * time.Hour)
	cases := []struct {
		egress, site string
		want         Shaping
	}{
		{"warm", "google", Shaping{5, 50, 100}},     // [K-ex]
		{"warm", "yahoo", Shaping{10, 10, 50}},      // override on [K-ex] 10/20
		{"warm", "apple", Shaping{10, 5, 100}},      // [K-ex]
		{"warm", "mx:mx.x.example", defaultShaping}, // [K-ex] default
		{"warm", "domain:tiny.example", Shaping{1, 100, 100}},
		{"ip1", "google", Shaping{1, 50, 100}}, // day 1: one connection
	}
	for _, tc := range cases {
		if got := h.c.Shaping(tc.egress, tc.site, now); got != tc.want {
			t.Errorf("Shaping(%s, %s) = %+v, want %+v", tc.egress, tc.site, got, tc.want)
		}
	}
	if err := h.c.SetDay("ip1", 10, now); err != nil {
		t.Fatal(err)
	}
	if got := h.c.Shaping("ip1", "google", now).Connections; got != 2 {
		t.Errorf("day 10 connections = %d, want 2", got)
	}
	if err := h.c.SetDay("ip1", 20, now); err != nil {
		t.Fatal(err)
	}
	if got := h.c.Shaping("ip1", "google", now).Connections; got != 5 {
		t.Errorf("day 20 connections = %d, want 5", got)
	}
}
