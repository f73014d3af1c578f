package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// UDPParams are the udp (and udpping) method's parameters.
type UDPParams struct {
	Send    []byte // datagram payload; empty = a zero-length datagram
	Receive []byte // required reply prefix; empty = no reply required
	ProxyV2 bool   // send a PROXY v2 header as its own datagram first (as DPVS)
}

// UDP is the `udp` method over a connected UDP socket.
type UDP struct {
	p UDPParams
}

// NewUDP returns the udp method for p.
func NewUDP(p UDPParams) *UDP { return &UDP{p: p} }

func parseUDPParams(method string, params map[string]string) (UDPParams, error) {
	var p UDPParams
	for _, k := range sortedKeys(params) {
		v := params[k]
		var err error
		switch k {
		case "send":
			p.Send, err = parsePayload(method, k, v)
		case "receive":
			p.Receive, err = parsePayload(method, k, v)
		case "proxy-protocol":
			_, err = parseProxyProtocol(method, k, v, false)
			p.ProxyV2 = err == nil
		default:
			err = unknownKey(method, k, "send", "receive", "proxy-protocol")
		}
		if err != nil {
			return UDPParams{}, err
		}
	}
	return p, nil
}

// Probe implements Prober.
//
// It sends the optional PROXY v2 datagram, then Send (or an empty datagram),
// and reads one reply. The DPVS rules: an ICMP port unreachable (read or
// write ECONNREFUSED) or other ICMP error → Down L4CON; a reply → Up L4OK
// when it starts with Receive, else Down L4RSP; no reply in time → Down
// L4TOUT when Receive is set, Up L4OK ("no reply (none required)") when it
// is not, since a silent UDP service is the normal case.
func (u *UDP) Probe(ctx context.Context, t *Target) Result {
	return run(ctx, t, true, func(pctx context.Context, start time.Time) Result { return u.probe(pctx, t, start) })
}

func (u *UDP) probe(ctx context.Context, t *Target, start time.Time) Result {
	c, err := dialConn(ctx, "udp", t)
	if err != nil {
		return connFailure(err, time.Since(start))
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	defer watchCtx(ctx, c)()

	if u.p.ProxyV2 {
		if _, err := c.Write(proxyHeader(ProxyV2, c, true)); err != nil {
			return ioFailure("write", ctxErr(ctx, err), time.Since(start))
		}
	}
	if _, err := c.Write(u.p.Send); err != nil {
		return ioFailure("write", ctxErr(ctx, err), time.Since(start))
	}
	// A datagram longer than the buffer is truncated by the kernel; only
	// its first len(Receive) bytes matter. One byte at least, so that the
	// read waits for a datagram or an ICMP error instead of returning.
	buf := make([]byte, max(len(u.p.Receive), 1))
	n, err := c.Read(buf)
	rtt := time.Since(start)
	if err != nil {
		err = ctxErr(ctx, err)
		switch {
		case errors.Is(err, context.Canceled):
			return procErr(rtt, "probe canceled")
		case isTimeout(err) && len(u.p.Receive) == 0:
			return up(event.ReasonL4OK, rtt, "no reply (none required)")
		case isTimeout(err):
			return down(event.ReasonL4TOUT, rtt, "no reply")
		}
		return down(event.ReasonL4CON, rtt, errDetail(err))
	}
	want := u.p.Receive
	if n < len(want) {
		return down(event.ReasonL4RSP, rtt, fmt.Sprintf("reply of %d bytes, want at least %d", n, len(want)))
	}
	if i := mismatchAt(buf[:len(want)], want); i >= 0 {
		return down(event.ReasonL4RSP, rtt, fmt.Sprintf("reply differs from receive at byte %d", i))
	}
	return up(event.ReasonL4OK, rtt, "")
}
