// Package schedule runs the prober's periodic probes: one timer heap driven by
// one goroutine and one timer, with the probes themselves run by a bounded
// pool of worker goroutines.
//
// A goroutine per target sleeping in a loop costs a stack and a runtime timer
// per target; at 100k targets that is hundreds of megabytes and a timer storm.
// Here a job is about 120 bytes of heap entry. The heap goroutine only pops
// due jobs and hands them to idle workers; it never waits for a probe. When
// every worker is busy a due job waits in the heap and its lateness is
// measured when it finally starts.
//
// Timing rules:
//   - A job's ticks sit on a fixed grid: every tick is the previous tick plus
//     the interval (or the delay its Run returned), not "finish time plus
//     interval", so probes do not drift and stay spread.
//   - The first tick is at a phase taken from a hash of the job ID against
//     the wall clock, so jobs added together (start-up, reshard) are spread
//     evenly over their interval, and every prober probing the same target
//     probes it at about the same moment (observers vote on the same instant;
//     a target that moves between probers keeps its rhythm).
//   - Jitter moves each run by a random offset of at most ±Jitter/2 of the
//     interval around its tick; the grid itself does not move.
//   - A job is never run twice at once: ticks that pass while it is still
//     running (or still waiting for a free slot) are skipped and counted as
//     overruns.
package schedule

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Errors returned by the scheduler; they are wrapped with the job ID.
var (
	ErrInvalidJob = errors.New("invalid job")
	ErrExists     = errors.New("job already scheduled")
	ErrNotFound   = errors.New("job not scheduled")
	ErrRunning    = errors.New("scheduler already running")
)

// Defaults and limits.
const (
	// MinInterval is the shortest interval a job may have. A delay returned
	// by Run below it is raised to it, so a bad value cannot spin the heap.
	MinInterval = time.Millisecond
	// DefaultMaxConcurrent is Options.MaxConcurrent when unset: probes mostly
	// wait on the network, so the limit is about sockets, not CPU.
	DefaultMaxConcurrent = 1024
	// DefaultOnTime is Options.OnTime when unset.
	DefaultOnTime = 10 * time.Millisecond
	// CoalesceRuns is the prober's Options.Coalesce: a millisecond early is
	// nothing beside an interval of a second, or its jitter.
	CoalesceRuns = time.Millisecond
	// depthEvery throttles the queue depth count, which walks the due part
	// of the heap, so a long backlog is not walked on every freed slot.
	depthEvery = 250 * time.Millisecond
)

// Job is one periodic task.
type Job struct {
	ID       string
	Interval time.Duration // time between ticks; at least MinInterval
	Jitter   float64       // 0..1: each run moves by up to ±Jitter/2 × interval
	// Run does the work. It gets the scheduler's context and returns the
	// delay to the next tick (fast-interval, down-interval …), or 0 for
	// Interval. It must return when ctx is cancelled.
	Run func(ctx context.Context) (next time.Duration)
}

func (j Job) validate() error {
	var why string
	switch {
	case j.ID == "":
		why = "empty id"
	case j.Interval < MinInterval:
		why = fmt.Sprintf("interval %v below the minimum %v", j.Interval, MinInterval)
	case !(j.Jitter >= 0 && j.Jitter <= 1):
		why = fmt.Sprintf("jitter %v outside 0..1", j.Jitter)
	case j.Run == nil:
		why = "no Run function"
	default:
		return nil
	}
	return fmt.Errorf("schedule: job %q: %w: %s", j.ID, ErrInvalidJob, why)
}

// Clock is the time source; tests inject a fake one so that they never sleep.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of time.Timer the scheduler uses, with Go 1.23
// semantics: after Reset or Stop no stale tick is received.
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

type systemClock struct{}

func (systemClock) Now() time.Time                 { return time.Now() }
func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time   { return t.t.C }
func (t systemTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t systemTimer) Stop()                 { t.t.Stop() }

// Metrics receives the scheduler's measurements. Methods are called from
// probe goroutines and the heap goroutine and must be quick and safe for
// concurrent use (a Prometheus histogram, counter and gauge fit).
type Metrics interface {
	// Lateness is called once per run, as it starts: actual start minus
	// the time it was due.
	Lateness(d time.Duration)
	// Overrun is called when a job skipped ticks because its previous
	// run had not finished (or had not started) when they came. The id is
	// for logs; a metric label per target would explode the series.
	Overrun(id string, skipped int)
	// QueueDepth is called when the number of due jobs waiting for a free
	// slot changes (sampled at most every 10ms while it is above zero).
	QueueDepth(n int)
}

type nopMetrics struct{}

