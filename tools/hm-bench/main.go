// Command hm-bench measures one hm-prober probing N loopback targets: it
// starts nats-server (JetStream), demo-backends and hm-prober as separate
// processes, writes the targets into KV hm_targets as the aggregator would,
// and reports probes scheduled and done, lateness, CPU seconds per 1,000
// probes and resident memory per target, for the prober alone and with
// nats-server. It stops by itself and stops every process it started.
//
// Usage:
//
//	hm-bench [-bin bin] [-scenarios tcp:10000,ping:10000,http:5000] [-interval 1s]
//	         [-runs 2] [-warmup 10s] [-duration 30s] [-json] [-profile DIR] [-keep DIR]
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
	fs := flag.NewFlagSet("hm-bench", flag.ContinueOnError)
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
	if err := fs.Parse(args); err != nil {
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
	if *netns && !bench.InNetns() {
		return bench.Reexec(ctx, args, stdout, stderr)
	}
	if bench.InNetns() {
		if err := bench.LoopbackUp(); err != nil {
			return err
		}
		c.Netns = true
	}

	results, runErr := bench.Run(ctx, c)
	if len(results) > 0 {
		var werr error
		if *asJSON {
			werr = bench.WriteJSON(stdout, results)
		} else {
			werr = bench.WriteTable(stdout, results)
		}
		if werr != nil {
			return errors.Join(runErr, werr)
		}
	}
	return runErr
}
