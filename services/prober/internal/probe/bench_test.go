package probe

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// benchParallel runs p against tg from every P and reports, besides time
// and allocations, the process's CPU time per probe: the backend runs in
// this process too, so it is counted (see tools/hm-bench for the prober
// alone).
func benchParallel(b *testing.B, p Prober, tg *Target, want event.Reason) {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	c0 := cpu()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := p.Probe(context.Background(), tg); r.Reason != want {
				b.Errorf("probe: %s %s", r.Reason, r.Detail)
				return
			}
		}
	})
	b.ReportMetric(float64(cpu()-c0)/float64(b.N), "cpu-ns/op")
}

// Timeouts are beyond the 1 s SYN retransmit, should a busy box drop one.

func BenchmarkTCPProbeParallel(b *testing.B) {
	addr := serveTCP(b, "127.0.0.1:0", func(net.Conn) {})
	benchParallel(b, NewTCP(TCPParams{}), target(b, addr, 3*time.Second), event.ReasonL4OK)
}

func BenchmarkHTTPProbeParallel(b *testing.B) {
	srv, _ := httpServer(b, false, respond(200, "OK"))
	benchParallel(b, mustNew(b, MethodHTTP, nil), target(b, srv.Listener.Addr().String(), 3*time.Second), event.ReasonL7OK)
}
