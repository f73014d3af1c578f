// Package publish sends probe results to HM_RESULTS with asynchronous
// JetStream publishes, queued by the probes and sent together every Linger. A
// full queue or in-flight window is back-pressure: the result is dropped and
// counted (the next probe supersedes it), never a crash or a block of the
// scheduler. When the results stream does not exist (the results: core
// mode, bus.ResultsCore) results go out on core NATS instead; Follow keeps
// the publisher in the mode the stream's existence says.
package publish

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Stats are the publisher's counters.
type Stats struct {
	Published atomic.Uint64 // handed to JetStream (or core NATS)
	Acked     atomic.Uint64 // stored
	Dropped   atomic.Uint64 // back-pressure: in-flight window, queue (or reconnect buffer) full
	Failed    atomic.Uint64 // publish or ack errors
}

// Linger is how long a result waits in the queue at most before Run sends
// it with the others that came meanwhile. A message sent the moment its
// probe ended woke the client's flusher, the server and the aggregator once
// per result: at 10,000 results/s that was about a third of the all-in-one's
// user CPU (BENCHMARKS.md). 2 ms is nothing beside a probe interval.
const Linger = 2 * time.Millisecond

// maxQueue bounds the results waiting for Run: far more than a linger's worth
// at any rate a prober reaches; it fills only when sending stalls.
const maxQueue = 1 << 16

// Publisher publishes results for one observer: Publish queues, Run sends.
type Publisher struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	core     atomic.Bool // publish on core NATS (no results stream)
	observer string
	node     string
	seq      atomic.Uint64
	stall    jetstream.PublishOpt
	Stats    Stats

	mu    sync.Mutex // guards queue
	queue []queued
	send  sync.Mutex // one sender at a time (Run's ticks, Complete); guards spare
	spare []queued
	bufs  sync.Pool // core mode: the client copies the data, so buffers are reused
}

// queued is a result waiting to be sent.
type queued struct {
	subj string
	data *[]byte
	hdr  nats.Header
}

// New returns a publisher whose JetStream context reports async failures to
// its stats. maxPending bounds the in-flight window (0 = 4000).
func New(nc *nats.Conn, observer, node string, maxPending int) (*Publisher, error) {
	if maxPending <= 0 {
		maxPending = 4000
	}
	// A short stall absorbs bursts without holding the sender long.
	p := &Publisher{nc: nc, observer: observer, node: node, stall: jetstream.WithStallWait(20 * time.Millisecond)}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { p.Stats.Failed.Add(1) }),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { p.Stats.Acked.Add(1) }),
	)
	if err != nil {
		return nil, err
	}
	p.js = js
	return p, nil
}

// Headers keeps the headers of one target's results: they repeat as long as
// the state and reason do, so one map serves until those change (building
// it was a dozen allocations per result), and the maps are shared by every
// target (results' headers name no target: event.ProbeResult.Header). A
// map is never changed once built, since the client may still hold it for
// a publish awaiting its ack. The zero value is ready; it is not safe for
// concurrent use (one per target, used by its probe).
type Headers struct {
	state  event.State
	reason event.Reason
	h      nats.Header
}

// sharedHeaders holds a header map per state and reason seen.
var sharedHeaders sync.Map // headerKey -> nats.Header

type headerKey struct {
	state  event.State
	reason event.Reason
}

func (c *Headers) of(r *event.ProbeResult) nats.Header {
	if c == nil {
		return r.Header()
	}
	if c.h == nil || c.state != r.State || c.reason != r.Reason {
		k := headerKey{r.State, r.Reason}
		h, ok := sharedHeaders.Load(k)
		if !ok {
			h, _ = sharedHeaders.LoadOrStore(k, r.Header())
		}
		c.h, c.state, c.reason = h.(nats.Header), r.State, r.Reason
	}
	return c.h
}

// Publish queues r for subj with the headers hc keeps (nil: built for r);
// Run sends it within Linger. It fills Observer, Node, Seq and V. It returns
// ErrBackPressure when the queue is full (the result is dropped).
func (p *Publisher) Publish(subj string, r *event.ProbeResult, hc *Headers) error {
	r.V = event.Version
	r.Observer = p.observer
	r.Node = p.node
	r.Seq = p.seq.Add(1)
	bp, _ := p.bufs.Get().(*[]byte)
	if bp == nil {
		// 160 bytes hold a typical result.
		b := make([]byte, 0, 160)
		bp = &b
	}
	*bp = event.AppendProbeResult((*bp)[:0], r)
	q := queued{subj: subj, data: bp, hdr: hc.of(r)}
	p.mu.Lock()
	full := len(p.queue) >= maxQueue
	if !full {
		p.queue = append(p.queue, q)
	}
	p.mu.Unlock()
	if full {
		p.bufs.Put(bp)
		p.Stats.Dropped.Add(1)
		return ErrBackPressure
	}
	return nil
}

// Run sends the queued results every `every` (0: Linger) until ctx ends,
// then sends what is left.
func (p *Publisher) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = Linger
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.flush()
			return
		case <-t.C:
			p.flush()
		}
	}
}

// flush sends everything queued: on core NATS each message is copied into
// the connection's buffer at once, so the data buffers go back to the pool;
// JetStream keeps a message until its ack, so there they are the message's.
func (p *Publisher) flush() {
	p.send.Lock()
	defer p.send.Unlock()
	p.mu.Lock()
	batch := p.queue
	p.queue = p.spare[:0]
	p.mu.Unlock()
	core := p.core.Load()
	var m nats.Msg // core: reused, the client copies it
	for i := range batch {
		q := &batch[i]
		if core {
			m.Subject, m.Data, m.Header = q.subj, *q.data, q.hdr
			p.count(p.nc.PublishMsg(&m), nats.ErrReconnectBufExceeded)
			p.bufs.Put(q.data)
		} else {
			_, err := p.js.PublishMsgAsync(&nats.Msg{Subject: q.subj, Data: *q.data, Header: q.hdr}, p.stall)
			p.count(err, jetstream.ErrTooManyStalledMsgs)
		}
	}
	clear(batch)
	p.spare = batch[:0]
}

// count records the outcome of one send; full is the error that means
// back-pressure.
func (p *Publisher) count(err, full error) {
	switch {
	case err == nil:
		p.Stats.Published.Add(1)
	case errors.Is(err, full):
		p.Stats.Dropped.Add(1)
	default:
		p.Stats.Failed.Add(1)
	}
}

// SetCore switches between JetStream (false) and core NATS (true).
func (p *Publisher) SetCore(core bool) { p.core.Store(core) }

// Core reports whether results go out on core NATS.
func (p *Publisher) Core() bool { return p.core.Load() }

// Pending is the number of results awaiting an ack.
func (p *Publisher) Pending() int { return p.js.PublishAsyncPending() }

// Drain sends everything queued and waits, at most timeout, until it is
// acked (JetStream) or flushed (core NATS); it reports whether that
// happened. For a draining shutdown, after Run has returned.
func (p *Publisher) Drain(timeout time.Duration) bool {
	p.flush()
	deadline := time.Now().Add(timeout)
	if p.core.Load() {
		return p.nc.FlushTimeout(timeout) == nil
	}
	select {
	case <-p.js.PublishAsyncComplete():
		return true
	case <-time.After(time.Until(deadline)):
		return false
	}
}

// FollowEvery is how often Follow checks whether the results stream exists.
const FollowEvery = 10 * time.Second

// Follow puts p in the mode the results stream's existence says (JetStream
// when it exists, core NATS when it does not), now and every `every` until
// ctx ends, so that probers follow the aggregator's bus.results setting
// without one of their own. onChange, if set, is called on every switch.
func Follow(ctx context.Context, js jetstream.JetStream, stream string, p *Publisher, every time.Duration, onChange func(core bool)) {
	check := func() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := js.Stream(cctx, stream)
		var core bool
		switch {
		case err == nil:
		case errors.Is(err, jetstream.ErrStreamNotFound):
			core = true
		default:
			return // unknown (NATS unreachable): keep the mode
		}
		if core != p.Core() {
			p.SetCore(core)
			if onChange != nil {
				onChange(core)
			}
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ErrBackPressure means the in-flight window was full and the result dropped.
var ErrBackPressure = errors.New("publish: back-pressure, result dropped")
