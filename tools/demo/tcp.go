package demo

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// tcpIdle closes a connection that sends nothing for this long, so
// abandoned probe connections do not pile up descriptors.
const tcpIdle = time.Minute

// acceptBackoff is how long an accept loop waits after an error such as
// EMFILE, so a descriptor shortage does not spin a core.
const acceptBackoff = 50 * time.Millisecond

type tcpRunner struct {
	f    *Farm
	b    *backend
	ln   *net.TCPListener
	done chan struct{} // closed by halt
	wg   sync.WaitGroup

	mu     sync.Mutex
	halted bool
	conns  map[net.Conn]struct{} // made on the first connection: most listeners never see one at scale
}

func (f *Farm) serveTCP(b *backend) (runner, netip.AddrPort, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(b.addr))
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return &tcpRunner{f: f, b: b, ln: ln, done: make(chan struct{})}, boundAddr(ln.Addr()), nil
}

func (r *tcpRunner) start() {
	r.wg.Add(1)
	go r.accept()
}

func (r *tcpRunner) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.f.log.Warn().Err(err).Str("backend", r.b.name).Msg("accept")
			t := time.NewTimer(acceptBackoff)
			select {
			case <-r.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		if !r.track(c) {
			c.Close()
			return
		}
		go r.handle(c)
	}
}

// track registers c so halt can close it; false once halted. The WaitGroup
// Add happens under mu before halt sets halted, so it never races wait.
func (r *tcpRunner) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.halted {
		return false
	}
	if r.conns == nil {
		r.conns = make(map[net.Conn]struct{})
	}
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *tcpRunner) handle(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	r.b.requests.Add(1)
	if len(r.b.banner) > 0 {
		if !r.b.pause(r.done) {
			return
		}
		if _, err := c.Write(r.b.banner); err != nil {
			return
		}
	}
	buf := make([]byte, 4096)
	for {
		if err := c.SetReadDeadline(time.Now().Add(tcpIdle)); err != nil {
			return
		}
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if !r.b.pause(r.done) {
			return
		}
		if _, err := c.Write(reply(buf[:n])); err != nil {
			return
		}
	}
}

func (r *tcpRunner) halt() {
	close(r.done)
	r.ln.Close()
	r.mu.Lock()
	r.halted = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
}

func (r *tcpRunner) wait() { r.wg.Wait() }

// reply is what tcp and udp backends answer to p: each line "PING" becomes
// "PONG" with the same line ending (none, "\n" or "\r\n"), so a tcp or udp
// check with send "PING\n" and receive "PONG\n" passes; anything else is
// echoed unchanged.
func reply(p []byte) []byte {
	out := make([]byte, 0, len(p))
	for len(p) > 0 {
		line, rest := p, []byte(nil)
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			line, rest = p[:i+1], p[i+1:]
		}
		if body := bytes.TrimRight(line, "\r\n"); string(body) == "PING" {
			out = append(out, "PONG"...)
			out = append(out, line[len(body):]...)
		} else {
			out = append(out, line...)
		}
		p = rest
	}
	return out
}

// boundAddr is the address a socket got, unmapped so an IPv4 listener shows
// 127.0.0.1 and not ::ffff:127.0.0.1.
func boundAddr(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
