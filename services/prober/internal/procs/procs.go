// Package procs adapts GOMAXPROCS to a prober's load.
//
// A prober's work is system calls and hand-offs between goroutines (the
// scheduler, the probes, the publisher, the NATS client). With one P those
// run on one thread back to back; with several, every hand-off may wake an
// idle thread, and the wake-ups cost more CPU than the parallelism saves
// while the load is light: 10,000 TCP checks a second cost 0.033 CPU-s per
// 1,000 with two Ps and 0.028 with one, equally on time (BENCHMARKS.md,
// session 7). A heavy load needs the cores, though. Adapt runs the process
// on one P and uses every P while the process is busy: above Raise cores at
// once, back to one when the average over LowerAfter samples falls below
// Lower (package load).
package procs

import (
	"context"
	"runtime"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/load"
)

// Options tune Adapt. The zero value uses the defaults.
type Options struct {
	Max int // Ps under load (default runtime.GOMAXPROCS(0) when Adapt starts)
	// When the process is busy: the cores it uses on one P (default Raise
	// 0.6), and the average on Max Ps below which it goes back to one
	// (default Lower 0.35 over LowerAfter 10 samples of Every 1s).
	load.Options

	Set func(n int) // sets GOMAXPROCS (default runtime.GOMAXPROCS)
	Log zerolog.Logger
}

// Adapt sets one P, then follows the load until ctx ends, when it restores
// o.Max. It does nothing when o.Max is 1.
func Adapt(ctx context.Context, o Options) {
	if o.Max <= 0 {
		o.Max = runtime.GOMAXPROCS(0)
	}
	if o.Set == nil {
		o.Set = func(n int) { runtime.GOMAXPROCS(n) }
	}
	if o.Max <= 1 {
		return
	}
	o.Set(1)
	o.Log.Info().Int("procs", 1).Int("max", o.Max).Msg("GOMAXPROCS follows the load")
	defer o.Set(o.Max)
	load.Follow(ctx, o.Options, func(busy bool, cores float64) {
		n := 1
		if busy {
			n = o.Max
		}
		o.Set(n)
		o.Log.Info().Int("procs", n).Float64("cores", cores).Msg("GOMAXPROCS changed")
	})
}
