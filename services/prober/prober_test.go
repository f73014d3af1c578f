package prober_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/prober"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type env struct {
	t  *testing.T
	s  *natstest.Server
	js jetstream.JetStream
	l  *bus.Layout
}

func newEnv(t *testing.T) *env {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{MemberTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, js: js, l: l}
}

// putTarget writes a target definition as the aggregator would.
func (e *env) putTarget(addr string, port uint16, method string, params map[string]string, observers int, interval time.Duration) string {
	e.t.Helper()
	ep := subject.Endpoint{Proto: subject.TCP, Port: port}
	ep.Addr = netip.MustParseAddr(addr)
	tid := subject.TargetID{Endpoint: ep, Method: method, Hash: subject.HashOf(fmt.Sprint(params))}
	def := &event.Target{V: 1, ID: tid.Token(), Addr: addr, Port: port, Proto: "TCP", Method: method, Params: params,
		Interval: int64(interval), Timeout: int64(interval / 2), Observers: observers}
	b, err := event.Marshal(def)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.l.Targets.Put(context.Background(), tid.Token(), b); err != nil {
		e.t.Fatal(err)
	}
	return tid.Token()
}

type proc struct {
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan error
}

func (e *env) startProber(id, node string) *proc {
	nc := e.s.Connect()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{nc: nc, cancel: cancel, done: make(chan error, 1)}
	go func() {
		p.done <- prober.Run(ctx, prober.Options{Conn: nc, ID: id, Node: node, Concurrency: 256, Log: zerolog.Nop()})
	}()
	e.t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	if p.done == nil {
		return
	}
	p.cancel()
	<-p.done
	p.done = nil
}

// coverage reads the results stored between from and to: target → observers.
func (e *env) coverage(from, to time.Time) map[string]map[string]int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, e.l.Space.StreamResults(), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]map[string]int{}
	for {
		b, err := c.FetchNoWait(1000)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			md, _ := m.Metadata()
			if md.Timestamp.After(to) {
				return out
			}
			var r event.ProbeResult
			if err := event.Unmarshal(m.Data(), &r); err != nil {
				e.t.Fatal(err)
			}
			if out[r.Target] == nil {
				out[r.Target] = map[string]int{}
			}
			out[r.Target][r.Observer]++
		}
		if n == 0 {
			return out
		}
	}
}

// covered checks that in the last window every target had exactly its
// expected number of observers, among the allowed ones.
func (e *env) covered(want map[string]int, allowed map[string]bool) (map[string]map[string]int, error) {
	to := time.Now()
	cov := e.coverage(to.Add(-1500*time.Millisecond), to)
	bad := 0
	example := ""
	for id, n := range want {
		obs := 0
		for o := range cov[id] {
			if allowed[o] {
				obs++
			}
		}
		if obs != n {
			bad++
			example = fmt.Sprintf("%s: %v, want %d observers", id, cov[id], n)
		}
	}
	if bad > 0 {
		return cov, fmt.Errorf("%d targets mis-covered, e.g. %s", bad, example)
	}
	return cov, nil
}

// coverEvery is how often the coverage tests re-read the results: each read
// walks 1.5s of results, so polling every 10ms would load the machine.
const coverEvery = 100 * time.Millisecond

