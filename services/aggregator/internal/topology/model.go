// Package topology is the aggregator's pure VA → VS → backend model: it turns
// target verdicts (from package checker), inventory changes and operator
// pause/resume into backend, VS and VA transitions, each with what the
// actioners must apply. No I/O, no goroutines, no wall clock: every call
// carries `now`, and one goroutine owns a Model.
//
// # Backends
//
// A backend refers to a probe target; several backends (in several VSs) may
// share one. A backend's state is always its target's verdict (Unknown while
// the target has none, and always Unknown in an unchecked VS). A target is
// known from the first inventory that uses it, Unknown until TargetVerdict
// says otherwise: a caller whose checker starts a target at a non-Unknown
// InitialState passes that as a first TargetVerdict. What is applied follows
// from the state:
//
//   - Down → weight 0 + inhibited (drain);
//   - Up → the user weight, not inhibited;
//   - Unknown → nothing. An Unknown backend is never re-enabled and never
//     drained (DPVS re-enables it, reference §4.2 / §9.2.7); the load balancer
//     keeps whatever it had.
//
// Pause is maintenance: a paused backend is drained whatever its health, its
// probes keep running and its events and status keep showing its real state
// (with Paused set). Resume re-applies the real verdict; resuming an Unknown
// backend applies nothing, so it stays drained until a verdict arrives.
//
// # Guards (per VS, 0 = off)
//
// MinUp and MaxDownFraction limit automatic drains: a backend that goes Down
// while draining it would leave fewer than MinUp serving backends, or more
// than MaxDownFraction of the VS not serving, keeps being applied as up. Its
// event shows the real transition (To = down), Reason GUARD and an Apply with
// the user weight. "Serving" means applied as up, or, for a backend nothing
// was applied to yet, not inhibited in DPVS. When the floor frees up (a
// backend recovers, is resumed or added, guards change) held backends are
// drained in backend order, each with a GUARD event (From = To = down). A
// guard never re-enables a drained backend, and never blocks a pause.
//
// # VS state
//
// Computed from scratch from the backends every time (no incremental
// counters that could disagree with a recount, reference §9.2.8). A paused
// backend counts as Down (it serves no traffic); every other backend counts
// as its state. Then: Up if any backend is Up; else Unknown if any is Unknown
// (missing evidence never withdraws a VIP: a freshly started VS whose
// backends are all Unknown stays Unknown); else Down. A VS with no backends is
// Unknown when first seen empty and Down once it is still empty in the next
// inventory (one sync period later), so a backend swap does not flap the VIP.
// An unchecked VS (QUIC, passive, bad params) is Unknown, its backends are not
// bound to targets and nothing is ever applied to them by health.
//
// # VA state
//
// Over its checked VSs (unchecked VSs are only counted, in Counts.Unchecked):
// allOf (down-policy 2, the default) is Up if any VS is Up, Down if all are
// Down, Unknown otherwise; oneOf (1) is Down if any VS is Down, Up if all are
// Up, Unknown otherwise. A VA without checked VSs is Unknown. VA events to Up
// or Down carry the VA action; Unknown carries none (no action). A VA exists
// while the inventory has a VS with its VIP; a disabled VA does not exist.
//
// # Inventory diffs
//
// SetInventory is a diff: existing objects keep their state and pause; a new
// backend of a target already known takes its verdict at once (with an
// Apply). Refreshing an object whose state does not change applies nothing
// (a new user weight is used by the next Apply; re-asserting is the
// actioners' job), so DPVS's re-enabling of Unknown backends on refresh
// cannot happen. A removed backend, VS or VA (also a VA that gets disabled)
// emits one event with Reason REMOVED, To = unknown and no Apply or Action —
// removal changes nothing in the load balancer, as in DPVS (§1.5) — and its
// parents are re-judged. Every SetInventory re-judges every VS and VA, so any
// state left inconsistent (after Restore, say) is corrected with an event.
//
// # Events
//
// Every call returns its events in a deterministic order: grouped by VA (VIP
// order) and VS (ID order), each VS's backend events (backend order) before
// the VS's own event, and the VA's event after all of its VSs. Each object
// counts its events in Gen (1 for the first); with the object's ID it is the
// event's Nats-Msg-Id, so Gen survives Restore and removal (a re-added object
// continues from the removed one's Gen for TombstoneTTL).
package topology

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// VA down policies, as DPVS numbers them.
const (
	DownPolicyOneOf = 1
	DownPolicyAllOf = 2
)

