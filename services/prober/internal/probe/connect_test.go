package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/healthmesh/healthmesh/shared/event"
)

// fullListener returns a loopback address whose accept queue is full and
// never drained: the kernel drops further SYNs, so a connect to it hangs
// until its timeout, as to a black-holed backend.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // room for one connection
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String()
	for range 2 { // fill the queue; the second one may already hang: do not wait for it
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		if c, err := d.Dial("tcp", addr); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	return addr
}

func TestTCPConnectOnly(t *testing.T) {
	p := NewTCP(TCPParams{})
	t.Run("handshake_timeout_is_L4TOUT", func(t *testing.T) {
		addr := fullListener(t)
		start := time.Now()
		r := p.Probe(context.Background(), target(t, addr, 300*time.Millisecond))
		wantResult(t, r, event.Down, event.ReasonL4TOUT)
		if el := time.Since(start); el < 300*time.Millisecond || el > 2*time.Second {
			t.Fatalf("probe took %v, want about its 300ms timeout", el)
		}
	})
	t.Run("canceled_while_connecting_is_not_a_verdict", func(t *testing.T) {
		addr := fullListener(t)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		r := p.Probe(ctx, target(t, addr, 10*time.Second))
		wantResult(t, r, event.Unknown, event.ReasonPROCERR)
		if el := time.Since(start); el > 3*time.Second {
			t.Fatalf("canceled probe took %v", el)
		}
	})
	t.Run("backend_never_completes_the_handshake", func(t *testing.T) {
		// The reset goes out before the handshake's last ACK (TCP_QUICKACK
		// off delays it by up to 200 ms), as HAProxy's checks do: the
		// backend's kernel drops the half-open connection, its
		// application never accepts one, nothing lingers in TIME_WAIT.
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		const probes = 20
		for range probes {
			wantResult(t, p.Probe(context.Background(), target(t, ln.Addr().String(), time.Second)), event.Up, event.ReasonL4OK)
		}
		// A probe stalled past the delayed ACK (a loaded test machine) lets
		// its connection through; it must then be reset, not closed.
		accepted := 0
		for {
			_ = ln.SetDeadline(time.Now().Add(400 * time.Millisecond))
			c, err := ln.Accept()
			if err != nil {
				break
			}
			accepted++
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("accepted connection read %v, want a connection reset", err)
			}
			c.Close()
		}
		if accepted > probes/4 {
			t.Fatalf("the backend accepted %d of %d connect-only probes, want (nearly) none", accepted, probes)
		}
	})
}

func TestSocketBindsSource(t *testing.T) {
	src := netip.MustParseAddr("127.0.0.2")
	fd, err := socket(netip.MustParseAddr("127.0.0.1"), src)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	if got := netip.AddrFrom4(sa.(*unix.SockaddrInet4).Addr); got != src {
		t.Fatalf("socket bound to %v, want %v", got, src)
	}
}
