package suppress

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"User@Example.COM", "user@example.com"},
		{" <a.b@example.com> ", "a.b@example.com"},
		{"a+tag@example.com", "a+tag@example.com"},
		{"a@example.com.", "a@example.com"},
		{"x@Bücher.de", "x@xn--bcher-kva.de"},
		{"Ünï@bücher.de", "ünï@xn--bcher-kva.de"},
		{`"odd@local"@example.com`, `"odd@local"@example.com`},
		{"a@[192.0.2.1]", "a@[192.0.2.1]"},
	} {
		got, err := Normalize(c.in)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "nobody", "@example.com", "a@", "a b@example.com", "a@exa mple.com",
		"a\x00@example.com", "a@b@", "a@\xff\xfe", strings.Repeat("a", 400) + "@example.com", "a@ex<>ample.com"} {
		if got, err := Normalize(in); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", in, got)
		} else if !errors.Is(err, ErrAddress) {
			t.Errorf("Normalize(%q): %v is not ErrAddress", in, err)
		}
	}
}

func TestAddCheckRemove(t *testing.T) {
	w := newWorld(t, Config{})
	got, changed, err := w.l.Add(Entry{Address: "Gone@Example.com", Reason: "userunknown", Source: SourceReply,
		Reply: "550 5.1.1 <gone@example.com>: user unknown", Rule: "user-unknown", QueueID: "q1", Status: "5.1.1"})
	if err != nil || !changed {
		t.Fatalf("Add: %v, changed %v", err, changed)
	}
	if got.Address != "gone@example.com" || got.Scope != "" || !got.Created.Equal(t0) || !got.Permanent() {
		t.Errorf("added %+v", got)
	}
	e, ok := checked(t, w.l, "acme", "GONE@example.com", t0)
	if !ok || e.Reason != "userunknown" || e.Rule != "user-unknown" || e.QueueID != "q1" || e.Status != "5.1.1" ||
		e.Reply != "550 5.1.1 <gone@example.com>: user unknown" || e.Source != SourceReply {
		t.Errorf("Check = %+v, %v", e, ok)
	}
	if _, ok := checked(t, w.l, "acme", "other@example.com", t0); ok {
		t.Error("an address never added is suppressed")
	}
	if _, ok := checked(t, w.l, "", "not an address", t0); ok {
		t.Error("an invalid address is suppressed")
	}
	// Adding it again changes nothing.
	if _, changed, _ := w.l.Add(Entry{Address: "gone@example.com", Reason: "userunknown", Source: SourceReply}); changed {
		t.Error("adding the same entry again changed the list")
	}
	removed, found, err := w.l.Remove("", "gone@EXAMPLE.com")
	if err != nil || !found || removed.Address != "gone@example.com" {
		t.Fatalf("Remove = %+v, %v, %v", removed, found, err)
	}
	if _, ok := checked(t, w.l, "acme", "gone@example.com", t0); ok {
		t.Error("still suppressed after Remove")
	}
	if _, found, _ := w.l.Remove("", "gone@example.com"); found {
		t.Error("removed twice")
	}
	if _, _, err := w.l.Add(Entry{Address: "nope"}); !errors.Is(err, ErrAddress) {
		t.Errorf("Add of a bad address: %v", err)
	}
	if _, _, err := w.l.Add(Entry{Address: "a@example.com", Source: "telepathy"}); err == nil {
		t.Error("Add with an unknown source worked")
	}
}