// DefaultWeight is the user weight of a new backend that DPVS reports
// inhibited with weight 0, whose real weight cannot be known (DPVS does the same).
const DefaultWeight = 1

// TombstoneTTL is how long the Gen of a removed object is remembered. It
// must exceed the HM_EVENTS duplicate window.
const TombstoneTTL = time.Hour

// EmptyInventories is how many inventories in a row must list a VS without
// backends before it is judged Down (so an inventory that lists one must be
// given to SetInventory that many times, even when nothing else changed).
const EmptyInventories = 2

// ErrInventory is wrapped by every SetInventory validation error.
var ErrInventory = errors.New("topology: invalid inventory")

// ErrNotFound is returned by Pause and Resume for an unknown backend.
var ErrNotFound = errors.New("topology: no such backend")

// Inventory is the complete list of services to judge.
type Inventory struct {
	VSs []VSSpec
	VAs []VASpec // per-VIP settings; a VIP without an entry gets the defaults
}

// VSSpec is one virtual service.
type VSSpec struct {
	ID              subject.VSID
	Backends        []BackendSpec
	Unchecked       bool   // no checker can be built: never judged, never acted on
	UncheckedReason string // why (quic, passive, bad params)
	Action          event.ActionSpec
	Guards          Guards
}

// BackendSpec is one backend of a VS.
type BackendSpec struct {
	ID        subject.BackendID
	Target    string // target token; may be empty in an unchecked VS
	Version   string // dpvs-agent version of the VS
	Weight    uint16 // user weight
	Inhibited bool   // what DPVS has now
	// Listed: Inhibited comes from a dpvs-agent listing (not a static
	// service, whose state in DPVS is not known).
	Listed bool
}

// Guards limit how much of a VS automatic drains may take out. Zero is off.
type Guards struct {
	MinUp           int     // never drain below this many serving backends
	MaxDownFraction float64 // never drain more than this fraction (0 < f < 1; 0 or 1 = off)
}

// VASpec is the configuration of one VIP.
type VASpec struct {
	VIP        netip.Addr
	DownPolicy int // DownPolicyOneOf or DownPolicyAllOf; 0 = allOf
	Action     event.ActionSpec
	Disabled   bool // not judged: the VA and its VSs do not exist
}

// Event is one transition (or pause, guard, removal record) of a backend, VS
// or VA. Slices and pointers in it are shared and must not be modified.
type Event struct {
	Kind    event.Kind
	VS      subject.VSID      // backend and vs events
	Backend subject.BackendID // backend events
	VA      netip.Addr
	From    event.State
	To      event.State
	Reason  event.Reason
	Detail  string
	At      time.Time
	Since   time.Time // when From began
	Gen     uint64
	Counts  *event.Counts       // vs: its backends; va: its VSs
	Apply   *event.BackendApply // backend: what to set; nil = nothing
	Action  *event.ActionSpec   // backend: the VS action (with Apply); va: the VA action (to up/down)
	Votes   []event.Vote        // backend: its target's votes at the last verdict
	Quorum  *event.Quorum
	Paused  bool
	Target  string
}

// Model is the VA → VS → backend tree. The zero value is not usable; use New.
type Model struct {
	vas     map[netip.Addr]*vaNode
	vss     map[subject.VSID]*vsNode
	targets map[string]*targetNode
	pending pending // restored records whose objects do not exist yet
	tombs   map[string]tomb
}

// New returns an empty model.
func New() *Model {
	return &Model{
		vas:     map[netip.Addr]*vaNode{},
		vss:     map[subject.VSID]*vsNode{},
		targets: map[string]*targetNode{},
		tombs:   map[string]tomb{},
	}
}

