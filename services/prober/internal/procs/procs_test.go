package procs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestController(t *testing.T) {
	c := newController(Options{Max: 4, Raise: 0.6, Lower: 0.35, LowerAfter: 3})
	steps := []struct {
		cores   float64
		procs   int
		changed bool
	}{
		{0.3, 1, false},  // light: one P
		{0.59, 1, false}, // just under Raise
		{0.9, 4, true},   // busy: every P at once
		{0.2, 4, false},  // one quiet sample is not enough
		{0.2, 4, false},
		{0.8, 4, false}, // the average of the last 3 (0.4) is not under Lower
		{0.1, 4, false}, // (0.2+0.8+0.1)/3 = 0.37
		{0.1, 1, true},  // (0.8+0.1+0.1)/3 = 0.33: back to one P
		{0.5, 1, false},
		{0.7, 4, true},
		{0.1, 4, false}, // the window restarted on the raise
		{0.1, 4, false},
		{0.1, 1, true},
	}
	for i, s := range steps {
		n, changed := c.step(s.cores)
		if n != s.procs || changed != s.changed {
			t.Fatalf("step %d (%.2f cores) = %d, %v; want %d, %v", i, s.cores, n, changed, s.procs, s.changed)
		}
	}
}

func TestAdapt(t *testing.T) {
	var cpu atomic.Int64 // ns of CPU the fake process has used
	var mu sync.Mutex
	var sets []int
	set := func(n int) { mu.Lock(); sets = append(sets, n); mu.Unlock() }
	got := func() []int { mu.Lock(); defer mu.Unlock(); return append([]int(nil), sets...) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Adapt(ctx, Options{Max: 2, Every: time.Millisecond, Set: set, CPU: func() time.Duration {
			// Busy: two cores' worth of CPU per wall-clock instant.
			return time.Duration(cpu.Add(int64(2 * time.Millisecond)))
		}})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(got()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("GOMAXPROCS set to %v, want 1 then 2 under load", got())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	s := got()
	if s[0] != 1 || s[1] != 2 || s[len(s)-1] != 2 {
		t.Fatalf("GOMAXPROCS set to %v, want 1, then 2 under load, and 2 restored at the end", s)
	}
}

func TestAdaptOneP(t *testing.T) {
	called := false
	Adapt(context.Background(), Options{Max: 1, Set: func(int) { called = true }})
	if called {
		t.Fatal("Adapt changed GOMAXPROCS with one P to use")
	}
}
