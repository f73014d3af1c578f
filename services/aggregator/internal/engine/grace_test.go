package engine_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// Results the aggregator itself dropped (its core subscription overflowed)
// say nothing about the probers: no observer is aged out for one stale
// window after a loss, then silence counts again. Without this a busy
// aggregator turned its own overload into Unknown transitions for backends
// whose results it had discarded, which made it busier still.
func TestEngine_own_result_loss_ages_out_no_observer(t *testing.T) {
	h := newHarnessMode(t, bus.ResultsCore)
	var offset atomic.Int64 // the engine's clock runs ahead of the results' by this
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	reg := prometheus.NewRegistry()
	m := engine.NewMetrics(reg)
	h.start(1, engine.Options{Now: now, Metrics: m, CoreBuffer: 4, ExpireEvery: 10 * time.Millisecond})
	wait.For(t, 10*time.Second, "both backends up", func() bool {
		h.result(t1, event.Up)
		h.result(t2, event.Up)
		return len(h.events()) >= 4
	})
	base := len(h.events())
	dropped := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "healthmesh_aggregator_results_dropped_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	// 2 s of the 3 s stale window pass; then t2's results overflow the
	// 4-result buffer while t1 stays silent.
	offset.Store(int64(2 * time.Second))
	wait.For(t, 10*time.Second, "results dropped by the engine's subscription", func() bool {
		for range 500 {
			h.result(t2, event.Up)
		}
		return dropped() > 0
	})
	// t1 silent for 4 s > the stale window, but the loss was 2 s ago.
	offset.Store(int64(4 * time.Second))
	if wait.Until(time.Second, func() bool { return len(h.events()) > base }) {
		t.Fatalf("an observer aged out right after the engine lost results: %v", h.events()[base:])
	}
	// A stale window after the loss, silence counts again.
	offset.Store(int64(10 * time.Second))
	wait.For(t, 10*time.Second, "t1 unknown once the grace is over", func() bool {
		for _, e := range h.events()[base:] {
			if e == "backend 127.0.0.11-TCP-8080 up>unknown" {
				return true
			}
		}
		return false
	})
}
