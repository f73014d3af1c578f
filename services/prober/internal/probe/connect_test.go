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
	t.Run("closes_with_a_reset", func(t *testing.T) {
		errc := make(chan error, 1)
		addr := serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
			_, err := c.Read(make([]byte, 1))
			errc <- err
		})
		wantResult(t, p.Probe(context.Background(), target(t, addr, time.Second)), event.Up, event.ReasonL4OK)
		select {
		case err := <-errc:
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("backend read %v, want a connection reset (no TIME_WAIT left behind)", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend saw nothing")
		}
	})
}
