// Package demo serves many small TCP, HTTP and UDP backends for healthmesh to
// probe — in `make run`, the end-to-end tests, the compose stack and the
// benchmarks — and an HTTP control API that fails, recovers, slows down or
// changes the answer of any of them while healthmesh watches.
//
// A failed backend has its socket closed, so probes see what a dead server
// gives: TCP and HTTP connects are refused, UDP probes get an ICMP port
// unreachable (ECONNREFUSED on a connected socket). Recovering binds the same
// address again.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// Errors callers (the control API) tell apart.
var (
	ErrNoBackend = errors.New("no such backend")
	ErrNotHTTP   = errors.New("not an http backend")
	ErrClosed    = errors.New("backends closed")
)

// State values in Status.
const (
	StateUp     = "up"
	StateFailed = "failed"
)

// Status is one backend as the control API lists it.
type Status struct {
	Name     string `json:"name"`
	Proto    Proto  `json:"proto"`
	Addr     string `json:"addr"` // the bound address, with the real port when the spec said 0
	State    string `json:"state"`
	Code     int    `json:"code,omitempty"`  // http: the status it answers
	Delay    string `json:"delay,omitempty"` // set by /slow
	Requests uint64 `json:"requests"`        // tcp: connections, http: requests, udp: datagrams
}

// Farm is a running set of backends. Its methods are safe for concurrent use.
type Farm struct {
	log    zerolog.Logger
	errLog *log.Logger // for net/http's own complaints (bad requests, TLS probes)

	list   []*backend          // in the order given, for listings
	byName map[string]*backend // immutable after Start
	byAddr map[netip.AddrPort][]*backend

	closed    atomic.Bool // set by Close before it stops anything, so Recover cannot restart a backend behind it
	closeOnce sync.Once
}

// backend is one listener. name, proto, addr and banner never change; the
// rest is read by the serving goroutines without locks.
type backend struct {
	name   string
	proto  Proto
	addr   netip.AddrPort
	banner []byte

	requests atomic.Uint64
	code     atomic.Int32
	delay    atomic.Int64 // nanoseconds

	mu  sync.Mutex // serialises start and stop
	run runner     // nil while failed
}

// runner is one life of a backend's socket, from bind to stop.
type runner interface {
	start() // starts serving the bound socket
	halt()  // closes the socket and its connections; does not block
	wait()  // returns once every goroutine of the runner is gone
}

// Start binds every backend and serves them until Close. If any address
// cannot be bound, the ones already bound are closed and the error names
// the address. ctx bounds only the binding.
func Start(ctx context.Context, logger zerolog.Logger, specs []Spec) (*Farm, error) {
	f := &Farm{
		log:    logger,
		errLog: log.New(logger.With().Str("component", "http").Logger(), "", 0),
		list:   make([]*backend, 0, len(specs)),
		byName: make(map[string]*backend, len(specs)),
		byAddr: make(map[netip.AddrPort][]*backend, len(specs)),
	}
	// Validate everything before binding anything, so a typo in the last
	// spec does not cost binding 60,000 sockets first.
	addrs := make([]netip.AddrPort, len(specs))
	named := make(map[string]int)
	for i, s := range specs {
		ap, err := s.check()
		if err != nil {
			return nil, fmt.Errorf("demo: backend %d %s: %w", i+1, s.Name, err)
		}
		if j, dup := named[s.Name]; dup && s.Name != "" {
			return nil, fmt.Errorf("demo: backend %d: %w: name %q already used by backend %d", i+1, ErrSpec, s.Name, j+1)
		}
		named[s.Name] = i
		addrs[i] = ap
	}
	for i, s := range specs {
		if err := ctx.Err(); err != nil {
			f.Close()
			return nil, fmt.Errorf("demo: start: %w", err)
		}
		b := &backend{name: s.Name, proto: s.Proto, addr: addrs[i], banner: []byte(s.Banner)}
		b.code.Store(int32(s.Status))
		if s.Status == 0 {
			b.code.Store(200)
		}
		b.delay.Store(int64(s.Delay))
		r, bound, err := f.serve(b)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("demo: backend %d (%s): %w", i+1, b.proto, err)
		}
		b.run, b.addr = r, bound
		if b.name == "" {
			b.name = defaultName(b.proto, b.addr)
		}
		r.start() // after the name is final: the serving goroutines read it
		f.list = append(f.list, b)
		if other, dup := f.byName[b.name]; dup {
			f.Close()
			return nil, fmt.Errorf("demo: backend %d: name %q already used by %s %s", i+1, b.name, other.proto, other.addr)
		}
		f.byName[b.name] = b
		f.byAddr[b.addr] = append(f.byAddr[b.addr], b)
	}
	return f, nil
}

// defaultName is the DPVS backend ID of the address: what healthmesh shows.
func defaultName(p Proto, ap netip.AddrPort) string {
	sp := subject.TCP
	if p == UDP {
		sp = subject.UDP
	}
	return subject.Endpoint{Addr: ap.Addr(), Proto: sp, Port: ap.Port()}.String()
}

