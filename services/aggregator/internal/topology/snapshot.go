package topology

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// ErrSnapshot is wrapped by every Restore error.
var ErrSnapshot = errors.New("topology: invalid snapshot")

// Snapshot is the state of every object, for KV hm_state. IDs are in DPVS
// form; times are Unix ns (0 = never). The statistics are not kept: like
// DPVS's, they count from the start of the process.
type Snapshot struct {
	Targets  []TargetRecord  `msgpack:"targets,omitempty"`
	VAs      []VARecord      `msgpack:"vas,omitempty"`
	VSs      []VSRecord      `msgpack:"vss,omitempty"`
	Backends []BackendRecord `msgpack:"backends,omitempty"`
}

// Record is the state every object keeps.
type Record struct {
	State  event.State  `msgpack:"st"`
	Since  int64        `msgpack:"since"`
	Gen    uint64       `msgpack:"gen"`
	Reason event.Reason `msgpack:"r,omitempty"`
	Detail string       `msgpack:"d,omitempty"`
}

// TargetRecord is the last verdict of a target, as backends see it, with
// the votes behind it.
type TargetRecord struct {
	ID     string `msgpack:"id"`
	Record `msgpack:",inline"`
	Votes  []event.Vote  `msgpack:"votes,omitempty"`
	Quorum *event.Quorum `msgpack:"q,omitempty"`
}

// VARecord is the state of a VA.
type VARecord struct {
	VIP    string `msgpack:"va"`
	Record `msgpack:",inline"`
}

// VSRecord is the state of a VS.
type VSRecord struct {
	VS     string `msgpack:"vs"`
	Record `msgpack:",inline"`
	Empty  int `msgpack:"empty,omitempty"` // inventories in a row without backends
}

// BackendRecord is the state of a backend, with what was applied and its
// pause.
type BackendRecord struct {
	VS        string `msgpack:"vs"`
	Backend   string `msgpack:"b"`
	Record    `msgpack:",inline"`
	Weight    uint16      `msgpack:"uw"`                // user weight
	Applied   event.State `msgpack:"applied,omitempty"` // up, down, or "" (nothing applied yet)
	Held      bool        `msgpack:"held,omitempty"`    // Down, applied as up by a guard
	Paused    bool        `msgpack:"paused,omitempty"`
	PausedBy  string      `msgpack:"pby,omitempty"`
	PausedWhy string      `msgpack:"pwhy,omitempty"`
	PausedAt  int64       `msgpack:"pat,omitempty"`
}

func record(o object) Record {
	return Record{State: o.state, Since: o.since, Gen: o.gen, Reason: o.reason, Detail: o.detail}
}

func (r Record) into(o *object) {
	o.state, o.since, o.gen, o.reason, o.detail = r.State, r.Since, r.Gen, r.Reason, r.Detail
}

func (r Record) check() error {
	if r.State == "" || !r.State.Valid() {
		return fmt.Errorf("state %q", r.State)
	}
	return nil
}

var appliedState = map[applied]event.State{appliedNone: "", appliedUp: event.Up, appliedDown: event.Down}

// Snapshot returns the state of every object, in tree order.
func (m *Model) Snapshot() Snapshot {
	var s Snapshot
	for _, id := range slices.Sorted(maps.Keys(m.targets)) {
		s.Targets = append(s.Targets, targetRecord(m.targets[id]))
	}
	for _, vip := range slices.SortedFunc(maps.Keys(m.vas), netip.Addr.Compare) {
		a := m.vas[vip]
		s.VAs = append(s.VAs, VARecord{VIP: vip.String(), Record: record(a.obj)})
		for _, v := range a.vss {
			s.VSs = append(s.VSs, vsRecord(v))
			for _, b := range v.backends {
				s.Backends = append(s.Backends, backendRecord(b))
			}
		}
	}
	return s
}

// The records of single objects, as Snapshot writes them, for a checkpoint
// that stores only what changed; ok is false when the object does not exist.

// TargetRecord returns the record of target id.
func (m *Model) TargetRecord(id string) (r TargetRecord, ok bool) {
	if t := m.targets[id]; t != nil {
		return targetRecord(t), true
	}
	return r, false
}

// VARecord returns the record of the VA of vip.
func (m *Model) VARecord(vip netip.Addr) (r VARecord, ok bool) {
	if a := m.vas[vip]; a != nil {
		return VARecord{VIP: vip.String(), Record: record(a.obj)}, true
	}
	return r, false
}

// VSRecord returns the record of VS id.
func (m *Model) VSRecord(id subject.VSID) (r VSRecord, ok bool) {
	if v := m.vss[id]; v != nil {
		return vsRecord(v), true
	}
	return r, false
}

// BackendRecord returns the record of backend id of VS vs.
func (m *Model) BackendRecord(vs subject.VSID, id subject.BackendID) (r BackendRecord, ok bool) {
	if b := m.backend(vs, id); b != nil {
		return backendRecord(b), true
	}
	return r, false
}

func targetRecord(t *targetNode) TargetRecord {
	return TargetRecord{ID: t.id, Record: record(t.obj), Votes: t.votes, Quorum: t.quorum}
}

func vsRecord(v *vsNode) VSRecord {
	return VSRecord{VS: v.id.String(), Record: record(v.obj), Empty: v.empty}
}

