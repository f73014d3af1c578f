package agenttest_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
)

const seedYAML = `
vips:
  - addr: 192.0.2.1
    services:
      - port: 80
        backends:
          - {ip: 192.0.2.10, port: 8080, weight: 100}
          - {ip: 192.0.2.11, port: 8080, weight: 50}
devices:
  dpdk0: [192.0.2.1]
`

// env is an emulator behind a real loopback server and a client of its own.
type env struct {
	t     *testing.T
	agent *agenttest.Agent
	url   string
	hc    *http.Client
}

func newEnv(t *testing.T, seed string, opts ...agenttest.Option) *env {
	t.Helper()
	agent, url := agenttest.NewServer(t, opts...)
	if seed != "" {
		s, err := agenttest.ParseSeed([]byte(seed))
		if err != nil {
			t.Fatal(err)
		}
		if err := agent.Seed(s); err != nil {
			t.Fatal(err)
		}
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &env{t: t, agent: agent, url: url, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// do sends a raw request; a transport error is returned as status -1 with
// the error text as body.
func (e *env) do(method, path, body string) (int, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return -1, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (e *env) must(method, path, body string, want int) string {
	e.t.Helper()
	code, got := e.do(method, path, body)
	if code != want {
		e.t.Fatalf("%s %s: status %d (%s), want %d", method, path, code, got, want)
	}
	return got
}

func (e *env) version(id string) string {
	e.t.Helper()
	ss := e.agent.State().Service(id)
	if ss == nil {
		e.t.Fatalf("no service %s", id)
	}
	return ss.Version
}

func (e *env) backend(id, ip string, port uint16) agenttest.BackendState {
	e.t.Helper()
	ss := e.agent.State().Service(id)
	if ss == nil {
		e.t.Fatalf("no service %s", id)
	}
	b := ss.Backend(ip, port)
	if b == nil {
		e.t.Fatalf("service %s: no backend %s:%d", id, ip, port)
	}
	return *b
}

const vsID = "192.0.2.1-80-tcp"

func TestVersions(t *testing.T) {
	base := time.UnixMilli(1747382400000)
	var ms atomic.Int64
	clock := func() time.Time { return base.Add(time.Duration(ms.Load()) * time.Millisecond) }
	e := newEnv(t, "", agenttest.WithClock(clock))
	rs := func(ip string, w int) string {
		return fmt.Sprintf(`{"Items":[{"ip":%q,"port":80,"weight":%d}]}`, ip, w)
	}
	steps := []struct {
		name, method, path, body string
		status                   int
		want                     int64 // version offset from base, in ms
	}{
		{name: "new_vs_sets_now", method: "PUT", path: "/v2/vs/" + vsID, body: `{"SchedName":"rr"}`, status: 201, want: 0},
		{name: "put_rs_same_ms_still_increases", method: "PUT", path: "/v2/vs/" + vsID + "/rs", body: rs("192.0.2.10", 1), status: 200, want: 1},
		{name: "post_rs_bumps", method: "POST", path: "/v2/vs/" + vsID + "/rs", body: rs("192.0.2.11", 1), status: 200, want: 2},
		{name: "put_existing_vs_keeps", method: "PUT", path: "/v2/vs/" + vsID, body: `{"SchedName":"wlc"}`, status: 200, want: 2},
		{name: "delete_rs_keeps", method: "DELETE", path: "/v2/vs/" + vsID + "/rs", body: rs("192.0.2.11", 1), status: 200, want: 2},
		{name: "health_keeps", method: "PUT", path: "/v2/vs/" + vsID + "/rs/health?version=1747382400002", body: rs("192.0.2.11", 0), status: 460, want: 2},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e.must(st.method, st.path, st.body, st.status)
			if got, want := e.version(vsID), fmt.Sprint(base.UnixMilli()+st.want); got != want {
				t.Fatalf("version %s, want %s", got, want)
			}
		})
	}
	t.Run("clock_moves_on", func(t *testing.T) {
		ms.Store(100)
		e.must("PUT", "/v2/vs/"+vsID+"/rs", rs("192.0.2.12", 1), 200)
		if got, want := e.version(vsID), fmt.Sprint(base.UnixMilli()+100); got != want {
			t.Fatalf("version %s, want %s", got, want)
		}
	})
	t.Run("delete_rs_stays_listed", func(t *testing.T) {
		ss := e.agent.State().Service(vsID)
		b := ss.Backend("192.0.2.11", 80)
		if b == nil || !b.InSnapshot || b.InDataplane {
			t.Fatalf("deleted backend: %+v, want in snapshot only", b)
		}
		body := e.must("GET", "/v2/vs", "", 200)
		if !strings.Contains(body, `"ip":"192.0.2.11"`) {
			t.Fatalf("listing %s lost the deleted backend", body)
		}
	})
}

func TestListShape(t *testing.T) {
	t.Run("empty_agent", func(t *testing.T) {
		e := newEnv(t, "")
		if body := e.must("GET", "/v2/vs", "", 200); body != `{"Items":[]}` {
			t.Fatalf("empty listing %s", body)
		}
	})
	e := newEnv(t, seedYAML)
	tests := []struct {
		name, query string
		status      int
		has, hasNot []string
	}{
		{name: "snapshot", has: []string{`"Version":"`, `"DestCheck":null`, `"Quic":"false"`, `"SynProxy":"false"`,
			`"ExpireQuiescent":"false"`, `"Proto":6`, `"Af":2`, `"RSs":{"Items":[{"Spec":{"ip":"192.0.2.10","port":80`,
			`"inhibited":false`, `"overloaded":false`, `"mode":"FNAT"`}, hasNot: []string{"ProxyProto", "Stats"}},
		{name: "healthcheck_false", query: "?healthcheck=false", has: []string{`"Version":"`}},
		{name: "healthcheck_true_has_no_version", query: "?healthcheck=true", has: []string{`"Stats":{}`, `"ip":"192.0.2.11"`}, hasNot: []string{"Version"}},
		{name: "healthcheck_yes", query: "?healthcheck=yes", hasNot: []string{"Version"}},
		{name: "healthcheck_invalid_422", query: "?healthcheck=maybe", status: 422, has: []string{`"code":600`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.status == 0 {
				tt.status = 200
			}
			body := e.must("GET", "/v2/vs"+tt.query, "", tt.status)
			for _, s := range tt.has {
				if !strings.Contains(body, s) {
					t.Errorf("body %s: missing %s", body, s)
				}
			}
			for _, s := range tt.hasNot {
				if strings.Contains(body, s) {
					t.Errorf("body %s: has %s", body, s)
				}
			}
		})
	}
}

func TestRandomOrder(t *testing.T) {
	var seed strings.Builder
	seed.WriteString("vips:\n  - addr: 192.0.2.1\n    services:\n")
	for p := range 16 {
		fmt.Fprintf(&seed, "      - port: %d\n", 1000+p)
	}
	e := newEnv(t, seed.String())
	first := e.must("GET", "/v2/vs", "", 200)
	for range 50 {
		if e.must("GET", "/v2/vs", "", 200) != first {
			return
		}
	}
	t.Fatal("51 listings of 16 services came in the same order")
}

// TestHealth follows §8.5 step by step.
func TestHealth(t *testing.T) {
	const path = "/v2/vs/" + vsID + "/rs/health"
	down := `{"Items":[{"ip":"192.0.2.10","port":8080,"weight":0,"inhibited":true}]}`
	tests := []struct {
		name, path, query, body string
		status                  int
		dropped                 bool
		has                     string
		applied                 bool // 192.0.2.10 ends up inhibited
	}{
		{name: "short_id_drops_connection", path: "/v2/vs/192.0.2.1-80/rs/health", query: "?version=V", body: down, dropped: true},
		{name: "non_numeric_port_460", path: "/v2/vs/192.0.2.1-http-tcp/rs/health", query: "?version=V", body: down, status: 460},
		{name: "bad_address_460", path: "/v2/vs/192.0.2.300-80-tcp/rs/health", query: "?version=V", body: down, status: 460},
		{name: "bad_port_before_unknown_service", path: "/v2/vs/192.0.2.9-x-tcp/rs/health", query: "?version=V", body: down, status: 460},
		{name: "unknown_proto_500", path: "/v2/vs/192.0.2.1-80-sctp/rs/health", query: "?version=V", body: down, status: 500},
		{name: "extra_parts_500", path: "/v2/vs/192.0.2.1-80-tcp-x/rs/health", query: "?version=V", body: down, status: 500},
		{name: "unknown_service_500", path: "/v2/vs/192.0.2.9-80-tcp/rs/health", query: "?version=V", body: down, status: 500},
		{name: "missing_version_422", path: path, body: down, status: 422, has: "version in query is required"},
		{name: "bad_json_400", path: path, query: "?version=V", body: `{"Items":`, status: 400},
		{name: "wrong_version_270_with_service", path: path, query: "?version=1", body: down, status: 270, has: `"Addr":"192.0.2.1"`},
		{name: "wrong_version_wins_over_unknown_backends", path: path, query: "?version=1", body: `{"Items":[{"ip":"192.0.2.99","port":1}]}`, status: 270},
		{name: "ok_lower_case_key", path: path, query: "?version=V", body: down, status: 200, applied: true},
		{name: "ok_capital_key", path: path, query: "?version=V", body: `{"Items":[{"ip":"192.0.2.10","port":8080,"weight":0,"Inhibited":true}]}`, status: 200, applied: true},
		{name: "ok_capital_keys_everywhere", path: path, query: "?version=V", body: `{"items":[{"IP":"192.0.2.10","Port":8080,"Weight":0,"INHIBITED":true}]}`, status: 200, applied: true},
		{name: "upper_case_proto_in_id", path: "/v2/vs/192.0.2.1-80-TCP/rs/health", query: "?version=V", body: down, status: 200, applied: true},
		{name: "unknown_backend_dropped_200", path: path, query: "?version=V", body: `{"Items":[{"ip":"192.0.2.99","port":8080,"inhibited":true}]}`, status: 200},
		{name: "no_body_200", path: path, query: "?version=V", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, seedYAML)
			q := strings.ReplaceAll(tt.query, "=V", "="+e.version(vsID))
			code, body := e.do("PUT", tt.path+q, tt.body)
			switch {
			case tt.dropped:
				if code != -1 {
					t.Fatalf("status %d, want a dropped connection", code)
				}
				if calls := e.agent.Calls(); len(calls) != 1 || calls[0].Status != 0 {
					t.Fatalf("calls %+v: want one with status 0", calls)
				}
			case code != tt.status:
				t.Fatalf("status %d (%s), want %d", code, body, tt.status)
			case tt.has != "" && !strings.Contains(body, tt.has):
				t.Fatalf("body %s: want %s", body, tt.has)
			case tt.status != 270 && tt.status != 422 && tt.status != 400 && body != "":
				t.Fatalf("body %q, want none", body)
			}
			b := e.backend(vsID, "192.0.2.10", 8080)
			if b.Inhibited != tt.applied || b.SnapshotInhibited != tt.applied {
				t.Fatalf("backend %+v: want inhibited=%v", b, tt.applied)
			}
			if tt.applied && (b.Weight != 0 || b.UserWeight != 100 || b.HealthUpdates != 1) {
				t.Fatalf("backend %+v: want dataplane weight 0, user weight 100", b)
			}
		})
	}
	t.Run("270_body_is_the_current_service", func(t *testing.T) {
		e := newEnv(t, seedYAML)
		code, body := e.do("PUT", path+"?version=1", down)
		var vs dpvsagent.VirtualServer
		if err := json.Unmarshal([]byte(body), &vs); err != nil || code != 270 {
			t.Fatalf("status %d body %s: %v", code, body, err)
		}
		if vs.Version != e.version(vsID) || len(vs.RSs.Items) != 2 {
			t.Fatalf("270 body %+v", vs)
		}
	})
	t.Run("last_backend_decides", func(t *testing.T) {
		e := newEnv(t, seedYAML)
		e.must("DELETE", "/v2/vs/"+vsID+"/rs", `{"Items":[{"ip":"192.0.2.11","port":8080}]}`, 200)
		both := func(first, second string) string {
			return fmt.Sprintf(`{"Items":[{"ip":%q,"port":8080,"inhibited":true},{"ip":%q,"port":8080,"inhibited":true}]}`, first, second)
		}
		q := "?version=" + e.version(vsID)
		// The deleted backend last: 460, although the first was applied in DPVS.
		e.must("PUT", path+q, both("192.0.2.10", "192.0.2.11"), 460)
		if b := e.backend(vsID, "192.0.2.10", 8080); !b.Inhibited || b.SnapshotInhibited {
			t.Fatalf("after 460: %+v, want applied in the dataplane only", b)
		}
		// The deleted backend first: 200.
		e.must("PUT", path+q, both("192.0.2.11", "192.0.2.10"), 200)
		if b := e.backend(vsID, "192.0.2.10", 8080); !b.SnapshotInhibited {
			t.Fatalf("after 200: %+v, want the snapshot updated", b)
		}
	})
}

