package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func (c *cli) pause(args []string) error  { return c.maintain("pause", args) }
func (c *cli) resume(args []string) error { return c.maintain("resume", args) }

// maintain sends hm.api.pause or hm.api.resume to the active aggregator.
func (c *cli) maintain(verb string, args []string) error {
	fs, g := c.newFlags(verb)
	vsFlag := fs.String("vs", "", "the virtual server (VIP-PROTO-PORT) the backend belongs to")
	reason := fs.String("reason", "", "why, for the audit trail (required for pause)")
	who := fs.String("who", "", "who asks, for the audit trail (default $USER@hostname)")
	pos, sp, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one BACKEND (RIP-PROTO-PORT, with --vs) or VS/BACKEND, got %d arguments", len(pos))
	}
	vs, be, err := backendArg(pos[0], *vsFlag)
	if err != nil {
		return err
	}
	if verb == "pause" && strings.TrimSpace(*reason) == "" {
		return usagef("--reason is required: say why the backend is paused")
	}
	if *who == "" {
		*who = defaultWho()
	}
	req := aggregator.APIRequest{VS: vs.String(), Backend: be.String(), Who: *who, Why: *reason}
	call := aggregator.Pause
	if verb == "resume" {
		call = aggregator.Resume
	}
	rep, err := g.ask(c.ctx, sp, verb, func(ctx context.Context, nc *nats.Conn) (aggregator.APIReply, error) {
		return call(ctx, nc, sp, req)
	})
	if err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("%s %s/%s: %s", verb, vs, be, rep.Error)
	}
	_, err = fmt.Fprintf(c.stdout, "%sd %s in %s by %s (transitions published: %d)\n", verb, be, vs, *who, rep.Events)
	return err
}

// backendArg reads BACKEND with --vs, or VS/BACKEND.
func backendArg(arg, vsFlag string) (vs subject.VSID, be subject.BackendID, err error) {
	beText := arg
	if v, b, ok := strings.Cut(arg, "/"); ok {
		if vsFlag != "" && vsFlag != v {
			return vs, be, usagef("%q names VS %s but --vs says %s", arg, v, vsFlag)
		}
		vsFlag, beText = v, b
	}
	if vsFlag == "" {
		return vs, be, usagef("which VS? give --vs VIP-PROTO-PORT or write VS/BACKEND")
	}
	if vs, err = subject.ParseEndpoint(vsFlag); err != nil {
		return vs, be, usagef("VS %q: want VIP-PROTO-PORT such as 192.0.2.1-TCP-80: %v", vsFlag, err)
	}
	if be, err = subject.ParseEndpoint(beText); err != nil {
		return vs, be, usagef("backend %q: want RIP-PROTO-PORT such as 198.51.100.1-TCP-8080: %v", beText, err)
	}
	return vs, be, nil
}

// defaultWho is $USER@hostname, for the audit trail.
func defaultWho() string {
	name := os.Getenv("USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return name
	}
	return name + "@" + host
}
