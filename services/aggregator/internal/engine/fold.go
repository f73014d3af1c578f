package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/ingest"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/journal"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/kvwrite"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// applyDesired brings targets and model to a new inventory: new targets get
// a checker (from a restored snapshot when there is one), changed ones new
// params (their streaks kept), removed ones go; then the model is diffed and
// hm_targets is rewritten where it changed.
func (e *engine) applyDesired(ctx context.Context, d Desired) error {
	now := e.now()
	e.rev = d.Rev
	var changes []struct {
		id string
		ch checker.Change
	}
	for id, def := range d.Targets {
		t := e.targets[id]
		if t == nil {
			c, err := checker.New(id, def.Params)
			if err != nil {
				e.log.Error().Err(err).Str("target", id).Msg("target params rejected; not judged")
				continue
			}
			t = &target{c: c, dirty: true}
			if r, ok := e.restoredTargets[id]; ok {
				// What hm_state holds: the first checkpoint after a restart
				// need not store every target again.
				t.stored, t.recD = true, r.recD
				if err := c.Restore(r.snap); err != nil {
					e.log.Warn().Err(err).Str("target", id).Msg("target snapshot rejected")
				} else {
					t.snapD = e.snapDigest(c)
				}
				delete(e.restoredTargets, id)
				delete(e.orphans, id)
			}
			e.targets[id] = t
			if v := c.Verdict(); v != event.Unknown {
				changes = append(changes, struct {
					id string
					ch checker.Change
				}{id, checker.Change{From: event.Unknown, To: v, Reason: event.ReasonRestored, At: now}})
			}
			continue
		}
		if t.c.Params() != def.Params {
			ch, changed, err := t.c.SetParams(def.Params, now)
			if err != nil {
				e.log.Error().Err(err).Str("target", id).Msg("target params rejected; keeping the old ones")
				continue
			}
			t.dirty = true
			if changed {
				changes = append(changes, struct {
					id string
					ch checker.Change
				}{id, ch})
			}
		}
	}
	for id, t := range e.targets {
		if _, ok := d.Targets[id]; !ok {
			if t.stored {
				e.gone = append(e.gone, id)
			}
			delete(e.targets, id)
		}
	}
	e.fullPass = true // targets and objects may come and go
	evs, err := e.model.SetInventory(d.Inventory, now)
	if err != nil {
		// The inventory builder validates; this is a bug, not an input error.
		e.log.Error().Err(err).Msg("inventory rejected by the model")
		e.m.inventoryErrors.Inc()
	}
	out := e.prepare(nil, evs)
	for _, c := range changes {
		t := e.targets[c.id]
		out = e.prepare(out, e.verdict(c.id, t, c.ch, now))
	}
	if err := e.journalAll(ctx, out); err != nil {
		return err
	}
	e.m.targets.Set(float64(len(e.targets)))
	return e.writeTargets(ctx, d)
}

// writeTargets makes hm_targets hold exactly the desired targets, writing
// only what changed.
func (e *engine) writeTargets(ctx context.Context, d Desired) error {
	writes := 0
	for id, def := range d.Targets {
		h := e.targetHash(&def.Def, event.Version)
		if w, ok := e.writtenTargets[id]; ok && w == h {
			continue
		}
		v := def.Def
		v.V = event.Version
		data, err := event.Marshal(&v)
		if err != nil {
			return err
		}
		if err := e.targetsKV.Put(ctx, id, bytes.Clone(data)); err != nil {
			return fmt.Errorf("engine: target %s: %w", id, err)
		}
		e.writtenTargets[id] = h
		writes++
	}
	for id := range e.writtenTargets {
		if _, ok := d.Targets[id]; !ok {
			if err := e.targetsKV.Delete(ctx, id); err != nil {
				return fmt.Errorf("engine: target %s: %w", id, err)
			}
			delete(e.writtenTargets, id)
			writes++
		}
	}
	if writes == 0 {
		return nil
	}
	e.log.Info().Int("writes", writes).Int("targets", len(d.Targets)).Msg("targets updated")
	err := e.targetsKV.Wait(ctx)
	var failed *kvwrite.Failed
	if errors.As(err, &failed) {
		for id := range failed.Keys {
			delete(e.writtenTargets, id) // written again by the next leader's inventory
		}
	}
	if err != nil {
		return fmt.Errorf("engine: hm_targets: %w", err)
	}
	return nil
}

