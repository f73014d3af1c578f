package dpvsagent_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Services only ever listed, never probed: TEST-NET addresses.
var (
	vs4 = subject.VSID{Addr: netip.MustParseAddr("192.0.2.1"), Proto: subject.TCP, Port: 80}
	vs6 = subject.VSID{Addr: netip.MustParseAddr("2001:db8::1"), Proto: subject.UDP, Port: 53}
)

const seedYAML = `
vips:
  - addr: 192.0.2.1
    services:
      - port: 80
        backends:
          - {ip: 192.0.2.10, port: 8080, weight: 100}
          - {ip: 192.0.2.11, port: 8080, weight: 50}
  - addr: 2001:db8::1
    services:
      - port: 53
        proto: udp
        backends:
          - {ip: "2001:db8::10", port: 53, weight: 7}
devices:
  dpdk0: [192.0.2.1]
`

func seeded(t *testing.T, opts ...dpvsagent.Option) (*agenttest.Agent, *dpvsagent.Client) {
	t.Helper()
	agent, url := agenttest.NewServer(t)
	s, err := agenttest.ParseSeed([]byte(seedYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Seed(s); err != nil {
		t.Fatal(err)
	}
	c, err := dpvsagent.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return agent, c
}

func TestNew(t *testing.T) {
	tests := []struct {
		name, addr, want, err string
	}{
		{name: "port_only_means_loopback", addr: ":8082", want: "http://127.0.0.1:8082"},
		{name: "host_port", addr: "127.0.0.1:8082", want: "http://127.0.0.1:8082"},
		{name: "ipv6_host_port", addr: "[::1]:8082", want: "http://[::1]:8082"},
		{name: "http_url", addr: "http://127.0.0.1:8082", want: "http://127.0.0.1:8082"},
		{name: "https_url_trailing_slash", addr: "https://agent.example:8443/", want: "https://agent.example:8443"},
		{name: "url_with_prefix", addr: "http://127.0.0.1:80/agent/", want: "http://127.0.0.1:80/agent"},
		{name: "url_port_only", addr: "http://:8082", want: "http://127.0.0.1:8082"},
		{name: "host_without_port", addr: "localhost", want: "http://localhost"},
		{name: "spaces_trimmed", addr: " :8082 ", want: "http://127.0.0.1:8082"},
		{name: "empty", addr: "", err: "empty"},
		{name: "other_scheme", addr: "ftp://127.0.0.1:21", err: `scheme "ftp"`},
		{name: "no_host", addr: "http://", err: "no host or port"},
		{name: "empty_port", addr: "127.0.0.1:", err: "empty port"},
		{name: "credentials", addr: "http://u:p@127.0.0.1:1", err: "host:port"},
		{name: "query", addr: "http://127.0.0.1:1/?x=1", err: "host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := dpvsagent.New(tt.addr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("New(%q) error = %v, want it to contain %q", tt.addr, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.BaseURL(); got != tt.want {
				t.Fatalf("New(%q).BaseURL() = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestPathID(t *testing.T) {
	tests := []struct {
		name string
		vs   subject.VSID
		want string
	}{
		{name: "ipv4_tcp", vs: vs4, want: "192.0.2.1-80-tcp"},
		{name: "ipv6_udp_raw", vs: vs6, want: "2001:db8::1-53-udp"},
		{name: "ipv6_upper_input_lowered", vs: subject.VSID{Addr: netip.MustParseAddr("2001:DB8::A"), Proto: subject.TCP, Port: 443}, want: "2001:db8::a-443-tcp"},
		{name: "mapped_unmapped", vs: subject.VSID{Addr: netip.MustParseAddr("::ffff:192.0.2.1"), Proto: subject.TCP, Port: 1}, want: "192.0.2.1-1-tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dpvsagent.PathID(tt.vs); got != tt.want {
				t.Fatalf("PathID = %q, want %q", got, tt.want)
			}
			back, err := dpvsagent.ParsePathID(strings.ToUpper(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			if dpvsagent.PathID(back) != tt.want {
				t.Fatalf("ParsePathID(%q) = %v", strings.ToUpper(tt.want), back)
			}
		})
	}
	for _, bad := range []string{"", "192.0.2.1", "192.0.2.1-80", "192.0.2.1-x-tcp", "192.0.2.1-80-sctp", "nope-80-tcp", "fe80::1%eth0-80-tcp", "192.0.2.1-70000-tcp"} {
		t.Run("invalid_"+strings.NewReplacer(".", "_", "-", "_", ":", "_", "%", "_").Replace(bad), func(t *testing.T) {
			if _, err := dpvsagent.ParsePathID(bad); !errors.Is(err, dpvsagent.ErrPathID) {
				t.Fatalf("ParsePathID(%q) error = %v, want ErrPathID", bad, err)
			}
		})
	}
}

func TestListVS(t *testing.T) {
	_, c := seeded(t)
	vss, err := c.ListVS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(vss) != 2 {
		t.Fatalf("ListVS: %d services, want 2", len(vss))
	}
	byID := map[subject.VSID]dpvsagent.VirtualServer{}
	for _, vs := range vss {
		id, err := vs.ID()
		if err != nil {
			t.Fatal(err)
		}
		byID[id] = vs
	}
	v := byID[vs4]
	if _, err := v.VersionUint(); err != nil {
		t.Fatalf("version %q: %v", v.Version, err)
	}
	if v.Quic != "false" || v.SynProxy != "false" || v.DestCheck != nil || v.Af != dpvsagent.AfInet || v.SchedName != "wrr" {
		t.Fatalf("snapshot fields: %+v", v)
	}
	got := map[string]uint16{}
	for _, rs := range v.Backends() {
		got[fmt.Sprintf("%s:%d", rs.IP, rs.Port)] = rs.Weight
		if rs.Inhibited == nil || *rs.Inhibited || rs.Mode != "FNAT" {
			t.Fatalf("backend %+v: want inhibited=false, mode FNAT", rs)
		}
	}
	if got["192.0.2.10:8080"] != 100 || got["192.0.2.11:8080"] != 50 {
		t.Fatalf("backends %v", got)
	}
	if v6 := byID[vs6]; v6.Af != dpvsagent.AfInet6 || len(v6.RSs.Items) != 1 || v6.RSs.Items[0].Spec.Weight != 7 {
		t.Fatalf("ipv6 service %+v", v6)
	}
}

// TestListVSNeverZero checks that nothing but a real empty list is read as
// "no services" (DPVS bug §9.2.11).
func TestListVSNeverZero(t *testing.T) {
	const okVS = `{"Addr":"192.0.2.1","Port":80,"Proto":6,"Version":"1"`
	tests := []struct {
		name  string
		fault agenttest.Fault
		want  error
		code  int
		empty bool
	}{
		{name: "status_500", fault: agenttest.Fault{Status: 500}, want: dpvsagent.ErrStatus, code: 500},
		{name: "status_204", fault: agenttest.Fault{Status204: true}, want: dpvsagent.ErrStatus, code: 204},
		{name: "status_404_json", fault: agenttest.Fault{Status: 404, Body: `{"Items":[]}`}, want: dpvsagent.ErrNotFound, code: 404},
		{name: "empty_body_200", fault: agenttest.Fault{EmptyBody: true}, want: dpvsagent.ErrEmpty},
		{name: "whitespace_body", fault: agenttest.Fault{Status: 200, Body: " \n"}, want: dpvsagent.ErrEmpty},
		{name: "bad_json", fault: agenttest.Fault{Status: 200, Body: `{"Items":[`}, want: dpvsagent.ErrInvalid},
		{name: "json_null", fault: agenttest.Fault{Status: 200, Body: `null`}, want: dpvsagent.ErrInvalid},
		{name: "object_without_items", fault: agenttest.Fault{Status: 200, Body: `{}`}, want: dpvsagent.ErrInvalid},
		{name: "items_null", fault: agenttest.Fault{Status: 200, Body: `{"Items":null}`}, want: dpvsagent.ErrInvalid},
		{name: "html", fault: agenttest.Fault{Status: 200, Body: `<html>`}, want: dpvsagent.ErrInvalid},
		{name: "proto_sctp", fault: agenttest.Fault{Status: 200, Body: `{"Items":[{"Addr":"192.0.2.1","Port":80,"Proto":132,"Version":"1"}]}`}, want: dpvsagent.ErrInvalid},
		{name: "proto_missing", fault: agenttest.Fault{Status: 200, Body: `{"Items":[{"Addr":"192.0.2.1","Port":80,"Version":"1"}]}`}, want: dpvsagent.ErrInvalid},
		{name: "version_missing", fault: agenttest.Fault{Status: 200, Body: `{"Items":[{"Addr":"192.0.2.1","Port":80,"Proto":6}]}`}, want: dpvsagent.ErrInvalid},
		{name: "version_not_number", fault: agenttest.Fault{Status: 200, Body: `{"Items":[{"Addr":"192.0.2.1","Port":80,"Proto":6,"Version":"v1"}]}`}, want: dpvsagent.ErrInvalid},
		{name: "bad_vip", fault: agenttest.Fault{Status: 200, Body: `{"Items":[{"Addr":"192.0.2","Port":80,"Proto":6,"Version":"1"}]}`}, want: dpvsagent.ErrInvalid},
		{name: "bad_rs_ip", fault: agenttest.Fault{Status: 200, Body: `{"Items":[` + okVS + `,"RSs":{"Items":[{"Spec":{"ip":"x","port":1,"weight":1}}]}}]}`}, want: dpvsagent.ErrInvalid},
		{name: "proto_too_big", fault: agenttest.Fault{Status: 200, Body: `{"Items":[{"Addr":"192.0.2.1","Port":80,"Proto":262,"Version":"1"}]}`}, want: dpvsagent.ErrInvalid},
		{name: "items_empty", fault: agenttest.Fault{Status: 200, Body: `{"Items":[]}`}, empty: true},
		{name: "bare_empty_array", fault: agenttest.Fault{Status: 200, Body: `[]`}, empty: true},
		{name: "bare_array", fault: agenttest.Fault{Status: 200, Body: `[` + okVS + `}]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent, c := seeded(t)
			tt.fault.Count = 1
			if err := agent.AddFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			vss, err := c.ListVS(t.Context())
			switch {
			case tt.want != nil:
				if !errors.Is(err, tt.want) || vss != nil {
					t.Fatalf("ListVS = %v, %v; want nil, %v", vss, err, tt.want)
				}
				var se *dpvsagent.StatusError
				if tt.code != 0 && (!errors.As(err, &se) || se.Code != tt.code) {
					t.Fatalf("ListVS error %v: want status %d", err, tt.code)
				}
			case tt.empty:
				if err != nil || vss == nil || len(vss) != 0 {
					t.Fatalf("ListVS = %#v, %v; want an empty non-nil list", vss, err)
				}
			default:
				if err != nil || len(vss) != 1 {
					t.Fatalf("ListVS = %v, %v; want one service", vss, err)
				}
			}
			// The fault was used once: the next call sees the real list.
			if vss, err := c.ListVS(t.Context()); err != nil || len(vss) != 2 {
				t.Fatalf("ListVS after the fault = %d services, %v", len(vss), err)
			}
		})
	}
}

func TestGetVS(t *testing.T) {
	_, c := seeded(t)
	tests := []struct {
		name string
		vs   subject.VSID
		rss  int
		want error
	}{
		{name: "ipv4", vs: vs4, rss: 2},
		{name: "ipv6", vs: vs6, rss: 1},
		{name: "unknown_port", vs: subject.VSID{Addr: vs4.Addr, Proto: subject.TCP, Port: 81}, want: dpvsagent.ErrNotFound},
		{name: "unknown_proto_pair", vs: subject.VSID{Addr: vs4.Addr, Proto: subject.UDP, Port: 80}, want: dpvsagent.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := c.GetVS(t.Context(), tt.vs)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("GetVS error = %v, want %v", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id, _ := vs.ID(); id != tt.vs || len(vs.RSs.Items) != tt.rss || vs.Version == "" {
				t.Fatalf("GetVS = %+v", vs)
			}
		})
	}
	t.Run("invalid_id", func(t *testing.T) {
		if _, err := c.GetVS(t.Context(), subject.VSID{}); err == nil {
			t.Fatal("GetVS(zero id) succeeded")
		}
	})
}

func TestUpdateHealth(t *testing.T) {
	ctx := t.Context()
	agent, c := seeded(t)
	cur, err := c.GetVS(ctx, vs4)
	if err != nil {
		t.Fatal(err)
	}
	down := []dpvsagent.RealServer{{IP: "192.0.2.10", Port: 8080, Weight: 0, Inhibited: dpvsagent.Bool(true)}}

	t.Run("ok_200", func(t *testing.T) {
		fresh, err := c.UpdateHealth(ctx, vs4, cur.Version, down)
		if err != nil || fresh != nil {
			t.Fatalf("UpdateHealth = %v, %v; want nil, nil", fresh, err)
		}
		b := agent.State().Service(dpvsagent.PathID(vs4)).Backend("192.0.2.10", 8080)
		if b.Weight != 0 || !b.Inhibited || b.UserWeight != 100 || !b.SnapshotInhibited || b.HealthUpdates != 1 || b.Schedulable() {
			t.Fatalf("after down: %+v", b)
		}
		// The snapshot keeps the user's weight and its version.
		after, err := c.GetVS(ctx, vs4)
		if err != nil {
			t.Fatal(err)
		}
		if after.Version != cur.Version {
			t.Fatalf("health update moved the version %s → %s", cur.Version, after.Version)
		}
		for _, rs := range after.Backends() {
			if rs.IP == "192.0.2.10" && (rs.Weight != 100 || !rs.IsInhibited()) {
				t.Fatalf("snapshot backend %+v: want weight 100 inhibited", rs)
			}
		}
	})

	t.Run("key_is_lower_case_and_always_present", func(t *testing.T) {
		agent.ResetCalls()
		up := []dpvsagent.RealServer{{IP: "192.0.2.10", Port: 8080, Weight: 100}} // Inhibited nil
		if _, err := c.UpdateHealth(ctx, vs4, cur.Version, up); err != nil {
			t.Fatal(err)
		}
		calls := agent.Calls()
		if len(calls) != 1 {
			t.Fatalf("%d calls", len(calls))
		}
		body := string(calls[0].Body)
		if !strings.Contains(body, `"inhibited":false`) || strings.Contains(body, "Inhibited") {
			t.Fatalf("body %s: want a lower-case inhibited key, false", body)
		}
		if calls[0].Query != "version="+cur.Version || calls[0].Path != "/v2/vs/192.0.2.1-80-tcp/rs/health" {
			t.Fatalf("call %+v", calls[0])
		}
		if b := agent.State().Service("192.0.2.1-80-tcp").Backend("192.0.2.10", 8080); !b.Schedulable() || b.Weight != 100 {
			t.Fatalf("after up: %+v", b)
		}
	})

	t.Run("outdated_270_then_retry", func(t *testing.T) {
		if !agent.BumpVersion(dpvsagent.PathID(vs4)) {
			t.Fatal("BumpVersion: no such service")
		}
		fresh, err := c.UpdateHealth(ctx, vs4, cur.Version, down)
		if !errors.Is(err, dpvsagent.ErrOutdated) || fresh == nil {
			t.Fatalf("UpdateHealth = %v, %v; want a fresh service and ErrOutdated", fresh, err)
		}
		if fresh.Version == cur.Version || len(fresh.RSs.Items) != 2 {
			t.Fatalf("fresh service %+v", fresh)
		}
		if b := agent.State().Service("192.0.2.1-80-tcp").Backend("192.0.2.10", 8080); b.Inhibited {
			t.Fatal("270 applied the update")
		}
		if _, err := c.UpdateHealth(ctx, vs4, fresh.Version, down); err != nil {
			t.Fatalf("retry with the fresh version: %v", err)
		}
		if b := agent.State().Service("192.0.2.1-80-tcp").Backend("192.0.2.10", 8080); !b.Inhibited {
			t.Fatal("retry not applied")
		}
		cur = fresh
	})

	t.Run("outdated_via_fault", func(t *testing.T) {
		if err := agent.AddFault(agenttest.Fault{BumpVersion: true, Count: 1, PathPrefix: "/v2/vs/192.0.2.1-80-tcp/rs/health"}); err != nil {
			t.Fatal(err)
		}
		fresh, err := c.UpdateHealth(ctx, vs4, cur.Version, down)
		if !errors.Is(err, dpvsagent.ErrOutdated) {
			t.Fatalf("UpdateHealth error = %v, want ErrOutdated", err)
		}
		if _, err := c.UpdateHealth(ctx, vs4, fresh.Version, down); err != nil {
			t.Fatal(err)
		}
		cur = fresh
	})

	t.Run("outdated_unreadable_body", func(t *testing.T) {
		for _, f := range []agenttest.Fault{{Status: 270, Count: 1}, {Status: 270, Body: "{", Count: 1}, {Status: 270, Body: `{"Addr":"192.0.2.1","Port":80,"Proto":6}`, Count: 1}} {
			if err := agent.AddFault(f); err != nil {
				t.Fatal(err)
			}
			fresh, err := c.UpdateHealth(ctx, vs4, cur.Version, down)
			if !errors.Is(err, dpvsagent.ErrOutdated) || fresh != nil {
				t.Fatalf("270 with body %q: %v, %v; want nil, ErrOutdated", f.Body, fresh, err)
			}
			if !errors.Is(err, dpvsagent.ErrEmpty) && !errors.Is(err, dpvsagent.ErrInvalid) {
				t.Fatalf("270 with body %q: %v; want ErrEmpty or ErrInvalid too", f.Body, err)
			}
		}
	})

	t.Run("unknown_service_500", func(t *testing.T) {
		_, err := c.UpdateHealth(ctx, subject.VSID{Addr: vs4.Addr, Proto: subject.TCP, Port: 9}, "1", down)
		var se *dpvsagent.StatusError
		if !errors.As(err, &se) || se.Code != 500 || !errors.Is(err, dpvsagent.ErrStatus) {
			t.Fatalf("UpdateHealth error = %v, want status 500", err)
		}
	})

	t.Run("backend_gone_from_dpvs_460", func(t *testing.T) {
		gone := []dpvsagent.RealServer{{IP: "192.0.2.11", Port: 8080}}
		if err := c.DeleteRS(ctx, vs4, gone); err != nil {
			t.Fatal(err)
		}
		// Still listed (agent quirk), so the update passes the filter and
		// fails in DPVS.
		_, err := c.UpdateHealth(ctx, vs4, cur.Version, []dpvsagent.RealServer{{IP: "192.0.2.11", Port: 8080, Inhibited: dpvsagent.Bool(true)}})
		var se *dpvsagent.StatusError
		if !errors.As(err, &se) || se.Code != 460 {
			t.Fatalf("UpdateHealth error = %v, want status 460", err)
		}
	})

	t.Run("dpvs_refuses_461", func(t *testing.T) {
		if err := agent.AddFault(agenttest.Fault{Status: 461, Count: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := c.UpdateHealth(ctx, vs4, cur.Version, down)
		var se *dpvsagent.StatusError
		if !errors.As(err, &se) || se.Code != 461 || errors.Is(err, dpvsagent.ErrOutdated) {
			t.Fatalf("UpdateHealth error = %v, want status 461", err)
		}
	})

	t.Run("error_body_quoted", func(t *testing.T) {
		if err := agent.AddFault(agenttest.Fault{Status: 500, Body: `{"message":"ipc failed"}`, Count: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := c.UpdateHealth(ctx, vs4, cur.Version, down)
		if err == nil || !strings.Contains(err.Error(), "ipc failed") || !strings.Contains(err.Error(), "500") {
			t.Fatalf("UpdateHealth error = %v, want the status and body", err)
		}
	})
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name string
		opts []dpvsagent.Option
		ctx  func(t *testing.T) context.Context
	}{
		{name: "client_timeout", opts: []dpvsagent.Option{dpvsagent.WithTimeout(50 * time.Millisecond)},
			ctx: func(t *testing.T) context.Context { return t.Context() }},
		{name: "caller_deadline", ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			t.Cleanup(cancel)
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent, c := seeded(t, tt.opts...)
			if err := agent.AddFault(agenttest.Fault{Latency: agenttest.Duration(10 * time.Second)}); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := c.ListVS(tt.ctx(t))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("ListVS error = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("ListVS took %s", d)
			}
		})
	}
}

func TestDroppedConnection(t *testing.T) {
	agent, c := seeded(t)
	if err := agent.AddFault(agenttest.Fault{Drop: true, Count: 1}); err != nil {
		t.Fatal(err)
	}
	_, err := c.ListVS(t.Context())
	if err == nil || errors.Is(err, dpvsagent.ErrStatus) {
		t.Fatalf("ListVS error = %v, want a transport error", err)
	}
	if calls := agent.Calls(); len(calls) != 1 || calls[0].Status != 0 || !calls[0].Fault {
		t.Fatalf("calls %+v: want one dropped call", calls)
	}
}

func TestDeviceAddr(t *testing.T) {
	ctx := t.Context()
	agent, c := seeded(t)
	steps := []struct {
		name   string
		add    bool
		dev    string
		addr   string
		want   []string
		status int
	}{
		{name: "add", add: true, dev: "dpdk0", addr: "192.0.2.2", want: []string{"192.0.2.1/32", "192.0.2.2/32"}},
		{name: "add_again_is_200", add: true, dev: "dpdk0", addr: "192.0.2.2", want: []string{"192.0.2.1/32", "192.0.2.2/32"}},
		{name: "add_ipv6", add: true, dev: "dpdk0", addr: "2001:db8::1", want: []string{"192.0.2.1/32", "192.0.2.2/32", "2001:db8::1/128"}},
		{name: "delete", dev: "dpdk0", addr: "192.0.2.2", want: []string{"192.0.2.1/32", "2001:db8::1/128"}},
		{name: "delete_absent_is_200", dev: "dpdk0", addr: "192.0.2.2", want: []string{"192.0.2.1/32", "2001:db8::1/128"}},
		{name: "bad_address_500", add: true, dev: "dpdk0", addr: "192.0.2.300", status: 500, want: []string{"192.0.2.1/32", "2001:db8::1/128"}},
		{name: "device_name_escaped", add: true, dev: "bond0/x", addr: "192.0.2.5"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var err error
			if st.add {
				err = c.AddAddr(ctx, st.dev, st.addr)
			} else {
				err = c.DelAddr(ctx, st.dev, st.addr)
			}
			if st.status != 0 {
				var se *dpvsagent.StatusError
				if !errors.As(err, &se) || se.Code != st.status {
					t.Fatalf("error = %v, want status %d", err, st.status)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			got := agent.State().Devices[st.dev]
			if st.want == nil {
				st.want = []string{st.addr + "/32"}
			}
			if fmt.Sprint(got) != fmt.Sprint(st.want) {
				t.Fatalf("device %s addrs %v, want %v", st.dev, got, st.want)
			}
		})
	}
	t.Run("only_200_is_success", func(t *testing.T) {
		if err := agent.AddFault(agenttest.Fault{Status: 201, Count: 2}); err != nil {
			t.Fatal(err)
		}
		if err := c.AddAddr(ctx, "dpdk0", "192.0.2.9"); !errors.Is(err, dpvsagent.ErrStatus) {
			t.Fatalf("AddAddr on 201: %v, want ErrStatus", err)
		}
		if err := c.DelAddr(ctx, "dpdk0", "192.0.2.9"); !errors.Is(err, dpvsagent.ErrStatus) {
			t.Fatalf("DelAddr on 201: %v, want ErrStatus", err)
		}
	})
	t.Run("empty_arguments", func(t *testing.T) {
		if err := c.AddAddr(ctx, "", "192.0.2.9"); err == nil {
			t.Fatal("AddAddr with no device succeeded")
		}
		if err := c.DelAddr(ctx, "dpdk0", ""); err == nil {
			t.Fatal("DelAddr with no address succeeded")
		}
	})
}

func TestManagement(t *testing.T) {
	ctx := t.Context()
	agent, url := agenttest.NewServer(t)
	c, err := dpvsagent.New(url)
	if err != nil {
		t.Fatal(err)
	}
	version := func() string {
		t.Helper()
		vs, err := c.GetVS(ctx, vs6)
		if err != nil {
			t.Fatal(err)
		}
		return vs.Version
	}
	rs := func(ip string, w uint16) dpvsagent.RealServer {
		return dpvsagent.RealServer{IP: ip, Port: 53, Weight: w}
	}
	if err := c.PutVS(ctx, vs6, dpvsagent.VirtualServerSpec{SchedName: "rr", Quic: dpvsagent.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	v0 := version()
	steps := []struct {
		name        string
		do          func() error
		bumps       bool
		dataplane   []string
		snapshotRSs int
	}{
		{name: "put_existing_vs_keeps_version", do: func() error { return c.PutVS(ctx, vs6, dpvsagent.VirtualServerSpec{SchedName: "wlc"}) }},
		{name: "put_rs_adds", do: func() error {
			return c.PutRS(ctx, vs6, []dpvsagent.RealServer{rs("2001:db8::10", 1), rs("2001:db8::11", 2)})
		},
			bumps: true, dataplane: []string{"2001:db8::10", "2001:db8::11"}, snapshotRSs: 2},
		{name: "put_rs_updates", do: func() error { return c.PutRS(ctx, vs6, []dpvsagent.RealServer{rs("2001:db8::10", 5)}) },
			bumps: true, dataplane: []string{"2001:db8::10", "2001:db8::11"}, snapshotRSs: 2},
		{name: "delete_rs_leaves_snapshot", do: func() error { return c.DeleteRS(ctx, vs6, []dpvsagent.RealServer{rs("2001:db8::11", 0)}) },
			dataplane: []string{"2001:db8::10"}, snapshotRSs: 2},
		{name: "post_rs_replaces", do: func() error { return c.PostRS(ctx, vs6, []dpvsagent.RealServer{rs("2001:db8::12", 3)}) },
			bumps: true, dataplane: []string{"2001:db8::12"}, snapshotRSs: 1},
		{name: "post_rs_empty", do: func() error { return c.PostRS(ctx, vs6, nil) }, bumps: true, snapshotRSs: 0},
	}
	prev := v0
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatal(err)
			}
			v := version()
			if (v != prev) != st.bumps {
				t.Fatalf("version %s → %s, want bumped=%v", prev, v, st.bumps)
			}
			prev = v
			ss := agent.State().Service(dpvsagent.PathID(vs6))
			var live []string
			snap := 0
			for _, b := range ss.Backends {
				if b.InDataplane {
					live = append(live, b.IP)
				}
				if b.InSnapshot {
					snap++
				}
			}
			if fmt.Sprint(live) != fmt.Sprint(st.dataplane) || snap != st.snapshotRSs {
				t.Fatalf("dataplane %v (want %v), snapshot %d backends (want %d)", live, st.dataplane, snap, st.snapshotRSs)
			}
		})
	}
	t.Run("updated_fields", func(t *testing.T) {
		vs, err := c.GetVS(ctx, vs6)
		if err != nil {
			t.Fatal(err)
		}
		if vs.SchedName != "wlc" || vs.Quic != "false" {
			t.Fatalf("after the second PUT: sched %q quic %q", vs.SchedName, vs.Quic)
		}
	})
	t.Run("delete_vs", func(t *testing.T) {
		if err := c.DeleteVS(ctx, vs6); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteVS(ctx, vs6); !errors.Is(err, dpvsagent.ErrNotFound) {
			t.Fatalf("second DeleteVS: %v, want ErrNotFound", err)
		}
		if _, err := c.GetVS(ctx, vs6); !errors.Is(err, dpvsagent.ErrNotFound) {
			t.Fatalf("GetVS after delete: %v, want ErrNotFound", err)
		}
	})
	t.Run("rs_on_missing_service_500", func(t *testing.T) {
		err := c.PutRS(ctx, vs6, []dpvsagent.RealServer{rs("2001:db8::10", 1)})
		var se *dpvsagent.StatusError
		if !errors.As(err, &se) || se.Code != 500 {
			t.Fatalf("PutRS: %v, want status 500", err)
		}
	})
	t.Run("bad_rs_461", func(t *testing.T) {
		if err := c.PutVS(ctx, vs4, dpvsagent.VirtualServerSpec{}); err != nil {
			t.Fatal(err)
		}
		err := c.PutRS(ctx, vs4, []dpvsagent.RealServer{{IP: "not-an-ip", Port: 1}})
		var se *dpvsagent.StatusError
		if !errors.As(err, &se) || se.Code != 461 {
			t.Fatalf("PutRS: %v, want status 461", err)
		}
	})
}

func TestConcurrent(t *testing.T) {
	ctx := t.Context()
	agent, c := seeded(t)
	const workers, rounds = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := range workers {
		wg.Go(func() {
			ip := fmt.Sprintf("192.0.2.%d", 100+w)
			for i := range rounds {
				vs, err := c.GetVS(ctx, vs4)
				if err != nil {
					errs <- err
					continue
				}
				inh := i%2 == 1
				_, err = c.UpdateHealth(ctx, vs4, vs.Version, []dpvsagent.RealServer{{IP: "192.0.2.10", Port: 8080, Weight: 100, Inhibited: &inh}})
				if err != nil && !errors.Is(err, dpvsagent.ErrOutdated) {
					errs <- err
				}
				if _, err := c.ListVS(ctx); err != nil {
					errs <- err
				}
				if err := c.AddAddr(ctx, "dpdk1", ip); err != nil {
					errs <- err
				}
				if w == 0 && i%5 == 0 {
					agent.BumpVersion(dpvsagent.PathID(vs4))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := agent.State()
	if n := len(st.Devices["dpdk1"]); n != workers {
		t.Fatalf("dpdk1 has %d addresses, want %d", n, workers)
	}
	b := st.Service("192.0.2.1-80-tcp").Backend("192.0.2.10", 8080)
	if b.HealthUpdates == 0 || b.HealthUpdates > workers*rounds {
		t.Fatalf("backend applied %d health updates", b.HealthUpdates)
	}
	if got, want := len(agent.Calls()), workers*rounds*3; got < want {
		t.Fatalf("%d calls recorded, want at least %d", got, want)
	}
}
