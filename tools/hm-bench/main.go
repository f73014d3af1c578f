// Command hm-bench measures healthmesh on loopback backends, every process
// separate, in a network namespace of its own. It stops by itself and stops
// every process it started.
//
// hm-bench prober (the default) measures one hm-prober probing N targets:
// it starts nats-server (JetStream), demo-backends and hm-prober, writes the
// targets into KV hm_targets as the aggregator would, and reports probes
// scheduled and done, lateness, CPU seconds per 1,000 probes and resident
// memory per target, for the prober alone and with nats-server.
//
// hm-bench pipeline measures the whole pipeline — the all-in-one healthmesh,
// or nats-server with hm-aggregator, hm-actioner and several hm-prober — fed
// by dpvs-agent-emu and demo-backends: probes/s achieved against scheduled,
// CPU per 1,000 probes and memory per backend for each role, detection
// latency of failed backends (close → dpvs-agent weight-0 call) against its
// floor, and, split, the reshard time when a prober is killed.
//
// Usage:
//
//	hm-bench [prober] [-bin bin] [-scenarios tcp:10000,ping:10000,http:5000] [-interval 1s]
//	         [-runs 2] [-warmup 10s] [-duration 30s] [-json] [-profile DIR] [-keep DIR]
//	hm-bench pipeline [-bin bin] [-scenarios tcp:10000@3s,tcp:60000@3s,tcp:10000@1s]
//	         [-roles all-in-one,split] [-probers 2] [-fail-pct 1] [-runs 1] [-json] [-keep DIR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/healthmesh/healthmesh/tools/hm-bench/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hm-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "pipeline" {
		return runPipeline(ctx, args, stdout, stderr)
	}
	flags := args
	if len(flags) > 0 && flags[0] == "prober" {
		flags = flags[1:]
	}
	fs := flag.NewFlagSet("hm-bench prober", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c bench.Config
	fs.StringVar(&c.Bin, "bin", "bin", "directory holding hm-prober, demo-backends and nats-server")
	scenarios := fs.String("scenarios", bench.DefaultScenarios(), "comma-separated METHOD:N[@INTERVAL]; methods tcp, ping, http")
	interval := fs.Duration("interval", time.Second, "probe interval of scenarios that name none (timeout: half of it)")
	fs.IntVar(&c.Runs, "runs", 2, "runs of each scenario, with fresh processes")
	fs.DurationVar(&c.Settle, "settle", 3*time.Second, "idle time before the 0-target memory baseline")
	fs.DurationVar(&c.Warmup, "warmup", 10*time.Second, "time between the prober owning every target and the measurement")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "measured window")
	fs.IntVar(&c.Concurrency, "concurrency", 0, "hm-prober -concurrency (0: its default)")
	fs.StringVar(&c.ProfileDir, "profile", "", "save CPU and heap profiles of the prober here (hm-prober -pprof)")
	fs.StringVar(&c.Dir, "keep", "", "keep run directories (logs, JetStream store) here instead of a removed temp dir")
	fs.Func("prober-env", "KEY=VALUE added to hm-prober's environment (repeatable), e.g. GOMAXPROCS=1", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("%q is not KEY=VALUE", v)
		}
		c.ProberEnv = append(c.ProberEnv, v)
		return nil
	})
	netns := fs.Bool("netns", true, "run everything in a private network namespace (needs root; see bench.Reexec)")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of a table")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.Scenarios, err = bench.ParseScenarios(*scenarios, *interval); err != nil {
		return fmt.Errorf("-scenarios: %w", err)
	}
	c.Progress = stderr
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if reexec, err := inNetns(ctx, *netns, args, stdout, stderr); reexec || err != nil {
		return err
	}
	c.Netns = bench.InNetns()

	results, runErr := bench.Run(ctx, c)
	return output(stdout, results, runErr, *asJSON, bench.WriteTable)
}

// output prints what was measured, even when a later run failed.
func output[R bench.Result | bench.PipelineResult](w io.Writer, rs []R, runErr error, asJSON bool, table func(io.Writer, []R) error) error {
	if len(rs) == 0 {
		return runErr
	}
	write := table
	if asJSON {
		write = bench.WriteJSON[R]
	}
	if err := write(w, rs); err != nil {
		return errors.Join(runErr, err)
	}
	return runErr
}

// inNetns runs this program again inside a network namespace of its own
// when asked to and not there yet (reexec true: the copy has done the work),
// and brings loopback up once inside.
func inNetns(ctx context.Context, want bool, args []string, stdout, stderr io.Writer) (reexec bool, err error) {
	if want && !bench.InNetns() {
		return true, bench.Reexec(ctx, args, stdout, stderr)
	}
	if bench.InNetns() {
		return false, bench.LoopbackUp()
	}
	return false, nil
}

func runPipeline(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hm-bench pipeline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c bench.PipelineConfig
	fs.StringVar(&c.Bin, "bin", "bin", "directory holding healthmesh, the role binaries, dpvs-agent-emu, demo-backends and nats-server")
	scenarios := fs.String("scenarios", "tcp:10000@3s,tcp:60000@3s,tcp:10000@1s", "comma-separated METHOD:N[@INTERVAL]; methods tcp, http")
	interval := fs.Duration("interval", 3*time.Second, "probe interval of scenarios that name none (timeout: half of it)")
	roles := fs.String("roles", bench.RolesAllInOne+","+bench.RolesSplit, "role layouts, each scenario runs in each: all-in-one, split")
	fs.IntVar(&c.Runs, "runs", 1, "runs of each scenario and layout, with fresh processes")
	fs.StringVar(&c.Results, "results", "jetstream", "the configuration's bus.results: jetstream (HM_RESULTS) or core (core NATS, no stream)")
	fs.IntVar(&c.Probers, "probers", 2, "split: hm-prober processes (one is killed to measure the reshard)")
	fs.Float64Var(&c.FailPct, "fail-pct", 1, "percent of the backends failed to measure detection")
	fs.IntVar(&c.DownRetry, "down-retry", 1, "the configuration's down-retry (failures in a row to drain: down-retry + 1)")
	fs.DurationVar(&c.ListInterval, "list-interval", 5*time.Second, "-dpvs-service-list-interval of the aggregator")
	fs.DurationVar(&c.Settle, "settle", 3*time.Second, "idle time before the 0-backend memory baseline")
	fs.DurationVar(&c.Warmup, "warmup", 10*time.Second, "time between every backend applied up and the measurement")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "measured window")
	fs.StringVar(&c.ProfileDir, "profile", "", "save CPU and heap profiles of the probing processes here (-pprof)")
	fs.StringVar(&c.Dir, "keep", "", "keep run directories (logs, config, JetStream store) here instead of a removed temp dir")
	hmArgs := fs.String("hm-args", "", "extra space-separated flags of the all-in-one healthmesh (e.g. -gogc auto)")
	netns := fs.Bool("netns", true, "run everything in a private network namespace (needs root)")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of tables")
	timeout := fs.Duration("timeout", time.Hour, "give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.HealthmeshArgs = strings.Fields(*hmArgs)
	var err error
	if c.Scenarios, err = bench.ParsePipelineScenarios(*scenarios, *interval); err != nil {
		return fmt.Errorf("-scenarios: %w", err)
	}
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.Roles = append(c.Roles, r)
		}
	}
	c.Progress = stderr
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if reexec, err := inNetns(ctx, *netns, args, stdout, stderr); reexec || err != nil {
		return err
	}
	c.Netns = bench.InNetns()

	results, runErr := bench.RunPipeline(ctx, c)
	return output(stdout, results, runErr, *asJSON, bench.WritePipelineTable)
}