// fold runs a batch of results through the checkers and publishes the
// transitions they cause.
func (e *engine) fold(ctx context.Context, b ingest.Batch) error {
	now := e.now()
	var out []entry
	for i := range b.Results {
		r := &b.Results[i]
		t := e.targets[r.Target]
		if t == nil {
			e.m.unknownTargets.Inc()
			continue
		}
		ts := time.Unix(0, r.TS)
		if ts.After(now) { // a prober's clock ahead of ours
			ts = now
		}
		t.dirty = true
		ch, ok := t.c.Observe(checker.Result{Observer: r.Observer, State: r.State, Reason: r.Reason, Detail: r.Detail, TS: ts, Seq: r.Seq})
		if !ok {
			continue
		}
		evs := e.verdict(r.Target, t, ch, now)
		e.resultSeq = b.Seqs[i]
		out = e.prepare(out, evs)
	}
	if err := e.journalAll(ctx, out); err != nil {
		return err
	}
	e.m.results.Add(float64(len(b.Results)))
	if e.cons != nil {
		c := e.cons.Counts()
		if n := c.Malformed.Load(); n > e.malformedSeen {
			e.m.malformed.Add(float64(n - e.malformedSeen))
			e.malformedSeen = n
		}
		if n := c.Dropped.Load(); n > e.droppedSeen {
			e.m.dropped.Add(float64(n - e.droppedSeen))
			e.droppedSeen = n
			e.graceFrom = now
		}
	}
	if b.Last > 0 {
		e.seq = b.Last
		bb := b
		bb.Results, bb.Seqs = nil, nil // released by Run; Ack needs neither
		e.pending = &bb
	}
	e.caughtUp = b.Pending == 0
	return nil
}

// expire ages out silent observers, only while the engine is caught up
// (results still queued for it are not silence). Right after a takeover
// every observer gets a grace of one stale window, so a restart of the whole
// system (when probers have not published yet) causes no spurious Unknown;
// so it does after the engine lost results itself (graceFrom).
func (e *engine) expire(ctx context.Context) error {
	if !e.caughtUp {
		return nil
	}
	now := e.now()
	var out []entry
	for id, t := range e.targets {
		if now.Sub(e.graceFrom) < t.c.Params().StaleWindow() {
			continue
		}
		ch, ok := t.c.Expire(now)
		if !ok {
			continue
		}
		t.dirty = true
		out = e.prepare(out, e.verdict(id, t, ch, now))
	}
	return e.journalAll(ctx, out)
}

// verdict hands a target's verdict change to the model and notes the
// target's record for the next checkpoint.
func (e *engine) verdict(id string, t *target, ch checker.Change, now time.Time) []topology.Event {
	t.rec = true
	return e.model.TargetVerdict(id, ch, t.c.Votes(now), t.c.Quorum(now), now)
}

// entry is a transition ready to be journaled.
type entry struct {
	subj, key string
	tr        *event.Transition
}

// publish journals the model's events.
func (e *engine) publish(ctx context.Context, evs []topology.Event) error {
	return e.journalAll(ctx, e.prepare(nil, evs))
}

// prepare turns the model's events into journal entries, appended to out in
// order, and notes their records for the next checkpoint.
func (e *engine) prepare(out []entry, evs []topology.Event) []entry {
	for i := range evs {
		e.touch(&evs[i])
		subj, key, tr := e.transition(&evs[i])
		out = append(out, entry{subj: subj, key: key, tr: tr})
	}
	return out
}

// journalWorkers is how many subjects are journaled at once: each append
// waits for two round trips (the event's ack, then the hm_state write), so
// a mass failure of thousands of backends is journaled in parallel.
const journalWorkers = 32

// parallelFrom is the smallest burst journaled in parallel.
const parallelFrom = 16

// journalAll journals entries. A few are journaled one after the other, in
// the order the model produced them. A burst (a mass failure, the first
// inventory) goes in parallel: backend transitions first, then VS, then VA
// ones, so that a derived state never precedes its cause in the stream;
// within a kind, subjects in parallel, each subject's transitions in order.
// A transient failure is retried for a while; a fence means a newer leader
// exists and is fatal.
func (e *engine) journalAll(ctx context.Context, entries []entry) error {
	if len(entries) < parallelFrom {
		return e.journalChain(ctx, entries)
	}
	for _, kind := range []event.Kind{event.KindBackend, event.KindVS, event.KindVA} {
		var order []string // subjects of this kind, in first-seen order
		chains := map[string][]entry{}
		for _, en := range entries {
			if en.tr.Kind != kind {
				continue
			}
			if _, ok := chains[en.subj]; !ok {
				order = append(order, en.subj)
			}
			chains[en.subj] = append(chains[en.subj], en)
		}
		if len(order) == 0 {
			continue
		}
		if len(order) == 1 {
			if err := e.journalChain(ctx, chains[order[0]]); err != nil {
				return err
			}
			continue
		}
		work := make(chan []entry)
		errs := make(chan error, journalWorkers)
		var wg sync.WaitGroup
		for range min(journalWorkers, len(order)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var first error
				for chain := range work {
					if first == nil {
						first = e.journalChain(ctx, chain)
					}
				}
				errs <- first
			}()
		}
		for _, subj := range order {
			work <- chains[subj]
		}
		close(work)
		wg.Wait()
		close(errs)
		var failed error
		for err := range errs {
			if err != nil && (failed == nil || errors.Is(err, journal.ErrFenced)) {
				failed = err
			}
		}
		if failed != nil {
			return failed
		}
	}
	return nil
}

