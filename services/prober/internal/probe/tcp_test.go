package probe

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// serveTCP accepts connections on addr ("127.0.0.1:0") and runs handle on
// each; every connection is closed after 5 s at most, and the server is
// stopped (and its goroutines waited for) when the test ends.
func serveTCP(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveListener(t, ln, handle)
}

func serveListener(t testing.TB, ln net.Listener, handle func(net.Conn)) string {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// exchange is what a test server saw on one connection.
type exchange struct {
	data   []byte // bytes received before EOF (or the handler's limit)
	local  netip.AddrPort
	remote netip.AddrPort
}

// recordTCP serves addr: each connection's bytes (up to n, or until EOF) are
// sent on the returned channel after reply is written.
func recordTCP(t testing.TB, addr string, n int, reply string) (string, <-chan exchange) {
	t.Helper()
	ch := make(chan exchange, 16)
	a := serveTCP(t, addr, func(c net.Conn) {
		buf := make([]byte, n)
		k, _ := io.ReadFull(c, buf)
		if reply != "" {
			_, _ = io.WriteString(c, reply)
		}
		ch <- exchange{data: buf[:k], local: addrPort(c.LocalAddr()), remote: addrPort(c.RemoteAddr())}
		_, _ = io.Copy(io.Discard, c) // hold the connection until the prober closes it
	})
	return a, ch
}

func recv(t testing.TB, ch <-chan exchange) exchange {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("test server saw no connection")
	}
	return exchange{}
}

