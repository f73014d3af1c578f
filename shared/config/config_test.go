package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func mustParse(t *testing.T, text string) (*Config, []Warning) {
	t.Helper()
	cfg, warns, err := Options{CheckFile: NoFileCheck}.Parse([]byte(text), "test.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg, warns
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, warns, err := Options{CheckFile: NoFileCheck}.Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	for _, w := range warns {
		t.Errorf("Load(%s): unexpected warning: %s", path, w)
	}
	return cfg
}

func vsid(t *testing.T, s string) subject.VSID {
	t.Helper()
	id, err := subject.ParseEndpoint(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type field struct {
	name      string
	got, want any
}

func checkFields(t *testing.T, fields []field) {
	t.Helper()
	for _, f := range fields {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s = %#v, want %#v", f.name, f.got, f.want)
		}
	}
}

// TestDefaults checks every default, and that an empty file (in its
// several spellings) means exactly the defaults.
func TestDefaults(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"empty", ""},
		{"comment_only", "# nothing here\n"},
		{"document_marker", "---\n"},
		{"empty_mapping", "{}\n"},
		{"empty_sections", "global:\nvirtual-addresses:\nvirtual-servers:\nbus:\nservices:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, warns := mustParse(t, tc.text)
			if len(warns) != 0 {
				t.Errorf("warnings: %v", warns)
			}
			want := Default()
			want.Source, want.Revision = cfg.Source, cfg.Revision
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("Parse(%q) =\n%+v\nwant Default() =\n%+v", tc.text, cfg, want)
			}
		})
	}

	d := Default()
	va, vs := d.Global.VirtualAddress, d.Global.VirtualServer
	checkFields(t, []field{
		{"va.disable", va.Disable, false},
		{"va.down-policy", va.DownPolicy, AllOf},
		{"va.actioner", va.Actioner, "KernelRouteAddDel"},
		{"va.action-timeout", va.ActionTimeout, 2 * time.Second},
		{"va.action-sync-time", va.ActionSyncTime, 60 * time.Second},
		{"va.action-params", va.ActionParams, map[string]string{"ifname": "lo"}},
		{"vs.method", vs.Method, MethodAuto},
		{"vs.interval", vs.Interval, 3 * time.Second},
		{"vs.down-retry", vs.DownRetry, uint(1)},
		{"vs.up-retry", vs.UpRetry, uint(1)},
		{"vs.timeout", vs.Timeout, 2 * time.Second},
		{"vs.method-params", vs.MethodParams, map[string]string(nil)},
		{"vs.actioner", vs.Actioner, "BackendUpdate"},
		{"vs.action-timeout", vs.ActionTimeout, 2 * time.Second},
		{"vs.action-sync-time", vs.ActionSyncTime, 15 * time.Second},
		{"vs.action-params", vs.ActionParams, map[string]string(nil)},
		{"vs.fast-interval", vs.FastInterval, time.Duration(0)},
		{"vs.down-interval", vs.DownInterval, time.Duration(0)},
		{"vs.jitter", vs.Jitter, 0.0},
		{"vs.initial-state", vs.InitialState, event.Unknown},
		{"vs.observers", vs.Observers, Observers(1)},
		{"vs.quorum", vs.Quorum, 0},
		{"vs.min-up", vs.MinUp, 0},
		{"vs.max-down-fraction", vs.MaxDownFraction, 0.0},
		{"vs.source", vs.Source, ""},
		{"vs.netns", vs.Netns, ""},
		{"vs.check-address", vs.CheckAddress, ""},
		{"vs.check-port", vs.CheckPort, uint16(0)},
		{"vs.weight", vs.Weight, uint16(0)},
		{"vs.down-count", vs.DownCount(), 2},
		{"vs.up-count", vs.UpCount(), 2},
		{"bus.urls", d.Bus.URLs, []string(nil)},
		{"bus.creds-file", d.Bus.CredsFile, ""},
		{"bus.tls", d.Bus.TLS, TLS{}},
		{"bus.tls.enabled", d.Bus.TLS.Enabled(), false},
		{"bus.prefix", d.Bus.Prefix, "hm"},
		{"bus.results", d.Bus.Results, "jetstream"},
		{"bus.results-max-age", d.Bus.ResultsMaxAge, time.Hour},
		{"bus.results-max-bytes", d.Bus.ResultsMaxBytes, ByteSize(1 << 30)},
		{"bus.events-max-age", d.Bus.EventsMaxAge, 720 * time.Hour},
		{"bus.events-max-bytes", d.Bus.EventsMaxBytes, ByteSize(4 << 30)},
		{"bus.replicas", d.Bus.Replicas, 1},
		{"bus.member-ttl", d.Bus.MemberTTL, 3 * time.Second},
		{"bus.leader-ttl", d.Bus.LeaderTTL, 5 * time.Second},
		{"dpvs-agent.enabled", d.DPVSAgent.Enabled, true},
		{"dpvs-agent.addr", d.DPVSAgent.Addr, ":8082"},
		{"dpvs-agent.url", d.DPVSAgent.URL(), "http://127.0.0.1:8082"},
		{"dpvs-agent.list-interval", d.DPVSAgent.ListInterval, 15 * time.Second},
		{"dpvs-agent.timeout", d.DPVSAgent.Timeout, 10 * time.Second},
		{"services", len(d.Services), 0},
		{"prober.concurrency", d.Prober.Concurrency, 1024},
		{"prober.jitter", d.Prober.Jitter, 0.0},
		{"prober.node", d.Prober.Node, ""},
		{"prober.zone", d.Prober.Zone, ""},
		{"aggregator.stale-intervals", d.Aggregator.StaleIntervals, 3},
		{"aggregator.warmup", d.Aggregator.Warmup, time.Duration(0)},
		{"aggregator.http-addr", d.Aggregator.HTTPAddr, ":6601"},
		{"actioner.node", d.Actioner.Node, ""},
		{"revision", d.Revision, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	})
}

