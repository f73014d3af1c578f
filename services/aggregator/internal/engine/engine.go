// Package engine is the active aggregator's loop: one goroutine owns the
// checker state machines (package checker) and the VA → VS → backend model
// (package topology); it restores them from KV hm_state, folds probe results
// from HM_RESULTS into them, publishes every transition through the fenced
// journal, writes the desired targets to KV hm_targets, and checkpoints its
// state so that a restart or failover resumes exactly: results are acked only
// once the state reflecting them is stored.
package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/ingest"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/journal"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/kvwrite"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// TargetDef is one target the inventory wants probed and judged.
type TargetDef struct {
	Def    event.Target   // the hm_targets value probers read
	Params checker.Params // how results are judged
}

// Desired is the inventory's complete wish: what to judge and what to probe.
type Desired struct {
	Inventory topology.Inventory
	Targets   map[string]TargetDef // by target token
	Rev       uint64               // configuration revision
}

// Request is an operator or status request handled in the engine goroutine.
type Request struct {
	Op      Op
	VS      subject.VSID
	Backend subject.BackendID
	Who     string
	Why     string
	Reply   chan<- Reply // buffered by the caller; the engine never blocks on it
}

// Op is a request kind.
type Op string

// Request kinds.
const (
	OpStatus Op = "status"
	OpPause  Op = "pause"
	OpResume Op = "resume"
)

// Reply answers a Request.
type Reply struct {
	Tree   []topology.VAStatus
	Info   Info
	Events int // transitions published by a pause/resume
	Err    error
}

// Info describes the engine for status output.
type Info struct {
	ID       string
	Term     uint64
	Rev      uint64
	Targets  int
	Seq      uint64 // last HM_RESULTS sequence folded
	Acked    uint64 // last HM_RESULTS sequence checkpointed and acked
	CaughtUp bool
	Since    time.Time // active since
}

// Options configures Run.
type Options struct {
	JS     jetstream.JetStream
	Layout *bus.Layout
	ID     string // aggregator instance id
	Term   uint64 // leader term (fencing token)
	// Desired delivers inventories; the engine waits for the first one before
	// it consumes results. Only the latest value matters.
	Desired  <-chan Desired
	Requests <-chan Request
	// CheckpointEvery is how often state is stored and results acked
	// (default 5s). Results since the last checkpoint are re-folded after a
	// restart, deterministically, so it trades restart work for write load.
	CheckpointEvery time.Duration
	FetchBatch      int           // results per fetch (default 2000)
	ExpireEvery     time.Duration // staleness check period (default 1s: stale windows are several seconds)
	Durable         string        // results consumer name (default "aggregator")
	CoreBuffer      int           // results: core: results buffered while busy (default ingest.CoreBuffer)
	Metrics         *Metrics      // may be nil
	Log             zerolog.Logger
	Now             func() time.Time // default time.Now
	// SkipFinalCheckpoint makes a stop behave like a crash (tests).
	SkipFinalCheckpoint bool
}

// target is a judged target: its checker (which holds its params) and
// whether the next checkpoint must look at it. The rest of its definition
// is hm_targets' business, not kept here (about 1 KiB per target).
type target struct {
	c     *checker.Target
	dirty bool // touched since the last checkpoint
	rec   bool // its topology record changed since the last checkpoint
	// What its key target.<id> in hm_state holds: whether it exists, the
	// checker's semantic digest and the digest of the topology record.
	// Kept here rather than in a map keyed by strings like writtenState:
	// two strings and map entries a target were a tenth of the engine.
	stored      bool
	snapD, recD uint64
}