// object is the state every tier keeps, one per backend and per target, so
// kept small: since in nanoseconds, and no transition counters (only VSs and
// VAs show those; their nodes keep them).
type object struct {
	state  event.State
	since  int64 // ns; 0 = never changed
	gen    uint64
	reason event.Reason
	detail string
}

// set changes the state and returns the previous one with its start.
func (o *object) set(to event.State, reason event.Reason, detail string, now time.Time) (event.State, time.Time) {
	from, since := o.state, o.start()
	o.state, o.since, o.reason, o.detail = to, toNS(now), reason, detail
	return from, since
}

// start is when the current state began (zero if it never changed).
func (o *object) start() time.Time { return fromNS(o.since) }

type vaNode struct {
	vip   netip.Addr
	spec  VASpec
	obj   object
	stats checker.Stats // DPVS's counters of the VA's transitions
	vss   []*vsNode     // in ID order
}

type vsNode struct {
	id       subject.VSID
	va       *vaNode
	spec     VSSpec // Backends is nil: see backends
	obj      object
	stats    checker.Stats  // DPVS's counters of the VS's transitions
	backends []*backendNode // in ID order
	empty    int            // inventories in a row that listed no backend
}

type applied uint8

const (
	appliedNone applied = iota // nothing applied yet: DPVS has what it has
	appliedUp
	appliedDown
)

type backendNode struct {
	id      subject.BackendID
	vs      *vsNode
	spec    BackendSpec // Weight is the resolved user weight
	target  *targetNode // nil in an unchecked VS
	obj     object
	applied applied
	held    bool // Down but applied as up by a guard
	pause   *pause
}

type pause struct {
	who, why string
	at       time.Time
}

type targetNode struct {
	id       string
	obj      object
	votes    []event.Vote
	quorum   *event.Quorum
	backends []*backendNode // in (VS, backend) order
}

type tomb struct {
	gen uint64
	at  time.Time
}

func cmpEndpoint(a, b subject.Endpoint) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

func cmpBackend(a, b *backendNode) int {
	if c := cmpEndpoint(a.vs.id, b.vs.id); c != 0 {
		return c
	}
	return cmpEndpoint(a.id, b.id)
}

func normAddr(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func normEndpoint(e subject.Endpoint) subject.Endpoint {
	e.Addr = normAddr(e.Addr)
	return e
}

// Object keys, for tombstones and restored records.
func vaKey(vip netip.Addr) string  { return "va/" + vip.String() }
func vsKey(id subject.VSID) string { return "vs/" + id.String() }
func backendKey(vs subject.VSID, b subject.BackendID) string {
	return "backend/" + vs.String() + "/" + b.String()
}

// validate checks the whole inventory and returns it normalised (addresses
// unmapped, lists sorted) with every problem found.
func validate(inv Inventory) (map[netip.Addr]VASpec, map[netip.Addr][]VSSpec, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInventory}, args...)...))
	}
	vas := map[netip.Addr]VASpec{}
	for i, a := range inv.VAs {
		vip := normAddr(a.VIP)
		switch {
		case !vip.IsValid():
			bad("virtual-addresses[%d]: missing or invalid VIP", i)
			continue
		case a.DownPolicy != 0 && a.DownPolicy != DownPolicyOneOf && a.DownPolicy != DownPolicyAllOf:
			bad("virtual-addresses/%s/down-policy %d: want 1 (oneOf) or 2 (allOf)", vip, a.DownPolicy)
		}
		if _, dup := vas[vip]; dup {
			bad("virtual-addresses/%s: listed twice", vip)
		}
		a.VIP = vip
		vas[vip] = a
	}
	vss := map[netip.Addr][]VSSpec{}
	seen := map[subject.VSID]bool{}
	for i, v := range inv.VSs {
		v.ID = normEndpoint(v.ID)
		if !v.ID.IsValid() {
			bad("virtual-servers[%d] %s: invalid ID", i, v.ID)
			continue
		}
		where := "virtual-servers/" + v.ID.String()
		if seen[v.ID] {
			bad("%s: listed twice", where)
			continue
		}
		seen[v.ID] = true
		if v.Guards.MinUp < 0 {
			bad("%s/min-up %d: must be >= 0", where, v.Guards.MinUp)
		}
		if f := v.Guards.MaxDownFraction; math.IsNaN(f) || f < 0 || f > 1 {
			bad("%s/max-down-fraction %v: must be within 0..1", where, f)
		}
		bs := make([]BackendSpec, len(v.Backends))
		for j, b := range v.Backends {
			b.ID = normEndpoint(b.ID)
			switch {
			case !b.ID.IsValid():
				bad("%s/backends[%d] %s: invalid ID", where, j, b.ID)
			case b.ID.Proto != v.ID.Proto:
				bad("%s/backends/%s: protocol differs from the service's", where, b.ID)
			case b.Target == "" && !v.Unchecked:
				bad("%s/backends/%s: no probe target", where, b.ID)
			}
			bs[j] = b
		}
		slices.SortFunc(bs, func(a, b BackendSpec) int { return cmpEndpoint(a.ID, b.ID) })
		for j := 1; j < len(bs); j++ {
			if bs[j].ID == bs[j-1].ID {
				bad("%s/backends/%s: listed twice", where, bs[j].ID)
			}
		}
		v.Backends = bs
		if va, ok := vas[v.ID.Addr]; ok && va.Disabled {
			continue
		}
		vss[v.ID.Addr] = append(vss[v.ID.Addr], v)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	for vip := range vss {
		slices.SortFunc(vss[vip], func(a, b VSSpec) int { return cmpEndpoint(a.ID, b.ID) })
	}
	return vas, vss, nil
}

