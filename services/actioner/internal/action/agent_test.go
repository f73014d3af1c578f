package action

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// The VS and backends the agent tests use (TEST-NET addresses: they only
// ever appear in request bodies to the emulator on loopback).
var (
	testVS  = subject.VSID{Addr: netip.MustParseAddr("192.0.2.1"), Proto: subject.TCP, Port: 80}
	testRS1 = netip.MustParseAddr("192.0.2.11")
	testRS2 = netip.MustParseAddr("192.0.2.12")
	testRS3 = netip.MustParseAddr("192.0.2.13")
)

const testDpvsIf = "dpdk0"

// newAgent starts an emulated dpvs-agent on loopback with testVS and its
// backends (user weights 100, 200, 300), and returns a client for it.
func newAgent(t *testing.T) (*agenttest.Agent, *dpvsagent.Client) {
	t.Helper()
	emu, url := agenttest.NewServer(t)
	c, err := dpvsagent.New(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutVS(testCtx(t), testVS, dpvsagent.VirtualServerSpec{SchedName: "wrr"}); err != nil {
		t.Fatalf("create %s: %v", testVS, err)
	}
	setRS(t, c, rs(testRS1, 100, false), rs(testRS2, 200, false), rs(testRS3, 300, false))
	return emu, c
}

func rs(a netip.Addr, w uint16, inhibited bool) dpvsagent.RealServer {
	return dpvsagent.RealServer{IP: a.String(), Port: 8080, Weight: w, Inhibited: dpvsagent.Bool(inhibited), Mode: "FNAT"}
}

// setRS adds or updates real servers by hand, as an operator would (it
// moves the service's version).
func setRS(t *testing.T, c *dpvsagent.Client, rss ...dpvsagent.RealServer) {
	t.Helper()
	if err := c.PutRS(testCtx(t), testVS, rss); err != nil {
		t.Fatalf("put real servers: %v", err)
	}
}

func version(t *testing.T, emu *agenttest.Agent) string {
	t.Helper()
	s := emu.State().Service(dpvsagent.PathID(testVS))
	if s == nil || s.Version == "" {
		t.Fatalf("service %s not in the emulator", testVS)
	}
	return s.Version
}

// backends renders the dataplane state of testVS: "ip weight=W inhibited=B".
func backends(t *testing.T, emu *agenttest.Agent) []string {
	t.Helper()
	s := emu.State().Service(dpvsagent.PathID(testVS))
	if s == nil {
		t.Fatalf("service %s not in the emulator", testVS)
	}
	var out []string
	for _, b := range s.Backends {
		if b.InDataplane {
			out = append(out, fmt.Sprintf("%s weight=%d inhibited=%v", b.IP, b.Weight, b.Inhibited))
		}
	}
	slices.Sort(out)
	return out
}

func apply(version string, bes ...Backend) Request {
	return Request{Op: OpApply, VIP: testVS.Addr, Port: testVS.Port, Proto: testVS.Proto, Version: version, Backends: bes}
}

func up(a netip.Addr, w uint16) Backend { return Backend{Addr: a, Port: 8080, Weight: w} }
func down(a netip.Addr) Backend         { return Backend{Addr: a, Port: 8080, Inhibited: true} }

// healthCalls are the recorded PUT …/rs/health calls.
func healthCalls(emu *agenttest.Agent) []agenttest.Call {
	var out []agenttest.Call
	for _, c := range emu.Calls() {
		if strings.HasSuffix(c.Path, "/rs/health") {
			out = append(out, c)
		}
	}
	return out
}

func newBackendUpdateT(t *testing.T, c *dpvsagent.Client) Actioner {
	t.Helper()
	a, err := New(NameBackendUpdate, nil, Deps{Agent: c})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBackendUpdate(t *testing.T) {
	initial := []string{"192.0.2.11 weight=100 inhibited=false", "192.0.2.12 weight=200 inhibited=false", "192.0.2.13 weight=300 inhibited=false"}
	tests := []struct {
		name string
		// prepare may change the agent behind the request's back; it
		// returns the request to apply.
		prepare       func(t *testing.T, emu *agenttest.Agent, c *dpvsagent.Client) Request
		wantErr       error // nil = success
		wantPermanent bool
		wantState     []string
		wantCalls     int      // health update calls made
		wantCurrent   bool     // the last call carried the service's current version
		wantLastBody  []string // substrings of the last call's body
		wantNotInBody []string
	}{
		{
			name: "success",
			prepare: func(t *testing.T, emu *agenttest.Agent, _ *dpvsagent.Client) Request {
				return apply(version(t, emu), down(testRS1), up(testRS2, 200))
			},
			wantState: []string{"192.0.2.11 weight=0 inhibited=true", "192.0.2.12 weight=200 inhibited=false", "192.0.2.13 weight=300 inhibited=false"},
			wantCalls: 1, wantCurrent: true, wantLastBody: []string{`"ip":"192.0.2.11","port":8080,"weight":0,"inhibited":true`},
			wantNotInBody: []string{"192.0.2.13"},
		},
		{
			name: "no_backends_no_call",
			prepare: func(t *testing.T, emu *agenttest.Agent, _ *dpvsagent.Client) Request {
				return apply(version(t, emu))
			},
			wantState: initial,
		},
		{
			// An operator changed rs2's weight and dropped rs3 meanwhile: the
			// 270 brings the new version, rs3 is dropped from the request and
			// rs2 comes up with the operator's new weight, not the stale one.
			name: "outdated_then_success_with_new_version",
			prepare: func(t *testing.T, emu *agenttest.Agent, c *dpvsagent.Client) Request {
				stale := version(t, emu)
				if err := c.PostRS(testCtx(t), testVS, []dpvsagent.RealServer{rs(testRS1, 100, false), rs(testRS2, 50, false)}); err != nil {
					t.Fatal(err)
				}
				return apply(stale, down(testRS1), up(testRS2, 200), down(testRS3))
			},
			wantState: []string{"192.0.2.11 weight=0 inhibited=true", "192.0.2.12 weight=50 inhibited=false"},
			wantCalls: 2, wantCurrent: true, wantLastBody: []string{`"ip":"192.0.2.12","port":8080,"weight":50,"inhibited":false`},
			wantNotInBody: []string{"192.0.2.13"},
		},
		{
			name: "outdated_every_time_gives_up",
			prepare: func(t *testing.T, emu *agenttest.Agent, _ *dpvsagent.Client) Request {
				if err := emu.AddFault(agenttest.Fault{Method: http.MethodPut, PathPrefix: "/v2/vs/", BumpVersion: true}); err != nil {
					t.Fatal(err)
				}
				return apply(version(t, emu), down(testRS1))
			},
			wantErr: dpvsagent.ErrOutdated, wantState: initial, wantCalls: MaxOutdatedRetries + 1,
		},
		{
			name: "outdated_and_every_backend_gone",
			prepare: func(t *testing.T, emu *agenttest.Agent, c *dpvsagent.Client) Request {
				stale := version(t, emu)
				if err := c.PostRS(testCtx(t), testVS, []dpvsagent.RealServer{rs(testRS1, 100, false)}); err != nil {
					t.Fatal(err)
				}
				return apply(stale, down(testRS3))
			},
			wantState: []string{"192.0.2.11 weight=100 inhibited=false"},
			wantCalls: 1,
		},
		{
			name: "status_500_is_retryable",
			prepare: func(t *testing.T, emu *agenttest.Agent, _ *dpvsagent.Client) Request {
				if err := emu.AddFault(agenttest.Fault{PathPrefix: "/v2/vs/", Status: 500, Count: 1}); err != nil {
					t.Fatal(err)
				}
				return apply(version(t, emu), down(testRS1))
			},
			wantErr: dpvsagent.ErrStatus, wantState: initial, wantCalls: 1,
		},
		{
			name: "unknown_service_is_an_error",
			prepare: func(t *testing.T, emu *agenttest.Agent, _ *dpvsagent.Client) Request {
				r := apply(version(t, emu), down(testRS1))
				r.Port = 81
				return r
			},
			wantErr: dpvsagent.ErrStatus, wantState: initial, wantCalls: 1,
		},
		{
			name: "status_400_is_permanent",
			prepare: func(t *testing.T, emu *agenttest.Agent, _ *dpvsagent.Client) Request {
				if err := emu.AddFault(agenttest.Fault{PathPrefix: "/v2/vs/", Status: 400, Count: 1}); err != nil {
					t.Fatal(err)
				}
				return apply(version(t, emu), down(testRS1))
			},
			wantErr: dpvsagent.ErrStatus, wantPermanent: true, wantState: initial, wantCalls: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emu, c := newAgent(t)
			req := tc.prepare(t, emu, c)
			emu.ResetCalls()
			err := newBackendUpdateT(t, c).Apply(testCtx(t), req)
			emu.ClearFaults()
			if tc.wantErr == nil && err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tc.wantErr != nil {
				var e *Error
				if !errors.As(err, &e) || !errors.Is(err, tc.wantErr) || IsPermanent(err) != tc.wantPermanent {
					t.Fatalf("Apply = %v, want *Error wrapping %v, permanent %v", err, tc.wantErr, tc.wantPermanent)
				}
				if !strings.HasPrefix(err.Error(), "actioner: BackendUpdate "+req.Object()+" APPLY: ") {
					t.Errorf("error %q does not name the actioner and VS", err)
				}
			}
			if got := backends(t, emu); !slices.Equal(got, tc.wantState) {
				t.Errorf("dataplane %q, want %q", got, tc.wantState)
			}
			calls := healthCalls(emu)
			if len(calls) != tc.wantCalls {
				t.Fatalf("%d health calls, want %d: %+v", len(calls), tc.wantCalls, calls)
			}
			if len(calls) == 0 {
				return
			}
			last := calls[len(calls)-1]
			if tc.wantCurrent && last.Query != "version="+version(t, emu) {
				t.Errorf("last call query %q, want the current version %q", last.Query, version(t, emu))
			}
			for _, s := range tc.wantLastBody {
				if !strings.Contains(string(last.Body), s) {
					t.Errorf("last body %s lacks %s", last.Body, s)
				}
			}
			for _, s := range tc.wantNotInBody {
				if strings.Contains(string(last.Body), s) {
					t.Errorf("last body %s has %s", last.Body, s)
				}
			}
		})
	}
}

// closedAgent is a client for an agent that was there and is gone.
func closedAgent(t *testing.T) *dpvsagent.Client {
	t.Helper()
	srv := httptest.NewServer(agenttest.New())
	srv.Close()
	c, err := dpvsagent.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAgentDown: every agent actioner reports a retryable error when the
// agent does not answer.
func TestAgentDown(t *testing.T) {
	c := closedAgent(t)
	tests := []struct {
		name     string
		actioner string
		params   map[string]string
		req      Request
	}{
		{name: "backend_update", actioner: NameBackendUpdate, req: apply("1", down(testRS1))},
		{name: "dpvs_addr", actioner: NameDpvsAddrAddDel, params: map[string]string{"dpvs-ifname": testDpvsIf},
			req: Request{Op: OpUp, VIP: testVS.Addr}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.actioner, tc.params, Deps{Agent: c})
			if err != nil {
				t.Fatal(err)
			}
			err = a.Apply(testCtx(t), tc.req)
			if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "dpvs-agent") {
				t.Fatalf("Apply = %v, want a retryable dpvs-agent error", err)
			}
		})
	}
}

