package aggregator_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Documentation addresses; nothing is probed (results are published by the test).
const seed = `
vips:
  - addr: 192.0.2.1
    services:
      - {port: 80, proto: tcp, backends: [{ip: 198.51.100.1, port: 8080, weight: 7}, {ip: 198.51.100.2, port: 8080}]}
`

func configText(agent string) string {
	return fmt.Sprintf(`
global:
  virtual-address: {actioner: Blank}
  virtual-server: {method: tcp, interval: 1s, down-retry: 999999, up-retry: 999999}
bus:
  leader-ttl: 1s
dpvs-agent:
  addr: %s
  list-interval: 100ms
`, agent)
}

type instance struct {
	cancel context.CancelFunc
	done   chan error
	http   string
}

func (i *instance) stop() {
	if i.done == nil {
		return
	}
	i.cancel()
	<-i.done
	i.done = nil
}

type env struct {
	t      *testing.T
	s      *natstest.Server
	js     jetstream.JetStream
	layout *bus.Layout
	agent  *agenttest.Agent
	conf   string
	seq    uint64
}

func newEnv(t *testing.T) *env {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	a, url := agenttest.NewServer(t)
	sd, err := agenttest.ParseSeed([]byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Seed(sd); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "healthcheck.conf")
	if err := os.WriteFile(conf, []byte(configText(url)), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{LeaderTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, s: s, js: js, layout: l, agent: a, conf: conf}
}

func (e *env) start(id string, reload chan struct{}) *instance {
	ctx, cancel := context.WithCancel(context.Background())
	inst := &instance{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan string, 1)
	nc := e.s.Connect()
	go func() {
		inst.done <- aggregator.Run(ctx, aggregator.Options{Conn: nc, ID: id, ConfigFile: e.conf, Reload: reload,
			HTTPAddr: "127.0.0.1:0", CheckpointEvery: 100 * time.Millisecond, Log: zerolog.Nop(),
			Ready: func(addr string) { ready <- addr }})
	}()
	select {
	case inst.http = <-ready:
	case err := <-inst.done:
		e.t.Fatalf("aggregator %s: %v", id, err)
	}
	e.t.Cleanup(inst.stop)
	return inst
}

func (e *env) holder() string {
	en, err := e.layout.Leader.Get(context.Background(), subject.KeyLeader)
	if err != nil {
		return ""
	}
	return string(en.Value())
}

func (e *env) targets() []string {
	var out []string
	keys, err := e.layout.Targets.ListKeys(context.Background())
	if err != nil {
		return nil
	}
	for k := range keys.Keys() {
		out = append(out, k)
	}
	return out
}

func (e *env) publishAll(st event.State) {
	e.t.Helper()
	for _, tok := range e.targets() {
		tid, err := subject.ParseTargetToken(tok)
		if err != nil {
			e.t.Fatal(err)
		}
		e.seq++
		r := &event.ProbeResult{V: 1, Target: tok, Observer: "p1", Seq: e.seq, TS: time.Now().UnixNano(), State: st, Reason: event.ReasonL4OK}
		if _, err := bus.Publish(context.Background(), e.js, e.layout.Space.Result(tid, "p1"), r); err != nil {
			e.t.Fatal(err)
		}
	}
}

// transitions returns "term kind object to" for every transition stored.
func (e *env) transitions() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, e.layout.Space.StreamEvents(), jetstream.OrderedConsumerConfig{FilterSubjects: []string{e.layout.Space.EventsAll()}})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for {
		b, err := c.FetchNoWait(100)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			var tr event.Transition
			if err := event.Unmarshal(m.Data(), &tr); err != nil {
				e.t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s %s %s>%s", tr.Aggregator, tr.Object, tr.From, tr.To))
		}
		if n == 0 {
			return out
		}
	}
}

