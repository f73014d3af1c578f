package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const probeTimeout = 3 * time.Second

// fixture is a farm with its control API on loopback.
type fixture struct {
	t    *testing.T
	farm *Farm
	ctl  *httptest.Server
}

func startFarm(t *testing.T, specs ...Spec) *fixture {
	t.Helper()
	f, err := Start(t.Context(), zerolog.Nop(), specs)
	if err != nil {
		t.Fatal(err)
	}
	ctl := httptest.NewServer(f.Handler())
	t.Cleanup(func() {
		ctl.Close()
		f.Close()
	})
	return &fixture{t: t, farm: f, ctl: ctl}
}

// call sends a control request and decodes the JSON answer into out (when
// not nil); it returns the HTTP status.
func (fx *fixture) call(method, path string, out any) int {
	fx.t.Helper()
	req, err := http.NewRequest(method, fx.ctl.URL+path, nil)
	if err != nil {
		fx.t.Fatal(err)
	}
	resp, err := fx.ctl.Client().Do(req)
	if err != nil {
		fx.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fx.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			fx.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

func (fx *fixture) mustPost(path string) []Status {
	fx.t.Helper()
	var out []Status
	if code := fx.call(http.MethodPost, path, &out); code != http.StatusOK {
		fx.t.Fatalf("POST %s: status %d", path, code)
	}
	return out
}

// backend is the /backends entry called name.
func (fx *fixture) backend(name string) Status {
	fx.t.Helper()
	var list []Status
	if code := fx.call(http.MethodGet, "/backends", &list); code != http.StatusOK {
		fx.t.Fatalf("GET /backends: %d", code)
	}
	for _, st := range list {
		if st.Name == name {
			return st
		}
	}
	fx.t.Fatalf("no backend %q in /backends: %+v", name, list)
	return Status{}
}

func tcpExchange(addr, banner, send string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return "", err
	}
	if banner != "" {
		got := make([]byte, len(banner))
		if _, err := io.ReadFull(c, got); err != nil {
			return "", fmt.Errorf("banner: %w", err)
		}
		if string(got) != banner {
			return "", fmt.Errorf("banner %q, want %q", got, banner)
		}
	}
	if _, err := io.WriteString(c, send); err != nil {
		return "", err
	}
	got := make([]byte, len(send))
	_, err = io.ReadFull(c, got)
	return string(got), err
}

func udpExchange(addr, send string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, send); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

var plainClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: probeTimeout}

func httpGet(addr, path string, header http.Header) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// answer probes a backend the way its kind is probed and returns the
// answer's text (for http, "<code> <body>").
func answer(st Status) (string, error) {
	switch st.Proto {
	case TCP:
		return tcpExchange(st.Addr, "", "PING\n")
	case UDP:
		return udpExchange(st.Addr, "PING")
	}
	code, body, err := httpGet(st.Addr, "/health", nil)
	return fmt.Sprintf("%d %s", code, body), err
}

func TestBackendsAnswer(t *testing.T) {
	fx := startFarm(t,
		Spec{Name: "plain", Proto: TCP, Addr: "127.0.0.21:0"},
		Spec{Name: "ssh", Proto: TCP, Addr: "127.0.0.22:0", Banner: "SSH-2.0-demo\r\n"},
		Spec{Name: "web", Proto: HTTP, Addr: "127.0.0.23:0"},
		Spec{Name: "dns", Proto: UDP, Addr: "127.0.0.24:0"},
		Spec{Proto: TCP, Addr: "[::1]:0"},
	)
	web := fx.backend("web").Addr
	tests := []struct {
		name    string
		backend string
		probe   func(st Status) (string, error)
		want    string
	}{
		{name: "tcp_ping", backend: "plain", want: "PONG\n", probe: func(st Status) (string, error) {
			return tcpExchange(st.Addr, "", "PING\n")
		}},
		{name: "tcp_echo", backend: "plain", want: "hello\r\n", probe: func(st Status) (string, error) {
			return tcpExchange(st.Addr, "", "hello\r\n")
		}},
		{name: "tcp_banner_then_ping", backend: "ssh", want: "PONG\r\n", probe: func(st Status) (string, error) {
			return tcpExchange(st.Addr, "SSH-2.0-demo\r\n", "PING\r\n")
		}},
		{name: "http_any_path", backend: "web", want: "200 OK web\n", probe: func(st Status) (string, error) {
			code, body, err := httpGet(st.Addr, "/any/path?x=1", nil)
			return fmt.Sprintf("%d %s", code, body), err
		}},
		{name: "http_health", backend: "web", want: "200 OK web\n", probe: answer},
		{name: "http_echo", backend: "web",
			want: "200 GET /echo?q=1 HTTP/1.1\nHost: " + web + "\nAccept-Encoding: gzip\nConnection: close\nUser-Agent: demo-test\nX-Probe: a\nX-Probe: b\n\n",
			probe: func(st Status) (string, error) {
				h := http.Header{"User-Agent": {"demo-test"}, "X-Probe": {"a", "b"}}
				code, body, err := httpGet(st.Addr, "/echo?q=1", h)
				return fmt.Sprintf("%d %s", code, body), err
			}},
		{name: "udp_ping", backend: "dns", want: "PONG", probe: answer},
		{name: "udp_echo", backend: "dns", want: "anything\n", probe: func(st Status) (string, error) {
			return udpExchange(st.Addr, "anything\n")
		}},
		{name: "ipv6_default_name", backend: "", want: "PONG\n", probe: answer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.backend
			if name == "" {
				list := fx.farm.Backends()
				name = list[len(list)-1].Name
				if !strings.HasPrefix(name, "::1-TCP-") {
					t.Fatalf("default name %q, want ::1-TCP-<port>", name)
				}
			}
			st := fx.backend(name)
			if strings.HasSuffix(st.Addr, ":0") || st.State != StateUp {
				t.Fatalf("backend %+v: want the bound port and state up", st)
			}
			before := st.Requests
			got, err := tc.probe(st)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if after := fx.backend(name).Requests; after != before+1 {
				t.Fatalf("requests %d -> %d, want +1", before, after)
			}
		})
	}
}

