// Package action holds the actioners: the code that makes the load balancer
// match a health decision. BackendUpdate sets backend weights through
// dpvs-agent (the VS actioner); KernelRouteAddDel, KernelRouteAddDelVerdict,
// DpvsAddrAddDel, DpvsAddrKernelRouteAddDel and Script add or withdraw a VIP
// (the VA actioners); Blank does nothing. They are the DPVS healthcheck
// actioners of the same names, minus its bugs.
//
// Every actioner is idempotent: applying the same Request twice leaves the
// same state, so a redelivered event or a periodic re-assertion does no harm.
// One file per actioner; New builds any of them by name.
package action

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// Op is what a Request asks for.
type Op string

// Ops. VA actioners take UP and DOWN; the VS actioner (BackendUpdate) takes
// APPLY, whose Backends carry the weights to set.
const (
	OpUp    Op = "UP"
	OpDown  Op = "DOWN"
	OpApply Op = "APPLY"
)

// Keys of Request.Env that the actioner service fills in; Script exports
// them as HM_OBJECT, HM_FROM, HM_TO and HM_REASON.
const (
	EnvObject = "object"
	EnvFrom   = "from"
	EnvTo     = "to"
	EnvReason = "reason"
)

// Backend is one real server of a VS as BackendUpdate should leave it.
type Backend struct {
	Addr      netip.Addr
	Port      uint16
	Weight    uint16 // 0 when down, the user weight when up
	Inhibited bool   // true when down
}

// Request is one action: a VA (VIP only, Port 0, Proto 0) going UP or DOWN,
// or a VS (VIP, Port, Proto) whose Backends are to be APPLYed.
type Request struct {
	Op       Op
	VIP      netip.Addr
	Port     uint16
	Proto    subject.Proto // 0 for a VA
	Version  string        // dpvs-agent VS version the decision was made against
	Backends []Backend
	// Env holds extra facts for scripts, keyed EnvObject, EnvFrom …; a key
	// k is exported as HM_<K> (letters, digits and '_' only).
	Env map[string]string
}

// Object names the request's object the DPVS way: the VIP for a VA,
// VIP-PROTO-PORT for a VS.
func (r Request) Object() string {
	if r.Proto == 0 && r.Port == 0 {
		return r.VIP.Unmap().WithZone("").String()
	}
	return subject.VSID{Addr: r.VIP, Proto: r.Proto, Port: r.Port}.String()
}

// Actioner applies one Request. Apply returns when the action is done or
// ctx (which carries the action-timeout) ends. Errors are *Error.
type Actioner interface {
	Apply(ctx context.Context, r Request) error
}

// Verdicter is implemented by actioners that can observe the state they
// manage, so a periodic sync can detect drift (someone removed the VIP by
// hand) and re-apply. present is the state as r.Op would judge it: drift is
// present != (r.Op == OpUp).
type Verdicter interface {
	Verdict(ctx context.Context, r Request) (present bool, err error)
}

// Sentinel errors.
var (
	// ErrUnknown: New was given a name that is not an actioner.
	ErrUnknown = errors.New("unknown actioner")
	// ErrParams: New was given parameters the actioner does not accept.
	ErrParams = errors.New("invalid actioner params")
	// ErrRequest: a Request the actioner cannot act on (wrong op, no VIP …).
	// Always permanent.
	ErrRequest = errors.New("invalid request")
)

// Error is the error every Apply and Verdict returns. Permanent errors will
// fail again however often they are retried (a malformed request, a rejected
// body); all others (timeouts, an agent that is down or answers 5xx, a link
// that is missing for now) are worth retrying with backoff.
type Error struct {
	Actioner  string
	Object    string
	Op        Op
	Permanent bool
	Err       error
}

func (e *Error) Error() string {
	return "actioner: " + e.Actioner + " " + e.Object + " " + string(e.Op) + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err says that retrying the same request
// cannot succeed. nil and unclassified errors are not permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// fail wraps err as an *Error of actioner name about r; nil stays nil.
func fail(name string, r Request, permanent bool, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Actioner: name, Object: r.Object(), Op: r.Op, Permanent: permanent || errors.Is(err, ErrRequest), Err: err}
}

// checkVA validates a request for a VA actioner: UP or DOWN of a valid VIP.
func checkVA(r Request) error {
	if r.Op != OpUp && r.Op != OpDown {
		return fmt.Errorf("%w: op %q (want UP or DOWN)", ErrRequest, r.Op)
	}
	if !r.VIP.IsValid() {
		return fmt.Errorf("%w: no VIP", ErrRequest)
	}
	return nil
}

// vip returns the request's VIP as it is configured on an interface:
// IPv4-mapped addresses unmapped, zone dropped.
func vip(r Request) netip.Addr { return r.VIP.Unmap().WithZone("") }

// portString is "" for port 0.
func portString(p uint16) string {
	if p == 0 {
		return ""
	}
	return strconv.Itoa(int(p))
}
