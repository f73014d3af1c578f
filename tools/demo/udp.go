package demo

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// udpMax is the largest datagram echoed whole; longer ones are cut, which
// no health check cares about.
const udpMax = 2048

type udpRunner struct {
	b    *backend
	pc   *net.UDPConn
	done chan struct{} // closed by halt
	wg   sync.WaitGroup
}

func (f *Farm) serveUDP(b *backend) (runner, netip.AddrPort, error) {
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(b.addr))
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	return &udpRunner{b: b, pc: pc, done: make(chan struct{})}, boundAddr(pc.LocalAddr()), nil
}

func (r *udpRunner) start() {
	r.wg.Add(1)
	go r.loop()
}

func (r *udpRunner) loop() {
	defer r.wg.Done()
	buf := make([]byte, udpMax)
	for {
		n, from, err := r.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. a truncated datagram: nothing to stop for
		}
		r.b.requests.Add(1)
		if !r.b.pause(r.done) {
			return
		}
		if _, err := r.pc.WriteToUDPAddrPort(reply(buf[:n]), from); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

func (r *udpRunner) halt() {
	close(r.done)
	r.pc.Close()
}

func (r *udpRunner) wait() { r.wg.Wait() }
