// Package healthmesh is the all-in-one process: an embedded nats-server with
// JetStream on local disk plus the prober, aggregator and actioner roles, so
// that one binary replaces the DPVS healthcheck program on one machine.
package healthmesh

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/actioner"
	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/services/healthmesh/internal/gcpercent"
	"github.com/healthmesh/healthmesh/services/prober"
	"github.com/healthmesh/healthmesh/shared/broker"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/httpserver"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Options configures Run. The DPVS healthcheck flags map onto the fields
// named after them.
type Options struct {
	DataDir  string // JetStream store
	NATSAddr string // embedded server's client listener; "off" = in-process only
	HTTPAddr string // -metric-server-addr
	Node     string // this LB node's name (actioner durable, prober node label)
	Pprof    bool   // also serve /debug/pprof/ on HTTPAddr
	// AdaptGC collects garbage more often while the process is light
	// (package gcpercent; -gogc auto).
	AdaptGC bool

	ConfigFile           string          // -config-file
	ConfigReloadInterval time.Duration   // -config-reload-interval
	Reload               <-chan struct{} // SIGHUP
	AgentAddr            string          // -dpvs-agent-addr
	ServiceListInterval  time.Duration   // -dpvs-service-list-interval
	MetricsURI           string          // -metric-server-uri
	ConfURI              string          // -conf-uri
	ConfCheckURI         string          // -conf-check-uri

	Log zerolog.Logger
	// Ready, when set, is called once everything is up, with the NATS client
	// URL ("" when the listener is off) and the HTTP address.
	Ready func(natsURL, httpAddr string)
}

// Run starts everything and blocks until ctx ends or a role fails, then
// shuts down in order: roles, HTTP, NATS connections, embedded server.
func Run(ctx context.Context, o Options) error {
	cfg, _, err := config.Load(o.ConfigFile)
	if err != nil {
		return fmt.Errorf("healthmesh: %w", err)
	}
	sp, err := subject.NewSpace(cfg.Bus.Prefix)
	if err != nil {
		return err
	}
	b, err := broker.Start(broker.Options{StoreDir: o.DataDir, ClientAddr: o.NATSAddr, ServerName: "healthmesh-" + subject.NameToken(o.Node),
		Log: o.Log.With().Str("component", "nats").Logger()})
	if err != nil {
		return err
	}
	defer b.Shutdown()

	connect := func(name string) (*nats.Conn, error) {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return bus.Connect(cctx, bus.ConnOptions{Name: name, Extra: []nats.Option{b.InProcess()}, Log: o.Log})
	}
	nc, err := connect("healthmesh")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("healthmesh: jetstream: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, 15*time.Second)
	set := aggregator.BusSettings(cfg)
	set.Replicas = 1 // one embedded server
	_, err = bus.Ensure(ectx, js, sp, set)
	cancel()
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

	if o.Pprof {
		httpserver.Pprof(mux)
	}

	roleConn := map[string]*nats.Conn{}
	for _, role := range []string{"aggregator", "prober", "actioner"} {
		c, err := connect("healthmesh-" + role)
		if err != nil {
			return err
		}
		defer c.Close()
		roleConn[role] = c
	}

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 3) // one per role
	role := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(rctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				stop()
			}
		}()
	}
	aggReady := make(chan struct{}) // closed when the aggregator's handlers are on the mux
	if o.AdaptGC {
		wg.Add(1)
		go func() { defer wg.Done(); gcpercent.Adapt(rctx, gcpercent.Options{Log: o.Log}) }()
	}
	role("aggregator", func(ctx context.Context) error {
		return aggregator.Run(ctx, aggregator.Options{Conn: roleConn["aggregator"], ID: o.Node + "-aggregator",
			Log: o.Log, ConfigFile: o.ConfigFile, ConfigReloadInterval: o.ConfigReloadInterval, Reload: o.Reload,
			AgentAddr: o.AgentAddr, ServiceListInterval: o.ServiceListInterval, Mux: mux, Registry: reg,
			MetricsURI: o.MetricsURI, ConfURI: o.ConfURI, ConfCheckURI: o.ConfCheckURI,
			Ready: func(string) { close(aggReady) }})
	})
	role("prober", func(ctx context.Context) error {
		return prober.Run(ctx, prober.Options{Conn: roleConn["prober"], ID: o.Node + "-prober", Node: o.Node,
			Prefix: cfg.Bus.Prefix, Concurrency: cfg.Prober.Concurrency, Zone: cfg.Prober.Zone,
			Mux: mux, Registry: reg, Log: o.Log})
	})
	role("actioner", func(ctx context.Context) error {
		agent := o.AgentAddr
		if agent == "" {
			agent = cfg.DPVSAgent.Addr
		}
		return actioner.Run(ctx, actioner.Options{Conn: roleConn["actioner"], Node: o.Node, AgentAddr: agent,
			Prefix: cfg.Bus.Prefix, Registry: reg, Log: o.Log})
	})

	select {
	case <-aggReady:
	case err := <-errs:
		stop()
		wg.Wait()
		return err
	case <-ctx.Done():
		stop()
		wg.Wait()
		return nil
	}

	srv, err := httpserver.Start(o.HTTPAddr, mux, o.Log)
	if err != nil {
		stop()
		wg.Wait()
		return fmt.Errorf("healthmesh: %w", err)
	}
	o.Log.Info().Str("nats_url", b.ClientURL()).Str("http_addr", srv.Addr()).Str("data_dir", o.DataDir).
		Str("config", o.ConfigFile).Str("node", o.Node).Msg("healthmesh ready")
	if o.Ready != nil {
		o.Ready(b.ClientURL(), srv.Addr())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	case <-srv.Done():
		runErr = fmt.Errorf("healthmesh: http: %w", srv.Err())
	}
	o.Log.Info().Msg("healthmesh shutting down")
	stop()
	wg.Wait()
	srv.Stop()
	return runErr
}
