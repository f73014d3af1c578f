// Package metrics defines the actioner's Prometheus collectors, registered
// on a registry the caller owns (never the default one).
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Results of an action attempt, the "result" label of ActionsTotal.
const (
	ResultOK        = "ok"        // applied
	ResultError     = "error"     // failed, will be retried
	ResultPermanent = "permanent" // failed, retrying cannot help
)

// Reasons an event was consumed without an action of its own, the "reason"
// label of EventsSkipped.
const (
	SkipStale      = "stale"      // a newer event of the same object was already delivered
	SkipSuperseded = "superseded" // a newer event of the same object came in the same batch
	SkipMalformed  = "malformed"  // did not decode, or its subject is not a transition's
	SkipInvalid    = "invalid"    // decoded, but names nothing that can be acted on
	SkipNoop       = "noop"       // asks for nothing (to unknown, no apply, no actioner)
	SkipListed     = "listed"     // DPVS already had it when decided (BackendApply.Listed)
)

// Metrics are the actioner's collectors.
type Metrics struct {
	Actions       *prometheus.CounterVec   // actioner, result
	Duration      *prometheus.HistogramVec // actioner
	Events        *prometheus.CounterVec   // kind
	Skipped       *prometheus.CounterVec   // reason
	Batch         prometheus.Histogram     // messages per fetched batch
	Coalesced     prometheus.Histogram     // backends per VS action
	SyncRepairs   *prometheus.CounterVec   // actioner
	SyncErrors    *prometheus.CounterVec   // stage
	PublishErrors prometheus.Counter
}

// RegisterObjects adds healthmesh_actioner_objects{kind}, the backends and
// VAs whose desired state the actioner tracks, read from count at scrape.
func RegisterObjects(reg prometheus.Registerer, count func() (backends, vas int)) {
	for _, k := range []struct {
		kind string
		pick func(b, v int) int
	}{
		{"backend", func(b, _ int) int { return b }},
		{"va", func(_, v int) int { return v }},
	} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "healthmesh", Subsystem: "actioner", Name: "objects",
			Help:        "Backends and VAs whose desired state the actioner tracks (from hm_state and events).",
			ConstLabels: prometheus.Labels{"kind": k.kind},
		}, func() float64 { return float64(k.pick(count())) }))
	}
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	const ns, sub = "healthmesh", "actioner"
	m := &Metrics{
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "actions_total",
			Help: "Action attempts by actioner and result (ok, error, permanent).",
		}, []string{"actioner", "result"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "action_duration_seconds",
			Help:    "Duration of action attempts.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"actioner"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_consumed_total",
			Help: "Transitions delivered by the durable consumer, by kind (backend, va).",
		}, []string{"kind"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "events_skipped_total",
			Help: "Delivered transitions acknowledged without an action of their own, by reason.",
		}, []string{"reason"}),
		Batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "batch_messages",
			Help:    "Messages per fetched batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 … 4096
		}),
		Coalesced: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "coalesced_backends",
			Help:    "Backends applied by one VS action (events coalesced into one call).",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		SyncRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_repairs_total",
			Help: "Objects re-applied successfully by the periodic re-assertion (failed before, or drifted).",
		}, []string{"actioner"}),
		SyncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "sync_errors_total",
			Help: "Re-assertion steps that could not look at the load balancer (list, verdict).",
		}, []string{"stage"}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "result_publish_errors_total",
			Help: "Action results that could not be published to the events stream.",
		}),
	}
	reg.MustRegister(m.Actions, m.Duration, m.Events, m.Skipped, m.Batch, m.Coalesced,
		m.SyncRepairs, m.SyncErrors, m.PublishErrors)
	return m
}