// TestDPVSSample reads the DPVS sample (rewritten with documentation
// addresses) and checks the effective values field by field.
func TestDPVSSample(t *testing.T) {
	cfg := mustLoad(t, "testdata/healthcheck.conf.sample")
	va1 := cfg.EffectiveVA(netip.MustParseAddr("192.0.2.1"))
	va6 := cfg.EffectiveVA(netip.MustParseAddr("2001:db8::1"))
	other := cfg.EffectiveVA(netip.MustParseAddr("192.0.2.99"))
	vs := cfg.EffectiveVS(vsid(t, "192.0.2.1-TCP-8080"))
	vsTCP := cfg.EffectiveVS(vsid(t, "192.0.2.1-TCP-80"))
	vsUDP := cfg.EffectiveVS(vsid(t, "192.0.2.1-UDP-53"))
	checkFields(t, []field{
		{"va 192.0.2.1 disable", va1.Disable, false},
		{"va 192.0.2.1 down-policy", va1.DownPolicy, OneOf},
		{"va 192.0.2.1 action-sync-time", va1.ActionSyncTime, 30 * time.Second},
		{"va 192.0.2.1 action-timeout (global)", va1.ActionTimeout, 2 * time.Second},
		{"va 192.0.2.1 actioner", va1.Actioner, "DpvsAddrKernelRouteAddDel"},
		{"va 192.0.2.1 action-params", va1.ActionParams, map[string]string{"ifname": "lo", "dpvs-ifname": "dpdk0.102"}},
		{"va 2001:db8::1 disable", va6.Disable, true},
		{"va 2001:db8::1 down-policy (global)", va6.DownPolicy, AllOf},
		{"va 2001:db8::1 actioner (global)", va6.Actioner, "KernelRouteAddDel"},
		{"va 2001:db8::1 action-params (global)", va6.ActionParams, map[string]string{"ifname": "lo"}},
		{"va other down-policy", other.DownPolicy, AllOf},
		{"va other action-sync-time", other.ActionSyncTime, 60 * time.Second},
		{"va other disable", other.Disable, false},
		{"vs 8080 method", vs.Method, MethodPing},
		{"vs 8080 interval", vs.Interval, 5 * time.Second},
		{"vs 8080 down-retry", vs.DownRetry, NoRetry},
		{"vs 8080 up-retry", vs.UpRetry, NoRetry},
		{"vs 8080 down-count", vs.DownCount(), 1},
		{"vs 8080 timeout", vs.Timeout, time.Second},
		{"vs 8080 action-timeout", vs.ActionTimeout, time.Second},
		{"vs 8080 action-sync-time", vs.ActionSyncTime, 10 * time.Second},
		{"vs 8080 actioner (global)", vs.Actioner, "BackendUpdate"},
		{"vs 8080 method-params", vs.MethodParams, map[string]string(nil)},
		{"vs tcp/80 method (auto)", vsTCP.Method, MethodTCP},
		{"vs tcp/80 interval", vsTCP.Interval, 3 * time.Second},
		{"vs tcp/80 retries", [2]uint{vsTCP.DownRetry, vsTCP.UpRetry}, [2]uint{1, 1}},
		{"vs tcp/80 timeout", vsTCP.Timeout, 2 * time.Second},
		{"vs tcp/80 action-sync-time", vsTCP.ActionSyncTime, 15 * time.Second},
		{"vs udp/53 method (auto)", vsUDP.Method, MethodUDPPing},
		{"global vs method stays auto", cfg.Global.VirtualServer.Method, MethodAuto},
		{"virtual-addresses", len(cfg.VirtualAddresses), 2},
		{"virtual-servers", len(cfg.VirtualServers), 1},
	})
}

