// Package ingest feeds probe results to the aggregator: from HM_RESULTS
// through a durable pull consumer (Consumer), or from a core NATS
// subscription in the results: core mode (Core). Acknowledgement is AckAll and explicit:
// the aggregator acks a stream sequence only once the state reflecting every
// result up to it is checkpointed in hm_state, so a restart or failover
// resumes exactly after the checkpoint and loses no result.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/event"
)

// DefaultDurable is the consumer name shared by every aggregator instance
// (only the leader consumes).
const DefaultDurable = "aggregator"

// Stats counts what was consumed.
type Stats struct {
	Consumed  atomic.Uint64 // decoded and handed over
	Malformed atomic.Uint64 // could not be decoded: counted and dropped
	Dropped   atomic.Uint64 // core mode: dropped by NATS, the engine too slow
}

// Batch is a run of decoded results in stream order.
type Batch struct {
	Results []event.ProbeResult
	Seqs    []uint64 // HM_RESULTS stream sequence of each result
	Last    uint64   // last stream sequence in the batch (including malformed ones)
	// Pending is how many results the server still holds for the consumer
	// after this batch: 0 means caught up.
	Pending uint64
	last    jetstream.Msg // acking it acks the whole batch and all before (AckAll)
}

// batchSlices recycles the slices of folded batches (Release): a batch holds
// up to thousands of results, and a fresh one grown for every batch was a
// tenth of the all-in-one's allocations at 10,000 results/s.
var batchSlices sync.Pool // *batchBuf

type batchBuf struct {
	results []event.ProbeResult
	seqs    []uint64
}

// newBatch returns an empty batch, with recycled slices when there are some.
func newBatch() Batch {
	if bb, ok := batchSlices.Get().(*batchBuf); ok {
		return Batch{Results: bb.results[:0], Seqs: bb.seqs[:0]}
	}
	return Batch{}
}

// Release hands b's slices back for later batches. Neither b's results nor
// a copy of b that shares them may be read afterwards; Ack and Last still
// work.
func (b *Batch) Release() {
	if cap(b.Results) == 0 {
		return
	}
	clear(b.Results) // the strings they hold
	batchSlices.Put(&batchBuf{results: b.Results[:0], seqs: b.Seqs[:0]})
	b.Results, b.Seqs = nil, nil
}

// Ack acknowledges every result up to the end of this batch. Call it only
// once the state reflecting them is checkpointed.
func (b *Batch) Ack(ctx context.Context) error {
	if b.last == nil {
		return nil
	}
	if err := b.last.DoubleAck(ctx); err != nil {
		return fmt.Errorf("ingest: ack %d: %w", b.Last, err)
	}
	return nil
}

// Consumer reads results in batches.
type Consumer struct {
	c     jetstream.Consumer
	cur   jetstream.MessageBatch // the pull in progress; nil between pulls
	log   zerolog.Logger
	Stats Stats
	// Linger bounds how long a result waits in Next (0 = DefaultLinger).
	Linger time.Duration
	// lastMalformedLog rate-limits the malformed warning.
	lastMalformedLog time.Time
}

// Position says where consumption starts.
type Position struct {
	// AfterSeq resumes after this HM_RESULTS sequence (the last checkpoint).
	AfterSeq uint64
	// Since is used when there is no checkpoint: results newer than this
	// (zero = everything retained).
	Since time.Time
}