func TestGetVS(t *testing.T) {
	e := newEnv(t, seedYAML)
	e.must("PUT", "/v2/vs/"+vsID+"/rs/health?version="+e.version(vsID), `{"Items":[{"ip":"192.0.2.10","port":8080,"weight":0,"inhibited":true}]}`, 200)
	tests := []struct {
		name, path  string
		status      int
		has, hasNot string
	}{
		{name: "snapshot_user_weight", path: "/v2/vs/" + vsID, status: 200, has: `"weight":100,"inhibited":true`},
		{name: "ipv4_upper_proto", path: "/v2/vs/192.0.2.1-80-TCP", status: 200, has: `"Version"`},
		{name: "live_weight_no_version", path: "/v2/vs/" + vsID + "?healthcheck=true", status: 200, has: `"weight":0,"inhibited":true`, hasNot: "Version"},
		{name: "unparsable_lists_all_live", path: "/v2/vs/garbage", status: 200, has: `"Addr":"192.0.2.1"`, hasNot: "Version"},
		{name: "unknown_proto_404", path: "/v2/vs/192.0.2.1-80-sctp", status: 404},
		{name: "unknown_service_404", path: "/v2/vs/192.0.2.1-81-tcp", status: 404},
		{name: "unknown_path_404", path: "/v2/vs/" + vsID + "/laddr", status: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := e.must("GET", tt.path, "", tt.status)
			if tt.has != "" && !strings.Contains(body, tt.has) {
				t.Fatalf("body %s: want %s", body, tt.has)
			}
			if tt.hasNot != "" && strings.Contains(body, tt.hasNot) {
				t.Fatalf("body %s: has %s", body, tt.hasNot)
			}
		})
	}
	t.Run("wrong_method_405", func(t *testing.T) {
		e.must("PATCH", "/v2/vs/"+vsID, "{}", 405)
	})
}