func TestFailRecover(t *testing.T) {
	fx := startFarm(t,
		Spec{Name: "t", Proto: TCP, Addr: "127.0.0.31:0"},
		Spec{Name: "h", Proto: HTTP, Addr: "127.0.0.32:0"},
		Spec{Name: "u", Proto: UDP, Addr: "127.0.0.33:0"},
		Spec{Name: "h6", Proto: HTTP, Addr: "[::1]:0"},
		Spec{Name: "u6", Proto: UDP, Addr: "[::1]:0"},
	)
	tests := []struct {
		name    string
		backend string
		byAddr  bool // select with ?addr= instead of the name
		want    string
	}{
		{name: "tcp_by_name", backend: "t", want: "PONG\n"},
		{name: "http_by_name", backend: "h", want: "200 OK h\n"},
		{name: "udp_by_name", backend: "u", want: "PONG"},
		{name: "tcp_by_addr", backend: "t", byAddr: true, want: "PONG\n"},
		{name: "http_ipv6_by_addr", backend: "h6", byAddr: true, want: "200 OK h6\n"},
		{name: "udp_ipv6_by_name", backend: "u6", want: "PONG"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := fx.backend(tc.backend)
			sel := "/" + tc.backend
			if tc.byAddr {
				sel = "?addr=" + st.Addr
			}
			if got, err := answer(st); err != nil || got != tc.want {
				t.Fatalf("before fail: %q, %v; want %q", got, err, tc.want)
			}

			changed := fx.mustPost("/fail" + sel)
			if len(changed) != 1 || changed[0].Name != tc.backend || changed[0].State != StateFailed {
				t.Fatalf("fail answered %+v", changed)
			}
			// A second fail is a no-op, not an error.
			fx.mustPost("/fail" + sel)
			if _, err := answer(st); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("failed backend: err = %v, want connection refused", err)
			}

			changed = fx.mustPost("/recover" + sel)
			if len(changed) != 1 || changed[0].State != StateUp || changed[0].Addr != st.Addr {
				t.Fatalf("recover answered %+v, want up on %s", changed, st.Addr)
			}
			if got, err := answer(st); err != nil || got != tc.want {
				t.Fatalf("after recover: %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestStatusAndSlow(t *testing.T) {
	fx := startFarm(t,
		Spec{Name: "web", Proto: HTTP, Addr: "127.0.0.41:0"},
		Spec{Name: "echo", Proto: TCP, Addr: "127.0.0.42:0"},
		Spec{Name: "dns", Proto: UDP, Addr: "127.0.0.43:0"},
	)
	const delay = 150 * time.Millisecond
	tests := []struct {
		name    string
		set     string // control call before probing
		undo    string
		backend string
		want    string
		minTook time.Duration
	}{
		{name: "http_503", set: "/status/web?code=503", undo: "/status/web?code=200", backend: "web",
			want: "503 503 Service Unavailable web\n"},
		{name: "http_404_by_addr", set: "/status?code=404&addr=", undo: "/status/web?code=200", backend: "web",
			want: "404 404 Not Found web\n"},
		{name: "http_slow", set: "/slow/web?delay=150ms", undo: "/slow/web?delay=0s", backend: "web",
			want: "200 OK web\n", minTook: delay},
		{name: "tcp_slow", set: "/slow/echo?delay=150ms", undo: "/slow/echo?delay=0s", backend: "echo",
			want: "PONG\n", minTook: delay},
		{name: "udp_slow", set: "/slow/dns?delay=150ms", undo: "/slow/dns?delay=0s", backend: "dns",
			want: "PONG", minTook: delay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := fx.backend(tc.backend)
			set := tc.set
			if strings.HasSuffix(set, "addr=") {
				set += st.Addr
			}
			fx.mustPost(set)
			start := time.Now()
			got, err := answer(st)
			took := time.Since(start)
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
			if took < tc.minTook {
				t.Fatalf("answered in %v, want at least %v", took, tc.minTook)
			}
			fx.mustPost(tc.undo)
			if st := fx.backend(tc.backend); st.Delay != "" || (st.Proto == HTTP && st.Code != 200) {
				t.Fatalf("after undo: %+v", st)
			}
		})
	}
}

func TestFailDropsConnections(t *testing.T) {
	fx := startFarm(t,
		Spec{Name: "t", Proto: TCP, Addr: "127.0.0.51:0"},
		Spec{Name: "h", Proto: HTTP, Addr: "127.0.0.52:0"},
		Spec{Name: "slow", Proto: HTTP, Addr: "127.0.0.53:0", Delay: time.Minute},
	)
	tests := []struct {
		name    string
		backend string
		// before fail: what to send and how many answer bytes to read first
		send     string
		readLen  int
		wantRead string
	}{
		{name: "tcp_open_connection", backend: "t", send: "PING\n", readLen: 5, wantRead: "PONG\n"},
		{name: "http_keep_alive", backend: "h", send: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", readLen: 15, wantRead: "HTTP/1.1 200 OK"},
		{name: "http_in_flight_slow_request", backend: "slow", send: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := fx.backend(tc.backend)
			c, err := net.DialTimeout("tcp", st.Addr, probeTimeout)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(c)
			if tc.readLen > 0 {
				got := make([]byte, tc.readLen)
				if _, err := io.ReadFull(r, got); err != nil || string(got) != tc.wantRead {
					t.Fatalf("read %q, %v; want %q", got, err, tc.wantRead)
				}
			} else {
				// The slow request is counted once the handler holds it.
				wait.For(t, probeTimeout, "the slow request to reach its handler", func() bool {
					return fx.farm.Backends()[2].Requests > 0
				})
			}

			start := time.Now()
			fx.mustPost("/fail/" + tc.backend)
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("fail took %v with a connection open", took)
			}
			rest, err := io.ReadAll(r)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after fail: read %v, want EOF or reset", err)
			}
			if strings.Contains(string(rest), "HTTP/1.1") && tc.readLen == 0 {
				t.Fatalf("failed backend answered: %q", rest)
			}
		})
	}
}

