package inventory_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/inventory"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Documentation addresses: nothing is probed in these tests.
const seed = `
vips:
  - addr: 192.0.2.1
    services:
      - {port: 80, proto: tcp, backends: [{ip: 198.51.100.1, port: 8080, weight: 10}, {ip: 198.51.100.2, port: 8080, inhibited: true, weight: 0}]}
      - {port: 443, proto: udp, quic: true, backends: [{ip: 198.51.100.3, port: 443}]}
      - {port: 53, proto: udp, backends: [{ip: 198.51.100.4, port: 53}]}
  - addr: 192.0.2.2
    services:
      - {port: 80, proto: tcp, backends: [{ip: 198.51.100.1, port: 8080}]}
`

const conf = `
global:
  virtual-server:
    method: auto
    interval: 2s
virtual-addresses:
  192.0.2.1:
    down-policy: 1
    actioner: Blank
virtual-servers:
  192.0.2.1-UDP-443:
    method: http
services:
  192.0.2.9-TCP-25:
    backends:
      - {addr: 198.51.100.9}
`

func parse(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, _, err := config.Options{CheckFile: config.NoFileCheck}.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func agentList(t *testing.T) (*agenttest.Agent, *dpvsagent.Client, []dpvsagent.VirtualServer) {
	t.Helper()
	s, err := agenttest.ParseSeed([]byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	a, url := agenttest.NewServer(t)
	if err := a.Seed(s); err != nil {
		t.Fatal(err)
	}
	c, err := dpvsagent.New(url)
	if err != nil {
		t.Fatal(err)
	}
	vss, err := c.ListVS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return a, c, vss
}

func vs(s string) subject.VSID {
	id, err := subject.ParseEndpoint(s)
	if err != nil {
		panic(err)
	}
	return id
}

func TestBuild_from_agent_and_static_services(t *testing.T) {
	_, _, vss := agentList(t)
	d, problems := inventory.Build(parse(t, conf), vss)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	if len(d.Inventory.VSs) != 5 {
		t.Fatalf("VSs: %d, want 5 (4 from the agent, 1 static)", len(d.Inventory.VSs))
	}
	specs := map[string]int{}
	for i, s := range d.Inventory.VSs {
		specs[s.ID.String()] = i
	}
	quic := d.Inventory.VSs[specs["192.0.2.1-UDP-443"]]
	if !quic.Unchecked || quic.UncheckedReason == "" {
		t.Fatalf("QUIC service checked by http must be unchecked: %+v", quic)
	}
	web := d.Inventory.VSs[specs["192.0.2.1-TCP-80"]]
	if web.Unchecked || len(web.Backends) != 2 || web.Backends[1].Weight != 0 || !web.Backends[1].Inhibited || web.Backends[0].Version == "" {
		t.Fatalf("web VS: %+v", web)
	}
	// 198.51.100.1:8080 is checked the same way from both VIPs: one target.
	shared := d.Targets[web.Backends[0].Target]
	if len(shared.Def.UsedBy) != 2 || shared.Def.Method != "tcp" || shared.Params.Interval != 2*time.Second || shared.Params.UpRetry != 1 {
		t.Fatalf("shared target: %+v", shared)
	}
	// Silence shorter than a reshard (member TTL 3 s + (retry 1 + 2) intervals
	// of 2 s) is no evidence.
	if got := shared.Params.StaleWindow(); got != 3*time.Second+3*2*time.Second {
		t.Fatalf("stale window %v, want the member TTL + 3 intervals (9s)", got)
	}
	dns := d.Inventory.VSs[specs["192.0.2.1-UDP-53"]]
	if got := d.Targets[dns.Backends[0].Target].Def.Method; got != "udpping" {
		t.Fatalf("auto on UDP resolved to %q, want udpping", got)
	}
	static := d.Inventory.VSs[specs["192.0.2.9-TCP-25"]]
	if len(static.Backends) != 1 || static.Backends[0].ID.Port != 25 || static.Backends[0].Weight != config.DefaultServiceWeight {
		t.Fatalf("static service: %+v", static)
	}
	// Targets: web(1, shared) + web(2) + dns + smtp = 4.
	if len(d.Targets) != 4 {
		t.Fatalf("targets: %d, want 4", len(d.Targets))
	}
	for _, va := range d.Inventory.VAs {
		if va.VIP == netip.MustParseAddr("192.0.2.1") && (va.DownPolicy != 1 || va.Action.Actioner != "Blank") {
			t.Fatalf("VA 192.0.2.1: %+v", va)
		}
	}
}

func TestBuild_timing_change_keeps_target_identity(t *testing.T) {
	_, _, vss := agentList(t)
	a, _ := inventory.Build(parse(t, conf), vss)
	b, _ := inventory.Build(parse(t, conf+"\n"), vss)
	slower := parse(t, `
global:
  virtual-server: {method: auto, interval: 9s, down-retry: 3}
`)
	c, _ := inventory.Build(slower, vss)
	for id := range a.Targets {
		if _, ok := b.Targets[id]; !ok {
			t.Fatalf("target %s lost on an identical reload", id)
		}
	}
	id := a.Inventory.VSs[0].Backends[0].Target // 192.0.2.1-TCP-80 sorts first
	if ct, ok := c.Targets[id]; !ok || ct.Params.Interval != 9*time.Second || ct.Params.DownRetry != 3 {
		t.Fatalf("interval change must keep the target and update its params: %+v (ok %v)", ct, ok)
	}
}

func TestBuild_dpvs_dest_check_and_proxy_protocol(t *testing.T) {
	cfg := parse(t, "")
	rs := []dpvsagent.RealServerExpand{{Spec: dpvsagent.RealServer{IP: "198.51.100.1", Port: 80, Weight: 1}}}
	vss := []dpvsagent.VirtualServer{
		{Addr: "192.0.2.1", Port: 80, Proto: 6, Version: "1", DestCheck: []string{"passive"}, RSs: dpvsagent.RealServerList{Items: rs}},
		{Addr: "192.0.2.1", Port: 81, Proto: 6, Version: "1", ProxyProto: 2, RSs: dpvsagent.RealServerList{Items: rs}},
	}
	d, problems := inventory.Build(cfg, vss)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	if !d.Inventory.VSs[0].Unchecked {
		t.Fatalf("passive dest-check must leave the VS unchecked: %+v", d.Inventory.VSs[0])
	}
	tg := d.Targets[d.Inventory.VSs[1].Backends[0].Target]
	if tg.Def.Params["proxy-protocol"] != "v2" {
		t.Fatalf("ProxyProto 2 must add proxy-protocol v2: %+v", tg.Def.Params)
	}
}

func TestRun_bad_agent_answers_keep_the_inventory_and_only_changes_are_sent(t *testing.T) {
	a, client, _ := agentList(t)
	cfg := parse(t, conf)
	out := make(chan engine.Desired, 1)
	reg := prometheus.NewRegistry()
	m := inventory.NewMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		inventory.Run(ctx, inventory.Options{Config: func() *config.Config { return cfg }, Agent: client,
			ListInterval: 30 * time.Millisecond, Out: out, Metrics: m, Log: zerolog.Nop()})
	}()
	defer func() { cancel(); <-done }()
	first := <-out
	if len(first.Inventory.VSs) != 5 {
		t.Fatalf("first inventory: %d VSs", len(first.Inventory.VSs))
	}
	// Listings that change nothing are not handed to the engine again.
	wait.For(t, 5*time.Second, "two unchanged listings", func() bool { return testutil.ToFloat64(m.Unchanged) >= 2 })
	noneSent := func(when string) {
		t.Helper()
		select {
		case d := <-out:
			t.Fatalf("%s: an inventory of %d VSs was sent again though nothing changed", when, len(d.Inventory.VSs))
		default:
		}
	}
	noneSent("steady listings")
	for _, f := range []agenttest.Fault{
		{PathPrefix: "/v2/vs", Status: 500, Count: 2},
		{PathPrefix: "/v2/vs", EmptyBody: true, Count: 2},
		{PathPrefix: "/v2/vs", Status204: true, Count: 2},
	} {
		if err := a.AddFault(f); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 5*time.Second, "six failed listings", func() bool { return testutil.ToFloat64(m.ListErrors) >= 6 })
	// The last good listing is kept: no inventory, let alone a shrunk one.
	wait.For(t, 5*time.Second, "the faults used up", func() bool { return len(a.Faults()) == 0 })
	noneSent("bad agent answers")
	// A real change is sent.
	var vs subject.VSID
	for _, s := range first.Inventory.VSs {
		if s.ID.String() == "192.0.2.2-TCP-80" {
			vs = s.ID
		}
	}
	if err := client.PutRS(context.Background(), vs, []dpvsagent.RealServer{{IP: "198.51.100.7", Port: 8080, Weight: 5}}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-out:
		n := 0
		for _, s := range d.Inventory.VSs {
			if s.ID == vs {
				n = len(s.Backends)
			}
		}
		if len(d.Inventory.VSs) != 5 || n != 2 {
			t.Fatalf("after adding a backend: %d VSs, %d backends in %s; want 5 and 2", len(d.Inventory.VSs), n, vs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no inventory sent after a backend was added")
	}
	// A VS whose backends all went is judged Down only when a second
	// inventory in a row lists it empty: that inventory is sent twice, then
	// no more.
	// (POST replaces the list; a DELETE stays in the agent's listing.)
	if err := client.PostRS(context.Background(), vs, nil); err != nil {
		t.Fatal(err)
	}
	for i := range topology.EmptyInventories {
		select {
		case d := <-out:
			for _, s := range d.Inventory.VSs {
				if s.ID == vs && len(s.Backends) != 0 {
					t.Fatalf("inventory %d after the backends were deleted: %s has %d", i+1, vs, len(s.Backends))
				}
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("inventory %d of %d with %s empty not sent", i+1, topology.EmptyInventories, vs)
		}
	}
	before := testutil.ToFloat64(m.Unchanged)
	wait.For(t, 5*time.Second, "two more unchanged listings", func() bool { return testutil.ToFloat64(m.Unchanged) >= before+2 })
	noneSent("the empty VS was judged")
}
