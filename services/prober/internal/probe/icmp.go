package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// PingMode chooses the kind of ICMP socket a Pinger opens.
type PingMode uint8

// Ping modes.
const (
	// PingAuto opens an unprivileged datagram ICMP socket ("ping socket")
	// and falls back to a raw socket when the kernel refuses it: it returns
	// EACCES when the process's group is outside the namespace's
	// net.ipv4.ping_group_range (which is "1 0", nobody, by default).
	PingAuto PingMode = iota
	// PingDatagram uses only datagram ICMP sockets: the kernel picks the
	// echo identifier and delivers only our replies; ICMP errors are read
	// from the socket's error queue (IP_RECVERR).
	PingDatagram
	// PingRaw uses only raw sockets (CAP_NET_RAW): the Pinger picks the
	// identifier, and a kernel ICMP filter limits what the socket sees to
	// echo replies and errors.
	PingRaw
)

func (m PingMode) String() string {
	switch m {
	case PingDatagram:
		return "datagram"
	case PingRaw:
		return "raw"
	}
	return "auto"
}

// PingerOptions configure a Pinger.
type PingerOptions struct {
	Mode PingMode
}

// Pinger sends ICMP/ICMPv6 echo requests for many concurrent probes through
// one socket per (netns, family, source address), and demultiplexes the
// replies by sequence number (and identifier, on raw sockets) to the
// waiting probes. Each socket has one reader goroutine; a probe costs no
// socket and no goroutine beyond its caller's. The zero value is not usable:
// call NewPinger, and Close when done.
type Pinger struct {
	mode  PingMode
	waits sync.Pool // of *pingWait, reused across probes

	mu     sync.Mutex
	socks  map[sockKey]*icmpSock // guarded by mu
	closed bool                  // guarded by mu
	wg     sync.WaitGroup        // the sockets' reader goroutines
}

type sockKey struct {
	netns string
	v6    bool
	src   netip.Addr
}

// NewPinger returns a Pinger. Sockets are opened on first use of each
// (netns, family, source) and kept until Close.
func NewPinger(opts PingerOptions) *Pinger {
	return &Pinger{
		mode:  opts.Mode,
		socks: make(map[sockKey]*icmpSock),
		waits: sync.Pool{New: func() any { return &pingWait{ch: make(chan pingReply, 1)} }},
	}
}

// Close closes every socket and waits for the reader goroutines to exit.
// Probes waiting at that moment return Unknown PROCERR; later ones too.
func (p *Pinger) Close() error {
	p.mu.Lock()
	socks := p.socks
	p.socks = nil
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, s := range socks {
		errs = append(errs, s.conn.Close())
	}
	p.wg.Wait()
	return errors.Join(errs...)
}

// Ping sends one echo request to dst, from src (optional) inside netns
// (optional), and waits for the reply until ctx is done. Echo reply → Up
// ICMPOK with the round trip; destination unreachable or time exceeded for
// this echo (or an unreachable route at send) → Down ICMPUNR; nothing
// before ctx's deadline → Down ICMPTOUT.
func (p *Pinger) Ping(ctx context.Context, dst, src netip.Addr, netns string) Result {
	start := time.Now()
	dst = dst.Unmap()
	if !dst.IsValid() {
		return procErr(0, "ping: no target address")
	}
	if src.IsValid() {
		src = src.Unmap()
		if src.Is4() != dst.Is4() {
			return procErr(0, fmt.Sprintf("ping: source %s and target %s are of different address families", src, dst))
		}
	}
	s, err := p.socket(sockKey{netns: netns, v6: dst.Is6(), src: src})
	if err != nil {
		if errors.Is(err, errPingerClosed) {
			return procErr(time.Since(start), err.Error())
		}
		return sockErr(time.Since(start), "ping: "+err.Error())
	}
	w := p.waits.Get().(*pingWait)
	w.dst = dst
	seq, err := s.register(w)
	if err != nil {
		p.waits.Put(w)
		return procErr(time.Since(start), "ping: "+err.Error())
	}
	sent := time.Now()
	if err := s.send(dst, seq); err != nil {
		p.release(s, seq, w)
		if errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
			return down(event.ReasonICMPUNR, time.Since(start), "send: "+errDetail(err))
		}
		return sockErr(time.Since(start), "ping: send: "+errDetail(err))
	}
	select {
	case r := <-w.ch:
		p.release(s, seq, w)
		if r.unreach != "" {
			return down(event.ReasonICMPUNR, r.at.Sub(sent), r.unreach)
		}
		return up(event.ReasonICMPOK, r.at.Sub(sent), "")
	case <-ctx.Done():
		p.release(s, seq, w)
		if errors.Is(ctx.Err(), context.Canceled) {
			return procErr(time.Since(start), "probe canceled")
		}
		return down(event.ReasonICMPTO, time.Since(start), "no echo reply")
	case <-s.done: // Close, or the socket failed (the next probe reopens it)
		p.release(s, seq, w)
		return procErr(time.Since(start), "ping: icmp socket closed while waiting")
	}
}

