package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The prober's series the benchmark reads.
const (
	metricProbes   = "healthmesh_prober_probes_total"
	metricLateness = "healthmesh_prober_schedule_lateness_seconds"
	metricOverruns = "healthmesh_prober_schedule_overruns_total"
	metricOwned    = "healthmesh_prober_owned_targets"
	metricAcked    = "healthmesh_prober_results_acked_total"
	metricDropped  = "healthmesh_prober_results_dropped_total"
	metricFailed   = "healthmesh_prober_results_failed_total"

	metricTransitions = "healthmesh_aggregator_transitions_total"
	metricActEvents   = "healthmesh_actioner_events_consumed_total"
)

// Scrape is one read of a /metrics page.
type Scrape map[string]*dto.MetricFamily

// scrape fetches and parses url (Prometheus text format).
func scrape(ctx context.Context, client *http.Client, url string) (Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: scrape %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: scrape %s: status %d", url, resp.StatusCode)
	}
	return parseScrape(resp.Body)
}

func parseScrape(r io.Reader) (Scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("bench: metrics: %w", err)
	}
	return Scrape(fams), nil
}

// Sum adds the values of every series of a counter or gauge (0 when absent).
func (s Scrape) Sum(name string) float64 { return s.SumWhere(name, nil) }

// SumWhere adds the values of the series of a counter or gauge whose labels
// include every pair of want.
func (s Scrape) SumWhere(name string, want map[string]string) float64 {
	var v float64
	for _, m := range s[name].GetMetric() {
		n := 0
		for _, lp := range m.GetLabel() {
			if w, ok := want[lp.GetName()]; ok && w == lp.GetValue() {
				n++
			}
		}
		if n == len(want) {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return v
}

// ByLabel sums a counter's series by the value of one label.
func (s Scrape) ByLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range s[name].GetMetric() {
		key := ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				key = lp.GetValue()
			}
		}
		out[key] += m.GetCounter().GetValue()
	}
	return out
}

// Histogram is a cumulative Prometheus histogram (all series added up).
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets []Bucket // by upper bound, without +Inf (Count is +Inf)
}

// Bucket is one cumulative bucket.
type Bucket struct {
	Le    float64
	Count uint64
}

// Histogram returns the named histogram; ok is false when it is absent.
func (s Scrape) Histogram(name string) (Histogram, bool) {
	fam := s[name]
	if fam == nil || fam.GetType() != dto.MetricType_HISTOGRAM {
		return Histogram{}, false
	}
	var h Histogram
	byLe := map[float64]uint64{}
	for _, m := range fam.GetMetric() {
		mh := m.GetHistogram()
		h.Count += mh.GetSampleCount()
		h.Sum += mh.GetSampleSum()
		for _, b := range mh.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), 1) {
				byLe[b.GetUpperBound()] += b.GetCumulativeCount()
			}
		}
	}
	for le, n := range byLe {
		h.Buckets = append(h.Buckets, Bucket{Le: le, Count: n})
	}
	sort.Slice(h.Buckets, func(i, j int) bool { return h.Buckets[i].Le < h.Buckets[j].Le })
	return h, true
}

// Sub returns h minus an earlier reading of the same histogram.
func (h Histogram) Sub(earlier Histogram) (Histogram, error) {
	if len(h.Buckets) != len(earlier.Buckets) || h.Count < earlier.Count {
		return Histogram{}, fmt.Errorf("bench: histogram changed shape or went backwards (%d buckets, count %d; earlier %d buckets, count %d)",
			len(h.Buckets), h.Count, len(earlier.Buckets), earlier.Count)
	}
	d := Histogram{Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum, Buckets: make([]Bucket, len(h.Buckets))}
	for i, b := range h.Buckets {
		e := earlier.Buckets[i]
		if b.Le != e.Le || b.Count < e.Count {
			return Histogram{}, fmt.Errorf("bench: histogram bucket %d changed (le %g → %g, count %d → %d)", i, e.Le, b.Le, e.Count, b.Count)
		}
		d.Buckets[i] = Bucket{Le: b.Le, Count: b.Count - e.Count}
	}
	return d, nil
}

// AtMost returns how many observations were <= le. le must be a bucket
// bound (ok false otherwise): between bounds the histogram cannot say.
func (h Histogram) AtMost(le float64) (uint64, bool) {
	for _, b := range h.Buckets {
		if b.Le == le {
			return b.Count, true
		}
	}
	return 0, false
}

// Quantile estimates the q-quantile the way PromQL's histogram_quantile
// does: linear interpolation inside the bucket holding the rank, from 0 for
// the first bucket; a rank in the +Inf bucket yields the highest finite
// bound. NaN when the histogram is empty.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 || len(h.Buckets) == 0 || q < 0 || q > 1 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	lower, below := 0.0, uint64(0)
	for _, b := range h.Buckets {
		if float64(b.Count) >= rank {
			in := b.Count - below
			if in == 0 {
				return b.Le
			}
			return lower + (b.Le-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = b.Le, b.Count
	}
	return h.Buckets[len(h.Buckets)-1].Le
}