func TestDPVSSimpleAndStress(t *testing.T) {
	simple := mustLoad(t, "testdata/healthcheck.conf.simple")
	stress := mustLoad(t, "testdata/healthcheck.conf.stress")
	svs := stress.EffectiveVS(vsid(t, "192.0.2.7-UDP-53"))
	checkFields(t, []field{
		{"simple va actioner", simple.Global.VirtualAddress.Actioner, "KernelRouteAddDel"},
		{"simple va params", simple.Global.VirtualAddress.ActionParams, map[string]string{"ifname": "lo"}},
		{"simple vs is the default", simple.Global.VirtualServer, defaultVS()},
		{"stress va params", stress.Global.VirtualAddress.ActionParams, map[string]string{"ifname": "dpdk0.102.kni"}},
		{"stress vs method", svs.Method, MethodUDPPing},
		{"stress vs down-retry", svs.DownRetry, NoRetry},
		{"stress vs up-retry (default)", svs.UpRetry, uint(1)},
		{"stress vs timeout", svs.Timeout, time.Second},
		{"stress vs interval (default)", svs.Interval, 3 * time.Second},
	})
}

func TestFullExample(t *testing.T) {
	cfg := mustLoad(t, "testdata/full.yaml")
	g := cfg.Global.VirtualServer
	web := cfg.EffectiveVS(vsid(t, "192.0.2.10-TCP-80"))
	dns := cfg.EffectiveVS(vsid(t, "192.0.2.10-UDP-53"))
	tls := cfg.EffectiveVS(vsid(t, "2001:db8::10-TCP-443"))
	web80 := cfg.Services[vsid(t, "192.0.2.10-TCP-80")]
	checkFields(t, []field{
		{"global rise 3 -> up-retry", g.UpRetry, uint(2)},
		{"global rise 3 -> up count", g.UpCount(), 3},
		{"global fall 2 -> down-retry", g.DownRetry, uint(1)},
		{"global fast-interval", g.FastInterval, 500 * time.Millisecond},
		{"global down-interval", g.DownInterval, 10 * time.Second},
		{"global jitter", g.Jitter, 0.1},
		{"global observers", g.Observers, Observers(2)},
		{"global quorum", g.Quorum, 2},
		{"global min-up", g.MinUp, 1},
		{"global max-down-fraction", g.MaxDownFraction, 0.5},
		{"global weight", g.Weight, uint16(50)},
		{"va down-policy by name", cfg.Global.VirtualAddress.DownPolicy, AllOf},
		{"va 192.0.2.10 oneOf by name", cfg.EffectiveVA(netip.MustParseAddr("192.0.2.10")).DownPolicy, OneOf},
		{"web method by name", web.Method, MethodHTTP},
		{"web observers all", web.Observers, ObserversAll},
		{"web inherits jitter", web.Jitter, 0.1},
		{"web source", web.Source, "{{ GetPrivateIP }}"},
		{"web check-port", web.CheckPort, uint16(8081)},
		{"web response-regex", web.MethodParams["response-regex"], "^ok"},
		{"dns method", dns.Method, MethodUDP},
		{"dns send", dns.MethodParams["send"], `\x00\x01ping`},
		{"dns netns", dns.Netns, "probe-ns"},
		{"dns check-address", dns.CheckAddress, "127.0.0.2"},
		{"dns initial-state", dns.InitialState, event.Down},
		{"tls up-retry 999999", tls.UpRetry, NoRetry},
		{"tls up count", tls.UpCount(), 1},
		{"tls inherits down-retry from fall", tls.DownRetry, uint(1)},
		{"bus urls", cfg.Bus.URLs, []string{"nats://127.0.0.1:4222", "tls://127.0.0.2:4222"}},
		{"bus tls enabled", cfg.Bus.TLS.Enabled(), true},
		{"bus prefix", cfg.Bus.Prefix, "hm-lab"},
		{"bus results-max-bytes", cfg.Bus.ResultsMaxBytes, ByteSize(512 << 20)},
		{"bus events-max-bytes", cfg.Bus.EventsMaxBytes, Unlimited},
		{"bus replicas", cfg.Bus.Replicas, 3},
		{"agent url", cfg.DPVSAgent.URL(), "http://127.0.0.1:8082"},
		{"agent list-interval", cfg.DPVSAgent.ListInterval, 10 * time.Second},
		{"web backends", web80.Backends, []Backend{
			{Addr: netip.MustParseAddr("127.0.0.1"), Port: 8080, Weight: 200},
			// port from the service, weight from the VS weight extension
			{Addr: netip.MustParseAddr("127.0.0.2"), Port: 80, Weight: 50, Inhibited: true},
		}},
		{"prober", cfg.Prober, Prober{Concurrency: 256, Jitter: 0.2, Node: "lb1", Zone: "zone-a"}},
		{"aggregator", cfg.Aggregator, Aggregator{StaleIntervals: 4, Warmup: 10 * time.Second, HTTPAddr: "127.0.0.1:6601"}},
		{"actioner", cfg.Actioner, Actioner{Node: "lb1"}},
	})
}

