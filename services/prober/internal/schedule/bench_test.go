package schedule

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("10_%d_%d_%d-TCP-80-tcp-%08x", i>>16, i>>8&255, i&255, i)
	}
	return ids
}

// BenchmarkMemory reports the scheduler's own memory per job at 100k jobs
// (IDs and the Run function belong to the caller and are not counted).
func BenchmarkMemory(b *testing.B) {
	const n = 100_000
	ids := benchIDs(n)
	var perJob float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := New(Options{})
		for _, id := range ids {
			if err := s.Add(Job{ID: id, Interval: time.Second, Run: noop}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perJob = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		if s.Len() != n {
			b.Fatalf("Len = %d, want %d", s.Len(), n)
		}
	}
	b.ReportMetric(perJob, "bytes/job")
}

// lateRecorder keeps every lateness in a preallocated slice.
type lateRecorder struct {
	n    atomic.Int64
	late []time.Duration
}

func (r *lateRecorder) Lateness(d time.Duration) {
	if i := r.n.Add(1) - 1; i < int64(len(r.late)) {
		r.late[i] = d
	}
}
func (r *lateRecorder) Overrun(string, int) {}
func (r *lateRecorder) QueueDepth(int)      {}

// BenchmarkSchedule runs 100k no-op jobs at a 1s interval on the system
// clock until b.N runs have started, and reports the process CPU time per
// 1000 runs and the lateness percentiles. It is real time: b.N runs take
// about b.N/100k seconds; use -benchtime=300000x for a 3s measurement.
func BenchmarkSchedule(b *testing.B) {
	for _, c := range []time.Duration{0, CoalesceRuns} {
		b.Run("coalesce="+c.String(), func(b *testing.B) { benchSchedule(b, c) })
	}
}

func benchSchedule(b *testing.B, coalesce time.Duration) {
	const n = 100_000
	ids := benchIDs(n)
	rec := &lateRecorder{late: make([]time.Duration, b.N)}
	s := New(Options{Metrics: rec, Coalesce: coalesce})
	var started atomic.Int64
	enough := make(chan struct{})
	target := int64(b.N)
	run := func(context.Context) time.Duration {
		if started.Add(1) == target {
			close(enough)
		}
		return 0
	}
	for _, id := range ids {
		if err := s.Add(Job{ID: id, Interval: time.Second, Run: run}); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	cpu0 := cpuTime(b)
	go func() { done <- s.Run(ctx) }()
	<-enough
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	late := rec.late[:min(int(rec.n.Load()), len(rec.late))]
	slices.Sort(late)
	pct := func(p float64) float64 { return float64(late[int(p*float64(len(late)-1))]) / 1e3 }
	st := s.Stats()
	b.ReportMetric(float64(cpu)/float64(b.N)*1000/1e3, "cpu-µs/1000runs")
	b.ReportMetric(pct(0.5), "p50-late-µs")
	b.ReportMetric(pct(0.99), "p99-late-µs")
	b.ReportMetric(pct(1), "max-late-µs")
	b.ReportMetric(float64(st.OnTime)/float64(max(st.Runs, 1)), "on-time")
	b.ReportMetric(float64(st.Overruns), "overruns")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
