package probe

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// target returns a Target for addr ("127.0.0.1:80") with timeout d.
func target(t testing.TB, addr string, d time.Duration) *Target {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatalf("bad test address %q: %v", addr, err)
	}
	return &Target{Addr: ap, Timeout: d}
}

// closedPort returns a loopback TCP or UDP address nothing listens on.
func closedPort(t testing.TB, network, host string) string {
	t.Helper()
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	default:
		c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr := c.LocalAddr().String()
		c.Close()
		return addr
	}
}

// wantResult checks state and reason, and that a probe respected its budget.
func wantResult(t testing.TB, got Result, state event.State, reason event.Reason) {
	t.Helper()
	if got.State != state || got.Reason != reason {
		t.Fatalf("result = %s %s (%q), want %s %s", got.State, got.Reason, got.Detail, state, reason)
	}
}

// probeWithin runs p against tg and fails if it took longer than the
// target's timeout plus slack: a probe never outlives its timeout.
func probeWithin(t testing.TB, p Prober, tg *Target) Result {
	t.Helper()
	start := time.Now()
	r := p.Probe(context.Background(), tg)
	if el := time.Since(start); el > tg.Timeout+500*time.Millisecond {
		t.Fatalf("probe took %v, timeout %v", el, tg.Timeout)
	}
	return r
}