// TestInvalidFiles checks testdata/invalid-*.yaml against the expected
// errors in the sibling .errors file (and warnings in .warnings, if any).
func TestInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid files: %v", err)
	}
	for _, f := range files {
		base := strings.TrimSuffix(f, ".yaml")
		t.Run(strings.ReplaceAll(filepath.Base(base), "-", "_"), func(t *testing.T) {
			want, err := os.ReadFile(base + ".errors")
			if err != nil {
				t.Fatalf("expected errors: %v", err)
			}
			cfg, warns, err := Load(f)
			if err == nil {
				t.Fatalf("Load(%s) = valid config %v, want errors", f, cfg.Source)
			}
			if cfg != nil {
				t.Errorf("Load returned a config with its error")
			}
			compareLines(t, "errors", err.Error(), string(want))
			wantWarn, _ := os.ReadFile(base + ".warnings")
			var got []string
			for _, w := range warns {
				got = append(got, w.String())
			}
			compareLines(t, "warnings", strings.Join(got, "\n"), string(wantWarn))
		})
	}
}

func compareLines(t *testing.T, what, got, want string) {
	t.Helper()
	g := strings.Split(strings.TrimSpace(got), "\n")
	w := strings.Split(strings.TrimSpace(want), "\n")
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

// TestManyMistakes checks one file with mistakes in every kind of place
// reports all of them, with paths and lines.
func TestManyMistakes(t *testing.T) {
	_, _, err := Load("testdata/invalid-many.yaml")
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	paths := map[string]int{}
	for _, is := range verr.Issues {
		paths[is.Path] = is.Line
	}
	for _, want := range []struct {
		path string
		line int
	}{
		{"global/virtual-address/down-policy", 4},
		{"global/virtual-address/action-timeout", 5},
		{"global/virtual-server/interval", 7},
		{"global/virtual-server/method", 8},
		{"virtual-addresses/192.0.2.300", 10},
		{"virtual-addresses/192.0.2.1/actioner", 13},
		{"virtual-servers/192.0.2.1-TCP-80/interval", 16},
		{"virtual-servers/192.0.2.1-TCP-80/method-params/proxy-protocol", 19},
		{"virtual-servers/192.0.2.1-TCP-443/method-params/response-codes", 23},
		{"bus/replicas", 25},
		{"bus/prefix", 26},
		{"bus/colour", 27},
		{"services/192.0.2.1-TCP-80/backends/0/addr", 31},
	} {
		if line, ok := paths[want.path]; !ok || line != want.line {
			t.Errorf("issue at %s: line %d (reported %v), want line %d", want.path, line, ok, want.line)
		}
	}
	if len(verr.Issues) != 13 {
		t.Errorf("%d issues, want 13:\n%v", len(verr.Issues), verr)
	}
}

func TestErrorKinds(t *testing.T) {
	_, _, err := Parse([]byte("global: [unclosed\n"), "bad.yaml")
	if !errors.Is(err, ErrSyntax) {
		t.Errorf("syntax error %v does not wrap ErrSyntax", err)
	}
	var serr *SyntaxError
	if !errors.As(err, &serr) || serr.Source != "bad.yaml" {
		t.Errorf("syntax error %v is not a *SyntaxError for bad.yaml", err)
	}
	_, _, err = Load(filepath.Join(t.TempDir(), "missing.conf"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file error %v does not wrap fs.ErrNotExist", err)
	}
	_, _, err = Parse([]byte("bus: {replicas: 0}\n"), "x")
	var verr *ValidationError
	if !errors.As(err, &verr) || verr.Source != "x" || len(verr.Issues) != 1 {
		t.Errorf("validation error = %#v", err)
	}
}

func TestBusResultsMode(t *testing.T) {
	cfg, _ := mustParse(t, "bus: {results: core}\n")
	if cfg.Bus.Results != ResultsCore {
		t.Errorf("bus.results = %q, want core", cfg.Bus.Results)
	}
	_, _, err := Parse([]byte("bus: {results: nats}\n"), "x")
	if err == nil || !strings.Contains(err.Error(), "bus/results") || !strings.Contains(err.Error(), `"nats"`) {
		t.Errorf("bus.results: nats gave %v, want an error naming bus/results and the value", err)
	}
}

func TestLoadKeepsSourceAndRevision(t *testing.T) {
	cfg := mustLoad(t, "testdata/healthcheck.conf.simple")
	if cfg.Source != "testdata/healthcheck.conf.simple" {
		t.Errorf("Source = %q", cfg.Source)
	}
	other, _ := mustParse(t, "global: {virtual-address: {actioner: Blank}}\n")
	if len(cfg.Revision) != 64 || cfg.Revision == other.Revision || cfg.Revision == Default().Revision {
		t.Errorf("revisions %q %q are not distinct content hashes", cfg.Revision, other.Revision)
	}
	again := mustLoad(t, "testdata/healthcheck.conf.simple")
	if again.Revision != cfg.Revision {
		t.Errorf("revision of the same content changed: %q, %q", cfg.Revision, again.Revision)
	}
}
