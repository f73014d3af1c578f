package resync

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/actioner/internal/action"
	"github.com/healthmesh/healthmesh/services/actioner/internal/executor"
	"github.com/healthmesh/healthmesh/services/actioner/internal/ledger"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// TestStep_backend_acted_on_after_the_list_read_is_left_alone: the
// service list is read beside the delivering goroutine, so a delivery may
// act on a backend after the read began. Both backends are desired down and
// listed up (someone re-enabled them by hand); backend 1 is then acted on
// (a newer desired state) before Step uses the list: only backend 0 is
// re-applied from that list; backend 1 waits for the next round's read.
func TestStep_backend_acted_on_after_the_list_read_is_left_alone(t *testing.T) {
	vs := subject.VSID{Addr: netip.MustParseAddr("192.0.2.1"), Proto: subject.TCP, Port: 80} // only in request bodies
	be := func(i int) subject.BackendID {
		return subject.BackendID{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), Proto: subject.TCP, Port: 8080}
	}
	key := func(i int) string { return subject.KeyBackendState(vs, be(i)) }

	agent, url := agenttest.NewServer(t)
	svc := agenttest.SeedService{Port: vs.Port, Proto: "tcp"}
	for i := range 2 {
		svc.Backends = append(svc.Backends, agenttest.SeedBackend{IP: be(i).Addr.String(), Port: be(i).Port})
	}
	if err := agent.Seed(agenttest.Seed{VIPs: []agenttest.SeedVIP{{Addr: vs.Addr.String(), Services: []agenttest.SeedService{svc}}}}); err != nil {
		t.Fatal(err)
	}
	client, err := dpvsagent.New(url)
	if err != nil {
		t.Fatal(err)
	}

	now := time.Unix(1_700_000_000, 0)
	m := metrics.New(prometheus.NewRegistry())
	l := ledger.New()
	log := zerolog.New(zerolog.NewTestWriter(t))
	r := New(Config{
		Exec: executor.New(executor.Config{
			Node: "lb1", Metrics: m, Log: log, Deps: action.Deps{Agent: client, Log: log},
		}),
		Ledger: l, Agent: client, Metrics: m, Log: log,
		Now: func() time.Time { return now },
	})
	down := func(i int, gen uint64) *event.Transition {
		return &event.Transition{
			Kind: event.KindBackend, Object: be(i).String(), VS: vs.String(), To: event.Down, Gen: gen,
			Action: &event.ActionSpec{Actioner: action.NameBackendUpdate},
			Apply: &event.BackendApply{
				VIP: vs.Addr.String(), VPort: vs.Port, Proto: "tcp", Addr: be(i).Addr.String(), Port: be(i).Port,
				UserWeight: 100, Inhibited: true,
			},
		}
	}
	for i := range 2 {
		l.Want(key(i), down(i, 1))
		l.Record(key(i), 1, nil, false) // applied, as far as the ledger knows
	}
	l.Synced(event.KindBackend)
	l.Synced(event.KindVA)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// The first Step finds the VS due and asks for the list: no call yet.
	if next := r.Step(ctx); next != listPoll {
		t.Fatalf("Step waiting for the list wants to run again in %v, want %v", next, listPoll)
	}
	wait.For(t, 10*time.Second, "the service list read", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.listed != nil
	})
	l.Want(key(1), down(1, 2)) // a delivery acts on backend 1 meanwhile
	l.Record(key(1), 2, nil, false)
	now = now.Add(listPoll)
	r.Step(ctx)

	var health []string // bodies
	for _, c := range agent.Calls() {
		if c.Method == http.MethodPut && strings.HasSuffix(c.Path, "/rs/health") {
			health = append(health, string(c.Body))
		}
	}
	if len(health) != 1 || !strings.Contains(health[0], `"`+be(0).Addr.String()+`"`) ||
		strings.Contains(health[0], `"`+be(1).Addr.String()+`"`) {
		t.Fatalf("health calls = %q, want one re-inhibiting backend 0 only", health)
	}
	if got := testutil.ToFloat64(m.SyncRepairs.WithLabelValues(action.NameBackendUpdate)); got != 1 {
		t.Errorf("repairs = %v, want 1", got)
	}
}
