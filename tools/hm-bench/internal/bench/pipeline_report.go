package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdict lists the objectives r misses ("" when it meets them all). The
// CPU and memory objectives are those of 10,000 TCP backends at 1 s on the
// all-in-one; detection objectives hold for every run.
func (r PipelineResult) Verdict() string {
	var miss []string
	iv, _ := time.ParseDuration(r.Interval)
	if r.Roles == RolesAllInOne && r.Method == MethodTCP && iv <= time.Second {
		if r.Total.CPUPer1000 > GoalPipelineCPUPer1000 {
			miss = append(miss, fmt.Sprintf("cpu %.4fs/1k > %.3f", r.Total.CPUPer1000, GoalPipelineCPUPer1000))
		}
		if r.Total.PerTargetKiB > GoalPipelineKiB {
			miss = append(miss, fmt.Sprintf("rss %.2fKiB/backend > %.1f", r.Total.PerTargetKiB, GoalPipelineKiB))
		}
	}
	d := r.Detection
	if d.Applied < d.Failed {
		miss = append(miss, fmt.Sprintf("%d of %d failures never applied", d.Failed-d.Applied, d.Failed))
	}
	if d.Over.P99 > GoalDetectP99OverMs {
		miss = append(miss, fmt.Sprintf("detection p99 %.0fms over the floor > %d", d.Over.P99, GoalDetectP99OverMs))
	}
	if d.Over.Max > GoalDetectMaxOverMs {
		miss = append(miss, fmt.Sprintf("a failure applied %.0fms after its floor > %d", d.Over.Max, GoalDetectMaxOverMs))
	}
	if d.NoFloor > 0 {
		miss = append(miss, fmt.Sprintf("%d failures without a floor (results not seen)", d.NoFloor))
	}
	if d.Spurious > 0 {
		miss = append(miss, fmt.Sprintf("%d healthy backends drained", d.Spurious))
	}
	if r.Reshard != nil && r.Reshard.Transitions > 0 {
		miss = append(miss, fmt.Sprintf("%d backend transitions from a reshard", r.Reshard.Transitions))
	}
	if r.Achieved < 0.99*r.Scheduled {
		miss = append(miss, fmt.Sprintf("%.0f probes/s of %.0f scheduled", r.Achieved, r.Scheduled))
	}
	return strings.Join(miss, "; ")
}

// WritePipelineTable writes one line per run, then the roles of each run.
func WritePipelineTable(w io.Writer, rs []PipelineResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\troles\trun\tload1\tsteal%\tstartup s\tsched/s\tdone/s\ton-time%\tp99 late ms\t"+
		"cpu-s/1k\tKiB/backend\trss MiB\tfailed\tapplied\tdetect p50/p99/max ms\tfloor p50/p99/max ms\tover p99/max ms\treshard s\tverdict\t")
	for _, r := range rs {
		verdict := r.Verdict()
		if verdict == "" {
			verdict = "ok"
		}
		reshard := "-"
		if r.Reshard != nil {
			reshard = fmt.Sprintf("%.2f", r.Reshard.CoveredS)
		}
		d := r.Detection
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.1f\t%.1f\t%.0f\t%.0f\t%.2f\t%.1f\t%.4f\t%.2f\t%.0f\t%d\t%d\t%s\t%s\t%.0f/%.0f\t%s\t%s\t\n",
			r.Scenario, r.layout(), r.Run, r.LoadBefore[0], r.StealPct, r.StartupS, r.Scheduled, r.Achieved, r.OnTimePct, r.P99LateMs,
			r.Total.CPUPer1000, r.Total.PerTargetKiB, mib(r.Total.RSSEnd), d.Failed, d.Applied,
			triple(d.Latency), triple(d.Floor), d.Over.P99, d.Over.Max, reshard, verdict)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\troles\trun\trole\tcpu-s/1k\t(sys)\tKiB/backend\trss MiB\tpeak MiB\tfds\t")
	for _, r := range rs {
		roles := make([]string, 0, len(r.PerRole))
		for k := range r.PerRole {
			roles = append(roles, k)
		}
		slices.Sort(roles)
		line := func(name string, p ProcReport, perTarget bool) {
			kib := "-"
			if perTarget {
				kib = fmt.Sprintf("%.2f", p.PerTargetKiB)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.4f\t%.4f\t%s\t%.1f\t%.1f\t%d\t\n",
				r.Scenario, r.layout(), r.Run, name, p.CPUPer1000, p.SysPer1000, kib, mib(p.RSSEnd), mib(p.HWM), p.MaxFDs)
		}
		for _, role := range roles {
			line(role, r.PerRole[role], true)
		}
		line("= pipeline", r.Total, true)
		line("(dpvs-agent-emu)", r.Agent, false)
		line("(backends)", r.Backends, false)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	_, err := fmt.Fprintf(w, "objectives: all-in-one, 10k TCP at 1 s: <= %.3f CPU-s per 1,000 probes and <= %.1f KiB per backend (every role and NATS);\n"+
		"every run: every failure applied, detection p99 <= floor + %dms, each within floor + %dms; a reshard changes no verdict.\n"+
		"floor: per failed backend, the end of the probe completing down-retry+1 failures; detect: from closing the backend to the dpvs-agent weight-0 call.\n",
		GoalPipelineCPUPer1000, GoalPipelineKiB, GoalDetectP99OverMs, GoalDetectMaxOverMs)
	return err
}

func triple(d Dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/%.0f/%.0f", d.P50, d.P99, d.Max)
}

// layout names the role layout and, when not the default, the results mode.
func (r PipelineResult) layout() string {
	if r.Results == "core" {
		return r.Roles + "/core"
	}
	return r.Roles
}
