package schedule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness runs a Scheduler on a fake clock and records every run.
type harness struct {
	t      *testing.T
	clk    *fakeClock
	s      *Scheduler
	m      *recMetrics
	cancel context.CancelFunc
	done   chan error // receives Run's result; buffered, never closed

	blocked atomic.Int32 // runs waiting inside hold

	mu   sync.Mutex
	runs []run
}

// hold blocks a run until ch is closed or receives, counted so that settle
// knows which runs in flight are expected to stay in flight. The test calls
// unhold before it releases a run, so that settle never mistakes a run about
// to wake for one still held.
func (h *harness) hold(ch <-chan struct{}) {
	h.blocked.Add(1)
	<-ch
}

func (h *harness) unhold(n int) { h.blocked.Add(int32(-n)) }

type run struct {
	id string
	at time.Time
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, clk: newFakeClock(), m: &recMetrics{}, done: make(chan error, 1)}
	opts.Clock, opts.Metrics = h.clk, h.m
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	h.s = New(opts)
	return h
}

// start runs the scheduler until the test ends, and returns once its heap
// goroutine is serving (so Run's start-up rebase has seen the clock).
func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.s.Run(ctx) }()
	h.t.Cleanup(h.stop)
	h.settle()
}

// stop cancels Run and waits for it; it does nothing if Run is not started.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return after cancel")
	}
}

// due returns when a job's pending run is due.
func (h *harness) due(id string) time.Time {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.s.epoch.Add(time.Duration(h.s.jobs[id].due))
}

// job returns a Job that records its runs, then calls fn (if any).
func (h *harness) job(id string, iv time.Duration, fn func(context.Context) time.Duration) Job {
	return Job{ID: id, Interval: iv, Run: func(ctx context.Context) time.Duration {
		h.mu.Lock()
		h.runs = append(h.runs, run{id, h.clk.Now()})
		h.mu.Unlock()
		if fn != nil {
			return fn(ctx)
		}
		return 0
	}}
}

// firstRun starts a scheduler with one job "a" and moves the clock to the
// job's first run, which it returns.
func firstRun(t *testing.T, iv time.Duration) (*harness, time.Time) {
	h := newHarness(t, Options{})
	h.add(h.job("a", iv, nil))
	h.start()
	first := h.due("a")
	h.advanceTo(first)
	return h, first
}

func (h *harness) add(j Job) {
	h.t.Helper()
	if err := h.s.Add(j); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) runsOf(id string) []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	var at []time.Time
	for _, r := range h.runs {
		if id == "" || r.id == id {
			at = append(at, r.at)
		}
	}
	return at
}

// settle waits until the heap goroutine has made a pass that started
// nothing while the only runs in flight were those blocked in hold. From then
// on nothing happens until the test moves the clock, changes the jobs or
// releases a run.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	var last quietness
	for {
		reply := make(chan quietness, 1)
		select {
		case h.s.settle <- reply:
		case <-deadline:
			h.t.Fatalf("scheduler did not settle with %d runs blocked (last pass: %+v)", h.blocked.Load(), last)
		}
		last = <-reply
		if last.dispatched == 0 && last.running == int(h.blocked.Load()) {
			return
		}
		runtime.Gosched()
	}
}

// advanceTo moves the clock to target through every timer deadline on the
// way, settling at each, so that every run starts exactly when it is due.
func (h *harness) advanceTo(target time.Time) {
	h.t.Helper()
	for {
		h.settle()
		at, ok := h.clk.NextDeadline()
		if !ok || at.After(target) {
			break
		}
		h.clk.Set(at)
	}
	h.clk.Set(target)
	h.settle()
}

type recMetrics struct {
	mu       sync.Mutex
	lateness []time.Duration
	overruns map[string]int
	depths   []int
}

func (m *recMetrics) Lateness(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lateness = append(m.lateness, d)
}

func (m *recMetrics) Overrun(id string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.overruns == nil {
		m.overruns = map[string]int{}
	}
	m.overruns[id] += n
}

