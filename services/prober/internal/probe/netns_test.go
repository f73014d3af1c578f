package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Addresses of the test topology (see newNetnsPair). They exist only inside
// the namespaces the test creates, so nothing is ever sent anywhere else.
const (
	nsA4, nsB4           = "169.254.10.1", "169.254.10.2" // the veth link (/30)
	nsA6, nsB6           = "fd68:6d74::1", "fd68:6d74::2" // the veth link (/64)
	blackhole4, unreach4 = "169.254.200.1", "169.254.201.1"
	blackhole6, unreach6 = "fd68:6d74:200::1", "fd68:6d74:201::1"
)

// nsPair is two network namespaces joined by a veth pair: A (where probes
// run, with ping sockets allowed for every group) and B (the "backend side",
// forwarding, with a blackhole route that silently drops and an unreachable
// route that answers ICMP destination unreachable).
type nsPair struct{ a, b string }

func newNetnsPair(t *testing.T) nsPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("creating network namespaces needs the ip command (iproute2)")
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	suffix := hex.EncodeToString(rb[:])
	ns := nsPair{a: "hmt-" + suffix + "-a", b: "hmt-" + suffix + "-b"}
	if out, err := exec.Command(ip, "netns", "add", ns.a).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns.a).Run() })
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", ns.b)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns.b).Run() })
	run("link", "add", "hmt0", "netns", ns.a, "type", "veth", "peer", "name", "hmt1", "netns", ns.b)
	for _, c := range [][]string{
		{"-n", ns.a, "link", "set", "lo", "up"},
		{"-n", ns.b, "link", "set", "lo", "up"},
		{"-n", ns.a, "addr", "add", nsA4 + "/30", "dev", "hmt0"},
		{"-n", ns.b, "addr", "add", nsB4 + "/30", "dev", "hmt1"},
		{"-n", ns.a, "-6", "addr", "add", nsA6 + "/64", "dev", "hmt0", "nodad"},
		{"-n", ns.b, "-6", "addr", "add", nsB6 + "/64", "dev", "hmt1", "nodad"},
		{"-n", ns.a, "link", "set", "hmt0", "up"},
		{"-n", ns.b, "link", "set", "hmt1", "up"},
		{"-n", ns.a, "route", "add", "169.254.200.0/24", "via", nsB4},
		{"-n", ns.a, "route", "add", "169.254.201.0/24", "via", nsB4},
		{"-n", ns.a, "-6", "route", "add", "fd68:6d74:200::/64", "via", nsB6},
		{"-n", ns.a, "-6", "route", "add", "fd68:6d74:201::/64", "via", nsB6},
		{"-n", ns.b, "route", "add", "blackhole", "169.254.200.0/24"},
		{"-n", ns.b, "route", "add", "unreachable", "169.254.201.0/24"},
		{"-n", ns.b, "-6", "route", "add", "blackhole", "fd68:6d74:200::/64"},
		{"-n", ns.b, "-6", "route", "add", "unreachable", "fd68:6d74:201::/64"},
	} {
		run(c...)
	}
	sysctl(t, ns.a, "net/ipv4/ping_group_range", "0 2147483647")
	sysctl(t, ns.b, "net/ipv4/ip_forward", "1")
	sysctl(t, ns.b, "net/ipv6/conf/all/forwarding", "1")
	warmUp(t, ns)
	return ns
}

// warmUp waits until A reaches B over both families, so that neighbour
// discovery on the fresh link does not eat into the tests' timeouts.
func warmUp(t *testing.T, ns nsPair) {
	t.Helper()
	pg := NewPinger(PingerOptions{})
	defer pg.Close()
	for _, a := range []string{nsB4, nsB6} {
		eventually(t, 10*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			return pg.Ping(ctx, netip.MustParseAddr(a), netip.Addr{}, ns.a).State == event.Up
		})
	}
}

// eventually polls cond every few milliseconds until it holds, failing the
// test after d.
func eventually(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		<-tick.C
	}
}

