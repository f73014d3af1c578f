package probe

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
)

// seenReq is what a test HTTP server observed.
type seenReq struct {
	method, host, uri, sni string
	header                 http.Header
	body                   string
	tls                    bool
}

func observe(r *http.Request) seenReq {
	b, _ := io.ReadAll(r.Body)
	s := seenReq{method: r.Method, host: r.Host, uri: r.RequestURI, header: r.Header.Clone(), body: string(b)}
	if r.TLS != nil {
		s.tls, s.sni = true, r.TLS.ServerName
	}
	return s
}

// httpServer starts a (TLS) test server whose handler records each request
// and then runs h.
func httpServer(t testing.TB, useTLS bool, h http.HandlerFunc) (*httptest.Server, <-chan seenReq) {
	t.Helper()
	ch := make(chan seenReq, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case ch <- observe(r):
		default:
		}
		h(w, r)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are expected
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, ch
}

func respond(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func nextReq(t testing.TB, ch <-chan seenReq) seenReq {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("server saw no request")
	}
	return seenReq{}
}

func TestHTTP(t *testing.T) {
	cases := []struct {
		name    string
		tls     bool
		params  map[string]string
		handler http.HandlerFunc
		timeout time.Duration
		trusted bool // trust the server's certificate (Deps.RootCAs)
		state   event.State
		reason  event.Reason
		check   func(t *testing.T, srvAddr string, s seenReq)
	}{
		{name: "get_ok_defaults", handler: respond(200, "ok"), state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, addr string, s seenReq) {
				if s.method != "GET" || s.uri != "/" || s.host != addr {
					t.Fatalf("server saw %s %s Host %q, want GET / Host %q", s.method, s.uri, s.host, addr)
				}
			}},
		{name: "status_503", handler: respond(503, ""), state: event.Down, reason: event.ReasonL7STS},
		{name: "status_404_in_default_codes", handler: respond(404, ""), state: event.Up, reason: event.ReasonL7OK},
		{name: "status_outside_custom_codes", params: map[string]string{"response-codes": "200-204"},
			handler: respond(302, ""), state: event.Down, reason: event.ReasonL7STS},
		{name: "redirect_not_followed", params: map[string]string{"uri": "/start"},
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/start" {
					http.Redirect(w, r, "/broken", http.StatusFound)
					return
				}
				w.WriteHeader(500)
			}, state: event.Up, reason: event.ReasonL7OK},
		{name: "body_prefix_match", params: map[string]string{"response": "OK"}, handler: respond(200, "OK all good"),
			state: event.Up, reason: event.ReasonL7OK},
		{name: "body_prefix_mismatch", params: map[string]string{"response": "OK"}, handler: respond(200, "NOT OK"),
			state: event.Down, reason: event.ReasonL7RSP},
		{name: "body_shorter_than_response", params: map[string]string{"response": "OK, fine"}, handler: respond(200, "OK"),
			state: event.Down, reason: event.ReasonL7RSP},
		{name: "regex_match", params: map[string]string{"response-regex": `"status":\s*"up"`},
			handler: respond(200, `{"db": "x", "status":  "up"}`), state: event.Up, reason: event.ReasonL7OK},
		{name: "regex_mismatch", params: map[string]string{"response-regex": `"status":\s*"up"`},
			handler: respond(200, `{"status": "down"}`), state: event.Down, reason: event.ReasonL7RSP},
		{name: "regex_beyond_64k_not_seen", params: map[string]string{"response-regex": "NEEDLE"},
			handler: respond(200, strings.Repeat("x", MaxBodyMatch)+"NEEDLE"), state: event.Down, reason: event.ReasonL7RSP},
		{name: "method_body_headers_sent",
			params: map[string]string{"method": "POST", "uri": "/check?deep=1", "request": `{"q":1}`,
				"request-headers": "X-Check::yes;;Authorization::Bearer abc"},
			handler: respond(200, ""), state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, _ string, s seenReq) {
				if s.method != "POST" || s.uri != "/check?deep=1" || s.body != `{"q":1}` ||
					s.header.Get("X-Check") != "yes" || s.header.Get("Authorization") != "Bearer abc" {
					t.Fatalf("server saw %s %s body %q headers %v", s.method, s.uri, s.body, s.header)
				}
			}},
		{name: "head", params: map[string]string{"method": "HEAD"}, handler: respond(200, ""),
			state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, _ string, s seenReq) {
				if s.method != "HEAD" {
					t.Fatalf("method %s, want HEAD", s.method)
				}
			}},
		{name: "host_header_and_sni_connect_to_backend", tls: true,
			params:  map[string]string{"https": "yes", "tls-verify": "no", "host": "backend.example"},
			handler: respond(200, ""), state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, _ string, s seenReq) {
				if !s.tls || s.host != "backend.example" || s.sni != "backend.example" {
					t.Fatalf("server saw tls=%v Host %q SNI %q, want backend.example for both", s.tls, s.host, s.sni)
				}
			}},
		{name: "tls_verify_fails", tls: true, params: map[string]string{"https": "true"},
			handler: respond(200, ""), state: event.Down, reason: event.ReasonL6RSP},
		{name: "tls_verify_off", tls: true, params: map[string]string{"https": "true", "tls-verify": "false"},
			handler: respond(200, ""), state: event.Up, reason: event.ReasonL7OK},
		{name: "tls_verify_against_host_name", tls: true, trusted: true,
			params:  map[string]string{"https": "yes", "host": "example.com"}, // in httptest's certificate
			handler: respond(200, ""), state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, _ string, s seenReq) {
				if s.sni != "example.com" {
					t.Fatalf("SNI %q, want example.com", s.sni)
				}
			}},
		{name: "tls_verify_wrong_host_name", tls: true, trusted: true,
			params:  map[string]string{"https": "yes", "host": "other.example"},
			handler: respond(200, ""), state: event.Down, reason: event.ReasonL6RSP},
		{name: "absolute_https_uri", tls: true, params: map[string]string{"uri": "https://svc.example/h?x=1", "tls-verify": "no"},
			handler: respond(200, ""), state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, _ string, s seenReq) {
				if !s.tls || s.host != "svc.example" || s.sni != "svc.example" || s.uri != "/h?x=1" {
					t.Fatalf("server saw tls=%v Host %q SNI %q uri %q", s.tls, s.host, s.sni, s.uri)
				}
			}},
		{name: "proxy_absolute_form", params: map[string]string{"proxy": "yes", "host": "backend.example", "uri": "/health"},
			handler: respond(200, ""), state: event.Up, reason: event.ReasonL7OK,
			check: func(t *testing.T, _ string, s seenReq) {
				if s.uri != "http://backend.example/health" || s.host != "backend.example" {
					t.Fatalf("request-target %q Host %q, want absolute form", s.uri, s.host)
				}
			}},
		{name: "response_timeout", timeout: 300 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			state:   event.Down, reason: event.ReasonL7TOUT},
		{name: "body_timeout", timeout: 300 * time.Millisecond, params: map[string]string{"response": "OK"},
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			state: event.Down, reason: event.ReasonL7TOUT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, seen := httpServer(t, tc.tls, tc.handler)
			deps := Deps{}
			if tc.trusted {
				deps.RootCAs = x509.NewCertPool()
				deps.RootCAs.AddCert(srv.Certificate())
			}
			p, err := New(MethodHTTP, tc.params, deps)
			if err != nil {
				t.Fatal(err)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			addr := srv.Listener.Addr().String()
			r := probeWithin(t, p, target(t, addr, timeout))
			wantResult(t, r, tc.state, tc.reason)
			if tc.check != nil {
				tc.check(t, addr, nextReq(t, seen))
			}
			if tc.name == "redirect_not_followed" {
				nextReq(t, seen)
				select {
				case s := <-seen:
					t.Fatalf("redirect was followed to %s", s.uri)
				default:
				}
			}
		})
	}
}

