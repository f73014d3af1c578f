// Package natstest starts embedded nats-servers with JetStream for tests, the
// way net/http/httptest starts HTTP servers: random port, temp store dir,
// shut down on cleanup.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/broker"
)

// Options tunes RunServerWith. The zero value is what RunServer uses.
type Options struct {
	// StoreDir reuses a JetStream store (to restart a server on the same
	// data); empty means a fresh t.TempDir().
	StoreDir string
	// ClientAddr is the listen address; empty means 127.0.0.1 on a random port.
	ClientAddr string
}

// Server is a running test server.
type Server struct {
	*broker.Broker
	StoreDir string
	t        testing.TB
}

// RunServer starts a JetStream-enabled server on 127.0.0.1 with a random
// port and a temp store, stopped when the test ends.
func RunServer(t testing.TB) *Server { return RunServerWith(t, Options{}) }

// RunServerWith is RunServer with options.
func RunServerWith(t testing.TB, o Options) *Server {
	t.Helper()
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	if o.ClientAddr == "" {
		o.ClientAddr = "127.0.0.1:0"
	}
	b, err := broker.Start(broker.Options{StoreDir: o.StoreDir, ClientAddr: o.ClientAddr, ServerName: "natstest"})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	s := &Server{Broker: b, StoreDir: o.StoreDir, t: t}
	t.Cleanup(b.Shutdown)
	return s
}

// URL is the server's client URL.
func (s *Server) URL() string { return s.ClientURL() }

// Connect opens a client connection closed at cleanup. Reconnects are kept
// fast so restart tests run quickly.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	base := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), nats.Timeout(5 * time.Second)}
	nc, err := nats.Connect(s.URL(), append(base, opts...)...)
	if err != nil {
		s.t.Fatalf("natstest: connect %s: %v", s.URL(), err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// JetStream connects and returns a JetStream context on the connection.
func (s *Server) JetStream(opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc := s.Connect(opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
