package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Objectives of the prober (issue "Prober", Performance section), checked
// on the prober process alone.
const (
	GoalOnTimePct    = 99.5 // % of probes starting less than OnTime late
	GoalP99ms        = 50   // p99 lateness, ms
	GoalCPUPer1000   = 0.03 // CPU seconds per 1,000 probes
	GoalKiBPerTarget = 4    // resident KiB per target
)

// Verdict lists the objectives r misses ("" when it meets them all).
func (r Result) Verdict() string {
	var miss []string
	if r.OnTimePct < GoalOnTimePct {
		miss = append(miss, fmt.Sprintf("on-time %.2f%% < %.1f%%", r.OnTimePct, GoalOnTimePct))
	}
	if !(r.P99ms < GoalP99ms) {
		miss = append(miss, fmt.Sprintf("p99 %.1fms >= %dms", r.P99ms, GoalP99ms))
	}
	if r.Prober.CPUPer1000 > GoalCPUPer1000 {
		miss = append(miss, fmt.Sprintf("cpu %.4fs/1k > %.2f", r.Prober.CPUPer1000, GoalCPUPer1000))
	}
	if r.Prober.PerTargetKiB > GoalKiBPerTarget {
		miss = append(miss, fmt.Sprintf("rss %.2fKiB/target > %d", r.Prober.PerTargetKiB, GoalKiBPerTarget))
	}
	if r.Done == 0 {
		miss = append(miss, "no probe done")
	}
	return strings.Join(miss, "; ")
}

// WriteJSON writes results (of either benchmark) as one indented JSON array.
func WriteJSON[R Result | PipelineResult](w io.Writer, rs []R) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rs); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// WriteTable writes one line per run: the schedule, the prober alone, and
// the prober with nats-server.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trun\tload1\tsteal%\texpected\tstarted\tdone\tacked\tup%\ton-time%\tp50ms\tp99ms\t"+
		"cpu-s/1k\t(sys)\t+nats\tKiB/tgt\t+nats\trss MiB\tfds\tbackends cpu-s/1k\tverdict\t")
	for _, r := range rs {
		verdict := r.Verdict()
		if verdict == "" {
			verdict = "ok"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.1f\t%.0f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.4f\t%.4f\t%.4f\t%.2f\t%.2f\t%.1f\t%d\t%.4f\t%s\t\n",
			r.Scenario, r.Run, r.LoadBefore[0], r.StealPct, r.Expected, r.Started, r.Done, r.Acked, r.UpPct, r.OnTimePct,
			r.P50ms, r.P99ms, r.Prober.CPUPer1000, r.Prober.SysPer1000, r.Prober.CPUPer1000+r.NATS.CPUPer1000,
			r.Prober.PerTargetKiB, r.Prober.PerTargetKiB+r.NATS.PerTargetKiB, mib(r.Prober.RSSEnd),
			r.Prober.MaxFDs, r.Backends.CPUPer1000, verdict)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	_, err := fmt.Fprintf(w, "objectives (prober alone): on-time (<%v late) >= %.1f%%, p99 lateness < %dms, <= %.2f CPU-s per 1,000 probes, <= %d KiB per target\n",
		OnTime, GoalOnTimePct, GoalP99ms, GoalCPUPer1000, GoalKiBPerTarget)
	return err
}

func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }
