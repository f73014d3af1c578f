// Command dpvs-agent-emu serves the dpvs-agent emulator of package
// agenttest: the dpvs-agent REST subset healthmesh uses (/v2/vs,
// /v2/vs/{id}/rs/health, /v2/device/{name}/addr, ...) plus the emulator's
// control API under /_emu/ (state, calls, faults, seed, reset).
//
// Usage:
//
//	dpvs-agent-emu [-listen 127.0.0.1:8082] [-seed FILE] [-log FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "dpvs-agent-emu:", err)
		}
		os.Exit(2)
	}
}

// run serves until ctx is done; ready, when set, is told the bound address.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("dpvs-agent-emu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8082", "address to serve the emulated dpvs-agent on")
	seedPath := fs.String("seed", "", "YAML seed file: VIPs with services and backends, device addresses")
	logPath := fs.String("log", "", "append every API call to this file as JSON lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	logger := zerolog.New(stderr).With().Timestamp().Str("service", "dpvs-agent-emu").Logger()

	var opts []agenttest.Option
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("call log: %w", err)
		}
		defer f.Close()
		opts = append(opts, agenttest.WithLog(f))
	}
	agent := agenttest.New(opts...)
	if *seedPath != "" {
		seed, err := agenttest.LoadSeedFile(*seedPath)
		if err != nil {
			return err
		}
		if err := agent.Seed(seed); err != nil {
			return fmt.Errorf("seed %s: %w", *seedPath, err)
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: agent, ReadHeaderTimeout: 10 * time.Second}
	st := agent.State()
	logger.Info().Str("addr", ln.Addr().String()).Int("services", len(st.Services)).
		Int("devices", len(st.Devices)).Msg("serving")
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1) // written once by the serving goroutine
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	<-errc
	if lerr := agent.LogErr(); lerr != nil {
		logger.Error().Err(lerr).Msg("call log")
	}
	logger.Info().Msg("stopped")
	return err
}
