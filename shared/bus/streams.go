package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// Settings are the JetStream layout's tunables. The zero value of any field
// means its default (see Defaults).
type Settings struct {
	Replicas int // 1 on one server, 3 on a cluster

	// Results is how probe results travel: "" or ResultsJetStream (the
	// HM_RESULTS stream), or ResultsCore (core NATS only, no stream).
	Results string

	ResultsMaxAge   time.Duration // raw results kept (default 1h)
	ResultsMaxBytes int64         // cap on raw results (default 1 GiB); oldest discarded
	EventsMaxAge    time.Duration // history kept (default 30 days)
	EventsMaxBytes  int64         // cap on history (default 4 GiB)
	EventsDedup     time.Duration // Nats-Msg-Id duplicate window of HM_EVENTS (default 10m)

	MemberTTL time.Duration // a prober that stops heartbeating is gone after this (default 3s)
	LeaderTTL time.Duration // aggregator lease (default 5s)
}

// Defaults returns s with every zero field set to its default.
func (s Settings) Defaults() Settings {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defB := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if s.Replicas <= 0 {
		s.Replicas = 1
	}
	def(&s.ResultsMaxAge, time.Hour)
	defB(&s.ResultsMaxBytes, 1<<30)
	def(&s.EventsMaxAge, 30*24*time.Hour)
	defB(&s.EventsMaxBytes, 4<<30)
	def(&s.EventsDedup, 10*time.Minute)
	def(&s.MemberTTL, 3*time.Second)
	def(&s.LeaderTTL, 5*time.Second)
	return s
}

// Results modes (Settings.Results).
//
// With ResultsJetStream every result is stored in HM_RESULTS: probers publish
// with acks (back-pressure), the aggregator reads a durable consumer, so a
// failover loses no result, and the raw results behind a transition can be
// replayed (hmctl history --results).
//
// With ResultsCore there is no HM_RESULTS stream: probers publish on core
// NATS and the active aggregator subscribes. NATS stores nothing per result,
// which saves most of its CPU and memory at scale; the price is that the
// results in flight while the aggregator fails over or restarts are lost
// (the checkpointed streaks are kept: the next probes continue them) and
// raw results cannot be replayed. Probers need no setting: they publish to
// the stream when it exists and on core NATS when it does not.
const (
	ResultsJetStream = "jetstream"
	ResultsCore      = "core"
)