var errPingerClosed = errors.New("ping: pinger closed")

// release unregisters w and returns it to the pool, empty.
func (p *Pinger) release(s *icmpSock, seq uint16, w *pingWait) {
	s.unregister(seq, w)
	select {
	case <-w.ch: // a reply delivered after we stopped waiting
	default:
	}
	w.dst = netip.Addr{}
	p.waits.Put(w)
}

// socket returns the open socket for k, opening it (again, if its reader
// died) when needed.
func (p *Pinger) socket(k sockKey) (*icmpSock, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPingerClosed
	}
	if s := p.socks[k]; s != nil {
		select {
		case <-s.done: // reader exited on a socket error: replace the socket
			s.conn.Close()
			delete(p.socks, k)
		default:
			return s, nil
		}
	}
	s, err := openICMP(k, p.mode)
	if err != nil {
		return nil, err
	}
	p.socks[k] = s
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		s.read()
	}()
	return s, nil
}

// pingWait is one probe waiting for its reply.
type pingWait struct {
	dst netip.Addr
	ch  chan pingReply // capacity 1; the reader sends at most once per registration; never closed
}

type pingReply struct {
	at      time.Time
	unreach string // non-empty: an ICMP error for our echo, described
}

// icmpSock is one ICMP socket shared by every probe of its sockKey.
type icmpSock struct {
	conn   net.PacketConn
	raw    bool
	v6     bool
	id     uint16          // echo identifier (raw sockets; the kernel sets it on datagram sockets)
	cookie [8]byte         // payload marker, so that foreign echo replies are ignored
	rc     syscall.RawConn // datagram sockets: reads the error queue
	done   chan struct{}   // closed by read when it returns

	mu   sync.Mutex
	next uint16               // next sequence number to try; guarded by mu
	wait map[uint16]*pingWait // by sequence; guarded by mu
}

