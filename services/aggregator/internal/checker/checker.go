// Package checker is the aggregator's pure per-target health logic: the DPVS
// checker state machine, run once per observer (prober) of a target, and the
// target's verdict from a quorum of live observers.
//
// It does no I/O, starts no goroutines and never reads the wall clock: every
// Result carries its time and the caller passes `now` to Expire, SetParams,
// Votes and Quorum. One goroutine (the aggregator's) owns each Target.
//
// # Per observer: the DPVS checker (reference §3)
//
// An observer keeps its last raw verdict result (Up or Down), the length of
// the current streak of identical results and when the streak began. With
// `*-retry = N`, N+1 identical consecutive results change the observer's
// debounced state (the DPVS "notice"). The caller has already turned DPVS's
// 999999 into 0 and DPVS's 0 ("use the default") into the default, so 0 here
// means "the first result decides". The initial debounced state is
// Params.InitialState (Unknown by default). A result whose State is Unknown
// (PROCERR, a probe that could not run) is a failure statistic only: it never
// changes the streak or the state, but it does prove the observer alive.
// Alternating results never reach N+1 and so never change anything.
//
// When the retries change (SetParams) and an observer's current streak already
// has N+1 results for the new N, its debounced state changes at once (DPVS
// re-sends its notice). DPVS tests `new-retry <= count` there, one less than
// its own N+1 rule; we use N+1 in both places.
//
// # Per target: quorum of live observers
//
// An observer is stale once its last result is more than the stale window,
// StaleIntervals × Interval but at least MinStale, older than `now` (Observe
// uses the newest time it has seen). Stale
// observers never vote and are never counted as Down. Let n be the live
// observers that have a debounced Up or Down, and k = Params.Quorum, or
// ⌊n/2⌋+1 when Quorum is 0. The verdict is Down when at least k live observers
// say Down (and fewer than k say Up), Up symmetrically, and otherwise it holds
// its previous value: a contested target (votes between the watermarks, as in
// Rapid's L/H band) is never flipped by a minority. With no live observer that
// has a debounced state the verdict is Unknown (reason STALE), never Down. A
// target that has never had a result keeps Params.InitialState. With a single
// observer (the default) all of this reduces to the DPVS checker.
//
// Observers silent for twice the stale window are forgotten (Expire), so a
// target that moved between probers does not accumulate dead observers.
package checker

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unique"

	"github.com/healthmesh/healthmesh/shared/event"
)

// DefaultStaleIntervals is how many intervals an observer may stay silent
// before it stops voting.
const DefaultStaleIntervals = 3

// forgetStaleWindows is how many stale windows a silent observer is kept
// (visible in Votes as stale) before Expire forgets it.
const forgetStaleWindows = 2

// ErrParams is wrapped by every Params validation error.
var ErrParams = errors.New("checker: invalid params")

// ErrSnapshot is wrapped by every Restore error.
var ErrSnapshot = errors.New("checker: invalid snapshot")

// Params are one target's checker settings.
type Params struct {
	UpRetry        int // N: N+1 Up results in a row make an observer Up
	DownRetry      int // N: N+1 Down results in a row make an observer Down
	StaleIntervals int // 0 = DefaultStaleIntervals
	// MinStale is the shortest stale window: the time a dead prober's
	// targets take to reach a new owner and be probed (member TTL + 2
	// intervals), so that a reshard never makes a target Unknown.
	MinStale     time.Duration
	Quorum       int           // votes needed; 0 = majority of the live observers with a verdict
	Observers    int           // observers wanted (R, event.ObserversAll = all); only reported in Quorum
	Interval     time.Duration // probe interval; must be > 0
	InitialState event.State   // debounced state of a new observer; "" = Unknown
}

// Validate reports the first invalid field of p.
func (p Params) Validate() error {
	switch {
	case p.UpRetry < 0:
		return fmt.Errorf("%w: up-retry %d: must be >= 0", ErrParams, p.UpRetry)
	case p.DownRetry < 0:
		return fmt.Errorf("%w: down-retry %d: must be >= 0", ErrParams, p.DownRetry)
	case p.StaleIntervals < 0:
		return fmt.Errorf("%w: stale-intervals %d: must be >= 0", ErrParams, p.StaleIntervals)
	case p.MinStale < 0:
		return fmt.Errorf("%w: minimum stale window %v: must be >= 0", ErrParams, p.MinStale)
	case p.Quorum < 0:
		return fmt.Errorf("%w: quorum %d: must be >= 0 (0 = majority)", ErrParams, p.Quorum)
	case p.Observers < event.ObserversAll:
		return fmt.Errorf("%w: observers %d: must be >= 0 or %d (all)", ErrParams, p.Observers, event.ObserversAll)
	case p.Interval <= 0:
		return fmt.Errorf("%w: interval %v: must be > 0", ErrParams, p.Interval)
	case p.InitialState != "" && !p.InitialState.Valid():
		return fmt.Errorf("%w: initial-state %q: want up, down or unknown", ErrParams, p.InitialState)
	}
	return nil
}