func TestHTTPTransportFailures(t *testing.T) {
	silent := func(t *testing.T) string { // accepts and never writes
		return serveTCP(t, "127.0.0.1:0", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	}
	cases := []struct {
		name    string
		params  map[string]string
		server  func(t *testing.T) string
		timeout time.Duration
		state   event.State
		reason  event.Reason
	}{
		{"refused", nil, func(t *testing.T) string { return closedPort(t, "tcp", "127.0.0.1") },
			time.Second, event.Down, event.ReasonL4CON},
		{"tls_handshake_timeout", map[string]string{"https": "yes", "tls-verify": "no"}, silent,
			300 * time.Millisecond, event.Down, event.ReasonL6TOUT},
		{"plain_response_timeout", nil, silent, 300 * time.Millisecond, event.Down, event.ReasonL7TOUT},
		{"closed_without_response", nil, func(t *testing.T) string {
			return serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
				_, _ = http.ReadRequest(bufio.NewReader(c))
			})
		}, time.Second, event.Down, event.ReasonL7RSP},
		{"garbage_response", nil, func(t *testing.T) string {
			return serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
				_, _ = http.ReadRequest(bufio.NewReader(c))
				_, _ = io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
			})
		}, time.Second, event.Down, event.ReasonL7RSP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := probeWithin(t, mustNew(t, MethodHTTP, tc.params), target(t, tc.server(t), tc.timeout))
			wantResult(t, r, tc.state, tc.reason)
		})
	}
}

