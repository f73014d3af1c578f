package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Addresses are documentation/loopback strings; nothing is probed here.
var (
	vsID = mustEP("192.0.2.1-TCP-80")
	b1   = mustEP("127.0.0.11-TCP-8080")
	b2   = mustEP("127.0.0.12-TCP-8080")
	t1   = subject.TargetID{Endpoint: b1, Method: "tcp", Hash: subject.HashOf("")}
	t2   = subject.TargetID{Endpoint: b2, Method: "tcp", Hash: subject.HashOf("")}
)

func mustEP(s string) subject.Endpoint {
	e, err := subject.ParseEndpoint(s)
	if err != nil {
		panic(err)
	}
	return e
}

func desired() engine.Desired {
	p := checker.Params{UpRetry: 1, DownRetry: 1, Interval: time.Second}
	def := func(t subject.TargetID) engine.TargetDef {
		return engine.TargetDef{Params: p, Def: event.Target{ID: t.Token(), Addr: t.Addr.String(), Port: t.Port, Proto: "TCP",
			Method: "tcp", Interval: int64(time.Second), Timeout: int64(time.Second), Observers: 1}}
	}
	return engine.Desired{
		Rev:     1,
		Targets: map[string]engine.TargetDef{t1.Token(): def(t1), t2.Token(): def(t2)},
		Inventory: topology.Inventory{
			VSs: []topology.VSSpec{{ID: vsID, Action: event.ActionSpec{Actioner: "BackendUpdate"},
				Backends: []topology.BackendSpec{{ID: b1, Target: t1.Token(), Weight: 100}, {ID: b2, Target: t2.Token(), Weight: 50}}}},
			VAs: []topology.VASpec{{VIP: vsID.Addr, DownPolicy: topology.DownPolicyAllOf, Action: event.ActionSpec{Actioner: "Blank"}}},
		},
	}
}

type harness struct {
	t   *testing.T
	s   *natstest.Server
	js  jetstream.JetStream
	l   *bus.Layout
	seq uint64
}

func newHarness(t *testing.T) *harness { return newHarnessMode(t, bus.ResultsJetStream) }

// newHarnessMode sets the layout up in a bus.results mode.
func newHarnessMode(t *testing.T, results string) *harness {
	s := natstest.RunServer(t)
	// Slow-consumer drops are counted by the engine; nats.go's default
	// handler would print each one.
	_, js := s.JetStream(nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{Results: results})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, s: s, js: js, l: l}
}

// result publishes one result of observer p1.
func (h *harness) result(tid subject.TargetID, st event.State) {
	h.t.Helper()
	h.seq++
	r := &event.ProbeResult{V: 1, Target: tid.Token(), Observer: "p1", Seq: h.seq, TS: time.Now().UnixNano(), State: st, Reason: event.ReasonL4OK}
	if st == event.Down {
		r.Reason = event.ReasonL4CON
	}
	subj := h.l.Space.Result(tid, "p1")
	if h.l.Results == nil { // results: core
		b, err := event.Marshal(r)
		if err == nil {
			err = h.js.Conn().Publish(subj, b)
		}
		if err != nil {
			h.t.Fatal(err)
		}
		return
	}
	if _, err := bus.Publish(context.Background(), h.js, subj, r); err != nil {
		h.t.Fatal(err)
	}
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	reqs   chan engine.Request
}

func (h *harness) start(term uint64, o engine.Options) *running {
	ctx, cancel := context.WithCancel(context.Background())
	d := make(chan engine.Desired, 1)
	d <- desired()
	r := &running{cancel: cancel, done: make(chan error, 1), reqs: make(chan engine.Request)}
	o.JS, o.Layout, o.ID, o.Term, o.Desired, o.Requests = h.js, h.l, fmt.Sprintf("agg-%d", term), term, d, r.reqs
	o.Log = zerolog.Nop()
	go func() { r.done <- engine.Run(ctx, o) }()
	h.t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	r.cancel()
	if r.done != nil {
		<-r.done
		r.done = nil
	}
}