func TestSharding_exact_coverage_failover_and_minimal_moves(t *testing.T) {
	if testing.Short() {
		t.Skip("sharding test runs for ~20s")
	}
	e := newEnv(t)
	want := map[string]int{}
	for i := 0; i < 1000; i++ {
		r := 1 + i%2 // half sharded (R=1), half redundant (R=2)
		id := e.putTarget(fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250), 80, "none", nil, r, time.Second)
		want[id] = r
	}
	ps := map[string]*proc{}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("p%d", i)
		ps[id] = e.startProber(id, fmt.Sprintf("n%d", i))
	}
	all := map[string]bool{"p1": true, "p2": true, "p3": true}
	wait.Check(t, 60*time.Second, coverEvery, "exact coverage by 3 probers", func() error {
		_, err := e.covered(want, all)
		return err
	})
	if _, err := e.covered(want, all); err != nil {
		t.Fatalf("coverage not stable: %v", err)
	}

	// Crash p3: it stops heartbeating and publishing at once.
	ps["p3"].nc.Close()
	crashed := time.Now()
	live := map[string]bool{"p1": true, "p2": true}
	want2 := map[string]int{}
	for id, r := range want {
		want2[id] = min(r, 2)
	}
	wait.Check(t, 30*time.Second, coverEvery, "re-coverage after a crash", func() error { _, err := e.covered(want2, live); return err })
	// The window is 1.5s wide, so the last probe before "covered" started at
	// most TTL + interval + window after the crash.
	took := time.Since(crashed)
	t.Logf("every target covered again %v after the crash (TTL 1s, interval 1s, window 1.5s)", took)
	if took > 5*time.Second {
		t.Fatalf("re-coverage took %v, want within TTL + 1 interval (+ the measuring window)", took)
	}
	ps["p3"].stop()

	// A new prober joins: only about 1/3 of the R=1 targets may move.
	ownerOf := func(cov map[string]map[string]int, id string) string {
		for o := range cov[id] {
			return o
		}
		return ""
	}
	var settled map[string]map[string]int
	mid, _ := e.covered(want2, live)
	ps["p4"] = e.startProber("p4", "n4")
	all3 := map[string]bool{"p1": true, "p2": true, "p4": true}
	wait.Check(t, 60*time.Second, coverEvery, "exact coverage with p4", func() error {
		cov, err := e.covered(want, all3)
		settled = cov
		switch {
		case err != nil:
			return err
		case hasObserver(cov, "p3"):
			return fmt.Errorf("the stopped p3 still observes")
		case !hasObserver(cov, "p4"):
			return fmt.Errorf("p4 observes nothing yet")
		}
		return nil
	})
	moved, single := 0, 0
	for id, r := range want {
		if r != 1 {
			continue
		}
		single++
		if ownerOf(mid, id) != ownerOf(settled, id) {
			moved++
		}
	}
	frac := float64(moved) / float64(single)
	t.Logf("join moved %d of %d sharded targets (%.2f)", moved, single, frac)
	if frac > 0.45 {
		t.Fatalf("a join moved %.0f%% of the targets; want about 1/3", frac*100)
	}
	for id := range want {
		if want[id] == 1 && ownerOf(settled, id) != ownerOf(mid, id) && ownerOf(settled, id) != "p4" {
			t.Fatalf("target %s moved between old members (%s → %s)", id, ownerOf(mid, id), ownerOf(settled, id))
		}
	}
}

func hasObserver(cov map[string]map[string]int, o string) bool {
	for _, obs := range cov {
		if obs[o] > 0 {
			return true
		}
	}
	return false
}

func TestFullMesh_one_observer_per_node(t *testing.T) {
	e := newEnv(t)
	want := map[string]int{}
	for i := 0; i < 50; i++ {
		want[e.putTarget(fmt.Sprintf("127.0.9.%d", 1+i), 80, "none", nil, event.ObserversAll, time.Second)] = 2
	}
	e.startProber("a1", "node-a")
	e.startProber("a2", "node-a") // same node: only one of a1/a2 probes each target
	e.startProber("b1", "node-b")
	all := map[string]bool{"a1": true, "a2": true, "b1": true}
	var cov map[string]map[string]int
	wait.Check(t, 60*time.Second, coverEvery, "one observer per node", func() error {
		var err error
		cov, err = e.covered(want, all)
		return err
	})
	for id, obs := range cov {
		if _, ok := want[id]; ok && (obs["b1"] == 0 || (obs["a1"] > 0) == (obs["a2"] > 0)) {
			t.Fatalf("target %s observers %v: want b1 and exactly one of a1/a2", id, obs)
		}
	}
}
