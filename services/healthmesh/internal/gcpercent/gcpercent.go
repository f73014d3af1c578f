// Package gcpercent adapts the garbage collector's target percentage (GOGC)
// to the all-in-one's load.
//
// With Go's default (100) the heap grows to twice what is live between
// collections, and the all-in-one's memory per backend is that headroom as
// much as its state: 10.1 KiB per backend at 10,000 TCP checks a second,
// 7.8 with GOGC=50, for 5% more CPU (BENCHMARKS.md, session 8). At 60,000
// backends every 3 s the same 50 costs a collection every few hundred
// milliseconds and pushed failure detection past its one-second budget. So
// the process collects at Light while it is light and at Busy while it uses
// more than 30% of its CPUs over 5 s (package load), where detection latency
// matters more than memory; it is light again below 25% over 10 s. The
// all-in-one at 10,000 TCP checks a second uses 0.3-0.4 of a core, at 60,000
// every 3 s 0.7-0.9.
//
// It is the all-in-one's default (healthmesh -gogc auto; -gogc go or a GOGC
// in the environment keeps Go's collector as configured). It was opt-in
// while the more frequent collections lengthened the detection tail past
// the floor + 100 ms objective; once the engine loop no longer marshaled
// every target definition on each inventory change, its tail met the
// objective in every run (BENCHMARKS.md, sessions 9-11).
package gcpercent

import (
	"context"
	"runtime"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/load"
)

// Options tune Adapt. The zero value uses the defaults.
type Options struct {
	Light int // GOGC while light (default 50)
	Busy  int // GOGC while busy (default 100)
	// Busy when the average over RaiseAfter samples (default 5) is above
	// Raise cores (default 30% of GOMAXPROCS), light again when the average
	// over LowerAfter samples (default 10) is below Lower (default 25%).
	load.Options

	Set func(percent int) int // sets GOGC, returns the previous (default debug.SetGCPercent)
	Log zerolog.Logger
}

func (o *Options) defaults() {
	if o.Light <= 0 {
		o.Light = 50
	}
	if o.Busy <= 0 {
		o.Busy = 100
	}
	procs := float64(runtime.GOMAXPROCS(0))
	if o.Raise <= 0 {
		o.Raise = 0.3 * procs
	}
	if o.RaiseAfter <= 0 {
		o.RaiseAfter = 5
	}
	if o.Lower <= 0 {
		o.Lower = 0.25 * procs
	}
	if o.Set == nil {
		o.Set = debug.SetGCPercent
	}
}

// Adapt sets o.Light, follows the load until ctx ends, then restores the
// percentage it found.
func Adapt(ctx context.Context, o Options) {
	o.defaults()
	was := o.Set(o.Light)
	o.Log.Info().Int("gogc", o.Light).Int("busy", o.Busy).Float64("busy_above_cores", o.Raise).Msg("GOGC follows the load")
	defer o.Set(was)
	load.Follow(ctx, o.Options, func(busy bool, cores float64) {
		p := o.Light
		if busy {
			p = o.Busy
		}
		o.Set(p)
		o.Log.Info().Int("gogc", p).Float64("cores", cores).Msg("GOGC changed")
	})
}
