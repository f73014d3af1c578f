package engine

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// KV hm_state layout written by the engine (besides the journal's
// backend.* / vs.* / va.* keys, which hold each object's last transition):
//
//	target.<target>          checker.TargetSnapshot: every observer's streak
//	rec.target.<target>      topology.TargetRecord
//	rec.va.<va>              topology.VARecord
//	rec.vs.<vs>              topology.VSRecord
//	rec.backend.<vs>.<be>    topology.BackendRecord
//	meta.aggregator          Meta: the HM_RESULTS sequence the rest reflects
const (
	prefTargetSnap = "target."
	prefRecTarget  = "rec.target."
	prefRecVA      = "rec.va."
	prefRecVS      = "rec.vs."
	prefRecBackend = "rec.backend."
)

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
	e.restoredTargets = map[string]checker.TargetSnapshot{}
	w, err := e.o.Layout.State.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return meta, fmt.Errorf("engine: restore: %w", err)
	}
	defer w.Stop()
	n, bad := 0, 0
loop:
	for {
		select {
		case <-ctx.Done():
			return meta, ctx.Err()
		case ent, ok := <-w.Updates():
			if !ok {
				return meta, fmt.Errorf("engine: restore: watcher closed")
			}
			if ent == nil {
				break loop
			}
			n++
			k, v := ent.Key(), ent.Value()
			var err error
			switch {
			case k == subject.KeyMeta:
				err = event.Unmarshal(v, &meta)
			case strings.HasPrefix(k, prefTargetSnap):
				var ts checker.TargetSnapshot
				if err = event.Unmarshal(v, &ts); err == nil {
					e.restoredTargets[ts.ID] = ts
				}
			case strings.HasPrefix(k, prefRecTarget):
				var r topology.TargetRecord
				if err = event.Unmarshal(v, &r); err == nil {
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
				continue // the journal's transition copies
			}
			if err != nil {
				bad++
				e.log.Warn().Err(err).Str("key", k).Msg("malformed state record ignored")
				continue
			}
			e.writtenState[k] = append([]byte(nil), v...)
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
	w, err := e.o.Layout.Targets.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("engine: read targets: %w", err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ent, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("engine: read targets: watcher closed")
			}
			if ent == nil {
				return nil
			}
			e.writtenTargets[ent.Key()] = append([]byte(nil), ent.Value()...)
		}
	}
}

// checkpoint stores every changed checker snapshot and topology record, then
// the marker, then acks the results they reflect.
func (e *engine) checkpoint(ctx context.Context) error {
	if e.lost {
		return ErrLost
	}
	start := time.Now()
	bucket := e.o.Layout.State.Bucket()
	seen := map[string]bool{}
	writes := 0
	put := func(key string, v any) error {
		seen[key] = true
		data, err := event.Marshal(v)
		if err != nil {
			return err
		}
		if bytes.Equal(e.writtenState[key], data) {
			return nil
		}
		writes++
		if err := e.kv.put(bucket, key, data); err != nil {
			return err
		}
		e.writtenState[key] = data
		return nil
	}
	for id, t := range e.targets {
		if !t.dirty {
			seen[prefTargetSnap+id] = true
			continue
		}
		s := t.c.Snapshot()
		if err := put(prefTargetSnap+id, &s); err != nil {
			return err
		}
		t.dirty = false
	}
	snap := e.model.Snapshot()
	for i := range snap.Targets {
		if err := put(prefRecTarget+snap.Targets[i].ID, &snap.Targets[i]); err != nil {
			return err
		}
	}
	for i := range snap.VAs {
		if err := put(prefRecVA+addrTok(snap.VAs[i].VIP), &snap.VAs[i]); err != nil {
			return err
		}
	}
	for i := range snap.VSs {
		if err := put(prefRecVS+endpointTok(snap.VSs[i].VS), &snap.VSs[i]); err != nil {
			return err
		}
	}
	for i := range snap.Backends {
		r := &snap.Backends[i]
		if err := put(prefRecBackend+endpointTok(r.VS)+"."+endpointTok(r.Backend), r); err != nil {
			return err
		}
	}
	// Records of objects that no longer exist.
	for key := range e.writtenState {
		if !seen[key] && key != subject.KeyMeta {
			if err := e.kv.del(bucket, key); err != nil {
				return err
			}
			delete(e.writtenState, key)
			writes++
		}
	}
	if err := e.kv.wait(ctx); err != nil {
		return err
	}
	meta := Meta{V: 1, Seq: e.seq, Term: e.o.Term, Rev: e.rev, TS: e.now().UnixNano()}
	data, _ := event.Marshal(&meta)
	if _, err := e.o.Layout.State.Put(ctx, subject.KeyMeta, data); err != nil {
		return fmt.Errorf("engine: checkpoint marker: %w", err)
	}
	if e.pending != nil {
		if err := e.pending.Ack(ctx); err != nil {
			return err
		}
		e.acked = e.pending.Last
		e.pending = nil
	}
	e.m.checkpointSeconds.Observe(time.Since(start).Seconds())
	e.m.checkpointWrites.Add(float64(writes))
	return nil
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

// asyncKV writes KV entries with asynchronous publishes to the bucket's
// subjects (a KV bucket is a stream): one round trip for many writes.
type asyncKV struct {
	js jetstream.JetStream
}

func (a *asyncKV) put(bucket, key string, data []byte) error {
	_, err := a.js.PublishAsync("$KV."+bucket+"."+key, data)
	return err
}

func (a *asyncKV) del(bucket, key string) error {
	m := nats.NewMsg("$KV." + bucket + "." + key)
	m.Header.Set("KV-Operation", "DEL")
	_, err := a.js.PublishMsgAsync(m)
	return err
}

// wait blocks until every write is acknowledged.
func (a *asyncKV) wait(ctx context.Context) error {
	select {
	case <-a.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("engine: kv writes not acknowledged: %w", ctx.Err())
	}
}
