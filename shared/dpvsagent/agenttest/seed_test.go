package agenttest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
)

func TestSeedDefaults(t *testing.T) {
	e := newEnv(t, `
vips:
  - addr: "2001:DB8::1"
    services:
      - port: 53
        backends:
          - {ip: "::ffff:192.0.2.10", port: 53}
`)
	ss := e.agent.State().Service("2001:db8::1-53-tcp")
	if ss == nil {
		t.Fatalf("seeded service missing (proto should default to tcp): %+v", e.agent.State())
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{name: "sched_wrr", ok: ss.SchedName == "wrr"},
		{name: "in_snapshot_with_version", ok: ss.InSnapshot && ss.InDataplane && ss.Version != ""},
		{name: "weight_100", ok: ss.Backends[0].Weight == agenttest.DefaultSeedWeight && ss.Backends[0].UserWeight == 100},
		{name: "mode_fnat", ok: ss.Backends[0].Mode == "FNAT"},
		{name: "not_inhibited", ok: !ss.Backends[0].Inhibited && !ss.Backends[0].SnapshotInhibited},
		{name: "ip_unmapped", ok: ss.Backends[0].IP == "192.0.2.10"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Fatalf("seeded service %+v", ss)
			}
		})
	}
	t.Run("explicit_values", func(t *testing.T) {
		e := newEnv(t, `
vips:
  - addr: 192.0.2.1
    services:
      - {port: 53, proto: UDP, sched: rr, quic: true, synproxy: true, timeout: 5, conn_timeout: 6,
         backends: [{ip: 192.0.2.10, port: 53, weight: 0, inhibited: true, mode: tunnel}]}
devices:
  kni0: ["192.0.2.1/24"]
`)
		b := e.backend("192.0.2.1-53-udp", "192.0.2.10", 53)
		if b.Weight != 0 || !b.Inhibited || b.Mode != "TUNNEL" {
			t.Fatalf("backend %+v", b)
		}
		body := e.must("GET", "/v2/vs/192.0.2.1-53-udp", "", 200)
		for _, s := range []string{`"SchedName":"rr"`, `"Quic":"true"`, `"SynProxy":"true"`, `"Timeout":5`, `"ConnTimeout":6`} {
			if !strings.Contains(body, s) {
				t.Errorf("body %s: missing %s", body, s)
			}
		}
		if got := e.agent.State().Devices["kni0"]; len(got) != 1 || got[0] != "192.0.2.1/24" {
			t.Fatalf("kni0 %v", got)
		}
	})
}

func TestSeedInvalid(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{name: "unknown_key", yaml: "vip: []", want: "field vip not found"},
		{name: "bad_vip", yaml: "vips: [{addr: 192.0.2}]", want: `vips[0].addr: "192.0.2" is not an IP address`},
		{name: "bad_proto", yaml: "vips: [{addr: 192.0.2.1, services: [{port: 1, proto: sctp}]}]", want: `vips[0].services[0].proto: "sctp"`},
		{name: "missing_port", yaml: "vips: [{addr: 192.0.2.1, services: [{proto: tcp}]}]", want: "vips[0].services[0].port: required"},
		{name: "port_too_big", yaml: "vips: [{addr: 192.0.2.1, services: [{port: 70000}]}]", want: "70000"},
		{name: "duplicate_service", yaml: "vips: [{addr: 192.0.2.1, services: [{port: 1}]}, {addr: 192.0.2.1, services: [{port: 1, proto: TCP}]}]",
			want: "vips[1].services[0]: service 192.0.2.1-TCP-1 already defined at vips[0].services[0]"},
		{name: "bad_backend_ip", yaml: "vips: [{addr: 192.0.2.1, services: [{port: 1, backends: [{ip: x, port: 1}]}]}]", want: `vips[0].services[0].backends[0]: real server ip "x"`},
		{name: "bad_backend_mode", yaml: "vips: [{addr: 192.0.2.1, services: [{port: 1, backends: [{ip: 192.0.2.2, port: 1, mode: LVS}]}]}]", want: `mode "LVS"`},
		{name: "duplicate_backend", yaml: "vips: [{addr: 192.0.2.1, services: [{port: 1, backends: [{ip: 192.0.2.2, port: 1}, {ip: 192.0.2.2, port: 1}]}]}]",
			want: "backends[1]: backend 192.0.2.2:1 duplicates backends[0]"},
		{name: "bad_device_addr", yaml: "devices: {dpdk0: [192.0.2.1/40]}", want: "devices.dpdk0[0]"},
		{name: "empty_device_name", yaml: `devices: {"": [192.0.2.1]}`, want: "empty device name"},
		{name: "not_yaml", yaml: "vips: [", want: "invalid seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := agenttest.ParseSeed([]byte(tt.yaml))
			if !errors.Is(err, agenttest.ErrSeed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseSeed error = %v, want ErrSeed containing %q", err, tt.want)
			}
		})
	}
	t.Run("seed_applies_nothing_when_invalid", func(t *testing.T) {
		a := agenttest.New()
		err := a.Seed(agenttest.Seed{VIPs: []agenttest.SeedVIP{{Addr: "192.0.2.1", Services: []agenttest.SeedService{{Port: 1}, {Port: 2}, {Port: 1}}}}})
		if !errors.Is(err, agenttest.ErrSeed) {
			t.Fatalf("Seed error = %v, want ErrSeed", err)
		}
		if st := a.State(); len(st.Services) != 0 {
			t.Fatalf("a refused seed applied %+v", st)
		}
	})
}

