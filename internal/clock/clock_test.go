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