func (nopMetrics) Lateness(time.Duration) {}
func (nopMetrics) Overrun(string, int)    {}
func (nopMetrics) QueueDepth(int)         {}

// Options configures a Scheduler. The zero value is usable.
type Options struct {
	Clock         Clock         // nil: the system clock
	MaxConcurrent int           // runs in flight (and worker goroutines) at most; <= 0: DefaultMaxConcurrent
	OnTime        time.Duration // a run starting later than this is late; <= 0: DefaultOnTime
	// Coalesce starts together the runs due within this much of the
	// first: the heap goroutine wakes once per Coalesce at most instead of
	// once per job (10,000 jobs a second each on its own tick woke it
	// 10,000 times a second), and a run may start up to Coalesce before its
	// tick. 0: every run at its own tick. The prober uses CoalesceRuns.
	Coalesce time.Duration
	Metrics  Metrics // nil: none
	Seed     uint64  // jitter's random source; 0: random
}

// Stats is a snapshot of the scheduler's counters.
type Stats struct {
	Jobs     int    // scheduled jobs
	Running  int    // runs in flight
	Waiting  int    // due jobs waiting for a free slot, at the last count
	Runs     uint64 // finished runs
	OnTime   uint64 // finished runs that started within Options.OnTime of their tick
	Overruns uint64 // ticks skipped because the job was still running or waiting
}

// Scheduler runs Jobs. Add, Update, Remove, Len and Stats may be called from
// any goroutine, before, during or after Run.
type Scheduler struct {
	clock   Clock
	epoch   time.Time // monotonic origin of all int64 times below
	maxRun  int
	onTime  int64
	early   int64 // Options.Coalesce, ns
	metrics Metrics

	wake   chan struct{}         // cap 1, never closed: "look at the heap again"
	settle chan chan<- quietness // lets tests wait for a quiet heap; never closed

	mu         sync.Mutex
	jobs       map[string]*entry // includes removed entries whose run is still in flight
	heap       timerHeap
	rng        *rand.Rand
	active     bool  // Run is in progress
	running    int   // runs in flight
	tombstones int   // removed entries still in jobs
	armed      int64 // due time the heap goroutine sleeps until; math.MaxInt64 if none
	starved    bool  // due entries wait for a free slot: finishing runs must wake the loop
	waiting    int   // last queue depth counted
	counted    int64 // when waiting was counted
	stats      Stats
}

// entry is a job's scheduler state, kept small: there is one per target.
type entry struct {
	id       string
	run      func(context.Context) time.Duration
	interval int64 // ns
	base     int64 // current tick on the grid, ns since epoch
	due      int64 // base moved by jitter: when it runs
	jitter   float64
	running  bool // a run is in flight; the entry has no live slot
	removed  bool // removed while running: dropped when the run finishes
	dead     bool // no longer scheduled; its slots are stale
}

// New returns a scheduler; nothing runs until Run.
func New(opts Options) *Scheduler {
	s := &Scheduler{
		clock:   opts.Clock,
		maxRun:  opts.MaxConcurrent,
		onTime:  int64(opts.OnTime),
		early:   max(int64(opts.Coalesce), 0),
		metrics: opts.Metrics,
		wake:    make(chan struct{}, 1),
		settle:  make(chan chan<- quietness),
		jobs:    map[string]*entry{},
		armed:   math.MaxInt64,
	}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	if s.maxRun <= 0 {
		s.maxRun = DefaultMaxConcurrent
	}
	if s.onTime <= 0 {
		s.onTime = int64(DefaultOnTime)
	}
	if s.metrics == nil {
		s.metrics = nopMetrics{}
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.epoch = s.clock.Now()
	return s
}

// now returns the monotonic time since epoch and the wall clock, from one
// reading.
func (s *Scheduler) now() (mono, wall int64) {
	t := s.clock.Now()
	return int64(t.Sub(s.epoch)), t.UnixNano()
}

// Add schedules a new job. Its first run is on its hash phase within the
// next interval (plus jitter), never immediately, so jobs added in a batch do
// not run as one. Adding the ID of
// a job removed while its run is still in flight takes it back: it is
// rescheduled when that run finishes, so the two never overlap.
func (s *Scheduler) Add(j Job) error {
	if err := j.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.jobs[j.ID]; ok {
		if !e.removed {
			return fmt.Errorf("schedule: job %q: %w", j.ID, ErrExists)
		}
		e.removed = false
		s.tombstones--
		e.run, e.interval, e.jitter = j.Run, int64(j.Interval), j.Jitter
		return nil
	}
	e := &entry{id: j.ID, run: j.Run, interval: int64(j.Interval), jitter: j.Jitter}
	s.place(e)
	s.jobs[j.ID] = e
	s.heap.push(e.due, e)
	s.poke(e.due)
	return nil
}

// Update changes a job's interval, jitter and Run. A run in flight finishes
// with the old Run. A longer interval takes effect after the pending tick; a
// shorter one moves the pending tick if it is further away than the new
// interval.
func (s *Scheduler) Update(j Job) error {
	if err := j.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.jobs[j.ID]
	if !ok || e.removed {
		return fmt.Errorf("schedule: job %q: %w", j.ID, ErrNotFound)
	}
	changed := e.interval != int64(j.Interval)
	e.run, e.interval, e.jitter = j.Run, int64(j.Interval), j.Jitter
	if !changed || e.running {
		return nil // a run in flight is rescheduled with the new interval
	}
	if mono, _ := s.now(); e.base-mono > e.interval {
		old := e.due
		s.place(e)
		if e.due != old { // the slot at old is stale now
			s.heap.push(e.due, e)
			s.poke(e.due)
		}
	}
	return nil
}

// Remove unschedules a job and reports whether it was scheduled. A run in
// flight finishes; it is not rescheduled.
func (s *Scheduler) Remove(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.jobs[id]
	if !ok || e.removed {
		return false
	}
	if e.running {
		e.removed = true
		s.tombstones++
		return true
	}
	e.dead = true // its slot is dropped when it comes up
	delete(s.jobs, id)
	return true
}

// Len returns the number of scheduled jobs.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs) - s.tombstones
}

