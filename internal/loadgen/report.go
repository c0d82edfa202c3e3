package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"time"
)

// Report is what a run did.
type Report struct {
	Elapsed        time.Duration
	Messages       int            // messages attempted
	Accepted       int            // answered 250 after the final dot
	Failed         int            // refused or lost at some stage
	RcptAccepted   int            // recipients of the accepted messages
	RcptRefused    int            // recipients refused at RCPT
	Bytes          int64          // size of the accepted messages
	Connections    int            // connections that got ready for MAIL
	TLSConnections int            // of those, over TLS
	Errors         map[string]int // every refusal and lost connection, by stage and reply ("RCPT 550 5.1.1")
	Latency        Latency        // from the final dot to the 250, accepted messages only
	CPU            time.Duration  // user and system CPU of this process during the run
}

// Rate is accepted messages per second.
func (r *Report) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Accepted) / r.Elapsed.Seconds()
}

// CPUPerMessage is this process's CPU per attempted message.
func (r *Report) CPUPerMessage() time.Duration {
	if r.Messages == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Messages)
}

func (r *run) totals() stats {
	var t stats
	for _, sh := range r.shards {
		sh.mu.Lock()
		t.add(&sh.stats)
		sh.mu.Unlock()
	}
	return t
}

func (r *run) report(elapsed, cpu time.Duration) *Report {
	t := r.totals()
	rep := &Report{
		Elapsed: elapsed, Messages: t.messages, Accepted: t.accepted, Failed: t.failed,
		RcptAccepted: t.rcptOK, RcptRefused: t.rcptRefused, Bytes: t.bytes,
		Connections: t.conns, TLSConnections: t.tlsConns, Errors: t.errors,
		Latency: t.lat.latency(), CPU: cpu,
	}
	if rep.Errors == nil {
		rep.Errors = map[string]int{}
	}
	return rep
}

type snapshot struct {
	at       time.Time
	accepted int
}

// progress writes one line about the run so far and returns the new
// snapshot for the next interval's rate.
func (r *run) progress(last snapshot) snapshot {
	t := r.totals()
	now := time.Now()
	l := t.lat.latency()
	fmt.Fprintf(r.cfg.Progress, "%s: %d sent, %d accepted, %d failed; %.0f/s (last %s: %.0f/s); after the dot p50 %s p90 %s p99 %s max %s\n",
		now.Sub(r.start).Round(time.Second), t.messages, t.accepted, t.failed,
		float64(t.accepted)/now.Sub(r.start).Seconds(), now.Sub(last.at).Round(time.Second),
		float64(t.accepted-last.accepted)/now.Sub(last.at).Seconds(),
		fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.Max))
	return snapshot{at: now, accepted: t.accepted}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

// WriteText prints the report for a person.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "messages    %d sent, %d accepted, %d failed in %s: %.1f accepted/s\n",
		r.Messages, r.Accepted, r.Failed, r.Elapsed.Round(time.Millisecond), r.Rate())
	fmt.Fprintf(w, "recipients  %d accepted, %d refused\n", r.RcptAccepted, r.RcptRefused)
	fmt.Fprintf(w, "connections %d (%d TLS), %.1f MiB accepted\n", r.Connections, r.TLSConnections, float64(r.Bytes)/(1<<20))
	l := r.Latency
	fmt.Fprintf(w, "250 after the final dot: p50 %s  p90 %s  p99 %s  max %s  mean %s  (%d replies)\n",
		fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.Max), fmtDur(l.Mean), l.Count)
	fmt.Fprintf(w, "loadgen CPU %s, %s per message\n", r.CPU.Round(time.Millisecond), fmtDur(r.CPUPerMessage()))
	if len(r.Errors) > 0 {
		fmt.Fprintln(w, "errors:")
		keys := make([]string, 0, len(r.Errors))
		for k := range r.Errors {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if r.Errors[keys[i]] != r.Errors[keys[j]] {
				return r.Errors[keys[i]] > r.Errors[keys[j]]
			}
			return keys[i] < keys[j]
		})
		for _, k := range keys {
			fmt.Fprintf(w, "  %8d  %s\n", r.Errors[k], k)
		}
	}
}

// ms is a duration written in JSON as milliseconds.
type ms time.Duration

func (d ms) MarshalJSON() ([]byte, error) {
	return json.Marshal(math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000)
}

type latencyJSON struct {
	Count int `json:"count"`
	Mean  ms  `json:"mean"`
	P50   ms  `json:"p50"`
	P90   ms  `json:"p90"`
	P99   ms  `json:"p99"`
	Max   ms  `json:"max"`
}

// MarshalJSON writes the machine-readable summary ("kiln loadgen --json").
func (r *Report) MarshalJSON() ([]byte, error) {
	l := r.Latency
	return json.Marshal(struct {
		Elapsed        float64        `json:"elapsed_seconds"`
		Messages       int            `json:"messages"`
		Accepted       int            `json:"accepted"`
		Failed         int            `json:"failed"`
		Rate           float64        `json:"messages_per_second"`
		RcptAccepted   int            `json:"recipients_accepted"`
		RcptRefused    int            `json:"recipients_refused"`
		Bytes          int64          `json:"bytes"`
		Connections    int            `json:"connections"`
		TLSConnections int            `json:"tls_connections"`
		Errors         map[string]int `json:"errors"`
		Latency        latencyJSON    `json:"latency_ms"`
		CPU            ms             `json:"cpu_ms"`
		CPUPer         float64        `json:"cpu_us_per_message"`
	}{
		Elapsed: math.Round(r.Elapsed.Seconds()*1000) / 1000, Messages: r.Messages, Accepted: r.Accepted,
		Failed: r.Failed, Rate: math.Round(r.Rate()*10) / 10, RcptAccepted: r.RcptAccepted, RcptRefused: r.RcptRefused,
		Bytes: r.Bytes, Connections: r.Connections, TLSConnections: r.TLSConnections, Errors: r.Errors,
		Latency: latencyJSON{l.Count, ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max)},
		CPU:     ms(r.CPU), CPUPer: math.Round(float64(r.CPUPerMessage())/float64(time.Microsecond)*10) / 10,
	})
}