func TestPutVS(t *testing.T) {
	e := newEnv(t, "")
	tests := []struct {
		name, id, body string
		status         int
		has            []string
	}{
		{name: "create_201", id: "192.0.2.1-443-tcp", body: `{"SchedName":"conhash","Quic":true,"SynProxy":true}`, status: 201,
			has: []string{`"Quic":"true"`, `"SynProxy":"true"`, `"Flags":"SynProxy|Quic|ConHashBySrcIP|"`, `"SchedName":"conhash"`}},
		{name: "update_200", id: "192.0.2.1-443-tcp", body: `{"SchedName":"bogus"}`, status: 200, has: []string{`"SchedName":"wrr"`, `"Quic":"false"`}},
		{name: "no_body_201", id: "2001:db8::1-53-udp", status: 201, has: []string{`"Addr":"2001:db8::1"`, `"Af":10`, `"Proto":17`}},
		{name: "bad_port_460", id: "192.0.2.1-x-tcp", body: `{}`, status: 460},
		{name: "bad_proto_460", id: "192.0.2.1-80-sctp", body: `{}`, status: 460},
		{name: "bad_proxy_protocol_422", id: "192.0.2.1-80-tcp", body: `{"ProxyProtocol":"v3"}`, status: 422},
		{name: "bad_json_400", id: "192.0.2.1-80-tcp", body: `{"SchedName":1}`, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.must("PUT", "/v2/vs/"+tt.id, tt.body, tt.status)
			if len(tt.has) == 0 {
				return
			}
			body := e.must("GET", "/v2/vs/"+tt.id, "", 200)
			for _, s := range tt.has {
				if !strings.Contains(body, s) {
					t.Errorf("body %s: missing %s", body, s)
				}
			}
		})
	}
	t.Run("delete_200_then_404", func(t *testing.T) {
		e.must("DELETE", "/v2/vs/192.0.2.1-443-tcp", "", 200)
		e.must("DELETE", "/v2/vs/192.0.2.1-443-tcp", "", 404)
		e.must("DELETE", "/v2/vs/192.0.2.1-x-tcp", "", 500)
	})
}

