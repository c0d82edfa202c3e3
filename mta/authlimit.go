package mta

import (
	"net/netip"
	"sync"
	"time"
)

// authLimiter counts failed AUTH attempts per client address in a sliding
// window. Past the limit the address may not try again until its oldest
// failure leaves the window, which turns password guessing from thousands of
// tries a minute into a handful.
type authLimiter struct {
	max    int
	window time.Duration

	mu       sync.Mutex
	failures map[netip.Addr][]time.Time
	swept    time.Time
}

func newAuthLimiter(max int, window time.Duration) *authLimiter {
	return &authLimiter{max: max, window: window, failures: map[netip.Addr][]time.Time{}}
}

// blocked reports whether ip has used up its failures.
func (a *authLimiter) blocked(ip netip.Addr, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.recent(ip, now)) >= a.max
}

// fail records a failure and returns how many are in the window now.
func (a *authLimiter) fail(ip netip.Addr, now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := append(a.recent(ip, now), now)
	a.failures[ip] = f
	if now.Sub(a.swept) > a.window {
		// Forget addresses whose failures have all aged out, so the map
		// does not grow with every address that ever failed once.
		for k := range a.failures {
			a.recent(k, now)
		}
		a.swept = now
	}
	return len(f)
}

func (a *authLimiter) recent(ip netip.Addr, now time.Time) []time.Time {
	f := a.failures[ip]
	i := 0
	for i < len(f) && now.Sub(f[i]) >= a.window {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(a.failures, ip)
		return nil
	}
	a.failures[ip] = f
	return f
}