func (p Params) initial() event.State {
	if p.InitialState == "" {
		return event.Unknown
	}
	return p.InitialState
}

func (p Params) retry(s event.State) int {
	if s == event.Up {
		return p.UpRetry
	}
	return p.DownRetry
}

// StaleWindow is how long an observer may stay silent before it stops
// voting: StaleIntervals × Interval, and at least MinStale.
func (p Params) StaleWindow() time.Duration {
	n := p.StaleIntervals
	if n == 0 {
		n = DefaultStaleIntervals
	}
	return max(time.Duration(n)*p.Interval, p.MinStale)
}

// staleAfter is the stale window in nanoseconds.
func (p Params) staleAfter() int64 { return int64(p.StaleWindow()) }

// Result is one probe result of one observer, as the aggregator received it.
type Result struct {
	Observer string
	State    event.State // Up, Down, or Unknown (probe error: not a verdict)
	Reason   event.Reason
	Detail   string
	TS       time.Time // probe time; the clock of this package (clamp a prober's future times to yours)
	Seq      uint64    // the observer's sequence number
}

// Change is a change of a target's verdict.
type Change struct {
	From, To event.State
	Reason   event.Reason // probe reason of the deciding result; STALE when evidence expired
	Detail   string
	At       time.Time
}

// Stats are DPVS's six counters (reference §7.1). For a checker: Up and Down
// count probe results, UpNoticed and DownNoticed the notices (a streak
// reaching retry+1, or a retry change that completes one), UpFailed the probe
// timeouts and DownFailed the probe errors among Unknown results. The topology
// package reuses the type for VS and VA rows.
type Stats struct {
	Up          uint64 `msgpack:"up"`
	Down        uint64 `msgpack:"down"`
	UpNoticed   uint64 `msgpack:"upn"`
	DownNoticed uint64 `msgpack:"downn"`
	UpFailed    uint64 `msgpack:"upf"`
	DownFailed  uint64 `msgpack:"downf"`
}

// String is DPVS's "up,down,up_notices,down_notices,fail1,fail2".
func (s Stats) String() string {
	return fmt.Sprintf("%d,%d,%d,%d,%d,%d", s.Up, s.Down, s.UpNoticed, s.DownNoticed, s.UpFailed, s.DownFailed)
}

func (s *Stats) add(o Stats) {
	s.Up += o.Up
	s.Down += o.Down
	s.UpNoticed += o.UpNoticed
	s.DownNoticed += o.DownNoticed
	s.UpFailed += o.UpFailed
	s.DownFailed += o.DownFailed
}

// observer is one prober's DPVS checker for this target. Times are Unix ns
// (0 = never) so the hot path compares integers.
type observer struct {
	id    string
	last  event.State // last Up/Down result; Unknown before the first
	count int         // length of the current streak of `last`
	since int64       // when the current streak began
	state event.State // debounced state
	ts    int64       // time of the last result of any kind
	seq   uint64

	reason event.Reason // last result of any kind (what Votes shows)
	detail string
	// streakReason is the last Up/Down result's reason: it completes the
	// streak when a retry change flips the observer.
	streakReason event.Reason
	streakDetail string
	// stateReason is the last result that agreed with the debounced state:
	// it is the "deciding result" of a verdict change.
	stateReason event.Reason
	stateDetail string
}

// Target is the checker of one probe target: a DPVS state machine per
// observer and the quorum verdict. The zero value is not usable; use New.
type Target struct {
	id string
	// p is shared by every target with the same params (most of a fleet):
	// 8 bytes a target instead of 72.
	p       unique.Handle[Params]
	stale   int64 // stale window, ns
	obs     []observer
	verdict event.State
	since   int64
	reason  event.Reason
	detail  string
	clock   int64 // newest time seen (results, Expire, SetParams)
	stats   Stats // cumulative over all observers, including forgotten ones
}