func mustNew(t testing.TB, method string, params map[string]string) Prober {
	t.Helper()
	p, err := New(method, params, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTCP(t *testing.T) {
	const to = 2 * time.Second
	cases := []struct {
		name   string
		params map[string]string
		server func(t *testing.T) (addr string, seen <-chan exchange)
		state  event.State
		reason event.Reason
		sent   string // what the server must have received ("" = not checked)
	}{
		{
			name:   "connect_up",
			server: func(t *testing.T) (string, <-chan exchange) { return recordTCP(t, "127.0.0.1:0", 1, "") },
			state:  event.Up, reason: event.ReasonL4OK,
		},
		{
			name:   "connect_refused",
			server: func(t *testing.T) (string, <-chan exchange) { return closedPort(t, "tcp", "127.0.0.1"), nil },
			state:  event.Down, reason: event.ReasonL4CON,
		},
		{
			name:   "send_receive_match",
			params: map[string]string{"send": `PING\r\n`, "receive": `PONG\x0d\n`},
			server: func(t *testing.T) (string, <-chan exchange) {
				return recordTCP(t, "127.0.0.1:0", 6, "PONG\r\nand more")
			},
			state: event.Up, reason: event.ReasonL4OK, sent: "PING\r\n",
		},
		{
			name:   "receive_mismatch",
			params: map[string]string{"send": "PING", "receive": "PONG"},
			server: func(t *testing.T) (string, <-chan exchange) { return recordTCP(t, "127.0.0.1:0", 4, "PANG") },
			state:  event.Down, reason: event.ReasonL4RSP, sent: "PING",
		},
		{
			name:   "receive_without_send",
			params: map[string]string{"receive": "220 "},
			server: func(t *testing.T) (string, <-chan exchange) {
				return recordTCP(t, "127.0.0.1:0", 0, "220 smtp.example ready\r\n")
			},
			state: event.Up, reason: event.ReasonL4OK,
		},
		{
			name:   "receive_timeout_server_never_writes",
			params: map[string]string{"send": "PING", "receive": "PONG"},
			server: func(t *testing.T) (string, <-chan exchange) { return recordTCP(t, "127.0.0.1:0", 4, "") },
			state:  event.Down, reason: event.ReasonL4TOUT, sent: "PING",
		},
		{
			name:   "closed_before_full_reply",
			params: map[string]string{"receive": "PONG"},
			server: func(t *testing.T) (string, <-chan exchange) {
				ch := make(chan exchange, 1)
				return serveTCP(t, "127.0.0.1:0", func(c net.Conn) { _, _ = io.WriteString(c, "PO") }), ch
			},
			state: event.Down, reason: event.ReasonL4RSP,
		},
		{
			name:   "send_only",
			params: map[string]string{"send": `\x00\x01hello`},
			server: func(t *testing.T) (string, <-chan exchange) { return recordTCP(t, "127.0.0.1:0", 7, "") },
			state:  event.Up, reason: event.ReasonL4OK, sent: "\x00\x01hello",
		},
		{
			name:   "ipv6_send_receive",
			params: map[string]string{"send": "hi", "receive": "yo"},
			server: func(t *testing.T) (string, <-chan exchange) { return recordTCP(t, "[::1]:0", 2, "yo") },
			state:  event.Up, reason: event.ReasonL4OK, sent: "hi",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, seen := tc.server(t)
			p := mustNew(t, MethodTCP, tc.params)
			r := probeWithin(t, p, target(t, addr, to))
			wantResult(t, r, tc.state, tc.reason)
			if r.RTT <= 0 {
				t.Fatalf("RTT = %v, want > 0", r.RTT)
			}
			if tc.sent != "" {
				if got := recv(t, seen); string(got.data) != tc.sent {
					t.Fatalf("server received %q, want %q", got.data, tc.sent)
				}
			}
		})
	}
}

func TestTCPTimeoutIsBounded(t *testing.T) {
	addr, _ := recordTCP(t, "127.0.0.1:0", 4, "")
	p := mustNew(t, MethodTCP, map[string]string{"receive": "PONG"})
	tg := target(t, addr, 200*time.Millisecond)
	start := time.Now()
	r := p.Probe(context.Background(), tg)
	wantResult(t, r, event.Down, event.ReasonL4TOUT)
	if el := time.Since(start); el < 200*time.Millisecond || el > time.Second {
		t.Fatalf("probe took %v, want about its 200ms timeout", el)
	}
}

func TestTCPCanceledIsNotAVerdict(t *testing.T) {
	addr, seen := recordTCP(t, "127.0.0.1:0", 4, "")
	p := mustNew(t, MethodTCP, map[string]string{"send": "PING", "receive": "PONG"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan Result, 1)
	go func() { done <- p.Probe(ctx, target(t, addr, 10*time.Second)) }()
	recv(t, seen) // the probe has sent PING and is waiting for the reply
	cancel()
	select {
	case r := <-done:
		wantResult(t, r, event.Unknown, event.ReasonPROCERR)
	case <-time.After(3 * time.Second):
		t.Fatal("canceled probe did not return")
	}
}

func TestTCPProxyProtocol(t *testing.T) {
	cases := []struct {
		name    string
		host    string
		version string
		params  map[string]string
		family  string // TCP4 / TCP6 (v1); 0x11 / 0x21 (v2)
	}{
		{"v1_ipv4_connect_only", "127.0.0.1:0", "v1", nil, "TCP4"},
		{"v1_ipv6_with_send", "[::1]:0", "V1", map[string]string{"send": "GET"}, "TCP6"},
		{"v2_ipv4_with_send_receive", "127.0.0.1:0", "v2", map[string]string{"send": "GET", "receive": "OK"}, "0x11"},
		{"v2_ipv6_connect_only", "[::1]:0", "v2", nil, "0x21"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct {
				hdr           proxyHdr
				rest          string
				local, remote netip.AddrPort
				err           error
			}
			ch := make(chan seen, 1)
			addr := serveTCP(t, tc.host, func(c net.Conn) {
				br := bufio.NewReader(c)
				h, err := readProxyHeader(br)
				s := seen{hdr: h, err: err, local: addrPort(c.LocalAddr()), remote: addrPort(c.RemoteAddr())}
				if err == nil && tc.params["send"] != "" {
					b := make([]byte, len(tc.params["send"]))
					_, s.err = io.ReadFull(br, b)
					s.rest = string(b)
					_, _ = io.WriteString(c, "OK")
				}
				ch <- s
				_, _ = io.Copy(io.Discard, br)
			})
			params := map[string]string{"proxy-protocol": tc.version}
			for k, v := range tc.params {
				params[k] = v
			}
			r := probeWithin(t, mustNew(t, MethodTCP, params), target(t, addr, 2*time.Second))
			wantResult(t, r, event.Up, event.ReasonL4OK)
			var s seen
			select {
			case s = <-ch:
			case <-time.After(5 * time.Second):
				t.Fatal("server saw no connection")
			}
			if s.err != nil {
				t.Fatalf("server could not parse what it got: %v", s.err)
			}
			// The header must carry the connection's real addresses: the
			// prober's end as source, the backend as destination.
			if s.hdr.family != tc.family || s.hdr.src != s.remote || s.hdr.dst != s.local {
				t.Fatalf("header %+v, want family %s src %v dst %v", s.hdr, tc.family, s.remote, s.local)
			}
			if s.rest != tc.params["send"] {
				t.Fatalf("payload after header = %q, want %q", s.rest, tc.params["send"])
			}
		})
	}
}

// proxyHdr is a parsed PROXY header (test side, written from the spec).
type proxyHdr struct {
	family   string // v1: TCP4/TCP6; v2: "0x11" etc.
	src, dst netip.AddrPort
}

func readProxyHeader(br *bufio.Reader) (proxyHdr, error) {
	peek, err := br.Peek(12)
	if err != nil {
		return proxyHdr{}, err
	}
	if string(peek) == "\r\n\r\n\x00\r\nQUIT\n" {
		return readProxyV2(br)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return proxyHdr{}, err
	}
	return parseProxyV1(line)
}

func parseProxyV1(line string) (proxyHdr, error) {
	if !strings.HasSuffix(line, "\r\n") {
		return proxyHdr{}, fmt.Errorf("v1 line %q does not end in CRLF", line)
	}
	f := strings.Fields(strings.TrimSuffix(line, "\r\n"))
	if len(f) != 6 || f[0] != "PROXY" {
		return proxyHdr{}, fmt.Errorf("v1 line %q: want PROXY fam src dst sport dport", line)
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return proxyHdr{}, fmt.Errorf("v1 line %q: bad address or port", line)
	}
	if (f[1] == "TCP4") != src.Is4() || (f[1] == "TCP4") != dst.Is4() {
		return proxyHdr{}, fmt.Errorf("v1 line %q: family does not match addresses", line)
	}
	return proxyHdr{family: f[1], src: netip.AddrPortFrom(src, uint16(sp)), dst: netip.AddrPortFrom(dst, uint16(dp))}, nil
}

func readProxyV2(r io.Reader) (proxyHdr, error) {
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return proxyHdr{}, err
	}
	if hdr[12] != 0x21 {
		return proxyHdr{}, fmt.Errorf("v2 version/command byte %#x, want 0x21 (v2 PROXY)", hdr[12])
	}
	n := int(binary.BigEndian.Uint16(hdr[14:]))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return proxyHdr{}, err
	}
	return parseProxyV2Body(hdr[13], body)
}

