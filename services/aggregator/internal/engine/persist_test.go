package engine

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// A checkpoint that only looks at what changed must store exactly what a
// full pass would: after it, a full pass finds nothing to write or delete.
func TestCheckpoint_partial_pass_stores_what_a_full_pass_would(t *testing.T) {
	ctx := context.Background()
	fo := newFolding(t, 1000, 10)
	e := fo.e
	fo.js.keys = map[string]bool{}
	check := func(step string) {
		t.Helper()
		if err := e.checkpoint(ctx); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if e.fullPass || e.touched.len() != 0 {
			t.Fatalf("%s: checkpoint left fullPass %v and %d touched records", step, e.fullPass, e.touched.len())
		}
		writes := fo.js.writes.Load()
		e.fullPass = true
		if err := e.checkpoint(ctx); err != nil {
			t.Fatalf("%s: full pass: %v", step, err)
		}
		if n := fo.js.writes.Load() - writes; n != 0 {
			t.Fatalf("%s: a full pass after the checkpoint wrote %d keys, want 0", step, n)
		}
		stateKeys(t, step, e, fo.js.keys)
	}
	check("after warm-up")
	steps := []struct {
		name  string
		quiet bool // publishes no transition
		do    func()
	}{
		{"round_without_change", true, func() { fo.round(t) }},
		{"round_with_changes", false, func() { fo.round(t) }},
		{"nothing", true, func() {}},
		{"pause", false, func() { request(t, e, OpPause) }},
		{"resume", false, func() { request(t, e, OpResume) }},
		{"everything_stale", false, func() {
			fo.now = fo.now.Add(time.Hour)
			e.caughtUp = true
			if err := e.expire(ctx); err != nil {
				t.Fatal(err)
			}
		}},
		{"inventory_shrinks", false, func() {
			d := fo.f.desired
			d.Inventory.VSs = d.Inventory.VSs[:len(d.Inventory.VSs)/2]
			if err := e.applyDesired(ctx, d); err != nil {
				t.Fatal(err)
			}
		}},
		{"targets_go", false, func() {
			// Half the VSs go, and the targets only they probed.
			d := fo.f.desired
			d.Inventory.VSs = d.Inventory.VSs[:len(d.Inventory.VSs)/4]
			d.Targets = map[string]TargetDef{}
			for _, vs := range d.Inventory.VSs {
				for _, b := range vs.Backends {
					d.Targets[b.Target] = fo.f.desired.Targets[b.Target]
				}
			}
			if len(d.Targets) == 0 || len(d.Targets) == len(fo.f.desired.Targets) {
				t.Fatalf("%d of %d targets kept", len(d.Targets), len(fo.f.desired.Targets))
			}
			if err := e.applyDesired(ctx, d); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			events := fo.js.seq.Load()
			s.do()
			if got := fo.js.seq.Load() - events; (got == 0) != s.quiet {
				t.Fatalf("step published %d transitions; quiet is %v", got, s.quiet)
			}
			check(s.name)
		})
	}
}

// A checkpoint whose writes fail writes no marker, and the next one writes
// those keys again: a target's state and a record alike.
func TestCheckpoint_writes_again_what_failed(t *testing.T) {
	ctx := context.Background()
	fo := newFolding(t, 100, 10)
	e := fo.e
	fo.js.keys = map[string]bool{}
	if err := e.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	for range 10 { // until a backend's record changes too
		if fo.round(t); e.touched.len() > 0 {
			break
		}
	}
	prefix := "$KV." + e.o.Layout.State.Bucket() + "."
	var tgt, rec string
	for _, id := range sortedIDs(e.targets) {
		if e.targets[id].dirty {
			tgt = prefix + prefTargetSnap + id
			break
		}
	}
	for k := range e.touched.backends {
		rec = prefix + prefRecBackend + k.vs.Token() + "." + k.backend.Token()
		break
	}
	if tgt == "" || rec == "" {
		t.Fatalf("the round changed no target (%q) or no record (%q)", tgt, rec)
	}
	delete(fo.js.keys, tgt)
	delete(fo.js.keys, rec)
	fo.js.refuse = map[string]bool{tgt: true, rec: true}
	err := e.checkpoint(ctx)
	if err == nil || !strings.Contains(err.Error(), "2 writes failed") {
		t.Fatalf("checkpoint with two refused writes = %v", err)
	}
	if fo.js.keys[tgt] || fo.js.keys[rec] {
		t.Fatal("the refused writes were stored")
	}
	if err := e.checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if !fo.js.keys[tgt] || !fo.js.keys[rec] {
		t.Fatalf("after the next checkpoint: %s stored %v, %s stored %v", tgt, fo.js.keys[tgt], rec, fo.js.keys[rec])
	}
	stateKeys(t, "after the retry", e, fo.js.keys)
}

// stateKeys checks that the live keys of hm_state are exactly one per
// target (target.<t>, its record included) and one per VA, VS and backend
// record: those of removed objects deleted, none of the old rec.target.*.
func stateKeys(t *testing.T, step string, e *engine, written map[string]bool) {
	t.Helper()
	want := map[string]bool{}
	for id := range e.targets {
		want[prefTargetSnap+id] = true
	}
	snap := e.model.Snapshot()
	for _, r := range snap.VAs {
		want[prefRecVA+addrTok(r.VIP)] = true
	}
	for _, r := range snap.VSs {
		want[prefRecVS+endpointTok(r.VS)] = true
	}
	for _, r := range snap.Backends {
		want[prefRecBackend+endpointTok(r.VS)+"."+endpointTok(r.Backend)] = true
	}
	prefix := "$KV." + e.o.Layout.State.Bucket() + "."
	for subj, live := range written {
		key, ok := strings.CutPrefix(subj, prefix)
		if !ok || !live || isJournalKey(key) {
			continue
		}
		if !want[key] {
			t.Fatalf("%s: hm_state keeps %s, which is no object's", step, key)
		}
		delete(want, key)
	}
	if len(want) > 0 {
		t.Fatalf("%s: hm_state lacks %d keys, e.g. %v", step, len(want), slices.Collect(maps.Keys(want))[:1])
	}
}

// isJournalKey tells the journal's copies of transitions from the keys a
// checkpoint writes.
func isJournalKey(key string) bool {
	for _, p := range []string{"backend.", "vs.", "va."} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// request pauses or resumes the first backend of the fleet.
func request(t *testing.T, e *engine, op Op) {
	t.Helper()
	vs := e.model.Snapshot().Backends[0]
	reply := make(chan Reply, 1)
	r := Request{Op: op, Who: "bench", Why: "test", Reply: reply}
	var err error
	if r.VS, err = subject.ParseEndpoint(vs.VS); err == nil {
		r.Backend, err = subject.ParseEndpoint(vs.Backend)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := e.handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if rep := <-reply; rep.Err != nil || rep.Events == 0 {
		t.Fatalf("%s: %+v", op, rep)
	}
}
