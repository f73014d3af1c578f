package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func (c *cli) status(args []string) error {
	fs, g := c.newFlags("status")
	asJSON := fs.Bool("json", false, "print the aggregator's reply as JSON")
	sp, err := g.parseNoArgs(fs, args, "")
	if err != nil {
		return err
	}
	rep, err := g.ask(c.ctx, sp, "status", func(ctx context.Context, nc *nats.Conn) (aggregator.APIReply, error) {
		return aggregator.Status(ctx, nc, sp)
	})
	if err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("status: the aggregator answered: %s", rep.Error)
	}
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	_, err = fmt.Fprint(c.stdout, aggregator.RenderStatus(rep, c.now()))
	return err
}

// ask connects and makes one hm.api request of the active aggregator,
// explaining a failure.
func (g *globals) ask(ctx context.Context, sp subject.Space, verb string,
	call func(context.Context, *nats.Conn) (aggregator.APIReply, error)) (aggregator.APIReply, error) {
	nc, err := g.connect(ctx)
	if err != nil {
		return aggregator.APIReply{}, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	rep, err := call(ctx, nc)
	switch {
	case err == nil:
		return rep, nil
	case errors.Is(err, aggregator.ErrNoLeader):
		return rep, fmt.Errorf("%s: no active aggregator answered on %s: is an aggregator running with subject prefix %q?", verb, sp.API(verb), g.prefix)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return rep, fmt.Errorf("%s: the aggregator did not answer on %s within %v", verb, sp.API(verb), g.timeout)
	}
	return rep, fmt.Errorf("%s: %w", verb, err)
}
