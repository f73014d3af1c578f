package action

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixture is one actioner set up against something whose state the test
// can read: a network namespace, an emulated dpvs-agent, a file.
type fixture struct {
	act   Actioner
	state func(t *testing.T) []string
	steps []step
	// tampers change the state by hand behind the actioner's back (undo an
	// UP, redo what a DOWN removed); re-applying must heal it.
	tampers []tamper
}

// tamper is a change by hand to the state steps[step] leaves.
type tamper struct {
	step int
	do   func(t *testing.T)
}

type step struct {
	req  Request
	want []string // state after the request, applied once or twice
}

type conformanceCase struct {
	name     string
	actioner string
	setup    func(t *testing.T) fixture
}

// vaSteps is the script every VA actioner runs: UP, DOWN, DOWN again, UP,
// DOWN, with up/down the expected states.
func vaSteps(vip string, up, down []string) []step {
	a := netip.MustParseAddr(vip)
	u, d := Request{Op: OpUp, VIP: a}, Request{Op: OpDown, VIP: a}
	return []step{{u, up}, {d, down}, {d, down}, {u, up}, {d, down}}
}

func kernelCase(name, actioner, vip string, withRoute bool) conformanceCase {
	return conformanceCase{name: name, actioner: actioner, setup: func(t *testing.T) fixture {
		ns := newTestNS(t)
		params := map[string]string{"ifname": testLink, "netns": ns.name}
		a := netip.MustParseAddr(vip)
		cidr := netip.PrefixFrom(a, a.BitLen()).String()
		up := []string{"addr " + cidr}
		if withRoute {
			params["with-route"] = "yes"
			up = append(up, "route "+cidr)
		}
		act, err := New(actioner, params, Deps{})
		if err != nil {
			t.Fatalf("New(%s, %v): %v", actioner, params, err)
		}
		return fixture{
			act:   act,
			state: ns.state,
			steps: vaSteps(vip, up, nil),
			tampers: []tamper{
				{0, func(t *testing.T) { ns.delAddr(t, cidr) }},
				{1, func(t *testing.T) { ns.addAddr(t, cidr) }},
			},
		}
	}}
}

