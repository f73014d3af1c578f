package main

import (
	"fmt"
	"io"

	"github.com/healthmesh/healthmesh/shared/event"
)

// maxDecode bounds the input of decode: NATS' largest payload is 64 MiB.
const maxDecode = 64 << 20

func (c *cli) decode(args []string) error {
	fs, g := c.newFlags("decode")
	if _, err := g.parseNoArgs(fs, args, " (the message comes on stdin)"); err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(c.stdin, maxDecode+1))
	if err != nil {
		return fmt.Errorf("decode: read stdin: %w", err)
	}
	if len(data) > maxDecode {
		return fmt.Errorf("decode: input larger than %d bytes", maxDecode)
	}
	if len(data) == 0 {
		return nil
	}
	out, err := event.ToJSON(data)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	_, err = c.stdout.Write(append(out, '\n'))
	return err
}
