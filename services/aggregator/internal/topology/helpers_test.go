package topology

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Addresses are documentation ranges (TEST-NET, 2001:db8::/32): the model
// never sends anything anywhere.
const (
	vip1 = "192.0.2.1"
	vip2 = "192.0.2.2"
	vs1  = "192.0.2.1-TCP-80"
	vs2  = "192.0.2.1-TCP-443"
	vs3  = "192.0.2.2-TCP-80"
	b1   = "198.51.100.1-TCP-80"
	b2   = "198.51.100.2-TCP-80"
	b3   = "198.51.100.3-TCP-80"
	b4   = "198.51.100.4-TCP-80"
	b5   = "198.51.100.5-TCP-443"
)

const (
	up      = event.Up
	down    = event.Down
	unknown = event.Unknown
)

// t0 is in time.Local, as times restored from Unix ns are.
var t0 = time.Unix(1750680000, 0)

func ep(s string) subject.Endpoint {
	e, err := subject.ParseEndpoint(s)
	if err != nil {
		panic(err) // test constants only
	}
	return e
}

func be(id, target string) BackendSpec {
	return BackendSpec{ID: ep(id), Target: target, Weight: 100, Version: "7"}
}

func vs(id string, bs ...BackendSpec) VSSpec {
	return VSSpec{ID: ep(id), Backends: bs, Action: event.ActionSpec{Actioner: "BackendUpdate"}}
}

func guarded(v VSSpec, g Guards) VSSpec { v.Guards = g; return v }

func unchecked(v VSSpec, why string) VSSpec {
	v.Unchecked, v.UncheckedReason = true, why
	for i := range v.Backends {
		v.Backends[i].Target = ""
	}
	return v
}

func inv(vss ...VSSpec) Inventory { return Inventory{VSs: vss} }

func withVA(i Inventory, vas ...VASpec) Inventory { i.VAs = vas; return i }

func va(vip string, policy int) VASpec {
	return VASpec{VIP: netip.MustParseAddr(vip), DownPolicy: policy, Action: event.ActionSpec{Actioner: "KernelRouteAddDel"}}
}

// op is one call on a Model at a given time.
type op func(m *Model, now time.Time) ([]Event, error)

func setInv(i Inventory) op {
	return func(m *Model, now time.Time) ([]Event, error) { return m.SetInventory(i, now) }
}

var stateReason = map[event.State]event.Reason{up: event.ReasonL4OK, down: event.ReasonL4CON, unknown: event.ReasonStale}

func tv(target string, to event.State) op {
	return func(m *Model, now time.Time) ([]Event, error) {
		votes := []event.Vote{{Observer: "p1", State: to, Count: 1, TS: now.UnixNano(), Reason: stateReason[to]}}
		q := event.Quorum{Need: 1, Observers: 1, Live: 1}
		ch := checker.Change{To: to, Reason: stateReason[to], Detail: "d", At: now}
		return m.TargetVerdict(target, ch, votes, q, now), nil
	}
}

func pauseOp(vsID, b string) op {
	return func(m *Model, now time.Time) ([]Event, error) {
		return m.Pause(ep(vsID), ep(b), "alice", "kernel upgrade", now)
	}
}

func resumeOp(vsID, b string) op {
	return func(m *Model, now time.Time) ([]Event, error) { return m.Resume(ep(vsID), ep(b), "alice", "", now) }
}

// step is an op and the events it must produce, written by show.
type step struct {
	do   op
	want []string
}

func do(o op, want ...string) step { return step{do: o, want: want} }

// run plays steps on m, one second apart from t0, and checks every event list
// and, after each step, that VS and VA states match a recount.
func run(t *testing.T, m *Model, steps []step) {
	t.Helper()
	for i, s := range steps {
		es, err := s.do(m, t0.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got := show(es)
		if fmt.Sprint(got) != fmt.Sprint(s.want) || len(got) != len(s.want) {
			t.Fatalf("step %d events:\n got  %q\n want %q", i, got, s.want)
		}
		checkConsistent(t, m)
	}
}

// show writes events compactly: kind, object, from>to, reason, then what is
// applied ("w=N" or "drain"), "paused", and "act" for a VA action.
func show(es []Event) []string {
	out := []string{}
	for _, e := range es {
		var s string
		switch e.Kind {
		case event.KindBackend:
			s = fmt.Sprintf("b %s/%s %s>%s %s", e.VS, e.Backend, e.From, e.To, e.Reason)
			if a := e.Apply; a != nil {
				if a.Inhibited {
					s += " drain"
				} else {
					s += fmt.Sprintf(" w=%d", a.Weight)
				}
				if a.Listed {
					s += " listed"
				}
			}
			if e.Paused {
				s += " paused"
			}
		case event.KindVS:
			s = fmt.Sprintf("vs %s %s>%s %s", e.VS, e.From, e.To, e.Reason)
		case event.KindVA:
			s = fmt.Sprintf("va %s %s>%s %s", e.VA, e.From, e.To, e.Reason)
			if e.Action != nil {
				s += " act"
			}
		}
		out = append(out, s)
	}
	return out
}

// checkConsistent asserts the invariants: every backend state equals its
// target's verdict, and every VS and VA state is what a recount gives.
func checkConsistent(t *testing.T, m *Model) {
	t.Helper()
	for _, a := range m.vas {
		if want := a.judge(a.counts()); a.obj.state != want {
			t.Fatalf("va %s is %s, a recount gives %s", a.vip, a.obj.state, want)
		}
		for _, v := range a.vss {
			if want := v.judge(v.counts()); v.obj.state != want {
				t.Fatalf("vs %s is %s, a recount gives %s", v.id, v.obj.state, want)
			}
			for _, b := range v.backends {
				want := unknown
				if b.target != nil {
					want = b.target.obj.state
				}
				if b.obj.state != want {
					t.Fatalf("backend %s/%s is %s, its target says %s", v.id, b.id, b.obj.state, want)
				}
			}
		}
	}
}
