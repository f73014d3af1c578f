// Package loadtest fakes a process's CPU time for tests of code that
// follows the load (package load).
package loadtest

import (
	"sync"
	"time"
)

// Process uses a set number of cores for as long as the wall clock runs.
type Process struct {
	mu    sync.Mutex
	cores float64
	cpu   time.Duration
	at    time.Time
}

// New returns a process using cores.
func New(cores float64) *Process { return &Process{cores: cores, at: time.Now()} }

// CPU is the CPU time used so far: a load.Options CPU function.
func (p *Process) CPU() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	p.cpu += time.Duration(p.cores * float64(now.Sub(p.at)))
	p.at = now
	return p.cpu
}

// Use changes the cores used from now on.
func (p *Process) Use(cores float64) {
	p.CPU()
	p.mu.Lock()
	p.cores = cores
	p.mu.Unlock()
}
