package publish_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/prober/internal/publish"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newPublisher returns a publisher of observer p1 on node n1 whose Run
// sends until the test ends.
func newPublisher(t *testing.T, nc *nats.Conn) *publish.Publisher {
	t.Helper()
	p, err := publish.New(nc, "p1", "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, 0) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func TestPublish_results_are_stored_with_headers(t *testing.T) {
	s := natstest.RunServer(t)
	nc, js := s.JetStream()
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc)
	ep, _ := subject.ParseEndpoint("127.0.0.1-TCP-80")
	tid := subject.TargetID{Endpoint: ep, Method: "tcp", Hash: "0000abcd"}
	subj := l.Space.Result(tid, "p1")
	const n = 500
	for i := 0; i < n; i++ {
		r := &event.ProbeResult{Target: tid.Token(), TS: time.Now().UnixNano(), State: event.Up, Reason: event.ReasonL4OK}
		if err := p.Publish(subj, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 5*time.Second, "all acked", func() bool { return p.Stats.Acked.Load() == n })
	m, err := l.Results.GetLastMsgForSubject(context.Background(), subj)
	if err != nil {
		t.Fatal(err)
	}
	var got event.ProbeResult
	if err := event.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != n || got.Observer != "p1" || got.Node != "n1" || m.Header.Get(event.HdrState) != "up" {
		t.Fatalf("last result %+v headers %v", got, m.Header)
	}
	if p.Stats.Failed.Load() != 0 || p.Stats.Dropped.Load() != 0 {
		t.Fatalf("failures: %d dropped %d", p.Stats.Failed.Load(), p.Stats.Dropped.Load())
	}
}

func TestPublish_without_stream_counts_failures(t *testing.T) {
	s := natstest.RunServer(t)
	nc := s.Connect()
	p := newPublisher(t, nc)
	for i := 0; i < 10; i++ {
		_ = p.Publish("hm.result.0.x.p1", &event.ProbeResult{State: event.Down}, nil)
	}
	wait.For(t, 5*time.Second, "failures counted", func() bool { return p.Stats.Failed.Load() == 10 })
}

func TestPublish_core_mode_sends_on_core_NATS(t *testing.T) {
	s := natstest.RunServer(t)
	nc := s.Connect()
	sc := s.Connect()
	sub, err := sc.SubscribeSync("hm.result.>")
	if err != nil {
		t.Fatal(err)
	}
	// The server knows the subscription once the connection has flushed:
	// before that, core messages find no subscriber and are gone.
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc)
	p.SetCore(true)
	const n = 200
	// One header cache for every result: it must follow the target, state
	// and reason of each.
	var hc publish.Headers
	state := func(i int) (event.State, event.Reason) {
		if i%7 < 3 {
			return event.Down, event.ReasonL4CON
		}
		return event.Up, event.ReasonL4OK
	}
	for i := 0; i < n; i++ {
		st, why := state(i)
		r := &event.ProbeResult{Target: fmt.Sprintf("t%d", i/2), State: st, Reason: why}
		if err := p.Publish("hm.result.0.t.p1", r, &hc); err != nil {
			t.Fatal(err)
		}
	}
	if !p.Drain(5 * time.Second) {
		t.Fatal("not drained")
	}
	// Each message has its own content although the buffers are reused.
	for i := 0; i < n; i++ {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("result %d: %v", i, err)
		}
		var got event.ProbeResult
		if err := event.Unmarshal(m.Data, &got); err != nil {
			t.Fatal(err)
		}
		st, why := state(i)
		if got.Target != fmt.Sprintf("t%d", i/2) || got.Seq != uint64(i+1) || got.State != st {
			t.Fatalf("result %d = %+v", i, got)
		}
		if m.Header.Get(event.HdrState) != string(st) || m.Header.Get(event.HdrReason) != string(why) ||
			m.Header.Get(event.HdrSchema) != event.SchemaProbeResult {
			t.Fatalf("result %d = %+v, headers %v", i, got, m.Header)
		}
	}
	if p.Stats.Published.Load() != n || p.Stats.Failed.Load() != 0 {
		t.Fatalf("published %d failed %d", p.Stats.Published.Load(), p.Stats.Failed.Load())
	}
}

func TestFollow_switches_with_the_results_stream(t *testing.T) {
	s := natstest.RunServer(t)
	nc, js := s.JetStream()
	sp := subject.Space{}
	if _, err := bus.Ensure(context.Background(), js, sp, bus.Settings{}); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc)
	p.SetCore(true) // wrong on purpose: Follow corrects it
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var switches atomic.Int32
	go func() {
		defer close(done)
		publish.Follow(ctx, js, sp.StreamResults(), p, 20*time.Millisecond, func(bool) { switches.Add(1) })
	}()
	defer func() { cancel(); <-done }()
	wait.For(t, 5*time.Second, "jetstream mode (the stream exists)", func() bool { return !p.Core() })
	if _, err := bus.Ensure(context.Background(), js, sp, bus.Settings{Results: bus.ResultsCore}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "core mode (the stream is gone)", func() bool { return p.Core() })
	if _, err := bus.Ensure(context.Background(), js, sp, bus.Settings{}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "jetstream mode again", func() bool { return !p.Core() })
	if n := switches.Load(); n != 3 {
		t.Fatalf("%d mode switches reported, want 3", n)
	}
}

// Results queue until Run (or Drain) sends them; a queue that stopped
// moving is back-pressure: results beyond it are dropped and counted.
func TestPublish_full_queue_is_back_pressure(t *testing.T) {
	s := natstest.RunServer(t)
	p, err := publish.New(s.Connect(), "p1", "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	p.SetCore(true)
	refused := 0
	const n = 1<<16 + 10 // the queue's bound plus 10
	for i := 0; i < n; i++ {
		err := p.Publish("hm.result.0.t.p1", &event.ProbeResult{Target: "t", State: event.Up}, nil)
		switch {
		case errors.Is(err, publish.ErrBackPressure):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if refused != 10 || p.Stats.Dropped.Load() != 10 || p.Stats.Published.Load() != 0 {
		t.Fatalf("refused %d, dropped %d, published %d before any send; want 10, 10, 0",
			refused, p.Stats.Dropped.Load(), p.Stats.Published.Load())
	}
	if !p.Drain(5*time.Second) || p.Stats.Published.Load() != n-10 {
		t.Fatalf("drain: published %d, want %d", p.Stats.Published.Load(), n-10)
	}
}
