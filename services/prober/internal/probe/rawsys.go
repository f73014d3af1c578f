package probe

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The connect check's system calls, made raw: none of them blocks (the
// socket is non-blocking; close with SO_LINGER 0 sends a reset and returns),
// yet each can take longer than the 20 µs after which the Go runtime hands
// the calling thread's processor to another thread (on loopback connect runs
// both ends of the handshake). Going through entersyscall cost a thread
// wake-up and a context switch per probe; the raw calls keep the probe on
// its thread.

func rawSocket(family int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

func rawSetsockopt(fd, level, opt int, p unsafe.Pointer, n uintptr) error {
	if _, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), n, 0); e != 0 {
		return e
	}
	return nil
}

// rawConnect starts a connection from fd to ap.
func rawConnect(fd int, ap netip.AddrPort) error {
	var e unix.Errno
	if a := ap.Addr(); a.Is4() {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4)
	} else {
		sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet6)
	}
	if e != 0 {
		return e
	}
	return nil
}

// peerKnown reports whether fd has a peer, i.e. is connected. (unix.Getpeername
// would also decode the address and, for IPv4, ask for the socket's protocol:
// a second system call for an answer not needed here.)
func peerKnown(fd int) bool {
	var sa unix.RawSockaddrAny
	n := uint32(unsafe.Sizeof(sa))
	_, _, e := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&n)))
	return e == 0
}

func rawClose(fd int) { unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0) }
