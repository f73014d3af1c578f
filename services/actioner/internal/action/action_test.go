package action

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// testDeps has an agent client that is never called (nothing listens on
// port 1 and no test here applies an agent actioner).
func testDeps(t *testing.T) Deps {
	t.Helper()
	c, err := dpvsagent.New("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	return Deps{Agent: c}
}

// TestRegistry: every name New accepts builds an actioner with valid
// params, the names are exactly the DPVS ones, and Verdicter is offered by
// KernelRouteAddDelVerdict only, as in DPVS.
func TestRegistry(t *testing.T) {
	script := writeScript(t, t.TempDir(), "exit 0")
	valid := map[string]map[string]string{
		NameBlank:                     nil,
		NameBackendUpdate:             {},
		NameKernelRouteAddDel:         {"ifname": "lo"},
		NameKernelRouteAddDelVerdict:  {"ifname": "lo", "with-route": "yes"},
		NameDpvsAddrAddDel:            {"dpvs-ifname": "dpdk0"},
		NameDpvsAddrKernelRouteAddDel: {"ifname": "lo", "dpvs-ifname": "dpdk0"},
		NameScript:                    {"script": script},
	}
	want := []string{"Blank", "BackendUpdate", "KernelRouteAddDel", "KernelRouteAddDelVerdict",
		"DpvsAddrAddDel", "DpvsAddrKernelRouteAddDel", "Script"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	for _, name := range Names() {
		t.Run(strings.ToLower(name), func(t *testing.T) {
			params, ok := valid[name]
			if !ok {
				t.Fatalf("no valid params for %s in this test", name)
			}
			a, err := New(name, params, testDeps(t))
			if err != nil || a == nil {
				t.Fatalf("New(%s, %v) = %v, %v", name, params, a, err)
			}
			if _, ok := a.(Verdicter); ok != (name == NameKernelRouteAddDelVerdict) {
				t.Errorf("%s implements Verdicter: %v", name, ok)
			}
		})
	}
	t.Run("unknown_name", func(t *testing.T) {
		for _, name := range []string{"", "blank", "Nope", "BackendUpdate "} {
			if _, err := New(name, nil, testDeps(t)); !errors.Is(err, ErrUnknown) {
				t.Errorf("New(%q) error = %v, want ErrUnknown", name, err)
			}
		}
	})
	t.Run("agent_required", func(t *testing.T) {
		for _, name := range []string{NameBackendUpdate, NameDpvsAddrAddDel, NameDpvsAddrKernelRouteAddDel} {
			if _, err := New(name, valid[name], Deps{}); !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), name) {
				t.Errorf("New(%s) without agent: %v, want ErrNoAgent naming it", name, err)
			}
		}
	})
}

func TestParams(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "exit 0")
	noExec := filepath.Join(dir, "noexec.sh")
	if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		actioner string
		params   map[string]string
		wantKey  string // "" = valid
	}{
		{name: "backend_update_takes_no_params", actioner: NameBackendUpdate, params: map[string]string{"x": "1"}, wantKey: "x"},
		{name: "kernel_ifname_required", actioner: NameKernelRouteAddDel, params: map[string]string{}, wantKey: "ifname"},
		{name: "kernel_ifname_blank", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": " "}, wantKey: "ifname"},
		{name: "kernel_ifname_too_long", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "abcdefghijklmnop"}, wantKey: "ifname"},
		{name: "kernel_ifname_slash", actioner: NameKernelRouteAddDelVerdict, params: map[string]string{"ifname": "a/b"}, wantKey: "ifname"},
		{name: "kernel_with_route_bad", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "with-route": "maybe"}, wantKey: "with-route"},
		{name: "kernel_with_route_upper_case", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "with-route": "TRUE"}},
		{name: "kernel_with_route_no", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "with-route": "no"}},
		{name: "kernel_unknown_key", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "dpvs-ifname": "dpdk0"}, wantKey: "dpvs-ifname"},
		{name: "kernel_netns_name", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "netns": "lb"}},
		{name: "kernel_netns_path", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "netns": "/proc/1/ns/net"}},
		{name: "kernel_netns_relative_path", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "netns": "a/b"}, wantKey: "netns"},
		{name: "kernel_netns_empty", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo", "netns": ""}, wantKey: "netns"},
		{name: "dpvs_addr_required", actioner: NameDpvsAddrAddDel, params: nil, wantKey: "dpvs-ifname"},
		{name: "dpvs_addr_slash", actioner: NameDpvsAddrAddDel, params: map[string]string{"dpvs-ifname": "dpdk0/x"}, wantKey: "dpvs-ifname"},
		{name: "dpvs_addr_no_ifname", actioner: NameDpvsAddrAddDel, params: map[string]string{"dpvs-ifname": "dpdk0", "ifname": "lo"}, wantKey: "ifname"},
		{name: "dpvs_addr_kernel_route_without_with_route", actioner: NameDpvsAddrKernelRouteAddDel,
			params: map[string]string{"ifname": "lo", "dpvs-ifname": "dpdk0.kni"}},
		{name: "dpvs_addr_kernel_route_needs_dpvs_ifname", actioner: NameDpvsAddrKernelRouteAddDel,
			params: map[string]string{"ifname": "lo"}, wantKey: "dpvs-ifname"},
		{name: "dpvs_addr_kernel_route_needs_ifname", actioner: NameDpvsAddrKernelRouteAddDel,
			params: map[string]string{"dpvs-ifname": "dpdk0"}, wantKey: "ifname"},
		{name: "dpvs_addr_kernel_route_bad_with_route", actioner: NameDpvsAddrKernelRouteAddDel,
			params: map[string]string{"ifname": "lo", "dpvs-ifname": "dpdk0", "with-route": "1"}, wantKey: "with-route"},
		{name: "script_required", actioner: NameScript, params: map[string]string{"args": "a"}, wantKey: "script"},
		{name: "script_missing_file", actioner: NameScript, params: map[string]string{"script": filepath.Join(dir, "nope.sh")}, wantKey: "script"},
		{name: "script_not_executable", actioner: NameScript, params: map[string]string{"script": noExec}, wantKey: "script"},
		{name: "script_is_directory", actioner: NameScript, params: map[string]string{"script": dir}, wantKey: "script"},
		{name: "script_not_in_path", actioner: NameScript, params: map[string]string{"script": "hm-no-such-script"}, wantKey: "script"},
		{name: "script_in_path", actioner: NameScript, params: map[string]string{"script": "true"}},
		{name: "script_args_blank", actioner: NameScript, params: map[string]string{"script": script, "args": "  "}, wantKey: "args"},
		{name: "script_unknown_key", actioner: NameScript, params: map[string]string{"script": script, "timeout": "1s"}, wantKey: "timeout"},
		{name: "blank_any_params", actioner: NameBlank, params: map[string]string{"whatever": "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.actioner, tc.params, testDeps(t))
			if tc.wantKey == "" {
				if err != nil {
					t.Fatalf("New(%s, %v): %v", tc.actioner, tc.params, err)
				}
				return
			}
			if !errors.Is(err, ErrParams) {
				t.Fatalf("New(%s, %v) error = %v, want ErrParams", tc.actioner, tc.params, err)
			}
			if msg := err.Error(); !strings.Contains(msg, `param "`+tc.wantKey+`"`) || !strings.Contains(msg, tc.actioner) {
				t.Errorf("error %q does not name %s and param %q", msg, tc.actioner, tc.wantKey)
			}
		})
	}
}