// sysctl writes /proc/sys/<key> as seen from inside netns name.
func sysctl(t *testing.T, name, key, value string) {
	t.Helper()
	err := inNetns(name, func() error { return os.WriteFile("/proc/sys/"+key, []byte(value), 0o644) })
	if err != nil {
		t.Fatalf("sysctl %s in %s: %v", key, name, err)
	}
}

// listenIn opens a listener (network "tcp" or "udp") inside netns name.
func listenIn(t *testing.T, name, network, addr string) (ln net.Listener, pc net.PacketConn) {
	t.Helper()
	err := inNetns(name, func() error {
		var err error
		if network == "tcp" {
			ln, err = net.Listen(network, addr)
		} else {
			pc, err = net.ListenPacket(network, addr)
		}
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, name, err)
	}
	return ln, pc
}

func TestPingFromNetns(t *testing.T) {
	ns := newNetnsPair(t)
	cases := []struct {
		name    string
		addr    string
		timeout time.Duration
		state   event.State
		reason  event.Reason
	}{
		{"ipv4_up", nsB4, 2 * time.Second, event.Up, event.ReasonICMPOK},
		{"ipv6_up", nsB6, 2 * time.Second, event.Up, event.ReasonICMPOK},
		{"ipv4_no_answer", blackhole4, 300 * time.Millisecond, event.Down, event.ReasonICMPTO},
		{"ipv6_no_answer", blackhole6, 300 * time.Millisecond, event.Down, event.ReasonICMPTO},
		{"ipv4_unreachable", unreach4, 2 * time.Second, event.Down, event.ReasonICMPUNR},
		{"ipv6_unreachable", unreach6, 2 * time.Second, event.Down, event.ReasonICMPUNR},
	}
	for _, mode := range []PingMode{PingAuto, PingDatagram, PingRaw} {
		t.Run(mode.String(), func(t *testing.T) {
			pg := newPinger(t, mode)
			p := NewPing(pg)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					tg := &Target{Addr: netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 0), Timeout: tc.timeout, Netns: ns.a}
					r := probeWithin(t, p, tg)
					wantResult(t, r, tc.state, tc.reason)
					if tc.reason == event.ReasonICMPUNR && !strings.Contains(r.Detail, "unreachable") {
						t.Fatalf("detail %q does not say unreachable", r.Detail)
					}
				})
			}
			// Namespace A allows ping sockets: auto must prefer them.
			n, raw := sockets(pg)
			wantRaw := 0
			if mode == PingRaw {
				wantRaw = n
			}
			if n != 2 || raw != wantRaw {
				t.Fatalf("mode %s: %d sockets, %d raw; want 2 (one per family), %d raw", mode, n, raw, wantRaw)
			}
		})
	}
}

func TestPingerCloseWakesWaitingProbes(t *testing.T) {
	ns := newNetnsPair(t)
	pg := NewPinger(PingerOptions{})
	done := make(chan Result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- pg.Ping(ctx, netip.MustParseAddr(blackhole4), netip.Addr{}, ns.a)
	}()
	// Wait until the probe is registered, then close under it.
	eventually(t, 5*time.Second, func() bool {
		pg.mu.Lock()
		defer pg.mu.Unlock()
		waiting := 0
		for _, s := range pg.socks {
			s.mu.Lock()
			waiting += len(s.wait)
			s.mu.Unlock()
		}
		return waiting == 1
	})
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		wantResult(t, r, event.Unknown, event.ReasonPROCERR)
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not wake the waiting probe")
	}
}

