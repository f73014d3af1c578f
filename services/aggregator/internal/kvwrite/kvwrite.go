// Package kvwrite writes JetStream KV entries without waiting for each:
// asynchronous publishes to the bucket's subjects (a KV bucket is a
// stream), one round trip for many writes. Wait blocks until every write
// is acknowledged and names the keys whose writes failed, so that the
// caller writes them again: nothing fails silently.
package kvwrite

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// AckTimeout is the acknowledgement timeout the JetStream context given to
// New should have (jetstream.WithPublishAsyncTimeout): without one, a lost
// reply would make Wait wait until its context ends.
const AckTimeout = 10 * time.Second

// collectAt is how many writes are followed before the settled ones are
// looked at between two Waits.
const collectAt = 4096

// Writer writes to one bucket. It is safe for concurrent use. Writers
// sharing a JetStream context wait for each other's writes.
type Writer struct {
	js     jetstream.JetStream
	prefix string // "$KV.<bucket>."

	mu     sync.Mutex
	sent   []sent           // writes whose outcome has not been looked at
	failed map[string]error // key → error, since the last Wait
}

type sent struct {
	key string
	f   jetstream.PubAckFuture
}

// New returns a writer to the bucket named bucket.
func New(js jetstream.JetStream, bucket string) *Writer {
	return &Writer{js: js, prefix: "$KV." + bucket + ".", failed: map[string]error{}}
}

// Put writes data under key; the writer owns data from now on.
func (w *Writer) Put(ctx context.Context, key string, data []byte) error {
	return w.publish(ctx, key, &nats.Msg{Subject: w.prefix + key, Data: data})
}

// Delete deletes key.
func (w *Writer) Delete(ctx context.Context, key string) error {
	m := nats.NewMsg(w.prefix + key)
	m.Header.Set("KV-Operation", "DEL")
	return w.publish(ctx, key, m)
}

// publish sends m, waiting while the window of unacknowledged writes is
// full: a checkpoint or an inventory of 100,000 targets is far more than
// the window, and the client's short stall would otherwise fail the write.
func (w *Writer) publish(ctx context.Context, key string, m *nats.Msg) error {
	for {
		f, err := w.js.PublishMsgAsync(m)
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			if err := w.settle(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("kvwrite: %s: %w", key, err)
		}
		if f != nil {
			w.mu.Lock()
			w.sent = append(w.sent, sent{key: key, f: f})
			if len(w.sent) >= collectAt {
				w.collect()
			}
			w.mu.Unlock()
		}
		return nil
	}
}

// collect notes the failures among the writes that have an outcome and
// stops following them. Called with mu held.
func (w *Writer) collect() {
	keep := w.sent[:0]
	for _, s := range w.sent {
		select {
		case err := <-s.f.Err():
			w.failed[s.key] = err
		case <-s.f.Ok():
		default:
			keep = append(keep, s)
		}
	}
	clear(w.sent[len(keep):])
	w.sent = keep
}

// settle blocks until every write sent so far on the JetStream context has
// an outcome.
func (w *Writer) settle(ctx context.Context) error {
	select {
	case <-w.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kvwrite: writes not acknowledged: %w", ctx.Err())
	}
}

// Failed is Wait's error when writes failed.
type Failed struct {
	Keys map[string]error // key → the error of a failed write
}

func (f *Failed) Error() string {
	keys := slices.Sorted(maps.Keys(f.Keys))
	first, more := f.Keys[keys[0]], ""
	if len(keys) > 3 {
		keys, more = keys[:3], fmt.Sprintf(" and %d more", len(f.Keys)-3)
	}
	return fmt.Sprintf("kvwrite: %d writes failed (%s%s): %v", len(f.Keys), strings.Join(keys, ", "), more, first)
}

// Wait blocks until every write sent before it has an outcome. It returns
// a *Failed naming the keys whose writes failed since the last Wait (each
// failure is reported once), or ctx's error.
func (w *Writer) Wait(ctx context.Context) error {
	if err := w.settle(ctx); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.collect()
	if len(w.sent) == 0 && cap(w.sent) > 2*collectAt {
		w.sent = nil // a burst's array is not kept
	}
	if len(w.failed) == 0 {
		return nil
	}
	f := &Failed{Keys: w.failed}
	w.failed = map[string]error{}
	return f
}
