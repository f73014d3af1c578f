// Command hm-actioner makes one DPVS node match healthmesh's health
// decisions: it consumes transitions from NATS and applies them through
// dpvs-agent, netlink or scripts. See package actioner.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/healthmesh/healthmesh/services/actioner"
	"github.com/healthmesh/healthmesh/shared/logging"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "hm-actioner:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("hm-actioner", flag.ContinueOnError)
	var o actioner.Options
	o.ConnOptions.RegisterFlags(fs)
	host, _ := os.Hostname()
	fs.StringVar(&o.Node, "node", host, "LB node this actioner serves (its durable consumer name)")
	fs.StringVar(&o.AgentAddr, "dpvs-agent-addr", actioner.DefaultAgentAddr, "dpvs-agent address (host:port or URL; empty: none)")
	fs.StringVar(&o.HTTPAddr, "metric-server-addr", actioner.DefaultHTTPAddr, "address serving /metrics and /healthz (empty: off)")
	fs.StringVar(&o.Prefix, "subject-prefix", subject.DefaultPrefix, "NATS subject prefix")
	logFormat := fs.String("log-format", logging.FormatAuto, "log format: auto, json or console")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	o.ConnOptions.ApplyEnvSecrets()
	log, err := logging.New(os.Stderr, logging.Options{Format: *logFormat, Level: *logLevel, Service: "actioner"}) // Run adds the node
	if err != nil {
		return err
	}
	o.Log = log
	o.ConnOptions.Log = log
	o.ConnOptions.Name = "hm-actioner/" + o.Node

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return actioner.Run(ctx, o)
}