func (m *recMetrics) QueueDepth(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.depths = append(m.depths, n)
}

func (m *recMetrics) snapshot() (late []time.Duration, over map[string]int, depths []int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	over = map[string]int{}
	for k, v := range m.overruns {
		over[k] = v
	}
	return slices.Clone(m.lateness), over, slices.Clone(m.depths)
}

func noop(context.Context) time.Duration { return 0 }

func TestJobValidation(t *testing.T) {
	tests := []struct {
		name string
		job  Job
		want string
	}{
		{"empty_id", Job{Interval: time.Second, Run: noop}, `job "": invalid job: empty id`},
		{"zero_interval", Job{ID: "a", Run: noop}, `job "a": invalid job: interval 0s below the minimum 1ms`},
		{"nanosecond_interval", Job{ID: "a", Interval: 3, Run: noop}, `job "a": invalid job: interval 3ns below the minimum 1ms`},
		{"negative_jitter", Job{ID: "a", Interval: time.Second, Jitter: -0.1, Run: noop}, `job "a": invalid job: jitter -0.1 outside 0..1`},
		{"jitter_above_one", Job{ID: "a", Interval: time.Second, Jitter: 1.5, Run: noop}, `job "a": invalid job: jitter 1.5 outside 0..1`},
		{"nan_jitter", Job{ID: "a", Interval: time.Second, Jitter: math.NaN(), Run: noop}, `job "a": invalid job: jitter NaN outside 0..1`},
		{"no_run", Job{ID: "a", Interval: time.Second}, `job "a": invalid job: no Run function`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{Clock: newFakeClock()})
			for op, f := range map[string]func(Job) error{"add": s.Add, "update": s.Update} {
				err := f(tt.job)
				if !errors.Is(err, ErrInvalidJob) || !strings.HasSuffix(err.Error(), tt.want) {
					t.Errorf("%s: error = %v, want ErrInvalidJob ending in %q", op, err, tt.want)
				}
			}
			if s.Len() != 0 {
				t.Errorf("Len = %d after rejected jobs, want 0", s.Len())
			}
		})
	}
}

func TestAddUpdateRemoveByID(t *testing.T) {
	s := New(Options{Clock: newFakeClock()})
	j := Job{ID: "a", Interval: time.Second, Run: noop}
	tests := []struct {
		name string
		op   func() error
		want error
		len  int
	}{
		{"add_new", func() error { return s.Add(j) }, nil, 1},
		{"add_twice", func() error { return s.Add(j) }, ErrExists, 1},
		{"update_known", func() error { return s.Update(Job{ID: "a", Interval: 2 * time.Second, Run: noop}) }, nil, 1},
		{"update_unknown", func() error { return s.Update(Job{ID: "b", Interval: time.Second, Run: noop}) }, ErrNotFound, 1},
		{"remove_unknown", func() error { return boolErr(s.Remove("b")) }, errNotRemoved, 1},
		{"remove_known", func() error { return boolErr(s.Remove("a")) }, nil, 0},
		{"remove_again", func() error { return boolErr(s.Remove("a")) }, errNotRemoved, 0},
		{"update_removed", func() error { return s.Update(j) }, ErrNotFound, 0},
		{"add_back", func() error { return s.Add(j) }, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if s.Len() != tt.len {
				t.Fatalf("Len = %d, want %d", s.Len(), tt.len)
			}
		})
	}
}

var errNotRemoved = errors.New("not removed")

func boolErr(ok bool) error {
	if ok {
		return nil
	}
	return errNotRemoved
}

