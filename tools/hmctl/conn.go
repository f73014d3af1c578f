package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// envPrefix names the environment variable holding the default subject
// prefix, beside the HM_NATS_* ones of package bus.
const envPrefix = "HM_SUBJECT_PREFIX"

// globals are the flags every subcommand takes.
type globals struct {
	bus            bus.ConnOptions
	prefix         string
	connectTimeout time.Duration
	timeout        time.Duration
}

// newFlags returns a subcommand's flag set with the shared flags on it.
func (c *cli) newFlags(name string) (*flag.FlagSet, *globals) {
	fs := flag.NewFlagSet("hmctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	g := &globals{}
	g.bus.RegisterFlags(fs)
	prefix := os.Getenv(envPrefix)
	if prefix == "" {
		prefix = subject.DefaultPrefix
	}
	fs.StringVar(&g.prefix, "subject-prefix", prefix, "subject, stream and bucket prefix of the installation (env "+envPrefix+")")
	fs.DurationVar(&g.connectTimeout, "connect-timeout", 5*time.Second, "give up when NATS cannot be reached within this time")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "time allowed for each request to NATS or the aggregator")
	for _, cmd := range commands() {
		if cmd.name == name {
			fs.Usage = func() {
				fmt.Fprintf(c.stderr, "usage: hmctl %s %s\n\n%s\n\nflags:\n", cmd.name, cmd.synopsis, cmd.help)
				fs.PrintDefaults()
			}
		}
	}
	return fs, g
}

// parse parses a command line (flags anywhere) and checks the subject prefix.
func (g *globals) parse(fs *flag.FlagSet, args []string) ([]string, subject.Space, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, subject.Space{}, err
	}
	sp, err := g.space()
	return pos, sp, err
}

// parseNoArgs is parse for a command that takes no arguments; hint tells
// where its input comes from instead.
func (g *globals) parseNoArgs(fs *flag.FlagSet, args []string, hint string) (subject.Space, error) {
	pos, sp, err := g.parse(fs, args)
	if err == nil && len(pos) > 0 {
		err = usagef("unexpected arguments %q%s", pos, hint)
	}
	return sp, err
}

// space checks the subject prefix.
func (g *globals) space() (subject.Space, error) {
	sp, err := subject.NewSpace(g.prefix)
	if err != nil {
		return subject.Space{}, usagef("-subject-prefix: %v", err)
	}
	return sp, nil
}

// connect opens the NATS connection, giving up after -connect-timeout with
// the reason of the last failed attempt. extra options come last, so they
// may replace bus.Connect's handlers.
func (g *globals) connect(ctx context.Context, extra ...nats.Option) (*nats.Conn, error) {
	var (
		mu   sync.Mutex
		last error // the latest failed attempt, for the message
	)
	o := g.bus
	o.ApplyEnvSecrets()
	o.Name = "hmctl"
	o.Log = zerolog.Nop()
	o.Extra = append([]nats.Option{nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
		mu.Lock()
		last = err
		mu.Unlock()
	})}, extra...)
	cctx, cancel := context.WithTimeout(ctx, g.connectTimeout)
	defer cancel()
	nc, err := bus.Connect(cctx, o)
	if err == nil {
		return nc, nil
	}
	mu.Lock()
	why := last
	mu.Unlock()
	switch {
	case why == nil && errors.Is(err, context.DeadlineExceeded):
		why = fmt.Errorf("no connection within %v", g.connectTimeout)
	case why == nil:
		why = err
	}
	// nats.go reports a refused connection as "no servers available";
	// a plain dial names the real reason (refused, no such host …).
	if errors.Is(why, nats.ErrNoServers) || errors.Is(why, context.DeadlineExceeded) {
		if derr := dialReason(ctx, o.URLs); derr != nil {
			why = derr
		}
	}
	return nil, fmt.Errorf("cannot reach NATS at %s: %w", redactURLs(o.URLs), why)
}

// dialReason dials the first server of urls over TCP and returns why that
// fails (nil when it does not).
func dialReason(ctx context.Context, urls string) error {
	first, _, _ := strings.Cut(urls, ",")
	first = strings.TrimSpace(first)
	if !strings.Contains(first, "://") {
		first = "nats://" + first
	}
	u, err := url.Parse(first)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4222")
	}
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

// jetStream connects and returns a JetStream context too.
func (g *globals) jetStream(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := g.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(g.timeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// stream binds to one of the installation's streams, explaining a missing
// one (nothing deployed yet, or another prefix).
func (g *globals) stream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, g.explain("stream", name, err, jetstream.ErrStreamNotFound)
	}
	return s, nil
}

// bucket binds to one of the installation's KV buckets.
func (g *globals) bucket(ctx context.Context, js jetstream.JetStream, name string) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, g.explain("bucket", name, err, jetstream.ErrBucketNotFound)
	}
	return kv, nil
}

// explain words the error of binding to a stream or bucket; a missing one
// means nothing is deployed yet, or under another prefix.
func (g *globals) explain(what, name string, err, notFound error) error {
	if errors.Is(err, notFound) {
		return fmt.Errorf("%s %s not found: is healthmesh running on this NATS with subject prefix %q?", what, name, g.prefix)
	}
	return fmt.Errorf("%s %s: %w", what, name, err)
}

// redactURLs hides passwords embedded in NATS URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
