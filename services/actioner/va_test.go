package actioner_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// dpvsVA is a VIP put on the emulator's DPVS device dpdk0.
var (
	dpvsVA       = netip.MustParseAddr("192.0.2.1")
	dpvsAddrSpec = &event.ActionSpec{Actioner: "DpvsAddrAddDel", Params: map[string]string{"dpvs-ifname": "dpdk0"}}
)

func TestRun_va_events_add_and_remove_dpvs_addr(t *testing.T) {
	e := newEnv(t, 0)
	res := e.results()
	e.start(e.options())
	steps := []struct {
		name string
		to   event.State
		want []string
	}{
		{name: "up_adds", to: event.Up, want: []string{"192.0.2.1/32"}},
		{name: "down_removes", to: event.Down, want: []string{}},
		{name: "up_again_adds", to: event.Up, want: []string{"192.0.2.1/32"}},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e.publish(vaEvent(dpvsVA, st.to, uint64(i+1), dpvsAddrSpec))
			wait.For(t, 30*time.Second, "the device addresses", func() bool {
				return fmt.Sprint(e.agent.State().Devices["dpdk0"]) == fmt.Sprint(st.want)
			})
			wait.For(t, 5*time.Second, "the result", func() bool { return res.count(func(event.ActionResult) bool { return true }) == i+1 })
			_, all := res.get()
			if a := all[i]; !a.OK || a.Op != strings.ToUpper(string(st.to)) || a.Kind != event.KindVA || a.Object != "192.0.2.1" {
				t.Errorf("result %+v", a)
			}
		})
	}
	e.settled()
}

// testNetns is a network namespace the test created. Its loopback link
// "lo" is what the kernel actioners are pointed at: adding a /32 to it
// needs no other link.
type testNetns struct {
	name string
	h    *netlink.Handle
}

func newNetns(t *testing.T) *testNetns {
	t.Helper()
	n := &testNetns{name: fmt.Sprintf("hma-%08x", rand.Uint32())}
	// `ip netns add` mounts the namespace under /run/netns, where the
	// actioner's netns param finds it by name.
	if out, err := exec.Command("ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create network namespace (needs root and iproute2): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	handle, err := netns.GetFromName(n.name)
	if err == nil {
		n.h, err = netlink.NewHandleAt(handle)
		handle.Close()
	}
	if err != nil {
		t.Fatalf("netlink into %s: %v", n.name, err)
	}
	t.Cleanup(n.h.Close)
	return n
}

// has reports whether vip/32 is on lo.
func (n *testNetns) has(t *testing.T, vip netip.Addr) bool {
	t.Helper()
	link, err := n.h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := n.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(net.IP(vip.AsSlice())) })
}

func TestRun_va_kernel_route_in_netns(t *testing.T) {
	n := newNetns(t)
	e := newEnv(t, 0)
	res := e.results()
	e.start(e.options())
	vip := netip.MustParseAddr("198.51.100.7")
	params := map[string]string{"ifname": "lo", "netns": n.name}
	plain := &event.ActionSpec{Actioner: "KernelRouteAddDel", Params: params}

	e.publish(vaEvent(vip, event.Up, 1, plain))
	wait.For(t, 30*time.Second, "the VIP added", func() bool { return n.has(t, vip) })
	e.publish(vaEvent(vip, event.Down, 2, plain))
	wait.For(t, 30*time.Second, "the VIP removed", func() bool { return !n.has(t, vip) })

	// With the verdict actioner, a VIP deleted by hand is put back at the
	// next sync.
	verdict := &event.ActionSpec{Actioner: "KernelRouteAddDelVerdict", Params: params, SyncTime: int64(200 * time.Millisecond)}
	e.publish(vaEvent(vip, event.Up, 3, verdict))
	wait.For(t, 30*time.Second, "the VIP added again", func() bool { return n.has(t, vip) })
	e.settled()
	link, err := n.h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(vip.String() + "/32")
	if err := n.h.AddrDel(link, a); err != nil {
		t.Fatalf("delete the VIP by hand: %v", err)
	}
	wait.For(t, 30*time.Second, "the sync to re-add the VIP", func() bool {
		return n.has(t, vip) && res.count(isOp("SYNC", true)) >= 1
	})
	subs, all := res.get()
	for i, a := range all {
		if !a.OK || a.Kind != event.KindVA || a.Object != vip.String() {
			t.Errorf("result %d: %+v", i, a)
		}
		if !strings.HasPrefix(subs[i], "hm.action."+a.Actioner+".198_51_100_7") {
			t.Errorf("result %d on %s", i, subs[i])
		}
	}
}