func parseProxyV2Body(fam byte, body []byte) (proxyHdr, error) {
	var alen int
	switch fam >> 4 {
	case 1:
		alen = 4
	case 2:
		alen = 16
	default:
		return proxyHdr{}, fmt.Errorf("v2 family %#x", fam)
	}
	if len(body) < 2*alen+4 {
		return proxyHdr{}, fmt.Errorf("v2 body of %d bytes too short for family %#x", len(body), fam)
	}
	src, _ := netip.AddrFromSlice(body[:alen])
	dst, _ := netip.AddrFromSlice(body[alen : 2*alen])
	sp := binary.BigEndian.Uint16(body[2*alen:])
	dp := binary.BigEndian.Uint16(body[2*alen+2:])
	return proxyHdr{family: fmt.Sprintf("%#x", fam), src: netip.AddrPortFrom(src, sp), dst: netip.AddrPortFrom(dst, dp)}, nil
}

func TestTCPSourceAndNetnsErrors(t *testing.T) {
	addr, seen := recordTCP(t, "127.0.0.1:0", 1, "")
	cases := []struct {
		name   string
		source string
		netns  string
		state  event.State
		reason event.Reason
	}{
		{"bound_source_seen_by_server", "127.0.0.2", "", event.Up, event.ReasonL4OK},
		// A TEST-NET address is not local: bind fails before any packet.
		{"source_not_local", "198.51.100.7", "", event.Unknown, event.ReasonSOCKERR},
		{"netns_missing", "", "hmt-does-not-exist", event.Unknown, event.ReasonSOCKERR},
		{"netns_bad_name", "", "../../proc/1/ns/net", event.Unknown, event.ReasonSOCKERR},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(t, addr, time.Second)
			if tc.source != "" {
				tg.Source = netip.MustParseAddr(tc.source)
			}
			tg.Netns = tc.netns
			// A connect-only check never completes the handshake (see
			// TestTCPConnectOnly): send a byte so the server sees the
			// connection and its source (TestSocketBindsSource covers
			// the connect-only path's bind).
			r := probeWithin(t, mustNew(t, MethodTCP, map[string]string{"send": "x"}), tg)
			wantResult(t, r, tc.state, tc.reason)
			if r.State == event.Up {
				if got := recv(t, seen); got.remote.Addr() != tg.Source {
					t.Fatalf("server saw the probe from %v, want source %v", got.remote, tg.Source)
				}
			}
		})
	}
}

func TestMismatchAt(t *testing.T) {
	cases := []struct {
		name      string
		got, want string
		at        int
	}{
		{"equal", "abc", "abc", -1},
		{"first", "xbc", "abc", 0},
		{"last", "abx", "abc", 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if at := mismatchAt([]byte(tc.got), []byte(tc.want)); at != tc.at {
				t.Fatalf("mismatchAt = %d, want %d", at, tc.at)
			}
		})
	}
}

func BenchmarkTCPProbe(b *testing.B) {
	cases := []struct {
		name    string
		params  map[string]string
		reply   string
		sockets bool
	}{
		{"connect", nil, "", false},
		{"connect_reusing_sockets", nil, "", true},
		{"send_receive", map[string]string{"send": "PING", "receive": "PONG"}, "PONG", false},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			addr := serveTCP(b, "127.0.0.1:0", func(c net.Conn) {
				if bc.reply != "" {
					buf := make([]byte, 4)
					_, _ = io.ReadFull(c, buf)
					_, _ = io.WriteString(c, bc.reply)
				}
				_, _ = io.Copy(io.Discard, c)
			})
			var deps Deps
			if bc.sockets {
				deps.Sockets = NewSockets(4)
				defer deps.Sockets.Close()
			}
			p, err := New(MethodTCP, bc.params, deps)
			if err != nil {
				b.Fatal(err)
			}
			tg := target(b, addr, 2*time.Second)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if r := p.Probe(ctx, tg); r.State != event.Up {
					b.Fatalf("probe: %+v", r)
				}
			}
		})
	}
}
