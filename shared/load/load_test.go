package load

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/load/loadtest"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDetector(t *testing.T) {
	d := newDetector(Options{Raise: 0.6, RaiseAfter: 1, Lower: 0.35, LowerAfter: 3})
	steps := []struct {
		cores        float64
		busy, turned bool
	}{
		{0.3, false, false},  // light
		{0.59, false, false}, // just under Raise
		{0.9, true, true},    // busy at once
		{0.2, true, false},   // one quiet sample is not enough
		{0.2, true, false},
		{0.8, true, false}, // the average of the last 3 (0.4) is not under Lower
		{0.1, true, false}, // (0.2+0.8+0.1)/3 = 0.37
		{0.1, false, true}, // (0.8+0.1+0.1)/3 = 0.33: light again
		{0.5, false, false},
		{0.7, true, true},
		{0.1, true, false}, // the window restarted on turning busy
		{0.1, true, false},
		{0.1, false, true},
	}
	for i, s := range steps {
		busy, turned := d.step(s.cores)
		if busy != s.busy || turned != s.turned {
			t.Fatalf("step %d (%.2f cores) = %v, %v; want %v, %v", i, s.cores, busy, turned, s.busy, s.turned)
		}
	}
}

func TestDetector_raise_after(t *testing.T) {
	d := newDetector(Options{Raise: 0.6, RaiseAfter: 3, Lower: 0.35, LowerAfter: 2})
	steps := []struct {
		cores        float64
		busy, turned bool
	}{
		{0.9, false, false}, // one busy sample is a burst
		{0.2, false, false},
		{0.6, false, false}, // (0.9+0.2+0.6)/3 = 0.57
		{1.2, true, true},   // (0.2+0.6+1.2)/3 = 0.67: busy
		{0.3, true, false},
		{0.3, false, true},  // light after 2 quiet samples
		{2.0, false, false}, // the window restarted on turning light
		{2.0, false, false},
		{2.0, true, true},
	}
	for i, s := range steps {
		busy, turned := d.step(s.cores)
		if busy != s.busy || turned != s.turned {
			t.Fatalf("step %d (%.2f cores) = %v, %v; want %v, %v", i, s.cores, busy, turned, s.busy, s.turned)
		}
	}
}

func TestFollow(t *testing.T) {
	proc := loadtest.New(2) // busy
	var mu sync.Mutex
	var got []bool
	seen := func() []bool { mu.Lock(); defer mu.Unlock(); return append([]bool(nil), got...) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(ctx, Options{Every: time.Millisecond, LowerAfter: 2, CPU: proc.CPU}, func(busy bool, cores float64) {
			mu.Lock()
			got = append(got, busy)
			mu.Unlock()
			if busy {
				proc.Use(0) // the burst is over
			}
		})
	}()
	wait.For(t, 10*time.Second, "busy, then light", func() bool { return len(seen()) >= 2 })
	cancel()
	<-done
	if s := seen(); !s[0] || s[1] {
		t.Fatalf("changes %v, want busy, then light once the load stopped", s)
	}
}