// journalChain journals entries one after the other.
func (e *engine) journalChain(ctx context.Context, chain []entry) error {
	for _, en := range chain {
		var err error
		for attempt := 0; ; attempt++ {
			_, err = e.journal.Append(ctx, en.subj, en.key, en.tr)
			if err == nil || errors.Is(err, journal.ErrFenced) || ctx.Err() != nil || attempt >= 40 {
				break
			}
			e.m.publishRetries.Inc()
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
		if err != nil {
			e.lost.Store(true)
			if errors.Is(err, journal.ErrFenced) {
				return err
			}
			return fmt.Errorf("%w: %s: %v", ErrLost, en.subj, err)
		}
		tr := en.tr
		e.m.transitions.WithLabelValues(string(tr.Kind), string(tr.To)).Inc()
		e.log.Info().Str("kind", string(tr.Kind)).Str("object", tr.Object).Str("vs", tr.VS).
			Str("from", string(tr.From)).Str("to", string(tr.To)).Str("reason", string(tr.Reason)).
			Uint64("gen", tr.Gen).Msg("transition")
	}
	return nil
}

// transition turns a model event into its wire form, subject and state key.
func (e *engine) transition(ev *topology.Event) (string, string, *event.Transition) {
	t := &event.Transition{
		V: event.Version, Kind: ev.Kind, From: ev.From, To: ev.To, Reason: ev.Reason, Detail: ev.Detail,
		Gen: ev.Gen, TS: ev.At.UnixNano(), Rev: e.rev, Term: e.o.Term, Aggregator: e.o.ID,
		Target: ev.Target, ResultSeq: e.resultSeq, Votes: ev.Votes, Quorum: ev.Quorum, Counts: ev.Counts,
		Apply: ev.Apply, Action: ev.Action, Paused: ev.Paused,
	}
	if !ev.Since.IsZero() {
		t.Since = ev.Since.UnixNano()
	}
	switch ev.Kind {
	case event.KindBackend:
		t.Object, t.VS, t.VA = ev.Backend.String(), ev.VS.String(), ev.VS.Addr.String()
		return e.sp.EventBackend(ev.VS, ev.Backend), subject.KeyBackendState(ev.VS, ev.Backend), t
	case event.KindVS:
		t.Object, t.VS, t.VA = ev.VS.String(), ev.VS.String(), ev.VS.Addr.String()
		return e.sp.EventVS(ev.VS), subject.KeyVSState(ev.VS), t
	default:
		t.Object, t.VA = ev.VA.String(), ev.VA.String()
		return e.sp.EventVA(ev.VA), subject.KeyVAState(ev.VA), t
	}
}

// handle serves a status, pause or resume request.
func (e *engine) handle(ctx context.Context, r Request) error {
	now := e.now()
	rep := Reply{Info: e.info()}
	switch r.Op {
	case OpStatus:
		rep.Tree = e.tree(now)
	case OpPause, OpResume:
		var evs []topology.Event
		var err error
		if r.Op == OpPause {
			evs, err = e.model.Pause(r.VS, r.Backend, r.Who, r.Why, now)
		} else {
			evs, err = e.model.Resume(r.VS, r.Backend, r.Who, r.Why, now)
		}
		rec := &event.AuditRecord{V: event.Version, Verb: string(r.Op), Who: r.Who, Why: r.Why,
			Object: r.VS.String() + "/" + r.Backend.String(), OK: err == nil, Rev: e.rev, TS: now.UnixNano()}
		if err != nil {
			rec.Error = err.Error()
			rep.Err = err
		}
		if _, aerr := bus.Publish(ctx, e.o.JS, e.sp.Audit(string(r.Op)), rec); aerr != nil {
			e.log.Warn().Err(aerr).Msg("audit record not stored")
		}
		if err == nil {
			rep.Events = len(evs)
			if perr := e.publish(ctx, evs); perr != nil {
				rep.Err = perr
				r.Reply <- rep
				return perr
			}
		}
	default:
		rep.Err = fmt.Errorf("engine: unknown request %q", r.Op)
	}
	select {
	case r.Reply <- rep:
	default:
		e.log.Warn().Str("op", string(r.Op)).Msg("request reply dropped: reply channel full")
	}
	return nil
}

// tree is the status tree with each backend's probe counters filled in.
func (e *engine) tree(now time.Time) []topology.VAStatus {
	tree := e.model.Tree(now)
	for i := range tree {
		for j := range tree[i].VSs {
			for k := range tree[i].VSs[j].Backends {
				b := &tree[i].VSs[j].Backends[k]
				if t := e.targets[b.Target]; t != nil {
					b.Stats = t.c.Stats()
				}
			}
		}
	}
	return tree
}

// sortedIDs is used by tests and status output for a stable order.
func sortedIDs(m map[string]*target) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