func TestScopes(t *testing.T) {
	w := newWorld(t, Config{})
	mustAdd(t, w.l, Entry{Scope: "acme", Address: "a@example.com", Source: SourceComplaint})
	mustAdd(t, w.l, Entry{Address: "g@example.com"})
	mustAdd(t, w.l, Entry{Scope: "zeta", Address: "a@example.com", Source: SourceUnsubscribe})

	for _, c := range []struct {
		account, addr string
		want          bool
		scope         string
	}{
		{"acme", "a@example.com", true, "acme"},
		{"other", "a@example.com", false, ""},
		{"", "a@example.com", false, ""},
		{"acme", "g@example.com", true, ""},
		{"", "g@example.com", true, ""},
		{"zeta", "a@example.com", true, "zeta"},
	} {
		e, ok := checked(t, w.l, c.account, c.addr, t0)
		if ok != c.want || (ok && e.Scope != c.scope) {
			t.Errorf("Check(%q, %q) = %+v, %v; want %v in scope %q", c.account, c.addr, e, ok, c.want, c.scope)
		}
	}
	// The account's own entry wins over the global one.
	mustAdd(t, w.l, Entry{Address: "a@example.com", Reason: "userunknown", Source: SourceReply})
	if e, _ := checked(t, w.l, "acme", "a@example.com", t0); e.Scope != "acme" {
		t.Errorf("account entry not preferred: %+v", e)
	}
	scopes, err := w.l.Scopes()
	if err != nil || strings.Join(scopes, ",") != ",acme,zeta" {
		t.Errorf("Scopes = %q, %v", scopes, err)
	}
	removed, err := w.l.RemoveEverywhere("A@example.com")
	if err != nil || len(removed) != 3 {
		t.Fatalf("RemoveEverywhere = %+v, %v", removed, err)
	}
	for _, acct := range []string{"", "acme", "zeta"} {
		if _, ok := checked(t, w.l, acct, "a@example.com", t0); ok {
			t.Errorf("still suppressed for %q", acct)
		}
	}
	if _, ok := checked(t, w.l, "", "g@example.com", t0); !ok {
		t.Error("RemoveEverywhere removed another address")
	}
	if _, _, err := w.l.Add(Entry{Scope: "has space", Address: "a@example.com"}); err == nil {
		t.Error("a scope with a space was accepted")
	}
}

func TestMatchBaseAddress(t *testing.T) {
	for _, match := range []bool{false, true} {
		w := newWorld(t, Config{MatchBaseAddress: match})
		mustAdd(t, w.l, Entry{Address: "user@example.com"})
		mustAdd(t, w.l, Entry{Address: "other+news@example.com"})
		if _, ok := checked(t, w.l, "", "user+promo@example.com", t0); ok != match {
			t.Errorf("match_base_address %v: tagged address suppressed = %v", match, ok)
		}
		if _, ok := checked(t, w.l, "", "other@example.com", t0); ok {
			t.Errorf("match_base_address %v: a tagged entry covers the base address", match)
		}
		if _, ok := checked(t, w.l, "", "other+news@example.com", t0); !ok {
			t.Errorf("match_base_address %v: exact tagged address not suppressed", match)
		}
		if _, ok := checked(t, w.l, "", "+x@example.com", t0); ok {
			t.Errorf("match_base_address %v: a local part starting with + matched", match)
		}
	}
}

