package probe

import (
	"context"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// UDPPing is the `udpping` method (DPVS's default for UDP services): a ping
// with the whole timeout, then, if the host answered, the udp check with the
// time that is left. Unlike DPVS, which crashed on any parameter, it takes
// the udp parameters.
type UDPPing struct {
	pinger *Pinger
	udp    *UDP
}

// NewUDPPing returns the udpping method for p, pinging through pg.
func NewUDPPing(p UDPParams, pg *Pinger) *UDPPing {
	return &UDPPing{pinger: pg, udp: NewUDP(p)}
}

// Probe implements Prober. A Down ping is the verdict (ICMPTOUT, ICMPUNR);
// an Up ping hands over to udp, whose result is returned with the duration
// of the whole probe; no time left after the ping → Unknown PROCERR.
func (u *UDPPing) Probe(ctx context.Context, t *Target) Result {
	return run(ctx, t, true, func(pctx context.Context, start time.Time) Result {
		r := settle(ctx, u.pinger.Ping(pctx, t.Addr.Addr(), t.Source, t.Netns))
		if r.State != event.Up {
			return r
		}
		deadline, _ := pctx.Deadline()
		return u.udpUntil(ctx, t, start, deadline)
	})
}

// udpUntil runs the udp check with the time left until deadline.
func (u *UDPPing) udpUntil(ctx context.Context, t *Target, start, deadline time.Time) Result {
	left := time.Until(deadline)
	if left <= 0 {
		return procErr(time.Since(start), "ping took the whole timeout: no time left for the udp check")
	}
	rest := *t
	rest.Timeout = left
	r := u.udp.Probe(ctx, &rest)
	r.RTT = time.Since(start)
	return r
}
