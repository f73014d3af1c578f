// Package load tells a process whether it is busy, from the CPU time it
// uses, so that it can trade memory or threads for CPU only while the CPU
// is what it is short of. The prober runs on one P while light (procs), the
// all-in-one collects its garbage more often while light (gcpercent).
//
// A process turns busy when the average of its last RaiseAfter samples is
// above Raise cores (by default one sample: a burst is served at once), and
// light again only when the average of the last LowerAfter samples falls
// below Lower, so that a setting does not flap.
package load

import (
	"context"
	"syscall"
	"time"
)

// Options tune Follow. The zero value uses the defaults.
type Options struct {
	Every      time.Duration // sampling period (default 1s)
	Raise      float64       // average cores used above which the process is busy (default 0.6)
	RaiseAfter int           // samples the average for Raise spans (default 1)
	Lower      float64       // average cores used below which it is light again (default 0.35)
	LowerAfter int           // samples the average for Lower spans (default 10)

	CPU func() time.Duration // the process's CPU time so far (default getrusage)
}

func (o *Options) defaults() {
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Raise <= 0 {
		o.Raise = 0.6
	}
	if o.Lower <= 0 {
		o.Lower = 0.35
	}
	if o.RaiseAfter <= 0 {
		o.RaiseAfter = 1
	}
	if o.LowerAfter <= 0 {
		o.LowerAfter = 10
	}
	if o.CPU == nil {
		o.CPU = ProcessCPU
	}
}

// Follow samples the process's CPU time every o.Every until ctx ends and
// calls changed, from Follow's goroutine, each time the process turns busy
// or light, with the cores the last sample used. The process starts light.
func Follow(ctx context.Context, o Options, changed func(busy bool, cores float64)) {
	o.defaults()
	d := newDetector(o)
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
			if busy, turned := d.step(cores); turned {
				changed(busy, cores)
			}
		}
	}
}

// detector decides busy or light from the cores used per sample.
type detector struct {
	o      Options
	busy   bool
	window []float64 // recent samples since the last turn
}

func newDetector(o Options) *detector {
	return &detector{o: o, window: make([]float64, 0, max(o.RaiseAfter, o.LowerAfter))}
}

// step takes one sample and returns whether the process is busy and whether
// that changed.
func (d *detector) step(cores float64) (busy, turned bool) {
	n := d.o.RaiseAfter
	if d.busy {
		n = d.o.LowerAfter
	}
	if len(d.window) == n {
		copy(d.window, d.window[1:])
		d.window = d.window[:n-1]
	}
	d.window = append(d.window, cores)
	if len(d.window) < n {
		return d.busy, false
	}
	var sum float64
	for _, s := range d.window {
		sum += s
	}
	avg := sum / float64(n)
	if (!d.busy && avg > d.o.Raise) || (d.busy && avg < d.o.Lower) {
		d.busy, d.window = !d.busy, d.window[:0]
		return d.busy, true
	}
	return d.busy, false
}

// ProcessCPU is the user and system CPU time of the process so far.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