func conformanceCases() []conformanceCase {
	return []conformanceCase{
		{name: "blank", actioner: NameBlank, setup: func(t *testing.T) fixture {
			act, err := New(NameBlank, map[string]string{"anything": "goes"}, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			return fixture{act: act, state: func(*testing.T) []string { return nil }, steps: vaSteps("198.51.100.7", nil, nil)}
		}},
		{name: "script", actioner: NameScript, setup: func(t *testing.T) fixture {
			dir := t.TempDir()
			stateFile := filepath.Join(dir, "state")
			path := writeScript(t, dir, `printf '%s %s\n' "$2" "$3" > "$1"`)
			act, err := New(NameScript, map[string]string{"script": path, "args": stateFile}, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			state := func(t *testing.T) []string {
				b, err := os.ReadFile(stateFile)
				if err != nil {
					t.Fatalf("script state: %v", err)
				}
				return strings.Fields(string(b))
			}
			return fixture{act: act, state: state, steps: vaSteps("198.51.100.7",
				[]string{"UP", "198.51.100.7"}, []string{"DOWN", "198.51.100.7"})}
		}},
		{name: "backend_update", actioner: NameBackendUpdate, setup: func(t *testing.T) fixture {
			emu, c := newAgent(t)
			v := version(t, emu)
			const (
				rs1Down = "192.0.2.11 weight=0 inhibited=true"
				rs1Up   = "192.0.2.11 weight=100 inhibited=false"
				rs2Down = "192.0.2.12 weight=0 inhibited=true"
				rs2Up   = "192.0.2.12 weight=200 inhibited=false"
				rs3Up   = "192.0.2.13 weight=300 inhibited=false"
			)
			return fixture{
				act:   newBackendUpdateT(t, c),
				state: func(t *testing.T) []string { return backends(t, emu) },
				steps: []step{
					{apply(v, down(testRS1)), []string{rs1Down, rs2Up, rs3Up}},
					{apply(v, up(testRS1, 100)), []string{rs1Up, rs2Up, rs3Up}},
					{apply(v, up(testRS1, 100), down(testRS2)), []string{rs1Up, rs2Down, rs3Up}},
					{apply(v, down(testRS1), up(testRS2, 200)), []string{rs1Down, rs2Up, rs3Up}},
				},
				// An operator re-enables or inhibits rs1 by hand, which also
				// moves the version: re-applying goes through a 270.
				tampers: []tamper{
					{0, func(t *testing.T) { setRS(t, c, rs(testRS1, 100, false)) }},
					{1, func(t *testing.T) { setRS(t, c, rs(testRS1, 100, true)) }},
				},
			}
		}},
		{name: "dpvs_addr", actioner: NameDpvsAddrAddDel, setup: func(t *testing.T) fixture {
			emu, c := newAgent(t)
			act, err := New(NameDpvsAddrAddDel, map[string]string{"dpvs-ifname": testDpvsIf}, Deps{Agent: c})
			if err != nil {
				t.Fatal(err)
			}
			return fixture{
				act:   act,
				state: func(*testing.T) []string { return deviceAddrs(emu) },
				steps: vaSteps("2001:db8::1", []string{"dpvs 2001:db8::1/128"}, nil),
				tampers: []tamper{
					{0, func(t *testing.T) { agentAddr(t, c, OpDown, "2001:db8::1") }},
					{1, func(t *testing.T) { agentAddr(t, c, OpUp, "2001:db8::1") }},
				},
			}
		}},
		{name: "dpvs_addr_kernel_route", actioner: NameDpvsAddrKernelRouteAddDel, setup: func(t *testing.T) fixture {
			ns := newTestNS(t)
			emu, c := newAgent(t)
			act, err := New(NameDpvsAddrKernelRouteAddDel,
				map[string]string{"ifname": testLink, "dpvs-ifname": testDpvsIf, "netns": ns.name}, Deps{Agent: c})
			if err != nil {
				t.Fatal(err)
			}
			return fixture{
				act:   act,
				state: func(t *testing.T) []string { return append(ns.state(t), deviceAddrs(emu)...) },
				steps: vaSteps("198.51.100.7", []string{"addr 198.51.100.7/32", "dpvs 198.51.100.7/32"}, nil),
				tampers: []tamper{
					{0, func(t *testing.T) { ns.delAddr(t, "198.51.100.7/32") }},
					{0, func(t *testing.T) { agentAddr(t, c, OpDown, "198.51.100.7") }},
					{1, func(t *testing.T) { agentAddr(t, c, OpUp, "198.51.100.7") }},
				},
			}
		}},
		kernelCase("kernel_route_ipv4", NameKernelRouteAddDel, "198.51.100.7", false),
		kernelCase("kernel_route_ipv6_with_route", NameKernelRouteAddDel, "2001:db8::7", true),
		kernelCase("kernel_route_verdict_ipv4_with_route", NameKernelRouteAddDelVerdict, "198.51.100.7", true),
		kernelCase("kernel_route_verdict_ipv6", NameKernelRouteAddDelVerdict, "2001:db8::7", false),
	}
}

// TestConformance drives every actioner through the same requests: each
// applied twice must leave the same state (idempotent), DOWN after DOWN is
// harmless, a Verdicter's verdict agrees with the last op, and a state
// broken by hand is healed by applying the request again.
func TestConformance(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range conformanceCases() {
		covered[tc.actioner] = true
		t.Run(tc.name, func(t *testing.T) {
			f := tc.setup(t)
			for i, s := range f.steps {
				for try := 1; try <= 2; try++ {
					applyOK(t, f.act, s.req)
					if got := f.state(t); !slices.Equal(got, s.want) {
						t.Fatalf("step %d (%s), apply #%d: state %q, want %q", i, s.req.Op, try, got, s.want)
					}
					checkVerdict(t, f.act, s.req)
				}
			}
			for _, tm := range f.tampers {
				s := f.steps[tm.step]
				applyOK(t, f.act, s.req)
				tm.do(t)
				if got := f.state(t); slices.Equal(got, s.want) {
					t.Fatalf("changing the state of step %d by hand changed nothing: %q", tm.step, got)
				}
				if v, ok := f.act.(Verdicter); ok {
					if present, err := v.Verdict(testCtx(t), s.req); err != nil || present == (s.req.Op == OpUp) {
						t.Fatalf("Verdict after a change by hand to %s = %v, %v: drift not detected", s.req.Op, present, err)
					}
				}
				applyOK(t, f.act, s.req)
				if got := f.state(t); !slices.Equal(got, s.want) {
					t.Fatalf("re-applying step %d after a change by hand: state %q, want %q", tm.step, got, s.want)
				}
				checkVerdict(t, f.act, s.req)
			}
		})
	}
	for _, name := range Names() {
		if !covered[name] {
			t.Errorf("actioner %s has no conformance case", name)
		}
	}
}

func applyOK(t *testing.T, a Actioner, r Request) {
	t.Helper()
	if err := a.Apply(testCtx(t), r); err != nil {
		t.Fatalf("Apply(%s %s): %v", r.Op, r.Object(), err)
	}
}

// checkVerdict asserts a Verdicter sees what r's op should have left.
func checkVerdict(t *testing.T, a Actioner, r Request) {
	t.Helper()
	v, ok := a.(Verdicter)
	if !ok {
		return
	}
	present, err := v.Verdict(testCtx(t), r)
	if err != nil {
		t.Fatalf("Verdict(%s %s): %v", r.Op, r.Object(), err)
	}
	if want := r.Op == OpUp; present != want {
		t.Fatalf("Verdict(%s %s) = %v, want %v", r.Op, r.Object(), present, want)
	}
}

// testCtx is the action-timeout a caller would give: generous, so a loaded
// machine does not fail the test, but bounded.
func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// writeScript writes an executable /bin/sh script into dir.
func writeScript(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "action.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}