// TestPingAutoFallsBackToRaw pings from namespace B, whose
// ping_group_range is the kernel default "1 0" (no group may open ping
// sockets): auto mode must fall back to a raw socket and still work.
func TestPingAutoFallsBackToRaw(t *testing.T) {
	ns := newNetnsPair(t)
	pg := newPinger(t, PingAuto)
	tg := &Target{Addr: netip.AddrPortFrom(netip.MustParseAddr(nsA4), 0), Timeout: 2 * time.Second, Netns: ns.b}
	wantResult(t, probeWithin(t, NewPing(pg), tg), event.Up, event.ReasonICMPOK)
	if n, raw := sockets(pg); n != 1 || raw != 1 {
		t.Fatalf("%d sockets, %d raw; want 1 raw", n, raw)
	}
	dg := newPinger(t, PingDatagram)
	wantResult(t, probeWithin(t, NewPing(dg), tg), event.Unknown, event.ReasonSOCKERR)
}

// TestProbesFromNetns probes, from namespace A, services that exist only in
// namespace B.
func TestProbesFromNetns(t *testing.T) {
	ns := newNetnsPair(t)
	tcpLn, _ := listenIn(t, ns.b, "tcp", net.JoinHostPort(nsB4, "0"))
	tcpAddr := serveListener(t, tcpLn, func(c net.Conn) {
		if addrPort(c.RemoteAddr()).Addr() == netip.MustParseAddr(nsA4) {
			_, _ = io.WriteString(c, "FROM-A")
		}
		_, _ = io.Copy(io.Discard, c)
	})
	_, udpPC := listenIn(t, ns.b, "udp", net.JoinHostPort(nsB6, "0"))
	t.Cleanup(func() { udpPC.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := udpPC.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = udpPC.WriteTo(append([]byte("ECHO:"), buf[:n]...), from)
		}
	}()
	httpLn, _ := listenIn(t, ns.b, "tcp", net.JoinHostPort(nsB4, "0"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(httpLn) }()
	t.Cleanup(func() { srv.Close() })

	pg := newPinger(t, PingAuto)
	cases := []struct {
		name    string
		method  string
		params  map[string]string
		addr    string
		source  string
		timeout time.Duration
		state   event.State
		reason  event.Reason
	}{
		{"tcp_up_from_a", MethodTCP, map[string]string{"receive": "FROM-A"}, tcpAddr, "", 2 * time.Second, event.Up, event.ReasonL4OK},
		{"tcp_bound_source_in_netns", MethodTCP, map[string]string{"receive": "FROM-A"}, tcpAddr, nsA4, 2 * time.Second, event.Up, event.ReasonL4OK},
		{"tcp_connect_timeout", MethodTCP, nil, net.JoinHostPort(blackhole4, "80"), "", 300 * time.Millisecond, event.Down, event.ReasonL4TOUT},
		{"tcp_unreachable", MethodTCP, nil, net.JoinHostPort(unreach4, "80"), "", 2 * time.Second, event.Down, event.ReasonL4CON},
		{"udp_up_from_a", MethodUDP, map[string]string{"send": "hi", "receive": "ECHO:hi"}, udpPC.LocalAddr().String(), "", 2 * time.Second, event.Up, event.ReasonL4OK},
		{"udpping_up_from_a", MethodUDPPing, map[string]string{"send": "x", "receive": "ECHO:x"}, udpPC.LocalAddr().String(), "", 2 * time.Second, event.Up, event.ReasonL4OK},
		{"udpping_no_ping_answer", MethodUDPPing, nil, net.JoinHostPort(blackhole6, "53"), "", 300 * time.Millisecond, event.Down, event.ReasonICMPTO},
		{"http_up_from_a", MethodHTTP, nil, httpLn.Addr().String(), "", 2 * time.Second, event.Up, event.ReasonL7OK},
		{"http_connect_timeout", MethodHTTP, nil, net.JoinHostPort(blackhole4, "80"), "", 300 * time.Millisecond, event.Down, event.ReasonL4TOUT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(tc.method, tc.params, Deps{Pinger: pg})
			if err != nil {
				t.Fatal(err)
			}
			tg := target(t, tc.addr, tc.timeout)
			tg.Netns = ns.a
			if tc.source != "" {
				tg.Source = netip.MustParseAddr(tc.source)
			}
			wantResult(t, probeWithin(t, p, tg), tc.state, tc.reason)
		})
	}
}