func TestRSManagement(t *testing.T) {
	e := newEnv(t, seedYAML)
	tests := []struct {
		name, method, body string
		status             int
	}{
		{name: "bad_ip_461", method: "PUT", body: `{"Items":[{"ip":"x","port":1}]}`, status: 461},
		{name: "bad_mode_461", method: "PUT", body: `{"Items":[{"ip":"192.0.2.12","port":1,"mode":"XYZ"}]}`, status: 461},
		{name: "bad_json_400", method: "POST", body: `[`, status: 400},
		{name: "weight_out_of_range_400", method: "PUT", body: `{"Items":[{"ip":"192.0.2.12","port":1,"weight":70000}]}`, status: 400},
		{name: "put_inhibited_from_body", method: "PUT", body: `{"Items":[{"ip":"192.0.2.12","port":1,"weight":3,"inhibited":true,"mode":"dr"}]}`, status: 200},
		{name: "delete_absent_200", method: "DELETE", body: `{"Items":[{"ip":"192.0.2.99","port":1}]}`, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.must(tt.method, "/v2/vs/"+vsID+"/rs", tt.body, tt.status)
		})
	}
	b := e.backend(vsID, "192.0.2.12", 1)
	if !b.Inhibited || !b.SnapshotInhibited || b.Weight != 3 || b.UserWeight != 3 || b.Mode != "DR" {
		t.Fatalf("added backend %+v", b)
	}
	for _, m := range []string{"PUT", "POST", "DELETE"} {
		t.Run("missing_service_500_"+strings.ToLower(m), func(t *testing.T) {
			e.must(m, "/v2/vs/192.0.2.1-81-tcp/rs", `{"Items":[]}`, 500)
		})
	}
}