// Jobs added together, before Run or while it runs, start spread over their
// interval, each exactly once per interval, never as a burst.
func TestFirstRunsSpread(t *testing.T) {
	const n, iv = 1000, 10 * time.Second
	for _, whenAdded := range []string{"before_run", "while_running"} {
		t.Run(whenAdded, func(t *testing.T) {
			h := newHarness(t, Options{})
			t0 := h.clk.Now()
			addAll := func() {
				for i := range n {
					h.add(h.job(fmt.Sprintf("10_0_%d_%d-TCP-80-tcp-%08x", i/200, i%200, i), iv, nil))
				}
			}
			if whenAdded == "before_run" {
				addAll()
				h.start()
			} else {
				h.start()
				h.settle()
				addAll()
			}
			perSecond := make([]int, 20)
			for sec := range perSecond {
				before := len(h.runsOf(""))
				h.advanceTo(t0.Add(time.Duration(sec+1)*time.Second - 1))
				perSecond[sec] = len(h.runsOf("")) - before
			}
			for sec, c := range perSecond {
				if c < n/10-40 || c > n/10+40 { // binomial(1000, 0.1): sd 9.5
					t.Errorf("second %d: %d runs, want about %d (spread: %v)", sec, c, n/10, perSecond)
				}
			}
			if got := len(h.runsOf("")); got != 2*n {
				t.Fatalf("%d runs in two intervals, want %d", got, 2*n)
			}
			late, _, _ := h.m.snapshot()
			for _, l := range late {
				if l != 0 {
					t.Fatalf("lateness %v with a free worker and exact timers, want 0", l)
				}
			}
			for _, id := range []string{"10_0_0_0-TCP-80-tcp-00000000", "10_0_4_199-TCP-80-tcp-000003e7"} {
				at := h.runsOf(id)
				if len(at) != 2 || at[1].Sub(at[0]) != iv {
					t.Fatalf("%s ran at %v, want twice, %v apart", id, at, iv)
				}
			}
			if st := h.s.Stats(); st.Runs != 2*n || st.OnTime != 2*n || st.Jobs != n {
				t.Fatalf("Stats = %+v, want %d runs all on time, %d jobs", st, 2*n, n)
			}
		})
	}
}

// The first tick depends only on the ID, the interval and the wall clock, so
// every prober (any process, any start time) puts a target on the same phase.
func TestPhaseIsDeterministic(t *testing.T) {
	const iv = 2 * time.Second
	tests := []struct {
		name  string
		shift time.Duration
	}{
		{"same_instant", 0},
		{"later_start", 7*time.Second + 300*time.Millisecond},
		{"much_later_start", 26 * time.Hour},
	}
	addAll := func(s *Scheduler) {
		for i := range 50 {
			if err := s.Add(Job{ID: fmt.Sprintf("t%d", i), Interval: iv, Run: noop}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ref := New(Options{Clock: newFakeClock()})
	addAll(ref)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			clk.Advance(tt.shift)
			s := New(Options{Clock: clk})
			addAll(s)
			for i := range 50 {
				id := fmt.Sprintf("t%d", i)
				a := ref.epoch.Add(time.Duration(ref.jobs[id].due))
				b := s.epoch.Add(time.Duration(s.jobs[id].due))
				if d := b.Sub(a); d < 0 || d%iv != 0 || d-tt.shift >= iv {
					t.Fatalf("%s: first run at %v and %v: not on the same phase of %v", id, a, b, iv)
				}
			}
		})
	}
}

// Each tick is the previous one plus the delay Run returned (0: Interval).
func TestNextDelayFromRun(t *testing.T) {
	h := newHarness(t, Options{})
	delays := []time.Duration{0, 250 * time.Millisecond, 250 * time.Millisecond, 0, 3 * time.Second, 1 /* ns: raised to MinInterval */, 0}
	var i atomic.Int32
	h.add(h.job("a", time.Second, func(context.Context) time.Duration { return delays[int(i.Add(1)-1)%len(delays)] }))
	h.start()
	t0 := h.clk.Now()
	h.advanceTo(t0.Add(8 * time.Second))
	at := h.runsOf("a")
	var gaps []time.Duration
	for k := 1; k < len(at); k++ {
		gaps = append(gaps, at[k].Sub(at[k-1]))
	}
	want := []time.Duration{time.Second, 250 * time.Millisecond, 250 * time.Millisecond, time.Second, 3 * time.Second, MinInterval, time.Second}
	if len(gaps) < len(want) || !slices.Equal(gaps[:len(want)], want) {
		t.Fatalf("gaps between runs = %v, want %v first", gaps, want)
	}
}

