package engine

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/journal"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// The end-to-end benchmarks run the engine (Run) on an embedded nats-server
// in this process, so their CPU figures are the engine's and the server's
// together. Run them with -benchtime=1x: each op sets up a fresh server.

// bench is one embedded server with the healthmesh layout.
type bench struct {
	s  *natstest.Server
	js jetstream.JetStream
	l  *bus.Layout
}

func newBench(b *testing.B) *bench {
	b.Helper()
	s := natstest.RunServer(b)
	_, js := s.JetStream()
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	return &bench{s: s, js: js, l: l}
}

// preload publishes rounds [from, to) of every target's result into
// HM_RESULTS the way probers do (async, with headers) and returns the last
// stream sequence.
func (be *bench) preload(b *testing.B, f *fleet, from, to int) uint64 {
	b.Helper()
	_, js := be.s.JetStream()
	subjects := make([]string, len(f.ids))
	for i, id := range f.ids {
		subjects[i] = be.l.Space.Result(id, f.observer)
	}
	before, err := be.l.Results.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for r := from; r < to; r++ {
		ts := time.Now()
		for i := range f.ids {
			res := f.result(i, r, ts)
			data, err := event.Marshal(&res)
			if err != nil {
				b.Fatal(err)
			}
			m := &nats.Msg{Subject: subjects[i], Header: res.Header(), Data: data}
			for {
				_, err := js.PublishMsgAsync(m)
				if err == nil {
					break
				}
				if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
					b.Fatal(err)
				}
				<-js.PublishAsyncComplete() // back-pressure: let the window drain
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("preload: results not acknowledged within a minute")
	}
	info, err := be.l.Results.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if want := before.State.Msgs + uint64((to-from)*len(f.ids)); info.State.Msgs != want {
		b.Fatalf("HM_RESULTS holds %d results, want %d", info.State.Msgs, want)
	}
	return info.State.LastSeq
}

// metaSeq is the results sequence of the last checkpoint (0 if none).
func (be *bench) metaSeq() uint64 {
	e, err := be.l.State.Get(context.Background(), subject.KeyMeta)
	if err != nil {
		return 0
	}
	var m Meta
	if event.Unmarshal(e.Value(), &m) != nil {
		return 0
	}
	return m.Seq
}

// metricValue reads a counter or gauge.
func metricValue(b *testing.B, m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		b.Fatal(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

// cpuTime is the process's user + system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// marks records when the engine logs given messages.
type marks struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (m *marks) Run(_ *zerolog.Event, _ zerolog.Level, msg string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.at[msg]; !ok {
		m.at[msg] = time.Now()
	}
}

func (m *marks) get(msg string) (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.at[msg]
	return t, ok
}

// running is an engine started with Run, stopped by stop or at cleanup.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error // what Run returned
	reqs   chan Request
	m      *Metrics
	marks  *marks
}

func (be *bench) run(b *testing.B, o Options, d Desired) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), reqs: make(chan Request),
		m: NewMetrics(prometheus.NewRegistry()), marks: &marks{at: map[string]time.Time{}}}
	desired := make(chan Desired, 1)
	desired <- d
	o.JS, o.Layout, o.ID, o.Term, o.Desired, o.Requests, o.Metrics = be.js, be.l, "bench", 1, desired, r.reqs, r.m
	o.Log = zerolog.New(io.Discard).Level(zerolog.InfoLevel).Hook(r.marks)
	go func() { r.done <- Run(ctx, o) }()
	b.Cleanup(r.end) // before the server stops: cleanups run last first
	return r
}

// end stops the engine and waits for Run to return.
func (r *running) end() {
	r.cancel()
	r.once.Do(func() { r.err = <-r.done })
}

// stopped reports whether Run returned, and what.
func (r *running) stopped() (bool, error) {
	select {
	case err := <-r.done:
		r.once.Do(func() { r.err = err })
		return true, r.err
	default:
		return false, nil
	}
}

// until waits for cond; it fails at once if the engine stopped.
func (r *running) until(b *testing.B, what string, cond func() bool) {
	b.Helper()
	wait.For(b, 5*time.Minute, what, func() bool {
		if ok, err := r.stopped(); ok {
			b.Fatalf("engine stopped before %s: %v", what, err)
		}
		return cond()
	})
}

// folded waits until the engine has folded n results.
func (r *running) folded(b *testing.B, n float64, what string) {
	b.Helper()
	r.until(b, what, func() bool { return metricValue(b, r.m.results) >= n })
}

func (r *running) stop(b *testing.B) {
	r.end()
	if r.err != nil {
		b.Fatal(r.err)
	}
}

func (r *running) info(b *testing.B) Info {
	reply := make(chan Reply, 1)
	select {
	case r.reqs <- Request{Op: OpStatus, Reply: reply}:
	case err := <-r.done:
		r.once.Do(func() { r.err = err })
		b.Fatalf("engine stopped: %v", err)
	}
	return (<-reply).Info
}