func TestHTTPProxyProtocol(t *testing.T) {
	cases := []struct {
		name    string
		host    string
		version string
		family  string
	}{
		{"v1_ipv4", "127.0.0.1:0", "v1", "TCP4"},
		{"v2_ipv6", "[::1]:0", "v2", "0x21"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct {
				hdr           proxyHdr
				local, remote string
				path          string
				err           error
			}
			ch := make(chan seen, 1)
			addr := serveTCP(t, tc.host, func(c net.Conn) {
				br := bufio.NewReader(c)
				h, err := readProxyHeader(br)
				s := seen{hdr: h, err: err, local: c.LocalAddr().String(), remote: c.RemoteAddr().String()}
				if err == nil {
					var req *http.Request
					if req, s.err = http.ReadRequest(br); s.err == nil {
						s.path = req.URL.Path
						_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
					}
				}
				ch <- s
			})
			p := mustNew(t, MethodHTTP, map[string]string{"proxy-protocol": tc.version, "uri": "/pp"})
			wantResult(t, probeWithin(t, p, target(t, addr, 2*time.Second)), event.Up, event.ReasonL7OK)
			s := <-ch
			if s.err != nil {
				t.Fatalf("server: %v", s.err)
			}
			if s.hdr.family != tc.family || s.hdr.src.String() != s.remote || s.hdr.dst.String() != s.local || s.path != "/pp" {
				t.Fatalf("header %+v path %q, want %s from %s to %s, /pp", s.hdr, s.path, tc.family, s.remote, s.local)
			}
		})
	}
}

// TestHTTPRawServers covers what a net/http server does not send: interim
// responses, and https through the backend as a proxy (a CONNECT tunnel).
func TestHTTPRawServers(t *testing.T) {
	tlsSrv, _ := httpServer(t, true, respond(200, ""))
	serverTLS := tlsSrv.TLS // certificates of httptest's TLS server
	tunnel := func(code int) func(net.Conn) {
		return func(c net.Conn) {
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil || req.Method != http.MethodConnect {
				return
			}
			if code != 200 {
				_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\n\r\n")
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			tc := tls.Server(c, serverTLS)
			inner, err := http.ReadRequest(bufio.NewReader(tc))
			if err != nil {
				return
			}
			_, _ = io.WriteString(tc, "HTTP/1.1 200 OK\r\nX-Path: "+inner.URL.Path+"\r\nContent-Length: 2\r\n\r\nok")
		}
	}
	cases := []struct {
		name   string
		params map[string]string
		handle func(net.Conn)
		state  event.State
		reason event.Reason
	}{
		{"interim_100_skipped", nil, func(c net.Conn) {
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
		}, event.Down, event.ReasonL7STS},
		{"proxy_https_connect_tunnel", map[string]string{"proxy": "yes", "https": "yes", "tls-verify": "no", "uri": "/tunnel", "response": "ok"},
			tunnel(200), event.Up, event.ReasonL7OK},
		{"proxy_https_connect_refused", map[string]string{"proxy": "yes", "https": "yes", "tls-verify": "no"},
			tunnel(403), event.Down, event.ReasonL7RSP},
		{"headers_too_large", nil, func(c net.Conn) {
			_, _ = http.ReadRequest(bufio.NewReader(c))
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("x", 3*MaxBodyMatch)+"\r\n\r\n")
		}, event.Down, event.ReasonL7RSP},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveTCP(t, "127.0.0.1:0", tc.handle)
			r := probeWithin(t, mustNew(t, MethodHTTP, tc.params), target(t, addr, 2*time.Second))
			wantResult(t, r, tc.state, tc.reason)
		})
	}
}

// TestHTTPRequestFraming: the request is HTTP/1.1 with one Host, one
// Connection: close and the body's Content-Length, whatever request-headers
// say about framing.
func TestHTTPRequestFraming(t *testing.T) {
	type seen struct {
		host       string
		conn       []string
		length     int64
		te         []string
		body, path string
		err        error
	}
	ch := make(chan seen, 1)
	addr := serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		s := seen{err: err}
		if err == nil {
			b, _ := io.ReadAll(req.Body)
			s = seen{host: req.Host, conn: req.Header.Values("Connection"), length: req.ContentLength,
				te: req.TransferEncoding, body: string(b), path: req.URL.RequestURI()}
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
		ch <- s
	})
	p := mustNew(t, MethodHTTP, map[string]string{"method": "PUT", "uri": "/a/b?c=d", "request": "hello",
		"request-headers": "Connection::keep-alive;;Content-Length::99;;Transfer-Encoding::chunked"})
	wantResult(t, probeWithin(t, p, target(t, addr, 2*time.Second)), event.Up, event.ReasonL7OK)
	s := <-ch
	if s.err != nil {
		t.Fatalf("server: %v", s.err)
	}
	if s.host != addr || len(s.conn) != 1 || s.conn[0] != "close" || s.length != 5 || len(s.te) != 0 ||
		s.body != "hello" || s.path != "/a/b?c=d" {
		t.Fatalf("server saw %+v; want Host %s, one Connection: close, Content-Length 5, body hello, /a/b?c=d", s, addr)
	}
}