func TestJitterStaysAroundTheGrid(t *testing.T) {
	const iv = time.Second
	h := newHarness(t, Options{Seed: 7})
	j := h.job("a", iv, nil)
	j.Jitter = 0.4 // ±200ms
	h.add(j)
	base := h.s.jobs["a"].base
	h.start()
	t0 := h.clk.Now()
	h.advanceTo(t0.Add(30 * iv))
	at := h.runsOf("a")
	if len(at) < 29 {
		t.Fatalf("%d runs in 30 intervals, want about 30", len(at))
	}
	offsets := map[time.Duration]bool{}
	for k, a := range at {
		tick := h.s.epoch.Add(time.Duration(base) + time.Duration(k)*iv)
		off := a.Sub(tick)
		if off < -200*time.Millisecond || off > 200*time.Millisecond {
			t.Fatalf("run %d at %v: %v off its tick %v, want within ±200ms", k, a, off, tick)
		}
		offsets[off] = true
	}
	if len(offsets) < len(at)/2 {
		t.Fatalf("only %d distinct offsets in %d runs: jitter is not random per run", len(offsets), len(at))
	}
}

// A run still in flight when its next ticks come is not started again; the
// ticks are skipped, counted, and the job returns to its grid.
func TestOverrunSkipsTicks(t *testing.T) {
	h := newHarness(t, Options{})
	release := make(chan struct{})
	var first atomic.Bool
	h.add(h.job("slow", time.Second, func(context.Context) time.Duration {
		if first.CompareAndSwap(false, true) {
			h.hold(release)
		}
		return 0
	}))
	h.start()
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce)
	t0 := h.clk.Now()
	due := h.due("slow")
	h.advanceTo(due)
	h.advanceTo(due.Add(3500 * time.Millisecond))
	if got := len(h.runsOf("slow")); got != 1 {
		t.Fatalf("%d runs while the first is still running, want 1", got)
	}
	h.unhold(1)
	releaseOnce()
	h.settle()
	_, over, _ := h.m.snapshot()
	if st := h.s.Stats(); st.Overruns != 3 || over["slow"] != 3 {
		t.Fatalf("overruns: stats %d, metrics %v; want 3 skipped ticks", st.Overruns, over)
	}
	h.advanceTo(due.Add(5500 * time.Millisecond))
	at := h.runsOf("slow")
	want := []time.Time{due, due.Add(4 * time.Second), due.Add(5 * time.Second)}
	if !slices.EqualFunc(at, want, time.Time.Equal) {
		t.Fatalf("runs at %v, want %v (back on the grid from %v)", at, want, t0)
	}
}

// With every slot busy, due jobs wait in the heap, the heap goroutine keeps
// serving, and their lateness is measured when they start.
func TestConcurrencyLimit(t *testing.T) {
	h := newHarness(t, Options{MaxConcurrent: 2, OnTime: 100 * time.Millisecond})
	gate := make(chan struct{}) // one receive lets one run finish
	var inFlight, peak atomic.Int32
	for i := range 5 {
		h.add(h.job(fmt.Sprintf("j%d", i), 10*time.Second, func(context.Context) time.Duration {
			n := inFlight.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			h.hold(gate)
			inFlight.Add(-1)
			return 0
		}))
	}
	h.start()
	t.Cleanup(func() { close(gate) })
	t0 := h.clk.Now()
	h.clk.Set(t0.Add(10 * time.Second)) // every job is now due
	h.settle()
	if st := h.s.Stats(); st.Running != 2 || st.Waiting != 3 {
		t.Fatalf("Stats = %+v, want 2 running and 3 waiting", st)
	}
	// The heap goroutine is not stuck behind the probes.
	h.add(h.job("new", 10*time.Second, nil))
	if !h.s.Remove("new") {
		t.Fatal("Remove(new) = false")
	}
	h.settle()

	h.clk.Advance(time.Second)
	for left := 5; left > 0; left-- {
		h.unhold(1)
		gate <- struct{}{}
		h.settle()
	}
	if got := len(h.runsOf("")); got != 5 {
		t.Fatalf("%d runs, want 5", got)
	}
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrency %d, want 2", p)
	}
	late, _, depths := h.m.snapshot()
	slices.Sort(late)
	if late[4] < time.Second || late[3] < time.Second || late[2] < time.Second {
		t.Fatalf("lateness %v: the three that waited for a slot should be ≥ 1s late", late)
	}
	if !slices.Contains(depths, 3) || depths[len(depths)-1] != 0 {
		t.Fatalf("queue depth reports %v, want 3 while starved and 0 at the end", depths)
	}
	st := h.s.Stats()
	if st.Runs != 5 || st.Waiting != 0 {
		t.Fatalf("Stats = %+v, want 5 runs, none waiting", st)
	}
	if want := uint64(countBelow(late, 100*time.Millisecond)); st.OnTime != want {
		t.Fatalf("OnTime = %d, want %d (lateness %v)", st.OnTime, want, late)
	}
}

