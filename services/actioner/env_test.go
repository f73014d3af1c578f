package actioner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/actioner"
	"github.com/healthmesh/healthmesh/services/actioner/internal/delivery"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testNode = "lb1"

// The VS the tests act on. TEST-NET addresses: they only ever appear in
// request bodies to the emulator on loopback, never as a destination.
var testVS = subject.VSID{Addr: netip.MustParseAddr("192.0.2.1"), Proto: subject.TCP, Port: 80}

// rip is the i-th backend of testVS: 192.0.2.(10+i):8080.
func rip(i int) subject.BackendID {
	return subject.BackendID{Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), Proto: subject.TCP, Port: 8080}
}

var backendUpdate = &event.ActionSpec{Actioner: "BackendUpdate"}

// env is one test's world: an embedded NATS with the healthmesh layout and
// an emulated dpvs-agent serving testVS with n backends of weight 100.
type env struct {
	t        *testing.T
	srv      *natstest.Server
	nc       *nats.Conn
	js       jetstream.JetStream
	layout   *bus.Layout
	agent    *agenttest.Agent
	agentURL string
}

func newEnv(t *testing.T, backends int, faults ...agenttest.Fault) *env {
	t.Helper()
	e := &env{t: t, srv: natstest.RunServer(t)}
	e.nc, e.js = e.srv.JetStream()
	var err error
	if e.layout, err = bus.Ensure(testCtx(t), e.js, subject.Space{}, bus.Settings{}); err != nil {
		t.Fatal(err)
	}
	e.agent, e.agentURL = agenttest.NewServer(t, agenttest.WithFaults(faults...))
	if backends > 0 {
		svc := agenttest.SeedService{Port: testVS.Port, Proto: "tcp"}
		for i := range backends {
			svc.Backends = append(svc.Backends, agenttest.SeedBackend{IP: rip(i).Addr.String(), Port: rip(i).Port})
		}
		if err := e.agent.Seed(agenttest.Seed{VIPs: []agenttest.SeedVIP{{Addr: testVS.Addr.String(), Services: []agenttest.SeedService{svc}}}}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// options are the test defaults: fast retries, HTTP on loopback.
func (e *env) options() actioner.Options {
	return actioner.Options{
		Conn:      e.srv.Connect(),
		Node:      testNode,
		AgentAddr: e.agentURL,
		HTTPAddr:  "127.0.0.1:0",
		Log:       zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.WarnLevel),
		Retry:     []time.Duration{50 * time.Millisecond},
		AckWait:   2 * time.Second,
		// Periodic re-assertion would race the redeliveries these tests
		// count; the drift tests set a short action-sync-time per spec.
		VSSyncTime: time.Hour,
		VASyncTime: time.Hour,
	}
}

// running is one Run in the background.
type running struct {
	httpAddr string
	cancel   context.CancelFunc
	done     chan error // receives Run's result, then is closed
}

// start runs Run with o until stop (or the test's end) and waits for it to
// be ready.
func (e *env) start(o actioner.Options) *running {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	return e.startCtx(ctx, cancel, o)
}

func (e *env) startCtx(ctx context.Context, cancel context.CancelFunc, o actioner.Options) *running {
	e.t.Helper()
	r := &running{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	o.Ready = func(addr string) { ready <- addr }
	go func() {
		r.done <- actioner.Run(ctx, o)
		close(r.done)
	}()
	e.t.Cleanup(func() { r.stop(e.t) })
	select {
	case r.httpAddr = <-ready:
	case err := <-r.done:
		e.t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		e.t.Fatal("Run not ready after 10s")
	}
	return r
}

// stop cancels Run and waits for it.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	r.wait(t)
}

// wait waits for Run to return (by itself when its context was cancelled
// from inside) and checks that it returned nil.
func (r *running) wait(t *testing.T) {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
	}
}

// metric scrapes one sample ("name{labels}") from Run's /metrics; 0 when
// absent.
func (r *running) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + r.httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("sample %s: %v", sample, err)
			}
			return f
		}
	}
	return 0
}

// backendEvent is the transition the aggregator would publish for
// backend i of testVS going to state to.
func backendEvent(i int, to event.State, gen uint64, version string, spec *event.ActionSpec) *event.Transition {
	be := rip(i)
	t := &event.Transition{
		V: event.Version, Kind: event.KindBackend, Object: be.String(), VS: testVS.String(), VA: testVS.Addr.String(),
		To: to, Reason: event.ReasonL4CON, Gen: gen, TS: time.Now().UnixNano(), Action: spec,
	}
	if to == event.Unknown {
		return t
	}
	t.Apply = &event.BackendApply{
		VIP: testVS.Addr.String(), VPort: testVS.Port, Proto: testVS.Proto.String(),
		Addr: be.Addr.String(), Port: be.Port, UserWeight: 100, Weight: 100, Version: version,
	}
	if to == event.Down {
		t.Apply.Weight, t.Apply.Inhibited = 0, true
	}
	return t
}

func vaEvent(va netip.Addr, to event.State, gen uint64, spec *event.ActionSpec) *event.Transition {
	return &event.Transition{
		V: event.Version, Kind: event.KindVA, Object: va.String(), VA: va.String(),
		To: to, Reason: event.ReasonAggr, Gen: gen, TS: time.Now().UnixNano(), Action: spec,
	}
}

