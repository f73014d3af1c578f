package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/ingest"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/kvwrite"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// KV hm_state layout written by the engine (besides the journal's
// backend.* / vs.* / va.* keys, which hold each object's last transition):
//
//	target.<target>          targetState: every observer's streak and the
//	                         target's topology.TargetRecord
//	rec.va.<va>              topology.VARecord
//	rec.vs.<vs>              topology.VSRecord
//	rec.backend.<vs>.<be>    topology.BackendRecord
//	meta.aggregator          Meta: the HM_RESULTS sequence the rest reflects
//
// Until session 8 a target's record had a key of its own, rec.target.<target>;
// restore still reads such keys and the first full pass deletes them.
const (
	prefTargetSnap = "target."
	prefRecTarget  = "rec.target."
	prefRecVA      = "rec.va."
	prefRecVS      = "rec.vs."
	prefRecBackend = "rec.backend."
)

// targetState is the value of target.<target>: one key a target, not two,
// which spares the server a subject (two index entries) per target and the
// engine the mirrors of both.
type targetState struct {
	checker.TargetSnapshot `msgpack:",inline"`
	Rec                    *topology.TargetRecord `msgpack:"rec,omitempty"`
}

// restoredTarget is a target's state read back from hm_state, kept until
// the inventory defines the target.
type restoredTarget struct {
	snap checker.TargetSnapshot
	recD uint64 // digest of the record it held (0: none)
}

// Meta is the checkpoint marker.
type Meta struct {
	V    int    `msgpack:"v"`
	Seq  uint64 `msgpack:"seq"`  // every result up to it is reflected
	Term uint64 `msgpack:"term"` // leader that wrote it
	Rev  uint64 `msgpack:"rev"`  // configuration revision
	TS   int64  `msgpack:"ts"`
}

// restore loads the checkpoint from hm_state into the model and keeps the
// checker snapshots until their targets are defined by the inventory.
func (e *engine) restore(ctx context.Context) (Meta, error) {
	start := time.Now()
	var meta Meta
	var snap topology.Snapshot
	e.restoredTargets = map[string]restoredTarget{}
	n, bad := 0, 0
	keep := func(k string, v []byte, err error) {
		n++
		if err != nil {
			bad++
			e.log.Warn().Err(err).Str("key", k).Msg("malformed state record ignored")
			return
		}
		e.writtenState[k] = e.digest(v)
	}
	// The marker first: the records read after it are at least as new.
	switch ent, err := e.o.Layout.State.Get(ctx, subject.KeyMeta); {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		if ctx.Err() != nil {
			return meta, ctx.Err()
		}
		return meta, fmt.Errorf("engine: restore: %w", err)
	default:
		keep(ent.Key(), ent.Value(), event.Unmarshal(ent.Value(), &meta))
	}
	// Then the engine's own keys, one prefix at a time. The journal's
	// copies of the last transitions (a quarter of the bucket) are not
	// needed, and one watch filtered on several prefixes would make the
	// server search its subject tree for every message: 9 s instead of 2 s
	// at 100,000 targets once the bucket holds superseded revisions
	// (BENCHMARKS.md).
	for _, prefix := range []string{prefTargetSnap, "rec."} {
		err := watchKeys(ctx, e.o.Layout.State, prefix+">", func(k string, v []byte) {
			var err error
			switch {
			case strings.HasPrefix(k, prefTargetSnap):
				var ts targetState
				if err = event.Unmarshal(v, &ts); err != nil {
					break
				}
				r := restoredTarget{snap: ts.TargetSnapshot}
				if ts.Rec != nil {
					r.recD = e.recordDigest(ts.Rec)
					snap.Targets = append(snap.Targets, *ts.Rec)
				}
				id := strings.TrimPrefix(k, prefTargetSnap)
				e.restoredTargets[id] = r
				e.orphans[id] = struct{}{}
				n++
				return // not mirrored in writtenState: see target.stored
			case strings.HasPrefix(k, prefRecTarget):
				// The layout before target records joined target.<target>.
				var r topology.TargetRecord
				if err = event.Unmarshal(v, &r); err == nil && e.restoredTargets[r.ID].recD == 0 {
					snap.Targets = append(snap.Targets, r)
				}
			case strings.HasPrefix(k, prefRecVA):
				var r topology.VARecord
				if err = event.Unmarshal(v, &r); err == nil {
					snap.VAs = append(snap.VAs, r)
				}
			case strings.HasPrefix(k, prefRecVS):
				var r topology.VSRecord
				if err = event.Unmarshal(v, &r); err == nil {
					snap.VSs = append(snap.VSs, r)
				}
			case strings.HasPrefix(k, prefRecBackend):
				var r topology.BackendRecord
				if err = event.Unmarshal(v, &r); err == nil {
					snap.Backends = append(snap.Backends, r)
				}
			default:
				return // not a record of this engine's
			}
			keep(k, v, err)
		})
		if err != nil {
			if ctx.Err() != nil {
				return meta, ctx.Err()
			}
			return meta, fmt.Errorf("engine: restore: %w", err)
		}
	}
	if err := e.model.Restore(snap); err != nil {
		// A snapshot that does not fit is not fatal: the model re-judges from
		// the inventory and the next results.
		e.log.Error().Err(err).Msg("topology snapshot rejected; starting from an empty model")
		e.model = topology.New()
	}
	e.m.restoreSeconds.Set(time.Since(start).Seconds())
	e.log.Info().Int("keys", n).Int("malformed", bad).Int("targets", len(e.restoredTargets)).
		Uint64("seq", meta.Seq).Dur("took", time.Since(start)).Msg("state restored")
	return meta, nil
}

