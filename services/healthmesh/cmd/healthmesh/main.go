// Command healthmesh is the all-in-one health-check control plane for DPVS:
// an embedded NATS server with JetStream plus the prober, aggregator and
// actioner roles, a drop-in replacement for the DPVS healthcheck binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/healthmesh/healthmesh/services/healthmesh"
	"github.com/healthmesh/healthmesh/shared/logging"
)

func main() {
	var (
		o         healthmesh.Options
		logFormat string
		logLevel  string
	)
	flag.StringVar(&o.DataDir, "data-dir", "/var/lib/healthmesh", "JetStream store directory")
	flag.StringVar(&o.NATSAddr, "nats-addr", "127.0.0.1:4222", "embedded NATS client listener (host:port), or off for in-process connections only")
	flag.StringVar(&o.HTTPAddr, "metric-server-addr", ":6601", "HTTP listen address for /healthz, /metrics, /status, /conf")
	flag.StringVar(&o.Prefix, "subject-prefix", "hm", "NATS subject prefix")
	flag.StringVar(&logFormat, "log-format", "auto", "log format: auto, json or console")
	flag.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	flag.Parse()

	log, err := logging.New(os.Stderr, logging.Options{Format: logFormat, Level: logLevel, Service: "healthmesh"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthmesh:", err)
		os.Exit(2)
	}
	o.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := healthmesh.Run(ctx, o); err != nil {
		log.Error().Err(err).Msg("healthmesh failed")
		os.Exit(1)
	}
}
