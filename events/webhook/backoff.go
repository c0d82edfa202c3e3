package webhook

import "time"

// Retry schedule of a failing endpoint, before jitter:
//
//	failure  1    2    3    4     5     6     7+
//	delay    5s   10s  20s  40s   80s   160s  300s
//
// so a receiver that is down for an hour sees a dozen or so attempts, and
// one that comes back is found within five minutes.
const (
	RetryFirst = 5 * time.Second
	RetryMax   = 5 * time.Minute
)

// Backoff is the wait after the failures-th failed attempt in a row: the
// schedule above, scaled by 0.5 + rnd/2 (rnd in [0, 1)). The jitter keeps
// many endpoints that failed together, say behind one load balancer, from
// retrying in lockstep.
func Backoff(failures int, rnd float64) time.Duration {
	d := RetryMax
	if failures < 1 {
		failures = 1
	}
	if failures <= 16 {
		d = min(RetryFirst<<(failures-1), RetryMax)
	}
	rnd = min(max(rnd, 0), 1)
	return d/2 + time.Duration(rnd*float64(d/2))
}