// SetInventory makes the model match inv: objects are added, updated and
// removed, and every VS and VA is re-judged. An invalid inventory (every
// problem is reported, with its path) changes nothing.
func (m *Model) SetInventory(inv Inventory, now time.Time) ([]Event, error) {
	vaSpecs, vsSpecs, err := validate(inv)
	if err != nil {
		return nil, err
	}
	vips := make([]netip.Addr, 0, len(m.vas)+len(vsSpecs))
	for vip := range m.vas {
		vips = append(vips, vip)
	}
	for vip := range vsSpecs {
		if m.vas[vip] == nil {
			vips = append(vips, vip)
		}
	}
	slices.SortFunc(vips, netip.Addr.Compare)
	var out []Event
	for _, vip := range vips {
		spec, ok := vaSpecs[vip]
		if !ok {
			spec = VASpec{VIP: vip}
		}
		m.syncVA(spec, vsSpecs[vip], now, &out)
	}
	m.pending.bury(m, now)
	for k, t := range m.tombs {
		if now.Sub(t.at) > TombstoneTTL {
			delete(m.tombs, k)
		}
	}
	return out, nil
}

func (m *Model) syncVA(spec VASpec, specs []VSSpec, now time.Time, out *[]Event) {
	a := m.vas[spec.VIP]
	if a == nil {
		if len(specs) == 0 {
			return
		}
		a = &vaNode{vip: spec.VIP, obj: m.newObject(vaKey(spec.VIP), now)}
		m.pending.restoreVA(a)
		m.vas[a.vip] = a
	}
	a.spec = spec
	merged := merge(a.vss, specs, func(v *vsNode) subject.Endpoint { return v.id },
		func(s VSSpec) subject.Endpoint { return s.ID },
		func(v *vsNode) { m.removeVS(v, now, out) },
		func(s VSSpec) *vsNode {
			v := &vsNode{id: s.ID, va: a, obj: m.newObject(vsKey(s.ID), now)}
			m.pending.restoreVS(v)
			m.vss[v.id] = v
			m.syncVS(v, s, now, out)
			return v
		},
		func(v *vsNode, s VSSpec) { m.syncVS(v, s, now, out) })
	a.vss = merged
	if len(a.vss) == 0 {
		m.remove(&a.obj, vaKey(a.vip), Event{Kind: event.KindVA, VA: a.vip}, now, out)
		delete(m.vas, a.vip)
		return
	}
	m.judgeVA(a, now, out)
}

