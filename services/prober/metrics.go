package prober

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
	"github.com/healthmesh/healthmesh/services/prober/internal/publish"
)

// metrics are the prober's series. Labels are bounded (method, reason):
// there is no series per target.
type metrics struct {
	probes        *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	lateness      prometheus.Histogram
	overruns      prometheus.Counter
	queue         prometheus.Gauge
	owned         prometheus.Gauge
	badTargets    prometheus.Counter
	publishErrors prometheus.Counter
}

// latenessBuckets have edges at 10 ms (the scheduler's on-time limit) and
// 50 ms (the on-time objective of the benchmarks), so the share of probes on
// time is read from the histogram exactly rather than interpolated.
func latenessBuckets() []float64 {
	return []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5}
}

func newMetrics(reg prometheus.Registerer, pub *publish.Publisher) *metrics {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "healthmesh_prober_probes_total",
			Help: "Probes run, by method and reason code."}, []string{"method", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "healthmesh_prober_probe_duration_seconds",
			Help: "Probe round-trip time.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"method"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "healthmesh_prober_schedule_lateness_seconds",
			Help: "How late probes start after they are due.", Buckets: latenessBuckets()}),
		overruns: prometheus.NewCounter(prometheus.CounterOpts{Name: "healthmesh_prober_schedule_overruns_total",
			Help: "Ticks skipped because the previous probe of the target had not finished."}),
		queue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "healthmesh_prober_schedule_queue_depth",
			Help: "Due probes waiting for a free slot."}),
		owned: prometheus.NewGauge(prometheus.GaugeOpts{Name: "healthmesh_prober_owned_targets",
			Help: "Targets this prober owns and probes."}),
		badTargets: prometheus.NewCounter(prometheus.CounterOpts{Name: "healthmesh_prober_bad_targets_total",
			Help: "Targets that could not be turned into a probe."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "healthmesh_prober_publish_failures_total",
			Help: "Results not handed to JetStream (back-pressure or errors)."}),
	}
	pubDropped := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "healthmesh_prober_results_dropped_total",
		Help: "Results dropped because the JetStream in-flight window was full (back-pressure)."},
		func() float64 { return float64(pub.Stats.Dropped.Load()) })
	pubFailed := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "healthmesh_prober_results_failed_total",
		Help: "Results whose publish or ack failed."},
		func() float64 { return float64(pub.Stats.Failed.Load()) })
	pubAcked := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "healthmesh_prober_results_acked_total",
		Help: "Results stored in HM_RESULTS."},
		func() float64 { return float64(pub.Stats.Acked.Load()) })
	pubCore := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "healthmesh_prober_results_core",
		Help: "1 when results go out on core NATS (no HM_RESULTS stream: bus.results core), 0 with JetStream."},
		func() float64 {
			if pub.Core() {
				return 1
			}
			return 0
		})
	reg.MustRegister(m.probes, m.latency, m.lateness, m.overruns, m.queue, m.owned, m.badTargets, m.publishErrors,
		pubDropped, pubFailed, pubAcked, pubCore)
	return m
}

func (m *metrics) observe(method string, r probe.Result) {
	m.probes.WithLabelValues(method, string(r.Reason)).Inc()
	m.latency.WithLabelValues(method).Observe(r.RTT.Seconds())
}

// Scheduler hooks (schedule.Metrics).

func (m *metrics) Lateness(d time.Duration) { m.lateness.Observe(d.Seconds()) }
func (m *metrics) Overrun(string, int)      { m.overruns.Inc() }
func (m *metrics) QueueDepth(n int)         { m.queue.Set(float64(n)) }