func countBelow(ds []time.Duration, limit time.Duration) int {
	n := 0
	for _, d := range ds {
		if d <= limit {
			n++
		}
	}
	return n
}

func TestRemoveWhileRunning(t *testing.T) {
	tests := []struct {
		name    string
		addBack bool
	}{
		{"removed_stays_removed", false},
		{"added_back_runs_after_the_old_run", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			release := make(chan struct{})
			var calls atomic.Int32
			j := h.job("a", time.Second, func(context.Context) time.Duration {
				if calls.Add(1) == 1 {
					h.hold(release)
				}
				return 0
			})
			h.add(j)
			h.start()
			releaseOnce := sync.OnceFunc(func() { close(release) })
			t.Cleanup(releaseOnce)
			due := h.due("a")
			h.advanceTo(due)
			if !h.s.Remove("a") {
				t.Fatal("Remove(a) = false while running")
			}
			if h.s.Len() != 0 {
				t.Fatalf("Len = %d after Remove, want 0", h.s.Len())
			}
			if tt.addBack {
				h.add(j)
			}
			h.advanceTo(due.Add(2500 * time.Millisecond)) // ticks pass; no second run
			if got := len(h.runsOf("a")); got != 1 {
				t.Fatalf("%d runs while the first one runs, want 1", got)
			}
			h.unhold(1)
			releaseOnce()
			h.settle()
			h.advanceTo(due.Add(5500 * time.Millisecond))
			at := h.runsOf("a")
			if !tt.addBack {
				if len(at) != 1 || h.s.Len() != 0 {
					t.Fatalf("runs %v, Len %d after Remove: want 1 run and no job", at, h.s.Len())
				}
				return
			}
			want := []time.Time{due, due.Add(3 * time.Second), due.Add(4 * time.Second), due.Add(5 * time.Second)}
			if !slices.EqualFunc(at, want, time.Time.Equal) || h.s.Len() != 1 {
				t.Fatalf("runs %v, Len %d; want %v and one job", at, h.s.Len(), want)
			}
		})
	}
}

func TestUpdateInterval(t *testing.T) {
	tests := []struct {
		name     string
		from, to time.Duration
	}{
		// Shorter: the pending tick 30s away moves onto the 1s grid.
		{"shorter_moves_pending_tick", 30 * time.Second, time.Second},
		// Longer: the pending tick (within 1s) stays, then every 10s.
		{"longer_keeps_pending_tick", time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, first := firstRun(t, tt.from)
			if err := h.s.Update(h.job("a", tt.to, nil)); err != nil {
				t.Fatal(err)
			}
			// Past first+30s: the stale slot of the old tick lands on the new
			// grid and must not cause a second run.
			h.advanceTo(first.Add(35 * time.Second))
			at := h.runsOf("a")[1:]
			if len(at) == 0 {
				t.Fatal("no run after the update")
			}
			if d := at[0].Sub(first); d > min(tt.from, tt.to) {
				t.Fatalf("first run after the update %v later, want within %v", d, min(tt.from, tt.to))
			}
			for k := 1; k < len(at); k++ {
				if gap := at[k].Sub(at[k-1]); gap != tt.to {
					t.Fatalf("runs %v: gap %v, want the new interval %v", at, gap, tt.to)
				}
			}
			if want := int(35*time.Second/tt.to) - 1; len(at) < want {
				t.Fatalf("%d runs in 35s at %v, want at least %d", len(at), tt.to, want)
			}
		})
	}
}

