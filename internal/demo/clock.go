package demo

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln/internal/clock"
)

// simClock is the demo's clock: a clock.Fake moved forward in small steps at
// speed times the wall clock, so that kiln's warm-up days, retry backoffs and
// the providers' hourly limits play out in seconds. Everything time-based in
// kiln reads its clock (DESIGN.md invariant 6), so a faster clock changes
// nothing but how long one waits; network timeouts stay on the wall clock.
type simClock struct {
	*clock.Fake
	speed float64
	step  time.Duration // wall time between two steps
}

func newSimClock(start time.Time, speed float64, step time.Duration) *simClock {
	return &simClock{Fake: clock.NewFake(start), speed: speed, step: step}
}

// run moves the clock until ctx ends.
func (c *simClock) run(ctx context.Context) {
	t := time.NewTicker(c.step)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d := now.Sub(last)
			last = now
			c.Advance(time.Duration(float64(d) * c.speed))
		}
	}
}

// clockFile keeps the simulated time in a kept data directory, so that a
// second run on the same data goes on from where the first stopped instead of
// going back in time behind the queue and the warm-up counters.
const clockFile = "demo-clock"

// startTime is where the simulated clock starts: half an hour before the
// default warm-up window opens (08:00 UTC) on the current day, or where a
// previous run on dir stopped.
func startTime(dir string, wall time.Time) time.Time {
	if dir != "" {
		if b, err := os.ReadFile(filepath.Join(dir, clockFile)); err == nil {
			if t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b))); err == nil {
				return t.Add(time.Minute)
			}
		}
	}
	d := wall.UTC()
	return time.Date(d.Year(), d.Month(), d.Day(), 7, 30, 0, 0, time.UTC)
}

func saveTime(dir string, t time.Time) error {
	return os.WriteFile(filepath.Join(dir, clockFile), []byte(t.UTC().Format(time.RFC3339)+"\n"), 0o600)
}
