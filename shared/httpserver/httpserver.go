// Package httpserver runs the small HTTP servers every healthmesh process
// has (/metrics, /healthz, the aggregator's /status and /conf): listen, serve
// in an owned goroutine, shut down gracefully.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rs/zerolog"
)

// Server is a running HTTP server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{} // closed when Serve returns
	err  error         // Serve's error, valid after done
}

// Start listens on addr ("127.0.0.1:0" picks a port) and serves h.
func Start(addr string, h http.Handler, log zerolog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, ln: ln, done: make(chan struct{})}
	// The bound address, so that a process started with ":0" can be found.
	log.Info().Str("addr", ln.Addr().String()).Msg("http listening")
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			log.Error().Err(err).Str("addr", ln.Addr().String()).Msg("http server failed")
		}
	}()
	return s, nil
}

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Done is closed when the server stops serving (after Stop, or a failure).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the server stopped on its own (nil after Stop).
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Stop shuts the server down, giving requests in flight up to 3 s, and waits
// for its goroutine.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	<-s.done
}

// Pprof adds the runtime profiles under /debug/pprof/ to mux, for profiling
// a running process (`go tool pprof http://ADDR/debug/pprof/profile`). Off by
// default in every binary: profiles expose internals.
func Pprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
