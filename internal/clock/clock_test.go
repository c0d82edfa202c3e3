package clock

import (
	"testing"
	"time"
)

func TestFakeAfterFiresOnlyWhenAdvancedPast(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	ch := f.After(time.Hour)
	f.Advance(59 * time.Minute)
	select {
	case <-ch:
		t.Fatal("fired before its time")
	default:
	}
	f.Advance(time.Minute)
	select {
	case got := <-ch:
		if !got.Equal(start.Add(time.Hour)) {
			t.Fatalf("fired with %v, want %v", got, start.Add(time.Hour))
		}
	default:
		t.Fatal("did not fire at its time")
	}
	if f.Waiters() != 0 {
		t.Fatalf("waiters = %d after firing", f.Waiters())
	}
}

func TestFakeNeverGoesBack(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	f.Set(start.Add(-time.Hour))
	if !f.Now().Equal(start) {
		t.Fatalf("clock went back to %v", f.Now())
	}
}

// At keeps its moment when the clock moves between a waiter's Now and its
// wait: a past moment fires at once, a future one only when reached.
func TestFakeAtUsesTheAbsoluteMoment(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(start)
	due := start.Add(5 * time.Minute)
	f.Advance(6 * time.Minute)
	select {
	case <-f.At(due):
	default:
		t.Fatal("a moment already passed did not fire at once")
	}
	later := f.At(start.Add(time.Hour))
	f.Advance(53 * time.Minute)
	select {
	case <-later:
		t.Fatal("fired before its moment")
	default:
	}
	f.Advance(time.Minute)
	select {
	case <-later:
	default:
		t.Fatal("did not fire at its moment")
	}
}
