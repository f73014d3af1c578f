package checker

import (
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// TestRestoreResumesStreaks cuts a result sequence in two at every point:
// a target restored from a msgpack round trip of the snapshot taken at the cut
// must continue exactly like the target that never stopped.
func TestRestoreResumesStreaks(t *testing.T) {
	p := Params{UpRetry: 2, DownRetry: 1, Interval: 3 * time.Second, Observers: 3}
	var seq []Result
	states := []event.State{up, up, down, unknown, down, down, up, up, up, down, up, up, up}
	for i, st := range states {
		for j, obs := range []string{"a", "b", "c"} {
			if obs == "c" && i > 6 { // c goes silent and stale
				continue
			}
			if obs == "b" && st == up && i%2 == 0 {
				st = down // b disagrees now and then
			}
			seq = append(seq, Result{Observer: obs, State: st, Reason: event.ReasonL4OK, Detail: "d",
				TS: at(3*i + j), Seq: uint64(i + 1)})
		}
	}
	for cut := 0; cut <= len(seq); cut++ {
		orig := mustNew(t, p)
		for _, r := range seq[:cut] {
			orig.Observe(r)
		}
		b, err := event.Marshal(orig.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		var snap TargetSnapshot
		if err := event.Unmarshal(b, &snap); err != nil {
			t.Fatal(err)
		}
		restored := mustNew(t, p)
		if err := restored.Restore(snap); err != nil {
			t.Fatalf("cut %d: restore: %v", cut, err)
		}
		if restored.Verdict() != orig.Verdict() || !restored.Since().Equal(orig.Since()) {
			t.Fatalf("cut %d: restored verdict %q since %v, want %q since %v",
				cut, restored.Verdict(), restored.Since(), orig.Verdict(), orig.Since())
		}
		for i, r := range seq[cut:] {
			c1, ok1 := orig.Observe(r)
			c2, ok2 := restored.Observe(r)
			if ok1 != ok2 || !sameChange(c1, c2) {
				t.Fatalf("cut %d, result %d: original %v %+v, restored %v %+v", cut, cut+i, ok1, c1, ok2, c2)
			}
		}
		for _, now := range []time.Time{at(100), at(1000)} {
			c1, ok1 := orig.Expire(now)
			c2, ok2 := restored.Expire(now)
			if ok1 != ok2 || !sameChange(c1, c2) {
				t.Fatalf("cut %d: expire %v: original %v %+v, restored %v %+v", cut, now, ok1, c1, ok2, c2)
			}
		}
		if !reflect.DeepEqual(orig.Snapshot(), restored.Snapshot()) {
			t.Fatalf("cut %d: snapshots differ:\n%+v\n%+v", cut, orig.Snapshot(), restored.Snapshot())
		}
	}
}

// TestSemanticSnapshotIsEnough: a target restored from an older snapshot
// whose semantic form equals the current one's (what the checkpoint skips
// storing) decides every later result exactly like the target that never
// stopped.
func TestSemanticSnapshotIsEnough(t *testing.T) {
	p := Params{UpRetry: 2, DownRetry: 1, Interval: 3 * time.Second, Observers: 2}
	cap := max(p.UpRetry, p.DownRetry) + 1
	states := []event.State{up, up, up, up, up, up, down, down, down, down, up, up, up, up, up, up, up}
	var seq []Result
	for i, st := range states {
		for j, obs := range []string{"a", "b"} {
			// Steady results say the same (an RTT travels beside, not in
			// the detail), so a steady stretch has one semantic form.
			seq = append(seq, Result{Observer: obs, State: st, Reason: event.ReasonL4OK, Detail: fmt.Sprint(st),
				TS: at(3*i + j), Seq: uint64(i + 1)})
		}
	}
	semantic := func(s TargetSnapshot) string {
		b, err := event.Marshal(s.semantic(cap))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	orig := mustNew(t, p)
	var snaps []TargetSnapshot
	for _, r := range seq {
		snaps = append(snaps, orig.Snapshot())
		orig.Observe(r)
	}
	snaps = append(snaps, orig.Snapshot())
	skipped := 0
	for cut := range snaps {
		for k := 0; k < cut; k++ {
			if semantic(snaps[k]) != semantic(snaps[cut]) {
				continue
			}
			skipped++
			ref, old := mustNew(t, p), mustNew(t, p)
			if err := ref.Restore(snaps[cut]); err != nil {
				t.Fatal(err)
			}
			if err := old.Restore(snaps[k]); err != nil {
				t.Fatal(err)
			}
			for i, r := range seq[cut:] {
				c1, ok1 := ref.Observe(r)
				c2, ok2 := old.Observe(r)
				if ok1 != ok2 || !sameChange(c1, c2) {
					t.Fatalf("snapshot %d stood for %d; result %d: %v %+v, want %v %+v", k, cut, cut+i, ok2, c2, ok1, c1)
				}
			}
			if ref.Verdict() != old.Verdict() {
				t.Fatalf("snapshot %d stood for %d: verdict %s, want %s", k, cut, old.Verdict(), ref.Verdict())
			}
		}
	}
	// A steady stretch has equal semantic forms (those are what is saved).
	if skipped < len(states) {
		t.Fatalf("only %d snapshot pairs share their semantic form; steady stretches should", skipped)
	}
	// SemanticDigest tells two states apart exactly when their semantic
	// forms differ.
	seed := maphash.MakeSeed()
	digest := func(s TargetSnapshot) uint64 {
		tg := mustNew(t, p)
		if err := tg.Restore(s); err != nil {
			t.Fatal(err)
		}
		return tg.SemanticDigest(seed, cap)
	}
	for i := range snaps {
		for k := range i {
			same := semantic(snaps[i]) == semantic(snaps[k])
			if got := digest(snaps[i]) == digest(snaps[k]); got != same {
				t.Fatalf("snapshots %d and %d: equal digests %v, equal semantic forms %v", k, i, got, same)
			}
		}
	}
}

func sameChange(a, b Change) bool {
	return a.From == b.From && a.To == b.To && a.Reason == b.Reason && a.Detail == b.Detail && a.At.Equal(b.At)
}

func TestRestoreProducesNoChange(t *testing.T) {
	// A snapshot taken under retry 3 with a streak of 2 Downs, restored under
	// retry 0: the restored verdict stands until the next input.
	orig := mustNew(t, params(3, 3))
	run(t, orig, []step{r("", down, 1), r("", down, 2)})
	restored := mustNew(t, params(0, 0))
	if err := restored.Restore(orig.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if restored.Verdict() != unknown {
		t.Fatalf("verdict %q after restore, want unknown", restored.Verdict())
	}
	run(t, restored, []step{r("", down, 3).changes(down)})
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	tg := mustNew(t, params(1, 1))
	run(t, tg, []step{r("a", up, 1), r("b", up, 1), r("a", up, 2).changes(up)})
	good := tg.Snapshot()
	tests := []struct {
		name   string
		mutate func(*TargetSnapshot)
		want   string
	}{
		{"other_target", func(s *TargetSnapshot) { s.ID = "other" }, `snapshot of target "other"`},
		{"bad_verdict", func(s *TargetSnapshot) { s.Verdict = "healthy" }, `verdict "healthy"`},
		{"bad_observer_state", func(s *TargetSnapshot) { s.Observers[0].State = "x" }, `observer "a": state "x"`},
		{"negative_streak", func(s *TargetSnapshot) { s.Observers[1].Count = -1 }, `observer "b": streak of -1`},
		{"streak_without_result", func(s *TargetSnapshot) { s.Observers[1].Last = unknown }, `streak of 1 "unknown"`},
		{"unsorted_observers", func(s *TargetSnapshot) { s.Observers[1].ID = "a" }, "increasing id order"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			s.Observers = append([]ObserverSnapshot(nil), good.Observers...)
			tt.mutate(&s)
			err := tg.Restore(s)
			if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrSnapshot containing %q", err, tt.want)
			}
			if !reflect.DeepEqual(tg.Snapshot(), good) {
				t.Fatal("a refused snapshot changed the target")
			}
		})
	}
}

// semantic is what Target.SemanticDigest digests, spelled out: s without
// what changes with every result of a steady target and with streak counts
// capped at cap.
func (s TargetSnapshot) semantic(cap int) TargetSnapshot {
	s.Clock, s.Stats = 0, Stats{}
	obs := make([]ObserverSnapshot, len(s.Observers))
	for i, o := range s.Observers {
		o.TS, o.Seq, o.Reason, o.Detail = 0, 0, "", ""
		o.Count = min(o.Count, cap)
		obs[i] = o
	}
	s.Observers = obs
	return s
}

// Snapshots written when observers kept counters of their own still load.
func TestObserverSnapshot_with_counters_of_its_own_decodes(t *testing.T) {
	old := map[string]any{"o": "p1", "st": "up", "seq": 7, "stats": map[string]any{"up": 3, "down": 1}}
	b, err := event.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var o ObserverSnapshot
	if err := event.Unmarshal(b, &o); err != nil {
		t.Fatal(err)
	}
	if o.ID != "p1" || o.State != event.Up || o.Seq != 7 {
		t.Errorf("decoded %+v, want id p1, state up, seq 7", o)
	}
}
