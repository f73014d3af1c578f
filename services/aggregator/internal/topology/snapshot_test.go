package topology

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
)

// richModel builds a model with every kind of state: paused, guard-held,
// shared target, empty VS, unchecked VS, two VAs.
func richModel(t *testing.T) (*Model, Inventory, time.Time) {
	t.Helper()
	i := withVA(inv(
		guarded(vs(vs1, be(b1, "t1"), be(b2, "t2"), be(b3, "t3")), Guards{MinUp: 1}),
		unchecked(vs(vs2, be(b5, "")), "quic"),
		vs(vs3, be(b1, "t1"), be(b4, "t4")),
		vs("192.0.2.2-UDP-53"),
	), va(vip2, DownPolicyOneOf))
	m := New()
	steps := []step{
		do(setInv(i)),
		do(setInv(i), vsev("192.0.2.2-UDP-53", "unknown>down"), vaev(vip2, "unknown>down")),
		do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), bev(vs3, b1, "unknown>down", "L4CON drain")),
		do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain")),
		do(tv("t3", down), bev(vs1, b3, "unknown>down", "GUARD w=100"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
		do(tv("t4", up), bev(vs3, b4, "unknown>up", "L4OK w=100"), vsev(vs3, "unknown>up")),
		do(pauseOp(vs3, b4), bev(vs3, b4, "up>up", "PAUSED drain paused"), vsev(vs3, "up>down")),
	}
	run(t, m, steps)
	return m, i, t0.Add(time.Duration(len(steps)) * time.Second)
}

// stateOf is the tree without what a snapshot deliberately leaves out
// (statistics).
func stateOf(tree []VAStatus) []VAStatus {
	for i := range tree {
		tree[i].Stats = checker.Stats{}
		for j := range tree[i].VSs {
			tree[i].VSs[j].Stats = checker.Stats{}
		}
	}
	return tree
}

func TestRestore(t *testing.T) {
	restoreFirst := func(m *Model, snap Snapshot, i Inventory, now time.Time) []Event {
		if err := m.Restore(snap); err != nil {
			t.Fatal(err)
		}
		es, err := m.SetInventory(i, now)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	inventoryFirst := func(m *Model, snap Snapshot, i Inventory, now time.Time) []Event {
		es, err := m.SetInventory(i, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Restore(snap); err != nil {
			t.Fatal(err)
		}
		return es
	}
	tests := []struct {
		name  string
		start func(m *Model, snap Snapshot, i Inventory, now time.Time) []Event
	}{
		{"restore_then_inventory", restoreFirst},
		{"inventory_then_restore", inventoryFirst},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig, i, now := richModel(t)
			data, err := event.Marshal(orig.Snapshot())
			if err != nil {
				t.Fatal(err)
			}
			var snap Snapshot
			if err := event.Unmarshal(data, &snap); err != nil {
				t.Fatal(err)
			}
			m := New()
			if es := tt.start(m, snap, i, now); len(es) != 0 {
				t.Fatalf("restoring emitted %q", show(es))
			}
			if !reflect.DeepEqual(m.Snapshot(), orig.Snapshot()) {
				t.Fatalf("restored snapshot differs:\n%+v\n%+v", m.Snapshot(), orig.Snapshot())
			}
			if !reflect.DeepEqual(stateOf(m.Tree(now)), stateOf(orig.Tree(now))) {
				t.Fatal("restored tree differs")
			}
			if es, err := m.SetInventory(i, now); err != nil || len(es) != 0 {
				t.Fatalf("inventory after restore: %q %v", show(es), err)
			}
			checkConsistent(t, m)
			// Both continue identically, Gens included.
			for k, o := range []op{
				tv("t1", up), resumeOp(vs3, b4), tv("t3", up), setInv(inv(vs(vs1, be(b1, "t1")))), tv("t1", down),
			} {
				at := now.Add(time.Duration(k+1) * time.Second)
				want, err1 := o(orig, at)
				got, err2 := o(m, at)
				if err1 != nil || err2 != nil || len(got) == 0 || !reflect.DeepEqual(got, want) {
					t.Fatalf("op %d: restored %q (%v), original %q (%v)\n%+v\n%+v", k, show(got), err2, show(want), err1, got, want)
				}
			}
		})
	}
}