// openICMP opens the socket for k in k.netns.
func openICMP(k sockKey, mode PingMode) (*icmpSock, error) {
	s := &icmpSock{v6: k.v6, done: make(chan struct{}), wait: make(map[uint16]*pingWait)}
	if _, err := rand.Read(s.cookie[:]); err != nil {
		return nil, fmt.Errorf("cookie: %w", err)
	}
	s.next = uint16(mrand.Uint32())
	err := inNetns(k.netns, func() error {
		if mode != PingRaw {
			err := s.openDatagram(k.src)
			if err == nil || mode == PingDatagram || !(errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)) {
				return err
			}
		}
		return s.openRaw(k.src)
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// rcvBuf is the receive buffer of an ICMP socket: replies to thousands of
// probes sent in the same instant arrive in a burst, and a full buffer
// silently drops them (each skb costs about 1 KiB of buffer).
const rcvBuf = 8 << 20

// openSocket creates an ICMP socket of type typ (SOCK_DGRAM or SOCK_RAW) bound
// to src, with the options every ICMP socket gets, as a net.PacketConn.
func (s *icmpSock) openSocket(typ int, src netip.Addr) (net.PacketConn, syscall.RawConn, error) {
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	sa4, sa6 := &unix.SockaddrInet4{}, &unix.SockaddrInet6{}
	if src.IsValid() {
		sa4.Addr, sa6.Addr = src.Unmap().As4(), src.As16()
	}
	var sa unix.Sockaddr = sa4
	if s.v6 {
		family, proto, sa = unix.AF_INET6, unix.IPPROTO_ICMPV6, sa6
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, nil, os.NewSyscallError("socket", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf); err != nil {
		// Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
	}
	if typ == unix.SOCK_DGRAM {
		// IP_RECVERR queues the ICMP errors about our echoes (with the
		// echo header they quote) instead of dropping them.
		level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
		if s.v6 {
			level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			unix.Close(fd)
			return nil, nil, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, nil, os.NewSyscallError("bind", err)
	}
	f := os.NewFile(uintptr(fd), "icmp")
	c, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("icmp socket: %w", err)
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("icmp socket: %w", err)
	}
	return c, rc, nil
}

func (s *icmpSock) openDatagram(src netip.Addr) error {
	c, rc, err := s.openSocket(unix.SOCK_DGRAM, src)
	if err != nil {
		return err
	}
	s.conn, s.rc = c, rc
	return nil
}

func (s *icmpSock) openRaw(src netip.Addr) error {
	c, _, err := s.openSocket(unix.SOCK_RAW, src)
	if err != nil {
		return err
	}
	// Every raw ICMP socket sees every ICMP packet of its family: let the
	// kernel drop what is not an echo reply or an error.
	if s.v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		f.Accept(ipv6.ICMPTypeDestinationUnreachable)
		f.Accept(ipv6.ICMPTypeTimeExceeded)
		err = ipv6.NewPacketConn(c).SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		f.Accept(ipv4.ICMPTypeDestinationUnreachable)
		f.Accept(ipv4.ICMPTypeTimeExceeded)
		err = ipv4.NewPacketConn(c).SetICMPFilter(&f)
	}
	if err != nil {
		c.Close()
		return fmt.Errorf("icmp filter: %w", err)
	}
	s.conn, s.raw, s.id = c, true, uint16(mrand.Uint32())
	return nil
}

// register assigns a free sequence number to w.
func (s *icmpSock) register(w *pingWait) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 1 << 16 {
		seq := s.next
		s.next++
		if _, busy := s.wait[seq]; !busy {
			s.wait[seq] = w
			return seq, nil
		}
	}
	return 0, errors.New("65536 echo requests outstanding on one socket")
}

func (s *icmpSock) unregister(seq uint16, w *pingWait) {
	s.mu.Lock()
	if s.wait[seq] == w {
		delete(s.wait, seq)
	}
	s.mu.Unlock()
}

// deliver hands r to the probe waiting on seq if ok(waiter) holds; a
// waiter gets at most one reply.
func (s *icmpSock) deliver(seq uint16, ok func(*pingWait) bool, r pingReply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.wait[seq]
	if w == nil || !ok(w) {
		return
	}
	delete(s.wait, seq)
	w.ch <- r // capacity 1 and delivered once: never blocks
}

const echoPayload = "healthmesh-ping" // after the 8-byte cookie

func (s *icmpSock) send(dst netip.Addr, seq uint16) error {
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if s.v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	data := make([]byte, 0, len(s.cookie)+len(echoPayload))
	data = append(append(data, s.cookie[:]...), echoPayload...)
	// IPv4: Marshal computes the checksum; IPv6: the kernel does.
	b, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(s.id), Seq: int(seq), Data: data}}).Marshal(nil)
	if err != nil {
		return err
	}
	var to net.Addr
	if s.raw {
		to = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	} else {
		to = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	_, err = s.conn.WriteTo(b, to)
	return err
}

// read is the socket's reader goroutine: it runs until the socket is
// closed (or fails), handing each reply or error to its waiting probe.
func (s *icmpSock) read() {
	defer close(s.done)
	buf := make([]byte, 1500)
	var eq errQueue
	for {
		n, from, err := s.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			var errno syscall.Errno
			if !s.raw && errors.As(err, &errno) {
				// A pending ICMP error (sk_err) is reported by the read;
				// the details are in the error queue.
				eq.drain(s, now)
				continue
			}
			return // closed, or a socket failure: Pinger.socket replaces it
		}
		s.handle(buf[:n], addrOf(from), now)
	}
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.IPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// handle parses one ICMP message read from the socket.
func (s *icmpSock) handle(b []byte, from netip.Addr, now time.Time) {
	proto := 1
	if s.v6 {
		proto = 58
	}
	if !s.v6 && s.raw && len(b) >= 4 && icmpChecksum(b) != 0 {
		return // corrupt (the kernel does not check ICMP checksums for raw sockets)
	}
	m, err := icmp.ParseMessage(proto, b)
	if err != nil {
		return
	}
	switch body := m.Body.(type) {
	case *icmp.Echo:
		if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
			return
		}
		if (s.raw && uint16(body.ID) != s.id) || len(body.Data) < len(s.cookie) || [8]byte(body.Data[:8]) != s.cookie {
			return
		}
		s.deliver(uint16(body.Seq), func(w *pingWait) bool { return w.dst.WithZone("") == from.WithZone("") },
			pingReply{at: now})
	case *icmp.DstUnreach:
		s.quoted(body.Data, fmt.Sprintf("destination unreachable (code %d) from %s", m.Code, from), now)
	case *icmp.TimeExceeded:
		s.quoted(body.Data, fmt.Sprintf("time exceeded (code %d) from %s", m.Code, from), now)
	}
}

