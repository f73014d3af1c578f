package main

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

func (c *cli) watch(args []string) error {
	fs, g := c.newFlags("watch")
	asJSON := fs.Bool("json", false, "print JSON lines: the message as JSON with its subject and time")
	all := fs.Bool("all", false, "also print action results and audit records")
	pos, sp, err := g.parse(fs, args)
	if err != nil {
		return err
	}
	var kinds, objects []string
	for _, a := range pos {
		if _, ok := parseKind(a); ok {
			kinds = append(kinds, a)
		} else {
			objects = append(objects, a)
		}
	}
	sel, err := newSelector(sp, kinds, objects, *all)
	if err != nil {
		return usagef("%v", err)
	}

	// The connection reconnects by itself; say so rather than go quiet.
	var mu sync.Mutex // serialises stderr between the NATS callbacks and the loop
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(c.stderr, format, a...)
	}
	nc, err := g.connect(c.ctx,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				say("hmctl: disconnected from NATS (%v); reconnecting\n", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { say("hmctl: reconnected to %s\n", nc.ConnectedUrlRedacted()) }))
	if err != nil {
		return err
	}
	defer nc.Close()

	msgs := make(chan *nats.Msg, 8192) // never closed: the subscriptions end with nc
	subjects := sel.subjects()
	for _, s := range subjects {
		sub, err := nc.ChanSubscribe(s, msgs)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", s, err)
		}
		defer sub.Unsubscribe()
	}
	fctx, cancel := context.WithTimeout(c.ctx, g.timeout)
	err = nc.FlushWithContext(fctx) // the server has the subscriptions
	cancel()
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	say("watching %s (interrupt to stop)\n", strings.Join(subjects, " "))
	for {
		select {
		case <-c.ctx.Done():
			return nil
		case m := <-msgs:
			rec, err := decodeRecord(sp, m.Subject, m.Header, m.Data)
			if err != nil {
				say("hmctl: skipped undecodable message: %v\n", err)
				continue
			}
			rec.time = c.now()
			if !sel.match(rec) {
				continue
			}
			if err := c.printRecord(rec, *asJSON, false); err != nil {
				return err
			}
		}
	}
}

// printRecord writes one record as a line of text or JSON.
func (c *cli) printRecord(rec *record, asJSON, withSeq bool) error {
	if asJSON {
		j, err := rec.jsonRecord()
		if err != nil {
			return err
		}
		return writeJSON(c, j)
	}
	_, err := fmt.Fprintln(c.stdout, rec.text(withSeq))
	return err
}