func (m *Model) syncVS(v *vsNode, spec VSSpec, now time.Time, out *[]Event) {
	specs := spec.Backends
	spec.Backends = nil
	v.spec = spec
	merged := merge(v.backends, specs, func(b *backendNode) subject.Endpoint { return b.id },
		func(s BackendSpec) subject.Endpoint { return s.ID },
		func(b *backendNode) { m.removeBackend(b, now, out) },
		func(s BackendSpec) *backendNode {
			b := &backendNode{id: s.ID, vs: v, obj: m.newObject(backendKey(v.id, s.ID), now)}
			m.pending.restoreBackend(b)
			b.update(s)
			return b
		},
		func(b *backendNode, s BackendSpec) { b.update(s) })
	v.backends = merged
	if len(merged) > 0 {
		v.empty = 0
	} else if v.empty < EmptyInventories {
		v.empty++
	}
	for _, b := range v.backends {
		m.bind(b, now)
		to, reason, detail := event.Unknown, event.ReasonConfig, ""
		if b.target != nil {
			to, reason, detail = b.target.obj.state, b.target.obj.reason, b.target.obj.detail
			if reason == "" {
				reason = event.ReasonConfig
			}
		} else if v.spec.Unchecked {
			detail = "unchecked: " + v.spec.UncheckedReason
		}
		m.setBackend(b, to, reason, detail, now, out)
	}
	m.settleVS(v, now, out)
}

// merge walks the current nodes and the wanted specs, both in ID order, and
// calls gone for a node no spec wants, add for a spec without a node and keep
// for a node and its spec. It returns the resulting nodes in ID order.
func merge[N, S any](nodes []N, specs []S, nodeID func(N) subject.Endpoint, specID func(S) subject.Endpoint,
	gone func(N), add func(S) N, keep func(N, S)) []N {
	out := make([]N, 0, len(specs))
	for len(nodes) > 0 || len(specs) > 0 {
		c := 0
		switch {
		case len(nodes) == 0:
			c = 1
		case len(specs) == 0:
			c = -1
		default:
			c = cmpEndpoint(nodeID(nodes[0]), specID(specs[0]))
		}
		switch {
		case c < 0:
			gone(nodes[0])
			nodes = nodes[1:]
		case c > 0:
			out = append(out, add(specs[0]))
			specs = specs[1:]
		default:
			keep(nodes[0], specs[0])
			out = append(out, nodes[0])
			nodes, specs = nodes[1:], specs[1:]
		}
	}
	return out
}

// update takes a new spec for an existing or new backend, keeping the known
// user weight when DPVS reports the backend inhibited with weight 0.
func (b *backendNode) update(s BackendSpec) {
	if s.Inhibited && s.Weight == 0 {
		s.Weight = b.spec.Weight
		if s.Weight == 0 {
			s.Weight = DefaultWeight
		}
	}
	b.spec = s
}

// bind attaches b to its target (none in an unchecked VS), creating the
// target node on first use and dropping it after its last backend.
func (m *Model) bind(b *backendNode, now time.Time) {
	want := b.spec.Target
	if b.vs.spec.Unchecked {
		want = ""
	}
	if b.target != nil && b.target.id == want {
		return
	}
	m.unbind(b)
	if want == "" {
		return
	}
	t := m.targets[want]
	if t == nil {
		t = &targetNode{id: want, obj: object{state: event.Unknown, since: toNS(now)}}
		m.pending.restoreTarget(t)
		m.targets[want] = t
	}
	i, _ := slices.BinarySearchFunc(t.backends, b, cmpBackend)
	t.backends = slices.Insert(t.backends, i, b)
	b.target = t
}

func (m *Model) unbind(b *backendNode) {
	t := b.target
	if t == nil {
		return
	}
	b.target = nil
	if i, ok := slices.BinarySearchFunc(t.backends, b, cmpBackend); ok {
		t.backends = slices.Delete(t.backends, i, i+1)
	}
	if len(t.backends) == 0 {
		delete(m.targets, t.id)
	}
}

// newObject starts an object's state, continuing the Gen of a removed
// object with the same key.
func (m *Model) newObject(key string, now time.Time) object {
	o := object{state: event.Unknown, since: toNS(now)}
	if t, ok := m.tombs[key]; ok {
		o.gen = t.gen
		delete(m.tombs, key)
	}
	return o
}

