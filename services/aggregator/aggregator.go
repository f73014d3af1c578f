// Package aggregator is the healthmesh brain: it owns the configuration and
// the inventory, turns probe results into backend / VS / VA state and
// publishes every transition. Several instances may run; one is active (a
// lease in KV hm_leader) and the others stand by, serving HTTP and taking
// over within the lease TTL.
package aggregator

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/inventory"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/kvwrite"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/lease"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/httpserver"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Options configures Run. Flag names in comments are the DPVS healthcheck's.
type Options struct {
	Conn *nats.Conn      // an open connection; nil = connect with Bus
	Bus  bus.ConnOptions // used when Conn is nil
	ID   string          // instance id (default host-pid)
	Log  zerolog.Logger

	ConfigFile           string          // -config-file
	ConfigReloadInterval time.Duration   // -config-reload-interval (default 53s)
	Reload               <-chan struct{} // SIGHUP: reload now
	AgentAddr            string          // -dpvs-agent-addr; "" = the config's dpvs-agent.addr
	ServiceListInterval  time.Duration   // -dpvs-service-list-interval; 0 = the config's (15s)

	// HTTP: either a mux to add the handlers to (the all-in-one shares one
	// server) or an address to serve on.
	Mux          *http.ServeMux
	HTTPAddr     string // -metric-server-addr
	MetricsURI   string // -metric-server-uri (default /metrics), Prometheus format
	StatusURI    string // default /status: the DPVS text tree (?format=json)
	ConfURI      string // -conf-uri (default /conf)
	ConfCheckURI string // -conf-check-uri (default /conf/check)
	// Registry collects metrics; nil = a new one served at MetricsURI.
	Registry *prometheus.Registry

	// Tuning, mainly for tests.
	CheckpointEvery time.Duration
	// Ready is called once the HTTP handlers are registered.
	Ready func(httpAddr string)
}

func (o *Options) defaults() {
	if o.ID == "" {
		h, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	if o.ConfigReloadInterval <= 0 {
		o.ConfigReloadInterval = 53 * time.Second
	}
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&o.MetricsURI, "/metrics")
	def(&o.StatusURI, "/status")
	def(&o.ConfURI, "/conf")
	def(&o.ConfCheckURI, "/conf/check")
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
}

// server is the running aggregator instance.
type server struct {
	o      Options
	log    zerolog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	layout *bus.Layout
	cfg    atomic.Pointer[config.Config]
	// reloaded receives a value after each config change (buffered 1).
	reloaded chan struct{}
	active   atomic.Bool
	m        *metrics
}

// Run serves until ctx ends. It fails at start when the configuration file is
// invalid (nothing to run with); later bad reloads keep the running config.
func Run(ctx context.Context, o Options) error {
	o.defaults()
	cfg, warns, err := config.Load(o.ConfigFile)
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	for _, w := range warns {
		o.Log.Warn().Str("config", o.ConfigFile).Msg(w.String())
	}
	s := &server{o: o, log: o.Log.With().Str("component", "aggregator").Logger(), reloaded: make(chan struct{}, 1)}
	s.cfg.Store(cfg)
	s.m = newMetrics(o.Registry)

	nc := o.Conn
	if nc == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		nc, err = bus.Connect(cctx, o.Bus)
		cancel()
		if err != nil {
			return fmt.Errorf("aggregator: %w", err)
		}
		defer nc.Close()
	}
	s.nc = nc
	// An acknowledgement that never comes fails its write instead of
	// holding up the checkpoint that waits for it.
	if s.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(kvwrite.AckTimeout)); err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	sp, err := subject.NewSpace(cfg.Bus.Prefix)
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	s.layout, err = bus.Ensure(ectx, s.js, sp, BusSettings(cfg))
	cancel()
	if err != nil {
		return fmt.Errorf("aggregator: %w", err)
	}

	stopHTTP, err := s.serveHTTP()
	if err != nil {
		return err
	}
	defer stopHTTP()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Add(1)
	go func() { defer wg.Done(); s.reloadLoop(ctx) }()

	s.log.Info().Str("id", o.ID).Str("config", o.ConfigFile).Msg("aggregator started; campaigning")
	return lease.Run(ctx, lease.Options{KV: s.layout.Leader, Key: subject.KeyLeader, ID: o.ID,
		TTL: BusSettings(cfg).Defaults().LeaderTTL, Log: s.log}, s.lead)
}

// BusSettings are the streams' and buckets' settings from the bus section:
// the aggregator owns the layout (the all-in-one uses it too).
func BusSettings(cfg *config.Config) bus.Settings {
	b := cfg.Bus
	return bus.Settings{Replicas: b.Replicas, Results: b.Results, ResultsMaxAge: b.ResultsMaxAge, ResultsMaxBytes: int64(b.ResultsMaxBytes),
		EventsMaxAge: b.EventsMaxAge, EventsMaxBytes: int64(b.EventsMaxBytes), MemberTTL: b.MemberTTL, LeaderTTL: b.LeaderTTL}
}

