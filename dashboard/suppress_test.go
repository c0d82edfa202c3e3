package dashboard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"kiln/internal/clock"
	"kiln/policy/suppress"
)

// TestSuppressList runs the adapter on kiln's real suppression list.
func TestSuppressList(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithSyncWrites(true))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	clk := clock.NewFake(t0)
	l, err := suppress.Open(db, clk, suppress.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, e := range []suppress.Entry{
		{Scope: "shop", Address: "Gone@Gmail.example", Reason: "userunknown", Source: suppress.SourceReply, Rule: "hard.5.1.1", QueueID: "0f8zq3x1k2m4n5p6"},
		{Scope: "shop", Address: "gina@yahoo.example", Reason: "feedback", Source: suppress.SourceComplaint},
		{Scope: "news", Address: "gone@gmail.example", Reason: "userunknown", Source: suppress.SourceReply},
		{Address: "angry@yahoo.example", Reason: "userunknown", Source: suppress.SourceManual},
	} {
		if _, _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	s := SuppressList(l, clk)
	ctx := context.Background()
	search := func(q SuppressionQuery) []string {
		t.Helper()
		q.Limit = 10
		got, _, err := s.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range got {
			out = append(out, e.Account+"/"+e.Address)
		}
		return out
	}
	for _, c := range []struct {
		q    SuppressionQuery
		want string
	}{
		{SuppressionQuery{}, "[/angry@yahoo.example news/gone@gmail.example shop/gina@yahoo.example shop/gone@gmail.example]"},
		{SuppressionQuery{Account: "shop", Text: "G"}, "[shop/gina@yahoo.example shop/gone@gmail.example]"},
		{SuppressionQuery{Text: "gone@"}, "[news/gone@gmail.example shop/gone@gmail.example]"},
		{SuppressionQuery{Text: "@YAHOO.example"}, "[/angry@yahoo.example shop/gina@yahoo.example]"},
		{SuppressionQuery{Global: true}, "[/angry@yahoo.example]"},
	} {
		if got := fmt.Sprint(search(c.q)); got != c.want {
			t.Errorf("%+v: %s, want %s", c.q, got, c.want)
		}
	}
	got, _, _ := s.Search(ctx, SuppressionQuery{Account: "shop", Text: "gone", Limit: 1})
	if len(got) != 1 || got[0].Rule != "hard.5.1.1" || got[0].QueueID != "0f8zq3x1k2m4n5p6" || got[0].Source != "reply" {
		t.Fatalf("entry: %+v", got)
	}
	if ok, err := s.Remove(ctx, "shop", "GONE@gmail.example"); !ok || err != nil {
		t.Fatalf("remove: %v %v", ok, err)
	}
	if ok, _ := s.Remove(ctx, "shop", "gone@gmail.example"); ok {
		t.Fatal("removed twice")
	}
	if got := fmt.Sprint(search(SuppressionQuery{Text: "gone"})); got != "[news/gone@gmail.example]" {
		t.Fatalf("after removal: %s", got)
	}
}
