package gcpercent

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/load"
	"github.com/healthmesh/healthmesh/shared/load/loadtest"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaults(t *testing.T) {
	var o Options
	o.defaults()
	procs := float64(runtime.GOMAXPROCS(0))
	if o.Light != 50 || o.Busy != 100 || o.Raise != 0.3*procs || o.RaiseAfter != 5 || o.Lower != 0.25*procs {
		t.Fatalf("defaults = light %d, busy %d, raise %.2f after %d, lower %.2f; want 50, 100, %.2f after 5, %.2f",
			o.Light, o.Busy, o.Raise, o.RaiseAfter, o.Lower, 0.3*procs, 0.25*procs)
	}
}

// TestAdapt runs a fake process that is busy until it is told so, then
// idle: GOGC goes Light, Busy, Light, and back to what it was at the end.
func TestAdapt(t *testing.T) {
	proc := loadtest.New(2) // busy
	var mu sync.Mutex
	percent := 100
	var sets []int
	got := func() []int { mu.Lock(); defer mu.Unlock(); return append([]int(nil), sets...) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Adapt(ctx, Options{Light: 40, Busy: 90,
			Options: load.Options{Every: time.Millisecond, Raise: 1, RaiseAfter: 2, Lower: 0.5, LowerAfter: 2, CPU: proc.CPU},
			Set: func(p int) int {
				mu.Lock()
				defer mu.Unlock()
				was := percent
				percent = p
				sets = append(sets, p)
				if p == 90 {
					proc.Use(0) // the burst is over
				}
				return was
			}})
	}()
	wait.For(t, 10*time.Second, "GOGC light, busy, light", func() bool { return len(got()) >= 3 })
	cancel()
	<-done
	s := got()
	if s[0] != 40 || s[1] != 90 || s[2] != 40 || s[len(s)-1] != 100 || percent != 100 {
		t.Fatalf("GOGC set to %v, want 40, 90 while busy, 40, and 100 restored at the end", s)
	}
}