// loadWrittenTargets remembers what hm_targets holds, so that only changes
// are written.
func (e *engine) loadWrittenTargets(ctx context.Context) error {
	err := watchKeys(ctx, e.o.Layout.Targets, jetstream.AllKeys, func(k string, v []byte) {
		var t event.Target
		if err := event.Unmarshal(v, &t); err != nil {
			return // not remembered: written again
		}
		e.writtenTargets[k] = e.targetHash(&t, t.V)
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("engine: read targets: %w", err)
	}
	return err
}

// watchKeys hands every live key matching filter, with its value, to f.
func watchKeys(ctx context.Context, kv jetstream.KeyValue, filter string, f func(k string, v []byte)) error {
	w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ent, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if ent == nil {
				return nil
			}
			f(ent.Key(), ent.Value())
		}
	}
}

// checkpoint stores every changed checker snapshot and topology record, then
// the marker, then acks the results they reflect, and returns when that is
// done (tests, and the final checkpoint). Run's periodic checkpoints stage
// on the engine's goroutine and finish beside it (startCheckpoint).
func (e *engine) checkpoint(ctx context.Context) error {
	ck, err := e.stageCheckpoint(ctx)
	if err != nil {
		return err
	}
	return e.checkpointDone(ck.finish(ctx))
}

// staged is a checkpoint whose writes are sent: what finishing it needs.
type staged struct {
	e       *engine
	start   time.Time
	writes  int
	meta    Meta
	pending *ingest.Batch
}

// stageCheckpoint sends the writes of a checkpoint: every dirty target and
// touched record (every record, after an inventory change or a restore).
//
// After an inventory change or a restore (fullPass) every record is encoded
// and compared with what was written, and the records of objects that are
// gone are deleted. Otherwise the set of keys is the one the last full pass
// left, so only dirty targets and the records of objects a verdict, pause or
// resume touched can differ: encoding the whole model every time cost about
// a second per checkpoint at 100,000 targets (BENCHMARKS.md).
func (e *engine) stageCheckpoint(ctx context.Context) (*staged, error) {
	if e.lost.Load() {
		return nil, ErrLost
	}
	ck := &staged{e: e, start: time.Now()}
	full := e.fullPass
	var seen map[string]bool
	if full {
		seen = make(map[string]bool, len(e.writtenState))
	}
	put := func(key string, v any) error {
		if full {
			seen[key] = true
		}
		data, err := event.Marshal(v)
		if err != nil {
			return err
		}
		d := e.digest(data)
		if w, ok := e.writtenState[key]; ok && w == d {
			return nil
		}
		ck.writes++
		if err := e.kv.Put(ctx, key, bytes.Clone(data)); err != nil {
			return err
		}
		e.writtenState[key] = d
		return nil
	}
	if err := e.putTargets(ctx, full, &ck.writes); err != nil {
		return nil, err
	}
	if full || e.touched.len() > 0 {
		if err := e.putRecords(full, put); err != nil {
			return nil, err
		}
	}
	if full {
		// Records of objects that no longer exist.
		for key := range e.writtenState {
			if !seen[key] && key != subject.KeyMeta {
				if err := e.kv.Delete(ctx, key); err != nil {
					return nil, err
				}
				delete(e.writtenState, key)
				ck.writes++
			}
		}
	}
	e.fullPass = false
	e.touched.clear()
	ck.meta = Meta{V: 1, Seq: e.seq, Term: e.o.Term, Rev: e.rev, TS: e.now().UnixNano()}
	ck.pending, e.pending = e.pending, nil
	return ck, nil
}