// Ticks that passed while no Run was active are not fired as a burst when
// Run starts: each job waits for its next tick.
func TestRunStartDoesNotBurst(t *testing.T) {
	h := newHarness(t, Options{})
	for i := range 100 {
		h.add(h.job(fmt.Sprintf("j%d", i), time.Second, nil))
	}
	h.clk.Advance(5500 * time.Millisecond)
	h.start()
	h.settle()
	if got := len(h.runsOf("")); got != 0 {
		t.Fatalf("%d runs at start, want 0 (all spread over the next second)", got)
	}
	now := h.clk.Now()
	h.advanceTo(now.Add(500 * time.Millisecond))
	if got := len(h.runsOf("")); got < 30 || got > 70 {
		t.Fatalf("%d runs in the first half second, want about 50", got)
	}
	h.advanceTo(now.Add(time.Second - 1))
	if got := len(h.runsOf("")); got != 100 {
		t.Fatalf("%d runs in the first second, want 100", got)
	}
	late, _, _ := h.m.snapshot()
	if slices.Max(late) != 0 {
		t.Fatalf("max lateness %v, want 0", slices.Max(late))
	}
}

func TestRunLifecycle(t *testing.T) {
	h := newHarness(t, Options{})
	var finished, blocked atomic.Bool
	entered := make(chan struct{})
	h.add(h.job("a", time.Second, func(ctx context.Context) time.Duration {
		if blocked.Swap(true) {
			return 0 // only the first run waits for cancellation
		}
		defer finished.Store(true)
		close(entered)
		<-ctx.Done()
		return 0
	}))
	h.start()
	if err := h.s.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
	h.clk.Advance(time.Second)
	<-entered
	h.stop()
	if !finished.Load() {
		t.Fatal("Run returned before the run in flight finished")
	}
	// The job is still scheduled and runs again on the next Run.
	if h.s.Len() != 1 {
		t.Fatalf("Len = %d after Run returned, want 1", h.s.Len())
	}
	h.add(h.job("b", time.Second, nil))
	h.start()
	h.advanceTo(h.clk.Now().Add(time.Second - 1))
	if got := len(h.runsOf("b")); got != 1 {
		t.Fatalf("job b ran %d times after restart, want 1", got)
	}
}

