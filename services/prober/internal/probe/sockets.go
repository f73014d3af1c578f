package probe

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sockets keeps the sockets of finished connect checks for the next ones.
//
// A connect check's socket is done with once the backend's SYN-ACK is in.
// Instead of closing it (a reset, then the socket's teardown) and opening a
// new one for the next check (allocation, SO_LINGER, TCP_QUICKACK), the check
// dissolves the connection with connect(AF_UNSPEC) — the kernel's
// tcp_disconnect, which sends the same reset a SO_LINGER 0 close does and
// releases the source port — and the socket waits here, unconnected, for the
// next check of its address family (connect(2): "the socket can be connected
// to another address"). On loopback that is a quarter of the kernel time per
// check (BENCHMARKS.md, session 7).
//
// Only sockets of the prober's own network namespace without a source
// address are kept: the others are made per target. A Sockets is safe for
// concurrent use; the zero value is not usable, use NewSockets.
type Sockets struct {
	mu     sync.Mutex
	idle   [2][]int // unconnected sockets by family: IPv4, IPv6
	max    int
	closed bool
}

// NewSockets returns a Sockets that keeps up to n idle sockets per address
// family (at least 1).
func NewSockets(n int) *Sockets {
	return &Sockets{max: max(n, 1)}
}

// Close closes the idle sockets; sockets handed back later are closed at
// once.
func (s *Sockets) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for i, fds := range s.idle {
		for _, fd := range fds {
			rawClose(fd)
		}
		s.idle[i] = nil
	}
	return nil
}

// Idle returns how many sockets wait for a check.
func (s *Sockets) Idle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle[0]) + len(s.idle[1])
}

// reusable reports whether a socket for t may come from s.
func (s *Sockets) reusable(t *Target) bool {
	return s != nil && t.Netns == "" && !t.Source.IsValid()
}

func family(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

// get returns an idle socket ready for a connect check, or -1.
func (s *Sockets) get(v6 bool) int {
	s.mu.Lock()
	fds := s.idle[family(v6)]
	if len(fds) == 0 {
		s.mu.Unlock()
		return -1
	}
	fd := fds[len(fds)-1]
	s.idle[family(v6)] = fds[:len(fds)-1]
	s.mu.Unlock()
	// The disconnect reset the delayed-ACK state: turn quick ACKs off again
	// (see startConnect).
	if quickAckOff(fd) != nil {
		rawClose(fd)
		return -1
	}
	return fd
}

// put resets fd's connection and keeps the socket, or closes it when it
// cannot be disconnected or s is full or closed.
func (s *Sockets) put(fd int, v6 bool) {
	if rawDisconnect(fd) != nil {
		rawClose(fd)
		return
	}
	s.mu.Lock()
	if s.closed || len(s.idle[family(v6)]) >= s.max {
		s.mu.Unlock()
		rawClose(fd)
		return
	}
	s.idle[family(v6)] = append(s.idle[family(v6)], fd)
	s.mu.Unlock()
}

// rawDisconnect dissolves fd's connection (connect to AF_UNSPEC); on an
// established TCP connection the kernel sends a reset.
func rawDisconnect(fd int) error {
	sa := unix.RawSockaddrInet4{Family: unix.AF_UNSPEC}
	if _, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa)), unix.SizeofSockaddrInet4); e != 0 {
		return e
	}
	return nil
}

// quickAckOff turns TCP_QUICKACK off on fd.
func quickAckOff(fd int) error {
	var off int32
	return rawSetsockopt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, unsafe.Pointer(&off), 4)
}
