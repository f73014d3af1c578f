package ingest

import (
	"context"
	"fmt"
	"slices"
	"sync"
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
// results/s. Beyond it results are dropped (counted in Stats.Dropped).
const CoreBuffer = 1 << 18

// Core reads results from a core NATS subscription: nothing is stored or
// acknowledged, so Batch.Seqs are 0; Pending is what the subscription still
// buffers when that is more than the next batch (see backlog).
//
// The subscription's handler queues what arrives in a slice that grows with
// the backlog and shrinks after it, rather than in a channel of CoreBuffer
// slots: a channel is allocated whole, and a ring the results go round keeps
// every slot resident (2 MiB, the heap of 200 targets, whatever the fleet).
type Core struct {
	sub    *nats.Subscription
	log    zerolog.Logger
	stats  Stats
	Linger time.Duration // 0 = DefaultLinger
	// lastMalformedLog rate-limits the malformed warning.
	lastMalformedLog time.Time

	limit   int
	arrived chan struct{} // capacity 1: the queue went from empty to not
	mu      sync.Mutex
	queue   []*nats.Msg // arrived, not yet taken (guarded by mu)
	spare   []*nats.Msg // the engine's: the last taken queue, for reuse
	dropped uint64      // guarded by mu; reported by countDropped
}

// Subscribe subscribes to subj (the results wildcard) on nc, buffering up
// to size results (0: CoreBuffer).
func Subscribe(nc *nats.Conn, subj string, size int, log zerolog.Logger) (*Core, error) {
	if size <= 0 {
		size = CoreBuffer
	}
	c := &Core{log: log, limit: size, arrived: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(subj, c.receive)
	if err != nil {
		return nil, fmt.Errorf("ingest: subscribe %s: %w", subj, err)
	}
	// The handler only queues: the client's own pending list stays short,
	// and its limits must not be what drops.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("ingest: subscribe %s: %w", subj, err)
	}
	c.sub = sub
	return c, nil
}

// receive is the subscription's handler.
func (c *Core) receive(m *nats.Msg) {
	c.mu.Lock()
	if len(c.queue) >= c.limit {
		c.dropped++
		c.mu.Unlock()
		return
	}
	c.queue = append(c.queue, m)
	first := len(c.queue) == 1
	c.mu.Unlock()
	if first {
		select {
		case c.arrived <- struct{}{}:
		default:
		}
	}
}

// maxSpare is the largest drained queue kept for reuse (128 KiB).
const maxSpare = 1 << 14

// take hands the engine up to n queued results and how many remain.
func (c *Core) take(n int) ([]*nats.Msg, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) <= n {
		got := c.queue
		// The drained queue becomes the next one's backing array, unless a
		// backlog made it far larger than a steady flow needs.
		c.queue = c.spare[:0]
		if cap(c.queue) > maxSpare {
			c.queue = nil
		}
		c.spare = got
		return got, 0
	}
	got := slices.Clone(c.queue[:n])
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return got, rest
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
	defer c.countDropped()
	idle := time.NewTimer(wait)
	defer idle.Stop()
	var lingered <-chan time.Time // armed by the first result
	for {
		msgs, rest := c.take(max - len(b.Results))
		for i, m := range msgs {
			c.add(&b, m)
			msgs[i] = nil
		}
		if len(b.Results) >= max {
			b.Pending = c.backlog(rest, max)
			return b, nil
		}
		if len(msgs) > 0 && lingered == nil {
			t := time.NewTimer(linger)
			defer t.Stop()
			lingered = t.C
		}
		select {
		case <-c.arrived:
		case <-lingered:
			b.Pending = c.backlog(c.queued(), max)
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

// queued is how many results wait in the queue.
func (c *Core) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// backlog is Batch.Pending: the results still buffered when they are more
// than one batch of max. Under a steady flow a few arrive while a batch is
// folded; that is keeping up, not lagging.
func (c *Core) backlog(rest, max int) uint64 {
	if rest > max {
		return uint64(rest)
	}
	return 0
}

// countDropped moves the drops into Stats.
func (c *Core) countDropped() {
	n := c.Dropped()
	if seen := c.stats.Dropped.Load(); n > seen {
		c.stats.Dropped.Store(n)
		c.log.Warn().Uint64("dropped_total", n).Msg("results dropped: the aggregator fell behind its core subscription")
	}
}

// Close implements Source: it unsubscribes and discards what is queued.
func (c *Core) Close() {
	if err := c.sub.Unsubscribe(); err != nil {
		c.log.Debug().Err(err).Msg("results unsubscribe")
	}
	c.mu.Lock()
	c.queue, c.spare = nil, nil
	c.mu.Unlock()
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

// Dropped is how many results did not fit in the buffer so far (Stats.Dropped
// is updated from it when a batch is handed over).
func (c *Core) Dropped() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}