func TestRestoreRejects(t *testing.T) {
	tests := []struct {
		name string
		snap Snapshot
		want string
	}{
		{"bad_target_state", Snapshot{Targets: []TargetRecord{{ID: "t1", Record: Record{State: "healthy"}}}}, `target t1: state "healthy"`},
		{"empty_target_id", Snapshot{Targets: []TargetRecord{{Record: Record{State: up}}}}, "empty id"},
		{"bad_vip", Snapshot{VAs: []VARecord{{VIP: "not-an-ip", Record: Record{State: up}}}}, "va not-an-ip"},
		{"bad_vs_id", Snapshot{VSs: []VSRecord{{VS: "192.0.2.1-SCTP-80", Record: Record{State: up}}}}, "vs 192.0.2.1-SCTP-80"},
		{"missing_state", Snapshot{VSs: []VSRecord{{VS: vs1}}}, `vs ` + vs1 + `: state ""`},
		{"bad_backend_id", Snapshot{Backends: []BackendRecord{{VS: vs1, Backend: "x", Record: Record{State: up}}}}, "backend x in " + vs1},
		{"bad_applied", Snapshot{Backends: []BackendRecord{{VS: vs1, Backend: b1, Record: Record{State: up}, Applied: "half"}}}, `applied "half"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _, _ := richModel(t)
			before := m.Snapshot()
			err := m.Restore(tt.snap)
			if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrSnapshot containing %q", err, tt.want)
			}
			if !reflect.DeepEqual(m.Snapshot(), before) {
				t.Fatal("a rejected snapshot changed the model")
			}
		})
	}
}

func TestRestoredGenOfAbsentObjectIsKept(t *testing.T) {
	orig, _, now := richModel(t)
	snap := orig.Snapshot()
	m := New()
	if err := m.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// The first inventory lacks vs3; when it comes back its objects
	// continue their Gen instead of starting again at 1.
	if _, err := m.SetInventory(inv(vs(vs1, be(b1, "t1"))), now); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetInventory(inv(vs(vs1, be(b1, "t1")), vs(vs3, be(b4, "t4"))), now); err != nil {
		t.Fatal(err)
	}
	es, _ := tv("t4", up)(m, now)
	if len(es) == 0 || es[0].Gen != 3 {
		t.Fatalf("events %q gen %v, want the backend's third event", show(es), es)
	}
}

// TestIncrementalMatchesRecalculation plays random operations and checks,
// after each one, that the VS and VA states equal those of a fresh model
// given only the end result (inventory, verdicts, pauses): no history can
// make the incremental state differ from a recalculation (reference §9.2.8).
func TestIncrementalMatchesRecalculation(t *testing.T) {
	full := []VSSpec{
		vs(vs1, be(b1, "t1"), be(b2, "t2")),
		vs(vs2, be(b5, "t2"), be("198.51.100.6-TCP-443", "t3")),
		vs(vs3, be(b3, "t3"), be(b4, "t4")),
	}
	targets := []string{"t1", "t2", "t3", "t4"}
	states := []event.State{up, down, unknown}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		t.Run(fmt.Sprintf("seed_%d", round), func(t *testing.T) {
			m := New()
			cur := full
			verdicts := map[string]event.State{}
			paused := map[[2]string]bool{}
			now := t0
			if _, err := m.SetInventory(inv(cur...), now); err != nil {
				t.Fatal(err)
			}
			for range 200 {
				now = now.Add(time.Second)
				switch n := rng.IntN(10); {
				case n < 7:
					tg, st := targets[rng.IntN(len(targets))], states[rng.IntN(len(states))]
					verdicts[tg] = st
					tv(tg, st)(m, now)
				case n < 9:
					v := cur[rng.IntN(len(cur))]
					b := v.Backends[rng.IntN(len(v.Backends))]
					key := [2]string{v.ID.String(), b.ID.String()}
					if paused[key] {
						resumeOp(key[0], key[1])(m, now)
					} else {
						pauseOp(key[0], key[1])(m, now)
					}
					paused[key] = !paused[key]
				default: // drop or restore backend b2 (its target stays in use)
					next := []VSSpec{full[0], full[1], full[2]}
					if len(cur[0].Backends) == 2 {
						next[0] = vs(vs1, be(b1, "t1"))
						delete(paused, [2]string{vs1, b2})
					}
					cur = next
					if _, err := m.SetInventory(inv(cur...), now); err != nil {
						t.Fatal(err)
					}
				}
				checkConsistent(t, m)
				fresh := New()
				fresh.SetInventory(inv(cur...), now)
				for tg, st := range verdicts {
					tv(tg, st)(fresh, now)
				}
				for key, p := range paused {
					if p {
						pauseOp(key[0], key[1])(fresh, now)
					}
				}
				if got, want := objectStates(m), objectStates(fresh); got != want {
					t.Fatalf("incremental:\n%s\nrecalculated:\n%s", got, want)
				}
			}
		})
	}
}

func objectStates(m *Model) string {
	var sb strings.Builder
	for _, a := range m.Tree(t0) {
		fmt.Fprintf(&sb, "%s %s\n", a.VIP, a.State)
		for _, v := range a.VSs {
			fmt.Fprintf(&sb, "  %s %s %+v\n", v.ID, v.State, v.Counts)
			for _, b := range v.Backends {
				fmt.Fprintf(&sb, "    %s %s paused=%v\n", b.ID, b.State, b.Paused)
			}
		}
	}
	return sb.String()
}