func TestExpiryBySourceAndReason(t *testing.T) {
	cfg := Config{
		Expiry:       map[string]Duration{"manual": Duration(7 * 24 * time.Hour)},
		ReasonExpiry: map[string]Duration{"hostunknown": Duration(180 * 24 * time.Hour)},
	}
	w := newWorld(t, cfg)
	day := 24 * time.Hour
	for _, c := range []struct {
		e    Entry
		want time.Duration // 0: never
	}{
		{Entry{Address: "hard@example.com", Reason: "userunknown", Source: SourceReply}, 0},
		{Entry{Address: "late@example.com", Reason: "userunknown", Source: SourceLateBounce}, 0},
		{Entry{Address: "fbl@example.com", Source: SourceComplaint}, 0},
		{Entry{Address: "unsub@example.com", Source: SourceUnsubscribe}, 0},
		{Entry{Address: "full@example.com", Reason: "mailboxfull", Source: SourceSoftFailure}, 90 * day},
		{Entry{Address: "op@example.com", Source: SourceManual}, 7 * day},
		{Entry{Address: "imp@example.com", Source: SourceImport}, 0},
		{Entry{Address: "nxdomain@example.com", Reason: "hostunknown", Source: SourceReply}, 180 * day},
		{Entry{Address: "given@example.com", Expires: t0.Add(3 * day)}, 3 * day},
	} {
		got := mustAdd(t, w.l, c.e)
		if c.want == 0 && !got.Permanent() || c.want != 0 && !got.Expires.Equal(t0.Add(c.want)) {
			t.Errorf("%s (%s/%s) expires %v, want +%v", c.e.Address, got.Source, got.Reason, got.Expires, c.want)
		}
	}
	if _, ok := checked(t, w.l, "", "op@example.com", t0.Add(7*day-time.Second)); !ok {
		t.Error("manual entry gone before its expiry")
	}
	if _, ok := checked(t, w.l, "", "op@example.com", t0.Add(7*day)); ok {
		t.Error("manual entry still counts at its expiry")
	}
	consistent(t, w.db)

	// Nothing is due yet.
	if n, err := w.l.Sweep(t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("early Sweep = %d, %v", n, err)
	}
	var changes []Change
	var mu sync.Mutex
	w.l.OnChange(func(c Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })
	n, err := w.l.Sweep(t0.Add(91 * day))
	if err != nil || n != 3 {
		t.Fatalf("Sweep = %d, %v; want 3 (given, op, full)", n, err)
	}
	for _, gone := range []string{"given@example.com", "op@example.com", "full@example.com"} {
		if _, found, _ := w.l.Get("", gone); found {
			t.Errorf("%s still stored after the sweep", gone)
		}
	}
	for _, kept := range []string{"hard@example.com", "nxdomain@example.com", "imp@example.com"} {
		if _, found, _ := w.l.Get("", kept); !found {
			t.Errorf("%s swept", kept)
		}
	}
	mu.Lock()
	if len(changes) != 3 || changes[0].Op != OpExpired {
		t.Errorf("changes = %+v", changes)
	}
	mu.Unlock()
	consistent(t, w.db)
	if n, _ := w.l.Sweep(t0.Add(365 * day)); n != 1 {
		t.Errorf("second Sweep removed %d, want nxdomain", n)
	}
	if c := countPrefix(t, w.db, prefixExpiry); c != 0 {
		t.Errorf("%d index keys left", c)
	}
}

func TestRunSweepsOnTheClock(t *testing.T) {
	w := newWorld(t, Config{SweepInterval: Duration(time.Hour)})
	mustAdd(t, w.l, Entry{Address: "a@example.com", Expires: t0.Add(90 * time.Minute)})
	ctx, cancel := contextWithCancel()
	done := make(chan struct{})
	go func() { w.l.Run(ctx); close(done) }()
	waitFor(t, func() bool { return w.clk.Waiters() == 1 })
	w.clk.Advance(time.Hour) // the sweep at +1h finds nothing due
	waitFor(t, func() bool { return w.clk.Waiters() == 1 })
	if _, found, _ := w.l.Get("", "a@example.com"); !found {
		t.Fatal("swept before its expiry")
	}
	w.clk.Advance(time.Hour)
	waitFor(t, func() bool {
		_, found, _ := w.l.Get("", "a@example.com")
		return !found
	})
	cancel()
	<-done
}

