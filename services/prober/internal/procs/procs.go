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
// Lower.
package procs

import (
	"context"
	"runtime"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Options tune Adapt. The zero value uses the defaults.
type Options struct {
	Max        int           // Ps under load (default runtime.GOMAXPROCS(0) when Adapt starts)
	Every      time.Duration // sampling period (default 1s)
	Raise      float64       // cores used on one P above which Max Ps are used (default 0.6)
	Lower      float64       // average cores used on Max Ps below which one P is used (default 0.35)
	LowerAfter int           // samples the average for Lower spans (default 10)

	CPU func() time.Duration // the process's CPU time so far (default getrusage)
	Set func(n int)          // sets GOMAXPROCS (default runtime.GOMAXPROCS)
	Log zerolog.Logger
}

func (o *Options) defaults() {
	if o.Max <= 0 {
		o.Max = runtime.GOMAXPROCS(0)
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Raise <= 0 {
		o.Raise = 0.6
	}
	if o.Lower <= 0 {
		o.Lower = 0.35
	}
	if o.LowerAfter <= 0 {
		o.LowerAfter = 10
	}
	if o.CPU == nil {
		o.CPU = processCPU
	}
	if o.Set == nil {
		o.Set = func(n int) { runtime.GOMAXPROCS(n) }
	}
}

// Adapt sets one P, then follows the load every o.Every until ctx ends,
// when it restores o.Max. It does nothing when o.Max is 1.
func Adapt(ctx context.Context, o Options) {
	o.defaults()
	if o.Max <= 1 {
		return
	}
	c := newController(o)
	o.Set(c.procs)
	o.Log.Info().Int("procs", c.procs).Int("max", o.Max).Msg("GOMAXPROCS follows the load")
	defer o.Set(o.Max)
	t := time.NewTicker(o.Every)
	defer t.Stop()
	lastCPU, lastAt := o.CPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := o.CPU()
			wall := now.Sub(lastAt)
			if wall <= 0 {
				continue
			}
			cores := float64(cpu-lastCPU) / float64(wall)
			lastCPU, lastAt = cpu, now
			if n, changed := c.step(cores); changed {
				o.Set(n)
				o.Log.Info().Int("procs", n).Float64("cores", cores).Msg("GOMAXPROCS changed")
			}
		}
	}
}

// controller decides the P count from the cores used per sample.
type controller struct {
	o      Options
	procs  int
	window []float64 // recent samples on Max Ps
}

func newController(o Options) *controller {
	return &controller{o: o, procs: 1, window: make([]float64, 0, o.LowerAfter)}
}

// step takes one sample and returns the P count and whether it changed.
func (c *controller) step(cores float64) (int, bool) {
	if c.procs == 1 {
		if cores > c.o.Raise {
			c.procs, c.window = c.o.Max, c.window[:0]
			return c.procs, true
		}
		return c.procs, false
	}
	if len(c.window) == c.o.LowerAfter {
		copy(c.window, c.window[1:])
		c.window = c.window[:len(c.window)-1]
	}
	c.window = append(c.window, cores)
	if len(c.window) < c.o.LowerAfter {
		return c.procs, false
	}
	var sum float64
	for _, s := range c.window {
		sum += s
	}
	if sum/float64(len(c.window)) < c.o.Lower {
		c.procs, c.window = 1, c.window[:0]
		return c.procs, true
	}
	return c.procs, false
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
