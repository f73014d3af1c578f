package actioner_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/services/actioner"
	"github.com/healthmesh/healthmesh/services/actioner/internal/delivery"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestRun_backend_events_set_health(t *testing.T) {
	tests := []struct {
		name          string
		to            event.State
		wantWeight    uint16
		wantInhibited bool
	}{
		{name: "down_inhibits_with_weight_0", to: event.Down, wantWeight: 0, wantInhibited: true},
		{name: "up_restores_user_weight", to: event.Up, wantWeight: 100, wantInhibited: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 2)
			res := e.results()
			r := e.start(e.options())
			if tc.to == event.Up {
				// Start from an inhibited backend so "up" has something to undo.
				c, _ := dpvsagent.New(e.agentURL)
				if err := c.PutRS(testCtx(t), testVS, []dpvsagent.RealServer{{IP: rip(0).Addr.String(), Port: rip(0).Port, Weight: 100, Inhibited: dpvsagent.Bool(true)}}); err != nil {
					t.Fatal(err)
				}
				e.agent.ResetCalls()
			}
			seq := e.publish(backendEvent(0, tc.to, 1, e.version(), backendUpdate))
			wait.For(t, 30*time.Second, "one APPLY result", func() bool { return res.count(isOp("APPLY", true)) == 1 })
			e.settled()

			calls := e.healthCalls()
			if len(calls) != 1 || calls[0].Status != http.StatusOK || len(calls[0].Items) != 1 {
				t.Fatalf("health calls = %+v, want one 200 with one item", calls)
			}
			it := calls[0].Items[0]
			if it.IP != rip(0).Addr.String() || it.Port != rip(0).Port || it.Weight != tc.wantWeight || it.Inhibited != tc.wantInhibited {
				t.Errorf("item = %+v, want %s:%d weight %d inhibited %v", it, rip(0).Addr, rip(0).Port, tc.wantWeight, tc.wantInhibited)
			}
			if b := e.backendState(0); b.Weight != tc.wantWeight || b.Inhibited != tc.wantInhibited {
				t.Errorf("dataplane: weight %d inhibited %v", b.Weight, b.Inhibited)
			}
			if b := e.backendState(1); b.Inhibited || b.HealthUpdates != 0 {
				t.Errorf("the other backend was touched: %+v", b)
			}
			_, all := res.get()
			if all[0].EventSeq != seq || all[0].Items != 1 || all[0].Attempt != 1 {
				t.Errorf("result %+v, want eseq %d, 1 item, attempt 1", all[0], seq)
			}
			if got := r.metric(t, `healthmesh_actioner_actions_total{actioner="BackendUpdate",result="ok"}`); got != 1 {
				t.Errorf("actions_total ok = %v, want 1", got)
			}
		})
	}
}

func TestRun_coalesces_mass_failure_of_one_vs(t *testing.T) {
	const n = 200
	e := newEnv(t, n)
	res := e.results()
	r := e.start(e.options())
	v := e.version()
	trs := make([]*event.Transition, n)
	for i := range n {
		trs[i] = backendEvent(i, event.Down, 1, v, backendUpdate)
	}
	e.publishBurst(trs)

	wait.For(t, 15*time.Second, "all backends inhibited", func() bool {
		s := e.agent.State().Service(dpvsagent.PathID(testVS))
		for _, b := range s.Backends {
			if !b.Inhibited || b.Weight != 0 {
				return false
			}
		}
		return true
	})
	e.settled()
	calls := e.healthCalls()
	items := 0
	for _, c := range calls {
		items += len(c.Items)
	}
	t.Logf("%d events → %d PUT calls", n, len(calls))
	if len(calls) > 5 {
		t.Errorf("%d PUT calls for %d events of one VS, want at most 5", len(calls), n)
	}
	if items != n {
		t.Errorf("PUT calls carried %d items, want %d (each backend once)", items, n)
	}
	if got := res.count(isOp("APPLY", true)); got != len(calls) {
		t.Errorf("%d ok APPLY results for %d calls", got, len(calls))
	}
	if got := r.metric(t, `healthmesh_actioner_events_consumed_total{kind="backend"}`); got != n {
		t.Errorf("events consumed = %v, want %d", got, n)
	}
}