// StreamConfigs returns the stream definitions for a subject space.
func StreamConfigs(sp subject.Space, s Settings) (results, events jetstream.StreamConfig) {
	s = s.Defaults()
	results = jetstream.StreamConfig{
		Name:        sp.StreamResults(),
		Description: "healthmesh raw probe results (short retention, replay behind transitions)",
		Subjects:    []string{sp.ResultsAll()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      s.ResultsMaxAge,
		MaxBytes:    s.ResultsMaxBytes,
		Discard:     jetstream.DiscardOld,
		// Results carry no Nats-Msg-Id (a lost or repeated result is healed
		// by the next probe); a short window keeps the server's dedup map small.
		Duplicates:  5 * time.Second,
		Replicas:    s.Replicas,
		AllowDirect: true,
	}
	events = jetstream.StreamConfig{
		Name:        sp.StreamEvents(),
		Description: "healthmesh transitions, action outcomes and audit records (append-only history)",
		Subjects:    []string{sp.EventsAll(), sp.ActionsAll(), sp.AuditAll()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      s.EventsMaxAge,
		MaxBytes:    s.EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  s.EventsDedup,
		Replicas:    s.Replicas,
		DenyDelete:  true,
		DenyPurge:   true,
		Compression: jetstream.S2Compression,
		AllowDirect: true,
	}
	return results, events
}

// BucketConfigs returns the KV bucket definitions for a subject space.
func BucketConfigs(sp subject.Space, s Settings) (targets, members, leader, state jetstream.KeyValueConfig) {
	s = s.Defaults()
	targets = jetstream.KeyValueConfig{
		Bucket:      sp.BucketTargets(),
		Description: "healthmesh desired probe targets (written by the aggregator)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
	members = jetstream.KeyValueConfig{
		Bucket:      sp.BucketMembers(),
		Description: "healthmesh prober heartbeats",
		History:     1,
		TTL:         s.MemberTTL,
		// Markers make an expired heartbeat visible to watchers as a delete.
		LimitMarkerTTL: markerTTL(s.MemberTTL),
		// File storage: a memory bucket vanishes when a single server
		// restarts, and nothing would re-create it for the probers.
		Storage:  jetstream.FileStorage,
		Replicas: s.Replicas,
	}
	leader = jetstream.KeyValueConfig{
		Bucket:         sp.BucketLeader(),
		Description:    "healthmesh aggregator lease (revision-fenced)",
		History:        1,
		TTL:            s.LeaderTTL,
		LimitMarkerTTL: markerTTL(s.LeaderTTL),
		Storage:        jetstream.FileStorage,
		Replicas:       s.Replicas,
	}
	state = jetstream.KeyValueConfig{
		Bucket:      sp.BucketState(),
		Description: "healthmesh current state of every object (no TTL: outlives history)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
	}
	return targets, members, leader, state
}

func markerTTL(ttl time.Duration) time.Duration {
	if ttl < time.Second {
		return time.Second
	}
	return ttl
}

// Layout holds handles on the streams and buckets.
type Layout struct {
	Space subject.Space
	// Results is nil in the ResultsCore mode (no results stream).
	Results jetstream.Stream
	Events  jetstream.Stream
	Targets jetstream.KeyValue
	Members jetstream.KeyValue
	Leader  jetstream.KeyValue
	State   jetstream.KeyValue
}

// Ensure creates or updates the streams and buckets so they match s. It is
// idempotent: every service may call it at start. In a fresh cluster the
// JetStream meta leader may not be elected yet, so it retries until ctx ends.
func Ensure(ctx context.Context, js jetstream.JetStream, sp subject.Space, s Settings) (*Layout, error) {
	if s.Results != "" && s.Results != ResultsJetStream && s.Results != ResultsCore {
		return nil, fmt.Errorf("bus: results mode %q: want %q or %q", s.Results, ResultsJetStream, ResultsCore)
	}
	var l *Layout
	var err error
	for {
		// Each attempt gets its own short deadline: a request sent before a
		// fresh cluster has a JetStream leader is never answered.
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		l, err = ensureOnce(actx, js, sp, s)
		cancel()
		if err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: ensure layout: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func ensureOnce(ctx context.Context, js jetstream.JetStream, sp subject.Space, s Settings) (*Layout, error) {
	l := &Layout{Space: sp}
	rc, ec := StreamConfigs(sp, s)
	var err error
	switch s.Results {
	case "", ResultsJetStream:
		if l.Results, err = ensureStream(ctx, js, rc); err != nil {
			return nil, fmt.Errorf("bus: stream %s: %w", rc.Name, err)
		}
	default: // ResultsCore
		// A stream left from the jetstream mode would keep storing every
		// result, and probers would keep publishing to it with acks.
		if err := js.DeleteStream(ctx, rc.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("bus: results %s: delete stream %s: %w", ResultsCore, rc.Name, err)
		}
	}
	if l.Events, err = ensureStream(ctx, js, ec); err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", ec.Name, err)
	}
	tc, mc, lc, sc := BucketConfigs(sp, s)
	for _, b := range []struct {
		cfg jetstream.KeyValueConfig
		dst *jetstream.KeyValue
	}{{tc, &l.Targets}, {mc, &l.Members}, {lc, &l.Leader}, {sc, &l.State}} {
		kv, err := ensureBucket(ctx, js, b.cfg)
		if err != nil {
			return nil, fmt.Errorf("bus: bucket %s: %w", b.cfg.Bucket, err)
		}
		*b.dst = kv
	}
	return l, nil
}

// ensureStream returns the stream, updating it only when its configuration
// differs from cfg. Every service start called an update before: a needless
// write on the server, and one that races (inside nats-server 2.15, seen by
// the race detector) with a consumer being created on the same stream.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if s, err := js.Stream(ctx, cfg.Name); err == nil && sameStream(s.CachedInfo().Config, cfg) {
		return s, nil
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// sameStream compares the fields StreamConfigs sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return have.Description == want.Description && slices.Equal(have.Subjects, want.Subjects) &&
		have.Retention == want.Retention && have.Storage == want.Storage && have.MaxAge == want.MaxAge &&
		have.MaxBytes == want.MaxBytes && have.Discard == want.Discard && have.Duplicates == want.Duplicates &&
		have.Replicas == want.Replicas && have.DenyDelete == want.DenyDelete && have.DenyPurge == want.DenyPurge &&
		have.Compression == want.Compression && have.AllowDirect == want.AllowDirect
}

// ensureBucket is ensureStream for a KV bucket.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if kv, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
		if st, err := kv.Status(ctx); err == nil {
			if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && sameBucket(bs.Config(), cfg) {
				return kv, nil
			}
		}
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// sameBucket compares the fields BucketConfigs sets.
func sameBucket(have, want jetstream.KeyValueConfig) bool {
	return have.Description == want.Description && have.History == max(want.History, 1) && have.TTL == want.TTL &&
		have.Storage == want.Storage && have.Replicas == max(want.Replicas, 1) && have.LimitMarkerTTL == want.LimitMarkerTTL
}

// Open binds to the existing layout without changing it (for clients such as
// hmctl with read-only permissions). Results is nil when the results stream
// does not exist (ResultsCore).
func Open(ctx context.Context, js jetstream.JetStream, sp subject.Space) (*Layout, error) {
	l := &Layout{Space: sp}
	var err error
	if l.Results, err = js.Stream(ctx, sp.StreamResults()); errors.Is(err, jetstream.ErrStreamNotFound) {
		l.Results = nil
	} else if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", sp.StreamResults(), err)
	}
	if l.Events, err = js.Stream(ctx, sp.StreamEvents()); err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", sp.StreamEvents(), err)
	}
	for _, b := range []struct {
		name string
		dst  *jetstream.KeyValue
	}{{sp.BucketTargets(), &l.Targets}, {sp.BucketMembers(), &l.Members}, {sp.BucketLeader(), &l.Leader}, {sp.BucketState(), &l.State}} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, fmt.Errorf("bus: bucket %s: %w", b.name, err)
		}
		*b.dst = kv
	}
	return l, nil
}

// WaitOpen is Open, retried until the layout exists or ctx ends: roles that
// do not own the layout (probers, actioners) start before the aggregator has
// created it. It logs once while waiting.
func WaitOpen(ctx context.Context, js jetstream.JetStream, sp subject.Space, log zerolog.Logger) (*Layout, error) {
	warned := false
	for {
		l, err := Open(ctx, js, sp)
		if err == nil {
			return l, nil
		}
		if !warned {
			log.Warn().Err(err).Msg("waiting for the healthmesh streams and buckets (is an aggregator running?)")
			warned = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: wait for layout: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