func backendRecord(b *backendNode) BackendRecord {
	r := BackendRecord{
		VS: b.vs.id.String(), Backend: b.id.String(), Record: record(b.obj), Weight: b.spec.Weight,
		Applied: appliedState[b.applied], Held: b.held,
	}
	if p := b.pause; p != nil {
		r.Paused, r.PausedBy, r.PausedWhy, r.PausedAt = true, p.who, p.why, toNS(p.at)
	}
	return r
}

// pending holds restored records whose objects the inventory has not
// created yet; SetInventory consumes them and buries the rest.
type pending struct {
	targets  map[string]TargetRecord
	vas      map[netip.Addr]VARecord
	vss      map[subject.VSID]VSRecord
	backends map[string]BackendRecord
}

// Restore puts back the state of a Snapshot. It emits nothing: records of
// objects that exist are applied now, the others when SetInventory creates
// their objects (the next SetInventory forgets the records it did not use,
// keeping their Gen). Every SetInventory re-judges every VS and VA, so a
// restored state that the current inventory contradicts is corrected there,
// with an event. An invalid snapshot changes nothing.
func (m *Model) Restore(s Snapshot) error {
	p := pending{
		targets:  map[string]TargetRecord{},
		vas:      map[netip.Addr]VARecord{},
		vss:      map[subject.VSID]VSRecord{},
		backends: map[string]BackendRecord{},
	}
	var errs []error
	bad := func(what string, err error) { errs = append(errs, fmt.Errorf("%w: %s: %v", ErrSnapshot, what, err)) }
	for _, r := range s.Targets {
		err := r.check()
		if r.ID == "" {
			err = errors.New("empty id")
		}
		if err != nil {
			bad("target "+r.ID, err)
			continue
		}
		p.targets[r.ID] = r
	}
	for _, r := range s.VAs {
		vip, err := netip.ParseAddr(r.VIP)
		if err == nil {
			err = r.check()
		}
		if err != nil {
			bad("va "+r.VIP, err)
			continue
		}
		p.vas[normAddr(vip)] = r
	}
	for _, r := range s.VSs {
		id, err := subject.ParseEndpoint(r.VS)
		if err == nil {
			err = r.check()
		}
		if err != nil {
			bad("vs "+r.VS, err)
			continue
		}
		p.vss[id] = r
	}
	for _, r := range s.Backends {
		vs, err := subject.ParseEndpoint(r.VS)
		var id subject.BackendID
		if err == nil {
			id, err = subject.ParseEndpoint(r.Backend)
		}
		if err == nil {
			err = r.check()
		}
		if err == nil && r.Applied != "" && r.Applied != event.Up && r.Applied != event.Down {
			err = fmt.Errorf("applied %q", r.Applied)
		}
		if err != nil {
			bad("backend "+r.Backend+" in "+r.VS, err)
			continue
		}
		p.backends[backendKey(vs, id)] = r
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	m.pending = p
	for _, t := range m.targets {
		m.pending.restoreTarget(t)
	}
	for _, a := range m.vas {
		m.pending.restoreVA(a)
		for _, v := range a.vss {
			m.pending.restoreVS(v)
			for _, b := range v.backends {
				m.pending.restoreBackend(b)
			}
		}
	}
	return nil
}

func (p *pending) restoreTarget(t *targetNode) {
	if r, ok := p.targets[t.id]; ok {
		r.into(&t.obj)
		t.votes, t.quorum = r.Votes, r.Quorum
		delete(p.targets, t.id)
	}
}

func (p *pending) restoreVA(a *vaNode) {
	if r, ok := p.vas[a.vip]; ok {
		r.into(&a.obj)
		delete(p.vas, a.vip)
	}
}

func (p *pending) restoreVS(v *vsNode) {
	if r, ok := p.vss[v.id]; ok {
		r.into(&v.obj)
		v.empty = r.Empty
		delete(p.vss, v.id)
	}
}

func (p *pending) restoreBackend(b *backendNode) {
	key := backendKey(b.vs.id, b.id)
	r, ok := p.backends[key]
	if !ok {
		return
	}
	delete(p.backends, key)
	r.into(&b.obj)
	if r.Weight != 0 {
		b.spec.Weight = r.Weight
	}
	b.applied = appliedNone
	switch r.Applied {
	case event.Up:
		b.applied = appliedUp
	case event.Down:
		b.applied = appliedDown
	}
	b.held = r.Held
	b.pause = nil
	if r.Paused {
		b.pause = &pause{who: r.PausedBy, why: r.PausedWhy, at: fromNS(r.PausedAt)}
	}
}

// bury forgets the records no object claimed, keeping their Gen as
// tombstones in case the objects come back.
func (p *pending) bury(m *Model, now time.Time) {
	keep := func(key string, gen uint64) {
		if gen > m.tombs[key].gen {
			m.tombs[key] = tomb{gen: gen, at: now}
		}
	}
	for vip, r := range p.vas {
		keep(vaKey(vip), r.Gen)
	}
	for id, r := range p.vss {
		keep(vsKey(id), r.Gen)
	}
	for key, r := range p.backends {
		keep(key, r.Gen)
	}
	*p = pending{}
}

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
