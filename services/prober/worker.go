package prober

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strings"
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
	defs  map[string]*event.Target // desired, from hm_targets
	owned map[string]*job          // scheduled here
	wake  chan struct{}            // capacity 1: "recompute ownership"
}

// job is one owned target.
type job struct {
	def     *event.Target
	subj    string
	prober  probe.Prober
	target  probe.Target
	method  string
	hdr     publish.Headers // used by run only
	mu      sync.Mutex      // guards last (a job never runs twice at once, but Update may race)
	last    event.State
	changes int
}

func (w *worker) putTarget(key string, t *event.Target, _ uint64) {
	t.UsedBy = nil // which backends share a target is the aggregator's business: not kept per target here
	w.mu.Lock()
	w.defs[key] = t
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
		if !tbl.Owns(w.o.ID, id, def.Observers) {
			continue
		}
		want[id] = true
		w.mu.Lock()
		cur := w.owned[id]
		w.mu.Unlock()
		if cur != nil && sameDef(cur.def, def) {
			continue
		}
		j, err := w.newJob(def)
		if err != nil {
			w.m.badTargets.Inc()
			w.log.Warn().Err(err).Str("target", id).Msg("target cannot be probed")
			continue
		}
		sj := schedule.Job{ID: id, Interval: time.Duration(def.Interval), Jitter: def.Jitter, Run: j.run(w)}
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

func sameDef(a, b *event.Target) bool {
	if a.Interval != b.Interval || a.Timeout != b.Timeout || a.Method != b.Method || a.Jitter != b.Jitter ||
		a.FastInterval != b.FastInterval || a.DownInterval != b.DownInterval || a.Source != b.Source ||
		a.Netns != b.Netns || a.CheckAddr != b.CheckAddr || a.CheckPort != b.CheckPort || a.Addr != b.Addr ||
		a.Port != b.Port || a.Proto != b.Proto || a.Observers != b.Observers {
		return false
	}
	return maps.Equal(a.Params, b.Params)
}

// newJob builds the probe of a target.
func (w *worker) newJob(def *event.Target) (*job, error) {
	tid, err := subject.ParseTargetToken(def.ID)
	if err != nil {
		return nil, err
	}
	proto, err := subject.ParseProto(def.Proto)
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddr(def.Addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", def.Addr, err)
	}
	if def.CheckAddr != "" {
		if addr, err = netip.ParseAddr(def.CheckAddr); err != nil {
			return nil, fmt.Errorf("check address %q: %w", def.CheckAddr, err)
		}
	}
	port := def.Port
	if def.CheckPort != 0 {
		port = def.CheckPort
	}
	pt := probe.Target{Addr: netip.AddrPortFrom(addr.Unmap(), port), Proto: proto, Timeout: time.Duration(def.Timeout), Netns: def.Netns}
	if def.Source != "" {
		src, err := netip.ParseAddr(def.Source)
		if err != nil {
			// Not a literal: a go-sockaddr template, resolved here, on the
			// prober's host, where the address belongs.
			if src, err = probe.ResolveSource(def.Source); err != nil {
				return nil, err
			}
		}
		pt.Source = src
	}
	method := probe.Resolve(strings.ToLower(def.Method), proto)
	p, err := w.prober(method, def.Params)
	if err != nil {
		return nil, err
	}
	return &job{def: def, subj: w.sp.Result(tid, w.o.ID), prober: p, target: pt, method: method, last: event.Unknown}, nil
}

// run is the scheduled work: probe, publish, pick the next interval.
func (j *job) run(w *worker) func(ctx context.Context) time.Duration {
	return func(ctx context.Context) time.Duration {
		start := time.Now()
		res := j.prober.Probe(ctx, &j.target)
		if ctx.Err() != nil {
			return 0 // stopping: do not publish a cancelled probe
		}
		r := event.ProbeResult{Target: j.def.ID, TS: start.UnixNano(), State: res.State, Reason: res.Reason,
			RTT: int64(res.RTT), Detail: res.Detail, Interval: j.def.Interval, Rev: j.def.Rev}
		if err := w.pub.Publish(j.subj, &r, &j.hdr); err != nil {
			w.m.publishErrors.Inc()
		}
		w.m.observe(j.method, res)

		j.mu.Lock()
		defer j.mu.Unlock()
		changing := res.State != event.Unknown && res.State != j.last
		if res.State != event.Unknown {
			j.last = res.State
		}
		switch {
		case changing && j.def.FastInterval > 0:
			return time.Duration(j.def.FastInterval)
		case j.last == event.Down && j.def.DownInterval > 0:
			return time.Duration(j.def.DownInterval)
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
