// Command demo-backends serves many TCP, HTTP and UDP backends for healthmesh
// to probe, and a control API to fail, recover, slow down or change them
// (package demo does the work).
//
// Usage:
//
//	demo-backends [-listen tcp://127.0.0.11:8080,http://127.0.0.12:8080,udp://127.0.0.13:5353]
//	              [-config FILE] [-tcp-range 127.0.0.1:20000-29999] [-http-range R] [-udp-range R]
//	              [-tcp-banner TEXT] [-control 127.0.0.1:7000] [-log-format auto] [-log-level info]
//
// Once every listener is up it prints one JSON line on stdout:
// {"msg":"demo backends ready","backends":N,"control":"127.0.0.1:7000"}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/healthmesh/healthmesh/shared/logging"
	"github.com/healthmesh/healthmesh/tools/demo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "demo-backends:", err)
		}
		os.Exit(2)
	}
}

// list is a repeatable flag whose values may also be comma-separated.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo-backends", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var listen, tcpRanges, httpRanges, udpRanges list
	fs.Var(&listen, "listen", "backends as proto://ip:port[?name=N&banner=B&status=C&delay=D], comma-separated or repeated")
	fs.Var(&tcpRanges, "tcp-range", "tcp backends on IP[-IP]:PORT[-PORT] (IPv6 in brackets), comma-separated or repeated")
	fs.Var(&httpRanges, "http-range", "http backends on IP[-IP]:PORT[-PORT]")
	fs.Var(&udpRanges, "udp-range", "udp backends on IP[-IP]:PORT[-PORT]")
	configPath := fs.String("config", "", "YAML file: a list of {name, proto: tcp|http|udp, addr, banner, status, delay}")
	banner := fs.String("tcp-banner", "", `banner tcp backends without their own send on accept; Go escapes allowed, e.g. SSH-2.0-demo\r\n`)
	control := fs.String("control", "127.0.0.1:7000", `control API address ("" for none)`)
	logFormat := fs.String("log-format", logging.FormatAuto, "log format: auto, json or console")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	logger, err := logging.New(stderr, logging.Options{Format: *logFormat, Level: *logLevel, Service: "demo-backends"})
	if err != nil {
		return err
	}
	tcpBanner, err := strconv.Unquote(`"` + *banner + `"`)
	if err != nil {
		return fmt.Errorf("-tcp-banner %q: %w", *banner, err)
	}

	var specs []demo.Spec
	if *configPath != "" {
		if specs, err = demo.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	for _, s := range listen {
		sp, err := demo.ParseSpec(s)
		if err != nil {
			return fmt.Errorf("-listen: %w", err)
		}
		specs = append(specs, sp)
	}
	for _, r := range []struct {
		proto  demo.Proto
		ranges list
	}{{demo.TCP, tcpRanges}, {demo.HTTP, httpRanges}, {demo.UDP, udpRanges}} {
		for _, s := range r.ranges {
			rs, err := demo.ParseRange(r.proto, s)
			if err != nil {
				return fmt.Errorf("-%s-range: %w", r.proto, err)
			}
			specs = append(specs, rs...)
		}
	}
	if len(specs) == 0 {
		return errors.New("no backends: give -listen, -config or a -tcp-range, -http-range or -udp-range")
	}
	for i := range specs {
		if specs[i].Proto == demo.TCP && specs[i].Banner == "" {
			specs[i].Banner = tcpBanner
		}
	}
	return demo.Run(ctx, demo.Options{Backends: specs, Control: *control, Logger: logger, Ready: stdout})
}
