// Package ledger keeps, for every backend and VA the actioner serves, what
// the load balancer should look like (the last transition, from KV hm_state
// and from the events themselves), the highest HM_EVENTS sequence delivered
// for it (so an older event is never applied after a newer one), and how
// the last action on it went (so the periodic re-assertion knows what to
// retry). Objects are named by their hm_state key: "backend.<vs>.<backend>"
// or "va.<va>", which is also the event subject after "<prefix>.event.".
package ledger

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"unique"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// ErrKey is wrapped by ParseKey's errors.
var ErrKey = errors.New("invalid object key")

// Status is what is known about the desired state of an object on this node.
type Status uint8

// Statuses.
const (
	// Unconfirmed: this process has not applied (or checked) the desired
	// state yet, e.g. it came from hm_state at start or the consumer has not
	// reached its event.
	Unconfirmed Status = iota
	// Applied: the last attempt for the desired state succeeded.
	Applied
	// Failed: the last attempt failed and is worth retrying.
	Failed
	// Rejected: the last attempt failed permanently; it is tried again only
	// when the desired state changes.
	Rejected
)

func (s Status) String() string {
	switch s {
	case Applied:
		return "applied"
	case Failed:
		return "failed"
	case Rejected:
		return "rejected"
	}
	return "unconfirmed"
}

// Object is one object's entry.
type Object struct {
	Key      string
	Desired  *Desired // never modified once stored
	Status   Status
	Failures int // consecutive failed attempts for the desired state
	// Initial is set for objects first known before hm_state's initial load
	// of their kind completed: the state this process starts from.
	Initial bool
	// Changed is the ledger's Mark when the desired state last changed or
	// an action's outcome was last recorded.
	Changed uint64
}

// Desired is what an object's last transition asks of the load balancer:
// the part of the transition the ledger keeps for as long as the object
// exists. Its votes, counts and provenance are in HM_EVENTS; holding every
// decoded transition cost about 1 KiB per backend.
type Desired struct {
	Gen      uint64
	From, To event.State
	Reason   event.Reason
	// Action is the actioner asked for, nil for none; objects asking for
	// equal specs share one.
	Action *event.ActionSpec
	// Apply is set for backend transitions that say what to set: weight,
	// inhibited flag, and the dpvs-agent VS version the decision was made
	// against.
	Apply     bool
	Weight    uint16
	Inhibited bool
	Version   string
}

// Ledger is safe for concurrent use.
type Ledger struct {
	mu      sync.Mutex
	seen    map[string]uint64   // key → highest stream sequence delivered
	objects map[string]*Object  // key → entry with a desired state
	synced  map[event.Kind]bool // kinds whose hm_state entries have been loaded once

	specs    map[string]*event.ActionSpec // by Key: the shared copies
	specsMax int                          // len(specs) that makes desired drop the unused ones

	mark uint64 // counts new desired states and recorded outcomes
}

// desired builds the entry kept for t.
func (l *Ledger) desired(t *event.Transition) *Desired {
	d := &Desired{Gen: t.Gen, From: event.State(name(string(t.From))), To: event.State(name(string(t.To))),
		Reason: event.Reason(name(string(t.Reason)))}
	if a := t.Apply; a != nil {
		d.Apply, d.Weight, d.Inhibited, d.Version = true, a.Weight, a.Inhibited, a.Version
	}
	if t.Action != nil {
		d.Action = l.spec(t.Action)
	}
	return d
}

// name returns the one copy of s that the ledger's entries share (states
// and reason codes are a small set; each decoded transition brings its own).
func name(s string) string { return unique.Make(s).Value() }

// spec returns the shared copy of a (equal specs, one copy). When the
// table has doubled since it was last swept, the specs no object uses any
// more (a configuration changed them) are dropped.
func (l *Ledger) spec(a *event.ActionSpec) *event.ActionSpec {
	k := a.Key()
	if c, ok := l.specs[k]; ok {
		return c
	}
	if len(l.specs) >= l.specsMax {
		used := map[*event.ActionSpec]bool{}
		for _, o := range l.objects {
			if o.Desired != nil && o.Desired.Action != nil {
				used[o.Desired.Action] = true
			}
		}
		maps.DeleteFunc(l.specs, func(_ string, s *event.ActionSpec) bool { return !used[s] })
		l.specsMax = max(64, 2*len(l.specs))
	}
	l.specs[k] = a
	return a
}

// New returns an empty ledger.
func New() *Ledger {
	return &Ledger{
		seen:     map[string]uint64{},
		objects:  map[string]*Object{},
		synced:   map[event.Kind]bool{},
		specs:    map[string]*event.ActionSpec{},
		specsMax: 64,
	}
}

// Observe records that the event with stream sequence seq was delivered
// for key and reports whether it is stale: a newer event of the same object
// was delivered before. The same sequence again (a redelivery of the newest
// event) is not stale.
func (l *Ledger) Observe(key string, seq uint64) (stale bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < l.seen[key] {
		return true
	}
	l.seen[key] = seq
	return false
}