// New returns the checker of target id. Its verdict starts at
// p.InitialState (Unknown by default).
func New(id string, p Params) (*Target, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("target %s: %w", id, err)
	}
	return &Target{id: id, p: unique.Make(p), stale: p.staleAfter(), verdict: p.initial(), obs: make([]observer, 0, 1)}, nil
}

// ID returns the target id given to New.
func (t *Target) ID() string { return t.id }

// Params returns the current parameters.
func (t *Target) Params() Params { return t.p.Value() }

// Verdict returns the target's current verdict.
func (t *Target) Verdict() event.State { return t.verdict }

// Since returns when the current verdict began (zero if it never changed).
func (t *Target) Since() time.Time { return fromNS(t.since) }

// Stats returns the target's DPVS counters, summed over its observers.
func (t *Target) Stats() Stats { return t.stats }

// Observe feeds one result and returns the verdict change it causes, if any.
// A result that is not newer than the observer's last one (both its Seq and
// its TS not greater: a redelivery after a restart) is ignored. A State other
// than Up or Down counts as a probe error. It does not allocate except when
// an observer is seen for the first time.
func (t *Target) Observe(r Result) (Change, bool) {
	ts := toNS(r.TS)
	o := t.observer(r.Observer)
	if o.ts != 0 && ts <= o.ts && r.Seq <= o.seq {
		return Change{}, false
	}
	o.ts, o.seq, o.reason, o.detail = ts, r.Seq, r.Reason, r.Detail
	if ts > t.clock {
		t.clock = ts
	}
	switch r.State {
	case event.Up, event.Down:
		t.count(o, r)
	default:
		var s Stats
		if isTimeout(r.Reason) {
			s.UpFailed = 1
		} else {
			s.DownFailed = 1
		}
		t.stats.add(s)
	}
	return t.evaluate(t.clock)
}

// count is DPVS's doPostCheck for one Up/Down result.
func (t *Target) count(o *observer, r Result) {
	if r.State != o.last {
		o.last, o.count, o.since = r.State, 0, o.ts
	}
	o.count++
	o.streakReason, o.streakDetail = r.Reason, r.Detail
	var s Stats
	retry := t.p.Value().retry(r.State)
	notice := o.count == retry+1
	if r.State == event.Up {
		s.Up = 1
		if notice {
			s.UpNoticed = 1
		}
	} else {
		s.Down = 1
		if notice {
			s.DownNoticed = 1
		}
	}
	t.stats.add(s)
	if o.state != r.State && o.count > retry {
		o.state = r.State
	}
	if o.state == r.State {
		o.stateReason, o.stateDetail = r.Reason, r.Detail
	}
}

// observer returns the observer named id, adding it (in id order) if new.
// A linear scan: targets have a handful of observers.
func (t *Target) observer(id string) *observer {
	i := 0
	for ; i < len(t.obs); i++ {
		if t.obs[i].id >= id {
			break
		}
	}
	if i < len(t.obs) && t.obs[i].id == id {
		return &t.obs[i]
	}
	t.obs = append(t.obs, observer{})
	copy(t.obs[i+1:], t.obs[i:])
	t.obs[i] = observer{id: id, last: event.Unknown, state: t.p.Value().initial()}
	return &t.obs[i]
}

// Expire re-judges the target at now, so observers that went silent stop
// voting, and forgets observers silent for twice the stale window. It
// returns the resulting verdict change (reason STALE when the evidence ran
// out).
func (t *Target) Expire(now time.Time) (Change, bool) {
	if n := toNS(now); n > t.clock {
		t.clock = n
	}
	ch, ok := t.evaluate(t.clock)
	t.forget(t.clock)
	return ch, ok
}

func (t *Target) forget(now int64) {
	keep := t.obs[:0]
	for _, o := range t.obs {
		if now-o.ts <= forgetStaleWindows*t.stale {
			keep = append(keep, o)
		}
	}
	clear(t.obs[len(keep):])
	t.obs = keep
}

