package main

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// fetchBatch is how many messages one replay fetch asks for. An ordered
// consumer is re-created for every fetch, so batches are large.
const fetchBatch = 1000

// replay calls fn with the messages of an ordered consumer, in stream order,
// until fn says stop, the consumer has nothing more (NumPending 0, or an
// empty fetch: a bounded replay, no live tail) or ctx ends.
func replay(ctx context.Context, cons jetstream.Consumer, fn func(jetstream.Msg, *jetstream.MsgMetadata) (stop bool, err error)) error {
	for ctx.Err() == nil {
		batch, err := cons.FetchNoWait(fetchBatch)
		if err != nil {
			return err
		}
		more, err := replayBatch(batch, fn)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// replayBatch hands one fetch to fn and reports whether to fetch again.
func replayBatch(batch jetstream.MessageBatch, fn func(jetstream.Msg, *jetstream.MsgMetadata) (bool, error)) (bool, error) {
	// A fetch left early is drained, so its goroutine is gone before the
	// connection closes.
	defer func() {
		for range batch.Messages() {
		}
	}()
	n := 0
	for m := range batch.Messages() {
		n++
		md, err := m.Metadata()
		if err != nil {
			return false, err
		}
		if stop, err := fn(m, md); stop || err != nil {
			return false, err
		}
		if md.NumPending == 0 {
			return false, nil
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return false, err
	}
	return n > 0, nil
}
