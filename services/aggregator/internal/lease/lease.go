// Package lease elects the one active aggregator with a lease in the KV
// bucket hm_leader: Create to campaign, compare-and-set Update to renew, so a
// stale leader's renewal fails and it stands down. The revision at which a
// leader won is its term, a fencing token carried by every transition it
// publishes; KV revisions only grow, so terms do too.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Options configures Run.
type Options struct {
	KV  jetstream.KeyValue // the hm_leader bucket (its TTL is the lease TTL)
	Key string             // lease key
	ID  string             // this candidate's identity
	TTL time.Duration      // the bucket TTL; renewals every TTL/3
	Log zerolog.Logger
}

// Term describes one tenure.
type Term struct {
	Term uint64    // revision at which the lease was won
	Won  time.Time // when
}

// Run campaigns until ctx ends. Each time this candidate wins, lead is called
// with a context that is cancelled as soon as the lease is lost (a renewal
// fails or cannot be made in time); Run waits for lead to return before it
// campaigns again. On ctx end a held lease is released at once (deleted, so a
// standby takes over without waiting for the TTL).
func Run(ctx context.Context, o Options, lead func(ctx context.Context, t Term)) error {
	if o.TTL <= 0 {
		return errors.New("lease: TTL must be > 0")
	}
	for {
		rev, err := o.KV.Create(ctx, o.Key, []byte(o.ID))
		switch {
		case err == nil:
			o.Log.Info().Uint64("term", rev).Msg("lease won: active")
			released, cur := hold(ctx, o, rev, lead)
			if ctx.Err() != nil {
				if !released {
					release(o, cur)
				}
				return nil
			}
			o.Log.Warn().Uint64("term", rev).Msg("lease lost: standby")
		case errors.Is(err, jetstream.ErrKeyExists):
			// Someone else leads: wait for the key to go (TTL marker or a
			// release), or re-check periodically.
			if err := waitVacant(ctx, o); err != nil {
				return nil
			}
		default:
			if ctx.Err() != nil {
				return nil
			}
			o.Log.Warn().Err(err).Msg("lease campaign failed")
			if !sleep(ctx, o.TTL/3) {
				return nil
			}
		}
	}
}

// hold renews the lease while lead runs. It returns whether the lease was
// released already, and the lease's latest revision.
func hold(ctx context.Context, o Options, rev uint64, lead func(context.Context, Term)) (bool, uint64) {
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}) // closed when lead returns
	go func() {
		defer close(done)
		lead(lctx, Term{Term: rev, Won: time.Now()})
	}()
	defer func() { cancel(); <-done }()

	tick := time.NewTicker(o.TTL / 3)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return false, rev
		case <-done:
			// lead gave up on its own: hand the lease over.
			release(o, rev)
			return true, rev
		case <-tick.C:
			rctx, rcancel := context.WithTimeout(ctx, o.TTL/3)
			nrev, err := o.KV.Update(rctx, o.Key, []byte(o.ID), rev)
			rcancel()
			if err != nil {
				if ctx.Err() != nil {
					return false, rev
				}
				// A transient error is survivable while the lease has not
				// expired; a revision mismatch is not.
				if errors.Is(err, jetstream.ErrKeyExists) || isWrongRevision(err) || time.Since(last) > o.TTL*2/3 {
					o.Log.Warn().Err(err).Msg("lease renewal failed")
					return true, rev
				}
				continue
			}
			rev, last = nrev, time.Now()
		}
	}
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

func release(o Options, rev uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Only delete our own lease: LastRevision fences it.
	if err := o.KV.Delete(ctx, o.Key, jetstream.LastRevision(rev)); err != nil {
		o.Log.Debug().Err(err).Msg("lease release")
	}
}

// waitVacant blocks until the lease key is deleted or expires, or a re-check
// interval passes. It returns ctx's error when ctx ends.
func waitVacant(ctx context.Context, o Options) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := o.KV.Watch(wctx, o.Key, jetstream.UpdatesOnly())
	if err != nil {
		if !sleep(ctx, o.TTL/3) {
			return ctx.Err()
		}
		return nil
	}
	defer w.Stop()
	// Re-check regularly in case a marker is missed (e.g. across a NATS restart).
	recheck := time.NewTimer(o.TTL)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-recheck.C:
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e != nil && (e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge) {
				return nil
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Holder reads who holds the lease now ("" when vacant).
func Holder(ctx context.Context, kv jetstream.KeyValue, key string) (id string, term uint64, err error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("lease: %w", err)
	}
	return string(e.Value()), e.Revision(), nil
}
