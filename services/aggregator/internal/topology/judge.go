package topology

import (
	"fmt"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
)

// setBackend moves b to state `to` (its target's verdict) and emits the
// transition with what to apply. Nothing happens if b is there already.
func (m *Model) setBackend(b *backendNode, to event.State, reason event.Reason, detail string, now time.Time, out *[]Event) {
	if b.obj.state == to {
		return
	}
	from, since := b.obj.set(to, reason, detail, now)
	switch to {
	case event.Up:
		b.vs.stats.UpNoticed++
	case event.Down:
		b.vs.stats.DownNoticed++
	}
	apply, guard := m.decideApply(b)
	if guard != "" {
		detail = fmt.Sprintf("held up by %s: %s %s", guard, reason, detail)
		reason = event.ReasonGuard
	}
	m.emitBackend(b, from, since, reason, detail, apply, now, out)
}

// decideApply works out what b should have in the load balancer now and
// records it. It returns nil when nothing is to be applied (Unknown), and
// the guard that holds b up, if one does. The first decision for a backend
// that the dpvs-agent listing shows as wanted already is marked Listed: at
// start-up every healthy backend's first "up" would otherwise cost a
// dpvs-agent call that changes nothing (60,000 calls for 60,000 backends).
func (m *Model) decideApply(b *backendNode) (*event.BackendApply, string) {
	first := b.applied == appliedNone
	guard := ""
	switch {
	case b.pause != nil:
		b.applied, b.held = appliedDown, false
	case b.obj.state == event.Up:
		b.applied, b.held = appliedUp, false
	case b.obj.state == event.Down:
		if b.serving() {
			guard = b.vs.guardBlock()
		}
		if guard != "" {
			b.applied, b.held = appliedUp, true
		} else {
			b.applied, b.held = appliedDown, false
		}
	default:
		b.held = false
		return nil, ""
	}
	a := b.applyRecord()
	a.Listed = first && b.spec.Listed && a.Inhibited == b.spec.Inhibited
	return a, guard
}

// serving reports whether b takes traffic as far as the model knows: applied
// as up, or, with nothing applied yet, not inhibited in DPVS.
func (b *backendNode) serving() bool {
	return b.applied == appliedUp || (b.applied == appliedNone && !b.spec.Inhibited)
}

// guardBlock names the guard that forbids draining one more serving backend
// of v, or returns "".
func (v *vsNode) guardBlock() string {
	g := v.spec.Guards
	frac := g.MaxDownFraction > 0 && g.MaxDownFraction < 1
	if g.MinUp <= 0 && !frac {
		return ""
	}
	serving := 0
	for _, b := range v.backends {
		if b.serving() {
			serving++
		}
	}
	after := serving - 1
	if g.MinUp > 0 && after < g.MinUp {
		return fmt.Sprintf("guard min-up %d", g.MinUp)
	}
	total := len(v.backends)
	if frac && float64(total-after) > g.MaxDownFraction*float64(total)+1e-9 {
		return fmt.Sprintf("guard max-down-fraction %g", g.MaxDownFraction)
	}
	return ""
}

func (b *backendNode) applyRecord() *event.BackendApply {
	a := &event.BackendApply{
		VIP: b.vs.id.Addr.String(), VPort: b.vs.id.Port, Proto: b.vs.id.Proto.String(),
		Addr: b.id.Addr.String(), Port: b.id.Port, UserWeight: b.spec.Weight, Version: b.spec.Version,
	}
	if b.applied == appliedUp {
		a.Weight = b.spec.Weight
	} else {
		a.Inhibited = true
	}
	return a
}

func (m *Model) emitBackend(b *backendNode, from event.State, since time.Time, reason event.Reason, detail string,
	apply *event.BackendApply, now time.Time, out *[]Event) {
	b.obj.gen++
	e := Event{
		Kind: event.KindBackend, VS: b.vs.id, Backend: b.id, VA: b.vs.va.vip, From: from, To: b.obj.state,
		Reason: reason, Detail: detail, At: now, Since: since, Gen: b.obj.gen, Apply: apply,
		Paused: b.pause != nil, Target: b.spec.Target,
	}
	if apply != nil {
		action := b.vs.spec.Action
		e.Action = &action
	}
	if b.target != nil {
		e.Votes, e.Quorum = b.target.votes, b.target.quorum
	}
	*out = append(*out, e)
}

