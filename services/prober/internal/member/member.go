// Package member keeps a prober registered in KV hm_members (a heartbeat Put
// every TTL/3 on a bucket whose TTL removes silent members) and keeps the
// live membership as every prober sees it, from a watch of that bucket.
package member

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/kvwatch"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Registry is the live membership, updated by Watch.
type Registry struct {
	mu      sync.Mutex
	members map[string]event.Member // by key
	version uint64                  // bumped on every change
	changed chan struct{}           // closed and replaced on every change
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{members: map[string]event.Member{}, changed: make(chan struct{})}
}

// Snapshot returns the live members sorted by ID, and the registry version.
func (r *Registry) Snapshot() ([]event.Member, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]event.Member, 0, len(r.members))
	for _, m := range r.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, r.version
}

// Changed returns a channel closed at the next change.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Registry) set(key string, m *event.Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.members[key]
	switch {
	case m == nil && !had:
		return
	case m == nil:
		delete(r.members, key)
	case had && sameMembership(old, *m):
		r.members[key] = *m // heartbeat only: no ownership change
		return
	default:
		r.members[key] = *m
	}
	r.version++
	close(r.changed)
	r.changed = make(chan struct{})
}

// sameMembership reports whether two registrations of one member place
// targets the same way (a heartbeat changes only timestamps and counts).
func sameMembership(a, b event.Member) bool {
	if a.ID != b.ID || a.Node != b.Node || a.Zone != b.Zone || a.Leaving != b.Leaving || len(a.Labels) != len(b.Labels) {
		return false
	}
	for k, v := range a.Labels {
		if b.Labels[k] != v {
			return false
		}
	}
	return true
}

// Watch follows the members bucket until ctx ends, keeping r current. A
// member whose heartbeat expires disappears (the bucket's TTL marker arrives
// as a delete); one that marks itself Leaving is dropped at once.
func Watch(ctx context.Context, kv jetstream.KeyValue, r *Registry, log zerolog.Logger) error {
	return kvwatch.Watch(ctx, kv, kvwatch.Handler[event.Member]{
		Put: func(key string, m *event.Member, _ uint64) {
			if m.ID == "" || m.Leaving {
				r.set(key, nil)
				return
			}
			r.set(key, m)
		},
		Delete: func(key string) { r.set(key, nil) },
	}, log)
}

// Heartbeat registers self and refreshes it every interval until ctx ends;
// then it deletes the key so the others re-shard at once (a clean stop hands
// the targets over without waiting for the TTL). owned is read at each beat.
func Heartbeat(ctx context.Context, kv jetstream.KeyValue, self event.Member, interval time.Duration, owned func() int, log zerolog.Logger) error {
	key := subject.KeyMember(self.ID)
	self.V = event.Version
	if self.Started == 0 {
		self.Started = time.Now().UnixNano()
	}
	beat := func() {
		self.Heartbeat = time.Now().UnixNano()
		if owned != nil {
			self.Owned = owned()
		}
		b, err := event.Marshal(&self)
		if err != nil {
			log.Error().Err(err).Msg("member encode")
			return
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		if _, err := kv.Put(pctx, key, b); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Msg("heartbeat failed")
		}
	}
	beat()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := kv.Delete(dctx, key); err != nil {
				log.Debug().Err(err).Msg("member deregistration")
			}
			return nil
		case <-t.C:
			beat()
		}
	}
}