func TestSystemClock(t *testing.T) {
	s := New(Options{})
	var n atomic.Int32
	enough := make(chan struct{})
	if err := s.Add(Job{ID: "a", Interval: 5 * time.Millisecond, Run: func(context.Context) time.Duration {
		if n.Add(1) == 3 {
			close(enough)
		}
		return 0
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatalf("%d runs in 10s at a 5ms interval, want 3", n.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Runs < 3 {
		t.Fatalf("Stats.Runs = %d, want ≥ 3", st.Runs)
	}
}

// Remove and Update leave stale heap slots behind; they must never cause an
// extra run, and they must not pile up.
func TestStaleSlots(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *harness)
	}{
		{"remove_and_add_back", func(h *harness) {
			h.s.Remove("a")
			h.add(h.job("a", time.Second, nil))
		}},
		{"update_away_and_back", func(h *harness) {
			for _, iv := range []time.Duration{30 * time.Second, 7 * time.Second, time.Second} {
				if err := h.s.Update(h.job("a", iv, nil)); err != nil {
					h.t.Fatal(err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, first := firstRun(t, time.Second)
			for range 100 {
				tt.change(h)
			}
			h.advanceTo(first.Add(40 * time.Second))
			at := h.runsOf("a")
			for k := 1; k < len(at); k++ {
				if gap := at[k].Sub(at[k-1]); gap <= 0 || gap > time.Second {
					t.Fatalf("runs %v: gap %v, want one run per 1s tick", at, gap)
				}
			}
			if len(at) < 40 || len(at) > 41 {
				t.Fatalf("%d runs in 40s at 1s, want 40 or 41", len(at))
			}
			h.s.mu.Lock()
			slots := len(h.s.heap)
			h.s.mu.Unlock()
			if slots != 1 {
				t.Fatalf("%d heap slots for one job after 40s, want 1 (stale slots drained)", slots)
			}
		})
	}
}

func TestHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 5, 17, 1000} {
		t.Run(fmt.Sprintf("n_%d", n), func(t *testing.T) {
			var h timerHeap
			var want []int64
			for range n {
				d := rng.Int64N(100)
				h.push(d, &entry{due: d})
				want = append(want, d)
			}
			slices.Sort(want)
			if got := h.countDue(49, live); got != countLE(want, 49) {
				t.Fatalf("countDue(49) = %d, want %d", got, countLE(want, 49))
			}
			rebuilt := slices.Clone(h)
			rng.Shuffle(len(rebuilt), func(i, j int) { rebuilt[i], rebuilt[j] = rebuilt[j], rebuilt[i] })
			rebuilt.init()
			for _, hp := range []*timerHeap{&h, &rebuilt} {
				var got []int64
				for len(*hp) > 0 {
					got = append(got, hp.pop().due)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("popped %v, want %v", got, want)
				}
			}
		})
	}
}

func countLE(s []int64, v int64) int {
	n := 0
	for _, x := range s {
		if x <= v {
			n++
		}
	}
	return n
}

// Coalesce starts runs due close together in one pass of the heap goroutine:
// never after their tick, at most Coalesce before it, and passes at least
// Coalesce apart.
func TestCoalesceStartsNearbyRunsTogether(t *testing.T) {
	const n, iv = 500, time.Second
	for _, c := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(c.String(), func(t *testing.T) {
			h := newHarness(t, Options{Coalesce: c})
			t0 := h.clk.Now()
			due := map[string]time.Time{}
			for i := range n {
				id := fmt.Sprintf("10_0_0_%d-TCP-80-tcp", i)
				h.add(h.job(id, iv, nil))
				due[id] = h.due(id)
			}
			h.start()
			h.advanceTo(t0.Add(iv + iv/2))
			passes := map[time.Time]bool{}
			for id, at := range due {
				runs := h.runsOf(id)
				if len(runs) == 0 {
					t.Fatalf("%s (due %v) never ran", id, at.Sub(t0))
				}
				if runs[0].After(at) || runs[0].Before(at.Add(-c)) {
					t.Errorf("%s ran at %v, due %v: want within %v before its tick", id, runs[0].Sub(t0), at.Sub(t0), c)
				}
				passes[runs[0]] = true
			}
			starts := slices.SortedFunc(maps.Keys(passes), time.Time.Compare)
			for i := 1; i < len(starts); i++ {
				if gap := starts[i].Sub(starts[i-1]); c > 0 && gap <= c {
					t.Fatalf("passes %v apart (at %v), want more than %v", gap, starts[i].Sub(t0), c)
				}
			}
			// 500 phases in a second: about 500 passes without coalescing,
			// at most one per 5 ms (200) with it.
			if c == 0 && len(starts) < n*9/10 || c > 0 && len(starts) > int(iv/c) {
				t.Fatalf("%d passes started the first runs of %d jobs with Coalesce %v", len(starts), n, c)
			}
			late, _, _ := h.m.snapshot()
			for _, l := range late {
				if l != 0 {
					t.Fatalf("lateness %v, want 0 (early runs are on time)", l)
				}
			}
		})
	}
}