func TestRun_action_results_carry_the_facts(t *testing.T) {
	e := newEnv(t, 3)
	res := e.results()
	e.start(e.options())
	script := filepath.Join(t.TempDir(), "announce.sh")
	body := "#!/bin/sh\necho \"$@ $HM_FROM>$HM_TO $HM_REASON\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	va := netip.MustParseAddr("198.51.100.9")
	vaTr := vaEvent(va, event.Up, 1, &event.ActionSpec{Actioner: "Script", Params: map[string]string{"script": script, "args": "dpdk0"}})
	vaTr.From = event.Down
	vaSeq := e.publish(vaTr)
	v := e.version()
	e.publishBurst([]*event.Transition{
		backendEvent(0, event.Down, 1, v, backendUpdate),
		backendEvent(1, event.Down, 1, v, backendUpdate),
	})
	wait.For(t, 30*time.Second, "both results", func() bool { return res.count(func(event.ActionResult) bool { return true }) >= 2 })
	e.settled()
	last, err := e.layout.Events.GetLastMsgForSubject(testCtx(t), e.layout.Space.EventBackend(testVS, rip(1)))
	if err != nil {
		t.Fatal(err)
	}

	subs, all := res.get()
	tests := []struct {
		name    string
		subject string
		want    event.ActionResult
	}{
		{
			name:    "script_va",
			subject: "hm.action.Script.198_51_100_9",
			want: event.ActionResult{V: 1, Node: testNode, Actioner: "Script", Kind: event.KindVA, Object: "198.51.100.9",
				Op: "UP", OK: true, Attempt: 1, EventSeq: vaSeq, Output: "dpdk0 UP 198.51.100.9 down>up AGGR\n"},
		},
		{
			name:    "backend_update_vs",
			subject: "hm.action.BackendUpdate." + testVS.Token(),
			want: event.ActionResult{V: 1, Node: testNode, Actioner: "BackendUpdate", Kind: event.KindBackend, Object: testVS.String(),
				Op: "APPLY", OK: true, Attempt: 1, Items: 2, EventSeq: last.Sequence},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := slices.Index(subs, tc.subject)
			if i < 0 {
				t.Fatalf("no result on %s (got %q)", tc.subject, subs)
			}
			got := all[i]
			if got.Duration <= 0 || got.TS <= 0 || time.Since(time.Unix(0, got.TS)) > time.Minute {
				t.Errorf("duration %d, ts %d: want both set", got.Duration, got.TS)
			}
			got.Duration, got.TS = 0, 0
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("result\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRun_serves_metrics_and_healthz(t *testing.T) {
	e := newEnv(t, 1)
	r := e.start(e.options())
	e.publish(backendEvent(0, event.Unknown, 1, "", backendUpdate)) // asks for nothing
	wait.For(t, 30*time.Second, "the no-op counted", func() bool {
		return r.metric(t, `healthmesh_actioner_events_skipped_total{reason="noop"}`) == 1
	})
	tests := []struct {
		path, want string
	}{
		{"/healthz", "ok"},
		{"/metrics", "healthmesh_actioner_batch_messages_bucket"},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			resp, err := http.Get("http://" + r.httpAddr + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), tc.want) {
				t.Errorf("GET %s: %d %q, want 200 containing %q", tc.path, resp.StatusCode, b, tc.want)
			}
		})
	}
	if n := len(e.agent.Calls()); n != 0 {
		t.Errorf("an event asking for nothing made %d agent calls", n)
	}
}
