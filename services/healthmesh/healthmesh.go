// Package healthmesh is the all-in-one process: an embedded nats-server with
// JetStream on local disk plus the prober, aggregator and actioner roles, so
// that one binary replaces the DPVS healthcheck program on one machine.
package healthmesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/broker"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Options configures Run.
type Options struct {
	DataDir  string // JetStream store
	NATSAddr string // embedded server's client listener; "off" = in-process only
	HTTPAddr string // /healthz (and the roles' HTTP endpoints)
	Prefix   string // subject prefix (default hm)
	Bus      bus.Settings
	Log      zerolog.Logger
	// Ready, when set, is called once everything is up, with the NATS client
	// URL ("" when the listener is off) and the HTTP address.
	Ready func(natsURL, httpAddr string)
}

// Run starts everything and blocks until ctx ends, then shuts down in order:
// HTTP, roles, NATS connection, embedded server.
func Run(ctx context.Context, o Options) error {
	sp, err := subject.NewSpace(o.Prefix)
	if err != nil {
		return err
	}
	b, err := broker.Start(broker.Options{StoreDir: o.DataDir, ClientAddr: o.NATSAddr, Log: o.Log.With().Str("component", "nats").Logger()})
	if err != nil {
		return err
	}
	defer b.Shutdown()

	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	nc, err := bus.Connect(cctx, bus.ConnOptions{Name: "healthmesh", Extra: []nats.Option{b.InProcess()}, Log: o.Log})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("healthmesh: jetstream: %w", err)
	}
	if _, err := bus.Ensure(cctx, js, sp, o.Bus); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.HTTPAddr)
	if err != nil {
		return fmt.Errorf("healthmesh: http listen %s: %w", o.HTTPAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
			return
		}
		if _, err := js.AccountInfo(r.Context()); err != nil {
			http.Error(w, "jetstream: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	httpDone := make(chan error, 1) // closed by nobody; one value from Serve
	go func() { httpDone <- srv.Serve(ln) }()

	o.Log.Info().Str("nats_url", b.ClientURL()).Str("http_addr", ln.Addr().String()).Str("data_dir", o.DataDir).Msg("healthmesh ready")
	if o.Ready != nil {
		o.Ready(b.ClientURL(), ln.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-httpDone:
		runErr = fmt.Errorf("healthmesh: http: %w", err)
	}
	o.Log.Info().Msg("healthmesh shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		o.Log.Warn().Err(err).Msg("http shutdown")
	}
	if runErr == nil {
		<-httpDone
	}
	return runErr
}
