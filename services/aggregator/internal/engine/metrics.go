package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus series (healthmesh_aggregator_*).
type Metrics struct {
	results           prometheus.Counter
	unknownTargets    prometheus.Counter
	transitions       *prometheus.CounterVec
	publishRetries    prometheus.Counter
	inventoryErrors   prometheus.Counter
	targets           prometheus.Gauge
	checkpointSeconds prometheus.Histogram
	checkpointWrites  prometheus.Counter
	restoreSeconds    prometheus.Gauge
	malformed         prometheus.Counter
	dropped           prometheus.Counter
}

// NewMetrics registers the engine's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_results_consumed_total", Help: "Probe results folded into the state machines."}),
		unknownTargets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_results_unknown_target_total", Help: "Results for targets not in the inventory (dropped)."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_transitions_total", Help: "Transitions published, by object kind and new state."}, []string{"kind", "to"}),
		publishRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_publish_retries_total", Help: "Transition publishes retried after a transient error."}),
		inventoryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_model_rejections_total", Help: "Inventories the model rejected."}),
		targets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "healthmesh_aggregator_targets", Help: "Targets judged by the active aggregator."}),
		checkpointSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "healthmesh_aggregator_checkpoint_duration_seconds", Help: "Time to store a checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
		checkpointWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_checkpoint_writes_total", Help: "KV writes made by checkpoints."}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_results_malformed_total", Help: "Result messages that could not be decoded (dropped)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "healthmesh_aggregator_results_dropped_total", Help: "Results NATS dropped because the aggregator fell behind (results: core only)."}),
		restoreSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "healthmesh_aggregator_restore_duration_seconds", Help: "Time the last takeover spent restoring hm_state."}),
	}
	reg.MustRegister(m.results, m.unknownTargets, m.transitions, m.publishRetries, m.inventoryErrors,
		m.targets, m.checkpointSeconds, m.checkpointWrites, m.restoreSeconds, m.malformed, m.dropped)
	return m
}
