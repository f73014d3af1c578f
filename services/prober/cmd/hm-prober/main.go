// Command hm-prober runs a healthmesh probe worker. Start as many as you
// like: they share the targets by rendezvous hashing (or all probe every
// target from each node, for full mesh) and publish every result to NATS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/healthmesh/healthmesh/services/prober"
	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
	"github.com/healthmesh/healthmesh/shared/logging"
)

func main() {
	var (
		o                   prober.Options
		labels, pingMode    string
		logFormat, logLevel string
		procsFlag           string
	)
	o.Bus.RegisterFlags(flag.CommandLine)
	flag.StringVar(&o.ID, "id", "", "prober id, unique (default node-pid)")
	flag.StringVar(&o.Node, "node", "", "node label (default host name); full mesh probes once per node")
	flag.StringVar(&o.Zone, "zone", "", "zone label")
	flag.StringVar(&labels, "labels", "", "extra labels, k=v,k=v")
	flag.StringVar(&o.Prefix, "subject-prefix", "hm", "NATS subject prefix")
	flag.IntVar(&o.Concurrency, "concurrency", 1024, "probes in flight at most")
	flag.StringVar(&procsFlag, "procs", "auto", "GOMAXPROCS: auto (one while the load is light, every CPU while it is busy; a GOMAXPROCS environment variable wins) or a number")
	flag.StringVar(&pingMode, "ping-mode", "auto", "ICMP sockets: auto, datagram (unprivileged) or raw")
	flag.StringVar(&o.HTTPAddr, "metric-server-addr", ":6602", "HTTP listen address for /metrics and /healthz (empty: none)")
	flag.BoolVar(&o.Pprof, "pprof", false, "also serve /debug/pprof/ on the metric server address")
	flag.StringVar(&logFormat, "log-format", "auto", "log format: auto, json or console")
	flag.StringVar(&logLevel, "log-level", "info", "log level")
	flag.Parse()
	o.Bus.ApplyEnvSecrets()

	log, err := logging.New(os.Stderr, logging.Options{Format: logFormat, Level: logLevel, Service: "hm-prober"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hm-prober:", err)
		os.Exit(2)
	}
	if o.Labels, err = parseLabels(labels); err != nil {
		fmt.Fprintln(os.Stderr, "hm-prober:", err)
		os.Exit(2)
	}
	switch n, err := strconv.Atoi(procsFlag); {
	case procsFlag == "auto":
		o.AdaptProcs = os.Getenv("GOMAXPROCS") == ""
	case err == nil && n >= 1:
		runtime.GOMAXPROCS(n)
	default:
		fmt.Fprintf(os.Stderr, "hm-prober: -procs %q: want auto or a number >= 1\n", procsFlag)
		os.Exit(2)
	}
	switch pingMode {
	case "auto":
		o.PingMode = probe.PingAuto
	case "datagram":
		o.PingMode = probe.PingDatagram
	case "raw":
		o.PingMode = probe.PingRaw
	default:
		fmt.Fprintf(os.Stderr, "hm-prober: -ping-mode %q: want auto, datagram or raw\n", pingMode)
		os.Exit(2)
	}
	o.Log, o.Bus.Log, o.Bus.Name = log, log, "hm-prober"
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := prober.Run(ctx, o); err != nil {
		log.Error().Err(err).Msg("hm-prober failed")
		os.Exit(1)
	}
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-labels: %q is not k=v", kv)
		}
		out[k] = v
	}
	return out, nil
}