func TestDeviceAddr(t *testing.T) {
	e := newEnv(t, "")
	steps := []struct {
		name, method, dev, body string
		status                  int
		want                    []string
	}{
		{name: "add_with_plen", method: "PUT", dev: "dpdk0", body: `{"addr":"192.0.2.1/24","scope":"global"}`, status: 200, want: []string{"192.0.2.1/24"}},
		{name: "add_host", method: "PUT", dev: "dpdk0", body: `{"addr":"192.0.2.2"}`, status: 200, want: []string{"192.0.2.1/24", "192.0.2.2/32"}},
		{name: "capital_key", method: "PUT", dev: "dpdk0", body: `{"Addr":"192.0.2.3"}`, status: 200, want: []string{"192.0.2.1/24", "192.0.2.2/32", "192.0.2.3/32"}},
		{name: "delete_without_plen_removes_any_plen", method: "DELETE", dev: "dpdk0", body: `{"addr":"192.0.2.1"}`, status: 200, want: []string{"192.0.2.2/32", "192.0.2.3/32"}},
		{name: "delete_unknown_device_200", method: "DELETE", dev: "dpdk9", body: `{"addr":"192.0.2.1"}`, status: 200, want: []string{"192.0.2.2/32", "192.0.2.3/32"}},
		{name: "empty_body_500", method: "PUT", dev: "dpdk0", status: 500, want: []string{"192.0.2.2/32", "192.0.2.3/32"}},
		{name: "no_addr_500", method: "PUT", dev: "dpdk0", body: `{"scope":"host"}`, status: 500, want: []string{"192.0.2.2/32", "192.0.2.3/32"}},
		{name: "bad_plen_500", method: "PUT", dev: "dpdk0", body: `{"addr":"192.0.2.5/33"}`, status: 500, want: []string{"192.0.2.2/32", "192.0.2.3/32"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e.must(st.method, "/v2/device/"+st.dev+"/addr", st.body, st.status)
			if got := e.agent.State().Devices["dpdk0"]; fmt.Sprint(got) != fmt.Sprint(st.want) {
				t.Fatalf("dpdk0 %v, want %v", got, st.want)
			}
		})
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name   string
		fault  string // POSTed to /_emu/faults
		method string
		path   string
		body   string
		status int
		resp   string
		check  func(t *testing.T, e *env)
	}{
		{name: "status_with_body", fault: `{"status":503,"body":"{\"x\":1}","count":1}`, method: "GET", path: "/v2/vs", status: 503, resp: `{"x":1}`},
		{name: "status_204", fault: `{"status_204":true,"count":1}`, method: "GET", path: "/v2/vs", status: 204},
		{name: "method_filter_skips", fault: `{"status":500,"method":"PUT"}`, method: "GET", path: "/v2/vs", status: 200},
		{name: "path_prefix_skips", fault: `{"status":500,"path_prefix":"/v2/device"}`, method: "GET", path: "/v2/vs", status: 200},
		{name: "path_prefix_matches", fault: `{"status":500,"path_prefix":"/v2/vs/192.0.2.1"}`, method: "GET", path: "/v2/vs/" + vsID, status: 500},
		{name: "empty_body_still_applies", fault: `{"empty_body":true,"count":1}`, method: "PUT", path: "/v2/vs/" + vsID + "/rs",
			body: `{"Items":[{"ip":"192.0.2.12","port":1}]}`, status: 200,
			check: func(t *testing.T, e *env) { e.backend(vsID, "192.0.2.12", 1) }},
		{name: "empty_body_on_list", fault: `{"empty_body":true,"count":1}`, method: "GET", path: "/v2/vs", status: 200, resp: ""},
		{name: "bump_version_all", fault: `{"bump_version":true,"count":1}`, method: "GET", path: "/v2/vs", status: 200,
			check: func(t *testing.T, e *env) {
				if e.version(vsID) == e.version("192.0.2.2-80-tcp") || e.version("192.0.2.2-80-tcp") == "" {
					t.Fatal("versions not bumped apart")
				}
			}},
		{name: "array_of_faults_first_wins", fault: `[{"status":502,"count":1},{"status":503,"count":1}]`, method: "GET", path: "/v2/vs", status: 502,
			check: func(t *testing.T, e *env) {
				e.must("GET", "/v2/vs", "", 503)
				e.must("GET", "/v2/vs", "", 200)
			}},
		{name: "count_zero_is_sticky", fault: `{"status":500}`, method: "GET", path: "/v2/vs", status: 500,
			check: func(t *testing.T, e *env) {
				e.must("GET", "/v2/vs", "", 500)
				if fs := e.agent.Faults(); len(fs) != 1 {
					t.Fatalf("faults %+v", fs)
				}
				e.must("DELETE", "/_emu/faults", "", 204)
				e.must("GET", "/v2/vs", "", 200)
			}},
		{name: "latency", fault: `{"latency":"30ms","count":1}`, method: "GET", path: "/v2/vs", status: 200,
			check: func(t *testing.T, e *env) {
				if c := e.agent.Calls(); c[0].Duration < 30*time.Millisecond || !c[0].Fault {
					t.Fatalf("call %+v: want >= 30ms and marked as a fault", c[0])
				}
			}},
	}
	seed := seedYAML + "  - addr: 192.0.2.2\n    services: [{port: 80}]\n"
	seed = strings.Replace(seed, "devices:\n  dpdk0: [192.0.2.1]\n", "", 1) + "devices:\n  dpdk0: [192.0.2.1]\n"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, seed)
			e.must("POST", "/_emu/faults", tt.fault, 200)
			code, body := e.do(tt.method, tt.path, tt.body)
			if code != tt.status {
				t.Fatalf("status %d (%s), want %d", code, body, tt.status)
			}
			if tt.resp != "" || strings.Contains(tt.fault, "empty_body") || tt.status == 204 {
				if body != tt.resp {
					t.Fatalf("body %q, want %q", body, tt.resp)
				}
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestFaultValidation(t *testing.T) {
	e := newEnv(t, "")
	tests := []struct{ name, body, want string }{
		{name: "empty", body: "", want: "empty body"},
		{name: "unknown_field", body: `{"stauts":500}`, want: "unknown field"},
		{name: "latency_number", body: `{"latency":200}`, want: `want a string such as "200ms"`},
		{name: "latency_garbage", body: `{"latency":"soon"}`, want: "soon"},
		{name: "latency_negative", body: `{"latency":"-1s"}`, want: "latency"},
		{name: "status_out_of_range", body: `{"status":42}`, want: "status 42"},
		{name: "count_negative", body: `[{"count":-1}]`, want: "faults[0]"},
		{name: "relative_path", body: `{"path_prefix":"v2/vs"}`, want: "absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := e.must("POST", "/_emu/faults", tt.body, 400)
			if !strings.Contains(body, tt.want) {
				t.Fatalf("error %q: want %q", body, tt.want)
			}
		})
	}
	if fs := e.agent.Faults(); len(fs) != 0 {
		t.Fatalf("invalid faults installed: %+v", fs)
	}
	if err := e.agent.AddFault(agenttest.Fault{Count: -2}); err == nil {
		t.Fatal("AddFault accepted count -2")
	}
	if body := e.must("GET", "/_emu/faults", "", 200); body != "[]" {
		t.Fatalf("GET /_emu/faults = %s", body)
	}
}