// lead is the active aggregator's tenure: inventory, engine and API.
func (s *server) lead(ctx context.Context, t lease.Term) {
	s.active.Store(true)
	defer s.active.Store(false)
	s.m.term.Set(float64(t.Term))
	s.m.active.Set(1)
	defer s.m.active.Set(0)

	cfg := s.cfg.Load()
	var agent *dpvsagent.Client
	if cfg.DPVSAgent.Enabled {
		addr := s.o.AgentAddr
		if addr == "" {
			addr = cfg.DPVSAgent.Addr
		}
		var err error
		if agent, err = dpvsagent.New(addr, dpvsagent.WithTimeout(cfg.DPVSAgent.Timeout)); err != nil {
			s.log.Error().Err(err).Msg("dpvs-agent address rejected; using the static services only")
			agent = nil
		}
	}
	interval := s.o.ServiceListInterval
	if interval <= 0 {
		interval = cfg.DPVSAgent.ListInterval
	}
	desired := make(chan engine.Desired, 1) // sent by inventory.Run only
	requests := make(chan engine.Request)
	// Deferred in this order so that cancel runs before the wait: when the
	// engine stops on its own (fenced, transitions lost) the inventory
	// goroutine must be told to stop too, or lead never returns and its
	// lease is renewed forever with no engine behind it.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		inventory.Run(ctx, inventory.Options{Config: s.cfg.Load, Reload: s.reloaded, Agent: agent,
			ListInterval: interval, Out: desired, Metrics: s.m.inventory, Log: s.log})
	}()
	unsub, err := s.serveAPI(ctx, requests)
	if err != nil {
		s.log.Error().Err(err).Msg("api subscription failed")
		return
	}
	defer unsub()
	err = engine.Run(ctx, engine.Options{JS: s.js, Layout: s.layout, ID: s.o.ID, Term: t.Term,
		Desired: desired, Requests: requests, Metrics: s.m.engine, Log: s.log, CheckpointEvery: s.o.CheckpointEvery})
	if err != nil && ctx.Err() == nil {
		s.log.Error().Err(err).Msg("active aggregator stopped; handing over")
	}
}

// reloadLoop re-reads the configuration every interval and on SIGHUP. A bad
// file is rejected and the running config stays; both outcomes are audit
// events.
func (s *server) reloadLoop(ctx context.Context) {
	t := time.NewTicker(s.o.ConfigReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.o.Reload:
		}
		s.reload(ctx)
	}
}

func (s *server) reload(ctx context.Context) {
	cur := s.cfg.Load()
	next, warns, err := config.Load(s.o.ConfigFile)
	rec := &event.AuditRecord{V: event.Version, Verb: "config-reload", Who: s.o.ID, Object: s.o.ConfigFile, TS: time.Now().UnixNano()}
	switch {
	case err != nil:
		s.m.reloads.WithLabelValues("rejected").Inc()
		s.log.Error().Err(err).Msg("configuration rejected; keeping the running one")
		rec.Error = err.Error()
		rec.Detail = "running configuration kept: " + cur.Revision
	case next.Revision == cur.Revision:
		return
	default:
		for _, w := range warns {
			s.log.Warn().Msg(w.String())
		}
		if !reflect.DeepEqual(next.Bus, cur.Bus) {
			// The streams, buckets and connection are set up at start.
			s.log.Warn().Msg("the bus section changed: it takes effect when the aggregator restarts")
		}
		s.cfg.Store(next)
		s.m.reloads.WithLabelValues("applied").Inc()
		s.log.Info().Str("revision", next.Revision).Msg("configuration reloaded")
		rec.OK = true
		rec.Detail = "revision " + next.Revision
		select {
		case s.reloaded <- struct{}{}:
		default:
		}
	}
	// Every instance reloads; the message id makes one record per outcome.
	outcome := "invalid-" + subject.HashOf(rec.Error)
	if err == nil {
		outcome = next.Revision
	}
	id := "config-reload/" + s.o.ConfigFile + "/" + outcome
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, perr := bus.Publish(pctx, s.js, s.layout.Space.Audit(rec.Verb), rec, jetstream.WithMsgID(id)); perr != nil {
		s.log.Warn().Err(perr).Msg("audit record not stored")
	}
}

// serveHTTP registers the handlers and, without a shared mux, serves them.
func (s *server) serveHTTP() (stop func(), err error) {
	mux := s.o.Mux
	own := mux == nil
	if own {
		mux = http.NewServeMux()
	}
	s.routes(mux, own)
	if !own {
		if s.o.Ready != nil {
			s.o.Ready("")
		}
		return func() {}, nil
	}
	srv, err := httpserver.Start(s.o.HTTPAddr, mux, s.log)
	if err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	s.log.Info().Str("addr", srv.Addr()).Msg("http serving")
	if s.o.Ready != nil {
		s.o.Ready(srv.Addr())
	}
	return srv.Stop, nil
}
