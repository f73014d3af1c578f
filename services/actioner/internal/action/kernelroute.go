package action

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelRoute is the KernelRouteAddDel actioner: UP puts VIP/32 (or /128)
// on a Linux interface (and, with with-route, a main-table route to it via
// that interface), DOWN removes them, so a routing daemon watching the
// interface (bird, quagga over KNI) announces or withdraws the VIP.
//
// Params: ifname (required), with-route (optional yes/no/true/false,
// default no), netns (optional: a name under /run/netns or an absolute
// path; default the actioner's own namespace).
type kernelRoute struct {
	name      string
	ifname    string
	withRoute bool
	netns     string
}

// noSocketDeadline bounds a netlink call when ctx has no deadline: a
// netlink socket cannot be interrupted, only timed out.
const noSocketDeadline = 10 * time.Second

func newKernelRoute(m map[string]string, _ Deps) (Actioner, error) {
	k, err := parseKernelRoute(NameKernelRouteAddDel, m)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// parseKernelRoute reads the kernel params under actioner name; extra
// names more keys the caller accepts on top (DpvsAddrKernelRouteAddDel).
func parseKernelRoute(name string, m map[string]string, extra ...string) (*kernelRoute, error) {
	p := params{name: name, m: m}
	if err := p.only(append([]string{"ifname", "with-route", "netns"}, extra...)...); err != nil {
		return nil, err
	}
	k := &kernelRoute{name: name}
	var err error
	if k.ifname, err = p.ifname("ifname"); err != nil {
		return nil, err
	}
	if k.withRoute, err = p.optionalBool("with-route"); err != nil {
		return nil, err
	}
	if k.netns, err = p.netns("netns"); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *kernelRoute) Apply(ctx context.Context, r Request) error {
	if err := checkVA(r); err != nil {
		return fail(k.name, r, true, err)
	}
	return fail(k.name, r, false, k.apply(ctx, r))
}

func (k *kernelRoute) apply(ctx context.Context, r Request) error {
	h, link, err := k.open(ctx)
	if err != nil {
		return err
	}
	defer h.Close()
	a := vipAddr(vip(r))
	rt := k.route(link, vip(r))
	if r.Op == OpUp {
		if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to %s: %w", a.IPNet, k.ifname, err)
		}
		if !k.withRoute {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := h.RouteAdd(rt); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add route %s dev %s: %w", rt.Dst, k.ifname, err)
		}
		return nil
	}
	// DOWN undoes UP in reverse order: the announcement (route) goes before
	// the address, so the VIP is never announced without being served.
	if k.withRoute {
		if err := h.RouteDel(rt); err != nil && !gone(err) {
			return fmt.Errorf("delete route %s dev %s: %w", rt.Dst, k.ifname, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if err := h.AddrDel(link, a); err != nil && !gone(err) {
		return fmt.Errorf("delete %s from %s: %w", a.IPNet, k.ifname, err)
	}
	return nil
}

// present reports whether the VIP address, and the route when with-route is
// set, are on the interface. For UP both must be there; for DOWN either
// one left over counts, so present != (op == UP) means "re-apply".
func (k *kernelRoute) present(ctx context.Context, r Request) (bool, error) {
	h, link, err := k.open(ctx)
	if err != nil {
		return false, err
	}
	defer h.Close()
	v := vip(r)
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, family(v)) })
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", k.ifname, err)
	}
	hasAddr := false
	for _, a := range addrs {
		if ones, bits := a.Mask.Size(); ones == bits && ipEqual(a.IP, v) {
			hasAddr = true
			break
		}
	}
	if !k.withRoute {
		return hasAddr, nil
	}
	rt := k.route(link, v)
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(family(v), rt, netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return false, fmt.Errorf("list routes of %s: %w", k.ifname, err)
	}
	hasRoute := len(routes) > 0
	if r.Op == OpDown {
		return hasAddr || hasRoute, nil
	}
	return hasAddr && hasRoute, nil
}

// open returns a route-netlink handle in the configured namespace, with
// ctx's remaining time as its socket timeout, and the interface.
func (k *kernelRoute) open(ctx context.Context) (*netlink.Handle, netlink.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ns := netns.None()
	if k.netns != "" {
		var err error
		if strings.HasPrefix(k.netns, "/") {
			ns, err = netns.GetFromPath(k.netns)
		} else {
			ns, err = netns.GetFromName(k.netns)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("network namespace %q: %w", k.netns, err)
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink socket: %w", err)
	}
	timeout := noSocketDeadline
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	if err := h.SetSocketTimeout(timeout); err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("netlink socket timeout: %w", err)
	}
	link, err := h.LinkByName(k.ifname)
	if err != nil {
		h.Close()
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, nil, fmt.Errorf("interface %q not found%s", k.ifname, k.where())
		}
		return nil, nil, fmt.Errorf("interface %q%s: %w", k.ifname, k.where(), err)
	}
	return h, link, nil
}

func (k *kernelRoute) where() string {
	if k.netns == "" {
		return ""
	}
	return " in network namespace " + k.netns
}

// route is the host route to v via the interface, in the main table with
// the library's defaults (unicast, scope universe, protocol boot), as DPVS
// adds it. The protocol is spelled out so that delete and verdict match
// only such routes, never the kernel's own prefix route an IPv6 address
// brings (protocol kernel, same destination and device).
func (k *kernelRoute) route(link netlink.Link, v netip.Addr) *netlink.Route {
	return &netlink.Route{LinkIndex: link.Attrs().Index, Dst: hostNet(v), Protocol: unix.RTPROT_BOOT}
}

// vipAddr is v as a host address. IPv6 VIPs skip duplicate address
// detection: the address must be usable at once, not tentative for a second.
func vipAddr(v netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: hostNet(v)}
	if v.Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func hostNet(v netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(v.AsSlice()), Mask: net.CIDRMask(v.BitLen(), v.BitLen())}
}

func family(v netip.Addr) int {
	if v.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipEqual(ip net.IP, v netip.Addr) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && a.Unmap() == v
}

// gone reports the errors that mean "already absent" on delete: ENOENT,
// ESRCH (no such route) and EADDRNOTAVAIL (no such address).
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// retryDump repeats a netlink dump the kernel interrupted (the list changed
// while it was read), a few times, since a partial list could hide the VIP.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		v   []T
		err error
	)
	for range 3 {
		if v, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