// where returns a transition's subject and hm_state key.
func (e *env) where(tr *event.Transition) (string, string) {
	e.t.Helper()
	sp := e.layout.Space
	if tr.Kind == event.KindVA {
		va := netip.MustParseAddr(tr.Object)
		return sp.EventVA(va), subject.KeyVAState(va)
	}
	vs, err := subject.ParseEndpoint(tr.VS)
	if err != nil {
		e.t.Fatal(err)
	}
	be, err := subject.ParseEndpoint(tr.Object)
	if err != nil {
		e.t.Fatal(err)
	}
	return sp.EventBackend(vs, be), subject.KeyBackendState(vs, be)
}

// publish does what the aggregator's journal does: the event into
// HM_EVENTS, then the same transition into hm_state. It returns the
// event's stream sequence.
func (e *env) publish(tr *event.Transition) uint64 {
	e.t.Helper()
	subj, key := e.where(tr)
	ack, err := bus.Publish(testCtx(e.t), e.js, subj, tr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.putState(key, tr)
	return ack.Sequence
}

// publishTry publishes like publish but reports failure instead of failing
// the test (for use while NATS comes back).
func (e *env) publishTry(tr *event.Transition) bool {
	subj, key := e.where(tr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := bus.Publish(ctx, e.js, subj, tr); err != nil {
		return false
	}
	data, err := event.Marshal(tr)
	if err != nil {
		e.t.Fatal(err)
	}
	_, err = e.layout.State.Put(ctx, key, data)
	return err == nil
}

// publishBurst publishes all events at once (asynchronously, as a burst
// from the aggregator would arrive), then their hm_state entries.
func (e *env) publishBurst(trs []*event.Transition) {
	e.t.Helper()
	futures := make([]jetstream.PubAckFuture, len(trs))
	for i, tr := range trs {
		subj, _ := e.where(tr)
		f, err := bus.PublishAsync(e.js, subj, tr)
		if err != nil {
			e.t.Fatal(err)
		}
		futures[i] = f
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			e.t.Fatal(err)
		case <-time.After(10 * time.Second):
			e.t.Fatal("publish not acknowledged")
		}
	}
	for _, tr := range trs {
		_, key := e.where(tr)
		e.putState(key, tr)
	}
}

func (e *env) putState(key string, tr *event.Transition) {
	e.t.Helper()
	data, err := event.Marshal(tr)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.layout.State.Put(testCtx(e.t), key, data); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) version() string {
	e.t.Helper()
	s := e.agent.State().Service(dpvsagent.PathID(testVS))
	if s == nil {
		e.t.Fatalf("%s not in the emulator", testVS)
	}
	return s.Version
}

// backendState returns backend i of testVS as the dataplane has it.
func (e *env) backendState(i int) agenttest.BackendState {
	e.t.Helper()
	s := e.agent.State().Service(dpvsagent.PathID(testVS))
	if s == nil {
		e.t.Fatalf("%s not in the emulator", testVS)
	}
	b := s.Backend(rip(i).Addr.String(), rip(i).Port)
	if b == nil {
		e.t.Fatalf("backend %d not in the emulator", i)
	}
	return *b
}

// healthCall is one recorded PUT …/rs/health with its decoded body.
type healthCall struct {
	Status int
	Query  string
	Items  []struct {
		IP        string `json:"ip"`
		Port      uint16 `json:"port"`
		Weight    uint16 `json:"weight"`
		Inhibited bool   `json:"inhibited"`
	}
}

func (e *env) healthCalls() []healthCall {
	e.t.Helper()
	var out []healthCall
	for _, c := range e.agent.Calls() {
		if c.Method != http.MethodPut || !strings.HasSuffix(c.Path, "/rs/health") {
			continue
		}
		hc := healthCall{Status: c.Status, Query: c.Query}
		if err := json.Unmarshal(c.Body, &hc); err != nil {
			e.t.Fatalf("health call body %s: %v", c.Body, err)
		}
		out = append(out, hc)
	}
	return out
}

// consumerInfo returns the node's durable consumer state.
func (e *env) consumerInfo() *jetstream.ConsumerInfo {
	e.t.Helper()
	c, err := e.layout.Events.Consumer(testCtx(e.t), delivery.Durable(testNode))
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := c.Info(testCtx(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// settled waits until the consumer has nothing pending or unacknowledged.
func (e *env) settled() {
	e.t.Helper()
	wait.For(e.t, 10*time.Second, "every event acknowledged", func() bool {
		info := e.consumerInfo()
		return info.NumAckPending == 0 && info.NumPending == 0
	})
}

// results collects every ActionResult published (core subscription on
// hm.action.>, which sees what is stored in HM_EVENTS).
type results struct {
	mu   sync.Mutex
	subs []string
	all  []event.ActionResult
}

func (e *env) results() *results {
	e.t.Helper()
	r := &results{}
	nc := e.srv.Connect()
	sub, err := nc.Subscribe(e.layout.Space.ActionsAll(), func(m *nats.Msg) {
		var ar event.ActionResult
		if err := event.Unmarshal(m.Data, &ar); err != nil {
			e.t.Errorf("action result on %s: %v", m.Subject, err)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.subs = append(r.subs, m.Subject)
		r.all = append(r.all, ar)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

func (r *results) get() ([]string, []event.ActionResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.subs...), append([]event.ActionResult(nil), r.all...)
}

// count returns how many results match f.
func (r *results) count(f func(event.ActionResult) bool) int {
	_, all := r.get()
	n := 0
	for _, a := range all {
		if f(a) {
			n++
		}
	}
	return n
}

func isOp(op string, ok bool) func(event.ActionResult) bool {
	return func(a event.ActionResult) bool { return a.Op == op && a.OK == ok }
}
