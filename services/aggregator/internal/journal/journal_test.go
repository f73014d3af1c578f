package journal_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

	a := journal.New(js, l)
	s1, err := a.Append(ctx, subj, key, tr(1, event.Up, 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, subj, key, tr(2, event.Down, 1)); err != nil {
		t.Fatal(err)
	}
	if err := a.Settle(ctx); err != nil {
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
	b := journal.New(js, l)
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

	a := journal.New(js, l)
	for i, st := range steps {
		if _, err := a.Append(ctx, subj, key, tr(uint64(i+1), st.from, st.to, 1)); err != nil {
			t.Fatal(err)
		}
	}
	b := journal.New(js, l)
	for i := 1; i < len(steps); i++ {
		if _, err := b.Append(ctx, subj, key, tr(uint64(i+1), steps[i].from, steps[i].to, 2)); err != nil {
			t.Fatalf("replayed gen %d: %v", i+1, err)
		}
		if err := b.Settle(ctx); err != nil {
			t.Fatal(err)
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

// refusing makes the server refuse the first hm_state copies (a fence that
// cannot hold), as a lost or failed write would leave them.
type refusing struct {
	jetstream.JetStream
	refuse int
}

func (r *refusing) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if r.refuse > 0 && strings.HasPrefix(m.Subject, "$KV.") {
		r.refuse--
		c := nats.NewMsg(m.Subject)
		c.Data = m.Data
		c.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "999999999")
		m = c
	}
	return r.JetStream.PublishMsgAsync(m, opts...)
}

// hm_state's copy trails the event; a copy the server refused is written
// again by Settle from the subject's last event, never from an older one.
func TestSettle_repairs_failed_copies_from_the_stream(t *testing.T) {
	ctx, js, l, subj, key := setup(t)
	tr := func(gen uint64, to event.State) *event.Transition {
		return &event.Transition{V: 1, Kind: event.KindVA, Object: "127.0.0.1", VA: "127.0.0.1", To: to, Gen: gen, Term: 1}
	}
	state := func() uint64 {
		t.Helper()
		e, err := l.State.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var cur event.Transition
		if err := event.Unmarshal(e.Value(), &cur); err != nil {
			t.Fatal(err)
		}
		return cur.Gen
	}

	j := journal.New(&refusing{JetStream: js, refuse: 1}, l)
	if _, err := j.Append(ctx, subj, key, tr(1, event.Up)); err != nil { // its copy is refused
		t.Fatal(err)
	}
	if err := j.Settle(ctx); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if gen := state(); gen != 1 {
		t.Fatalf("after repairing gen 1 hm_state holds gen %d", gen)
	}

	j = journal.New(&refusing{JetStream: js, refuse: 1}, l)
	if _, err := j.Append(ctx, subj, key, tr(2, event.Down)); err != nil { // refused
		t.Fatal(err)
	}
	if _, err := j.Append(ctx, subj, key, tr(3, event.Up)); err != nil { // stored
		t.Fatal(err)
	}
	if err := j.Settle(ctx); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if gen := state(); gen != 3 {
		t.Fatalf("a failed copy of gen 2 before a stored gen 3: hm_state holds gen %d, want 3", gen)
	}
}
