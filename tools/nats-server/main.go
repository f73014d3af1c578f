// Command nats-server is the stock NATS server (github.com/nats-io/nats-server/v2,
// the version this repository already depends on), built here so that the
// compose stack, the deploy/nats configurations and the end-to-end tests run
// the same server without downloading a release or pulling an image. Its
// flags and configuration files are upstream's: `nats-server -c FILE`,
// `nats-server -js`, `nats-server --help`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	const exe = "nats-server"
	fs := flag.NewFlagSet(exe, flag.ExitOnError)
	fs.Usage = func() {
		fmt.Println("usage: nats-server [-c FILE] [options]; see https://docs.nats.io/running-a-nats-service/introduction/flags")
		os.Exit(0)
	}
	opts, err := server.ConfigureOptions(fs, os.Args[1:], server.PrintServerAndExit, fs.Usage, server.PrintTLSHelpAndDie)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	if opts.CheckConfig {
		fmt.Fprintf(os.Stderr, "%s: configuration file %s is valid (%s)\n", exe, opts.ConfigFile, opts.ConfigDigest())
		os.Exit(0)
	}
	// Keep passwords given on the command line out of process listings.
	server.RedactArgs(os.Args)
	s, err := server.NewServer(opts)
	if err != nil {
		server.PrintAndDie(fmt.Sprintf("%s: %s", exe, err))
	}
	s.ConfigureLogger()
	if err := server.Run(s); err != nil {
		server.PrintAndDie(err.Error())
	}
	s.WaitForShutdown()
}
