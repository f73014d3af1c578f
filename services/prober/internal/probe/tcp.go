package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// TCPParams are the tcp method's parameters.
type TCPParams struct {
	Send          []byte        // bytes written after connect (and after the PROXY header)
	Receive       []byte        // bytes the backend must answer with, compared byte for byte
	ProxyProtocol ProxyProtocol // PROXY header written right after connect
}

// TCP is the `tcp` method: connect, then optionally write a PROXY header and
// Send, and read len(Receive) bytes that must equal Receive.
type TCP struct {
	p       TCPParams
	sockets *Sockets // connect-only checks reuse sockets from here (optional)
}

// NewTCP returns the tcp method for p.
func NewTCP(p TCPParams) *TCP { return &TCP{p: p} }

func parseTCPParams(params map[string]string) (TCPParams, error) {
	var p TCPParams
	for _, k := range sortedKeys(params) {
		v := params[k]
		var err error
		switch k {
		case "send":
			p.Send, err = parsePayload(MethodTCP, k, v)
		case "receive":
			p.Receive, err = parsePayload(MethodTCP, k, v)
		case "proxy-protocol":
			p.ProxyProtocol, err = parseProxyProtocol(MethodTCP, k, v, true)
		default:
			err = unknownKey(MethodTCP, k, "send", "receive", "proxy-protocol")
		}
		if err != nil {
			return TCPParams{}, err
		}
	}
	return p, nil
}

// Probe implements Prober.
//
// Connect refused/reset/unreachable → Down L4CON; no connection in time →
// Down L4TOUT; connected with nothing to exchange → Up L4OK. With a PROXY
// header or Send, a failed write → L4CON/L4TOUT. With Receive: the reply is
// compared as it arrives (a wrong byte fails at once) → Down L4RSP on a
// mismatch or a close before len(Receive) bytes, Down L4TOUT when the bytes
// do not arrive in time. Unlike DPVS, the PROXY header is sent even when
// neither Send nor Receive is set, so a backend that requires it never sees
// a header-less connection from the checker.
func (p *TCP) Probe(ctx context.Context, t *Target) Result {
	connectOnly := p.p.ProxyProtocol == ProxyNone && len(p.p.Send) == 0 && len(p.p.Receive) == 0
	if connectOnly && t != nil && fastConnect(t) {
		return p.connectOnly(ctx, t)
	}
	return run(ctx, t, true, func(pctx context.Context, start time.Time) Result {
		c, err := dialConn(pctx, "tcp", t)
		if err != nil {
			return connFailure(err, time.Since(start))
		}
		if connectOnly {
			closeReset(c)
			return up(event.ReasonL4OK, time.Since(start), "")
		}
		// After an exchange the close is graceful, as HAProxy's for its
		// banner checks: servers that speak first tend to log a reset as
		// an error.
		defer c.Close()
		return p.exchange(pctx, c, start)
	})
}

// connectOnly is Probe without an exchange: the connection is started at
// once, and a timeout is set up only when the handshake is still running.
func (p *TCP) connectOnly(ctx context.Context, t *Target) Result {
	start := time.Now()
	if err := checkTarget(t, true); err != nil {
		return procErr(0, err.Error())
	}
	result := func(err error) Result {
		if err != nil {
			return settle(ctx, connFailure(err, time.Since(start)))
		}
		return up(event.ReasonL4OK, time.Since(start), "")
	}
	c, err := startConnect(t, p.sockets)
	if c.fd < 0 {
		return result(err)
	}
	pctx, cancel := context.WithDeadline(ctx, start.Add(t.Timeout))
	defer cancel()
	return result(waitConnect(pctx, c))
}

func (p *TCP) exchange(ctx context.Context, c net.Conn, start time.Time) Result {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	defer watchCtx(ctx, c)()

	out := proxyHeader(p.p.ProxyProtocol, c, false)
	out = append(out, p.p.Send...)
	if len(out) > 0 {
		if _, err := c.Write(out); err != nil {
			return ioFailure("write", ctxErr(ctx, err), time.Since(start))
		}
	}
	want := p.p.Receive
	if len(want) == 0 {
		return up(event.ReasonL4OK, time.Since(start), "")
	}
	buf := make([]byte, len(want))
	got := 0
	for got < len(want) {
		n, err := c.Read(buf[got:])
		if n > 0 {
			if i := mismatchAt(buf[got:got+n], want[got:got+n]); i >= 0 {
				return down(event.ReasonL4RSP, time.Since(start),
					fmt.Sprintf("reply differs from receive at byte %d", got+i))
			}
			got += n
		}
		if got == len(want) {
			break
		}
		if err != nil {
			rtt := time.Since(start)
			switch {
			case errors.Is(err, io.EOF):
				return down(event.ReasonL4RSP, rtt, fmt.Sprintf("connection closed after %d of %d reply bytes", got, len(want)))
			case isTimeout(ctxErr(ctx, err)):
				return down(event.ReasonL4TOUT, rtt, fmt.Sprintf("read timeout after %d of %d reply bytes", got, len(want)))
			}
			return ioFailure("read", ctxErr(ctx, err), rtt)
		}
	}
	return up(event.ReasonL4OK, time.Since(start), "")
}

// ctxErr prefers ctx's error over the I/O error it caused (watchCtx turns a
// cancellation into an I/O deadline error).
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// mismatchAt returns the index of the first byte where got and want differ,
// or -1.
func mismatchAt(got, want []byte) int {
	if bytes.Equal(got, want) {
		return -1
	}
	for i := range got {
		if i >= len(want) || got[i] != want[i] {
			return i
		}
	}
	return len(got)
}
