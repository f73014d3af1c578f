package prober

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/prober/internal/member"
	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
	"github.com/healthmesh/healthmesh/services/prober/internal/publish"
	"github.com/healthmesh/healthmesh/services/prober/internal/schedule"
	"github.com/healthmesh/healthmesh/services/prober/internal/shard"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// worker owns the desired targets, the ownership decision and the jobs.
type worker struct {
	o        Options
	log      zerolog.Logger
	sp       subject.Space
	pub      *publish.Publisher
	sched    *schedule.Scheduler
	m        *metrics
	deps     probe.Deps
	registry *member.Registry
	// shared holds the one prober of each method that keeps nothing per
	// target, for targets without params (most of a fleet): not a prober
	// struct per target. Used by the ownership goroutine only.
	shared map[string]probe.Prober

	mu    sync.Mutex
	defs  map[string]*spec // desired, from hm_targets
	owned map[string]*job  // scheduled here
	wake  chan struct{}    // capacity 1: "recompute ownership"
}

// job is one owned target.
type job struct {
	spec   *spec
	subj   string
	prober probe.Prober
	hdr    publish.Headers // used by run only
	mu     sync.Mutex      // guards last (a job never runs twice at once, but Update may race)
	last   event.State
}

// putTarget keeps a new or changed definition. One that cannot be probed is
// counted and logged, and leaves the key's previous definition, if any, in
// place: a bad update does not stop a working check.
func (w *worker) putTarget(key string, t *event.Target, _ uint64) {
	s, err := parseSpec(t)
	if err != nil {
		w.m.badTargets.Inc()
		w.log.Warn().Err(err).Str("target", key).Msg("target cannot be probed")
		return
	}
	w.mu.Lock()
	w.defs[key] = s
	w.mu.Unlock()
	w.poke()
}

func (w *worker) deleteTarget(key string) {
	w.mu.Lock()
	delete(w.defs, key)
	w.mu.Unlock()
	w.poke()
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) ownedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.owned)
}

// ownership recomputes which targets this prober owns whenever targets or
// members change, and adds, updates or removes jobs to match. Changes are
// batched for a moment so that a bulk update reshards once.
func (w *worker) ownership(ctx context.Context) {
	var members <-chan struct{}
	for {
		members = w.registry.Changed()
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-members:
		}
		// Let a burst of changes settle.
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		w.reconcile(ctx)
	}
}

func (w *worker) reconcile(ctx context.Context) {
	ms, _ := w.registry.Snapshot()
	var live []shard.Member
	self := false
	for _, m := range ms {
		live = append(live, shard.Member{ID: m.ID, Node: m.Node, Zone: m.Zone})
		self = self || m.ID == w.o.ID
	}
	if !self {
		// Until our own heartbeat is visible we count ourselves in, so a
		// starting prober does not sit idle for a heartbeat round.
		live = append(live, shard.Member{ID: w.o.ID, Node: w.o.Node, Zone: w.o.Zone})
	}
	tbl, err := shard.NewTable(live)
	if err != nil {
		w.log.Error().Err(err).Msg("membership unusable; ownership unchanged")
		return
	}
	w.mu.Lock()
	defs := maps.Clone(w.defs)
	w.mu.Unlock()

	added, removed, updated := 0, 0, 0
	want := map[string]bool{}
	for id, def := range defs {
		if !tbl.Owns(w.o.ID, id, def.observers) {
			continue
		}
		want[id] = true
		w.mu.Lock()
		cur := w.owned[id]
		w.mu.Unlock()
		if cur != nil && sameProbe(cur.spec, def) {
			continue
		}
		j, err := w.newJob(def)
		if err != nil {
			w.m.badTargets.Inc()
			w.log.Warn().Err(err).Str("target", id).Msg("target cannot be probed")
			continue
		}
		sj := schedule.Job{ID: id, Interval: time.Duration(def.interval), Jitter: def.jitter, Run: j.run(w)}
		if cur == nil {
			err = w.sched.Add(sj)
			added++
		} else {
			err = w.sched.Update(sj)
			updated++
		}
		if err != nil {
			w.log.Warn().Err(err).Str("target", id).Msg("target not scheduled")
			continue
		}
		w.mu.Lock()
		w.owned[id] = j
		w.mu.Unlock()
	}
	w.mu.Lock()
	for id, j := range w.owned {
		if !want[id] {
			w.sched.Remove(id)
			delete(w.owned, id)
			if c, ok := j.prober.(interface{ Close() }); ok {
				c.Close()
			}
			removed++
		}
	}
	n := len(w.owned)
	w.mu.Unlock()
	w.m.owned.Set(float64(n))
	if added+removed+updated > 0 {
		w.log.Info().Int("owned", n).Int("added", added).Int("removed", removed).Int("updated", updated).
			Int("members", len(live)).Msg("ownership changed")
	}
}

// newJob builds the probe of a target.
func (w *worker) newJob(s *spec) (*job, error) {
	tid, err := subject.ParseTargetToken(s.token)
	if err != nil {
		return nil, err
	}
	p, err := w.prober(s.method, s.params)
	if err != nil {
		return nil, err
	}
	return &job{spec: s, subj: w.sp.Result(tid, w.o.ID), prober: p, last: event.Unknown}, nil
}

// run is the scheduled work: probe, publish, pick the next interval.
func (j *job) run(w *worker) func(ctx context.Context) time.Duration {
	return func(ctx context.Context) time.Duration {
		start := time.Now()
		s := j.spec
		res := j.prober.Probe(ctx, &s.target)
		if ctx.Err() != nil {
			return 0 // stopping: do not publish a cancelled probe
		}
		r := event.ProbeResult{Target: s.token, TS: start.UnixNano(), State: res.State, Reason: res.Reason,
			RTT: int64(res.RTT), Detail: res.Detail, Interval: s.interval, Rev: s.rev}
		if err := w.pub.Publish(j.subj, &r, &j.hdr); err != nil {
			w.m.publishErrors.Inc()
		}
		w.m.observe(s.method, res)

		j.mu.Lock()
		defer j.mu.Unlock()
		changing := res.State != event.Unknown && res.State != j.last
		if res.State != event.Unknown {
			j.last = res.State
		}
		switch {
		case changing && s.fast > 0:
			return time.Duration(s.fast)
		case j.last == event.Down && s.down > 0:
			return time.Duration(s.down)
		}
		return 0
	}
}

// prober returns the check of method with params: a new one for http (it
// keeps the TLS settings of its target's address) or any params, else the
// method's shared one. Probers are safe for concurrent use.
func (w *worker) prober(method string, params map[string]string) (probe.Prober, error) {
	if len(params) > 0 || method == probe.MethodHTTP {
		return probe.New(method, params, w.deps)
	}
	if p, ok := w.shared[method]; ok {
		return p, nil
	}
	p, err := probe.New(method, nil, w.deps)
	if err != nil {
		return nil, err
	}
	if _, closes := p.(interface{ Close() }); !closes {
		w.shared[method] = p
	}
	return p, nil
}