// serve binds b's address. It returns the runner, not yet started, and the
// bound address (the real port when b.addr has port 0).
func (f *Farm) serve(b *backend) (runner, netip.AddrPort, error) {
	// net's errors name the address: "listen tcp 127.0.0.1:80: bind: ...".
	switch b.proto {
	case TCP:
		return f.serveTCP(b)
	case HTTP:
		return f.serveHTTP(b)
	case UDP:
		return f.serveUDP(b)
	}
	return nil, netip.AddrPort{}, fmt.Errorf("%w: proto %q", ErrSpec, b.proto)
}

// Close stops every backend and returns when their goroutines are gone.
func (f *Farm) Close() error {
	f.closeOnce.Do(func() {
		f.closed.Store(true)
		// Halt all first and wait after, so closing 60,000 listeners does
		// not wait for each accept loop to notice in turn.
		var halted []runner
		for _, b := range f.list {
			b.mu.Lock()
			if b.run != nil {
				b.run.halt()
				halted = append(halted, b.run)
				b.run = nil
			}
			b.mu.Unlock()
		}
		for _, r := range halted {
			r.wait()
		}
	})
	return nil
}

// Len is the number of backends.
func (f *Farm) Len() int { return len(f.list) }

// Backends lists every backend in the order they were given.
func (f *Farm) Backends() []Status {
	out := make([]Status, len(f.list))
	for i, b := range f.list {
		out[i] = b.status()
	}
	return out
}

// Backend returns one backend's status.
func (f *Farm) Backend(name string) (Status, error) {
	b, err := f.get(name)
	if err != nil {
		return Status{}, err
	}
	return b.status(), nil
}

// Lookup returns the names of the backends bound to addr (ip:port), of
// proto when proto is not empty, in name order.
func (f *Farm) Lookup(addr string, proto Proto) ([]string, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: addr %q: want ip:port", ErrSpec, addr)
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
	var names []string
	for _, b := range f.byAddr[ap] {
		if proto == "" || b.proto == proto {
			names = append(names, b.name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w at %s", ErrNoBackend, addr)
	}
	sort.Strings(names)
	return names, nil
}

// Fail closes the backend's socket and every connection it has. Failing a
// failed backend does nothing.
func (f *Farm) Fail(name string) error {
	b, err := f.get(name)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.run == nil {
		return nil
	}
	b.run.halt()
	b.run.wait()
	b.run = nil
	f.log.Info().Str("backend", b.name).Str("addr", b.addr.String()).Msg("failed")
	return nil
}

// Recover binds the backend's address again. Recovering a running backend
// does nothing; if the address is taken meanwhile, the error says so.
func (f *Farm) Recover(name string) error {
	b, err := f.get(name)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if f.closed.Load() {
		return fmt.Errorf("demo: recover %s: %w", b.name, ErrClosed)
	}
	if b.run != nil {
		return nil
	}
	r, _, err := f.serve(b)
	if err != nil {
		return fmt.Errorf("demo: recover %s (%s): %w", b.name, b.proto, err)
	}
	r.start()
	b.run = r
	f.log.Info().Str("backend", b.name).Str("addr", b.addr.String()).Msg("recovered")
	return nil
}

// SetStatus makes an HTTP backend answer code (200 to return to normal).
func (f *Farm) SetStatus(name string, code int) error {
	b, err := f.get(name)
	if err != nil {
		return err
	}
	if b.proto != HTTP {
		return fmt.Errorf("demo: %s is %s: %w", b.name, b.proto, ErrNotHTTP)
	}
	if err := checkCode(code); err != nil {
		return fmt.Errorf("demo: %s: %w: %w", b.name, ErrSpec, err)
	}
	b.code.Store(int32(code))
	f.log.Info().Str("backend", b.name).Int("code", code).Msg("status set")
	return nil
}

// SetDelay makes the backend wait d before every answer (0 to return to
// normal): before the banner and each reply (tcp), before the response
// (http), before each reply datagram (udp). TCP connects still complete at
// once, as the kernel accepts them.
func (f *Farm) SetDelay(name string, d time.Duration) error {
	b, err := f.get(name)
	if err != nil {
		return err
	}
	if d < 0 {
		return fmt.Errorf("demo: %s: %w: delay %v: must not be negative", b.name, ErrSpec, d)
	}
	b.delay.Store(int64(d))
	f.log.Info().Str("backend", b.name).Dur("delay", d).Msg("delay set")
	return nil
}

func (f *Farm) get(name string) (*backend, error) {
	b, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("demo: %w: %q", ErrNoBackend, name)
	}
	return b, nil
}

func (b *backend) status() Status {
	b.mu.Lock()
	up := b.run != nil
	b.mu.Unlock()
	st := Status{Name: b.name, Proto: b.proto, Addr: b.addr.String(), State: StateFailed, Requests: b.requests.Load()}
	if up {
		st.State = StateUp
	}
	if b.proto == HTTP {
		st.Code = int(b.code.Load())
	}
	if d := time.Duration(b.delay.Load()); d > 0 {
		st.Delay = d.String()
	}
	return st
}

// pause waits the configured delay; false means done closed first.
func (b *backend) pause(done <-chan struct{}) bool {
	d := time.Duration(b.delay.Load())
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