func TestStrongerReplacesWeaker(t *testing.T) {
	w := newWorld(t, Config{})
	day := 24 * time.Hour
	add := func(e Entry) (Entry, bool) {
		t.Helper()
		got, changed, err := w.l.Add(e)
		if err != nil {
			t.Fatal(err)
		}
		return got, changed
	}
	a := "a@example.com"
	add(Entry{Address: a, Reason: "mailboxfull", Source: SourceSoftFailure}) // 90 days
	if got, changed := add(Entry{Address: a, Expires: t0.Add(10 * day)}); changed || got.Source != SourceSoftFailure {
		t.Errorf("a shorter manual entry replaced a longer one: %+v", got)
	}
	if got, changed := add(Entry{Address: a, Source: SourceImport}); !changed || got.Source != SourceImport || !got.Permanent() {
		t.Errorf("a permanent entry did not replace an expiring one: %+v %v", got, changed)
	}
	if _, changed := add(Entry{Address: a, Source: SourceManual}); changed {
		t.Error("manual replaced import (same rank)")
	}
	if got, changed := add(Entry{Address: a, Reason: "userunknown", Source: SourceReply, QueueID: "q9"}); !changed || got.QueueID != "q9" {
		t.Errorf("a hard bounce did not replace an import: %+v", got)
	}
	if got, changed := add(Entry{Address: a, Source: SourceComplaint}); !changed || got.Reason != "feedback" {
		t.Errorf("a complaint did not replace a bounce: %+v", got)
	}
	if _, changed := add(Entry{Address: a, Reason: "userunknown", Source: SourceLateBounce}); changed {
		t.Error("a bounce replaced a complaint")
	}
	// An expired entry is replaced by anything.
	b := "b@example.com"
	add(Entry{Address: b, Source: SourceComplaint, Expires: t0.Add(time.Hour)})
	w.clk.Advance(2 * time.Hour)
	if got, changed := add(Entry{Address: b, Reason: "mailboxfull", Source: SourceSoftFailure}); !changed || got.Source != SourceSoftFailure {
		t.Errorf("an expired entry was kept: %+v", got)
	}
	// A later expiry from the same source extends.
	w.clk.Advance(day)
	if got, changed := add(Entry{Address: b, Reason: "mailboxfull", Source: SourceSoftFailure}); !changed || !got.Expires.Equal(w.clk.Now().Add(90*day)) {
		t.Errorf("a later soft-failure entry did not extend: %+v", got)
	}
	consistent(t, w.db)
	if _, _, err := w.l.Add(Entry{Address: "c@example.com", Expires: t0}); err == nil {
		t.Error("an entry that has expired was added")
	}
}

func TestListFiltersAndPages(t *testing.T) {
	w := newWorld(t, Config{})
	for i := 0; i < 25; i++ {
		mustAdd(t, w.l, Entry{Address: fmt.Sprintf("u%02d@example.com", i), Source: SourceImport})
		mustAdd(t, w.l, Entry{Scope: "acme", Address: fmt.Sprintf("u%02d@other.org", i), Source: SourceComplaint})
	}
	w.clk.Advance(time.Hour)
	mustAdd(t, w.l, Entry{Address: "late@example.com", Reason: "userunknown", Source: SourceReply})
	mustAdd(t, w.l, Entry{Address: "brief@example.com", Expires: t0.Add(2 * time.Hour)})
	now := w.clk.Now()
	count := func(f Filter) int {
		t.Helper()
		n, cursor := 0, ""
		for {
			page, next, err := w.l.List(f, cursor, 7, now)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
			if next == "" {
				return n
			}
			cursor = next
		}
	}
	for _, c := range []struct {
		name string
		f    Filter
		want int
	}{
		{"all", Filter{}, 52},
		{"global", Filter{Global: true}, 27},
		{"acme", Filter{Scope: "acme"}, 25},
		{"nobody", Filter{Scope: "nobody"}, 0},
		{"reason", Filter{Reason: "userunknown"}, 1},
		{"source", Filter{Source: SourceComplaint}, 25},
		{"search domain", Filter{Search: "@other.org"}, 25},
		{"prefix scoped", Filter{Global: true, Prefix: "u1"}, 10},
		{"prefix all", Filter{Prefix: "u2"}, 10},
		{"since", Filter{Since: t0.Add(time.Minute)}, 2},
		{"after expiry", Filter{Search: "brief"}, 1},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("%s: %d entries, want %d", c.name, got, c.want)
		}
	}
	if page, _, _ := w.l.List(Filter{Search: "brief"}, "", 10, t0.Add(3*time.Hour)); len(page) != 0 {
		t.Error("an expired entry is listed")
	}
	page, next, _ := w.l.List(Filter{}, "", 3, now)
	if len(page) != 3 || next == "" || page[0].Scope != "" || page[0].Address != "brief@example.com" {
		t.Errorf("first page %+v next %q", page, next)
	}
	if _, _, err := w.l.List(Filter{}, "!!", 3, now); err == nil {
		t.Error("a bad cursor was accepted")
	}
}

