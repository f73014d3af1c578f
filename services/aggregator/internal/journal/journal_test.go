package journal_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/journal"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts a server with the healthmesh layout and returns the events
// subject and hm_state key of one VA.
func setup(t *testing.T) (context.Context, jetstream.JetStream, *bus.Layout, string, string) {
	t.Helper()
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	l, err := bus.Ensure(ctx, js, subject.Space{}, bus.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	va, _ := subject.ParseAddrToken("127_0_0_1")
	return ctx, js, l, l.Space.EventVA(va), subject.KeyVAState(va)
}

func TestJournal_appends_fences_and_deduplicates(t *testing.T) {
	ctx, js, l, subj, key := setup(t)
	tr := func(gen uint64, to event.State, term uint64) *event.Transition {
		return &event.Transition{V: 1, Kind: event.KindVA, Object: "127.0.0.1", VA: "127.0.0.1", To: to, Gen: gen, Term: term}
	}

	a := journal.New(js, l.Events, l.State)
	s1, err := a.Append(ctx, subj, key, tr(1, event.Up, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, subj, key, tr(2, event.Down, 1)); err != nil {
		t.Fatal(err)
	}
	e, err := l.State.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var cur event.Transition
	if err := event.Unmarshal(e.Value(), &cur); err != nil || cur.Gen != 2 || cur.To != event.Down {
		t.Fatalf("hm_state holds %+v (%v)", cur, err)
	}

	// A new leader repeating gen 2 (crash before it learned it was stored)
	// stores nothing new.
	b := journal.New(js, l.Events, l.State)
	if _, err := b.Append(ctx, subj, key, tr(2, event.Down, 2)); err != nil {
		t.Fatalf("repeat of stored gen: %v", err)
	}
	info, _ := l.Events.Info(ctx)
	if info.State.Msgs != 2 {
		t.Fatalf("stream has %d events, want 2 (duplicate stored?)", info.State.Msgs)
	}
	// The new leader moves on; the old one is now fenced off.
	if _, err := b.Append(ctx, subj, key, tr(3, event.Up, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, subj, key, tr(3, event.Down, 1)); !errors.Is(err, journal.ErrFenced) {
		t.Fatalf("stale writer: err = %v, want ErrFenced", err)
	}
	last, seq, err := journal.Last(ctx, l.Events, subj)
	if err != nil || last.Gen != 3 || last.To != event.Up || last.Term != 2 || seq <= s1 {
		t.Fatalf("last event %+v seq %d err %v", last, seq, err)
	}
}

// A leader restarted from an older checkpoint re-derives transitions the
// previous one journaled, oldest first: each is a duplicate, none is a fence
// violation, nothing is stored twice, hm_state keeps the newest, and the
// leader's own next transition goes through.
func TestJournal_replay_of_older_transitions_is_not_fenced(t *testing.T) {
	ctx, js, l, subj, key := setup(t)
	tr := func(gen uint64, from, to event.State, term uint64) *event.Transition {
		return &event.Transition{V: 1, Kind: event.KindVA, Object: "127.0.0.1", VA: "127.0.0.1", From: from, To: to, Gen: gen, Term: term}
	}
	steps := []struct{ from, to event.State }{{event.Unknown, event.Up}, {event.Up, event.Down}, {event.Down, event.Up}}

	a := journal.New(js, l.Events, l.State)
	for i, st := range steps {
		if _, err := a.Append(ctx, subj, key, tr(uint64(i+1), st.from, st.to, 1)); err != nil {
			t.Fatal(err)
		}
	}
	b := journal.New(js, l.Events, l.State)
	for i := 1; i < len(steps); i++ {
		if _, err := b.Append(ctx, subj, key, tr(uint64(i+1), steps[i].from, steps[i].to, 2)); err != nil {
			t.Fatalf("replayed gen %d: %v", i+1, err)
		}
		e, err := l.State.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var cur event.Transition
		if err := event.Unmarshal(e.Value(), &cur); err != nil || cur.Gen != 3 {
			t.Fatalf("after replaying gen %d hm_state holds gen %d (%v), want 3", i+1, cur.Gen, err)
		}
	}
	if info, _ := l.Events.Info(ctx); info.State.Msgs != 3 {
		t.Fatalf("stream has %d events, want 3", info.State.Msgs)
	}
	if _, err := b.Append(ctx, subj, key, tr(4, event.Up, event.Down, 2)); err != nil {
		t.Fatalf("the new leader's own transition after the replay: %v", err)
	}
}
