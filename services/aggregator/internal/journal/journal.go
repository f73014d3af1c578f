// Package journal records transitions: first into HM_EVENTS, fenced with
// ExpectLastSequencePerSubject and deduplicated by Nats-Msg-Id, then into KV
// hm_state as the object's current state. After a crash between the two, the
// stream wins: the aggregator re-derives the KV entry from the last event.
//
// The hm_state copy trails the event: Append returns once the event is
// stored and the copy is sent, so the next transition does not wait for a
// second round trip; Settle waits for the copies (the engine calls it
// before each checkpoint) and writes a failed one again from the stream.
package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/kvwrite"
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
	copies  *kvwrite.Writer // the hm_state copies
	prefix  string          // "<prefix>.event.": a copy's key after it is its event's subject
	mu      sync.Mutex
	lastSeq map[string]uint64 // subject → last stream sequence we know of
	// repair holds the keys whose copies failed and are not written again
	// yet (Settle's goroutine only).
	repair map[string]struct{}
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

// New returns a journal writing to the layout's events stream and state
// bucket, on js (which should have an async publish timeout: see
// kvwrite.AckTimeout).
func New(js jetstream.JetStream, l *bus.Layout) *Journal {
	return &Journal{
		js: js, events: l.Events, state: l.State,
		copies:  kvwrite.New(js, l.State.Bucket()),
		prefix:  strings.TrimSuffix(l.Space.EventsAll(), ">"),
		lastSeq: map[string]uint64{}, repair: map[string]struct{}{},
	}
}

// Append publishes t on subj and then sends it for key in hm_state (see
// Settle); key is subj after "<prefix>.event.". It returns the event's
// stream sequence.
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
	if err := j.copies.Put(ctx, key, msg.Data); err != nil {
		return ack.Sequence, fmt.Errorf("journal: state %s: %w", key, err)
	}
	return ack.Sequence, nil
}

// Settle waits until every hm_state copy sent so far is stored. A copy that
// failed is written again from its subject's last event (the stream wins:
// a later copy may have been stored since, or not); a key it could not
// repair is tried again at the next Settle, and the error says so.
func (j *Journal) Settle(ctx context.Context) error {
	err := j.copies.Wait(ctx)
	var failed *kvwrite.Failed
	if errors.As(err, &failed) {
		for key := range failed.Keys {
			j.repair[key] = struct{}{}
		}
	} else if err != nil {
		return err
	}
	for key := range j.repair {
		m, err := j.events.GetLastMsgForSubject(ctx, j.prefix+key)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("journal: repair %s: %w", key, err)
		default:
			if _, err := j.state.Put(ctx, key, m.Data); err != nil {
				return fmt.Errorf("journal: repair %s: %w", key, err)
			}
		}
		delete(j.repair, key)
	}
	return nil
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