type engine struct {
	o         Options
	sp        subject.Space
	now       func() time.Time
	log       zerolog.Logger
	model     *topology.Model
	targets   map[string]*target
	journal   *journal.Journal
	kv        *kvwrite.Writer // the checkpoint's hm_state keys
	targetsKV *kvwrite.Writer // hm_targets
	m         *Metrics
	cons      ingest.Source
	// malformedSeen is the consumer's malformed count already reported.
	malformedSeen uint64
	droppedSeen   uint64 // likewise, the core subscription's drops

	rev   uint64
	since time.Time
	// graceFrom is when silence starts to count: the takeover, or the last
	// time the engine itself lost results (a core subscription that
	// overflowed). Results the aggregator dropped say nothing about the
	// probers, so no observer is aged out for them.
	graceFrom time.Time
	seq       uint64        // last folded results sequence
	resultSeq uint64        // sequence of the result being folded (recorded in transitions)
	acked     uint64        // last acked results sequence
	pending   *ingest.Batch // last folded batch, acked at the next checkpoint
	caughtUp  bool
	// lost is set when a transition could not be published: the state must
	// then not be checkpointed, so the next leader re-derives it.
	lost atomic.Bool

	restoredTargets map[string]restoredTarget
	// orphans are target keys restored from hm_state whose targets the
	// inventory does not (yet) define; the next full pass deletes those
	// still undefined. gone are the keys of targets removed since.
	orphans map[string]struct{}
	gone    []string
	// What hm_targets and hm_state hold, as digests of the values last
	// written (8 bytes a key instead of the value: at 60,000 targets the
	// copies were the aggregator's largest item after the model).
	writtenTargets map[string]uint64 // targetHash of the hm_targets values
	writtenState   map[string]uint64 // hm_state rec.* values (targets keep theirs: target.stored)
	seed           maphash.Seed
	// What the next checkpoint must look at besides dirty targets: every
	// record after an inventory change or a restore (fullPass), else the
	// records of the objects in touched.
	fullPass bool
	touched  touched
}

// ErrLost is returned when transitions could not be published (NATS
// unreachable for longer than the retry budget); the next leader re-derives.
var ErrLost = errors.New("engine: transitions could not be published")

// Run is the active aggregator until ctx ends (the lease is lost or the
// process stops) or a fatal error (fenced by a newer leader).
func Run(ctx context.Context, o Options) error {
	e := newEngine(o)
	o = e.o
	meta, err := e.restore(ctx)
	if err != nil {
		return err
	}
	if err := e.loadWrittenTargets(ctx); err != nil {
		return err
	}

	// The first inventory, before any result is folded: a result for a
	// target the engine does not know yet would be dropped.
	select {
	case <-ctx.Done():
		return nil
	case d := <-o.Desired:
		if err := e.applyDesired(ctx, d); err != nil {
			return err
		}
	}

	pos := ingest.Position{AfterSeq: meta.Seq}
	if meta.Seq == 0 {
		// No checkpoint: a fresh installation. Take the recent past only.
		pos.Since = e.now().Add(-time.Minute)
	}
	e.seq, e.acked = meta.Seq, meta.Seq
	mode := bus.ResultsJetStream
	if o.Layout.Results == nil {
		// results: core: live results only; the checkpointed streaks carry
		// over and the next probes continue them.
		mode = bus.ResultsCore
		if e.cons, err = ingest.Subscribe(o.JS.Conn(), e.sp.ResultsAll(), o.CoreBuffer, e.log); err != nil {
			return err
		}
	} else if e.cons, err = ingest.Open(ctx, o.Layout.Results, o.Durable, e.sp.ResultsAll(), pos, e.log); err != nil {
		return err
	}
	cons := e.cons

	fctx, fcancel := context.WithCancel(ctx)
	batches := make(chan ingest.Batch, 2) // closed by the fetcher when it stops
	fetchErr := make(chan error, 1)
	go fetch(fctx, cons, o.FetchBatch, batches, fetchErr)
	defer func() {
		fcancel()
		for range batches { // let the fetcher finish
		}
	}()

	e.log.Info().Str("results", mode).Uint64("after_seq", meta.Seq).Int("targets", len(e.targets)).Msg("aggregator active")
	checkpoint := time.NewTicker(o.CheckpointEvery)
	defer checkpoint.Stop()
	expire := time.NewTicker(o.ExpireEvery)
	defer expire.Stop()
	// A checkpoint's writes are sent from this goroutine; waiting for them,
	// the marker and the ack happen beside it (one at a time), so that
	// results keep being folded meanwhile.
	var (
		finished  = make(chan checkpointed, 1)
		finishing bool
	)
	ckCtx, ckCancel := context.WithCancel(ctx)
	awaitFinish := func() {
		if finishing {
			finishing = false
			if err := e.checkpointDone(<-finished); err != nil && ctx.Err() == nil {
				e.log.Warn().Err(err).Msg("checkpoint failed; retrying at the next one")
			}
		}
	}
	defer func() { ckCancel(); awaitFinish() }()
	for {
		select {
		case <-ctx.Done():
			awaitFinish()
			if !o.SkipFinalCheckpoint {
				e.finalCheckpoint()
			}
			return nil
		case err := <-fetchErr:
			return fmt.Errorf("engine: results consumer: %w", err)
		case b, ok := <-batches:
			if !ok {
				continue
			}
			if err := e.fold(ctx, b); err != nil {
				return err
			}
			b.Release()
		case d := <-o.Desired:
			if err := e.applyDesired(ctx, d); err != nil {
				return err
			}
		case r := <-o.Requests:
			if err := e.handle(ctx, r); err != nil {
				return err
			}
		case <-expire.C:
			if err := e.expire(ctx); err != nil {
				return err
			}
		case <-checkpoint.C:
			if finishing {
				continue // the last one is still waiting for its writes
			}
			ck, err := e.stageCheckpoint(ctx)
			if err != nil {
				e.log.Warn().Err(err).Msg("checkpoint failed; retrying at the next one")
				continue
			}
			finishing = true
			go func() { finished <- ck.finish(ckCtx) }()
		case r := <-finished:
			finishing = false
			if err := e.checkpointDone(r); err != nil {
				e.log.Warn().Err(err).Msg("checkpoint failed; retrying at the next one")
			}
		}
	}
}

