package suppress

import (
	"strings"
	"sync"
	"testing"
)

func observe(b *Breaker, account string, o Outcome, n int) (tripped int, why string) {
	for i := 0; i < n; i++ {
		if ok, w := b.Observe(account, o, t0); ok {
			tripped++
			why = w
		}
	}
	return tripped, why
}

func TestBreakerMinimumSample(t *testing.T) {
	b, _ := NewBreaker(nil, BreakerConfig{}, quietLog())
	// One bounce out of two messages: 1/100, not 50%.
	observe(b, "new", Delivered, 1)
	if n, _ := observe(b, "new", HardBounce, 1); n != 0 {
		t.Fatal("one bounce in two messages tripped the breaker")
	}
	// Four more, in the first few messages: 5/100 reaches 5%.
	if n, _ := observe(b, "new", HardBounce, 3); n != 0 {
		t.Fatal("tripped at 4 hard bounces")
	}
	n, why := observe(b, "new", HardBounce, 1)
	if n != 1 || !strings.Contains(why, "hard-bounce rate") || !strings.Contains(why, "minimum sample of 100") {
		t.Fatalf("5 hard bounces: tripped %d, why %q", n, why)
	}
	if ok, w := b.Tripped("new"); !ok || w != why {
		t.Errorf("Tripped = %v %q", ok, w)
	}
	// Tripped once: later outcomes do not trip it again.
	if n, _ := observe(b, "new", HardBounce, 10); n != 0 {
		t.Error("tripped twice")
	}
	if ok, _ := b.Tripped("other"); ok {
		t.Error("another account is tripped")
	}
}

func TestBreakerHardBounceRateOverWindow(t *testing.T) {
	b, _ := NewBreaker(nil, BreakerConfig{Window: 1000, MinSample: 100}, quietLog())
	// 4% over a full window: fine.
	for i := 0; i < 1000; i++ {
		o := Delivered
		if i%25 == 24 {
			o = HardBounce
		}
		if ok, why := b.Observe("acme", o, t0); ok {
			t.Fatalf("tripped at %d: %s", i, why)
		}
	}
	// The window slides: old outcomes leave it. A burst brings it to 5%:
	// 40 bounces in the window, 10 more replacing the oldest deliveries.
	tripped := 0
	for i := 0; i < 10 && tripped == 0; i++ {
		tripped, _ = observe(b, "acme", HardBounce, 1)
	}
	if tripped != 1 {
		st := b.State()
		t.Fatalf("not tripped at 5%%: %+v", st)
	}
	if st := b.State(); len(st) != 1 || !st[0].Tripped || st[0].Trip.HardBounces < 50 {
		t.Errorf("state %+v", st)
	}
}

func TestBreakerComplaintRate(t *testing.T) {
	b, _ := NewBreaker(nil, BreakerConfig{}, quietLog())
	observe(b, "acme", Delivered, 1000)
	if n, _ := observe(b, "acme", Complaint, 2); n != 0 {
		t.Fatal("2 complaints per 1000 deliveries tripped a 0.3% limit")
	}
	n, why := observe(b, "acme", Complaint, 1)
	if n != 1 || !strings.Contains(why, "complaint rate 0.3%") || !strings.Contains(why, "limit of 0.3%") {
		t.Fatalf("3 complaints per 1000: tripped %d, %q", n, why)
	}
	// Complaints leave the window with the outcomes they came with.
	b2, _ := NewBreaker(nil, BreakerConfig{Window: 1000}, quietLog())
	observe(b2, "acme", Delivered, 500)
	observe(b2, "acme", Complaint, 2)
	observe(b2, "acme", Delivered, 1000) // the slot that carried them leaves
	if n, _ := observe(b2, "acme", Complaint, 2); n != 0 {
		t.Error("complaints that left the window still count")
	}
	// A small account: complaints are divided by at least 1000.
	b3, _ := NewBreaker(nil, BreakerConfig{}, quietLog())
	observe(b3, "tiny", Delivered, 10)
	if n, _ := observe(b3, "tiny", Complaint, 2); n != 0 {
		t.Error("2 complaints on 10 messages tripped (minimum sample 1000)")
	}
	// Complaints before any outcome (after a restart) still count.
	b4, _ := NewBreaker(nil, BreakerConfig{}, quietLog())
	observe(b4, "acme", Complaint, 2)
	observe(b4, "acme", Delivered, 999)
	if n, _ := observe(b4, "acme", Complaint, 1); n != 1 {
		t.Error("complaints before the first outcome were lost")
	}
}

func TestBreakerOff(t *testing.T) {
	b, _ := NewBreaker(nil, BreakerConfig{HardBounceRate: Off, ComplaintRate: Off}, quietLog())
	if n, _ := observe(b, "acme", HardBounce, 500); n != 0 {
		t.Error("tripped with both limits off")
	}
	if n, _ := observe(b, "acme", Complaint, 500); n != 0 {
		t.Error("tripped with both limits off")
	}
}

func TestBreakerPersistsAndResets(t *testing.T) {
	w := newWorld(t, Config{})
	b, err := NewBreaker(w.db, BreakerConfig{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	observe(b, "acme", HardBounce, 5)
	if ok, _ := b.Tripped("acme"); !ok {
		t.Fatal("not tripped")
	}
	w.reopen(t, Config{})
	b, err = NewBreaker(w.db, BreakerConfig{}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ok, why := b.Tripped("acme")
	if !ok || !strings.Contains(why, "hard-bounce rate") {
		t.Fatalf("after a restart: %v %q", ok, why)
	}
	trips := b.Trips()
	if len(trips) != 1 || trips[0].Account != "acme" || trips[0].HardBounces != 5 || !trips[0].At.Equal(t0) {
		t.Errorf("Trips = %+v", trips)
	}
	if was, err := b.Reset("acme"); err != nil || !was {
		t.Fatalf("Reset = %v, %v", was, err)
	}
	if was, _ := b.Reset("acme"); was {
		t.Error("reset twice")
	}
	// Reset starts with an empty window.
	if n, _ := observe(b, "acme", HardBounce, 4); n != 0 {
		t.Error("tripped again at once after a reset")
	}
	w.reopen(t, Config{})
	b, _ = NewBreaker(w.db, BreakerConfig{}, quietLog())
	if ok, _ := b.Tripped("acme"); ok {
		t.Error("the reset did not survive a restart")
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b, _ := NewBreaker(nil, BreakerConfig{}, quietLog())
	var wg sync.WaitGroup
	var mu sync.Mutex
	trips := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				o := Delivered
				if i%10 == 0 {
					o = HardBounce
				}
				if ok, _ := b.Observe("acme", o, t0); ok {
					mu.Lock()
					trips++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if trips != 1 {
		t.Errorf("%d trips, want exactly 1", trips)
	}
}

func BenchmarkBreakerObserve(b *testing.B) {
	br, _ := NewBreaker(nil, BreakerConfig{HardBounceRate: Off}, quietLog())
	for i := 0; b.Loop(); i++ {
		o := Delivered
		if i%50 == 0 {
			o = HardBounce
		}
		br.Observe("acme", o, t0)
	}
}
