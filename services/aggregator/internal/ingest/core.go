package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Source is where the engine reads results from: the HM_RESULTS consumer
// (Consumer) or, in the results: core mode, a core NATS subscription (Core).
type Source interface {
	// Next returns the results that arrived, at most Linger after the first
	// one; an empty batch with a nil error after wait means caught up.
	Next(ctx context.Context, max int, wait time.Duration) (Batch, error)
	// Close stops reading; call it when done.
	Close()
	// Counts are the source's counters.
	Counts() *Stats
}

// CoreBuffer is how many results a core subscription holds while the engine
// is busy (a checkpoint, a burst of transitions): about 10 s of 20,000
// results/s. Beyond it NATS drops results (counted in Stats.Dropped).
const CoreBuffer = 1 << 18

// Core reads results from a core NATS subscription: nothing is stored or
// acknowledged, so Batch.Seqs are 0; Pending is what the subscription still
// buffers when that is more than the next batch (see backlog).
type Core struct {
	sub    *nats.Subscription
	ch     chan *nats.Msg
	log    zerolog.Logger
	stats  Stats
	Linger time.Duration // 0 = DefaultLinger
	// lastMalformedLog rate-limits the malformed warning.
	lastMalformedLog time.Time
}

// Subscribe subscribes to subj (the results wildcard) on nc, buffering up
// to size results (0: CoreBuffer).
func Subscribe(nc *nats.Conn, subj string, size int, log zerolog.Logger) (*Core, error) {
	if size <= 0 {
		size = CoreBuffer
	}
	c := &Core{ch: make(chan *nats.Msg, size), log: log}
	sub, err := nc.ChanSubscribe(subj, c.ch)
	if err != nil {
		return nil, fmt.Errorf("ingest: subscribe %s: %w", subj, err)
	}
	c.sub = sub
	return c, nil
}

// Counts implements Source.
func (c *Core) Counts() *Stats { return &c.stats }

// Next implements Source.
func (c *Core) Next(ctx context.Context, max int, wait time.Duration) (Batch, error) {
	b := newBatch()
	if err := ctx.Err(); err != nil {
		return b, err
	}
	linger := c.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	idle := time.NewTimer(wait)
	defer idle.Stop()
	var lingered <-chan time.Time // armed by the first message
	defer c.countDropped()
	for {
		select {
		case m := <-c.ch:
			c.add(&b, m)
			if len(b.Results) >= max {
				b.Pending = c.backlog(max)
				return b, nil
			}
			if lingered == nil {
				t := time.NewTimer(linger)
				defer t.Stop()
				lingered = t.C
			}
		case <-lingered:
			b.Pending = c.backlog(max)
			return b, nil
		case <-idle.C:
			if lingered == nil {
				return b, nil
			}
		case <-ctx.Done():
			return b, ctx.Err()
		}
	}
}

// backlog is Batch.Pending: the results still buffered when they are more
// than one batch of max. Under a steady flow a few arrive while a batch is
// folded; that is keeping up, not lagging.
func (c *Core) backlog(max int) uint64 {
	if n := len(c.ch); n > max {
		return uint64(n)
	}
	return 0
}

// countDropped moves the subscription's slow-consumer drops into Stats.
func (c *Core) countDropped() {
	n, err := c.sub.Dropped()
	if err != nil || n <= 0 {
		return
	}
	if seen := c.stats.Dropped.Load(); uint64(n) > seen {
		c.stats.Dropped.Store(uint64(n))
		c.log.Warn().Int("dropped_total", n).Msg("results dropped: the aggregator fell behind its core subscription")
	}
}

// Close implements Source: it unsubscribes and discards what is buffered.
func (c *Core) Close() {
	if err := c.sub.Unsubscribe(); err != nil {
		c.log.Debug().Err(err).Msg("results unsubscribe")
	}
	for {
		select {
		case <-c.ch:
		default:
			return
		}
	}
}

func (c *Core) add(b *Batch, m *nats.Msg) {
	var r event.ProbeResult
	if err := decode(m.Data, &r); err != nil {
		c.lastMalformedLog = malformed(&c.stats, c.log, c.lastMalformedLog, err)
		return
	}
	b.Results = append(b.Results, r)
	b.Seqs = append(b.Seqs, 0)
	c.stats.Consumed.Add(1)
}
