package topology

import (
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
)

func statusModel(t *testing.T) (*Model, time.Time) {
	t.Helper()
	m := New()
	run(t, m, []step{
		do(setInv(withVA(inv(
			guarded(vs(vs1, be(b1, "t1"), be(b2, "t2"), be(b3, "t3")), Guards{MinUp: 2}),
			vs("2001:db8::1-UDP-53", be("2001:db8::10-UDP-53", "t6")),
			unchecked(vs(vs3, be(b4, "")), "quic"),
		), va(vip1, DownPolicyOneOf)))),
		do(tv("t1", up), bev(vs1, b1, "unknown>up", "L4OK w=100"), vsev(vs1, "unknown>up"), vaev(vip1, "unknown>up")),
		do(tv("t2", down), bev(vs1, b2, "unknown>down", "L4CON drain")),
		do(tv("t3", down), bev(vs1, b3, "unknown>down", "GUARD w=100")),
		do(pauseOp(vs1, b1), bev(vs1, b1, "up>up", "PAUSED drain paused"), vsev(vs1, "up>down"), vaev(vip1, "up>down")),
		do(tv("t6", up), bev("2001:db8::1-UDP-53", "2001:db8::10-UDP-53", "unknown>up", "L4OK w=100"), vsev("2001:db8::1-UDP-53", "unknown>up"), vaev("2001:db8::1", "unknown>up")),
	})
	return m, t0.Add(17 * time.Minute)
}

func TestTree(t *testing.T) {
	m, now := statusModel(t)
	tree := m.Tree(now)
	if len(tree) != 3 || tree[0].VIP.String() != vip1 || tree[1].VIP.String() != vip2 || tree[2].VIP.String() != "2001:db8::1" {
		t.Fatalf("VAs out of order: %+v", tree)
	}
	a := tree[0]
	if a.State != down || a.DownPolicy != DownPolicyOneOf || a.Counts != (event.Counts{Down: 1, Total: 1}) ||
		a.For != 17*time.Minute-4*time.Second || a.Gen != 2 || a.Stats != (checker.Stats{Up: 1, Down: 1, UpNoticed: 1, DownNoticed: 1}) {
		t.Errorf("va %+v", a)
	}
	v := a.VSs[0]
	if v.State != down || v.Counts != (event.Counts{Down: 3, Total: 3}) || v.Guards.MinUp != 2 ||
		v.Stats != (checker.Stats{Up: 1, Down: 1, UpNoticed: 1, DownNoticed: 2}) {
		t.Errorf("vs %+v", v)
	}
	tests := []struct {
		name string
		got  BackendStatus
		want BackendStatus
	}{
		{"paused_up_backend", v.Backends[0], BackendStatus{State: up, Weight: 100, Inhibited: true, Applied: true, Paused: true, PausedBy: "alice", PausedWhy: "kernel upgrade", Gen: 2}},
		{"drained_backend", v.Backends[1], BackendStatus{State: down, Weight: 100, Inhibited: true, Applied: true, Gen: 1}},
		{"guard_held_backend", v.Backends[2], BackendStatus{State: down, Weight: 100, AppliedWeight: 100, Applied: true, Held: true, Gen: 1}},
		{"unchecked_backend", tree[1].VSs[0].Backends[0], BackendStatus{State: unknown, Weight: 100, AppliedWeight: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.got
			if g.State != tt.want.State || g.Weight != tt.want.Weight || g.AppliedWeight != tt.want.AppliedWeight ||
				g.Inhibited != tt.want.Inhibited || g.Applied != tt.want.Applied || g.Held != tt.want.Held ||
				g.Paused != tt.want.Paused || g.PausedBy != tt.want.PausedBy || g.PausedWhy != tt.want.PausedWhy || g.Gen != tt.want.Gen {
				t.Errorf("got %+v\nwant %+v", g, tt.want)
			}
		})
	}
	if b := v.Backends[0]; len(b.Votes) != 1 || b.Quorum == nil || b.Target != "t1" {
		t.Errorf("backend votes %+v quorum %+v target %q", b.Votes, b.Quorum, b.Target)
	}
}

func TestRenderText(t *testing.T) {
	m, now := statusModel(t)
	tree := m.Tree(now)
	tree[0].VSs[0].Backends[0].Stats = checker.Stats{Up: 5, Down: 1, UpNoticed: 1, DownFailed: 2} // the caller's probe counters
	got := RenderText(tree, now)
	want := `object                              state                               statistics                          extra(optional)
---------------------------------------------------------------------------------------------------------------------------
192.0.2.1                           Unhealthy 16m56s                    1,1,1,1,0,0                         oneOf vs(up,down,unknown,unchecked)=0,1,0,0
    TCP 192.0.2.1:80                    Unhealthy 16m56s                    1,1,1,2,0,0                         backends(up,down,unknown)=0,3,0 min-up=2
    -> 198.51.100.1:80                     Healthy 16m59s                      5,1,1,0,0,2                         weight=0/100 inhibited paused(alice: kernel upgrade) L4OK
    -> 198.51.100.2:80                     Unhealthy 16m58s                    0,0,0,0,0,0                         weight=0/100 inhibited L4CON
    -> 198.51.100.3:80                     Unhealthy 16m57s                    0,0,0,0,0,0                         weight=100/100 guard-held L4CON
192.0.2.2                           Unknown 17m0s                       0,0,0,0,0,0                         allOf vs(up,down,unknown,unchecked)=0,0,0,1
    TCP 192.0.2.2:80                    Unknown 17m0s                       0,0,0,0,0,0                         backends(up,down,unknown)=0,0,1 unchecked(quic)
    -> 198.51.100.4:80                     Unknown 17m0s                       0,0,0,0,0,0                         weight=100/100
2001:db8::1                         Healthy 16m55s                      1,0,1,0,0,0                         allOf vs(up,down,unknown,unchecked)=1,0,0,0
    UDP [2001:db8::1]:53                Healthy 16m55s                      1,0,1,0,0,0                         backends(up,down,unknown)=1,0,0
    -> [2001:db8::10]:53                   Healthy 16m55s                      0,0,0,0,0,0                         weight=100/100 L4OK
Notes:
  statistics denotation: up,down,up_notices,down_notices,fail(up,timeout),fail(down,error)
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestBackendExtra(t *testing.T) {
	tests := []struct {
		name string
		b    BackendStatus
		want string
	}{
		{"serving", BackendStatus{State: up, Weight: 10, AppliedWeight: 10, Reason: event.ReasonL7OK}, "weight=10/10 L7OK"},
		{"unknown_hides_stale_reason", BackendStatus{State: unknown, Weight: 10, Reason: event.ReasonStale, Inhibited: true}, "weight=0/10 inhibited"},
		{"paused_without_why", BackendStatus{State: down, Weight: 10, Inhibited: true, Paused: true, PausedBy: "bob"}, "weight=0/10 inhibited paused(bob)"},
		{"one_vote_is_not_shown", BackendStatus{State: up, Votes: []event.Vote{{}}, Quorum: &event.Quorum{Need: 1, Live: 1, Up: 1}}, "weight=0/0"},
		{"votes_of_several_observers", BackendStatus{State: down, Held: true, Votes: make([]event.Vote, 3),
			Quorum: &event.Quorum{Need: 2, Live: 3, Up: 1, Down: 2}}, "weight=0/0 guard-held votes(up,down,live,need)=1,2,3,2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(backendExtra(tt.b), " "); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