// BenchmarkEndToEnd is target 2: HM_RESULTS pre-loaded with 500,000 results
// (10,000 targets × 50 rounds, 1 target in 100 flapping), then Run until
// every result is folded and checkpointed.
//
//   - cold_start: a fresh installation; the first two rounds bring every
//     backend, VS and VA from unknown to up: 11,100 transitions, each
//     journaled synchronously, before the flapping ones.
//   - restored: a previous engine folded rounds 0-1 and checkpointed; a new
//     one restores that state and folds the other 480,000 results.
//
// The engine's clock is frozen at the end of the preload so no target turns
// stale while the backlog drains; CheckpointEvery is 1 s, so "checkpointed"
// includes up to a second of waiting for the ticker.
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("cold_start", func(b *testing.B) { endToEnd(b, false) })
	b.Run("restored", func(b *testing.B) { endToEnd(b, true) })
}

func endToEnd(b *testing.B, restored bool) {
	const targets, rounds = 10_000, 50
	var folded, stored, cpu, active, warmed time.Duration
	n, first := targets*rounds, 0
	vss := targets / backendsPerVS
	var want float64
	for range b.N {
		b.StopTimer()
		be := newBench(b)
		f := newFleet(targets, 100)
		// After the first two rounds, a flapping target changes every second
		// round; before, everything came up.
		want = float64(rounds-2) * f.changesPerRound()
		if !restored {
			want += float64(targets + vss + vss/vssPerVA)
		}
		if restored {
			last := be.preload(b, f, 0, 2)
			frozen := time.Now()
			a := be.run(b, Options{CheckpointEvery: 50 * time.Millisecond, Now: func() time.Time { return frozen }}, f.desired)
			a.until(b, "the first rounds checkpointed", func() bool { return be.metaSeq() >= last })
			a.stop(b)
			n, first = targets*(rounds-2), 2
		}
		last := be.preload(b, f, first, rounds)
		frozen := time.Now()
		cpu0 := cpuTime(b)
		start := time.Now()
		b.StartTimer()
		r := be.run(b, Options{CheckpointEvery: time.Second, Now: func() time.Time { return frozen }}, f.desired)
		if !restored {
			r.folded(b, 2*targets, "every target up")
			warmed = time.Since(start)
		}
		r.folded(b, float64(n), "every result folded")
		folded = time.Since(start)
		r.until(b, "the last result checkpointed", func() bool { return be.metaSeq() >= last })
		stored = time.Since(start)
		cpu = cpuTime(b) - cpu0
		b.StopTimer()
		if at, ok := r.marks.get("aggregator active"); ok {
			active = at.Sub(start)
		}
		if at, ok := r.marks.get("state restored"); ok {
			b.Logf("restored after %v, restore gauge %.3fs, active after %v", at.Sub(start), metricValue(b, r.m.restoreSeconds), active)
		}
		info := r.info(b)
		r.stop(b)
		if info.Targets != targets || info.Seq != last {
			b.Fatalf("engine: %d targets, folded up to %d; want %d, %d", info.Targets, info.Seq, targets, last)
		}
		if got := transitions(b, r.m); got != want {
			b.Fatalf("%v transitions published, want %v", got, want)
		}
	}
	b.ReportMetric(float64(n)/folded.Seconds(), "folded-results/s")
	b.ReportMetric(float64(n)/stored.Seconds(), "checkpointed-results/s")
	b.ReportMetric(float64(n)/(folded-active).Seconds(), "results/s-after-start")
	b.ReportMetric(active.Seconds(), "start-s")
	b.ReportMetric(want, "transitions")
	if !restored {
		// The first two rounds are all transitions: the journal's rate.
		b.ReportMetric(float64(targets+vss+vss/vssPerVA)/(warmed-active).Seconds(), "cold-transitions/s")
	}
	b.ReportMetric(cpu.Seconds(), "cpu-s")
	b.ReportMetric(cpu.Seconds()/stored.Seconds(), "cores")
	// What the results cost, whatever share of the machine the run got.
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/result")
}

func transitions(b *testing.B, m *Metrics) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { m.transitions.Collect(ch); close(ch) }()
	total := 0.0
	for c := range ch {
		total += metricValue(b, c)
	}
	return total
}

