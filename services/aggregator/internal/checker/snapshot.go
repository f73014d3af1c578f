package checker

import (
	"fmt"
	"hash/maphash"

	"github.com/healthmesh/healthmesh/shared/event"
)

// TargetSnapshot is a Target's complete state, stored by the aggregator in KV
// hm_state so that a restart resumes every streak exactly. Times are Unix ns
// (0 = never). Params are not included: they come from the configuration.
type TargetSnapshot struct {
	ID        string             `msgpack:"id"`
	Verdict   event.State        `msgpack:"st"`
	Since     int64              `msgpack:"since"`
	Reason    event.Reason       `msgpack:"r,omitempty"`
	Detail    string             `msgpack:"d,omitempty"`
	Clock     int64              `msgpack:"clock"`
	Stats     Stats              `msgpack:"stats"`
	Observers []ObserverSnapshot `msgpack:"obs,omitempty"`
}

// ObserverSnapshot is one observer's checker state.
type ObserverSnapshot struct {
	ID           string       `msgpack:"o"`
	Last         event.State  `msgpack:"last"`
	Count        int          `msgpack:"n"`
	Since        int64        `msgpack:"since"`
	State        event.State  `msgpack:"st"`
	TS           int64        `msgpack:"ts"`
	Seq          uint64       `msgpack:"seq"`
	Reason       event.Reason `msgpack:"r,omitempty"`
	Detail       string       `msgpack:"d,omitempty"`
	StreakReason event.Reason `msgpack:"sr,omitempty"`
	StreakDetail string       `msgpack:"sd,omitempty"`
	StateReason  event.Reason `msgpack:"vr,omitempty"`
	StateDetail  string       `msgpack:"vd,omitempty"`
	// Observers keep no counters of their own (nothing read them; the
	// target's sum is what DPVS shows). Older snapshots carry a "stats"
	// field per observer; decoding skips it.
}

// Snapshot returns the target's state.
func (t *Target) Snapshot() TargetSnapshot {
	s := TargetSnapshot{
		ID: t.id, Verdict: t.verdict, Since: t.since, Reason: t.reason, Detail: t.detail,
		Clock: t.clock, Stats: t.stats,
	}
	if len(t.obs) > 0 {
		s.Observers = make([]ObserverSnapshot, len(t.obs))
	}
	for i, o := range t.obs {
		s.Observers[i] = ObserverSnapshot{
			ID: o.id, Last: o.last, Count: o.count, Since: o.since, State: o.state, TS: o.ts, Seq: o.seq,
			Reason: o.reason, Detail: o.detail, StreakReason: o.streakReason, StreakDetail: o.streakDetail,
			StateReason: o.stateReason, StateDetail: o.stateDetail,
		}
	}
	return s
}

// Restore replaces the target's state with s. It never produces a Change:
// the verdict is the one recorded, even if the current Params would judge
// differently; the next Observe, Expire or SetParams re-judges. A snapshot of
// another target or with invalid fields is refused and nothing is changed.
func (t *Target) Restore(s TargetSnapshot) error {
	if s.ID != t.id {
		return fmt.Errorf("%w: snapshot of target %q restored into %q", ErrSnapshot, s.ID, t.id)
	}
	if !s.Verdict.Valid() {
		return fmt.Errorf("%w: target %s: verdict %q", ErrSnapshot, s.ID, s.Verdict)
	}
	obs := make([]observer, len(s.Observers))
	for i, o := range s.Observers {
		switch {
		case i > 0 && o.ID <= s.Observers[i-1].ID:
			return fmt.Errorf("%w: target %s: observer %q: not in strictly increasing id order", ErrSnapshot, s.ID, o.ID)
		case !o.Last.Valid() || !o.State.Valid():
			return fmt.Errorf("%w: target %s: observer %q: state %q / last %q", ErrSnapshot, s.ID, o.ID, o.State, o.Last)
		case o.Count < 0 || (o.Last == event.Unknown) != (o.Count == 0):
			return fmt.Errorf("%w: target %s: observer %q: streak of %d %q results", ErrSnapshot, s.ID, o.ID, o.Count, o.Last)
		}
		obs[i] = observer{
			id: o.ID, last: o.Last, count: o.Count, since: o.Since, state: o.State, ts: o.TS, seq: o.Seq,
			reason: o.Reason, detail: o.Detail, streakReason: o.StreakReason, streakDetail: o.StreakDetail,
			stateReason: o.StateReason, stateDetail: o.StateDetail,
		}
	}
	t.obs, t.verdict, t.since, t.reason, t.detail = obs, s.Verdict, s.Since, s.Reason, s.Detail
	t.clock, t.stats = s.Clock, s.Stats
	return nil
}

// SemanticDigest digests the target's state without what changes with every
// result of a steady target (times, sequence numbers, counters, the last
// result's words), with streak counts capped at cap (the most results in a
// row that change a decision: max(up-retry, down-retry) + 1). Two targets with
// the same digest decide every later input the same way, so a checkpoint need
// not store a target whose digest did not change. It neither allocates nor
// encodes: the aggregator asks it of every target at every checkpoint.
func (t *Target) SemanticDigest(seed maphash.Seed, cap int) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	str := func(s string) {
		maphash.WriteComparable(&h, len(s))
		h.WriteString(s)
	}
	str(t.id)
	str(string(t.verdict))
	maphash.WriteComparable(&h, t.since)
	str(string(t.reason))
	str(t.detail)
	maphash.WriteComparable(&h, len(t.obs))
	for i := range t.obs {
		o := &t.obs[i]
		str(o.id)
		str(string(o.last))
		maphash.WriteComparable(&h, min(o.count, cap))
		maphash.WriteComparable(&h, o.since)
		str(string(o.state))
		str(string(o.streakReason))
		str(o.streakDetail)
		str(string(o.stateReason))
		str(o.stateDetail)
	}
	return h.Sum64()
}