func TestSeedEmpty(t *testing.T) {
	for _, in := range []string{"", "# nothing\n", "{}"} {
		s, err := agenttest.ParseSeed([]byte(in))
		if err != nil || len(s.VIPs) != 0 {
			t.Fatalf("ParseSeed(%q) = %+v, %v", in, s, err)
		}
	}
}

func TestSeedFileAndHTTP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.yaml")
	if err := os.WriteFile(path, []byte(seedYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := agenttest.LoadSeedFile(path)
	if err != nil || len(s.VIPs) != 1 {
		t.Fatalf("LoadSeedFile = %+v, %v", s, err)
	}
	if _, err := agenttest.LoadSeedFile(filepath.Join(t.TempDir(), "absent.yaml")); err == nil {
		t.Fatal("LoadSeedFile of an absent file succeeded")
	}
	e := newEnv(t, seedYAML)
	v0 := e.version(vsID)
	// Seeding an existing service replaces its backends and moves its version.
	e.must("POST", "/_emu/seed", `{"vips":[{"addr":"192.0.2.1","services":[{"port":80,"backends":[{"ip":"192.0.2.30","port":80}]}]}]}`, 200)
	ss := e.agent.State().Service(vsID)
	if len(ss.Backends) != 1 || ss.Backends[0].IP != "192.0.2.30" || ss.Version == v0 {
		t.Fatalf("after re-seed: %+v", ss)
	}
	body := e.must("POST", "/_emu/seed", "vips: [{addr: x}]", 400)
	if !strings.Contains(body, "vips[0].addr") {
		t.Fatalf("seed error %q", body)
	}
}

func TestWithFaults(t *testing.T) {
	e := newEnv(t, seedYAML, agenttest.WithFaults(agenttest.Fault{Status: 500, Count: 2, Method: "get"}))
	e.must("GET", "/v2/vs", "", 500)
	if fs := e.agent.Faults(); len(fs) != 1 || fs[0].Left != 1 {
		t.Fatalf("faults %+v: want one with 1 left", fs)
	}
	e.must("GET", "/v2/vs", "", 500)
	e.must("GET", "/v2/vs", "", 200)
	if fs := e.agent.Faults(); len(fs) != 0 {
		t.Fatalf("used-up fault still installed: %+v", fs)
	}
}

func TestWithInvalidFault(t *testing.T) {
	e := newEnv(t, seedYAML, agenttest.WithFaults(agenttest.Fault{Status: 42, Count: 1}))
	if body := e.must("GET", "/v2/vs", "", 500); !strings.Contains(body, "fault status 42") {
		t.Fatalf("body %q: want the fault's problem", body)
	}
	e.must("GET", "/v2/vs", "", 200)
}
