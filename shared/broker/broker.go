// Package broker runs an embedded nats-server with JetStream: the bus of the
// all-in-one healthmesh binary and of the tests.
package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Options configures an embedded server.
type Options struct {
	// StoreDir holds JetStream data (StoreDir/jetstream). Required: an empty
	// value would silently use the system temp dir.
	StoreDir string
	// ClientAddr is the client listener "host:port" ("127.0.0.1:4222" so the
	// nats CLI can connect; port 0 picks a free one). Empty or "off" means no
	// listener: in-process connections only.
	ClientAddr string
	// ServerName defaults to "healthmesh".
	ServerName string
	// MaxMemory and MaxStore bound JetStream (defaults 256 MiB and 8 GiB).
	MaxMemory, MaxStore int64
	// ConfigFile, when set, is a nats-server configuration file whose options
	// are used as the base (the escape hatch for TLS, accounts, clustering).
	ConfigFile string
	// Log receives the server's log lines; the zero value discards them.
	Log zerolog.Logger
	// Trace logs protocol traces (very verbose).
	Trace bool
}

// Broker is a running embedded server.
type Broker struct {
	srv *server.Server
}

// ErrStore is returned when the store directory cannot be used.
var ErrStore = errors.New("broker: store dir")

// Start starts the server and waits until it accepts connections.
func Start(o Options) (*Broker, error) {
	if o.StoreDir == "" {
		return nil, fmt.Errorf("%w: not set", ErrStore)
	}
	if err := checkWritable(o.StoreDir); err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if o.ConfigFile != "" {
		fo, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("broker: config %s: %w", o.ConfigFile, err)
		}
		opts = fo
	}
	opts.ServerName = o.ServerName
	if opts.ServerName == "" {
		opts.ServerName = "healthmesh"
	}
	opts.JetStream = true
	opts.StoreDir = o.StoreDir
	opts.JetStreamMaxMemory = orDefault(o.MaxMemory, 256<<20)
	opts.JetStreamMaxStore = orDefault(o.MaxStore, 8<<30)
	opts.NoSigs = true
	opts.DisableJetStreamBanner = true
	opts.MaxPayload = 1 << 20
	switch o.ClientAddr {
	case "", "off":
		opts.DontListen = true
	default:
		host, port, err := splitHostPort(o.ClientAddr)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
		if port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	s.SetLoggerV2(&logAdapter{l: o.Log}, false, o.Trace, false)
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("broker: not ready after 15s (store %s, listen %q)", o.StoreDir, o.ClientAddr)
	}
	return &Broker{srv: s}, nil
}

// Server exposes the underlying nats-server.
func (b *Broker) Server() *server.Server { return b.srv }

// ClientURL is the nats:// URL of the client listener, or "" without one.
func (b *Broker) ClientURL() string {
	if b.srv.Addr() == nil {
		return ""
	}
	return b.srv.ClientURL()
}

// InProcess returns a connection option that connects over an in-memory
// pipe, which works with or without a TCP listener.
func (b *Broker) InProcess() nats.Option { return nats.InProcessServer(b.srv) }

// Shutdown stops the server and waits for it.
func (b *Broker) Shutdown() {
	b.srv.Shutdown()
	b.srv.WaitForShutdown()
}

func orDefault(v, d int64) int64 {
	if v > 0 {
		return v
	}
	return d
}

func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("broker: client address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("broker: client address %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// checkWritable creates dir if needed and proves a file can be written in it,
// so a bad -data-dir fails at start with a clear message instead of deep
// inside JetStream.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrStore, dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("%w: %s is not writable: %v", ErrStore, dir, err)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("%w: %s: %v", ErrStore, dir, err)
	}
	return nil
}

// logAdapter routes nats-server log lines into zerolog.
type logAdapter struct{ l zerolog.Logger }

func (a *logAdapter) Noticef(f string, v ...any) { a.l.Info().Str("src", "nats").Msgf(f, v...) }
func (a *logAdapter) Warnf(f string, v ...any)   { a.l.Warn().Str("src", "nats").Msgf(f, v...) }
func (a *logAdapter) Fatalf(f string, v ...any)  { a.l.Error().Str("src", "nats").Msgf(f, v...) }
func (a *logAdapter) Errorf(f string, v ...any)  { a.l.Error().Str("src", "nats").Msgf(f, v...) }
func (a *logAdapter) Debugf(f string, v ...any)  { a.l.Debug().Str("src", "nats").Msgf(f, v...) }
func (a *logAdapter) Tracef(f string, v ...any)  { a.l.Trace().Str("src", "nats").Msgf(f, v...) }