// Stats returns a snapshot of the counters.
func (s *Scheduler) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Jobs = len(s.jobs) - s.tombstones
	st.Running = s.running
	st.Waiting = s.waiting
	return st
}

// place puts e on the first tick of its hash phase after now. Strictly
// after: a job removed and added back on its tick (a reshard there and back)
// is not run twice at once.
func (s *Scheduler) place(e *entry) {
	mono, wall := s.now()
	iv := e.interval
	off := (int64(phaseHash(e.id)%uint64(iv)) - wall%iv) % iv
	if off <= 0 {
		off += iv
	}
	e.base = mono + off
	e.due = s.jittered(e, e.base, iv, mono)
}

// jittered returns when the tick at base runs: base moved by up to
// ±jitter/2 × iv, never before now.
func (s *Scheduler) jittered(e *entry, base, iv, now int64) int64 {
	due := base
	if e.jitter > 0 {
		due += int64((s.rng.Float64() - 0.5) * e.jitter * float64(iv))
	}
	return max(due, now)
}

// poke wakes the heap goroutine if a job is now due before what it sleeps
// until. Called with mu held.
func (s *Scheduler) poke(due int64) {
	if due < s.armed {
		s.signal()
	}
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run runs due jobs until ctx is cancelled, then waits for the runs in
// flight (they see ctx cancelled) and returns nil. Jobs stay scheduled, so
// Run may be called again; it returns ErrRunning while another Run is active.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.active {
		s.mu.Unlock()
		return fmt.Errorf("schedule: %w", ErrRunning)
	}
	s.active = true
	s.rebase()
	s.mu.Unlock()

	// Runs go to a pool of probe goroutines that grows on demand up to
	// maxRun and lives until Run returns: a goroutine per run would cost a
	// closure allocation per probe. A send on work succeeds only when a
	// worker is idle. Run closes work when it returns.
	work := make(chan start)
	var workers sync.WaitGroup
	nworkers := 0

	timer := s.clock.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		timer.Stop()
		close(work)
		workers.Wait()
		s.mu.Lock()
		s.active = false
		s.armed = math.MaxInt64
		s.mu.Unlock()
	}()

	var (
		batch []start
		reply chan<- quietness // a test waiting for the next pass's result
	)
	for {
		var wait int64
		var running int
		batch, wait, running = s.dispatch(batch[:0])
		for _, st := range batch {
			select {
			case work <- st:
			default:
				if nworkers < s.maxRun {
					nworkers++
					workers.Add(1)
					go s.worker(ctx, work, st, &workers)
				} else {
					// Every worker exists and fewer than maxRun runs are in
					// flight, so one has finished and is on its way back.
					work <- st
				}
			}
		}
		if wait >= 0 {
			timer.Reset(time.Duration(wait))
		} else {
			timer.Stop()
		}
		if reply != nil { // after the timer is set: the test reads it next
			reply <- quietness{dispatched: len(batch), running: running}
			reply = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		case <-s.wake:
		case reply = <-s.settle:
		}
	}
}

// start is one run handed to a probe goroutine; run and due are copied under
// the lock because Update may change the entry meanwhile.
type start struct {
	e   *entry
	run func(context.Context) time.Duration
	due int64
}