// finish waits for the checkpoint's writes and the journal's hm_state
// copies, then stores the marker that says they are done and acks the
// results they reflect. It touches none of the engine's state but the
// journal's and the writers', which are safe beside the engine's goroutine.
func (ck *staged) finish(ctx context.Context) checkpointed {
	e := ck.e
	if err := e.journal.Settle(ctx); err != nil {
		return checkpointed{ck: ck, err: err}
	}
	if err := e.kv.Wait(ctx); err != nil {
		return checkpointed{ck: ck, err: err}
	}
	data, _ := event.Marshal(&ck.meta)
	if _, err := e.o.Layout.State.Put(ctx, subject.KeyMeta, data); err != nil {
		return checkpointed{ck: ck, err: fmt.Errorf("engine: checkpoint marker: %w", err)}
	}
	if ck.pending != nil {
		if err := ck.pending.Ack(ctx); err != nil {
			return checkpointed{ck: ck, err: err}
		}
	}
	return checkpointed{ck: ck}
}

// checkpointed is how a staged checkpoint finished.
type checkpointed struct {
	ck  *staged
	err error
}

// checkpointDone takes a finished checkpoint's outcome in on the engine's
// goroutine: writes that failed are written again by the next checkpoint,
// and results not acked are acked by it.
func (e *engine) checkpointDone(r checkpointed) error {
	ck := r.ck
	if r.err != nil {
		e.rewrite(r.err)
		if e.pending == nil {
			e.pending = ck.pending // a newer batch, if any, acks it too
		}
		return r.err
	}
	if ck.pending != nil {
		e.acked = ck.pending.Last
	}
	e.m.checkpointSeconds.Observe(time.Since(ck.start).Seconds())
	e.m.checkpointWrites.Add(float64(ck.writes))
	return nil
}

// putTargets stores the state of every target whose checker decides
// differently now or whose record changed (in a full pass every record is
// compared), and deletes the keys of targets that are gone.
//
// A steady target's streak grows with every result; storing it each time
// rewrote every target every checkpoint (12,000 KV writes/s at 60,000
// targets). Only a change of what restores differently is stored, and telling
// that costs a digest, not an encoding of every target.
func (e *engine) putTargets(ctx context.Context, full bool, writes *int) error {
	del := func(id string) error {
		if _, ok := e.targets[id]; ok {
			return nil // back again, with stored unset: its key is rewritten
		}
		*writes++
		return e.kv.Delete(ctx, prefTargetSnap+id)
	}
	for _, id := range e.gone {
		if err := del(id); err != nil {
			return err
		}
	}
	e.gone = e.gone[:0]
	if full {
		for id := range e.orphans {
			if err := del(id); err != nil {
				return err
			}
			delete(e.orphans, id)
		}
	}
	for id, t := range e.targets {
		if !t.dirty && !t.rec && !full && t.stored {
			continue
		}
		snapD, recD := t.snapD, t.recD
		if t.dirty || !t.stored {
			snapD = e.snapDigest(t.c)
		}
		var rec *topology.TargetRecord
		if t.rec || full || !t.stored {
			if r, ok := e.model.TargetRecord(id); ok {
				rec, recD = &r, e.recordDigest(&r)
			} else {
				recD = 0
			}
		}
		t.dirty, t.rec = false, false
		if t.stored && snapD == t.snapD && recD == t.recD {
			continue
		}
		if rec == nil {
			if r, ok := e.model.TargetRecord(id); ok {
				rec = &r
			}
		}
		data, err := event.Marshal(&targetState{TargetSnapshot: t.c.Snapshot(), Rec: rec})
		if err != nil {
			return err
		}
		if err := e.kv.Put(ctx, prefTargetSnap+id, data); err != nil {
			return err
		}
		*writes++
		t.stored, t.snapD, t.recD = true, snapD, recD
	}
	return nil
}

// rewrite makes the next checkpoint write again the keys whose writes
// failed (err is the checkpoint's kvwrite.Failed): a target's state, or a
// record, whichever it holds now (a full pass writes a record whose digest
// is unknown, or deletes it if its object is gone).
func (e *engine) rewrite(err error) {
	var failed *kvwrite.Failed
	if !errors.As(err, &failed) {
		return
	}
	for key := range failed.Keys {
		if id, ok := strings.CutPrefix(key, prefTargetSnap); ok {
			if t := e.targets[id]; t != nil {
				t.stored = false
			} else {
				e.gone = append(e.gone, id)
			}
			continue
		}
		e.writtenState[key] = 0
		e.fullPass = true
	}
}

