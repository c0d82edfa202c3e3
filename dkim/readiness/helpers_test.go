package readiness

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"kiln/internal/fakedns"
	"kiln/mta/resolve"
)

// world starts a fake DNS server and kiln's resolver pointed at it.
func world(t *testing.T) (*fakedns.Server, *resolve.Resolver) {
	t.Helper()
	s := fakedns.Start(t)
	r, err := resolve.New(resolve.Config{
		Servers: []string{s.Addr()}, Timeout: 300 * time.Millisecond, Attempts: 1,
		FailTTL: -1, MaxNegativeTTL: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }
