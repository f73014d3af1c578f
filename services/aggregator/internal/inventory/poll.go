package inventory

import (
	"cmp"
	"context"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
)

// Options configures Run.
type Options struct {
	Config func() *config.Config // the current configuration
	// Reload signals that Config changed (a value per reload).
	Reload <-chan struct{}
	// Agent lists services; nil when dpvs-agent is not used.
	Agent        *dpvsagent.Client
	ListInterval time.Duration // default 15s
	// Out receives each new Desired; only the latest matters, so a pending
	// value is replaced. Run is its only sender.
	Out     chan engine.Desired
	Metrics *Metrics
	Log     zerolog.Logger
}

// Metrics are the inventory's series.
type Metrics struct {
	ListErrors prometheus.Counter
	Problems   prometheus.Gauge
	Services   prometheus.Gauge
	Unchanged  prometheus.Counter
}

// NewMetrics registers the inventory series.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ListErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "healthmesh_aggregator_inventory_errors_total",
			Help: "Failed dpvs-agent service listings (the last good list is kept)."}),
		Problems: prometheus.NewGauge(prometheus.GaugeOpts{Name: "healthmesh_aggregator_inventory_problems",
			Help: "Services or backends in the inventory that could not be used."}),
		Services: prometheus.NewGauge(prometheus.GaugeOpts{Name: "healthmesh_aggregator_inventory_services",
			Help: "Virtual services in the inventory."}),
		Unchanged: prometheus.NewCounter(prometheus.CounterOpts{Name: "healthmesh_aggregator_inventory_unchanged_total",
			Help: "Listings and reloads that changed nothing, so the engine was not given the inventory again."}),
	}
	reg.MustRegister(m.ListErrors, m.Problems, m.Services, m.Unchanged)
	return m
}

// Run lists dpvs-agent every ListInterval (at once at start) and rebuilds on
// every reload, until ctx ends. A failed, empty or malformed list is logged
// and counted and the last good list is kept: it never means "all services
// are gone".
func Run(ctx context.Context, o Options) {
	if o.ListInterval <= 0 {
		o.ListInterval = 15 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	var last []dpvsagent.VirtualServer
	listed := o.Agent == nil
	// What the last inventory sent was built from: a listing that differs
	// from it only in what the inventory does not use (DPVS's traffic
	// counters, the order of services) under the same configuration is not
	// built and sent again, so a steady fleet costs the engine no full
	// re-judgement, hm_targets comparison and checkpoint pass every list
	// interval.
	// An inventory with a VS that lists no backend is an exception: the
	// model judges such a VS Down only once topology.EmptyInventories
	// inventories in a row listed it empty, so that one is repeated until
	// then.
	var (
		sentList []dpvsagent.VirtualServer
		sentCfg  *config.Config
		sent     bool
		repeats  int // times the last inventory with an empty VS may still be sent again
	)
	list := func() {
		if o.Agent == nil {
			return
		}
		lctx, cancel := context.WithTimeout(ctx, o.ListInterval)
		defer cancel()
		vss, err := o.Agent.ListVS(lctx)
		if err != nil {
			if ctx.Err() == nil {
				o.Metrics.ListErrors.Inc()
				o.Log.Warn().Err(err).Msg("dpvs-agent service list failed; keeping the last good one")
			}
			return
		}
		normalize(vss)
		last, listed = vss, true
	}
	build := func() {
		if !listed {
			// Until the agent answered once, the inventory is unknown: an
			// empty one would make every VS look removed.
			return
		}
		cfg := o.Config()
		unchanged := sent && cfg == sentCfg && reflect.DeepEqual(last, sentList)
		if unchanged {
			last = sentList // one copy of the listing is held, not two
		}
		if unchanged && repeats == 0 {
			o.Metrics.Unchanged.Inc() // and its problems were logged when it was sent
			return
		}
		d, problems := Build(cfg, last)
		if unchanged {
			repeats--
		} else {
			sentList, sentCfg, sent = last, cfg, true
			repeats = 0
			if slices.ContainsFunc(d.Inventory.VSs, func(v topology.VSSpec) bool { return len(v.Backends) == 0 }) {
				repeats = topology.EmptyInventories - 1
			}
		}
		for _, p := range problems {
			o.Log.Warn().Str("object", p.Object).Msg("inventory: " + p.Msg)
		}
		o.Metrics.Problems.Set(float64(len(problems)))
		o.Metrics.Services.Set(float64(len(d.Inventory.VSs)))
		select {
		case <-o.Out: // drop the stale pending value
		default:
		}
		select {
		case o.Out <- d:
		case <-ctx.Done():
		}
	}
	list()
	build()
	t := time.NewTicker(o.ListInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			list()
			build()
		case <-o.Reload:
			build()
		}
	}
}

// normalize drops from a listing what the inventory does not use and can
// change between two listings of the same services: traffic counters and the
// order of services and of their real servers.
func normalize(vss []dpvsagent.VirtualServer) {
	for i := range vss {
		v := &vss[i]
		v.Stats = nil
		for j := range v.RSs.Items {
			v.RSs.Items[j].Stats = nil
		}
		slices.SortFunc(v.RSs.Items, func(a, b dpvsagent.RealServerExpand) int {
			return cmp.Or(strings.Compare(a.Spec.IP, b.Spec.IP), cmp.Compare(a.Spec.Port, b.Spec.Port))
		})
	}
	slices.SortFunc(vss, func(a, b dpvsagent.VirtualServer) int {
		return cmp.Or(strings.Compare(a.Addr, b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Fwmark, b.Fwmark))
	})
}
