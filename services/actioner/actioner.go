// Package actioner is the hm-actioner role: it makes one LB node match the
// health decisions. It consumes backend and VA transitions from HM_EVENTS
// through the node's durable consumer and applies them with the actioner
// each event names (backend events → the VS actioner, normally
// BackendUpdate, coalescing the pending changes of one VS into one call; VA
// events → the VA actioner), re-asserts the desired state from KV hm_state
// every action-sync-time, publishes every attempt's outcome on
// hm.action.<actioner>.<object>, and serves /metrics and /healthz.
//
// Run is what both the hm-actioner binary and the all-in-one healthmesh
// binary call.
package actioner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/actioner/internal/action"
	"github.com/healthmesh/healthmesh/services/actioner/internal/delivery"
	"github.com/healthmesh/healthmesh/services/actioner/internal/executor"
	"github.com/healthmesh/healthmesh/services/actioner/internal/ledger"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/services/actioner/internal/resync"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/kvwatch"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Defaults of the role binary's flags (DPVS's for the agent).
const (
	DefaultAgentAddr = ":8082"
	DefaultHTTPAddr  = ":6603"
)

// Options configures Run. Zero tunables take their defaults.
type Options struct {
	// Conn is the NATS connection to use; when nil, Run connects with
	// ConnOptions (and closes that connection when it returns).
	Conn        *nats.Conn
	ConnOptions bus.ConnOptions
	// Node is the LB node this actioner serves (required): the durable
	// consumer's name, shared by replicas of the node.
	Node string
	// AgentAddr is the dpvs-agent address; "" means none (BackendUpdate and
	// the DpvsAddr actioners then fail permanently).
	AgentAddr string
	Prefix    string // subject prefix ("" = hm)
	// HTTPAddr serves /metrics and /healthz; "" serves nothing.
	HTTPAddr string
	// Registry collects the metrics; nil = a new one (served at HTTPAddr).
	// The all-in-one passes its shared registry.
	Registry *prometheus.Registry
	Log      zerolog.Logger

	ActionTimeout time.Duration   // action-timeout of specs that give none (2s)
	VSSyncTime    time.Duration   // action-sync-time of VS specs that give none (15s)
	VASyncTime    time.Duration   // action-sync-time of VA specs that give none (60s)
	BatchSize     int             // events per batch (1000)
	BatchWait     time.Duration   // how long a batch collects after its first event (20ms)
	AckWait       time.Duration   // consumer ack deadline (10s)
	Retry         []time.Duration // redelivery delays after failures (1s 2s 5s 10s 30s)
	Parallel      int             // actions run at once (8)

	// Ready, when set, is called once the consumer exists, with the HTTP
	// address ("" when HTTP is off).
	Ready func(httpAddr string)
	// BeforeAck is a test hook: see delivery.Config.BeforeAck.
	BeforeAck func()
}

// Run serves until ctx ends and returns once every goroutine it started is
// gone. It returns an error for bad options, an unreachable NATS (when it
// connects itself) or an HTTP listener that fails.
func Run(ctx context.Context, o Options) error {
	if strings.TrimSpace(o.Node) == "" {
		return errors.New("actioner: node id is required")
	}
	sp, err := subject.NewSpace(o.Prefix)
	if err != nil {
		return fmt.Errorf("actioner: %w", err)
	}
	var agent *dpvsagent.Client
	if o.AgentAddr != "" {
		if agent, err = dpvsagent.New(o.AgentAddr, dpvsagent.WithUserAgent("healthmesh-actioner")); err != nil {
			return fmt.Errorf("actioner: %w", err)
		}
	}
	log := o.Log.With().Str("node", o.Node).Logger()

	nc := o.Conn
	if nc == nil {
		if nc, err = bus.Connect(ctx, o.ConnOptions); err != nil {
			return fmt.Errorf("actioner: %w", err)
		}
		defer nc.Close()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("actioner: jetstream: %w", err)
	}
	layout, err := bus.WaitOpen(ctx, js, sp, log)
	if err != nil {
		return err
	}

	var ln net.Listener
	if o.HTTPAddr != "" {
		if ln, err = net.Listen("tcp", o.HTTPAddr); err != nil {
			return fmt.Errorf("actioner: http listen %s: %w", o.HTTPAddr, err)
		}
	}

	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := metrics.New(reg)
	led := ledger.New()
	metrics.RegisterObjects(reg, led.Count)
	ex := executor.New(executor.Config{
		Node: o.Node, JS: js, Space: sp, Timeout: o.ActionTimeout, Parallel: o.Parallel, Metrics: m, Log: log,
		Deps: action.Deps{Agent: agent, Log: log},
	})
	rs := resync.New(resync.Config{
		Exec: ex, Ledger: led, Agent: agent, Metrics: m, Log: log,
		DefaultVS: o.VSSyncTime, DefaultVA: o.VASyncTime,
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
		ready    atomic.Bool
	)
	start := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errOnce.Do(func() { firstErr = err })
				cancel()
			}
		}()
	}
	follow := func(kind event.Kind, filter string) {
		start(func() error {
			return kvwatch.Watch(ctx, layout.State, kvwatch.Handler[event.Transition]{
				Filter: filter,
				Put:    func(key string, t *event.Transition, _ uint64) { led.Want(key, t) },
				Delete: led.Forget,
				Synced: func() { led.Synced(kind) },
			}, log)
		})
	}
	follow(event.KindBackend, "backend.>")
	follow(event.KindVA, "va.>")

	httpAddr := ""
	if ln != nil {
		httpAddr = ln.Addr().String()
		srv := &http.Server{Handler: handler(reg, nc, &ready), ReadHeaderTimeout: 5 * time.Second}
		start(func() error {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("actioner: http: %w", err)
			}
			return nil
		})
		start(func() error {
			<-ctx.Done()
			sctx, scancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer scancel()
			_ = srv.Shutdown(sctx)
			return nil
		})
	}
	start(func() error {
		rs.Run(ctx)
		return nil
	})
	start(func() error {
		return delivery.Run(ctx, delivery.Config{
			Stream: layout.Events, Space: sp, Node: o.Node, Exec: ex, Ledger: led, Metrics: m, Log: log,
			BatchSize: o.BatchSize, BatchWait: o.BatchWait, AckWait: o.AckWait, Retry: o.Retry,
			Between:   rs.Step,
			Recreated: rs.Kick,
			BeforeAck: o.BeforeAck,
			Ready: func() {
				ready.Store(true)
				log.Info().Str("durable", delivery.Durable(o.Node)).Str("http_addr", httpAddr).
					Str("dpvs_agent", o.AgentAddr).Msg("actioner ready")
				if o.Ready != nil {
					o.Ready(httpAddr)
				}
			},
		})
	})
	wg.Wait()
	return firstErr
}

// handler serves /metrics from reg and /healthz: 200 once the consumer
// exists while NATS is connected, 503 otherwise.
func handler(reg *prometheus.Registry, nc *nats.Conn, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !nc.IsConnected():
			http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
		case !ready.Load():
			http.Error(w, "consumer: not ready", http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(w, "ok")
		}
	})
	return mux
}
