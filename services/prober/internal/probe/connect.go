package probe

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// errConnecting is what a connect check waits on: the handshake is not done.
var errConnecting = errors.New("connect in progress")

// fastConnect reports whether connectCheck can probe t. Scoped IPv6
// addresses need an interface index: they go through net.Dialer.
func fastConnect(t *Target) bool {
	return t.Addr.Addr().Zone() == "" && t.Source.Zone() == ""
}

// connectCheck opens a TCP connection to t and resets it at once: the
// connect-only tcp check, which is what nearly every DPVS tcp checker is.
//
// It is net.Dialer minus what a connection that is never used does not
// need: no keep-alive or no-delay options, no local address lookup, no
// dialer machinery; about a third fewer system calls and half the
// allocations per probe. And it closes with a reset (SO_LINGER 0), as
// HAProxy does for its checks: a normal close leaves the connection in
// TIME_WAIT for a minute, and at 10,000 probes a second that is 600,000
// sockets, more than the kernel's TIME_WAIT table and the connection
// tracking table hold (both then drop connections, for every process on the
// host). The backend sees a reset instead of a FIN after accepting, which
// costs it less too.
//
// Errors are *os.SyscallError as from net.Dialer (socket, bind and
// setsockopt failures are local; connect failures name the errno), or the
// error of ctx when it ends first.
func connectCheck(ctx context.Context, t *Target) error {
	dst := dest(t)
	var fd int
	err := inNetns(t.Netns, func() error {
		var err error
		fd, err = socket(dst.Addr(), t.Source)
		return err
	})
	if err != nil {
		return err
	}
	err = unix.Connect(fd, sockaddr(dst))
	switch {
	case err == nil: // connected already
		unix.Close(fd)
		return nil
	case !errors.Is(err, unix.EINPROGRESS):
		unix.Close(fd)
		return os.NewSyscallError("connect", err)
	}
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
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		unix.Close(fd)
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
	if _, err := unix.Getpeername(fd); err == nil {
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