// Open (re)creates the durable consumer on the results stream at pos. The
// consumer is recreated on every takeover rather than resumed, because the
// checkpoint in hm_state, not the consumer's ack floor, is the truth (and
// unacked messages would otherwise wait AckWait before redelivery). A stale
// leader still fetching from the replaced consumer gets errors and stops.
func Open(ctx context.Context, s jetstream.Stream, durable, filter string, pos Position, log zerolog.Logger) (*Consumer, error) {
	if durable == "" {
		durable = DefaultDurable
	}
	if err := s.DeleteConsumer(ctx, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("ingest: reset consumer %s: %w", durable, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "healthmesh aggregator: probe results",
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       5 * time.Minute,
		MaxAckPending: -1,
		FilterSubject: filter,
		MaxWaiting:    16,
	}
	switch {
	case pos.AfterSeq > 0:
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = pos.AfterSeq + 1
	case !pos.Since.IsZero():
		since := pos.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	default:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	c, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ingest: consumer %s: %w", durable, err)
	}
	return &Consumer{c: c, log: log}, nil
}

// DefaultLinger is how long Next keeps collecting after the first result
// of a batch: a result waits at most this long before it is folded.
const DefaultLinger = 10 * time.Millisecond

// Next returns the results that arrive on the current pull request (a fetch
// of up to max results that the server ends after wait): as soon as Linger
// has passed since the first one, or when the pull ends. The pull outlives
// Next, so a result is never read twice nor dropped between calls. An empty
// batch with a nil error means a pull ended with nothing more: caught up.
func (c *Consumer) Next(ctx context.Context, max int, wait time.Duration) (Batch, error) {
	b := newBatch()
	if err := ctx.Err(); err != nil {
		return b, err
	}
	if c.cur == nil {
		// The server ends the pull after wait, behind the last message it
		// sent. A client-side deadline instead could fire while the end of
		// a batch was still on its way: those results were dropped unread,
		// and the next AckAll acked them (the aggregator benchmark lost
		// results under load).
		msgs, err := c.c.Fetch(max, jetstream.FetchMaxWait(wait))
		if err != nil {
			return b, fmt.Errorf("ingest: fetch: %w", err)
		}
		c.cur = msgs
	}
	linger := c.Linger
	if linger <= 0 {
		linger = DefaultLinger
	}
	var lingered <-chan time.Time // armed by the first message
	for {
		select {
		case m, ok := <-c.cur.Messages():
			if !ok {
				err := c.cur.Error()
				c.cur = nil
				if err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
					!errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					return b, fmt.Errorf("ingest: fetch: %w", err)
				}
				return b, ctx.Err()
			}
			c.add(&b, m)
			if lingered == nil {
				t := time.NewTimer(linger)
				defer t.Stop()
				lingered = t.C
			}
		case <-lingered:
			return b, nil
		case <-ctx.Done():
			c.Close()
			return b, ctx.Err()
		}
	}
}

// Close waits for the pull in progress to end (at most the wait it was
// started with), discarding what it still delivers: unacked, those results
// come again to the next consumer. Call it when done with the consumer.
func (c *Consumer) Close() {
	if c.cur == nil {
		return
	}
	for range c.cur.Messages() {
	}
	c.cur = nil
}

// add decodes m into b; a malformed result is counted and skipped, but
// still moves the batch's end, so that acking it acks the bad message too.
func (c *Consumer) add(b *Batch, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		c.malformed(err)
		return
	}
	seq := md.Sequence.Stream
	b.Last, b.Pending, b.last = seq, md.NumPending, m
	var r event.ProbeResult
	if err := decode(m.Data(), &r); err != nil {
		c.malformed(err)
		return
	}
	b.Results = append(b.Results, r)
	b.Seqs = append(b.Seqs, seq)
	c.Stats.Consumed.Add(1)
}

// Counts implements Source.
func (c *Consumer) Counts() *Stats { return &c.Stats }

func (c *Consumer) malformed(err error) {
	c.lastMalformedLog = malformed(&c.Stats, c.log, c.lastMalformedLog, err)
}

// decode decodes one result and checks the fields the engine relies on.
func decode(data []byte, r *event.ProbeResult) error {
	if err := event.DecodeProbeResult(data, r); err != nil {
		return err
	}
	if r.Target == "" || !r.State.Valid() {
		return fmt.Errorf("result without target or with state %q", r.State)
	}
	return nil
}

// malformed counts a bad message and logs at most once per 10 s (since
// last); it returns when it last logged.
func malformed(s *Stats, log zerolog.Logger, last time.Time, err error) time.Time {
	s.Malformed.Add(1)
	if now := time.Now(); now.Sub(last) > 10*time.Second {
		log.Warn().Err(err).Uint64("malformed_total", s.Malformed.Load()).Msg("malformed probe result dropped")
		return now
	}
	return last
}
