// Package resync re-asserts the desired state every action-sync-time, as
// DPVS's VS and VA resync do, so that a missed or failed action, or a change
// made behind the actioner's back, heals by itself: objects whose last
// attempt failed (or that this process has not applied yet) are applied
// again; VA actioners that can observe their state (action.Verdicter) are
// asked and re-applied on drift; and for BackendUpdate the dpvs-agent
// service list is read once per round and backends whose inhibited flag
// differs from the desired one are re-applied.
//
// Step runs on the goroutine that delivers transitions, so a re-application
// never races a delivery on the same object; the service list (tens of
// milliseconds for 10,000 backends) is read by Run, beside it, so that
// reading it does not delay a delivery.
package resync

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/actioner/internal/action"
	"github.com/healthmesh/healthmesh/services/actioner/internal/executor"
	"github.com/healthmesh/healthmesh/services/actioner/internal/ledger"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Default action-sync-times (DPVS's), for specs that give none.
const (
	DefaultVS = 15 * time.Second
	DefaultVA = 60 * time.Second
)

// verdictTimeout caps a verdict call, as DPVS does (1 s).
const verdictTimeout = time.Second

// idle is the longest Step waits between two looks at every object (so a
// new object's first due time, one sync time after it appears, is set at
// most this late). A look copies every ledger entry: at 10,000 backends,
// looking every second was 2% of the all-in-one's CPU (BENCHMARKS.md,
// session 12). With the default 15 s sync time a new object is first
// re-asserted 15-20 s after it appears.
const idle = 5 * time.Second

// listPoll is how soon Step looks again for a service list it asked Run for.
const listPoll = 20 * time.Millisecond

// Config configures a Resyncer.
type Config struct {
	Exec    *executor.Executor
	Ledger  *ledger.Ledger
	Agent   *dpvsagent.Client // nil: BackendUpdate drift is not looked for
	Metrics *metrics.Metrics
	Log     zerolog.Logger

	DefaultVS, DefaultVA time.Duration // sync times of specs that give none
	Now                  func() time.Time
}

// Resyncer keeps when each VS and VA was last looked at. Step is called from one
// goroutine (the consumer's, between batches); Run, from another, reads the
// dpvs-agent service list when Step asks for it.
type Resyncer struct {
	cfg    Config
	lastVS map[string]time.Time // VS token → last looked at
	lastVA map[string]time.Time // ledger key → last looked at
	wake   time.Time            // earliest due time found by the last look (at most idle later)
	kicked atomic.Bool          // Kick was called: look at everything now

	ask    chan struct{} // Step → Run: read the service list (buffered, 1)
	asked  bool          // Step asked and has not taken a list since
	mu     sync.Mutex
	listed *listing // Run → Step: the list read last, until a Step takes it
}

// listing is one read of the dpvs-agent service list.
type listing struct {
	mark uint64 // the ledger's Mark before the read began
	err  error
	vss  map[subject.VSID]*dpvsagent.VirtualServer
}

// Kick makes the next Step treat every object as due, as at start: the
// caller may have missed events (its consumer had to be re-created).
func (r *Resyncer) Kick() { r.kicked.Store(true) }

// New returns a Resyncer.
func New(cfg Config) *Resyncer {
	if cfg.DefaultVS <= 0 {
		cfg.DefaultVS = DefaultVS
	}
	if cfg.DefaultVA <= 0 {
		cfg.DefaultVA = DefaultVA
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Resyncer{cfg: cfg, lastVS: map[string]time.Time{}, lastVA: map[string]time.Time{}, ask: make(chan struct{}, 1)}
}

// Run reads the dpvs-agent service list each time Step asks for it, until
// ctx ends. Without Run (or without an agent), BackendUpdate drift is never
// looked for.
func (r *Resyncer) Run(ctx context.Context) {
	if r.cfg.Agent == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.ask:
		}
		l := &listing{mark: r.cfg.Ledger.Mark()}
		lctx, cancel := context.WithTimeout(ctx, dpvsagent.DefaultTimeout)
		list, err := r.cfg.Agent.ListVS(lctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.err = err
			r.cfg.Metrics.SyncErrors.WithLabelValues("list").Inc()
			r.cfg.Log.Warn().Err(err).Msg("resync: dpvs-agent service list unavailable; BackendUpdate drift not checked this round")
		} else {
			l.vss = make(map[subject.VSID]*dpvsagent.VirtualServer, len(list))
			for i := range list {
				if id, err := list[i].ID(); err == nil {
					l.vss[id] = &list[i]
				}
			}
		}
		r.mu.Lock()
		r.listed = l
		r.mu.Unlock()
	}
}