// BenchmarkRestore is target 4: hm_state holds the checkpoint of 100,000
// targets (one observer each, all up) plus the journal's copy of every
// object's last transition; a new engine restores it. "restore-s" is what
// the engine reports in healthmesh_aggregator_restore_duration_seconds;
// "active-s" adds reading hm_targets, applying the inventory and opening
// the results consumer, until it logs "aggregator active".
func BenchmarkRestore(b *testing.B) {
	const targets = 100_000
	var restore, active, cpu time.Duration
	for range b.N {
		b.StopTimer()
		be := newBench(b)
		f := newFleet(targets, 0)
		setup := be.checkpointFleet(b, f)
		cpu0 := cpuTime(b)
		start := time.Now()
		b.StartTimer()
		// The clock stays at the checkpoint's time: observers do not turn
		// stale however long the restore takes.
		r := be.run(b, Options{Now: func() time.Time { return setup }}, f.desired)
		r.until(b, "aggregator active", func() bool { _, ok := r.marks.get("aggregator active"); return ok })
		b.StopTimer()
		at, _ := r.marks.get("aggregator active")
		active, cpu = at.Sub(start), cpuTime(b)-cpu0
		restore = time.Duration(metricValue(b, r.m.restoreSeconds) * float64(time.Second))
		info := r.info(b)
		r.stop(b)
		if info.Targets != targets {
			b.Fatalf("restored engine judges %d targets, want %d", info.Targets, targets)
		}
		// Restored exactly: not a single transition.
		if n := transitions(b, r.m); n != 0 {
			b.Fatalf("restore published %v transitions, want none", n)
		}
	}
	b.ReportMetric(restore.Seconds(), "restore-s")
	b.ReportMetric(active.Seconds(), "active-s")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
}

// checkpointFleet stores in hm_state and hm_targets what an engine judging
// f holds after every target was seen up four times: the engine's own
// checkpoint (written through the server) and, for each backend, VS and VA,
// its last transition as the journal keeps it. It returns the engine's
// clock at the checkpoint. The transitions themselves
// are not sent to HM_EVENTS: at one synchronous publish each that would
// take minutes and is not part of a restore.
func (be *bench) checkpointFleet(b *testing.B, f *fleet) time.Time {
	b.Helper()
	ctx := context.Background()
	now := time.Now()
	off := newOffline()
	e := newEngine(Options{JS: be.js, Layout: be.l, ID: "setup", Term: 1, Log: zerolog.Nop(),
		Now: func() time.Time { return now }})
	e.journal = journal.New(off, &bus.Layout{Space: be.l.Space, Events: offlineStream{}, State: offlineKV{name: be.l.Space.BucketState()}})
	if err := e.applyDesired(ctx, f.desired); err != nil {
		b.Fatal(err)
	}
	// Four rounds, checkpointed after each from the second: like a running
	// engine's, the bucket holds superseded revisions of every target's
	// snapshot between the live ones.
	rs := f.rounds(foldBatch)
	for r := range 4 {
		now = now.Add(time.Millisecond)
		for _, batch := range rs.round(r, now) {
			if err := e.fold(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		if r == 0 {
			continue
		}
		if err := e.checkpoint(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// The journal's copies: one transition per object, as large as real ones.
	snap := e.model.Snapshot()
	put := func(key string, tr *event.Transition) {
		data, err := event.Marshal(tr)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.kv.Put(ctx, key, data); err != nil {
			b.Fatal(err)
		}
	}
	tr := func(kind event.Kind, obj string) *event.Transition {
		return &event.Transition{V: event.Version, Kind: kind, Object: obj, From: event.Unknown, To: event.Up,
			Reason: event.ReasonL4OK, Gen: 1, TS: now.UnixNano(), Rev: 1, Term: 1, Aggregator: "setup"}
	}
	for _, r := range snap.Backends {
		vs, _ := subject.ParseEndpoint(r.VS)
		id, _ := subject.ParseEndpoint(r.Backend)
		t := tr(event.KindBackend, r.Backend)
		t.VS, t.Votes = r.VS, []event.Vote{{Observer: f.observer, State: event.Up, Last: event.Up, Count: 4, TS: now.UnixNano()}}
		t.Apply = &event.BackendApply{VIP: vs.Addr.String(), VPort: vs.Port, Proto: "TCP", Addr: id.Addr.String(),
			Port: id.Port, Weight: r.Weight, UserWeight: r.Weight, Version: "1"}
		t.Action = &event.ActionSpec{Actioner: "BackendUpdate"}
		put(subject.KeyBackendState(vs, id), t)
	}
	for _, r := range snap.VSs {
		vs, _ := subject.ParseEndpoint(r.VS)
		t := tr(event.KindVS, r.VS)
		t.Counts = &event.Counts{Total: backendsPerVS, Up: backendsPerVS}
		put(subject.KeyVSState(vs), t)
	}
	for _, r := range snap.VAs {
		vs, _ := subject.ParseEndpoint(r.VIP + "-TCP-0")
		put(subject.KeyVAState(vs.Addr), tr(event.KindVA, r.VIP))
	}
	if err := e.kv.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	if be.metaSeq() != e.seq || e.seq == 0 {
		b.Fatalf("setup checkpoint at %d, want %d", be.metaSeq(), e.seq)
	}
	return now
}
