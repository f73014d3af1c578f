// Command hm-aggregator runs the healthmesh aggregator role: inventory,
// health state machines, transitions into JetStream, and the DPVS-compatible
// HTTP endpoints. Run two for high availability: one is active, one stands by.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/shared/logging"
)

func main() {
	var (
		o                   aggregator.Options
		logFormat, logLevel string
	)
	o.Bus.RegisterFlags(flag.CommandLine)
	flag.StringVar(&o.ID, "id", "", "instance id (default host-pid)")
	flag.StringVar(&o.ConfigFile, "config-file", "/etc/healthcheck.conf", "configuration file (DPVS healthcheck.conf compatible)")
	flag.DurationVar(&o.ConfigReloadInterval, "config-reload-interval", 53e9, "configuration reload interval")
	flag.StringVar(&o.AgentAddr, "dpvs-agent-addr", "", "dpvs-agent address (default: the config's dpvs-agent.addr, :8082)")
	flag.DurationVar(&o.ServiceListInterval, "dpvs-service-list-interval", 0, "dpvs-agent service list interval (default: the config's, 15s)")
	flag.StringVar(&o.HTTPAddr, "metric-server-addr", ":6601", "HTTP listen address")
	flag.StringVar(&o.MetricsURI, "metric-server-uri", "/metrics", "Prometheus metrics path")
	flag.StringVar(&o.ConfURI, "conf-uri", "/conf", "effective configuration path")
	flag.StringVar(&o.ConfCheckURI, "conf-check-uri", "/conf/check", "configuration check path")
	flag.StringVar(&logFormat, "log-format", "auto", "log format: auto, json or console")
	flag.StringVar(&logLevel, "log-level", "info", "log level")
	flag.Parse()
	o.Bus.ApplyEnvSecrets()

	log, err := logging.New(os.Stderr, logging.Options{Format: logFormat, Level: logLevel, Service: "hm-aggregator"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hm-aggregator:", err)
		os.Exit(2)
	}
	o.Log, o.Bus.Log, o.Bus.Name = log, log, "hm-aggregator"
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload, stopReload := aggregator.ReloadOnSIGHUP()
	defer stopReload()
	o.Reload = reload
	if err := aggregator.Run(ctx, o); err != nil {
		log.Error().Err(err).Msg("hm-aggregator failed")
		os.Exit(1)
	}
}
