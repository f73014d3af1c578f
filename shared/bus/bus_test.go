package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEnsure_creates_layout_idempotently(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	sp := subject.Space{}
	set := bus.Settings{ResultsMaxAge: 2 * time.Hour}
	l, err := bus.Ensure(ctx(t), js, sp, set)
	if err != nil {
		t.Fatal(err)
	}
	// Second call (another service starting) must succeed unchanged.
	if _, err := bus.Ensure(ctx(t), js, sp, set); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	ri, err := l.Results.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if ri.Config.Name != "HM_RESULTS" || ri.Config.MaxAge != 2*time.Hour || ri.Config.Subjects[0] != "hm.result.>" || ri.Config.Discard != jetstream.DiscardOld {
		t.Fatalf("results config: %+v", ri.Config)
	}
	ei, err := l.Events.Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c := ei.Config
	if c.Name != "HM_EVENTS" || !c.DenyDelete || !c.DenyPurge || c.MaxAge != 30*24*time.Hour || c.Duplicates != 10*time.Minute || len(c.Subjects) != 3 {
		t.Fatalf("events config: %+v", c)
	}
	for _, kv := range []jetstream.KeyValue{l.Targets, l.Members, l.Leader, l.State} {
		if _, err := kv.Status(ctx(t)); err != nil {
			t.Fatalf("bucket %s: %v", kv.Bucket(), err)
		}
	}
	ms, _ := l.Members.Status(ctx(t))
	if ms.TTL() != 3*time.Second {
		t.Fatalf("members TTL = %v", ms.TTL())
	}
	// Open binds to the same layout without creating anything.
	if _, err := bus.Open(ctx(t), js, sp); err != nil {
		t.Fatalf("Open: %v", err)
	}
	// History is append-only: purge is denied.
	if err := l.Events.Purge(ctx(t)); err == nil {
		t.Fatal("purge of HM_EVENTS succeeded; want denied")
	}
}

func TestEnsure_results_core_has_no_results_stream(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	sp := subject.Space{}
	if _, err := bus.Ensure(ctx(t), js, sp, bus.Settings{}); err != nil {
		t.Fatal(err)
	}
	// Switching to core removes the stream left from the jetstream mode.
	l, err := bus.Ensure(ctx(t), js, sp, bus.Settings{Results: bus.ResultsCore})
	if err != nil {
		t.Fatal(err)
	}
	if l.Results != nil || l.Events == nil || l.State == nil {
		t.Fatalf("core layout: results %v, events %v, state %v; want no results stream only", l.Results, l.Events, l.State)
	}
	if _, err := js.Stream(ctx(t), sp.StreamResults()); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("HM_RESULTS after Ensure(core): %v, want not found", err)
	}
	o, err := bus.Open(ctx(t), js, sp)
	if err != nil || o.Results != nil {
		t.Fatalf("Open in core mode: results %v, err %v; want nil, nil", o.Results, err)
	}
	// And back: the jetstream mode creates it again.
	if l, err = bus.Ensure(ctx(t), js, sp, bus.Settings{Results: bus.ResultsJetStream}); err != nil || l.Results == nil {
		t.Fatalf("Ensure(jetstream) after core: results %v, err %v", l.Results, err)
	}
	if _, err := bus.Ensure(ctx(t), js, sp, bus.Settings{Results: "nats"}); err == nil || !strings.Contains(err.Error(), `"nats"`) {
		t.Fatalf("Ensure with an unknown results mode: %v, want an error naming it", err)
	}
}

func TestOpen_missing_layout_is_an_error(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	_, err := bus.Open(ctx(t), js, subject.Space{})
	if err == nil || !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("err = %v, want stream not found", err)
	}
}

func TestPublish_transition_is_deduplicated_and_readable(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	l, err := bus.Ensure(ctx(t), js, subject.Space{}, bus.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	vs, _ := subject.ParseEndpoint("192.0.2.1-TCP-80")
	be, _ := subject.ParseEndpoint("127.0.0.10-TCP-8080")
	tr := &event.Transition{V: event.Version, Kind: event.KindBackend, Object: be.String(), VS: vs.String(), VA: "192.0.2.1",
		From: event.Up, To: event.Down, Reason: event.ReasonL4CON, Gen: 7, TS: time.Now().UnixNano()}
	subj := l.Space.EventBackend(vs, be)
	a1, err := bus.Publish(ctx(t), js, subj, tr)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := bus.Publish(ctx(t), js, subj, tr)
	if err != nil {
		t.Fatal(err)
	}
	if !a2.Duplicate || a2.Sequence != a1.Sequence {
		t.Fatalf("second publish not deduplicated: %+v vs %+v", a2, a1)
	}
	m, err := l.Events.GetLastMsgForSubject(ctx(t), subj)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(event.HdrObject) != "127.0.0.10-TCP-8080" || m.Header.Get(event.HdrTo) != "down" || m.Header.Get(event.HdrFrom) != "up" {
		t.Fatalf("headers: %v", m.Header)
	}
	var got event.Transition
	if err := event.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Gen != 7 || got.To != event.Down || got.Reason != event.ReasonL4CON {
		t.Fatalf("decoded %+v", got)
	}
}

func TestEnsure_gives_up_with_context(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := bus.Ensure(c, js, subject.Space{}, bus.Settings{}); err == nil {
		t.Fatal("Ensure with a cancelled context succeeded")
	}
}
