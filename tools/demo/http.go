package demo

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// echoBodyMax bounds how much of a request body /echo sends back.
const echoBodyMax = 64 << 10

type httpRunner struct {
	b    *backend
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed by halt
	wg   sync.WaitGroup

	mu     sync.Mutex
	halted bool
}

func (f *Farm) serveHTTP(b *backend) (runner, netip.AddrPort, error) {
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(b.addr))
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	r := &httpRunner{b: b, ln: ln, done: make(chan struct{})}
	// A server per life of the backend: an http.Server cannot serve again
	// after Close, and Close is how a failure drops keep-alive connections.
	r.srv = &http.Server{
		Handler:           r,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       tcpIdle,
		ErrorLog:          f.errLog,
	}
	return r, boundAddr(ln.Addr()), nil
}

func (r *httpRunner) start() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_ = r.srv.Serve(r.ln) // returns ErrServerClosed after halt
	}()
}

// ServeHTTP answers every path with the backend's code and "OK <name>"
// (or "<code> <text> <name>"); /echo writes back the request line, Host,
// headers in name order and the body.
func (r *httpRunner) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.enter() {
		abort(w)
		return
	}
	defer r.wg.Done()
	r.b.requests.Add(1)
	if !r.b.pause(r.done) {
		abort(w)
		return
	}
	code := int(r.b.code.Load())
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Backend", r.b.name)
	w.WriteHeader(code)
	if req.URL.Path == "/echo" {
		writeEcho(w, req)
		return
	}
	if code == http.StatusOK {
		fmt.Fprintf(w, "OK %s\n", r.b.name)
		return
	}
	fmt.Fprintf(w, "%d %s %s\n", code, http.StatusText(code), r.b.name)
}

// enter admits a handler unless the runner is halted; the WaitGroup Add
// happens under mu before halt sets halted, so it never races wait.
func (r *httpRunner) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.halted {
		return false
	}
	r.wg.Add(1)
	return true
}

// abort drops the connection without an answer: returning from a handler
// without writing would send "200 OK" from a backend that is down.
func abort(w http.ResponseWriter) {
	if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
		c.Close()
		return
	}
	panic(http.ErrAbortHandler) // net/http's documented way to drop a response it cannot hijack
}

func writeEcho(w io.Writer, req *http.Request) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\n", req.Method, req.RequestURI, req.Proto)
	fmt.Fprintf(&b, "Host: %s\n", req.Host)
	names := make([]string, 0, len(req.Header))
	for k := range req.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range req.Header[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	io.WriteString(w, b.String())
	io.Copy(w, io.LimitReader(req.Body, echoBodyMax))
}

func (r *httpRunner) halt() {
	r.mu.Lock()
	r.halted = true
	r.mu.Unlock()
	close(r.done)
	// Close (not Shutdown): a failed server drops its connections, in-flight
	// ones included, as a crashed one would.
	if err := r.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		r.srv.ErrorLog.Printf("close %s: %v", r.b.name, err)
	}
	r.ln.Close() // Serve closes it too, unless halt came before Serve ran
}

func (r *httpRunner) wait() { r.wg.Wait() }
