// Package publish sends probe results to HM_RESULTS with asynchronous
// JetStream publishes. A full in-flight window is back-pressure: the result is
// dropped and counted (the next probe supersedes it), never a crash or a block
// of the scheduler. When the results stream does not exist (the results: core
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
	Dropped   atomic.Uint64 // back-pressure: in-flight window (or reconnect buffer) full
	Failed    atomic.Uint64 // publish or ack errors
}

// Publisher publishes results for one observer.
type Publisher struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	core     atomic.Bool // publish on core NATS (no results stream)
	bufs     sync.Pool   // core mode: the client copies the data, so buffers are reused
	observer string
	node     string
	seq      atomic.Uint64
	stall    jetstream.PublishOpt
	Stats    Stats
}

// New returns a publisher whose JetStream context reports async failures to
// its stats. maxPending bounds the in-flight window (0 = 4000).
func New(nc *nats.Conn, observer, node string, maxPending int) (*Publisher, error) {
	if maxPending <= 0 {
		maxPending = 4000
	}
	// A short stall absorbs bursts without holding a probe worker long.
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
// it was a dozen allocations per result). A map is never changed once
// built, since the client may still hold it for a publish awaiting its ack.
// The zero value is ready; it is not safe for concurrent use (one per
// target, used by its probe).
type Headers struct {
	target string
	state  event.State
	reason event.Reason
	h      nats.Header
}

func (c *Headers) of(r *event.ProbeResult) nats.Header {
	if c == nil {
		return r.Header()
	}
	if c.h == nil || c.target != r.Target || c.state != r.State || c.reason != r.Reason {
		c.h, c.target, c.state, c.reason = r.Header(), r.Target, r.State, r.Reason
	}
	return c.h
}

// Publish sends r on subj with the headers hc keeps (nil: built for r). It
// fills Observer, Node, Seq and V. It returns ErrBackPressure when the window
// is full (the result is dropped).
func (p *Publisher) Publish(subj string, r *event.ProbeResult, hc *Headers) error {
	r.V = event.Version
	r.Observer = p.observer
	r.Node = p.node
	r.Seq = p.seq.Add(1)
	if p.core.Load() {
		return p.publishCore(subj, r, hc.of(r))
	}
	// 160 bytes hold a typical result; a fresh buffer per message because
	// the client keeps the message until its ack.
	data := event.AppendProbeResult(make([]byte, 0, 160), r)
	msg := &nats.Msg{Subject: subj, Data: data, Header: hc.of(r)}
	if _, err := p.js.PublishMsgAsync(msg, p.stall); err != nil {
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			p.Stats.Dropped.Add(1)
			return ErrBackPressure
		}
		p.Stats.Failed.Add(1)
		return err
	}
	p.Stats.Published.Add(1)
	return nil
}

func (p *Publisher) publishCore(subj string, r *event.ProbeResult, h nats.Header) error {
	bp, _ := p.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 160)
		bp = &b
	}
	data := event.AppendProbeResult((*bp)[:0], r)
	err := p.nc.PublishMsg(&nats.Msg{Subject: subj, Data: data, Header: h})
	*bp = data
	p.bufs.Put(bp)
	switch {
	case errors.Is(err, nats.ErrReconnectBufExceeded):
		p.Stats.Dropped.Add(1)
		return ErrBackPressure
	case err != nil:
		p.Stats.Failed.Add(1)
		return err
	}
	p.Stats.Published.Add(1)
	return nil
}

// SetCore switches between JetStream (false) and core NATS (true).
func (p *Publisher) SetCore(core bool) { p.core.Store(core) }

// Core reports whether results go out on core NATS.
func (p *Publisher) Core() bool { return p.core.Load() }

// Pending is the number of results awaiting an ack.
func (p *Publisher) Pending() int { return p.js.PublishAsyncPending() }

// Complete is closed when every pending publish has been acked and what was
// sent on core NATS is flushed (for a draining shutdown).
func (p *Publisher) Complete() <-chan struct{} {
	if !p.core.Load() {
		return p.js.PublishAsyncComplete()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.nc.FlushTimeout(2 * time.Second)
		<-p.js.PublishAsyncComplete()
	}()
	return done
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