// Concurrent adds and removes of the same addresses end with the store
// agreeing with itself: every expiring entry has exactly its index key.
func TestConcurrentAddRemove(t *testing.T) {
	w := newWorld(t, Config{})
	addrs := []string{"a@example.com", "b@example.com"}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				a := addrs[i%len(addrs)]
				var err error
				switch (g + i) % 4 {
				case 0:
					_, _, err = w.l.Add(Entry{Address: a, Expires: t0.Add(time.Duration(g*1000+i+1) * time.Minute)})
				case 1:
					_, _, err = w.l.Remove("", a)
				case 2:
					_, _, err = w.l.Add(Entry{Address: a, Reason: "mailboxfull", Source: SourceSoftFailure})
				case 3:
					_, _, err = w.l.Check("", a, t0)
				}
				if err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	consistent(t, w.db)
	if _, err := w.l.Sweep(t0.Add(1000 * 24 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, w.db, prefixEntry) + countPrefix(t, w.db, prefixExpiry); n != 0 {
		t.Errorf("%d keys left after everything expired", n)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	w := newWorld(t, Config{})
	mustAdd(t, w.l, Entry{Scope: "acme", Address: "a@example.com", Source: SourceComplaint, Reply: "abuse report"})
	mustAdd(t, w.l, Entry{Address: "b@example.com", Expires: t0.Add(time.Hour)})
	if _, _, err := w.l.SoftFail("acme", "c@example.com", "q1", fullDecision(), "452 full", t0); err != nil {
		t.Fatal(err)
	}
	w.reopen(t, Config{})
	if e, ok := checked(t, w.l, "acme", "a@example.com", t0); !ok || e.Reply != "abuse report" {
		t.Errorf("after reopen: %+v %v", e, ok)
	}
	if e, ok := checked(t, w.l, "", "b@example.com", t0); !ok || !e.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("after reopen: %+v %v", e, ok)
	}
	if n, _ := w.l.SoftCount("acme", "c@example.com", t0); n != 1 {
		t.Errorf("soft count after reopen = %d", n)
	}
	consistent(t, w.db)
}

func TestClosed(t *testing.T) {
	w := newWorld(t, Config{})
	w.l.Close()
	if _, _, err := w.l.Add(Entry{Address: "a@example.com"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if err := w.l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRecordEncoding(t *testing.T) {
	e := Entry{Scope: "s", Address: "a@example.com", Reason: "userunknown", Source: SourceReply, Reply: "550 ünïcode",
		Rule: "r", QueueID: "q", Status: "5.1.1", Note: "n", Created: t0, Expires: t0.Add(time.Hour)}
	got, err := decodeEntry("s", "a@example.com", encodeEntry(e))
	if err != nil || !got.Created.Equal(e.Created) || !got.Expires.Equal(e.Expires) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	got.Created, got.Expires = e.Created, e.Expires
	if got != e {
		t.Errorf("round trip: %+v, want %+v", got, e)
	}
	v := encodeEntry(e)
	for i := 0; i < len(v); i++ {
		decodeEntry("s", "a", v[:i]) // must not panic
	}
	if _, err := decodeEntry("s", "a", []byte{9}); err == nil {
		t.Error("unknown version decoded")
	}
}
