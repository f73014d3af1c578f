package action

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// testLink is the veth end the netlink actioners are pointed at.
const testLink = "hm0"

// testNS is a network namespace a test created, with a veth pair (hm0,
// hm1) up inside it, and a netlink handle into it for the test's own
// inspection and tampering.
type testNS struct {
	name string
	h    *netlink.Handle
}

// newTestNS creates "hmt-<random>" with `ip netns add` and deletes it when
// the test ends. It skips only when namespaces truly cannot be made here.
func newTestNS(t *testing.T) *testNS {
	t.Helper()
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("skipping: needs iproute2's ip to create a network namespace")
	}
	name := fmt.Sprintf("hmt-%08x", rand.Uint32())
	if out, err := exec.Command(ip, "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create network namespace %s (needs root): %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete network namespace %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open network namespace %s: %v", name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: testLink}, PeerName: "hm1"}
	if err := h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth in %s: %v", name, err)
	}
	for _, l := range []string{testLink, "hm1"} {
		link, err := h.LinkByName(l)
		if err != nil {
			t.Fatalf("find %s in %s: %v", l, name, err)
		}
		if err := h.LinkSetUp(link); err != nil {
			t.Fatalf("set %s up in %s: %v", l, name, err)
		}
	}
	return &testNS{name: name, h: h}
}

// state lists the host addresses and main-table host routes of protocol
// boot on hm0, e.g.
// "addr 198.51.100.7/32", "route 198.51.100.7/32", sorted.
func (n *testNS) state(t *testing.T) []string {
	t.Helper()
	link, err := n.h.LinkByName(testLink)
	if err != nil {
		t.Fatalf("find %s: %v", testLink, err)
	}
	var out []string
	addrs, err := n.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("list addresses: %v", err)
	}
	for _, a := range addrs {
		if ones, bits := a.Mask.Size(); ones == bits {
			out = append(out, "addr "+a.IPNet.String())
		}
	}
	// Protocol boot: the actioner's routes, not the kernel's prefix routes.
	filter := &netlink.Route{LinkIndex: link.Attrs().Index, Protocol: unix.RTPROT_BOOT}
	routes, err := n.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_PROTOCOL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatalf("list routes: %v", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ones, bits := r.Dst.Mask.Size(); ones == bits {
			out = append(out, "route "+r.Dst.String())
		}
	}
	slices.Sort(out)
	return out
}

// delAddr removes an address by hand, as an operator or another program
// would behind the actioner's back.
func (n *testNS) delAddr(t *testing.T, cidr string) {
	t.Helper()
	link, a := n.linkAddr(t, cidr)
	if err := n.h.AddrDel(link, a); err != nil {
		t.Fatalf("delete %s by hand: %v", cidr, err)
	}
}

// addAddr puts an address on hm0 by hand.
func (n *testNS) addAddr(t *testing.T, cidr string) {
	t.Helper()
	link, a := n.linkAddr(t, cidr)
	a.Flags = unix.IFA_F_NODAD
	if err := n.h.AddrAdd(link, a); err != nil {
		t.Fatalf("add %s by hand: %v", cidr, err)
	}
}

func (n *testNS) linkAddr(t *testing.T, cidr string) (netlink.Link, *netlink.Addr) {
	t.Helper()
	link, err := n.h.LinkByName(testLink)
	if err != nil {
		t.Fatalf("find %s: %v", testLink, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return link, a
}