// Outdated reports whether the ledger already holds a newer desired state
// of key than generation gen: hm_state is written after the event stream,
// so a newer generation there means a newer event exists, and applying an
// older one first would only make the load balancer flap through history
// (an actioner catching up on a backlog).
func (l *Ledger) Outdated(key string, gen uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.objects[key]
	return o != nil && o.Desired != nil && o.Desired.Gen > gen
}

// Want makes t the desired state of key unless the ledger already holds a
// newer one (a higher per-object generation): the KV watch and the consumer
// both call it and either may be ahead. This relies on the aggregator's
// contract that an object's generation only grows (its Nats-Msg-Id
// deduplication relies on it too). A new generation resets the status
// to Unconfirmed.
func (l *Ledger) Want(key string, t *event.Transition) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.objects[key]
	switch {
	case o == nil:
		l.mark++
		l.objects[key] = &Object{Key: key, Desired: l.desired(t), Initial: !l.synced[kindOf(key)], Changed: l.mark}
	case o.Desired == nil || t.Gen > o.Desired.Gen:
		l.mark++
		o.Desired, o.Status, o.Failures, o.Changed = l.desired(t), Unconfirmed, 0, l.mark
	}
}

// Mark returns a number that grows with every new desired state and every
// recorded outcome: an object whose Changed is above a mark taken earlier
// has been acted on since, so what was read from the load balancer after
// the mark was taken may predate that action.
func (l *Ledger) Mark() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mark
}

// Forget drops the desired state of key (it left hm_state). The sequence
// seen is kept, so a late redelivery of an old event is still stale.
func (l *Ledger) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.objects, key)
}

// Record stores the outcome of an action that applied generation gen of
// key: nil is Applied, a permanent error Rejected, any other error Failed.
// An outcome for a generation that is no longer the desired one is
// ignored: it says nothing about the new desired state.
func (l *Ledger) Record(key string, gen uint64, err error, permanent bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.objects[key]
	if o == nil || o.Desired == nil || o.Desired.Gen != gen {
		return
	}
	l.mark++
	o.Changed = l.mark
	switch {
	case err == nil:
		o.Status, o.Failures = Applied, 0
	case permanent:
		o.Status, o.Failures = Rejected, o.Failures+1
	default:
		o.Status, o.Failures = Failed, o.Failures+1
	}
}

// Get returns a copy of key's entry.
func (l *Ledger) Get(key string) (Object, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.objects[key]
	if o == nil {
		return Object{}, false
	}
	return *o, true
}

// Backends returns copies of every backend entry, by VS token.
func (l *Ledger) Backends() map[string][]Object {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]Object{}
	for k, o := range l.objects {
		rest, ok := strings.CutPrefix(k, keyBackend)
		if !ok {
			continue
		}
		vs, _, _ := strings.Cut(rest, ".")
		out[vs] = append(out[vs], *o)
	}
	return out
}

// VAs returns copies of every VA entry.
func (l *Ledger) VAs() []Object {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Object
	for k, o := range l.objects {
		if strings.HasPrefix(k, keyVA) {
			out = append(out, *o)
		}
	}
	return out
}

// Count returns how many backends and VAs have a desired state.
func (l *Ledger) Count() (backends, vas int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.objects {
		if kindOf(k) == event.KindVA {
			vas++
		} else {
			backends++
		}
	}
	return backends, vas
}

// Synced records that the hm_state entries of kind (KindBackend or KindVA)
// have been loaded once.
func (l *Ledger) Synced(kind event.Kind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.synced[kind] = true
}

// IsSynced reports whether the backend and VA entries have been loaded once.
func (l *Ledger) IsSynced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.synced[event.KindBackend] && l.synced[event.KindVA]
}

func kindOf(key string) event.Kind {
	if strings.HasPrefix(key, keyVA) {
		return event.KindVA
	}
	return event.KindBackend
}

const (
	keyBackend = "backend."
	keyVA      = "va."
)

// Key is a parsed object key.
type Key struct {
	Kind    event.Kind        // KindBackend or KindVA
	VS      subject.VSID      // backend keys
	Backend subject.BackendID // backend keys
	VA      netip.Addr        // VA keys
}

// ParseKey decodes "backend.<vs>.<backend>" or "va.<va>" (the hm_state
// key, and the event subject after "<prefix>.event.").
func ParseKey(key string) (Key, error) {
	if rest, ok := strings.CutPrefix(key, keyBackend); ok {
		vsTok, beTok, ok := strings.Cut(rest, ".")
		if !ok || strings.Contains(beTok, ".") {
			return Key{}, fmt.Errorf("%w: %q: want backend.<vs>.<backend>", ErrKey, key)
		}
		vs, err := subject.ParseEndpointToken(vsTok)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %q: vs: %v", ErrKey, key, err)
		}
		be, err := subject.ParseEndpointToken(beTok)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %q: backend: %v", ErrKey, key, err)
		}
		return Key{Kind: event.KindBackend, VS: vs, Backend: be}, nil
	}
	if rest, ok := strings.CutPrefix(key, keyVA); ok {
		va, err := subject.ParseAddrToken(rest)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %q: va: %v", ErrKey, key, err)
		}
		return Key{Kind: event.KindVA, VA: va}, nil
	}
	return Key{}, fmt.Errorf("%w: %q: want backend.<vs>.<backend> or va.<va>", ErrKey, key)
}
