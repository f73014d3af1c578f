// Package executor runs actions: it builds actioners from an event's
// ActionSpec (cached by name and params), applies them under the spec's
// action-timeout, counts and times them, and publishes every attempt's
// outcome as an event.ActionResult on hm.action.<actioner>.<object>.
package executor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/actioner/internal/action"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// OpSync is the ActionResult op of a re-assertion (the periodic sync).
const OpSync = "SYNC"

// DefaultTimeout is the action-timeout of a spec that gives none (DPVS's
// default for both tiers).
const DefaultTimeout = 2 * time.Second

// publishTimeout bounds the publication of one result.
const publishTimeout = 5 * time.Second

// Config configures an Executor.
type Config struct {
	Node     string              // the LB node, written into every result
	JS       jetstream.JetStream // nil: results are not published
	Space    subject.Space
	Deps     action.Deps // what actioners are built with (the dpvs-agent client)
	Timeout  time.Duration
	Parallel int // jobs DoAll runs at once (default 8)
	Metrics  *metrics.Metrics
	Log      zerolog.Logger
}

// Executor is safe for concurrent use.
type Executor struct {
	cfg   Config
	known map[string]bool // actioner names, the only values of metric labels

	mu    sync.Mutex
	cache map[string]action.Actioner // by spec.Identity()
}

// New returns an executor.
func New(cfg Config) *Executor {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	known := map[string]bool{}
	for _, n := range action.Names() {
		known[n] = true
	}
	return &Executor{cfg: cfg, known: known, cache: map[string]action.Actioner{}}
}

// Job is one action attempt.
type Job struct {
	Spec     event.ActionSpec
	Request  action.Request
	Kind     event.Kind // KindBackend for a VS actioner, KindVA for a VA actioner
	Op       string     // the result's op: APPLY, UP, DOWN or SYNC
	Attempt  int        // delivery count of the event (1 = first), or the sync attempt
	EventSeq uint64     // HM_EVENTS sequence of the (last) triggering event; 0 for a sync
}

// Actioner returns the cached actioner for spec, building it on first use.
// A spec that cannot be built (unknown name, bad params, no agent) is a
// permanent *action.Error.
func (x *Executor) Actioner(spec event.ActionSpec, r action.Request) (action.Actioner, error) {
	key := spec.Identity()
	x.mu.Lock()
	a := x.cache[key]
	x.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := action.New(spec.Actioner, spec.Params, x.cfg.Deps)
	if err != nil {
		return nil, &action.Error{Actioner: spec.Actioner, Object: r.Object(), Op: r.Op, Permanent: true, Err: err}
	}
	x.mu.Lock()
	if cached := x.cache[key]; cached != nil {
		a = cached // built concurrently: keep one
	} else {
		x.cache[key] = a
	}
	x.mu.Unlock()
	return a, nil
}

// Timeout is spec's action-timeout, or the default.
func (x *Executor) Timeout(spec event.ActionSpec) time.Duration {
	if spec.Timeout > 0 {
		return time.Duration(spec.Timeout)
	}
	return x.cfg.Timeout
}

// Do runs one job and publishes its result. The returned error is nil or
// an *action.Error (see action.IsPermanent). When ctx ends during the
// action the error is returned without a result: the process is stopping
// and the event will be delivered again.
func (x *Executor) Do(ctx context.Context, j Job) error {
	start := time.Now()
	var (
		res action.Result
		err error
	)
	a, err := x.Actioner(j.Spec, j.Request)
	if err == nil {
		actx, cancel := context.WithTimeout(ctx, x.Timeout(j.Spec))
		if r, ok := a.(action.Runner); ok {
			res, err = r.Run(actx, j.Request)
		} else {
			err = a.Apply(actx, j.Request)
		}
		cancel()
	}
	dur := time.Since(start)
	if err != nil && ctx.Err() != nil {
		return err
	}
	x.observe(j, err, dur)
	x.publish(ctx, j, err, res, start, dur)
	return err
}

// DoAll runs jobs, at most Parallel at a time, and returns their errors in
// order. It returns when every job has returned.
func (x *Executor) DoAll(ctx context.Context, jobs []Job) []error {
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, x.cfg.Parallel)
	var wg sync.WaitGroup
	for i := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = x.Do(ctx, jobs[i])
		}()
	}
	wg.Wait()
	return errs
}

func (x *Executor) observe(j Job, err error, dur time.Duration) {
	m := x.cfg.Metrics
	if m == nil {
		return
	}
	name := j.Spec.Actioner
	if !x.known[name] {
		name = "unknown" // the name comes from an event: keep the label set bounded
	}
	result := metrics.ResultOK
	switch {
	case action.IsPermanent(err):
		result = metrics.ResultPermanent
	case err != nil:
		result = metrics.ResultError
	}
	m.Actions.WithLabelValues(name, result).Inc()
	m.Duration.WithLabelValues(name).Observe(dur.Seconds())
}

func (x *Executor) publish(ctx context.Context, j Job, err error, res action.Result, start time.Time, dur time.Duration) {
	r := &event.ActionResult{
		V:        event.Version,
		Node:     x.cfg.Node,
		Actioner: j.Spec.Actioner,
		Kind:     j.Kind,
		Object:   j.Request.Object(),
		Op:       j.Op,
		OK:       err == nil,
		Duration: int64(dur),
		Attempt:  j.Attempt,
		EventSeq: j.EventSeq,
		TS:       start.UnixNano(),
		Output:   res.Output,
	}
	if j.Request.Op == action.OpApply {
		r.Items = len(j.Request.Backends)
	}
	if err != nil {
		r.Error = err.Error()
		var se *action.ScriptError
		if r.Output == "" && errors.As(err, &se) {
			r.Output = se.Output
		}
	}
	log := x.cfg.Log.Info()
	if err != nil {
		log = x.cfg.Log.Warn().Err(err).Bool("permanent", action.IsPermanent(err))
	}
	log.Str(logField(j.Kind), r.Object).Str("actioner", r.Actioner).Str("op", r.Op).
		Int("items", r.Items).Int("attempt", r.Attempt).Dur("took", dur).Msg("action")
	if x.cfg.JS == nil {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	subj := x.cfg.Space.Action(j.Spec.Actioner, objectToken(j.Request))
	if _, perr := bus.Publish(pctx, x.cfg.JS, subj, r); perr != nil {
		if x.cfg.Metrics != nil {
			x.cfg.Metrics.PublishErrors.Inc()
		}
		x.cfg.Log.Warn().Err(perr).Str("subject", subj).Msg("action result not published")
	}
}

// objectToken is the subject token of the request's object: the VS token
// for a VS actioner, the VIP's for a VA actioner.
func objectToken(r action.Request) string {
	if r.Proto == 0 && r.Port == 0 {
		return subject.AddrToken(r.VIP)
	}
	return subject.VSID{Addr: r.VIP, Proto: r.Proto, Port: r.Port}.Token()
}

func logField(k event.Kind) string {
	if k == event.KindVA {
		return "va"
	}
	return "vs"
}