// SetParams changes the parameters (a configuration reload). The streaks are
// kept; an observer whose current streak already satisfies a changed retry
// changes its debounced state now, and the verdict is re-judged at now. A
// target with no result yet follows a new InitialState (reason CONFIG).
func (t *Target) SetParams(p Params, now time.Time) (Change, bool, error) {
	if err := p.Validate(); err != nil {
		return Change{}, false, fmt.Errorf("target %s: %w", t.id, err)
	}
	oldInitial := t.p.Value().initial()
	t.p, t.stale = unique.Make(p), p.staleAfter()
	for i := range t.obs {
		o := &t.obs[i]
		if o.last == event.Unknown || o.state == o.last || o.count <= p.retry(o.last) {
			continue
		}
		o.state = o.last
		o.stateReason, o.stateDetail = o.streakReason, o.streakDetail
		var s Stats
		if o.last == event.Up {
			s.UpNoticed = 1
		} else {
			s.DownNoticed = 1
		}
		t.stats.add(s)
	}
	if n := toNS(now); n > t.clock {
		t.clock = n
	}
	if len(t.obs) == 0 && t.since == 0 && t.verdict == oldInitial && p.initial() != oldInitial {
		return t.set(p.initial(), event.ReasonConfig, "initial-state changed", t.clock), true, nil
	}
	ch, ok := t.evaluate(t.clock)
	return ch, ok, nil
}

// evaluate re-judges the verdict at now and records a change.
func (t *Target) evaluate(now int64) (Change, bool) {
	to, reason, detail := t.decide(now)
	if to == t.verdict {
		return Change{}, false
	}
	return t.set(to, reason, detail, now), true
}

func (t *Target) set(to event.State, reason event.Reason, detail string, now int64) Change {
	ch := Change{From: t.verdict, To: to, Reason: reason, Detail: detail, At: fromNS(now)}
	t.verdict, t.since, t.reason, t.detail = to, now, reason, detail
	return ch
}

// decide computes the verdict at now. Reason and detail are those of the
// freshest live observer voting for the new verdict.
func (t *Target) decide(now int64) (event.State, event.Reason, string) {
	if len(t.obs) == 0 {
		return t.verdict, t.reason, t.detail
	}
	up, down, upAt, downAt := 0, 0, -1, -1
	for i := range t.obs {
		o := &t.obs[i]
		if now-o.ts > t.stale {
			continue
		}
		switch o.state {
		case event.Up:
			up++
			if upAt < 0 || o.ts > t.obs[upAt].ts {
				upAt = i
			}
		case event.Down:
			down++
			if downAt < 0 || o.ts > t.obs[downAt].ts {
				downAt = i
			}
		}
	}
	n := up + down
	if n == 0 {
		return event.Unknown, event.ReasonStale, t.staleDetail(now)
	}
	k := t.need(n)
	switch {
	case down >= k && up < k:
		return event.Down, t.obs[downAt].stateReason, t.obs[downAt].stateDetail
	case up >= k && down < k:
		return event.Up, t.obs[upAt].stateReason, t.obs[upAt].stateDetail
	}
	return t.verdict, t.reason, t.detail
}

func (t *Target) staleDetail(now int64) string {
	stale := 0
	for i := range t.obs {
		if now-t.obs[i].ts > t.stale {
			stale++
		}
	}
	return fmt.Sprintf("no live observer with a verdict (%d of %d stale)", stale, len(t.obs))
}

// need is the number of votes a verdict needs among n voting observers.
func (t *Target) need(n int) int {
	if q := t.p.Value().Quorum; q > 0 {
		return q
	}
	return n/2 + 1
}

// Votes returns every known observer's standing at now, in observer order.
func (t *Target) Votes(now time.Time) []event.Vote {
	at := max(toNS(now), t.clock)
	votes := make([]event.Vote, len(t.obs))
	for i := range t.obs {
		o := &t.obs[i]
		votes[i] = event.Vote{
			Observer: o.id, State: o.state, Last: o.last, Count: o.count,
			TS: o.ts, Reason: o.reason, Stale: at-o.ts > t.stale,
		}
	}
	return votes
}

// Quorum returns how the verdict is reached at now.
func (t *Target) Quorum(now time.Time) event.Quorum {
	at := max(toNS(now), t.clock)
	q := event.Quorum{Observers: t.p.Value().Observers}
	for i := range t.obs {
		o := &t.obs[i]
		if at-o.ts > t.stale {
			continue
		}
		q.Live++
		switch o.state {
		case event.Up:
			q.Up++
		case event.Down:
			q.Down++
		}
	}
	q.Need = t.need(q.Up + q.Down)
	return q
}

// isTimeout tells a probe timeout (DPVS's watchdog, counted in UpFailed)
// from any other probe error (DownFailed) among Unknown results.
func isTimeout(r event.Reason) bool { return strings.HasSuffix(string(r), "TOUT") }

func toNS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNS(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
