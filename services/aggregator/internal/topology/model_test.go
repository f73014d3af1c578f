package topology

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
)

// Expected-event builders, in show's format.
func bev(vsID, b, transition, rest string) string {
	return "b " + vsID + "/" + b + " " + transition + " " + rest
}
func vsev(vsID, transition string) string { return "vs " + vsID + " " + transition + " AGGR" }
func vaev(vip, transition string) string {
	if strings.HasSuffix(transition, ">unknown") {
		return "va " + vip + " " + transition + " AGGR"
	}
	return "va " + vip + " " + transition + " AGGR act"
}

func inhibited(b BackendSpec) BackendSpec { b.Inhibited = true; return b }

func TestBackendAndVS(t *testing.T) {
	two := inv(vs(vs1, be(b1, "t1"), be(b2, "t2")))
	one := inv(vs(vs1, be(b1, "t1")))
	tests := []struct {
		name  string
		steps []step
	}{
		{"startup_all_unknown_then_verdicts", []step{
			do(setInv(two)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain")),
			do(tv("t1", down), bev(vs1, b1, "up>down", "L4CON drain"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
			do(tv("t1", unknown), bev(vs1, b1, "down>unknown", "STALE"), vsev(vs1, "down>unknown"), vaev(vip1, "down>unknown")),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
		}},
		{"down_and_unknown_is_unknown", []step{
			do(setInv(two)),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain")),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
		}},
		{"unknown_is_never_reenabled_or_drained", []step{
			do(setInv(one)),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(tv("t1", unknown), bev(vs1, b1, "down>unknown", "STALE"), vsev(vs1, "down>unknown"), vaev(vip1, "down>unknown")),
			do(setInv(inv(vs(vs1, inhibited(be(b1, "t1")))))),
			do(setInv(one)),
		}},
		{"repeated_verdict_is_silent", []step{
			do(setInv(one)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t1", up)),
		}},
		{"unused_target_is_ignored", []step{do(setInv(one)), do(tv("t9", up))}},
		{"empty_vs_is_down_after_one_sync", []step{
			do(setInv(inv(vs(vs1)))),
			do(setInv(inv(vs(vs1))), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(setInv(one), vsev(vs1, "down>unknown"), vaev(vip1, "down>unknown")),
		}},
		{"emptied_vs_waits_one_sync", []step{
			do(setInv(one)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(setInv(inv(vs(vs1))), bev(vs1, b1, "up>unknown", "REMOVED"), vsev(vs1, "up>unknown"), vaev(vip1, "up>unknown")),
			do(setInv(inv(vs(vs1))), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
		}},
		{"removing_the_up_backend_rejudges", []step{
			do(setInv(two)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain")),
			do(setInv(inv(vs(vs1, be(b2, "t2")))), bev(vs1, b1, "up>unknown", "REMOVED"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
		}},
		{"shared_target_across_vas", []step{
			do(setInv(inv(vs(vs3, be(b1, "t1")), vs(vs1, be(b1, "t1"))))),
			do(tv("t1", up),
				bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up"),
				bev(vs3, b1, "unknown>up", "L4OK w=100"), vsev(vs3, "unknown>up"), vaev(vip2, "unknown>up")),
		}},
		{"shared_target_in_one_va", []step{
			do(setInv(inv(vs(vs2, be(b5, "t1")), vs(vs1, be(b1, "t1"))))),
			do(tv("t1", down),
				bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"),
				bev(vs2, b5, "unknown>down", "L4CON drain"), vsev(vs2, "unknown>down"), vaev(vip1, "unknown>down")),
		}},
		{"new_backend_adopts_a_known_target_verdict", []step{
			do(setInv(one)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(setInv(inv(vs(vs1, be(b1, "t1")), vs(vs3, be(b1, "t1")))),
				bev(vs3, b1, "unknown>up", "L4OK w=100"), vsev(vs3, "unknown>up"), vaev(vip2, "unknown>up")),
		}},
		{"inventory_diff_keeps_state", []step{
			do(setInv(two)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t2", up), bev(vs1, b2, "unknown>up", "L4OK w=100")),
			do(setInv(two)),
			do(setInv(inv(vs(vs1, be(b1, "t1")), vs(vs2, be(b5, "t1")))),
				bev(vs1, b2, "up>unknown", "REMOVED"), bev(vs2, b5, "unknown>up", "L4OK w=100"), vsev(vs2, "unknown>up")),
			do(setInv(inv(vs(vs2, be(b5, "t1")))), bev(vs1, b1, "up>unknown", "REMOVED"), "vs "+vs1+" up>unknown REMOVED"),
			do(setInv(inv()), bev(vs2, b5, "up>unknown", "REMOVED"), "vs "+vs2+" up>unknown REMOVED", "va "+vip1+" up>unknown REMOVED"),
		}},
		{"changed_target_takes_its_verdict", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1")), vs(vs3, be(b2, "t2"))))),
			do(tv("t2", down), bev(vs3, b2, "unknown>down", "L4CON drain"), vsev(vs3, "unknown>down"), vaev(vip2, "unknown>down")),
			do(setInv(inv(vs(vs1, be(b1, "t2")), vs(vs3, be(b2, "t2")))),
				bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(setInv(inv(vs(vs1, be(b1, "t3")), vs(vs3, be(b2, "t2")))),
				bev(vs1, b1, "down>unknown", "CONFIG"), vsev(vs1, "down>unknown"), vaev(vip1, "down>unknown")),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, New(), tt.steps) })
	}
}

func TestVA(t *testing.T) {
	pair := func(policy int) Inventory {
		i := inv(vs(vs1, be(b1, "t1")), vs(vs2, be(b5, "t2")))
		if policy != 0 {
			i = withVA(i, va(vip1, policy))
		}
		return i
	}
	withUnchecked := inv(vs(vs1, be(b1, "t1")), unchecked(vs(vs2, be(b5, "")), "quic"))
	disabled := withVA(inv(vs(vs1, be(b1, "t1"))), VASpec{VIP: ep(vs1).Addr, Disabled: true})
	tests := []struct {
		name  string
		steps []step
	}{
		{"all_of_down_only_when_every_vs_is_down", []step{
			do(setInv(pair(DownPolicyAllOf))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down")),
			do(tv("t2", up), bev(vs2, b5, "unknown>up", "L4OK w=100"), vsev(vs2, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t2", down), bev(vs2, b5, "up>down", "L4CON drain"), vsev(vs2, "up>down"), vaev(vip1, "up>down")),
		}},
		{"all_of_is_the_default", []step{
			do(setInv(pair(0))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down")),
			do(tv("t2", up), bev(vs2, b5, "unknown>up", "L4OK w=100"), vsev(vs2, "unknown>up"), vaev(vip1, "unknown>up")),
		}},
		{"one_of_down_when_any_vs_is_down", []step{
			do(setInv(pair(DownPolicyOneOf))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(tv("t2", up), bev(vs2, b5, "unknown>up", "L4OK w=100"), vsev(vs2, "unknown>up")),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
		}},
		{"one_of_up_needs_every_vs_known", []step{
			do(setInv(pair(DownPolicyOneOf))),
			do(tv("t2", up), bev(vs2, b5, "unknown>up", "L4OK w=100"), vsev(vs2, "unknown>up")),
		}},
		{"policy_change_rejudges", []step{
			do(setInv(pair(DownPolicyAllOf))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down")),
			do(tv("t2", up), bev(vs2, b5, "unknown>up", "L4OK w=100"), vsev(vs2, "unknown>up"), vaev(vip1, "unknown>up")),
			do(setInv(pair(DownPolicyOneOf)), vaev(vip1, "up>down")),
		}},
		{"unchecked_vs_never_holds_a_va_up_or_down", []step{
			do(setInv(withUnchecked)),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
		}},
		{"only_unchecked_vss_is_unknown", []step{
			do(setInv(inv(unchecked(vs(vs1, be(b1, "")), "passive")))),
			do(setInv(inv(unchecked(vs(vs1, be(b1, "")), "passive")))),
			do(tv("t1", up)),
		}},
		{"vs_becoming_unchecked_goes_unknown", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(setInv(inv(unchecked(vs(vs1, be(b1, "t1")), "bad params"))),
				bev(vs1, b1, "up>unknown", "CONFIG"), vsev(vs1, "up>unknown"), vaev(vip1, "up>unknown")),
		}},
		{"disabled_va_does_not_exist", []step{
			do(setInv(disabled)),
			do(tv("t1", up)),
		}},
		{"disabling_a_va_removes_it", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(setInv(disabled), bev(vs1, b1, "up>unknown", "REMOVED"), "vs "+vs1+" up>unknown REMOVED", "va "+vip1+" up>unknown REMOVED"),
		}},
		{"vas_in_address_order", []step{
			do(setInv(inv(vs(vs3), vs(vs1)))),
			do(setInv(inv(vs(vs3), vs(vs1))), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down"), vsev(vs3, "unknown>down"), vaev(vip2, "unknown>down")),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, New(), tt.steps) })
	}
}

func TestGuards(t *testing.T) {
	minUp := guarded(vs(vs1, be(b1, "t1"), be(b2, "t2"), be(b3, "t3")), Guards{MinUp: 1})
	frac := guarded(vs(vs1, be(b1, "t1"), be(b2, "t2"), be(b3, "t3"), be(b4, "t4")), Guards{MaxDownFraction: 0.5})
	tests := []struct {
		name  string
		steps []step
	}{
		{"min_up_holds_the_last_serving_backend", []step{
			do(setInv(inv(minUp))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain")),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain")),
			do(tv("t3", down), bev(vs1, b3, "unknown>down", "GUARD w=100"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), bev(vs1, b3, "down>down", "GUARD drain"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
			do(tv("t1", down), bev(vs1, b1, "up>down", "GUARD w=100"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
		}},
		{"max_down_fraction", []step{
			do(setInv(inv(frac))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain")),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain")),
			do(tv("t3", down), bev(vs1, b3, "unknown>down", "GUARD w=100")),
			do(tv("t4", down), bev(vs1, b4, "unknown>down", "GUARD w=100"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), bev(vs1, b3, "down>down", "GUARD drain"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
		}},
		{"guard_never_blocks_a_pause", []step{
			do(setInv(inv(guarded(vs(vs1, be(b1, "t1")), Guards{MinUp: 1})))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(pauseOp(vs1, b1), bev(vs1, b1, "up>up", "PAUSED drain paused"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
			do(tv("t1", down), bev(vs1, b1, "up>down", "L4CON drain paused")),
			do(resumeOp(vs1, b1), bev(vs1, b1, "down>down", "RESUMED drain")),
		}},
		{"loosened_guard_drains_held_backends", []step{
			do(setInv(inv(guarded(vs(vs1, be(b1, "t1"), be(b2, "t2")), Guards{MinUp: 1})))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain")),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "GUARD w=100"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(setInv(inv(vs(vs1, be(b1, "t1"), be(b2, "t2")))), bev(vs1, b2, "down>down", "GUARD drain")),
		}},
		{"held_backend_going_unknown_applies_nothing", []step{
			do(setInv(inv(guarded(vs(vs1, be(b1, "t1")), Guards{MinUp: 1})))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "GUARD w=100"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(tv("t1", unknown), bev(vs1, b1, "down>unknown", "STALE"), vsev(vs1, "down>unknown"), vaev(vip1, "down>unknown")),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "GUARD w=100"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
		}},
		{"inhibited_backends_do_not_count_as_serving", []step{
			do(setInv(inv(guarded(vs(vs1, inhibited(be(b1, "t1")), be(b2, "t2")), Guards{MinUp: 1})))),
			do(tv("t2", down), bev(vs1, b2, "unknown>down", "GUARD w=100")),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, New(), tt.steps) })
	}
}

func TestPauseResume(t *testing.T) {
	two := inv(vs(vs1, be(b1, "t1"), be(b2, "t2")))
	tests := []struct {
		name  string
		steps []step
	}{
		{"pause_drains_and_resume_reapplies", []step{
			do(setInv(two)),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t2", up), bev(vs1, b2, "unknown>up", "L4OK w=100")),
			do(pauseOp(vs1, b1), bev(vs1, b1, "up>up", "PAUSED drain paused")),
			do(pauseOp(vs1, b1)),
			do(pauseOp(vs1, b2), bev(vs1, b2, "up>up", "PAUSED drain paused"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
			do(tv("t2", down), bev(vs1, b2, "up>down", "L4CON drain paused")),
			do(resumeOp(vs1, b2), bev(vs1, b2, "down>down", "RESUMED drain")),
			do(resumeOp(vs1, b1), bev(vs1, b1, "up>up", "RESUMED w=100"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
			do(resumeOp(vs1, b1)),
		}},
		{"resuming_an_unknown_backend_applies_nothing", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(pauseOp(vs1, b1), bev(vs1, b1, "unknown>unknown", "PAUSED drain paused"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(resumeOp(vs1, b1), bev(vs1, b1, "unknown>unknown", "RESUMED"), vsev(vs1, "down>unknown"), vaev(vip1, "down>unknown")),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
		}},
		{"pause_survives_inventory_refresh", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(pauseOp(vs1, b1), bev(vs1, b1, "unknown>unknown", "PAUSED drain paused"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(setInv(inv(vs(vs1, inhibited(be(b1, "t1")))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK drain paused")),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, New(), tt.steps) })
	}

	m := New()
	if _, err := m.SetInventory(two, t0); err != nil {
		t.Fatal(err)
	}
	notFound := []struct {
		name   string
		vs, be string
	}{
		{"unknown_vs", vs3, b1},
		{"unknown_backend", vs1, b3},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range []func() ([]Event, error){
				func() ([]Event, error) { return m.Pause(ep(tt.vs), ep(tt.be), "bob", "", t0) },
				func() ([]Event, error) { return m.Resume(ep(tt.vs), ep(tt.be), "bob", "", t0) },
			} {
				if es, err := f(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.be) || es != nil {
					t.Errorf("got %v %v, want ErrNotFound naming %s", es, err, tt.be)
				}
			}
		})
	}
}

func TestEventContents(t *testing.T) {
	m := New()
	i := withVA(inv(vs(vs1, be(b1, "t1"))), va(vip1, DownPolicyAllOf))
	i.VSs[0].Action.Params = map[string]string{"timeout": "2s"}
	if _, err := m.SetInventory(i, t0); err != nil {
		t.Fatal(err)
	}
	votes := []event.Vote{{Observer: "p1", State: up, Count: 2}}
	q := event.Quorum{Need: 1, Observers: 1, Live: 1, Up: 1}
	now := t0.Add(5 * time.Second)
	es := m.TargetVerdict("t1", checker.Change{From: unknown, To: up, Reason: event.ReasonL7OK, Detail: "status 200", At: now}, votes, q, now)
	if len(es) != 3 {
		t.Fatalf("events %q", show(es))
	}
	b, v, a := es[0], es[1], es[2]
	wantApply := event.BackendApply{VIP: vip1, VPort: 80, Proto: "TCP", Addr: "198.51.100.1", Port: 80, Weight: 100, UserWeight: 100, Version: "7"}
	switch {
	case b.Apply == nil || *b.Apply != wantApply:
		t.Errorf("apply %+v, want %+v", b.Apply, wantApply)
	case b.Action == nil || b.Action.Actioner != "BackendUpdate" || b.Action.Params["timeout"] != "2s":
		t.Errorf("backend action %+v", b.Action)
	case !reflect.DeepEqual(b.Votes, votes) || b.Quorum == nil || *b.Quorum != q:
		t.Errorf("votes %+v quorum %+v", b.Votes, b.Quorum)
	case b.Target != "t1" || b.Gen != 1 || !b.At.Equal(now) || !b.Since.Equal(t0) || b.Reason != event.ReasonL7OK || b.Detail != "status 200":
		t.Errorf("backend event %+v", b)
	case b.VS != ep(vs1) || b.Backend != ep(b1) || b.VA != ep(vs1).Addr || b.Kind != event.KindBackend:
		t.Errorf("backend event ids %+v", b)
	}
	if v.Counts == nil || *v.Counts != (event.Counts{Up: 1, Total: 1}) || v.Apply != nil || v.Action != nil || v.Gen != 1 {
		t.Errorf("vs event %+v counts %+v", v, v.Counts)
	}
	if a.Counts == nil || *a.Counts != (event.Counts{Up: 1, Total: 1}) || a.Action == nil || a.Action.Actioner != "KernelRouteAddDel" || a.Gen != 1 {
		t.Errorf("va event %+v counts %+v", a, a.Counts)
	}

	// Gen counts every event of an object and survives its removal.
	steps := []struct {
		name string
		do   func() ([]Event, error)
		gen  uint64 // Gen of the first event
	}{
		{"second_transition", func() ([]Event, error) { return tv("t1", down)(m, now) }, 2},
		{"pause_counts", func() ([]Event, error) { return pauseOp(vs1, b1)(m, now) }, 3},
		{"removal_counts", func() ([]Event, error) { return setInv(inv(vs(vs1)))(m, now) }, 4},
		{"readded_continues", func() ([]Event, error) {
			if _, err := m.SetInventory(i, now); err != nil {
				return nil, err
			}
			return tv("t1", up)(m, now)
		}, 5},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			es, err := s.do()
			if err != nil || len(es) == 0 {
				t.Fatalf("%v %v", es, err)
			}
			if es[0].Kind != event.KindBackend || es[0].Gen != s.gen {
				t.Errorf("first event %q has gen %d, want backend gen %d", show(es[:1]), es[0].Gen, s.gen)
			}
		})
	}
}

func TestWeights(t *testing.T) {
	zeroInhibited := func(b BackendSpec) BackendSpec { b.Weight, b.Inhibited = 0, true; return b }
	tests := []struct {
		name  string
		steps []step
	}{
		{"unknown_user_weight_defaults_to_one", []step{
			do(setInv(inv(vs(vs1, zeroInhibited(be(b1, "t1")))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=1"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
		}},
		{"known_user_weight_is_kept_while_inhibited", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
			do(setInv(inv(vs(vs1, zeroInhibited(be(b1, "t1")))))),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
		}},
		{"user_weight_change_is_used_next_time", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(setInv(inv(vs(vs1, BackendSpec{ID: ep(b1), Target: "t1", Weight: 7})))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=7"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, New(), tt.steps) })
	}
}

// TestListed: a backend's first decision is marked Listed when the
// dpvs-agent listing already shows it that way, so the actioner makes no
// call; a later change, a static backend and a listing that differs are not.
func TestListed(t *testing.T) {
	listed := func(b BackendSpec) BackendSpec { b.Listed = true; return b }
	tests := []struct {
		name  string
		steps []step
	}{
		{"first_up_of_a_serving_backend", []step{
			do(setInv(inv(vs(vs1, listed(be(b1, "t1")))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100 listed"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
			do(tv("t1", down), bev(vs1, b1, "up>down", "L4CON drain"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
			do(tv("t1", up), bev(vs1, b1, "down>up", "L4OK w=100"), vsev(vs1, "down>up"), vaev(vip1, "down>up")),
		}},
		{"first_down_of_an_inhibited_backend", []step{
			do(setInv(inv(vs(vs1, listed(inhibited(be(b1, "t1"))))))),
			do(tv("t1", down), bev(vs1, b1, "unknown>down", "L4CON drain listed"), vsev(vs1, "unknown>down"), vaev(vip1, "unknown>down")),
		}},
		{"listing_differs", []step{
			do(setInv(inv(vs(vs1, listed(inhibited(be(b1, "t1"))))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
		}},
		{"static_backend", []step{
			do(setInv(inv(vs(vs1, be(b1, "t1"))))),
			do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { run(t, New(), tt.steps) })
	}
}

func TestSetInventoryRejects(t *testing.T) {
	tests := []struct {
		name string
		inv  Inventory
		want []string
	}{
		{"invalid_vs_id", inv(VSSpec{}), []string{"virtual-servers[0]", "invalid ID"}},
		{"duplicate_vs", inv(vs(vs1), vs(vs1)), []string{"virtual-servers/" + vs1 + ": listed twice"}},
		{"invalid_backend_id", inv(vs(vs1, BackendSpec{Target: "t"})), []string{"virtual-servers/" + vs1 + "/backends[0]", "invalid ID"}},
		{"backend_protocol_mismatch", inv(vs(vs1, be("198.51.100.1-UDP-80", "t1"))), []string{"backends/198.51.100.1-UDP-80: protocol differs"}},
		{"backend_without_target", inv(vs(vs1, be(b1, ""))), []string{"backends/" + b1 + ": no probe target"}},
		{"duplicate_backend", inv(vs(vs1, be(b1, "t1"), be(b1, "t2"))), []string{"backends/" + b1 + ": listed twice"}},
		{"negative_min_up", inv(guarded(vs(vs1), Guards{MinUp: -1})), []string{vs1 + "/min-up -1"}},
		{"fraction_above_one", inv(guarded(vs(vs1), Guards{MaxDownFraction: 1.5})), []string{vs1 + "/max-down-fraction 1.5"}},
		{"fraction_nan", inv(guarded(vs(vs1), Guards{MaxDownFraction: math.NaN()})), []string{"max-down-fraction NaN"}},
		{"bad_down_policy", withVA(inv(vs(vs1)), va(vip1, 3)), []string{"virtual-addresses/" + vip1 + "/down-policy 3"}},
		{"duplicate_va", withVA(inv(vs(vs1)), va(vip1, 1), va(vip1, 2)), []string{"virtual-addresses/" + vip1 + ": listed twice"}},
		{"invalid_vip", withVA(inv(vs(vs1)), VASpec{}), []string{"virtual-addresses[0]: missing or invalid VIP"}},
		{"every_problem_reported", inv(vs(vs1, be(b1, "")), guarded(vs(vs3), Guards{MinUp: -2})), []string{"no probe target", "min-up -2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			if _, err := m.SetInventory(inv(vs(vs1, be(b2, "t2"))), t0); err != nil {
				t.Fatal(err)
			}
			before := m.Snapshot()
			es, err := m.SetInventory(tt.inv, t0.Add(time.Second))
			if !errors.Is(err, ErrInventory) || es != nil {
				t.Fatalf("got %v %v, want ErrInventory", es, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !reflect.DeepEqual(m.Snapshot(), before) {
				t.Error("a rejected inventory changed the model")
			}
		})
	}
}
