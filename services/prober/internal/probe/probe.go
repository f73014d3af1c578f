// Package probe implements the prober's check methods: none, tcp, udp, ping,
// udpping and http, one file per method, in the shape of blackbox_exporter's
// prober package. A method is a Prober built once from its typed, validated
// parameters; each probe returns a classified Result (state plus a
// HAProxy-style reason code such as L4OK, L4TOUT, L7STS) rather than a bool,
// and never outlives its timeout.
//
// The behaviour follows the DPVS healthcheck program's methods minus its bugs:
// tcp/udp send, receive and proxy-protocol parameters really reach the probe,
// udpping accepts parameters, http sends request-headers and connects to the
// backend (not to the `host` parameter), and ICMP shares one socket per
// (netns, family, source) instead of opening a raw socket per probe.
package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Method names. They are the names DPVS gives its numeric methods 1..6, and
// the method token in target IDs.
const (
	MethodNone    = "none"
	MethodTCP     = "tcp"
	MethodUDP     = "udp"
	MethodPing    = "ping"
	MethodUDPPing = "udpping"
	MethodHTTP    = "http"

	// MethodAuto is a pseudo method: Resolve turns it into a real one from
	// the service protocol before New is called.
	MethodAuto = "auto"
)

// Methods returns every real method New implements, in DPVS order. It is the
// one list the registry is checked against.
func Methods() []string {
	return []string{MethodNone, MethodTCP, MethodUDP, MethodPing, MethodUDPPing, MethodHTTP}
}

// Errors returned by New.
var (
	// ErrMethod: the method name is unknown (or is "auto", not resolved).
	ErrMethod = errors.New("probe: unknown method")
	// ErrParam: a method-params key is unknown or its value is invalid.
	ErrParam = errors.New("probe: bad method-params")
	// ErrDeps: the method needs a dependency that Deps does not provide.
	ErrDeps = errors.New("probe: missing dependency")
)

// Result is the classified outcome of one probe.
//
// State Unknown means the probe could not run (Reason PROCERR: bad target,
// canceled, no time left; Reason SOCKERR: the local socket could not be
// set up, e.g. bad source address or netns). It is a check error, not a
// verdict, and must not change a checker's state.
type Result struct {
	State  event.State
	Reason event.Reason
	RTT    time.Duration // round trip of the deciding exchange, or the probe's duration
	Detail string        // short human-readable detail: "connection refused", "status 503"
}

// Verdict reports whether r says something about the target (Up or Down)
// rather than that the probe could not run.
func (r Result) Verdict() bool { return r.State == event.Up || r.State == event.Down }

// Target is where and how long to probe. The caller has already folded the
// check-address / check-port overrides into Addr and resolved any source
// template (see ResolveSource) into Source.
type Target struct {
	Addr    netip.AddrPort // what to connect to (port unused by ping)
	Proto   subject.Proto  // the service protocol (informational; Resolve uses it for auto)
	Timeout time.Duration  // whole-probe budget; must be > 0
	Source  netip.Addr     // optional local address to bind
	Netns   string         // optional network namespace name (/var/run/netns/<name>) to probe from
}

// Prober runs one check method. Probe never outlives ctx nor t.Timeout, and
// is safe for concurrent use.
type Prober interface {
	Probe(ctx context.Context, t *Target) Result
}

// Deps are the shared resources some methods need.
type Deps struct {
	Pinger  *Pinger        // ping and udpping: the shared ICMP sockets (required for them)
	RootCAs *x509.CertPool // http with tls-verify: trusted roots; nil = the system pool
	Sockets *Sockets       // tcp connect checks: sockets kept for reuse (optional)
}

// Resolve returns the method a DPVS `auto` stands for given the service
// protocol (TCP → tcp, UDP → udpping, anything else → ping, as DPVS's
// TranslateAuto). Any other method is returned unchanged.
func Resolve(method string, proto subject.Proto) string {
	if method != MethodAuto {
		return method
	}
	return config.MethodAuto.ResolveAuto(proto).String()
}