func TestRequestErrors(t *testing.T) {
	script := writeScript(t, t.TempDir(), "exit 0")
	va := Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.7")}
	tests := []struct {
		name     string
		actioner string
		params   map[string]string
		req      Request
	}{
		{name: "kernel_apply_op", actioner: NameKernelRouteAddDel, params: map[string]string{"ifname": "lo"},
			req: Request{Op: OpApply, VIP: va.VIP, Port: 80, Proto: subject.TCP}},
		{name: "kernel_no_vip", actioner: NameKernelRouteAddDelVerdict, params: map[string]string{"ifname": "lo"}, req: Request{Op: OpDown}},
		{name: "dpvs_addr_apply_op", actioner: NameDpvsAddrAddDel, params: map[string]string{"dpvs-ifname": "dpdk0"}, req: Request{Op: OpApply, VIP: va.VIP}},
		{name: "dpvs_addr_kernel_route_empty_op", actioner: NameDpvsAddrKernelRouteAddDel,
			params: map[string]string{"ifname": "lo", "dpvs-ifname": "dpdk0"}, req: Request{VIP: va.VIP}},
		{name: "backend_update_up_op", actioner: NameBackendUpdate, req: Request{Op: OpUp, VIP: va.VIP, Port: 80, Proto: subject.TCP}},
		{name: "backend_update_no_proto", actioner: NameBackendUpdate, req: Request{Op: OpApply, VIP: va.VIP, Port: 80}},
		{name: "backend_update_backend_without_address", actioner: NameBackendUpdate,
			req: Request{Op: OpApply, VIP: va.VIP, Port: 80, Proto: subject.TCP, Backends: []Backend{{Port: 80}}}},
		{name: "script_no_vip", actioner: NameScript, params: map[string]string{"script": script}, req: Request{Op: OpUp}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.actioner, tc.params, testDeps(t))
			if err != nil {
				t.Fatal(err)
			}
			err = a.Apply(testCtx(t), tc.req)
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrRequest) || !IsPermanent(err) {
				t.Fatalf("Apply = %v, want a permanent *Error wrapping ErrRequest", err)
			}
			if e.Actioner != tc.actioner || !strings.HasPrefix(err.Error(), "actioner: "+tc.actioner+" ") {
				t.Errorf("error %q does not name %s", err, tc.actioner)
			}
		})
	}
}

func TestRequestObject(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{name: "va_ipv4", req: Request{VIP: netip.MustParseAddr("198.51.100.7")}, want: "198.51.100.7"},
		{name: "va_mapped", req: Request{VIP: netip.MustParseAddr("::ffff:198.51.100.7")}, want: "198.51.100.7"},
		{name: "vs_ipv6", req: Request{VIP: netip.MustParseAddr("2001:db8::7"), Port: 53, Proto: subject.UDP}, want: "2001:db8::7-UDP-53"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.Object(); got != tc.want {
				t.Errorf("Object() = %q, want %q", got, tc.want)
			}
		})
	}
}
