package loadgen

import (
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram: each power of two of nanoseconds
// is cut into 64 buckets, so a percentile is within 1.6% of the truth, in
// fixed memory however long the run, and two histograms merge by addition.
// The maximum is kept exactly.
type hist struct {
	counts [64 * 64]uint32
	n      uint64
	sum    time.Duration
	max    time.Duration
}

const subBits = 6 // 64 buckets per power of two

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits // >= 1
	i := e<<subBits + int(v>>(e-1)) - 1<<subBits
	if i >= len(hist{}.counts) {
		return len(hist{}.counts) - 1
	}
	return i
}

// upper is the largest value that falls in bucket i.
func upper(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i >> subBits
	m := uint64(i&(1<<subBits-1)) + 1<<subBits
	return (m+1)<<(e-1) - 1
}

func (h *hist) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.sum += d
	if d > h.max {
		h.max = d
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the upper edge of the bucket holding the q-th value
// (0 < q <= 1), capped at the exact maximum.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += uint64(c)
		if seen >= rank {
			v := time.Duration(upper(i))
			if v > h.max {
				v = h.max
			}
			return v
		}
	}
	return h.max
}

// Latency summarises the time from the final dot to the server's 250.
type Latency struct {
	Count                    int
	Mean, P50, P90, P99, Max time.Duration
}

func (h *hist) latency() Latency {
	l := Latency{Count: int(h.n), P50: h.quantile(0.50), P90: h.quantile(0.90), P99: h.quantile(0.99), Max: h.max}
	if h.n > 0 {
		l.Mean = h.sum / time.Duration(h.n)
	}
	return l
}
