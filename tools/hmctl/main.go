// Command hmctl is the healthmesh operator CLI: the status tree of the active
// aggregator, live and replayed transitions (with the raw probe results
// behind them), configuration checks, prober membership, backend maintenance
// (pause/resume) and a msgpack-to-JSON filter for `nats sub --translate`.
//
// Usage:
//
//	hmctl status       [--json]
//	hmctl watch        [--json] [--all] [FILTER...]
//	hmctl history      [--since 2h] [--until T] [--object X] [--kind K] [--json] [--results] [--all]
//	hmctl check-config [--no-file-check] [--json] FILE
//	hmctl members      [--json]
//	hmctl pause        BACKEND --vs VS --reason TEXT [--who NAME]   (or VS/BACKEND)
//	hmctl resume       BACKEND --vs VS [--reason TEXT] [--who NAME]
//	hmctl decode       < msgpack > json
//
// Every subcommand takes the NATS connection flags (-nats-url …, with
// defaults from HM_NATS_URL …) and -subject-prefix; flags may come before
// or after the arguments. Exit status: 0 success, 1 failure (including an
// invalid configuration), 2 usage error.
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
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is hmctl with its arguments (without the program name); it returns the
// exit status. Interrupts end a running watch or history cleanly.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{ctx: ctx, stdin: os.Stdin, stdout: stdout, stderr: stderr, now: time.Now}
	return c.run(args)
}

// cli is one invocation: its context, streams and clock.
type cli struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
}

// command is one subcommand.
type command struct {
	name     string
	synopsis string
	help     string
	run      func(c *cli, args []string) error
}

func commands() []command {
	return []command{
		{"status", "[--json]", "Print the VA → VS → backend tree of the active aggregator.", (*cli).status},
		{"watch", "[--json] [--all] [FILTER...]",
			"Print transitions live, one line each. A FILTER is a kind (backend, vs, va), an address\n" +
				"(everything on that VIP or RIP), a VS or backend as VIP-PROTO-PORT, VS/BACKEND, or a raw\n" +
				"subject (hm.event.va.>). Kinds narrow the objects; several objects are alternatives.", (*cli).watch},
		{"history", "[--since 2h] [--until T] [--object X] [--kind K] [--json] [--results] [--all]",
			"Replay transitions from the events stream, oldest first, and stop at its end.", (*cli).history},
		{"check-config", "[--no-file-check] [--json] FILE",
			"Validate a configuration file and print every error and warning with its path and line.\n" +
				"Exit 0 when valid, 1 when invalid. Needs no NATS.", (*cli).checkConfig},
		{"members", "[--json]", "List the probers registered in the members bucket and the aggregator lease holder.", (*cli).members},
		{"pause", "BACKEND --vs VS --reason TEXT [--who NAME]   (or VS/BACKEND)",
			"Pause a backend for maintenance through the active aggregator: it is set down on the load\n" +
				"balancer whatever its health until resumed. The request is audited.", (*cli).pause},
		{"resume", "BACKEND --vs VS [--reason TEXT] [--who NAME]   (or VS/BACKEND)",
			"Resume a paused backend through the active aggregator.", (*cli).resume},
		{"decode", "< msgpack > json",
			"Decode one msgpack message on stdin to JSON on stdout, for nats sub --translate 'hmctl decode'.", (*cli).decode},
	}
}

func (c *cli) run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		c.usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			return c.exit(cmd, cmd.run(c, args[1:]))
		}
	}
	fmt.Fprintf(c.stderr, "hmctl: unknown command %q\n\n", args[0])
	c.usage()
	return 2
}

func (c *cli) usage() {
	fmt.Fprintln(c.stderr, "usage: hmctl COMMAND [flags] [args]")
	fmt.Fprintln(c.stderr, "\ncommands:")
	for _, cmd := range commands() {
		fmt.Fprintf(c.stderr, "  %-13s %s\n", cmd.name, cmd.synopsis)
	}
	fmt.Fprintln(c.stderr, "\nRun 'hmctl COMMAND -h' for the flags of a command.")
}

// exit turns a subcommand's error into the exit status.
func (c *cli) exit(cmd command, err error) int {
	var (
		ue usageError
		se silentError
	)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		if !ue.printed {
			fmt.Fprintf(c.stderr, "hmctl %s: %s\nusage: hmctl %s %s\n", cmd.name, ue.msg, cmd.name, cmd.synopsis)
		}
		return 2
	case errors.As(err, &se):
		return 1
	}
	fmt.Fprintf(c.stderr, "hmctl: %v\n", err)
	return 1
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct {
	msg     string
	printed bool // the flag package has reported it already
}

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{msg: fmt.Sprintf(format, a...)} }

// silentError is a failure already reported on the output (an invalid
// configuration): exit status 1 with nothing more to say.
type silentError struct{}

func (silentError) Error() string { return "failed" }

// parseArgs parses flags wherever they appear among the arguments (Go's flag
// package stops at the first argument) and returns the arguments. "--" ends
// the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{msg: err.Error(), printed: true}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// stringList is a repeatable flag; each value may also hold a
// comma-separated list.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