// deviceAddrs renders the emulator's addresses of the DPVS device.
func deviceAddrs(emu *agenttest.Agent) []string {
	var out []string
	for _, a := range emu.State().Devices[testDpvsIf] {
		out = append(out, "dpvs "+a)
	}
	return out
}

func TestDpvsAddr(t *testing.T) {
	tests := []struct {
		name      string
		vip       string
		faults    []agenttest.Fault
		ops       []Op
		want      []string
		wantErr   bool
		wantCalls []string // method path
	}{
		{name: "up_ipv4", vip: "192.0.2.1", ops: []Op{OpUp}, want: []string{"dpvs 192.0.2.1/32"},
			wantCalls: []string{"PUT /v2/device/dpdk0/addr"}},
		{name: "up_down_ipv6", vip: "2001:db8::1", ops: []Op{OpUp, OpDown}, want: nil,
			wantCalls: []string{"PUT /v2/device/dpdk0/addr", "DELETE /v2/device/dpdk0/addr"}},
		{name: "down_when_absent", vip: "192.0.2.1", ops: []Op{OpDown}, want: nil,
			wantCalls: []string{"DELETE /v2/device/dpdk0/addr"}},
		{name: "status_500", vip: "192.0.2.1", ops: []Op{OpUp}, wantErr: true,
			faults:    []agenttest.Fault{{Status: 500}},
			wantCalls: []string{"PUT /v2/device/dpdk0/addr"}},
		{name: "status_201_is_not_success", vip: "192.0.2.1", ops: []Op{OpUp}, wantErr: true,
			faults:    []agenttest.Fault{{Status: 201}},
			wantCalls: []string{"PUT /v2/device/dpdk0/addr"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emu, url := agenttest.NewServer(t, agenttest.WithFaults(tc.faults...))
			c, err := dpvsagent.New(url)
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(NameDpvsAddrAddDel, map[string]string{"dpvs-ifname": testDpvsIf}, Deps{Agent: c})
			if err != nil {
				t.Fatal(err)
			}
			for _, op := range tc.ops {
				err = a.Apply(testCtx(t), Request{Op: op, VIP: netip.MustParseAddr(tc.vip)})
			}
			if (err != nil) != tc.wantErr || IsPermanent(err) {
				t.Fatalf("Apply = %v, want error %v (retryable)", err, tc.wantErr)
			}
			if got := deviceAddrs(emu); !slices.Equal(got, tc.want) {
				t.Errorf("device addresses %q, want %q", got, tc.want)
			}
			var calls []string
			for _, c := range emu.Calls() {
				calls = append(calls, c.Method+" "+c.Path)
				if want := `{"addr":"` + tc.vip + `"}`; string(c.Body) != want {
					t.Errorf("body %s, want %s (no prefix length)", c.Body, want)
				}
			}
			if !slices.Equal(calls, tc.wantCalls) {
				t.Errorf("calls %q, want %q", calls, tc.wantCalls)
			}
		})
	}
}