func TestControlErrors(t *testing.T) {
	fx := startFarm(t,
		Spec{Name: "t", Proto: TCP, Addr: "127.0.0.61:0"},
		Spec{Name: "h", Proto: HTTP, Addr: "127.0.0.61:0"},
	)
	tests := []struct {
		name     string
		method   string
		path     string
		wantCode int
		wantErr  string
	}{
		{name: "unknown_name", method: "POST", path: "/fail/nope", wantCode: 404, wantErr: `"nope"`},
		{name: "unknown_addr", method: "POST", path: "/fail?addr=127.0.0.99:1", wantCode: 404, wantErr: "127.0.0.99:1"},
		{name: "bad_addr", method: "POST", path: "/fail?addr=nowhere", wantCode: 400, wantErr: `"nowhere"`},
		{name: "no_selection", method: "POST", path: "/recover", wantCode: 400, wantErr: "name a backend"},
		{name: "name_and_addr", method: "POST", path: "/fail/t?addr=127.0.0.61:1", wantCode: 400, wantErr: "not both"},
		{name: "status_on_tcp", method: "POST", path: "/status/t?code=503", wantCode: 400, wantErr: "not an http backend"},
		{name: "status_without_code", method: "POST", path: "/status/h", wantCode: 400, wantErr: "code"},
		{name: "status_bad_code", method: "POST", path: "/status/h?code=700", wantCode: 400, wantErr: "status 700"},
		{name: "slow_negative", method: "POST", path: "/slow/h?delay=-1s", wantCode: 400, wantErr: "delay"},
		{name: "bad_proto", method: "POST", path: "/fail?addr=127.0.0.61:1&proto=sctp", wantCode: 400, wantErr: "sctp"},
		{name: "get_on_action", method: "GET", path: "/fail/t", wantCode: 405},
		{name: "unknown_backend_get", method: "GET", path: "/backends/nope", wantCode: 404, wantErr: "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out struct {
				Error string `json:"error"`
			}
			var dst any = &out
			if tc.wantErr == "" {
				dst = nil
			}
			if code := fx.call(tc.method, tc.path, dst); code != tc.wantCode {
				t.Fatalf("status %d, want %d", code, tc.wantCode)
			}
			if !strings.Contains(out.Error, tc.wantErr) {
				t.Fatalf("error %q, want it to contain %q", out.Error, tc.wantErr)
			}
		})
	}
	// Nothing above changed a backend.
	for _, st := range fx.farm.Backends() {
		if st.State != StateUp || (st.Proto == HTTP && st.Code != 200) {
			t.Fatalf("backend changed by a rejected call: %+v", st)
		}
	}
}