// take returns the list Run read last, once.
func (r *Resyncer) take() *listing {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.listed
	r.listed = nil
	if l != nil {
		r.asked = false
	}
	return l
}

// askList asks Run for a new read of the service list, unless a read asked
// for has not been taken yet.
func (r *Resyncer) askList() {
	if r.asked {
		return
	}
	r.asked = true
	r.ask <- struct{}{} // never blocks: a Step asks again only after taking
}

// work is one re-application: its job and the ledger entries it settles.
type work struct {
	job  executor.Job
	keys []string
	gens []uint64
}

// Step re-asserts every object that is due and returns how long until the
// next one is. Nothing happens before hm_state has been loaded once; objects
// of that initial load are due at once (so a restarted actioner checks
// everything), objects that appear later are first due one sync time after
// they appear.
func (r *Resyncer) Step(ctx context.Context) time.Duration {
	if !r.cfg.Ledger.IsSynced() {
		return 100 * time.Millisecond
	}
	now := r.cfg.Now()
	kicked := r.kicked.Swap(false)
	if now.Before(r.wake) && !kicked {
		// Nothing is due yet and the last look is less than idle old: do
		// not walk every object after every batch of a busy stream.
		return r.wake.Sub(now)
	}
	next := now.Add(idle)
	defer func() { r.wake = next }()
	// due keeps, per key, when it was last looked at (so a spec whose sync
	// time changes takes effect at once) and reports whether it is due now.
	due := func(m map[string]time.Time, key string, initial bool, period time.Duration) bool {
		last, ok := m[key]
		switch {
		case kicked || !ok && initial: // the state this process starts from: look now
		case !ok: // new: first due one period from now
			last, m[key] = now, now
			fallthrough
		default:
			if at := last.Add(period); now.Before(at) {
				next = earlier(next, at)
				return false
			}
		}
		m[key] = now
		next = earlier(next, now.Add(period))
		return true
	}

	var todo []work
	list, waiting := r.take(), false
	vss := r.cfg.Ledger.Backends()
	for vsTok := range r.lastVS {
		if _, ok := vss[vsTok]; !ok {
			delete(r.lastVS, vsTok)
		}
	}
	for vsTok, objs := range vss {
		if !due(r.lastVS, vsTok, anyInitial(objs), r.period(objs, r.cfg.DefaultVS)) {
			continue
		}
		w, ok := r.vs(list, objs)
		if !ok {
			// It needs the service list and Run has not read it yet:
			// due again as soon as it has.
			r.lastVS[vsTok], waiting = time.Time{}, true
			continue
		}
		todo = append(todo, w...)
	}
	if waiting {
		r.askList()
		next = earlier(next, now.Add(listPoll))
	}
	vas := r.cfg.Ledger.VAs()
	live := make(map[string]bool, len(vas))
	for _, o := range vas {
		live[o.Key] = true
		if due(r.lastVA, o.Key, o.Initial, r.period([]ledger.Object{o}, r.cfg.DefaultVA)) {
			if w, ok := r.va(ctx, o); ok {
				todo = append(todo, w)
			}
		}
	}
	for k := range r.lastVA {
		if !live[k] {
			delete(r.lastVA, k)
		}
	}
	if len(todo) > 0 && ctx.Err() == nil {
		r.run(ctx, todo)
	}
	return max(next.Sub(r.cfg.Now()), 0)
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func anyInitial(objs []ledger.Object) bool {
	for _, o := range objs {
		if o.Initial {
			return true
		}
	}
	return false
}

// period is the smallest action-sync-time among the objects' specs.
func (r *Resyncer) period(objs []ledger.Object, def time.Duration) time.Duration {
	p := time.Duration(0)
	for _, o := range objs {
		if a := actionOf(o); a != nil && a.SyncTime > 0 && (p == 0 || time.Duration(a.SyncTime) < p) {
			p = time.Duration(a.SyncTime)
		}
	}
	if p == 0 {
		return def
	}
	return p
}

func actionOf(o ledger.Object) *event.ActionSpec {
	if o.Desired == nil {
		return nil
	}
	return o.Desired.Action
}

func (r *Resyncer) run(ctx context.Context, todo []work) {
	jobs := make([]executor.Job, len(todo))
	for i, w := range todo {
		jobs[i] = w.job
	}
	errs := r.cfg.Exec.DoAll(ctx, jobs)
	for i, w := range todo {
		if ctx.Err() != nil && errs[i] != nil {
			continue
		}
		for k, key := range w.keys {
			r.cfg.Ledger.Record(key, w.gens[k], errs[i], action.IsPermanent(errs[i]))
		}
		if errs[i] == nil {
			r.cfg.Metrics.SyncRepairs.WithLabelValues(w.job.Spec.Actioner).Add(float64(len(w.keys)))
		}
	}
}

// vs plans the re-application of one VS's backends, one job per actioner;
// ok=false when that needs a service list and list is nil.
func (r *Resyncer) vs(list *listing, objs []ledger.Object) (out []work, ok bool) {
	bySpec := map[string][]ledger.Object{}
	var order []string
	for _, o := range objs {
		if o.Desired == nil || !o.Desired.Apply || o.Desired.Action == nil || o.Status == ledger.Rejected {
			continue
		}
		k := o.Desired.Action.Key()
		if _, ok := bySpec[k]; !ok {
			order = append(order, k)
		}
		bySpec[k] = append(bySpec[k], o)
	}
	for _, k := range order {
		group := bySpec[k]
		spec := *group[0].Desired.Action
		if spec.Actioner == action.NameBackendUpdate && r.cfg.Agent != nil {
			if list == nil {
				return nil, false
			}
			if w, ok := r.backendDrift(list, spec, group); ok {
				out = append(out, w)
			}
			continue
		}
		var redo []ledger.Object
		for _, o := range group {
			if o.Status != ledger.Applied {
				redo = append(redo, o)
			}
		}
		if w, ok := backendWork(spec, redo, nil, ""); ok {
			out = append(out, w)
		}
	}
	return out, true
}

// backendDrift compares the desired backends of one VS with what
// dpvs-agent lists. Only the inhibited flag is compared: the agent's
// listing keeps the user's weight whatever a health update set, so its
// weight says nothing about ours. Backends that match are confirmed;
// those that differ are re-applied against the listed version, an up one
// with the listed (user) weight. Backends the agent does not list are left
// alone, and so are backends acted on since the read began (the list may
// predate that action; the next round looks at them).
func (r *Resyncer) backendDrift(list *listing, spec event.ActionSpec, group []ledger.Object) (work, bool) {
	vsID, err := ledger.ParseKey(group[0].Key)
	if err != nil || list.err != nil {
		return work{}, false
	}
	vs := list.vss[vsID.VS]
	if vs == nil {
		return work{}, false
	}
	current := map[netip.AddrPort]dpvsagent.RealServer{}
	for _, rs := range vs.Backends() {
		if a, err := rs.Addr(); err == nil {
			current[netip.AddrPortFrom(a, rs.Port)] = rs
		}
	}
	var redo []ledger.Object
	weights := map[string]uint16{}
	for _, o := range group {
		k, err := ledger.ParseKey(o.Key)
		if err != nil || o.Changed > list.mark {
			continue
		}
		rs, ok := current[netip.AddrPortFrom(k.Backend.Addr, k.Backend.Port)]
		if !ok {
			continue
		}
		if rs.IsInhibited() == o.Desired.Inhibited {
			if o.Status != ledger.Applied {
				r.cfg.Ledger.Record(o.Key, o.Desired.Gen, nil, false)
			}
			continue
		}
		redo = append(redo, o)
		weights[o.Key] = rs.Weight
	}
	return backendWork(spec, redo, weights, vs.Version)
}

// backendWork builds the SYNC job re-applying objs (backends of one VS);
// weights, when set, replaces the weight of up backends.
func backendWork(spec event.ActionSpec, objs []ledger.Object, weights map[string]uint16, version string) (work, bool) {
	if len(objs) == 0 {
		return work{}, false
	}
	k0, err := ledger.ParseKey(objs[0].Key)
	if err != nil {
		return work{}, false
	}
	w := work{job: executor.Job{
		Spec: spec, Kind: event.KindBackend, Op: executor.OpSync,
		Request: action.Request{
			Op: action.OpApply, VIP: k0.VS.Addr, Port: k0.VS.Port, Proto: k0.VS.Proto, Version: version,
			Env: map[string]string{action.EnvObject: k0.VS.String()},
		},
	}}
	for _, o := range objs {
		k, err := ledger.ParseKey(o.Key)
		if err != nil {
			continue
		}
		a := o.Desired
		b := action.Backend{Addr: k.Backend.Addr, Port: k.Backend.Port, Weight: a.Weight, Inhibited: a.Inhibited}
		if uw, ok := weights[o.Key]; ok && !a.Inhibited && uw > 0 {
			b.Weight = uw
		}
		if w.job.Request.Version == "" {
			w.job.Request.Version = a.Version
		}
		w.job.Request.Backends = append(w.job.Request.Backends, b)
		w.job.Attempt = max(w.job.Attempt, o.Failures+1)
		w.keys = append(w.keys, o.Key)
		w.gens = append(w.gens, o.Desired.Gen)
	}
	return w, len(w.keys) > 0
}

// va plans the re-application of one VA: after a failure, when not applied
// by this process yet, or when its actioner's verdict disagrees.
func (r *Resyncer) va(ctx context.Context, o ledger.Object) (work, bool) {
	t := o.Desired
	if t == nil || t.Action == nil || o.Status == ledger.Rejected {
		return work{}, false
	}
	var op action.Op
	switch t.To {
	case event.Up:
		op = action.OpUp
	case event.Down:
		op = action.OpDown
	default:
		return work{}, false
	}
	k, err := ledger.ParseKey(o.Key)
	if err != nil {
		return work{}, false
	}
	req := action.Request{Op: op, VIP: k.VA, Env: map[string]string{
		action.EnvObject: k.VA.String(), action.EnvFrom: string(t.From), action.EnvTo: string(t.To), action.EnvReason: string(t.Reason),
	}}
	if o.Status == ledger.Applied && !r.drifted(ctx, *t.Action, req) {
		return work{}, false
	}
	return work{
		job:  executor.Job{Spec: *t.Action, Request: req, Kind: event.KindVA, Op: executor.OpSync, Attempt: o.Failures + 1},
		keys: []string{o.Key},
		gens: []uint64{t.Gen},
	}, true
}

// drifted asks a Verdicter whether the VA is as req wants it. Actioners
// without a verdict, and verdicts that fail, report no drift.
func (r *Resyncer) drifted(ctx context.Context, spec event.ActionSpec, req action.Request) bool {
	a, err := r.cfg.Exec.Actioner(spec, req)
	if err != nil {
		return false
	}
	v, ok := a.(action.Verdicter)
	if !ok {
		return false
	}
	vctx, cancel := context.WithTimeout(ctx, min(verdictTimeout, r.cfg.Exec.Timeout(spec)))
	defer cancel()
	present, err := v.Verdict(vctx, req)
	if err != nil {
		r.cfg.Metrics.SyncErrors.WithLabelValues("verdict").Inc()
		r.cfg.Log.Warn().Err(err).Str("va", req.Object()).Msg("resync: verdict failed")
		return false
	}
	if present != (req.Op == action.OpUp) {
		r.cfg.Log.Info().Str("va", req.Object()).Str("want", string(req.Op)).Bool("present", present).Msg("resync: drift")
		return true
	}
	return false
}
