package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// nsIfname is the interface KernelRouteAddDel announces VIP2 on.
const nsIfname = "hm0"

// newNetns creates a network namespace with hm0 up inside it, deleted when
// the test ends. hm0 is a dummy interface, or one end of a veth pair (both
// ends inside the namespace) where the kernel has no dummy driver. It
// returns "" and the reason when namespaces cannot be made here.
func newNetns(t *testing.T) (name, why string) {
	t.Helper()
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return "", "needs iproute2's ip to create a network namespace"
	}
	name = fmt.Sprintf("hme2e-%08x", rand.Uint32())
	if out, err := exec.Command(ipPath, "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Sprintf("cannot create network namespace %s (needs root): %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ipPath, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete network namespace %s: %v: %s", name, err, out)
		}
	})
	if _, err := ipNS(name, "link", "add", nsIfname, "type", "dummy"); err != nil {
		if out, err := ipNS(name, "link", "add", nsIfname, "type", "veth", "peer", "name", "hm1"); err != nil {
			t.Fatalf("add %s in network namespace %s (neither dummy nor veth): %v: %s", nsIfname, name, err, out)
		}
	}
	if out, err := ipNS(name, "link", "set", nsIfname, "up"); err != nil {
		t.Fatalf("set %s up in %s: %v: %s", nsIfname, name, err, out)
	}
	return name, ""
}

// ipNS runs `ip -n ns ARGS...`.
func ipNS(ns string, args ...string) ([]byte, error) {
	return exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
}

// nsHasAddr reports whether hm0 in ns carries addr as a host address, as
// `ip -n NS addr show dev hm0` lists it.
func nsHasAddr(t *testing.T, ns string, addr netip.Addr) bool {
	t.Helper()
	out, err := ipNS(ns, "-o", "addr", "show", "dev", nsIfname)
	if err != nil {
		t.Fatalf("ip -n %s addr show dev %s: %v: %s", ns, nsIfname, err, out)
	}
	want := netip.PrefixFrom(addr, addr.BitLen()).String()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if i := slices.Index(f, "inet"); i >= 0 && i+1 < len(f) && f[i+1] == want {
			return true
		}
		if i := slices.Index(f, "inet6"); i >= 0 && i+1 < len(f) && f[i+1] == want {
			return true
		}
	}
	return false
}
