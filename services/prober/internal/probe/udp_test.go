package probe

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

type datagram struct {
	data  []byte
	from  netip.AddrPort
	local netip.AddrPort
}

// serveUDP receives datagrams on addr; reply (may be nil) returns the answer
// to each, nil for silence. Every datagram is reported on the channel.
func serveUDP(t testing.TB, addr string, reply func([]byte) []byte) (string, <-chan datagram) {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan datagram, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			d := datagram{data: append([]byte(nil), buf[:n]...), from: addrPort(from), local: addrPort(c.LocalAddr())}
			select {
			case ch <- d:
			default:
			}
			if reply != nil {
				if out := reply(d.data); out != nil {
					_, _ = c.WriteTo(out, from)
				}
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return c.LocalAddr().String(), ch
}

func replyWith(s string) func([]byte) []byte {
	return func([]byte) []byte { return []byte(s) }
}

func nextDatagram(t testing.TB, ch <-chan datagram) datagram {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("test server received no datagram")
	}
	return datagram{}
}

func TestUDP(t *testing.T) {
	cases := []struct {
		name    string
		host    string
		params  map[string]string
		reply   func([]byte) []byte
		closed  bool // probe a closed port instead
		timeout time.Duration
		state   event.State
		reason  event.Reason
		sent    *string // the datagram the server must have received
	}{
		{name: "bare_silent_server_is_up", host: "127.0.0.1:0", timeout: 300 * time.Millisecond,
			state: event.Up, reason: event.ReasonL4OK, sent: ptr("")},
		{name: "bare_closed_port_icmp_unreachable", host: "127.0.0.1", closed: true, timeout: 2 * time.Second,
			state: event.Down, reason: event.ReasonL4CON},
		{name: "receive_closed_port", host: "::1", closed: true, params: map[string]string{"receive": "x"}, timeout: 2 * time.Second,
			state: event.Down, reason: event.ReasonL4CON},
		{name: "send_receive_match", host: "127.0.0.1:0", params: map[string]string{"send": `PING\n`, "receive": "PONG"},
			reply: replyWith("PONG and more"), timeout: 2 * time.Second,
			state: event.Up, reason: event.ReasonL4OK, sent: ptr("PING\n")},
		{name: "receive_mismatch", host: "127.0.0.1:0", params: map[string]string{"send": "PING", "receive": "PONG"},
			reply: replyWith("PANG"), timeout: 2 * time.Second,
			state: event.Down, reason: event.ReasonL4RSP, sent: ptr("PING")},
		{name: "reply_shorter_than_receive", host: "127.0.0.1:0", params: map[string]string{"receive": "PONG"},
			reply: replyWith("PO"), timeout: 2 * time.Second,
			state: event.Down, reason: event.ReasonL4RSP, sent: ptr("")},
		{name: "receive_timeout", host: "127.0.0.1:0", params: map[string]string{"send": "PING", "receive": "PONG"},
			timeout: 300 * time.Millisecond, state: event.Down, reason: event.ReasonL4TOUT, sent: ptr("PING")},
		{name: "send_only_silent_server", host: "[::1]:0", params: map[string]string{"send": `\x01\x02`},
			timeout: 300 * time.Millisecond, state: event.Up, reason: event.ReasonL4OK, sent: ptr("\x01\x02")},
		{name: "ipv6_any_reply_without_receive", host: "[::1]:0", reply: replyWith("whatever"), timeout: 2 * time.Second,
			state: event.Up, reason: event.ReasonL4OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var addr string
			var seen <-chan datagram
			if tc.closed {
				addr = closedPort(t, "udp", tc.host)
			} else {
				addr, seen = serveUDP(t, tc.host, tc.reply)
			}
			r := probeWithin(t, mustNew(t, MethodUDP, tc.params), target(t, addr, tc.timeout))
			wantResult(t, r, tc.state, tc.reason)
			if tc.sent != nil {
				if d := nextDatagram(t, seen); string(d.data) != *tc.sent {
					t.Fatalf("server received %q, want %q", d.data, *tc.sent)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestUDPProxyProtocolV2(t *testing.T) {
	cases := []struct {
		name   string
		host   string
		family string
	}{
		{"ipv4", "127.0.0.1:0", "0x12"},
		{"ipv6", "[::1]:0", "0x22"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, seen := serveUDP(t, tc.host, func(b []byte) []byte {
				if string(b) == "PING" {
					return []byte("PONG")
				}
				return nil
			})
			p := mustNew(t, MethodUDP, map[string]string{"proxy-protocol": "v2", "send": "PING", "receive": "PONG"})
			wantResult(t, probeWithin(t, p, target(t, addr, 2*time.Second)), event.Up, event.ReasonL4OK)

			first := nextDatagram(t, seen)
			if len(first.data) < 16 || string(first.data[:12]) != ppv2Sig || first.data[12] != 0x21 {
				t.Fatalf("first datagram %x is not a v2 PROXY header", first.data)
			}
			h, err := parseProxyV2Body(first.data[13], first.data[16:])
			if err != nil {
				t.Fatal(err)
			}
			if h.family != tc.family || h.src != first.from || h.dst != first.local {
				t.Fatalf("header %+v, want family %s src %v dst %v", h, tc.family, first.from, first.local)
			}
			if second := nextDatagram(t, seen); string(second.data) != "PING" {
				t.Fatalf("second datagram %q, want PING", second.data)
			}
		})
	}
}