// settleVS drains the guard-held backends the guards now allow (in backend
// order), then re-judges v.
func (m *Model) settleVS(v *vsNode, now time.Time, out *[]Event) {
	for _, b := range v.backends {
		if !b.held {
			continue
		}
		if v.guardBlock() != "" {
			break
		}
		b.applied, b.held = appliedDown, false
		m.emitBackend(b, b.obj.state, b.obj.start(), event.ReasonGuard, "guard released: drained", b.applyRecord(), now, out)
	}
	c := v.counts()
	to := v.judge(c)
	if to == v.obj.state {
		return
	}
	detail := fmt.Sprintf("backends: %d up, %d down, %d unknown of %d", c.Up, c.Down, c.Unknown, c.Total)
	if v.spec.Unchecked {
		detail = "unchecked: " + v.spec.UncheckedReason
	}
	from, since := v.obj.set(to, event.ReasonAggr, detail, now)
	countTransition(&v.stats, to)
	switch to {
	case event.Up:
		v.va.stats.UpNoticed++
	case event.Down:
		v.va.stats.DownNoticed++
	}
	v.obj.gen++
	*out = append(*out, Event{
		Kind: event.KindVS, VS: v.id, VA: v.va.vip, From: from, To: to, Reason: event.ReasonAggr, Detail: detail,
		At: now, Since: since, Gen: v.obj.gen, Counts: &c,
	})
}

// effective is the state a backend counts as in its VS: paused backends
// serve nothing and count as Down.
func (b *backendNode) effective() event.State {
	if b.pause != nil {
		return event.Down
	}
	return b.obj.state
}

// counts recounts v's backends; it is the only place they are counted.
func (v *vsNode) counts() event.Counts {
	c := event.Counts{Total: len(v.backends)}
	for _, b := range v.backends {
		switch b.effective() {
		case event.Up:
			c.Up++
		case event.Down:
			c.Down++
		default:
			c.Unknown++
		}
	}
	return c
}

// judge is the VS rule of the package doc.
func (v *vsNode) judge(c event.Counts) event.State {
	switch {
	case v.spec.Unchecked:
		return event.Unknown
	case c.Total == 0:
		if v.empty >= EmptyInventories {
			return event.Down
		}
		return event.Unknown
	case c.Up > 0:
		return event.Up
	case c.Unknown > 0:
		return event.Unknown
	}
	return event.Down
}

// counts recounts a's VSs by state, unchecked ones apart.
func (a *vaNode) counts() event.Counts {
	c := event.Counts{Total: len(a.vss)}
	for _, v := range a.vss {
		switch {
		case v.spec.Unchecked:
			c.Unchecked++
		case v.obj.state == event.Up:
			c.Up++
		case v.obj.state == event.Down:
			c.Down++
		default:
			c.Unknown++
		}
	}
	return c
}

// judge is the VA rule of the package doc.
func (a *vaNode) judge(c event.Counts) event.State {
	checked := c.Up + c.Down + c.Unknown
	switch {
	case checked == 0:
		return event.Unknown
	case a.spec.DownPolicy == DownPolicyOneOf && c.Down > 0:
		return event.Down
	case a.spec.DownPolicy == DownPolicyOneOf && c.Up == checked:
		return event.Up
	case a.spec.DownPolicy != DownPolicyOneOf && c.Up > 0:
		return event.Up
	case a.spec.DownPolicy != DownPolicyOneOf && c.Down == checked:
		return event.Down
	}
	return event.Unknown
}

func policyName(p int) string {
	if p == DownPolicyOneOf {
		return "oneOf"
	}
	return "allOf"
}

func (m *Model) judgeVA(a *vaNode, now time.Time, out *[]Event) {
	c := a.counts()
	to := a.judge(c)
	if to == a.obj.state {
		return
	}
	detail := fmt.Sprintf("vs: %d up, %d down, %d unknown, %d unchecked of %d (%s)",
		c.Up, c.Down, c.Unknown, c.Unchecked, c.Total, policyName(a.spec.DownPolicy))
	from, since := a.obj.set(to, event.ReasonAggr, detail, now)
	countTransition(&a.stats, to)
	a.obj.gen++
	e := Event{
		Kind: event.KindVA, VA: a.vip, From: from, To: to, Reason: event.ReasonAggr, Detail: detail,
		At: now, Since: since, Gen: a.obj.gen, Counts: &c,
	}
	if to != event.Unknown {
		action := a.spec.Action
		e.Action = &action
	}
	*out = append(*out, e)
}

// countTransition counts a VS or VA transition in DPVS's up/down columns.
func countTransition(s *checker.Stats, to event.State) {
	switch to {
	case event.Up:
		s.Up++
	case event.Down:
		s.Down++
	}
}