func TestAddrSelectsEveryProto(t *testing.T) {
	// A tcp and a udp backend may share ip:port; ?addr= picks both unless
	// ?proto= narrows it.
	f, err := Start(t.Context(), zerolog.Nop(), []Spec{{Name: "t", Proto: TCP, Addr: "127.0.0.71:0"}})
	if err != nil {
		t.Fatal(err)
	}
	port := f.Backends()[0].Addr[len("127.0.0.71:"):]
	f.Close()
	fx := startFarm(t,
		Spec{Name: "t", Proto: TCP, Addr: "127.0.0.71:" + port},
		Spec{Name: "u", Proto: UDP, Addr: "127.0.0.71:" + port},
	)
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{name: "both", query: "", want: []string{"t", "u"}},
		{name: "udp_only", query: "&proto=udp", want: []string{"u"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := fx.mustPost("/fail?addr=127.0.0.71:" + port + tc.query)
			var names []string
			for _, st := range got {
				names = append(names, st.Name)
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("failed %v, want %v", names, tc.want)
			}
			fx.mustPost("/recover?addr=127.0.0.71:" + port)
		})
	}
}

func TestStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.81:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name    string
		specs   []Spec
		wantErr string
	}{
		{name: "address_in_use", specs: []Spec{
			{Proto: UDP, Addr: "127.0.0.81:0"},
			{Proto: HTTP, Addr: taken.Addr().String()},
		}, wantErr: "backend 2 (http): listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{name: "duplicate_name", specs: []Spec{
			{Name: "a", Proto: TCP, Addr: "127.0.0.81:0"},
			{Name: "a", Proto: UDP, Addr: "127.0.0.81:0"},
		}, wantErr: `name "a" already used by backend 1`},
		{name: "invalid_spec", specs: []Spec{{Proto: TCP, Addr: "127.0.0.81"}}, wantErr: `addr "127.0.0.81"`},
		{name: "canceled", specs: []Spec{{Proto: TCP, Addr: "127.0.0.81:0"}}, wantErr: "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.name == "canceled" {
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			f, err := Start(ctx, zerolog.Nop(), tc.specs)
			if err == nil {
				f.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestRecoverAddressTaken(t *testing.T) {
	fx := startFarm(t, Spec{Name: "h", Proto: HTTP, Addr: "127.0.0.91:0"})
	addr := fx.backend("h").Addr
	fx.mustPost("/fail/h")
	squatter, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Error string `json:"error"`
	}
	if code := fx.call(http.MethodPost, "/recover/h", &out); code != http.StatusInternalServerError || !strings.Contains(out.Error, addr) {
		t.Fatalf("recover onto a taken address: %d %q, want 500 naming %s", code, out.Error, addr)
	}
	if st := fx.backend("h"); st.State != StateFailed {
		t.Fatalf("state %s after a failed recover, want failed", st.State)
	}
	squatter.Close()
	fx.mustPost("/recover/h")
	if got, err := answer(fx.backend("h")); err != nil || got != "200 OK h\n" {
		t.Fatalf("after recover: %q, %v", got, err)
	}
}

func TestRecoverAfterClose(t *testing.T) {
	f, err := Start(t.Context(), zerolog.Nop(), []Spec{{Name: "t", Proto: TCP, Addr: "127.0.0.92:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Fail("t"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := f.Recover("t"); !errors.Is(err, ErrClosed) {
		t.Fatalf("recover after close: %v, want ErrClosed", err)
	}
	if st, _ := f.Backend("t"); st.State != StateFailed {
		t.Fatalf("state %s after close, want failed", st.State)
	}
}