func TestAggregator_one_active_and_takeover(t *testing.T) {
	e := newEnv(t)
	a := e.start("agg-a", nil)
	wait.For(t, 5*time.Second, "agg-a active", func() bool { return e.holder() == "agg-a" })
	e.start("agg-b", nil)
	wait.For(t, 5*time.Second, "targets written", func() bool { return len(e.targets()) == 2 })

	e.publishAll(event.Up)
	wait.For(t, 5*time.Second, "4 up transitions", func() bool { return len(e.transitions()) == 4 })
	for _, tr := range e.transitions() {
		if !strings.HasPrefix(tr, "agg-a ") {
			t.Fatalf("transition from the standby: %s", tr)
		}
	}
	a.stop()
	start := time.Now()
	wait.For(t, 3*time.Second, "agg-b active", func() bool { return e.holder() == "agg-b" })
	t.Logf("takeover after %v", time.Since(start))
	// agg-b must have restored and resumed: new results make exactly the
	// down transitions, by agg-b, with no repeat of the up ones.
	wait.For(t, 5*time.Second, "agg-b serving status", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rep, err := aggregator.Status(ctx, e.s.Connect(), subject.Space{})
		return err == nil && rep.Info != nil && rep.Info.ID == "agg-b"
	})
	e.publishAll(event.Down)
	wait.For(t, 5*time.Second, "8 transitions", func() bool { return len(e.transitions()) >= 8 })
	if wait.Until(500*time.Millisecond, func() bool { return len(e.transitions()) > 8 }) {
		t.Fatalf("extra transitions:\n%s", strings.Join(e.transitions(), "\n"))
	}
	got := e.transitions()
	for _, tr := range got[4:] {
		if !strings.HasPrefix(tr, "agg-b ") || !strings.HasSuffix(tr, ">down") {
			t.Fatalf("after takeover:\n%s", strings.Join(got, "\n"))
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAggregator_http_reload_and_audit(t *testing.T) {
	e := newEnv(t)
	reload := make(chan struct{}, 1)
	a := e.start("agg-a", reload)
	wait.For(t, 5*time.Second, "targets written", func() bool { return len(e.targets()) == 2 })
	e.publishAll(event.Up)
	wait.For(t, 5*time.Second, "transitions", func() bool { return len(e.transitions()) == 4 })

	code, body := httpGet(t, "http://"+a.http+"/status")
	if code != 200 || !strings.Contains(body, "192.0.2.1") || !strings.Contains(body, "198.51.100.1:8080") || !strings.Contains(body, "Healthy") {
		t.Fatalf("/status %d:\n%s", code, body)
	}
	if code, body := httpGet(t, "http://"+a.http+"/status?format=json"); code != 200 || !strings.Contains(body, `"tree"`) {
		t.Fatalf("/status json %d: %s", code, body)
	}
	if code, body := httpGet(t, "http://"+a.http+"/conf"); code != 200 || !strings.Contains(body, "# Check Method Annotations") {
		t.Fatalf("/conf %d: %s", code, body)
	}
	if code, body := httpGet(t, "http://"+a.http+"/metrics"); code != 200 || !strings.Contains(body, "healthmesh_aggregator_results_consumed_total 2") {
		t.Fatalf("/metrics %d: %s", code, body)
	}

	// A broken file is rejected: the running config stays, the audit says so.
	if err := os.WriteFile(e.conf, []byte("global: [this is not a mapping"), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	rec := waitAudit(t, e, "config-reload")
	if rec.OK || rec.Error == "" {
		t.Fatalf("bad reload audit: %+v", rec)
	}
	if code, body := httpGet(t, "http://"+a.http+"/conf/check"); !strings.Contains(body, "INVALID") {
		t.Fatalf("/conf/check %d: %s", code, body)
	}
	if code, body := httpGet(t, "http://"+a.http+"/conf"); code != 200 || !strings.Contains(body, "virtual-server") {
		t.Fatalf("/conf after a bad reload %d: %s", code, body)
	}
	code, body = httpGet(t, "http://"+a.http+"/status")
	if code != 200 || !strings.Contains(body, "Healthy") {
		t.Fatalf("state lost after a bad reload: %d\n%s", code, body)
	}
}

func waitAudit(t *testing.T, e *env, verb string) event.AuditRecord {
	t.Helper()
	var rec event.AuditRecord
	wait.For(t, 5*time.Second, "audit "+verb, func() bool {
		m, err := e.layout.Events.GetLastMsgForSubject(context.Background(), e.layout.Space.Audit(verb))
		return err == nil && event.Unmarshal(m.Data, &rec) == nil
	})
	return rec
}
