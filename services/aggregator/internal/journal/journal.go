// Package journal records transitions: first into HM_EVENTS, fenced with
// ExpectLastSequencePerSubject and deduplicated by Nats-Msg-Id, then into KV
// hm_state as the object's current state. After a crash between the two, the
// stream wins: the aggregator re-derives the KV entry from the last event.
package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
)

// ErrFenced means another writer (a newer leader) appended to the object's
// subject: this aggregator must stand down.
var ErrFenced = errors.New("journal: fenced by another writer")

// Journal appends transitions for one leader term. It is safe for
// concurrent use on different subjects; one subject's appends must come
// from one goroutine at a time, in order.
type Journal struct {
	js      jetstream.JetStream
	events  jetstream.Stream
	state   jetstream.KeyValue
	mu      sync.Mutex
	lastSeq map[string]uint64 // subject → last stream sequence we know of
}

func (j *Journal) last(subj string) (uint64, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	seq, ok := j.lastSeq[subj]
	return seq, ok
}

func (j *Journal) setLast(subj string, seq uint64, known bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if known {
		j.lastSeq[subj] = seq
	} else {
		delete(j.lastSeq, subj)
	}
}

// New returns a journal writing to the events stream and the state bucket.
func New(js jetstream.JetStream, events jetstream.Stream, state jetstream.KeyValue) *Journal {
	return &Journal{js: js, events: events, state: state, lastSeq: map[string]uint64{}}
}

// Append publishes t on subj and then stores it under key in hm_state. It
// returns the event's stream sequence.
func (j *Journal) Append(ctx context.Context, subj, key string, t *event.Transition) (uint64, error) {
	last, ok := j.last(subj)
	if !ok {
		var err error
		if last, err = j.fetchLast(ctx, subj); err != nil {
			return 0, err
		}
	}
	// One encoding serves both the event and its hm_state copy.
	msg, err := bus.NewMsg(subj, t)
	if err != nil {
		return 0, err
	}
	ack, err := j.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(last))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			j.setLast(subj, 0, false)
			return 0, fmt.Errorf("%w: %s: %v", ErrFenced, subj, err)
		}
		return 0, fmt.Errorf("journal: publish %s: %w", subj, err)
	}
	if ack.Duplicate && ack.Sequence != last {
		// An older transition, re-derived by a leader that replays results
		// the previous one had journaled: stored already, with newer ones
		// after it on the subject. The ack names the original message, so
		// neither the fence nor hm_state may move back to it.
		return ack.Sequence, nil
	}
	j.setLast(subj, ack.Sequence, true)
	if _, err := j.state.Put(ctx, key, msg.Data); err != nil {
		return ack.Sequence, fmt.Errorf("journal: state %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// fetchLast reads the subject's last sequence in the stream (0 if none).
func (j *Journal) fetchLast(ctx context.Context, subj string) (uint64, error) {
	m, err := j.events.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("journal: last event of %s: %w", subj, err)
	}
	return m.Sequence, nil
}

// Last returns the last transition stored in the stream for subj, if any.
func Last(ctx context.Context, events jetstream.Stream, subj string) (*event.Transition, uint64, error) {
	m, err := events.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var t event.Transition
	if err := event.Unmarshal(m.Data, &t); err != nil {
		return nil, m.Sequence, err
	}
	return &t, m.Sequence, nil
}