// quietness is what a test learns about one pass of the heap goroutine.
type quietness struct{ dispatched, running int }

// dispatch pops the due entries that fit under the concurrency limit and
// returns them, how long to sleep (-1: until woken) and the runs in flight.
func (s *Scheduler) dispatch(batch []start) ([]start, int64, int) {
	s.mu.Lock()
	now, _ := s.now()
	for len(s.heap) > 0 && s.heap[0].due <= now+s.early {
		if !live(s.heap[0]) {
			s.heap.pop()
			continue
		}
		if s.running >= s.maxRun {
			break
		}
		e := s.heap.pop().e
		e.running = true
		s.running++
		batch = append(batch, start{e: e, run: e.run, due: e.due})
	}
	wait := int64(-1)
	s.armed = math.MaxInt64
	s.starved = len(s.heap) > 0 && s.heap[0].due <= now
	depth := s.waiting
	switch {
	case s.starved:
		if depth == 0 || now-s.counted >= int64(depthEvery) {
			depth = s.heap.countDue(now, live)
			s.counted = now
		}
	case len(s.heap) > 0:
		depth = 0
		s.armed = s.heap[0].due
		wait = s.armed - now
	default:
		depth = 0
	}
	changed := depth != s.waiting
	s.waiting = depth
	running := s.running
	s.mu.Unlock()
	if changed {
		s.metrics.QueueDepth(depth)
	}
	return batch, wait, running
}

// worker runs st, then whatever the heap goroutine hands it, until work is
// closed.
func (s *Scheduler) worker(ctx context.Context, work <-chan start, st start, wg *sync.WaitGroup) {
	defer wg.Done()
	for ok := true; ok; st, ok = <-work {
		s.exec(ctx, st)
	}
}

// exec runs one job and reschedules it.
func (s *Scheduler) exec(ctx context.Context, st start) {
	started, _ := s.now()
	late := max(started-st.due, 0)
	s.metrics.Lateness(time.Duration(late))
	next := st.run(ctx)
	s.finish(st.e, int64(next), late)
}

// finish puts a job back on its grid after a run: the next tick is the
// previous one plus the delay Run returned (or the interval); ticks already
// past are skipped and counted as overruns.
func (s *Scheduler) finish(e *entry, next, late int64) {
	s.mu.Lock()
	s.running--
	s.stats.Runs++
	if late <= s.onTime {
		s.stats.OnTime++
	}
	e.running = false
	if s.starved {
		s.signal() // a slot is free for a waiting job
	}
	if e.removed {
		if s.jobs[e.id] == e {
			delete(s.jobs, e.id)
		}
		e.dead = true
		s.tombstones--
		s.mu.Unlock()
		return
	}
	iv := e.interval
	if next > 0 {
		iv = max(next, int64(MinInterval))
	}
	now, _ := s.now()
	skipped := int64(0)
	base := e.base + iv
	if base <= now {
		skipped = (now - e.base) / iv
		base = e.base + (skipped+1)*iv
		s.stats.Overruns += uint64(skipped)
	}
	e.base = base
	e.due = s.jittered(e, base, iv, now)
	s.heap.push(e.due, e)
	s.poke(e.due)
	s.mu.Unlock()
	if skipped > 0 {
		s.metrics.Overrun(e.id, int(skipped))
	}
}

// rebase moves entries whose tick passed while no Run was active to their
// next tick on the grid, so that starting (or restarting) Run does not fire
// them all at once, and rebuilds the heap without stale slots. Called with
// mu held, when no run is in flight.
func (s *Scheduler) rebase() {
	now, _ := s.now()
	h := s.heap[:0]
	for _, sl := range s.heap {
		if !live(sl) {
			continue
		}
		e := sl.e
		if e.due < now {
			if e.base < now {
				e.base += (now - e.base + e.interval - 1) / e.interval * e.interval
			}
			e.due = s.jittered(e, e.base, e.interval, now)
		}
		h = append(h, slot{e.due, e})
	}
	clear(s.heap[len(h):])
	s.heap = h
	s.heap.init()
}

// live reports whether a slot is its entry's pending run. Every change of
// an entry's due time pushes a new slot, and a due time never repeats for a
// waiting entry (after a run it moves past the run's start), so a slot whose
// time is not the entry's is stale. A slot of an entry in flight is stale
// too: finishing pushes a fresh one.
func live(sl slot) bool {
	return !sl.e.dead && !sl.e.running && sl.due == sl.e.due
}

// phaseHash is FNV-1a 64 of the job ID: fixed, so every prober puts the same
// target on the same phase.
func phaseHash(id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return h
}
