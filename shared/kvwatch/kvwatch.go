// Package kvwatch follows a JetStream KV bucket and reports decoded puts and
// deletes to a handler, surviving watch failures and NATS restarts: after a
// restart the initial values are compared with what was known, so keys that
// vanished meanwhile are reported as deleted.
package kvwatch

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/event"
)

// Handler receives the bucket's changes, from one goroutine, in order.
type Handler[T any] struct {
	// Put is called for every live value (initial and updates).
	Put func(key string, v *T, rev uint64)
	// Delete is called when a key is deleted, purged or expires (TTL marker).
	Delete func(key string)
	// Synced is called after each (re)load of the initial values.
	Synced func()
	// Filter, when set, limits the watch to keys matching it ("backend.>").
	Filter string
}

// Watch follows kv until ctx ends. A value that does not decode into T is
// logged and skipped (counted as malformed by the caller's own checks, if any).
func Watch[T any](ctx context.Context, kv jetstream.KeyValue, h Handler[T], log zerolog.Logger) error {
	known := map[string]bool{}
	for {
		err := once(ctx, kv, h, known, log)
		if ctx.Err() != nil {
			return nil
		}
		log.Warn().Err(err).Str("bucket", kv.Bucket()).Msg("kv watch ended; restarting")
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func once[T any](ctx context.Context, kv jetstream.KeyValue, h Handler[T], known map[string]bool, log zerolog.Logger) error {
	var (
		w   jetstream.KeyWatcher
		err error
	)
	if h.Filter != "" {
		w, err = kv.Watch(ctx, h.Filter)
	} else {
		w, err = kv.WatchAll(ctx)
	}
	if err != nil {
		return err
	}
	defer w.Stop()
	seen := map[string]bool{}
	initial := true
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				if initial {
					initial = false
					for k := range known {
						if !seen[k] {
							delete(known, k)
							if h.Delete != nil {
								h.Delete(k)
							}
						}
					}
					seen = nil
					if h.Synced != nil {
						h.Synced()
					}
				}
				continue
			}
			key := e.Key()
			if initial {
				seen[key] = true
			}
			if e.Operation() != jetstream.KeyValuePut {
				if known[key] {
					delete(known, key)
					if h.Delete != nil {
						h.Delete(key)
					}
				}
				continue
			}
			v := new(T)
			if err := event.Unmarshal(e.Value(), v); err != nil {
				log.Warn().Err(err).Str("bucket", kv.Bucket()).Str("key", key).Msg("malformed value skipped")
				continue
			}
			known[key] = true
			if h.Put != nil {
				h.Put(key, v, e.Revision())
			}
		}
	}
}
