package probe

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

func newPinger(t testing.TB, mode PingMode) *Pinger {
	t.Helper()
	pg := NewPinger(PingerOptions{Mode: mode})
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Errorf("Pinger.Close: %v", err)
		}
	})
	return pg
}

// sockets returns how many sockets pg has open, and how many are raw.
func sockets(pg *Pinger) (n, raw int) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	for _, s := range pg.socks {
		n++
		if s.raw {
			raw++
		}
	}
	return n, raw
}

func TestPingLoopback(t *testing.T) {
	cases := []struct {
		name string
		mode PingMode
		addr string
		src  string
	}{
		{"auto_ipv4", PingAuto, "127.0.0.1", ""},
		{"auto_ipv6", PingAuto, "::1", ""},
		{"raw_ipv4_other_loopback_address", PingRaw, "127.0.0.53", ""},
		{"raw_ipv6", PingRaw, "::1", ""},
		{"raw_ipv4_bound_source", PingRaw, "127.0.0.1", "127.0.0.2"},
		{"ipv4_mapped_target", PingAuto, "::ffff:127.0.0.1", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pg := newPinger(t, tc.mode)
			p, err := New(MethodPing, nil, Deps{Pinger: pg})
			if err != nil {
				t.Fatal(err)
			}
			tg := &Target{Addr: netip.AddrPortFrom(netip.MustParseAddr(tc.addr), 0), Timeout: 2 * time.Second}
			if tc.src != "" {
				tg.Source = netip.MustParseAddr(tc.src)
			}
			for i := range 3 { // the socket is reused, sequence numbers advance
				r := probeWithin(t, p, tg)
				wantResult(t, r, event.Up, event.ReasonICMPOK)
				if r.RTT <= 0 || r.RTT > time.Second {
					t.Fatalf("probe %d: RTT %v", i, r.RTT)
				}
			}
			if n, _ := sockets(pg); n != 1 {
				t.Fatalf("%d sockets open after 3 probes, want 1", n)
			}
		})
	}
}

// TestPingDemultiplexesConcurrentProbes sends many concurrent echoes to
// distinct loopback addresses through one socket: each probe must get its
// own reply (a reply handed to the wrong waiter fails the source check and
// that probe times out).
func TestPingDemultiplexesConcurrentProbes(t *testing.T) {
	const n = 2000
	pg := newPinger(t, PingAuto)
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			results[i] = pg.Ping(ctx, dst, netip.Addr{}, "")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.State != event.Up || r.Reason != event.ReasonICMPOK {
			t.Fatalf("probe %d: %+v", i, r)
		}
	}
	if got, _ := sockets(pg); got != 1 {
		t.Fatalf("%d sockets for %d probes, want 1", got, n)
	}
}

func TestPingerClosed(t *testing.T) {
	pg := NewPinger(PingerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	wantResult(t, pg.Ping(ctx, netip.MustParseAddr("127.0.0.1"), netip.Addr{}, ""), event.Up, event.ReasonICMPOK)
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	r := pg.Ping(ctx, netip.MustParseAddr("127.0.0.1"), netip.Addr{}, "")
	wantResult(t, r, event.Unknown, event.ReasonPROCERR)
}

func TestPingSocketErrors(t *testing.T) {
	cases := []struct {
		name   string
		src    string
		netns  string
		reason event.Reason
	}{
		{"source_not_local", "198.51.100.7", "", event.ReasonSOCKERR},
		{"netns_missing", "", "hmt-does-not-exist", event.ReasonSOCKERR},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pg := newPinger(t, PingAuto)
			var src netip.Addr
			if tc.src != "" {
				src = netip.MustParseAddr(tc.src)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			wantResult(t, pg.Ping(ctx, netip.MustParseAddr("127.0.0.1"), src, tc.netns), event.Unknown, tc.reason)
		})
	}
}

func TestICMPChecksum(t *testing.T) {
	// An echo request id 1 seq 1 with its checksum, from RFC 1071 arithmetic.
	msg := []byte{8, 0, 0, 0, 0, 1, 0, 1, 'h', 'i'}
	sum := icmpChecksum(msg)
	msg[2], msg[3] = byte(sum>>8), byte(sum)
	if got := icmpChecksum(msg); got != 0 {
		t.Fatalf("checksum of a checksummed message = %#x, want 0", got)
	}
	msg[9] ^= 1
	if got := icmpChecksum(msg); got == 0 {
		t.Fatal("a corrupted message must not check")
	}
}

func TestUDPPing(t *testing.T) {
	pong, _ := serveUDP(t, "127.0.0.1:0", replyWith("PONG"))
	cases := []struct {
		name   string
		params map[string]string
		addr   string
		state  event.State
		reason event.Reason
	}{
		// DPVS crashed on any udpping param; here they reach the udp step.
		{"ping_and_udp_up", map[string]string{"send": "PING", "receive": "PONG"}, pong, event.Up, event.ReasonL4OK},
		{"udp_mismatch_after_ping", map[string]string{"receive": "PANG"}, pong, event.Down, event.ReasonL4RSP},
		{"udp_port_closed_after_ping", nil, closedPort(t, "udp", "::1"), event.Down, event.ReasonL4CON},
		{"proxy_v2_param_accepted", map[string]string{"proxy-protocol": "v2", "receive": "PONG"}, pong, event.Up, event.ReasonL4OK},
	}
	pg := newPinger(t, PingAuto)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(MethodUDPPing, tc.params, Deps{Pinger: pg})
			if err != nil {
				t.Fatal(err)
			}
			wantResult(t, probeWithin(t, p, target(t, tc.addr, 2*time.Second)), tc.state, tc.reason)
		})
	}
	t.Run("no_time_left_after_ping", func(t *testing.T) {
		u := NewUDPPing(UDPParams{}, pg)
		start := time.Now()
		r := u.udpUntil(context.Background(), target(t, pong, time.Second), start, start.Add(-time.Millisecond))
		wantResult(t, r, event.Unknown, event.ReasonPROCERR)
	})
}

func BenchmarkPing(b *testing.B) {
	for _, mode := range []PingMode{PingAuto, PingRaw} {
		b.Run(fmt.Sprintf("%s_sequential", mode), func(b *testing.B) {
			pg := newPinger(b, mode)
			dst := netip.MustParseAddr("127.0.0.1")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				c, cancel := context.WithTimeout(ctx, time.Second)
				if r := pg.Ping(c, dst, netip.Addr{}, ""); r.State != event.Up {
					b.Fatalf("ping: %+v", r)
				}
				cancel()
			}
		})
	}
	b.Run("parallel_distinct_targets", func(b *testing.B) {
		pg := newPinger(b, PingAuto)
		var next sync.Mutex
		i := 0
		b.ReportAllocs()
		b.SetParallelism(64) // many probes in flight, like a busy prober
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				next.Lock()
				i++
				dst := netip.AddrFrom4([4]byte{127, 2, byte(i >> 8), byte(i)})
				next.Unlock()
				c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				r := pg.Ping(c, dst, netip.Addr{}, "")
				cancel()
				if r.State != event.Up {
					b.Errorf("ping %s: %+v", dst, r)
					return
				}
			}
		})
	})
}
