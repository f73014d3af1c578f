package member_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/prober/internal/member"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = time.Second

func layout(t *testing.T, s *natstest.Server) *bus.Layout {
	t.Helper()
	_, js := s.JetStream()
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{MemberTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func run(t *testing.T, f func(ctx context.Context)) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func ids(r *member.Registry) []string {
	ms, _ := r.Snapshot()
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func hasIDs(r *member.Registry, want ...string) func() bool {
	return func() bool {
		got := ids(r)
		if len(got) != len(want) {
			return false
		}
		for i := range want {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}
}

func TestMembership_join_clean_leave_and_crash(t *testing.T) {
	s := natstest.RunServer(t)
	l := layout(t, s)
	reg := member.NewRegistry()
	run(t, func(ctx context.Context) { member.Watch(ctx, l.Members, reg, zerolog.Nop()) })

	stopA := run(t, func(ctx context.Context) {
		member.Heartbeat(ctx, l.Members, event.Member{ID: "p-a", Node: "n1"}, ttl/3, func() int { return 5 }, zerolog.Nop())
	})
	// b heartbeats over its own connection so the test can cut it like a crash.
	nc := s.Connect()
	js, _ := jetstream.New(nc)
	kvB, err := js.KeyValue(context.Background(), l.Members.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	run(t, func(ctx context.Context) {
		member.Heartbeat(ctx, kvB, event.Member{ID: "p-b", Node: "n2", Zone: "z"}, ttl/3, nil, zerolog.Nop())
	})
	wait.For(t, 3*time.Second, "both members", hasIDs(reg, "p-a", "p-b"))
	ms, v1 := reg.Snapshot()
	if ms[0].Owned != 5 || ms[1].Zone != "z" || ms[0].V != event.Version {
		t.Fatalf("member records: %+v", ms)
	}
	// Heartbeats alone do not count as membership changes.
	if wait.Until(ttl, func() bool { _, v := reg.Snapshot(); return v != v1 }) {
		t.Fatal("registry version changed on heartbeats only")
	}

	start := time.Now()
	stopA()
	wait.For(t, 500*time.Millisecond, "clean leave seen at once", hasIDs(reg, "p-b"))
	t.Logf("clean leave seen after %v", time.Since(start))

	nc.Close()
	start = time.Now()
	wait.For(t, 3*ttl, "crashed member expires", hasIDs(reg))
	if took := time.Since(start); took < ttl/2 {
		t.Fatalf("crashed member dropped after %v, before its TTL", took)
	} else {
		t.Logf("crashed member expired after %v (ttl %v)", took, ttl)
	}
}
