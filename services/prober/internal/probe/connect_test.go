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
	addr, _ := fullListenerFD(t)
	return addr
}

// fullListenerFD is fullListener that also returns the listening socket,
// to accept from.
func fullListenerFD(t *testing.T) (string, int) {
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
	return addr, fd
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
		wantNoneAccepted(t, p)
	})
}

// wantNoneAccepted runs connect-only probes p against a loopback listener
// and fails when its application gets (nearly) any of the connections.
func wantNoneAccepted(t *testing.T, p Prober) {
	t.Helper()
	// The reset goes out before the handshake's last ACK (TCP_QUICKACK
	// off delays it by up to 200 ms), as HAProxy's checks do: the
	// backend's kernel drops the half-open connection, its application
	// never accepts one, nothing lingers in TIME_WAIT.
	ln := listenTCP(t, "127.0.0.1:0")
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
}

// listenTCP returns a listener on addr, closed when the test ends.
func listenTCP(t *testing.T, addr string) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestTCPConnectReusesSockets(t *testing.T) {
	s := NewSockets(4)
	defer s.Close()
	p, err := New(MethodTCP, nil, Deps{Sockets: s})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a_reused_socket_still_never_completes_the_handshake", func(t *testing.T) {
		wantNoneAccepted(t, p)
		// Sequential checks take the one idle socket and hand it back.
		if n := s.Idle(); n != 1 {
			t.Fatalf("%d idle sockets after sequential checks, want 1", n)
		}
	})
	t.Run("each_check_connects_anew", func(t *testing.T) {
		// Two backends in turn on the same socket: each sees a
		// connection of its own (a reused socket is not stuck on the
		// previous peer), and a closed port is still refused.
		var lns [2]*net.TCPListener
		for i := range lns {
			lns[i] = listenTCP(t, "127.0.0.1:0")
		}
		closed := closedPort(t, "tcp", "127.0.0.1")
		for range 3 {
			for _, ln := range lns {
				wantResult(t, p.Probe(context.Background(), target(t, ln.Addr().String(), time.Second)), event.Up, event.ReasonL4OK)
			}
			wantResult(t, p.Probe(context.Background(), target(t, closed, time.Second)), event.Down, event.ReasonL4CON)
		}
	})
	t.Run("a_reused_socket_carries_no_stale_error", func(t *testing.T) {
		// The disconnect leaves ECONNRESET pending on the socket; the next
		// connect must clear it, or a handshake still running when
		// connect returns would read as refused.
		ln := listenTCP(t, "127.0.0.1:0")
		wantResult(t, p.Probe(context.Background(), target(t, ln.Addr().String(), time.Second)), event.Up, event.ReasonL4OK)
		if s.Idle() == 0 {
			t.Fatal("no idle socket to reuse")
		}
		wantResult(t, p.Probe(context.Background(), target(t, fullListener(t), 300*time.Millisecond)), event.Down, event.ReasonL4TOUT)
	})
	t.Run("a_slow_handshake_hands_its_socket_back", func(t *testing.T) {
		// The SYN is dropped while the accept queue is full; emptying it
		// lets the retransmitted SYN (after ~1 s) through: the check
		// waits for the handshake in the runtime poller, succeeds, and
		// the socket goes back for the next check.
		ln := listenTCP(t, "127.0.0.1:0")
		wantResult(t, p.Probe(context.Background(), target(t, ln.Addr().String(), time.Second)), event.Up, event.ReasonL4OK)
		before := s.Idle() // the check below takes one of these
		if before == 0 {
			t.Fatal("no idle socket to reuse")
		}
		addr, lfd := fullListenerFD(t)
		time.AfterFunc(200*time.Millisecond, func() {
			for {
				nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
				if err != nil {
					return
				}
				unix.Close(nfd)
			}
		})
		// The listener is blocking: accept the queued connection only.
		if err := unix.SetNonblock(lfd, true); err != nil {
			t.Fatal(err)
		}
		wantResult(t, p.Probe(context.Background(), target(t, addr, 5*time.Second)), event.Up, event.ReasonL4OK)
		if n := s.Idle(); n != before {
			t.Fatalf("%d idle sockets after a waited-for handshake, want %d back", n, before)
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		ln, err := net.ListenTCP("tcp6", net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:0")))
		if err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		defer ln.Close()
		before := s.Idle()
		for range 3 {
			wantResult(t, p.Probe(context.Background(), target(t, ln.Addr().String(), time.Second)), event.Up, event.ReasonL4OK)
		}
		if n := s.Idle(); n != before+1 {
			t.Fatalf("%d idle sockets after IPv6 checks, want %d (one per family)", n, before+1)
		}
	})
	t.Run("closed_pool_closes_what_comes_back", func(t *testing.T) {
		ln := listenTCP(t, "127.0.0.1:0")
		_ = s.Close()
		wantResult(t, p.Probe(context.Background(), target(t, ln.Addr().String(), time.Second)), event.Up, event.ReasonL4OK)
		if n := s.Idle(); n != 0 {
			t.Fatalf("%d idle sockets after Close, want 0", n)
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