func (m *Model) removeBackend(b *backendNode, now time.Time, out *[]Event) {
	m.unbind(b)
	m.remove(&b.obj, backendKey(b.vs.id, b.id),
		Event{Kind: event.KindBackend, VS: b.vs.id, Backend: b.id, VA: b.vs.va.vip, Target: b.spec.Target, Paused: b.pause != nil}, now, out)
}

func (m *Model) removeVS(v *vsNode, now time.Time, out *[]Event) {
	for _, b := range v.backends {
		m.removeBackend(b, now, out)
	}
	m.remove(&v.obj, vsKey(v.id), Event{Kind: event.KindVS, VS: v.id, VA: v.va.vip}, now, out)
	delete(m.vss, v.id)
}

// remove emits an object's REMOVED event and remembers its Gen.
func (m *Model) remove(o *object, key string, e Event, now time.Time, out *[]Event) {
	o.gen++
	e.From, e.To, e.Reason, e.Detail = o.state, event.Unknown, event.ReasonRemoved, "removed from the inventory"
	e.At, e.Since, e.Gen = now, o.start(), o.gen
	*out = append(*out, e)
	m.tombs[key] = tomb{gen: o.gen, at: now}
}

// TargetVerdict records a target's new verdict (a checker.Change, with the
// votes and quorum behind it) and moves every backend using the target to
// it. A target no backend uses is ignored. Event times are now.
func (m *Model) TargetVerdict(target string, ch checker.Change, votes []event.Vote, q event.Quorum, now time.Time) []Event {
	t := m.targets[target]
	if t == nil {
		return nil
	}
	if ch.Reason != event.ReasonRestored || t.obj.state != ch.To {
		t.obj.set(ch.To, ch.Reason, ch.Detail, now)
		t.votes, t.quorum = votes, &q
	}
	// else a restart: the restored record already holds this verdict, when
	// it began and the votes behind it.
	var out []Event
	bs := t.backends
	for i := 0; i < len(bs); {
		v := bs[i].vs
		for ; i < len(bs) && bs[i].vs == v; i++ {
			m.setBackend(bs[i], ch.To, ch.Reason, ch.Detail, now, &out)
		}
		m.settleVS(v, now, &out)
		if i == len(bs) || bs[i].vs.va != v.va {
			m.judgeVA(v.va, now, &out)
		}
	}
	return out
}

// Pause drains a backend for maintenance (see the package doc). Pausing a
// paused backend does nothing.
func (m *Model) Pause(vs subject.VSID, backend subject.BackendID, who, why string, now time.Time) ([]Event, error) {
	return m.operate(vs, backend, true, who, why, now)
}

// Resume ends a pause and re-applies the backend's real verdict. Resuming a
// backend that is not paused does nothing.
func (m *Model) Resume(vs subject.VSID, backend subject.BackendID, who, why string, now time.Time) ([]Event, error) {
	return m.operate(vs, backend, false, who, why, now)
}

func (m *Model) operate(vsID subject.VSID, id subject.BackendID, paused bool, who, why string, now time.Time) ([]Event, error) {
	vsID, id = normEndpoint(vsID), normEndpoint(id)
	b := m.backend(vsID, id)
	if b == nil {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, id, vsID)
	}
	if paused == (b.pause != nil) {
		return nil, nil
	}
	reason, detail := event.ReasonResumed, "resumed by "+who
	if paused {
		reason, detail = event.ReasonPaused, "paused by "+who
		b.pause = &pause{who: who, why: why, at: now}
	} else {
		b.pause = nil
	}
	if why != "" {
		detail += ": " + why
	}
	var out []Event
	apply, _ := m.decideApply(b)
	m.emitBackend(b, b.obj.state, b.obj.start(), reason, detail, apply, now, &out)
	m.settleVS(b.vs, now, &out)
	m.judgeVA(b.vs.va, now, &out)
	return out, nil
}

func (m *Model) backend(vsID subject.VSID, id subject.BackendID) *backendNode {
	v := m.vss[vsID]
	if v == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(v.backends, id, func(b *backendNode, id subject.BackendID) int {
		return cmpEndpoint(b.id, id)
	})
	if !ok {
		return nil
	}
	return v.backends[i]
}
