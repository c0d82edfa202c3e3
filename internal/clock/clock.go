// Package clock is the one source of "now" for every decision kiln makes by time:
// retry and expiry in the queue, warm-up days and rate windows, suppression expiry.
// Production code uses Real; tests use Fake and move it forward by days in microseconds.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and wakes waiters. After behaves like time.After on the
// clock's own timeline, so a scheduler that sleeps until its next due item
// wakes when a test advances a Fake clock past that moment. At fires once the
// clock reaches t; a waiter that computed t earlier uses it, so a clock moved
// between its Now and its wait cannot push the wake-up later.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
	At(t time.Time) <-chan time.Time
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (Real) At(t time.Time) <-chan time.Time        { return time.After(time.Until(t)) }

// Fake is a clock that only moves when told to. The zero value is not usable;
// call NewFake.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// After returns a channel that receives the fake time once the clock has been
// advanced by at least d. A non-positive d fires at once.
func (f *Fake) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at(f.now.Add(d))
}

// At returns a channel that receives the fake time once the clock has reached
// t; a t not after the clock's time fires at once.
func (f *Fake) At(t time.Time) <-chan time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.at(t)
}

func (f *Fake) at(t time.Time) <-chan time.Time {
	ch := make(chan time.Time, 1)
	if !t.After(f.now) {
		ch <- f.now
		return ch
	}
	f.waiters = append(f.waiters, waiter{at: t, ch: ch})
	return ch
}

// Advance moves the clock forward by d and fires every waiter that is now due,
// earliest first.
func (f *Fake) Advance(d time.Duration) { f.Set(f.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires the waiters now due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	if t.After(f.now) {
		f.now = t
	}
	now := f.now
	sort.Slice(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	var due []waiter
	keep := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.at.After(now) {
			due = append(due, w)
		} else {
			keep = append(keep, w)
		}
	}
	f.waiters = keep
	f.mu.Unlock()
	for _, w := range due {
		w.ch <- now
	}
}

// Waiters reports how many After channels have not fired yet; tests use it to
// know a goroutine has gone to sleep before they advance the clock.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.waiters)
}