// quoted matches an ICMP error to our echo through the packet it quotes:
// the original IP header (destination) and the echo header (id, sequence).
func (s *icmpSock) quoted(pkt []byte, what string, now time.Time) {
	var dst netip.Addr
	var echo []byte
	switch {
	case !s.v6 && len(pkt) >= 20 && pkt[0]>>4 == 4 && pkt[9] == 1:
		ihl := int(pkt[0]&0x0f) * 4
		if len(pkt) < ihl+8 || pkt[ihl] != 8 {
			return
		}
		dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		echo = pkt[ihl:]
	case s.v6 && len(pkt) >= 48 && pkt[0]>>4 == 6 && pkt[6] == 58 && pkt[40] == 128:
		dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		echo = pkt[40:]
	default:
		return
	}
	if binary.BigEndian.Uint16(echo[4:]) != s.id {
		return
	}
	s.deliver(binary.BigEndian.Uint16(echo[6:]), func(w *pingWait) bool { return w.dst.WithZone("") == dst },
		pingReply{at: now, unreach: what})
}

// errQueue reads a datagram socket's error queue (IP_RECVERR): each entry
// carries the echo header it is about as data, the original destination as
// the source address, and a sock_extended_err naming the ICMP type, code
// and the reporting router.
type errQueue struct {
	buf, oob [512]byte
}

func (q *errQueue) drain(s *icmpSock, now time.Time) {
	_ = s.rc.Read(func(fd uintptr) bool {
		for {
			n, oobn, _, from, err := unix.Recvmsg(int(fd), q.buf[:], q.oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				return true // EAGAIN: drained
			}
			q.entry(s, q.buf[:n], q.oob[:oobn], from, now)
		}
	})
}

func (q *errQueue) entry(s *icmpSock, data, oob []byte, from unix.Sockaddr, now time.Time) {
	if len(data) < 8 {
		return
	}
	var dst netip.Addr
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		dst = netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		dst = netip.AddrFrom16(sa.Addr)
	default:
		return
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, cm := range cmsgs {
		if !(cm.Header.Level == unix.IPPROTO_IP && cm.Header.Type == unix.IP_RECVERR) &&
			!(cm.Header.Level == unix.IPPROTO_IPV6 && cm.Header.Type == unix.IPV6_RECVERR) {
			continue
		}
		const eeSize = 16 // sizeof(struct sock_extended_err)
		if len(cm.Data) < eeSize {
			continue
		}
		origin, typ, code := cm.Data[4], cm.Data[5], cm.Data[6]
		if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
			continue // a local error (e.g. EMSGSIZE): no verdict, the probe times out
		}
		what := fmt.Sprintf("icmp error type %d code %d", typ, code)
		switch {
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 3, origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 1:
			what = fmt.Sprintf("destination unreachable (code %d)", code)
		case origin == unix.SO_EE_ORIGIN_ICMP && typ == 11, origin == unix.SO_EE_ORIGIN_ICMP6 && typ == 3:
			what = fmt.Sprintf("time exceeded (code %d)", code)
		}
		if off := offender(cm.Data[eeSize:]); off.IsValid() {
			what += " from " + off.String()
		}
		s.deliver(binary.BigEndian.Uint16(data[6:]), func(w *pingWait) bool { return w.dst.WithZone("") == dst },
			pingReply{at: now, unreach: what})
	}
}

// offender decodes SO_EE_OFFENDER: the sockaddr following the extended error.
func offender(b []byte) netip.Addr {
	if len(b) < 2 {
		return netip.Addr{}
	}
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		if len(b) >= 8 {
			return netip.AddrFrom4([4]byte(b[4:8]))
		}
	case unix.AF_INET6:
		if len(b) >= 24 {
			return netip.AddrFrom16([16]byte(b[8:24]))
		}
	}
	return netip.Addr{}
}

// icmpChecksum returns the one's complement sum of b folded to 16 bits,
// complemented: 0 for a message with a correct checksum.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// Ping is the `ping` method: one ICMP/ICMPv6 echo through a shared Pinger.
type Ping struct {
	pinger *Pinger
}

// NewPing returns the ping method (it has no params) using pg's sockets.
func NewPing(pg *Pinger) *Ping { return &Ping{pinger: pg} }

// Probe implements Prober.
func (p *Ping) Probe(ctx context.Context, t *Target) Result {
	return run(ctx, t, false, func(pctx context.Context, _ time.Time) Result {
		return p.pinger.Ping(pctx, t.Addr.Addr(), t.Source, t.Netns)
	})
}