// events lists the transitions in HM_EVENTS as "kind object from>to".
func (h *harness) events() []string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.js.OrderedConsumer(ctx, h.l.Space.StreamEvents(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{h.l.Space.EventsAll()}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for {
		b, err := c.FetchNoWait(100)
		if err != nil {
			h.t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			var tr event.Transition
			if err := event.Unmarshal(m.Data(), &tr); err != nil {
				h.t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %s %s>%s", tr.Kind, tr.Object, tr.From, tr.To))
		}
		if n == 0 {
			return out
		}
	}
}

func (h *harness) waitEvents(n int) []string {
	h.t.Helper()
	var got []string
	wait.For(h.t, 10*time.Second, fmt.Sprintf("%d transitions", n), func() bool { got = h.events(); return len(got) >= n })
	return got
}

var wantAll = []string{
	"backend 127.0.0.11-TCP-8080 unknown>up",
	"vs 192.0.2.1-TCP-80 unknown>up",
	"va 192.0.2.1 unknown>up",
	"backend 127.0.0.12-TCP-8080 unknown>up",
	"backend 127.0.0.11-TCP-8080 up>down",
	"backend 127.0.0.12-TCP-8080 up>down",
	"vs 192.0.2.1-TCP-80 up>down",
	"va 192.0.2.1 up>down",
}

func (h *harness) firstHalf() {
	h.result(t1, event.Up)
	h.result(t1, event.Up)
	h.result(t2, event.Up)
	h.result(t2, event.Up)
}

func (h *harness) secondHalf() {
	h.result(t1, event.Down)
	h.result(t1, event.Down)
	h.result(t2, event.Down)
	h.result(t2, event.Down)
}

// finish sends the second half and checks that exactly wantAll was
// journaled, giving a spurious or duplicate event time to show up.
// meta is the marker of the last checkpoint (false: none readable yet).
func (h *harness) meta() (engine.Meta, bool) {
	var m engine.Meta
	e, err := h.l.State.Get(context.Background(), subject.KeyMeta)
	if err != nil || event.Unmarshal(e.Value(), &m) != nil {
		return engine.Meta{}, false
	}
	return m, true
}

func (h *harness) finish(t *testing.T) {
	t.Helper()
	h.secondHalf()
	same(t, h.waitEvents(len(wantAll)), wantAll)
	if wait.Until(time.Second, func() bool { return len(h.events()) > len(wantAll) }) {
		same(t, h.events(), wantAll)
	}
}

func same(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transitions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEngine_results_in_exact_transitions_out(t *testing.T) {
	h := newHarness(t)
	h.start(1, engine.Options{})
	h.firstHalf()
	h.secondHalf()
	same(t, h.waitEvents(len(wantAll)), wantAll)

	// The backend event carries what to apply, the votes and the action.
	m, err := h.l.Events.GetLastMsgForSubject(context.Background(), h.l.Space.EventBackend(vsID, b2))
	if err != nil {
		t.Fatal(err)
	}
	var tr event.Transition
	if err := event.Unmarshal(m.Data, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.Apply == nil || tr.Apply.Weight != 0 || !tr.Apply.Inhibited || tr.Apply.UserWeight != 50 ||
		tr.Action == nil || tr.Action.Actioner != "BackendUpdate" || len(tr.Votes) != 1 || tr.Term != 1 || tr.Reason != event.ReasonL4CON {
		t.Fatalf("backend event: %+v apply %+v action %+v", tr, tr.Apply, tr.Action)
	}
	if m.Header.Get(event.HdrObject) != b2.String() || m.Header.Get(event.HdrTo) != "down" {
		t.Fatalf("headers %v", m.Header)
	}
	// hm_state mirrors the last transition of each object (the copy
	// trails the event).
	var va event.Transition
	wait.For(t, 10*time.Second, "hm_state's copy of the VA's last transition", func() bool {
		e, err := h.l.State.Get(context.Background(), subject.KeyVAState(vsID.Addr))
		return err == nil && event.Unmarshal(e.Value(), &va) == nil && va.Gen == 2
	})
	if va.To != event.Down || va.Action == nil || va.Action.Actioner != "Blank" {
		t.Fatalf("hm_state va: %+v", va)
	}
}

func TestEngine_results_core_mode(t *testing.T) {
	h := newHarnessMode(t, bus.ResultsCore)
	h.start(1, engine.Options{})
	// Core results before the engine subscribed are lost: publish until the
	// first transition shows the subscription is there.
	wait.For(t, 10*time.Second, "the first transition", func() bool {
		h.result(t1, event.Up)
		return len(h.events()) >= 3
	})
	h.result(t2, event.Up)
	h.result(t2, event.Up)
	h.secondHalf()
	same(t, h.waitEvents(len(wantAll)), wantAll)
	// Garbage on a results subject is counted and dropped, not fatal.
	if err := h.js.Conn().Publish(h.l.Space.Result(t1, "p1"), []byte("not msgpack")); err != nil {
		t.Fatal(err)
	}
	h.result(t1, event.Up)
	h.result(t1, event.Up)
	got := h.waitEvents(len(wantAll) + 1)
	if got[len(wantAll)] != "backend 127.0.0.11-TCP-8080 down>up" {
		t.Fatalf("after a malformed result: %v", got[len(wantAll):])
	}
}

func TestEngine_crash_mid_stream_no_duplicate_missing_or_spurious(t *testing.T) {
	h := newHarness(t)
	a := h.start(1, engine.Options{CheckpointEvery: time.Hour, SkipFinalCheckpoint: true})
	h.firstHalf()
	h.waitEvents(4)
	a.stop() // crash: nothing checkpointed, nothing acked

	h.start(2, engine.Options{})
	h.finish(t)
}

func TestEngine_clean_restart_resumes_from_checkpoint(t *testing.T) {
	h := newHarness(t)
	a := h.start(1, engine.Options{CheckpointEvery: 50 * time.Millisecond})
	h.firstHalf()
	h.waitEvents(4)
	wait.For(t, 5*time.Second, "checkpoint of the first results", func() bool {
		m, ok := h.meta()
		return ok && m.Seq >= 4
	})
	a.stop()
	revision := func(key string) uint64 {
		t.Helper()
		e, err := h.l.State.Get(context.Background(), key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return e.Revision()
	}
	snapKeys := []string{"target." + t1.Token(), "target." + t2.Token()}
	var stored []uint64
	for _, k := range snapKeys {
		stored = append(stored, revision(k))
	}

	b := h.start(2, engine.Options{CheckpointEvery: 50 * time.Millisecond})
	// Restored state: the status tree shows the states without new events.
	reply := make(chan engine.Reply, 1)
	b.reqs <- engine.Request{Op: engine.OpStatus, Reply: reply}
	rep := <-reply
	if len(rep.Tree) != 1 || rep.Tree[0].State != event.Up || rep.Tree[0].VSs[0].Backends[1].State != event.Up {
		t.Fatalf("restored tree: %+v", rep.Tree)
	}
	// The new leader's checkpoints do not store the restored targets again:
	// hm_state already holds what they would write.
	wait.For(t, 5*time.Second, "a checkpoint of the second leader", func() bool {
		m, ok := h.meta()
		return ok && m.Term == 2
	})
	for i, k := range snapKeys {
		if r := revision(k); r != stored[i] {
			t.Fatalf("%s rewritten after the restart (revision %d, was %d) though nothing changed", k, r, stored[i])
		}
	}
	h.finish(t)
}

// hm_state as the releases before session 8 wrote it, a target's record
// under a key of its own (rec.target.<t>), restores just the same; the new
// leader folds the records into target.<t> and deletes the old keys.
func TestEngine_restores_the_layout_with_separate_target_records(t *testing.T) {
	h := newHarness(t)
	a := h.start(1, engine.Options{CheckpointEvery: 50 * time.Millisecond})
	h.firstHalf()
	h.waitEvents(4)
	a.stop()
	ctx := context.Background()
	for _, tid := range []subject.TargetID{t1, t2} {
		key := "target." + tid.Token()
		ent, err := h.l.State.Get(ctx, key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		var v map[string]any
		if err := event.Unmarshal(ent.Value(), &v); err != nil || v["rec"] == nil {
			t.Fatalf("%s holds no record (%v): %v", key, err, v)
		}
		rec, _ := event.Marshal(v["rec"])
		delete(v, "rec")
		snap, _ := event.Marshal(v)
		if _, err := h.l.State.Put(ctx, key, snap); err != nil {
			t.Fatal(err)
		}
		if _, err := h.l.State.Put(ctx, "rec."+key, rec); err != nil {
			t.Fatal(err)
		}
	}

	h.start(2, engine.Options{CheckpointEvery: 50 * time.Millisecond})
	wait.For(t, 5*time.Second, "the old record keys deleted and folded into target.<t>", func() bool {
		for _, tid := range []subject.TargetID{t1, t2} {
			if _, err := h.l.State.Get(ctx, "rec.target."+tid.Token()); !errors.Is(err, jetstream.ErrKeyNotFound) {
				return false
			}
			ent, err := h.l.State.Get(ctx, "target."+tid.Token())
			var v struct {
				Rec *topology.TargetRecord `msgpack:"rec"`
			}
			if err != nil || event.Unmarshal(ent.Value(), &v) != nil || v.Rec == nil || v.Rec.State != event.Up {
				return false
			}
		}
		return true
	})
	h.finish(t)
}

func TestEngine_pause_drains_and_resume_restores(t *testing.T) {
	h := newHarness(t)
	r := h.start(1, engine.Options{})
	h.firstHalf()
	h.waitEvents(4)
	ask := func(op engine.Op) engine.Reply {
		reply := make(chan engine.Reply, 1)
		r.reqs <- engine.Request{Op: op, VS: vsID, Backend: b1, Who: "alice", Why: "kernel upgrade", Reply: reply}
		return <-reply
	}
	if rep := ask(engine.OpPause); rep.Err != nil || rep.Events == 0 {
		t.Fatalf("pause: %+v", rep)
	}
	m, err := h.l.Events.GetLastMsgForSubject(context.Background(), h.l.Space.EventBackend(vsID, b1))
	if err != nil {
		t.Fatal(err)
	}
	var tr event.Transition
	if err := event.Unmarshal(m.Data, &tr); err != nil || !tr.Paused || tr.Apply == nil || tr.Apply.Weight != 0 || !tr.Apply.Inhibited {
		t.Fatalf("pause event %+v apply %+v err %v", tr, tr.Apply, err)
	}
	am, err := h.l.Events.GetLastMsgForSubject(context.Background(), h.l.Space.Audit("pause"))
	if err != nil {
		t.Fatal(err)
	}
	var rec event.AuditRecord
	if err := event.Unmarshal(am.Data, &rec); err != nil || rec.Who != "alice" || rec.Why != "kernel upgrade" || !rec.OK {
		t.Fatalf("audit %+v %v", rec, err)
	}
	if rep := ask(engine.OpResume); rep.Err != nil {
		t.Fatalf("resume: %+v", rep)
	}
	m, _ = h.l.Events.GetLastMsgForSubject(context.Background(), h.l.Space.EventBackend(vsID, b1))
	tr = event.Transition{}
	if err := event.Unmarshal(m.Data, &tr); err != nil || tr.Paused || tr.Apply == nil || tr.Apply.Weight != 100 || tr.Apply.Inhibited {
		t.Fatalf("resume event %+v apply %+v", tr, tr.Apply)
	}
	// An unknown backend is a clear error.
	reply := make(chan engine.Reply, 1)
	r.reqs <- engine.Request{Op: engine.OpPause, VS: vsID, Backend: mustEP("127.0.0.99-TCP-1"), Who: "a", Reply: reply}
	if rep := <-reply; rep.Err == nil {
		t.Fatal("pause of an unknown backend succeeded")
	}
}

// A burst (here 40 backends of one VS, all in the first batch) is journaled
// in parallel: every transition exactly once, each object's in order, and
// every backend's before the VS and VA transitions it causes.
func TestEngine_burst_is_journaled_in_parallel_cause_first(t *testing.T) {
	const n = 40
	h := newHarness(t)
	p := checker.Params{Interval: time.Second} // retry 0: one result decides
	d := engine.Desired{Rev: 1, Targets: map[string]engine.TargetDef{}}
	vs := topology.VSSpec{ID: vsID, Action: event.ActionSpec{Actioner: "BackendUpdate"}}
	var tids []subject.TargetID
	for i := range n {
		b := mustEP(fmt.Sprintf("127.0.1.%d-TCP-8080", i+1))
		tid := subject.TargetID{Endpoint: b, Method: "tcp", Hash: subject.HashOf("")}
		tids = append(tids, tid)
		d.Targets[tid.Token()] = engine.TargetDef{Params: p, Def: event.Target{ID: tid.Token(), Addr: b.Addr.String(),
			Port: b.Port, Proto: "TCP", Method: "tcp", Interval: int64(time.Second), Timeout: int64(time.Second), Observers: 1}}
		vs.Backends = append(vs.Backends, topology.BackendSpec{ID: b, Target: tid.Token(), Weight: 1})
	}
	d.Inventory = topology.Inventory{VSs: []topology.VSSpec{vs},
		VAs: []topology.VASpec{{VIP: vsID.Addr, DownPolicy: topology.DownPolicyAllOf, Action: event.ActionSpec{Actioner: "Blank"}}}}
	for _, tid := range tids {
		h.result(tid, event.Up)
	}
	ctx, cancel := context.WithCancel(context.Background())
	desired := make(chan engine.Desired, 1)
	desired <- d
	done := make(chan error, 1)
	go func() {
		done <- engine.Run(ctx, engine.Options{JS: h.js, Layout: h.l, ID: "agg-1", Term: 1, Desired: desired,
			Requests: make(chan engine.Request), Log: zerolog.Nop()})
	}()
	defer func() { cancel(); <-done }()

	got := h.waitEvents(n + 2)
	if len(got) != n+2 {
		t.Fatalf("%d transitions, want %d:\n%s", len(got), n+2, strings.Join(got, "\n"))
	}
	seen := map[string]int{}
	for i, ev := range got {
		seen[ev]++
		switch {
		case strings.HasPrefix(ev, "vs "):
			if i != n || ev != "vs 192.0.2.1-TCP-80 unknown>up" {
				t.Errorf("transition %d is %q, want the VS going up right after the %d backends", i, ev, n)
			}
		case strings.HasPrefix(ev, "va "):
			if i != n+1 || ev != "va 192.0.2.1 unknown>up" {
				t.Errorf("transition %d is %q, want the VA going up last", i, ev)
			}
		case !strings.HasSuffix(ev, " unknown>up"):
			t.Errorf("transition %d is %q, want a backend going up", i, ev)
		}
	}
	for ev, k := range seen {
		if k != 1 {
			t.Errorf("%q journaled %d times", ev, k)
		}
	}
}