func TestFaultClientGone(t *testing.T) {
	e := newEnv(t, seedYAML)
	if err := e.agent.AddFault(agenttest.Fault{Latency: agenttest.Duration(time.Minute), Count: 1}); err != nil {
		t.Fatal(err)
	}
	e.hc.Timeout = 20 * time.Millisecond
	if code, _ := e.do("GET", "/v2/vs", ""); code != -1 {
		t.Fatalf("status %d, want a client timeout", code)
	}
	eventually(t, "the abandoned call is recorded", func() bool { return len(e.agent.Calls()) > 0 })
	if c := e.agent.Calls()[0]; c.Status != 0 || !c.Fault {
		t.Fatalf("call %+v: want status 0 and a fault", c)
	}
}

func TestCalls(t *testing.T) {
	var log bytes.Buffer
	var logMu sync.Mutex
	e := newEnv(t, seedYAML, agenttest.WithLog(lockedWriter{&logMu, &log}), agenttest.WithMaxCalls(3))
	e.must("GET", "/v2/vs?stats=true", "", 200)
	e.must("PUT", "/v2/device/dpdk0/addr", `{"addr":"192.0.2.7"}`, 200)
	e.must("PUT", "/v2/vs/"+vsID+"/rs", "not json", 400)
	e.must("GET", "/_emu/state", "", 200) // control calls are not recorded
	calls := e.agent.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	checks := []struct {
		name                string
		i                   int
		method, path, query string
		body                string
		status              int
	}{
		{name: "list", i: 0, method: "GET", path: "/v2/vs", query: "stats=true", status: 200},
		{name: "device", i: 1, method: "PUT", path: "/v2/device/dpdk0/addr", body: `{"addr":"192.0.2.7"}`, status: 200},
		{name: "non_json_body_as_string", i: 2, method: "PUT", path: "/v2/vs/" + vsID + "/rs", body: `"not json"`, status: 400},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			got := calls[c.i]
			if got.Method != c.method || got.Path != c.path || got.Query != c.query || string(got.Body) != c.body || got.Status != c.status || got.Time.IsZero() {
				t.Fatalf("call %+v", got)
			}
		})
	}
	t.Run("http_array", func(t *testing.T) {
		var got []agenttest.Call
		if err := json.Unmarshal([]byte(e.must("GET", "/_emu/calls", "", 200)), &got); err != nil || len(got) != 3 || got[1].Path != calls[1].Path {
			t.Fatalf("GET /_emu/calls: %v, %+v", err, got)
		}
	})
	t.Run("http_jsonl", func(t *testing.T) {
		lines := strings.Split(strings.TrimSpace(e.must("GET", "/_emu/calls?format=jsonl", "", 200)), "\n")
		if len(lines) != 3 || !strings.Contains(lines[2], `"status":400`) {
			t.Fatalf("jsonl %q", lines)
		}
		e.must("GET", "/_emu/calls?format=xml", "", 400)
	})
	t.Run("log_file_lines", func(t *testing.T) {
		logMu.Lock()
		lines := strings.Split(strings.TrimSpace(log.String()), "\n")
		logMu.Unlock()
		if len(lines) != 3 {
			t.Fatalf("%d log lines, want 3", len(lines))
		}
		for _, l := range lines {
			var c agenttest.Call
			if err := json.Unmarshal([]byte(l), &c); err != nil || c.Path == "" {
				t.Fatalf("log line %q: %v", l, err)
			}
		}
		if err := e.agent.LogErr(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("max_calls_keeps_last", func(t *testing.T) {
		for range 5 {
			e.must("GET", "/v2/vs/"+vsID, "", 200)
		}
		got := e.agent.Calls()
		if len(got) != 3 || got[0].Path != "/v2/vs/"+vsID {
			t.Fatalf("calls %+v: want the last 3", got)
		}
	})
	t.Run("reset", func(t *testing.T) {
		e.must("DELETE", "/_emu/calls", "", 204)
		if n := len(e.agent.Calls()); n != 0 {
			t.Fatalf("%d calls after reset", n)
		}
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func TestStateEndpoint(t *testing.T) {
	e := newEnv(t, seedYAML)
	var st agenttest.State
	if err := json.Unmarshal([]byte(e.must("GET", "/_emu/state", "", 200)), &st); err != nil {
		t.Fatal(err)
	}
	want := e.agent.State()
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Fatalf("GET /_emu/state\n%+v\nwant\n%+v", st, want)
	}
	ss := st.Service(vsID)
	if ss == nil || !ss.InSnapshot || !ss.InDataplane || len(ss.Backends) != 2 || ss.SchedName != "wrr" {
		t.Fatalf("service %+v", ss)
	}
	if b := ss.Backend("192.0.2.11", 8080); b == nil || b.Weight != 50 || !b.Schedulable() {
		t.Fatalf("backend %+v", b)
	}
	if st.Service("192.0.2.1-81-tcp") != nil || ss.Backend("192.0.2.11", 1) != nil {
		t.Fatal("lookup of absent objects found something")
	}
	if fmt.Sprint(st.Devices) != "map[dpdk0:[192.0.2.1/32]]" {
		t.Fatalf("devices %v", st.Devices)
	}
	e.must("POST", "/_emu/reset", "", 204)
	if st := e.agent.State(); len(st.Services) != 0 || len(st.Devices) != 0 {
		t.Fatalf("after reset: %+v", st)
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t, seedYAML)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 30 {
				switch (w + i) % 6 {
				case 0:
					e.do("GET", "/v2/vs", "")
				case 1:
					e.do("PUT", "/v2/vs/"+vsID+"/rs", fmt.Sprintf(`{"Items":[{"ip":"192.0.2.%d","port":1}]}`, 20+w))
				case 2:
					e.do("PUT", "/v2/vs/"+vsID+"/rs/health?version="+e.version(vsID), `{"Items":[{"ip":"192.0.2.10","port":8080,"inhibited":true}]}`)
				case 3:
					e.do("PUT", "/v2/device/dpdk0/addr", fmt.Sprintf(`{"addr":"192.0.2.%d"}`, 100+w))
				case 4:
					_ = e.agent.State()
					_ = e.agent.Calls()
				case 5:
					e.do("POST", "/_emu/faults", `{"latency":"1ms","count":1}`)
				}
			}
		})
	}
	wg.Wait()
	st := e.agent.State()
	if len(st.Services[0].Backends) < 3 || len(st.Devices["dpdk0"]) < 2 {
		t.Fatalf("state after concurrent use: %+v", st)
	}
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

type failingWriter struct{ n atomic.Int32 }

func (f *failingWriter) Write([]byte) (int, error) {
	f.n.Add(1)
	return 0, io.ErrClosedPipe
}

func TestLogError(t *testing.T) {
	var w failingWriter
	e := newEnv(t, seedYAML, agenttest.WithLog(&w))
	e.must("GET", "/v2/vs", "", 200)
	e.must("GET", "/v2/vs", "", 200)
	if err := e.agent.LogErr(); err == nil || w.n.Load() != 1 {
		t.Fatalf("LogErr = %v after %d writes, want an error after 1 write", err, w.n.Load())
	}
	if n := len(e.agent.Calls()); n != 2 {
		t.Fatalf("%d calls recorded, want 2 despite the log error", n)
	}
}
