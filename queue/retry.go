package queue

import (
	"math/rand/v2"
	"time"
)

// Backoff is the wait before retry number attempt (1 for the first retry,
// after the first failed attempt):
//
//	attempt  1     2      3      4    5    6    7 ...
//	wait     first 2x     4x     8x   ...  capped at max
//	default  5m    10m    20m    40m  80m  160m 4h, 4h, ... until the message expires
//
// RFC 5321 §4.5.4.1 asks for a retry interval of at least 30 minutes in
// general; the first retries come sooner because most temporary failures
// (greylisting, a busy server) clear within minutes, and the doubling soon
// passes 30 minutes. The jitter (up to ±10%, drawn from rnd) exists so that
// messages that failed together, such as a whole campaign deferred by one
// provider or a queue recovered after a restart, do not all retry in the same
// instant. It is a pure function of its arguments so the schedule can be
// table-tested.
func Backoff(attempt int, first, max time.Duration, rnd *rand.Rand) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := first
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if rnd != nil && d > 0 {
		span := int64(d) / 5 // ±10%
		if span > 0 {
			d += time.Duration(rnd.Int64N(span) - span/2)
		}
	}
	return d
}
