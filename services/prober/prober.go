// Package prober is the healthmesh probe worker: it registers in KV
// hm_members, follows the desired targets in KV hm_targets, probes the ones
// it owns by rendezvous hashing (R owners per target; one per node for full
// mesh) with one scheduler and bounded concurrency, and publishes every
// result to HM_RESULTS. It keeps no health state: that is the aggregator's.
package prober

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/prober/internal/member"
	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
	"github.com/healthmesh/healthmesh/services/prober/internal/procs"
	"github.com/healthmesh/healthmesh/services/prober/internal/publish"
	"github.com/healthmesh/healthmesh/services/prober/internal/schedule"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/httpserver"
	"github.com/healthmesh/healthmesh/shared/kvwatch"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Options configures Run.
type Options struct {
	Conn   *nats.Conn      // an open connection; nil = connect with Bus
	Bus    bus.ConnOptions // used when Conn is nil
	ID     string          // member id, unique per prober (default node-pid)
	Node   string          // node label (default host name): full mesh = one observer per node
	Zone   string          // zone label
	Labels map[string]string
	Prefix string // subject prefix (default hm)

	Concurrency int // probes in flight at most (default 1024)
	MaxPending  int // results awaiting a JetStream ack before back-pressure (default 4000)
	PingMode    probe.PingMode
	// AdaptProcs runs the process on one P while the load is light and on
	// all of them when it is busy (package procs): for a process that only
	// probes (hm-prober), not the all-in-one.
	AdaptProcs bool

	// HTTP: a mux to add /metrics to (all-in-one), or an address to serve
	// /metrics and /healthz on ("" = no HTTP).
	Mux      *http.ServeMux
	HTTPAddr string
	Registry *prometheus.Registry // nil = a new one
	// Pprof also serves /debug/pprof/ on HTTPAddr, for profiling a running
	// prober (off by default: it exposes internals).
	Pprof bool
	Log   zerolog.Logger
	Ready func(httpAddr string)
}

func (o *Options) defaults() {
	host, _ := os.Hostname()
	if o.Node == "" {
		o.Node = host
	}
	if o.ID == "" {
		o.ID = fmt.Sprintf("%s-%d", o.Node, os.Getpid())
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1024
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
}

// Run probes until ctx ends. On a clean stop the member record is deleted at
// once, so the other probers take the targets over without waiting for the
// TTL.
func Run(ctx context.Context, o Options) error {
	o.defaults()
	log := o.Log.With().Str("component", "prober").Str("observer", o.ID).Logger()
	nc := o.Conn
	if nc == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var err error
		nc, err = bus.Connect(cctx, o.Bus)
		cancel()
		if err != nil {
			return fmt.Errorf("prober: %w", err)
		}
		defer nc.Close()
	}
	sp, err := subject.NewSpace(o.Prefix)
	if err != nil {
		return fmt.Errorf("prober: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("prober: %w", err)
	}
	layout, err := bus.WaitOpen(ctx, js, sp, log)
	if err != nil {
		return err
	}
	ttl := 3 * time.Second
	if st, err := layout.Members.Status(ctx); err == nil && st.TTL() > 0 {
		ttl = st.TTL()
	}
	pub, err := publish.New(nc, o.ID, o.Node, o.MaxPending)
	if err != nil {
		return fmt.Errorf("prober: %w", err)
	}
	pub.SetCore(layout.Results == nil) // bus.ResultsCore: no results stream
	m := newMetrics(o.Registry, pub)
	pinger := probe.NewPinger(probe.PingerOptions{Mode: o.PingMode})
	defer pinger.Close()
	sockets := probe.NewSockets(min(o.Concurrency, 256))
	defer sockets.Close()

	sched := schedule.New(schedule.Options{MaxConcurrent: o.Concurrency, Coalesce: schedule.CoalesceRuns, Metrics: m})
	w := &worker{o: o, log: log, sp: sp, pub: pub, sched: sched, m: m,
		deps: probe.Deps{Pinger: pinger, Sockets: sockets}, registry: member.NewRegistry(),
		defs: map[string]*spec{}, owned: map[string]*job{}, shared: map[string]probe.Prober{}, wake: make(chan struct{}, 1)}

	stopHTTP, err := w.serveHTTP()
	if err != nil {
		return err
	}
	defer stopHTTP()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	start(func(ctx context.Context) { pub.Run(ctx, 0) })
	if o.AdaptProcs {
		start(func(ctx context.Context) { procs.Adapt(ctx, procs.Options{Log: log}) })
	}
	start(func(ctx context.Context) { sched.Run(ctx) })
	start(func(ctx context.Context) { member.Watch(ctx, layout.Members, w.registry, log) })
	self := event.Member{ID: o.ID, Node: o.Node, Zone: o.Zone, Labels: o.Labels, Version: "1"}
	start(func(ctx context.Context) {
		member.Heartbeat(ctx, layout.Members, self, ttl/3, w.ownedCount, log)
	})
	start(func(ctx context.Context) {
		kvwatch.Watch(ctx, layout.Targets, kvwatch.Handler[event.Target]{
			Put:    w.putTarget,
			Delete: w.deleteTarget,
		}, log)
	})
	start(w.ownership)
	start(func(ctx context.Context) {
		publish.Follow(ctx, js, sp.StreamResults(), pub, publish.FollowEvery, func(core bool) {
			log.Info().Str("results", resultsMode(core)).Msg("results mode changed")
		})
	})
	log.Info().Str("node", o.Node).Str("results", resultsMode(pub.Core())).Int("concurrency", o.Concurrency).Msg("prober started")
	<-ctx.Done()
	cancel()
	wg.Wait()
	// Let in-flight results reach the stream before the connection closes.
	if !pub.Drain(2 * time.Second) {
		log.Warn().Msg("results not all acknowledged at shutdown")
	}
	return nil
}

func resultsMode(core bool) string {
	if core {
		return bus.ResultsCore
	}
	return bus.ResultsJetStream
}

func (w *worker) serveHTTP() (func(), error) {
	h := promhttp.HandlerFor(w.o.Registry, promhttp.HandlerOpts{Registry: w.o.Registry})
	if w.o.Mux != nil {
		if w.o.Ready != nil {
			w.o.Ready("")
		}
		return func() {}, nil
	}
	if w.o.HTTPAddr == "" {
		return func() {}, nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, r *http.Request) { fmt.Fprintln(rw, "ok") })
	if w.o.Pprof {
		httpserver.Pprof(mux)
	}
	srv, err := httpserver.Start(w.o.HTTPAddr, mux, w.log)
	if err != nil {
		return nil, fmt.Errorf("prober: %w", err)
	}
	if w.o.Ready != nil {
		w.o.Ready(srv.Addr())
	}
	return srv.Stop, nil
}