// New builds the Prober for method from the raw DPVS method-params map,
// validating every key. Errors wrap ErrMethod, ErrParam or ErrDeps and name
// the offending method and key. This switch is the method registry.
func New(method string, params map[string]string, deps Deps) (Prober, error) {
	switch method {
	case MethodNone:
		return NewNone(), nil // DPVS accepts and ignores any params
	case MethodTCP:
		p, err := parseTCPParams(params)
		if err != nil {
			return nil, err
		}
		tcp := NewTCP(p)
		tcp.sockets = deps.Sockets
		return tcp, nil
	case MethodUDP:
		p, err := parseUDPParams(MethodUDP, params)
		if err != nil {
			return nil, err
		}
		return NewUDP(p), nil
	case MethodPing:
		if err := noParams(MethodPing, params); err != nil {
			return nil, err
		}
		if deps.Pinger == nil {
			return nil, fmt.Errorf("%w: %s needs a Pinger", ErrDeps, method)
		}
		return NewPing(deps.Pinger), nil
	case MethodUDPPing:
		p, err := parseUDPParams(MethodUDPPing, params)
		if err != nil {
			return nil, err
		}
		if deps.Pinger == nil {
			return nil, fmt.Errorf("%w: %s needs a Pinger", ErrDeps, method)
		}
		return NewUDPPing(p, deps.Pinger), nil
	case MethodHTTP:
		p, err := parseHTTPParams(params)
		if err != nil {
			return nil, err
		}
		return NewHTTP(p, deps.RootCAs), nil
	case MethodAuto:
		return nil, fmt.Errorf("%w: %q must be resolved with Resolve before New", ErrMethod, method)
	}
	return nil, fmt.Errorf("%w: %q (want one of %v)", ErrMethod, method, Methods())
}

// run is the frame of every probe: it validates t, bounds the probe by
// t.Timeout, runs fn with that context and the start time, and turns a
// result cut short by the caller's cancellation into a non-verdict.
func run(ctx context.Context, t *Target, needPort bool, fn func(pctx context.Context, start time.Time) Result) Result {
	start := time.Now()
	if err := checkTarget(t, needPort); err != nil {
		return procErr(0, err.Error())
	}
	pctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	return settle(ctx, fn(pctx, start))
}

func checkTarget(t *Target, needPort bool) error {
	switch {
	case t == nil:
		return errors.New("no target")
	case !t.Addr.Addr().IsValid():
		return errors.New("target has no address")
	case needPort && t.Addr.Port() == 0:
		return fmt.Errorf("target %s has port 0", t.Addr.Addr())
	case t.Timeout <= 0:
		return fmt.Errorf("timeout %v must be > 0", t.Timeout)
	case t.Source.IsValid() && t.Source.Unmap().Is4() != t.Addr.Addr().Unmap().Is4():
		return fmt.Errorf("source %s and target %s are of different address families", t.Source, t.Addr.Addr())
	}
	return nil
}

// dest returns the address to connect to, IPv4-mapped addresses unmapped so
// that tcp4/udp4 sockets are used for them.
func dest(t *Target) netip.AddrPort {
	return netip.AddrPortFrom(t.Addr.Addr().Unmap(), t.Addr.Port())
}

// settle turns a Down result into a non-verdict when the caller canceled the
// probe (prober shutting down, target removed): a probe cut short by its
// owner says nothing about the backend.
func settle(parent context.Context, r Result) Result {
	if r.State == event.Down && errors.Is(parent.Err(), context.Canceled) {
		return procErr(r.RTT, "probe canceled")
	}
	return r
}

func up(reason event.Reason, rtt time.Duration, detail string) Result {
	return Result{State: event.Up, Reason: reason, RTT: rtt, Detail: detail}
}

func down(reason event.Reason, rtt time.Duration, detail string) Result {
	return Result{State: event.Down, Reason: reason, RTT: rtt, Detail: detail}
}

func procErr(rtt time.Duration, detail string) Result {
	return Result{State: event.Unknown, Reason: event.ReasonPROCERR, RTT: rtt, Detail: detail}
}

func sockErr(rtt time.Duration, detail string) Result {
	return Result{State: event.Unknown, Reason: event.ReasonSOCKERR, RTT: rtt, Detail: detail}
}
