// Package publish sends probe results to HM_RESULTS with asynchronous
// JetStream publishes. A full in-flight window is back-pressure: the result is
// dropped and counted (the next probe supersedes it), never a crash or a block
// of the scheduler.
package publish

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Stats are the publisher's counters.
type Stats struct {
	Published atomic.Uint64 // handed to JetStream
	Acked     atomic.Uint64 // stored
	Dropped   atomic.Uint64 // back-pressure: in-flight window full
	Failed    atomic.Uint64 // publish or ack errors
}

// Publisher publishes results for one observer.
type Publisher struct {
	js       jetstream.JetStream
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
	p := &Publisher{observer: observer, node: node, stall: jetstream.WithStallWait(20 * time.Millisecond)}
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

// Publish sends r on subj. It fills Observer, Node, Seq and V. It returns
// ErrBackPressure when the window is full (the result is dropped).
func (p *Publisher) Publish(subj string, r *event.ProbeResult) error {
	r.V = event.Version
	r.Observer = p.observer
	r.Node = p.node
	r.Seq = p.seq.Add(1)
	// 160 bytes hold a typical result; a fresh buffer per message because
	// the client keeps the message until its ack.
	data := appendResult(make([]byte, 0, 160), r)
	msg := &nats.Msg{Subject: subj, Data: data, Header: r.Header()}
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

// Pending is the number of results awaiting an ack.
func (p *Publisher) Pending() int { return p.js.PublishAsyncPending() }

// Complete is closed when every pending publish has been acked (for a
// draining shutdown).
func (p *Publisher) Complete() <-chan struct{} { return p.js.PublishAsyncComplete() }

// ErrBackPressure means the in-flight window was full and the result dropped.
var ErrBackPressure = errors.New("publish: back-pressure, result dropped")
