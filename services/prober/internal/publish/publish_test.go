package publish_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/prober/internal/publish"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPublish_results_are_stored_with_headers(t *testing.T) {
	s := natstest.RunServer(t)
	nc, js := s.JetStream()
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := publish.New(nc, "p1", "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := subject.ParseEndpoint("127.0.0.1-TCP-80")
	tid := subject.TargetID{Endpoint: ep, Method: "tcp", Hash: "0000abcd"}
	subj := l.Space.Result(tid, "p1")
	const n = 500
	for i := 0; i < n; i++ {
		r := &event.ProbeResult{Target: tid.Token(), TS: time.Now().UnixNano(), State: event.Up, Reason: event.ReasonL4OK}
		if err := p.Publish(subj, r); err != nil {
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
	p, err := publish.New(nc, "p1", "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		_ = p.Publish("hm.result.0.x.p1", &event.ProbeResult{State: event.Down})
	}
	wait.For(t, 5*time.Second, "failures counted", func() bool { return p.Stats.Failed.Load() == 10 })
}