// newEngine applies the option defaults and builds the engine Run drives.
func newEngine(o Options) *engine {
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 5 * time.Second
	}
	if o.FetchBatch <= 0 {
		o.FetchBatch = 2000
	}
	if o.ExpireEvery <= 0 {
		o.ExpireEvery = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	e := &engine{
		o: o, sp: o.Layout.Space, now: o.Now, log: o.Log.With().Uint64("term", o.Term).Logger(),
		model: topology.New(), targets: map[string]*target{}, m: o.Metrics,
		journal:        journal.New(o.JS, o.Layout),
		kv:             kvwrite.New(o.JS, o.Layout.State.Bucket()),
		targetsKV:      kvwrite.New(o.JS, o.Layout.Targets.Bucket()),
		writtenTargets: map[string]uint64{}, writtenState: map[string]uint64{}, orphans: map[string]struct{}{},
		seed:     maphash.MakeSeed(),
		fullPass: true, touched: newTouched(),
	}
	e.since = e.now()
	e.graceFrom = e.since
	return e
}

// fetch pulls result batches until ctx ends, then closes out.
func fetch(ctx context.Context, c ingest.Source, max int, out chan<- ingest.Batch, errc chan<- error) {
	defer close(out)
	defer c.Close()
	failures := 0
	for ctx.Err() == nil {
		b, err := c.Next(ctx, max, 250*time.Millisecond)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A consumer deleted under us means a newer leader took over.
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) || failures > 40 {
				errc <- err
				return
			}
			failures++
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		failures = 0
		if len(b.Results) == 0 && b.Last == 0 {
			// Nothing new: tell the engine it is caught up.
			b.Pending = 0
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}

// Stats for status output.
func (e *engine) info() Info {
	return Info{ID: e.o.ID, Term: e.o.Term, Rev: e.rev, Targets: len(e.targets), Seq: e.seq, Acked: e.acked, CaughtUp: e.caughtUp, Since: e.since}
}

// digest is what the written* maps keep of a value.
func (e *engine) digest(b []byte) uint64 { return maphash.Bytes(e.seed, b) }
