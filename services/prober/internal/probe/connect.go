package probe

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// errConnecting is what a connect check waits on: the handshake is not done.
var errConnecting = errors.New("connect in progress")

// fastConnect reports whether startConnect can probe t. Scoped IPv6
// addresses need an interface index: they go through net.Dialer.
func fastConnect(t *Target) bool {
	return t.Addr.Addr().Zone() == "" && t.Source.Zone() == ""
}

// startConnect opens a TCP connection to t and resets it at once: the
// connect-only tcp check, which is what nearly every DPVS tcp checker is.
//
// It is net.Dialer minus what a connection that is never used does not
// need: no keep-alive or no-delay options, no local address lookup, no
// dialer machinery, and no runtime poller when the handshake is over by the
// time connect returns (on a near backend it usually is).
//
// It never completes the handshake, as HAProxy's connect checks do: with
// TCP_QUICKACK off the kernel holds back the ACK of the backend's SYN-ACK
// (up to 200 ms, to ride on data), the connection is already established on
// our side, and the close sends a reset first (SO_LINGER 0). The backend's
// kernel drops the half-open connection: its application never accepts one,
// logs nothing, spends nothing, and nothing is left in TIME_WAIT (at 10,000
// probes a second a FIN close leaves 600,000 sockets there, more than the
// kernel's TIME_WAIT and connection tracking tables hold; both then drop
// connections for every process on the host). A SYN-ACK proves the listener
// is up and its accept queue has room, which is all a connect check knows.
// On loopback, where the prober's system calls run both ends' TCP work,
// this halves the kernel time per probe.
//
// With s (optional) a socket of an earlier check is reused, and a connected
// one goes back to s instead of being closed: see Sockets.
//
// It runs in two steps so that the common case costs no timer, context or
// poller: startConnect makes the socket and starts the handshake, and
// returns fd -1 with the outcome when the connection is already made (nil)
// or failed, else the socket whose handshake is still running, for
// waitConnect.
//
// Errors are *os.SyscallError as from net.Dialer (socket, bind and
// setsockopt failures are local; connect failures name the errno), or the
// error of ctx when it ends first.
func startConnect(t *Target, s *Sockets) (checkSocket, error) {
	dst := dest(t)
	c := checkSocket{fd: -1, v6: dst.Addr().Is6(), s: s, reuse: s.reusable(t)}
	if c.reuse {
		c.fd = s.get(c.v6)
	}
	if c.fd < 0 {
		err := inNetns(t.Netns, func() error {
			var err error
			c.fd, err = socket(dst.Addr(), t.Source)
			return err
		})
		if err != nil {
			return checkSocket{fd: -1}, err
		}
	}
	err := rawConnect(c.fd, dst)
	switch {
	case err == nil: // connected already
		return c.release(nil)
	case err != unix.EINPROGRESS:
		return c.release(os.NewSyscallError("connect", err))
	}
	// A near backend has usually answered by the time connect returns (on
	// loopback the handshake runs inside the call).
	if err := connected(c.fd); err != errConnecting {
		return c.release(err)
	}
	return c, nil
}

// checkSocket is the socket of a connect check and where it goes after.
type checkSocket struct {
	fd    int // -1 once released
	v6    bool
	reuse bool     // s takes the socket back when connected
	s     *Sockets // may be nil
}

// release ends the check with err: a connected socket goes back to s when
// it may, anything else is closed.
func (c checkSocket) release(err error) (checkSocket, error) {
	if err == nil && c.reuse {
		c.s.put(c.fd, c.v6)
	} else {
		rawClose(c.fd)
	}
	return checkSocket{fd: -1}, err
}

// waitConnect waits for the handshake started on c until ctx ends, and
// releases c.
func waitConnect(ctx context.Context, c checkSocket) error {
	if !c.reuse {
		return wait(ctx, c.fd)
	}
	// wait's file owns the descriptor it gets: give it a duplicate, so
	// that the socket outlives it for Sockets.
	dup, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		_, err = c.release(os.NewSyscallError("fcntl", err))
		return err
	}
	err = wait(ctx, dup)
	c.release(err)
	return err
}

// wait waits for the handshake on the socket fd until ctx ends, and closes
// fd.
func wait(ctx context.Context, fd int) error {
	// os.NewFile registers the non-blocking socket with the runtime poller:
	// waiting for the handshake parks the goroutine, not a thread.
	f := os.NewFile(uintptr(fd), "tcp-probe")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	defer context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })()
	var result error
	werr := rc.Write(func(fd uintptr) bool {
		result = connected(int(fd))
		return result != errConnecting
	})
	if werr != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return werr
	}
	return result
}

// socket opens a non-blocking TCP socket for dst that resets on close,
// bound to src when valid.
func socket(dst, src netip.Addr) (int, error) {
	family := unix.AF_INET
	if dst.Is6() {
		family = unix.AF_INET6
	}
	fd, err := rawSocket(family)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	linger := unix.Linger{Onoff: 1, Linger: 0}
	if err := rawSetsockopt(fd, unix.SOL_SOCKET, unix.SO_LINGER, unsafe.Pointer(&linger), unsafe.Sizeof(linger)); err != nil {
		rawClose(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	if err := quickAckOff(fd); err != nil { // see startConnect
		rawClose(fd)
		return -1, os.NewSyscallError("setsockopt", err)
	}
	if src.IsValid() {
		// Let connect pick the source port: a port bound here could not be
		// shared with other destinations, and would run out at high rates.
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src.Unmap(), 0))); err != nil {
			unix.Close(fd)
			return -1, os.NewSyscallError("bind", err)
		}
	}
	return fd, nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if a := ap.Addr(); a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// connected reports how a non-blocking connect on fd stands: nil when it is
// established, errConnecting while the handshake runs, else its error.
func connected(fd int) error {
	// The common case first: on a near backend the handshake is often
	// over by the time we look, and one call says so.
	if peerKnown(fd) {
		return nil
	}
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	switch e := syscall.Errno(n); e {
	case 0, unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
		return errConnecting
	default:
		return os.NewSyscallError("connect", e)
	}
}