// TestDpvsAddrKernelRoute: kernel first, then dpvs-agent, for UP and DOWN;
// the first failure stops the action.
func TestDpvsAddrKernelRoute(t *testing.T) {
	ns := newTestNS(t)
	vip := netip.MustParseAddr("198.51.100.8")
	tests := []struct {
		name       string
		ifname     string
		fault      *agenttest.Fault
		op         Op
		wantErr    string
		wantKernel []string
		wantDpvs   []string
		wantCalls  int
	}{
		{name: "kernel_failure_skips_agent", ifname: "hm-nope", op: OpUp,
			wantErr: `kernel: interface "hm-nope" not found`, wantCalls: 0},
		{name: "agent_failure_after_kernel", ifname: testLink, op: OpUp, fault: &agenttest.Fault{Status: 500},
			wantErr: "dpvs-agent", wantKernel: []string{"addr 198.51.100.8/32"}, wantCalls: 1},
		{name: "up", ifname: testLink, op: OpUp,
			wantKernel: []string{"addr 198.51.100.8/32"}, wantDpvs: []string{"dpvs 198.51.100.8/32"}, wantCalls: 1},
		{name: "down", ifname: testLink, op: OpDown, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emu, url := agenttest.NewServer(t)
			if tc.fault != nil {
				if err := emu.AddFault(*tc.fault); err != nil {
					t.Fatal(err)
				}
			}
			c, err := dpvsagent.New(url)
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(NameDpvsAddrKernelRouteAddDel,
				map[string]string{"ifname": tc.ifname, "dpvs-ifname": testDpvsIf, "netns": ns.name}, Deps{Agent: c})
			if err != nil {
				t.Fatal(err)
			}
			err = a.Apply(testCtx(t), Request{Op: tc.op, VIP: vip})
			if tc.wantErr == "" && err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || IsPermanent(err)) {
				t.Fatalf("Apply = %v, want a retryable error saying %q", err, tc.wantErr)
			}
			if got := ns.state(t); !slices.Equal(got, tc.wantKernel) {
				t.Errorf("kernel %q, want %q", got, tc.wantKernel)
			}
			if got := deviceAddrs(emu); !slices.Equal(got, tc.wantDpvs) {
				t.Errorf("dpvs-agent %q, want %q", got, tc.wantDpvs)
			}
			if got := len(emu.Calls()); got != tc.wantCalls {
				t.Errorf("%d agent calls, want %d", got, tc.wantCalls)
			}
		})
	}
}

// agentAddr adds or removes a DPVS device address by hand.
func agentAddr(t *testing.T, c *dpvsagent.Client, op Op, addr string) {
	t.Helper()
	call := c.AddAddr
	if op == OpDown {
		call = c.DelAddr
	}
	if err := call(testCtx(t), testDpvsIf, addr); err != nil {
		t.Fatalf("%s %s on %s by hand: %v", op, addr, testDpvsIf, err)
	}
}