func TestRun_agent_answers(t *testing.T) {
	health := "/v2/vs/" + dpvsagent.PathID(testVS) + "/rs/health"
	tests := []struct {
		name        string
		fault       agenttest.Fault
		wantStatus  []int  // statuses of the health calls, in order
		wantOK      []bool // results, in order
		wantApplied bool
		wantMetric  string // a sample that must be 1
	}{
		{
			name:       "outdated_270_then_success",
			fault:      agenttest.Fault{Method: http.MethodPut, PathPrefix: health, BumpVersion: true, Count: 1},
			wantStatus: []int{270, 200}, wantOK: []bool{true}, wantApplied: true,
			wantMetric: `healthmesh_actioner_actions_total{actioner="BackendUpdate",result="ok"}`,
		},
		{
			name:       "500_retried_until_it_clears",
			fault:      agenttest.Fault{Method: http.MethodPut, PathPrefix: health, Status: 500, Count: 2},
			wantStatus: []int{500, 500, 200}, wantOK: []bool{false, false, true}, wantApplied: true,
			wantMetric: `healthmesh_actioner_actions_total{actioner="BackendUpdate",result="ok"}`,
		},
		{
			name:       "400_is_permanent_acked_and_recorded",
			fault:      agenttest.Fault{Method: http.MethodPut, PathPrefix: health, Status: 400, Body: `"bad request"`, Count: 1},
			wantStatus: []int{400}, wantOK: []bool{false}, wantApplied: false,
			wantMetric: `healthmesh_actioner_actions_total{actioner="BackendUpdate",result="permanent"}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, tc.fault)
			res := e.results()
			r := e.start(e.options())
			e.publish(backendEvent(0, event.Down, 1, e.version(), backendUpdate))
			wait.For(t, 30*time.Second, "the results", func() bool { return res.count(func(event.ActionResult) bool { return true }) == len(tc.wantOK) })
			e.settled()

			var statuses []int
			for _, c := range e.healthCalls() {
				statuses = append(statuses, c.Status)
			}
			if fmt.Sprint(statuses) != fmt.Sprint(tc.wantStatus) {
				t.Errorf("health call statuses %v, want %v", statuses, tc.wantStatus)
			}
			_, all := res.get()
			for i, a := range all {
				if a.OK != tc.wantOK[i] || a.Attempt != i+1 {
					t.Errorf("result %d: ok %v attempt %d (err %q), want ok %v attempt %d", i, a.OK, a.Attempt, a.Error, tc.wantOK[i], i+1)
				}
				if !a.OK && a.Error == "" {
					t.Errorf("result %d: failed without an error", i)
				}
			}
			if b := e.backendState(0); b.Inhibited != tc.wantApplied {
				t.Errorf("inhibited = %v, want %v", b.Inhibited, tc.wantApplied)
			}
			if info := e.consumerInfo(); info.NumAckPending != 0 || info.NumRedelivered != 0 {
				t.Errorf("consumer: %d ack pending, %d redelivered; want the event settled", info.NumAckPending, info.NumRedelivered)
			}
			if got := r.metric(t, tc.wantMetric); got != 1 {
				t.Errorf("%s = %v, want 1", tc.wantMetric, got)
			}
		})
	}
}

// restartable serves an agent on a fixed loopback address that can be shut
// down and brought back, keeping its state.
type restartable struct {
	t     *testing.T
	agent *agenttest.Agent
	addr  string
	mu    sync.Mutex
	srv   *httptest.Server
}

func newRestartable(t *testing.T, agent *agenttest.Agent) *restartable {
	r := &restartable{t: t, agent: agent}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(r.down)
	return r
}

func (r *restartable) serve(ln net.Listener) {
	srv := httptest.NewUnstartedServer(r.agent)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
}

func (r *restartable) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (r *restartable) up() {
	r.t.Helper()
	var ln net.Listener
	wait.For(r.t, 5*time.Second, "the agent's port again", func() bool {
		var err error
		ln, err = net.Listen("tcp", r.addr)
		return err == nil
	})
	r.serve(ln)
}

func TestRun_agent_down_then_reconciled(t *testing.T) {
	e := newEnv(t, 2)
	agent := newRestartable(t, e.agent)
	res := e.results()
	o := e.options()
	o.AgentAddr = agent.addr
	o.Retry = []time.Duration{100 * time.Millisecond}
	e.start(o)
	v := e.version()

	agent.down()
	e.publish(backendEvent(0, event.Down, 1, v, backendUpdate))
	e.publish(backendEvent(1, event.Down, 1, v, backendUpdate))
	wait.For(t, 30*time.Second, "failed attempts while the agent is down", func() bool {
		return res.count(isOp("APPLY", false)) >= 2
	})
	if n := len(e.healthCalls()); n != 0 {
		t.Fatalf("the agent is down but recorded %d calls", n)
	}
	agent.up()
	wait.For(t, 30*time.Second, "both backends inhibited once the agent is back", func() bool {
		return e.backendState(0).Inhibited && e.backendState(1).Inhibited
	})
	e.settled()
	_, all := res.get()
	last := all[len(all)-1]
	if !last.OK || last.Attempt < 2 || last.Error != "" {
		t.Errorf("last result %+v, want a success after retries", last)
	}
	for _, a := range all[:len(all)-1] {
		if a.OK || !strings.Contains(a.Error, "dpvs-agent") {
			t.Errorf("result while down: ok %v err %q, want a dpvs-agent error", a.OK, a.Error)
		}
	}
}

func TestRun_heals_backend_drift_at_sync(t *testing.T) {
	e := newEnv(t, 2)
	res := e.results()
	e.start(e.options())
	spec := &event.ActionSpec{Actioner: "BackendUpdate", SyncTime: int64(200 * time.Millisecond)}
	e.publish(backendEvent(0, event.Down, 1, e.version(), spec))
	e.publish(backendEvent(1, event.Up, 1, e.version(), spec))
	wait.For(t, 30*time.Second, "backend 0 inhibited", func() bool { return e.backendState(0).Inhibited })
	e.settled()

	// An operator re-enables backend 0 by hand (and moves the version).
	c, _ := dpvsagent.New(e.agentURL)
	if err := c.PutRS(testCtx(t), testVS, []dpvsagent.RealServer{{IP: rip(0).Addr.String(), Port: rip(0).Port, Weight: 100, Inhibited: dpvsagent.Bool(false)}}); err != nil {
		t.Fatal(err)
	}
	e.agent.ResetCalls()
	wait.For(t, 30*time.Second, "the sync to inhibit backend 0 again", func() bool {
		return e.backendState(0).Inhibited && res.count(isOp("SYNC", true)) >= 1
	})
	calls := e.healthCalls()
	if len(calls) != 1 || len(calls[0].Items) != 1 || calls[0].Items[0].IP != rip(0).Addr.String() || !calls[0].Items[0].Inhibited {
		t.Fatalf("sync health calls = %+v, want one call re-inhibiting backend 0 only", calls)
	}
	if !strings.Contains(calls[0].Query, "version="+e.version()) {
		t.Errorf("sync used query %q, want the agent's current version %s", calls[0].Query, e.version())
	}
	if b := e.backendState(1); b.Inhibited || b.Weight != 100 {
		t.Errorf("backend 1 = %+v, want untouched and up", b)
	}
}

func TestRun_reasserts_hm_state_at_start(t *testing.T) {
	// A node whose actioner starts after the transitions were published
	// (its durable only sees new events) is brought in step from hm_state.
	e := newEnv(t, 2)
	va := dpvsVA
	e.putState(keyOf(e, backendEvent(0, event.Down, 3, e.version(), backendUpdate)))
	e.putState(keyOf(e, backendEvent(1, event.Up, 2, e.version(), backendUpdate)))
	e.putState(keyOf(e, vaEvent(va, event.Up, 4, dpvsAddrSpec)))
	res := e.results()
	e.start(e.options())
	wait.For(t, 30*time.Second, "backend 0 inhibited and the VIP added", func() bool {
		return e.backendState(0).Inhibited && len(e.agent.State().Devices["dpdk0"]) == 1
	})
	wait.For(t, 30*time.Second, "two SYNC results", func() bool { return res.count(isOp("SYNC", true)) == 2 })
	calls := e.healthCalls()
	if len(calls) != 1 || len(calls[0].Items) != 1 {
		t.Errorf("health calls %+v, want one for backend 0 only (backend 1 is already as desired)", calls)
	}
}

// keyOf is putState's arguments for tr.
func keyOf(e *env, tr *event.Transition) (string, *event.Transition) {
	_, key := e.where(tr)
	return key, tr
}

func TestRun_old_redelivery_never_overrides_newer_event(t *testing.T) {
	health := "/v2/vs/" + dpvsagent.PathID(testVS) + "/rs/health"
	for _, restart := range []bool{false, true} {
		name := "same_process"
		if restart {
			name = "after_restart"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, 1, agenttest.Fault{Method: http.MethodPut, PathPrefix: health, Status: 500, Count: 1})
			o := e.options()
			o.Retry = []time.Duration{1500 * time.Millisecond} // the old event comes back after the new one
			r := e.start(o)
			v := e.version()

			e.publish(backendEvent(0, event.Down, 1, v, backendUpdate)) // fails once: handed back with a delay
			wait.For(t, 30*time.Second, "the failed PUT", func() bool { return len(e.healthCalls()) == 1 })
			e.publish(backendEvent(0, event.Up, 2, v, backendUpdate))
			wait.For(t, 30*time.Second, "the newer event applied", func() bool { return len(e.healthCalls()) == 2 })
			if restart {
				r.stop(t)
				r = e.start(o)
			}
			wait.For(t, 30*time.Second, "the old event skipped as stale", func() bool {
				return r.metric(t, `healthmesh_actioner_events_skipped_total{reason="stale"}`) == 1
			})
			e.settled()
			calls := e.healthCalls()
			if len(calls) != 2 || calls[1].Status != 200 || calls[1].Items[0].Inhibited {
				t.Fatalf("health calls %+v, want the failed down then the up, nothing after", calls)
			}
			if b := e.backendState(0); b.Inhibited || b.Weight != 100 {
				t.Errorf("backend = %+v, want up (the newer event)", b)
			}
		})
	}
}

func TestRun_skips_event_older_than_hm_state(t *testing.T) {
	// An actioner catching up on a backlog: hm_state already holds a newer
	// generation, so the old event would only replay history.
	e := newEnv(t, 1)
	r := e.start(e.options())
	v := e.version()
	e.putState(keyOf(e, backendEvent(0, event.Up, 2, v, backendUpdate)))
	old := backendEvent(0, event.Down, 1, v, backendUpdate)
	subj, _ := e.where(old)
	wait.For(t, 30*time.Second, "hm_state followed", func() bool {
		return r.metric(t, `healthmesh_actioner_objects{kind="backend"}`) == 1
	})
	if _, err := bus.Publish(testCtx(t), e.js, subj, old); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 30*time.Second, "the old event skipped", func() bool {
		return r.metric(t, `healthmesh_actioner_events_skipped_total{reason="stale"}`) == 1
	})
	e.settled()
	if n := len(e.healthCalls()); n != 0 {
		t.Errorf("%d health calls for an event older than hm_state", n)
	}
}

func TestRun_crash_before_ack_applies_again(t *testing.T) {
	e := newEnv(t, 1)
	res := e.results()
	o := e.options()
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	o.BeforeAck = func() { once.Do(cancel) } // dies after the action, before the ack
	r1 := e.startCtx(ctx, cancel, o)
	seq := e.publish(backendEvent(0, event.Down, 1, e.version(), backendUpdate))
	r1.wait(t)
	if n := len(e.healthCalls()); n != 1 {
		t.Fatalf("%d health calls before the crash, want 1", n)
	}
	if info := e.consumerInfo(); info.NumAckPending+int(info.NumPending) == 0 && info.NumRedelivered == 0 {
		t.Fatal("the event was acknowledged although the actioner stopped before the ack")
	}

	o.BeforeAck = nil
	e.start(o)
	wait.For(t, 30*time.Second, "the event applied again", func() bool { return len(e.healthCalls()) == 2 })
	e.settled()
	calls := e.healthCalls()
	if fmt.Sprint(calls[0].Items) != fmt.Sprint(calls[1].Items) || calls[1].Status != 200 {
		t.Errorf("second call %+v differs from the first %+v", calls[1], calls[0])
	}
	if b := e.backendState(0); !b.Inhibited || b.Weight != 0 {
		t.Errorf("backend = %+v, want inhibited", b)
	}
	wait.For(t, 5*time.Second, "a second APPLY result", func() bool { return res.count(isOp("APPLY", true)) == 2 })
	_, all := res.get()
	if all[1].Attempt != 2 || all[1].EventSeq != seq {
		t.Errorf("second result: attempt %d eseq %d, want 2 and %d", all[1].Attempt, all[1].EventSeq, seq)
	}
}

func TestRun_options_are_checked(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*actioner.Options)
		want string
	}{
		{name: "no_node", mod: func(o *actioner.Options) { o.Node = " " }, want: "node id is required"},
		{name: "bad_prefix", mod: func(o *actioner.Options) { o.Prefix = "hm.x" }, want: `subject prefix "hm.x"`},
		{name: "bad_agent_addr", mod: func(o *actioner.Options) { o.AgentAddr = "ftp://127.0.0.1:1" }, want: `scheme "ftp"`},
		{name: "bad_http_addr", mod: func(o *actioner.Options) { o.HTTPAddr = "127.0.0.1:http-nope" }, want: "http listen 127.0.0.1:http-nope"},
	}
	e := newEnv(t, 0)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := e.options()
			tc.mod(&o)
			err := actioner.Run(testCtx(t), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestRun_recovers_its_consumer(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(t *testing.T, e *env)
	}{
		{name: "consumer_deleted_by_hand", breakIt: func(t *testing.T, e *env) {
			if err := e.layout.Events.DeleteConsumer(testCtx(t), delivery.Durable(testNode)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "nats_restarted", breakIt: func(t *testing.T, e *env) {
			addr := strings.TrimPrefix(e.srv.URL(), "nats://")
			e.srv.Shutdown()
			wait.For(t, 5*time.Second, "the disconnect", func() bool { return !e.nc.IsConnected() })
			natstest.RunServerWith(t, natstest.Options{StoreDir: e.srv.StoreDir, ClientAddr: addr})
			wait.For(t, 30*time.Second, "the reconnect", e.nc.IsConnected)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			o := e.options()
			o.Conn = e.nc
			e.start(o)
			tc.breakIt(t, e)
			// Published while the consumer is gone or NATS is barely back:
			// applied all the same, by the consumer or by the re-assertion
			// from hm_state that follows a re-created consumer.
			wait.For(t, 30*time.Second, "the event published", func() bool {
				return e.publishTry(backendEvent(0, event.Down, 1, e.version(), backendUpdate))
			})
			wait.For(t, 30*time.Second, "the event applied", func() bool { return e.backendState(0).Inhibited })
		})
	}
}

// A first "up" that DPVS listed already (Listed) costs no dpvs-agent call;
// the next transition of the backend is applied as usual.
func TestRun_listed_first_up_makes_no_call(t *testing.T) {
	e := newEnv(t, 2)
	res := e.results()
	r := e.start(e.options())
	listed := backendEvent(0, event.Up, 1, e.version(), backendUpdate)
	listed.Apply.Listed = true
	e.publish(listed)
	wait.For(t, 30*time.Second, "the listed event skipped", func() bool {
		return r.metric(t, `healthmesh_actioner_events_skipped_total{reason="listed"}`) == 1
	})
	e.publish(backendEvent(0, event.Down, 2, e.version(), backendUpdate))
	wait.For(t, 30*time.Second, "one APPLY result", func() bool { return res.count(isOp("APPLY", true)) == 1 })
	e.settled()
	calls := e.healthCalls()
	if len(calls) != 1 || len(calls[0].Items) != 1 || !calls[0].Items[0].Inhibited {
		t.Fatalf("health calls = %+v, want only the drain of the down event", calls)
	}
}
