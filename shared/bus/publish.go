package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Message is a wire message that knows its readable headers (and, for
// transitions, its Nats-Msg-Id).
type Message interface {
	Header() nats.Header
}

// NewMsg encodes m as msgpack into a NATS message on subj with m's headers.
func NewMsg(subj string, m Message) (*nats.Msg, error) {
	data, err := event.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &nats.Msg{Subject: subj, Header: m.Header(), Data: data}, nil
}

// Publish stores m in its stream and waits for the ack. The Nats-Msg-Id
// header m sets makes a repeated publish a no-op within the stream's
// duplicate window; opts add expectations such as
// jetstream.WithExpectLastSequencePerSubject for fencing.
func Publish(ctx context.Context, js jetstream.JetStream, subj string, m Message, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	msg, err := NewMsg(subj, m)
	if err != nil {
		return nil, err
	}
	ack, err := js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: publish %s: %w", subj, err)
	}
	return ack, nil
}

// PublishAsync stores m without waiting; the future reports the ack. A full
// in-flight window surfaces as jetstream.ErrTooManyStalledMsgs, which callers
// treat as back-pressure.
func PublishAsync(js jetstream.JetStream, subj string, m Message, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	msg, err := NewMsg(subj, m)
	if err != nil {
		return nil, err
	}
	f, err := js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: publish async %s: %w", subj, err)
	}
	return f, nil
}
