package dashboard

import (
	"context"
	"strings"

	"kiln/internal/clock"
	"kiln/policy/suppress"
)

// SuppressList adapts kiln's suppression list to Suppressions. A search
// text starting with "@" finds a domain (Filter.Search); any other text is
// an address prefix (Filter.Prefix), which seeks in the list's index when an
// account (or the global scope) is chosen.
func SuppressList(l *suppress.List, clk clock.Clock) Suppressions {
	if clk == nil {
		clk = clock.Real{}
	}
	return listAdapter{l, clk}
}

type listAdapter struct {
	l   *suppress.List
	clk clock.Clock
}

func (a listAdapter) Search(ctx context.Context, q SuppressionQuery) ([]Suppression, string, error) {
	f := suppress.Filter{Scope: q.Account, Global: q.Global && q.Account == ""}
	switch text := strings.ToLower(strings.TrimSpace(q.Text)); {
	case text == "":
	case strings.HasPrefix(text, "@"):
		f.Search = text
	default:
		f.Prefix = text
	}
	es, next, err := a.l.List(f, q.Cursor, q.Limit, a.clk.Now())
	if err != nil {
		return nil, "", err
	}
	out := make([]Suppression, 0, len(es))
	for _, e := range es {
		out = append(out, Suppression{Account: e.Scope, Address: e.Address, Reason: e.Reason, Source: string(e.Source),
			Rule: e.Rule, Reply: e.Reply, QueueID: e.QueueID, Created: e.Created, Expires: e.Expires})
	}
	return out, next, nil
}

func (a listAdapter) Remove(ctx context.Context, account, address string) (bool, error) {
	_, ok, err := a.l.Remove(account, address)
	return ok, err
}
