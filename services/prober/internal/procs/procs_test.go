package procs

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/load"
	"github.com/healthmesh/healthmesh/shared/load/loadtest"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestAdapt(t *testing.T) {
	proc := loadtest.New(2) // busy: two cores
	var mu sync.Mutex
	var sets []int
	set := func(n int) { mu.Lock(); sets = append(sets, n); mu.Unlock() }
	got := func() []int { mu.Lock(); defer mu.Unlock(); return append([]int(nil), sets...) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Adapt(ctx, Options{Max: 2, Options: load.Options{Every: time.Millisecond, CPU: proc.CPU}, Set: set})
	}()
	wait.For(t, 10*time.Second, "GOMAXPROCS 1, then 2 under load", func() bool { return len(got()) >= 2 })
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