// snapDigest is a checker's semantic digest (see checker.SemanticDigest).
func (e *engine) snapDigest(c *checker.Target) uint64 {
	p := c.Params()
	return c.SemanticDigest(e.seed, max(p.UpRetry, p.DownRetry)+1)
}

// recordDigest is the digest of a target record's encoding (0: none).
func (e *engine) recordDigest(r *topology.TargetRecord) uint64 {
	data, err := event.Marshal(r)
	if err != nil {
		return 0
	}
	return e.digest(data) | 1
}

// putRecords stores the topology records: all of them in a full pass, else
// those of the touched objects (looked up one by one: a snapshot of the
// whole model for a handful of transitions cost 100 MB of garbage a minute
// at 10,000 backends).
func (e *engine) putRecords(full bool, put func(key string, v any) error) error {
	if full {
		return e.putAllRecords(put)
	}
	for vip := range e.touched.vas {
		if r, ok := e.model.VARecord(vip); ok {
			if err := put(prefRecVA+subject.AddrToken(vip), &r); err != nil {
				return err
			}
		}
	}
	for id := range e.touched.vss {
		if r, ok := e.model.VSRecord(id); ok {
			if err := put(prefRecVS+id.Token(), &r); err != nil {
				return err
			}
		}
	}
	for k := range e.touched.backends {
		if r, ok := e.model.BackendRecord(k.vs, k.backend); ok {
			if err := put(prefRecBackend+k.vs.Token()+"."+k.backend.Token(), &r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (e *engine) putAllRecords(put func(key string, v any) error) error {
	snap := e.model.Snapshot()
	for i := range snap.VAs {
		r := &snap.VAs[i]
		if err := put(prefRecVA+addrTok(r.VIP), r); err != nil {
			return err
		}
	}
	for i := range snap.VSs {
		r := &snap.VSs[i]
		if err := put(prefRecVS+endpointTok(r.VS), r); err != nil {
			return err
		}
	}
	for i := range snap.Backends {
		r := &snap.Backends[i]
		if err := put(prefRecBackend+endpointTok(r.VS)+"."+endpointTok(r.Backend), r); err != nil {
			return err
		}
	}
	return nil
}

// touched is what a partial checkpoint stores besides the dirty targets:
// the records of the objects a verdict, pause or resume changed.
type touched struct {
	vas      map[netip.Addr]struct{}
	vss      map[subject.VSID]struct{}
	backends map[backendKey]struct{}
}

type backendKey struct{ vs, backend subject.Endpoint }

func newTouched() touched {
	return touched{vas: map[netip.Addr]struct{}{},
		vss: map[subject.VSID]struct{}{}, backends: map[backendKey]struct{}{}}
}

func (t *touched) len() int { return len(t.vas) + len(t.vss) + len(t.backends) }

// clear empties t. Maps that a burst made large (every backend changing at
// start-up) are replaced: a cleared Go map keeps its buckets, megabytes at
// 10,000 backends, for the handful of entries a steady fleet touches.
func (t *touched) clear() {
	if t.len() > 1024 {
		*t = newTouched()
		return
	}
	clear(t.vas)
	clear(t.vss)
	clear(t.backends)
}

// touch notes that the record of ev's object changed.
func (e *engine) touch(ev *topology.Event) {
	switch ev.Kind {
	case event.KindBackend:
		e.touched.backends[backendKey{ev.VS, ev.Backend}] = struct{}{}
	case event.KindVS:
		e.touched.vss[ev.VS] = struct{}{}
	default:
		e.touched.vas[ev.VA] = struct{}{}
	}
}

// finalCheckpoint stores the state on a clean stop, so the next leader
// resumes exactly where this one ended.
func (e *engine) finalCheckpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.checkpoint(ctx); err != nil {
		e.log.Warn().Err(err).Msg("final checkpoint failed; the next leader re-folds from the previous one")
	}
}

func addrTok(s string) string {
	ep, err := subject.ParseEndpoint(s + "-TCP-0")
	if err != nil {
		return subject.NameToken(s)
	}
	return subject.AddrToken(ep.Addr)
}

func endpointTok(s string) string {
	ep, err := subject.ParseEndpoint(s)
	if err != nil {
		return subject.NameToken(s)
	}
	return ep.Token()
}
