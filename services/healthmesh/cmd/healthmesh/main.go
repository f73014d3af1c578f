// Command healthmesh is the all-in-one health-check control plane for DPVS:
// an embedded NATS server with JetStream plus the prober, aggregator and
// actioner roles. It takes the DPVS healthcheck flags and config file, so it
// replaces the healthcheck binary with no other change.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/services/healthmesh"
	"github.com/healthmesh/healthmesh/shared/logging"
)

func main() {
	var (
		o                   healthmesh.Options
		logFormat, logLevel string
		gogc                string
	)
	host, _ := os.Hostname()
	// The DPVS healthcheck flags, with their meaning and defaults.
	flag.StringVar(&o.ConfigFile, "config-file", "/etc/healthcheck.conf", "configuration file (DPVS healthcheck.conf layout)")
	flag.DurationVar(&o.ConfigReloadInterval, "config-reload-interval", 53*time.Second, "configuration reload interval (also on SIGHUP)")
	flag.StringVar(&o.AgentAddr, "dpvs-agent-addr", ":8082", "dpvs-agent address")
	flag.DurationVar(&o.ServiceListInterval, "dpvs-service-list-interval", 15*time.Second, "dpvs-agent service list interval")
	flag.StringVar(&o.HTTPAddr, "metric-server-addr", ":6601", "HTTP listen address (/metrics /status /conf /conf/check /healthz)")
	flag.StringVar(&o.MetricsURI, "metric-server-uri", "/metrics", "Prometheus metrics path (the DPVS text tree is at /status)")
	flag.StringVar(&o.ConfURI, "conf-uri", "/conf", "effective configuration path")
	flag.StringVar(&o.ConfCheckURI, "conf-check-uri", "/conf/check", "configuration check path")
	// Accepted so existing command lines keep working; healthmesh has no such
	// channels (state flows over NATS).
	for _, name := range []string{"checker-notify-channel-size", "vs-notify-channel-size", "metric-notify-channel-size"} {
		flag.Int(name, 0, "accepted for DPVS compatibility and ignored")
	}
	flag.Duration("metric-delay", 0, "accepted for DPVS compatibility and ignored")
	flag.Bool("debug", false, "accepted for DPVS compatibility and ignored")
	// healthmesh's own.
	flag.StringVar(&o.DataDir, "data-dir", "/var/lib/healthmesh", "JetStream store directory")
	flag.StringVar(&o.NATSAddr, "nats-addr", "127.0.0.1:4222", "embedded NATS client listener (host:port), or off for in-process connections only")
	flag.StringVar(&o.Node, "node", host, "this load balancer node's name")
	flag.BoolVar(&o.Pprof, "pprof", false, "also serve /debug/pprof/ on the metric server address")
	flag.StringVar(&gogc, "gogc", "auto", "auto: collect garbage at GOGC=50 while the process uses under 30% of its CPUs, 100 while busy; go: Go's default, or the GOGC environment variable (which also wins over auto when this flag is not given)")
	flag.StringVar(&logFormat, "log-format", "auto", "log format: auto, json or console")
	flag.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	flag.Parse()

	log, err := logging.New(os.Stderr, logging.Options{Format: logFormat, Level: logLevel, Service: "healthmesh", Node: o.Node})
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthmesh:", err)
		os.Exit(2)
	}
	gogcGiven := false
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "checker-notify-channel-size", "vs-notify-channel-size", "metric-notify-channel-size", "metric-delay", "debug":
			log.Info().Str("flag", f.Name).Msg("DPVS healthcheck flag accepted and ignored: healthmesh has no such setting")
		case "gogc":
			gogcGiven = true
		}
	})
	switch gogc {
	case "auto":
		if env := os.Getenv("GOGC"); env != "" && !gogcGiven {
			log.Info().Str("GOGC", env).Msg("GOGC set in the environment: the collector keeps it (-gogc auto adapts it anyway)")
			break
		}
		o.AdaptGC = true
	case "go", "":
	default:
		log.Error().Str("flag", "gogc").Str("value", gogc).Msg("-gogc: want auto or go (set GOGC in the environment for a fixed percentage)")
		os.Exit(2)
	}
	o.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload, stopReload := aggregator.ReloadOnSIGHUP()
	defer stopReload()
	o.Reload = reload
	if err := healthmesh.Run(ctx, o); err != nil {
		log.Error().Err(err).Msg("healthmesh failed")
		os.Exit(1)
	}
}
