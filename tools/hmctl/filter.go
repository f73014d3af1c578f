package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// selector chooses the messages of the events stream that watch and history
// print. Kinds are alternatives, objects are alternatives, and a message must
// match both lists (an empty list matches everything). The subjects it
// subscribes to only narrow what the server sends; match decides.
type selector struct {
	sp      subject.Space
	kinds   []event.Kind
	objects []object
	all     bool // also action results and audit records
}

// object is one object filter.
type object struct {
	text    string
	addr    netip.Addr       // an address: the VA, its VSs and their backends, and backends with that RIP
	ep      subject.Endpoint // VIP-PROTO-PORT: that VS and its backends, and that backend in any VS
	vs      subject.VSID     // VS/BACKEND: one backend of one VS (and the VS's action results)
	backend subject.BackendID
	raw     string // a subject, wildcards allowed
}

func parseKind(s string) (event.Kind, bool) {
	switch k := event.Kind(strings.ToLower(s)); k {
	case event.KindBackend, event.KindVS, event.KindVA:
		return k, true
	}
	return "", false
}

// parseObject reads an object filter: an address, VIP-PROTO-PORT,
// VS/BACKEND (each in DPVS or subject-token form) or a subject.
func parseObject(s string) (object, error) {
	o := object{text: s}
	if vs, be, ok := strings.Cut(s, "/"); ok {
		var err1, err2 error
		o.vs, err1 = parseEndpointAny(vs)
		o.backend, err2 = parseEndpointAny(be)
		if err1 != nil || err2 != nil {
			return object{}, fmt.Errorf("object %q: want VS/BACKEND, both VIP-PROTO-PORT", s)
		}
		return o, nil
	}
	if ep, err := parseEndpointAny(s); err == nil {
		o.ep = ep
		return o, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		o.addr = a.Unmap()
		return o, nil
	}
	if a, err := subject.ParseAddrToken(s); err == nil {
		o.addr = a
		return o, nil
	}
	if strings.Contains(s, ".") && validSubject(s) {
		o.raw = s
		return o, nil
	}
	return object{}, fmt.Errorf("object %q: want an address, VIP-PROTO-PORT, VS/BACKEND or a subject such as hm.event.va.>", s)
}

func parseEndpointAny(s string) (subject.Endpoint, error) {
	if ep, err := subject.ParseEndpoint(s); err == nil {
		return ep, nil
	}
	return subject.ParseEndpointToken(s)
}

// validSubject accepts a subject or a subscription pattern.
func validSubject(s string) bool {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		if t == "" || strings.ContainsAny(t, " \t\r\n") || (t == ">" && i != len(toks)-1) {
			return false
		}
		if len(t) > 1 && strings.ContainsAny(t, "*>") {
			return false
		}
	}
	return true
}

// newSelector builds a selector from kind and object texts.
func newSelector(sp subject.Space, kinds, objects []string, all bool) (*selector, error) {
	s := &selector{sp: sp, all: all}
	for _, k := range kinds {
		kind, ok := parseKind(k)
		if !ok {
			return nil, fmt.Errorf("kind %q: want backend, vs or va", k)
		}
		if !slices.Contains(s.kinds, kind) {
			s.kinds = append(s.kinds, kind)
		}
	}
	for _, text := range objects {
		o, err := parseObject(text)
		if err != nil {
			return nil, err
		}
		s.objects = append(s.objects, o)
	}
	if len(s.subjects()) == 0 {
		return nil, fmt.Errorf("kinds %v and objects %q select nothing", s.kinds, objects)
	}
	return s, nil
}

// subjects returns the subjects to subscribe to: never overlapping, since a
// consumer refuses overlapping filters and overlapping subscriptions would
// deliver a message twice.
func (s *selector) subjects() []string {
	var subs []string
	hasRaw := false
	for _, o := range s.objects {
		if o.raw != "" {
			hasRaw = true
			subs = append(subs, o.raw)
		}
	}
	if hasRaw && len(subs) == len(s.objects) {
		// Only raw subjects: the operator's own, or, when they overlap,
		// everything the events stream holds (match still applies them).
		return collapse(subs, []string{s.sp.EventsAll(), s.sp.ActionsAll(), s.sp.AuditAll()})
	}
	if hasRaw {
		subs = []string{s.sp.EventsAll()}
	} else {
		subs = s.eventSubjects()
	}
	if s.all {
		subs = append(subs, s.sp.ActionsAll(), s.sp.AuditAll())
	}
	return subs
}

func (s *selector) kindList() []event.Kind {
	if len(s.kinds) == 0 {
		return []event.Kind{event.KindBackend, event.KindVS, event.KindVA}
	}
	return s.kinds
}

func (s *selector) kindAll(k event.Kind) string {
	return strings.TrimSuffix(s.sp.EventsAll(), ">") + string(k) + ".>"
}

func (s *selector) eventSubjects() []string {
	var broad []string // one per kind: never overlapping
	for _, k := range s.kindList() {
		broad = append(broad, s.kindAll(k))
	}
	if len(s.kinds) == 0 {
		broad = []string{s.sp.EventsAll()}
	}
	if len(s.objects) == 0 {
		return broad
	}
	var subs []string
	for _, o := range s.objects {
		for _, k := range s.kindList() {
			switch {
			case o.addr.IsValid() && k == event.KindVA:
				subs = append(subs, s.sp.EventVA(o.addr))
			case o.addr.IsValid(): // VSs on it and backends on or under it: no narrower subject
				subs = append(subs, s.kindAll(k))
			case o.ep.IsValid() && k == event.KindVS:
				subs = append(subs, s.sp.EventVS(o.ep))
			case o.ep.IsValid() && k == event.KindBackend:
				subs = append(subs, s.sp.EventsBackendAll())
			case o.vs.IsValid() && k == event.KindBackend:
				subs = append(subs, s.sp.EventBackend(o.vs, o.backend))
			}
		}
	}
	return collapse(subs, broad)
}

// collapse removes duplicates and, when two subjects overlap, returns broad
// instead.
func collapse(subs, broad []string) []string {
	slices.Sort(subs)
	subs = slices.Compact(subs)
	for i := range subs {
		for j := i + 1; j < len(subs); j++ {
			if overlap(subs[i], subs[j]) {
				return broad
			}
		}
	}
	return subs
}

// overlap reports whether some subject matches both patterns.
func overlap(a, b string) bool {
	ta, tb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(ta) && i == len(tb):
			return true
		case i == len(ta) || i == len(tb):
			return false
		case ta[i] == ">" || tb[i] == ">":
			return true
		case ta[i] != tb[i] && ta[i] != "*" && tb[i] != "*":
			return false
		}
	}
}

// subjectMatch reports whether subj matches pattern.
func subjectMatch(pattern, subj string) bool {
	tp, ts := strings.Split(pattern, "."), strings.Split(subj, ".")
	for i, t := range tp {
		switch {
		case t == ">":
			return len(ts) > i
		case i >= len(ts) || (t != "*" && t != ts[i]):
			return false
		}
	}
	return len(tp) == len(ts)
}

// refs is what a message is about, for matching.
type refs struct {
	kind    event.Kind // "" when it has none (a config reload audit)
	action  bool
	va      netip.Addr
	vs      subject.VSID
	backend subject.BackendID
}

func refsOf(r *record) refs {
	var f refs
	switch m := r.msg.(type) {
	case *event.Transition:
		f.kind = m.Kind
		f.va, _ = netip.ParseAddr(m.VA)
		switch m.Kind {
		case event.KindVA:
			f.va, _ = netip.ParseAddr(m.Object)
		case event.KindVS:
			f.vs, _ = subject.ParseEndpoint(m.Object)
		case event.KindBackend:
			f.vs, _ = subject.ParseEndpoint(m.VS)
			f.backend, _ = subject.ParseEndpoint(m.Object)
		}
	case *event.ActionResult:
		f.kind, f.action = m.Kind, true
		if ep, err := subject.ParseEndpoint(m.Object); err == nil {
			f.vs = ep
		} else {
			f.va, _ = netip.ParseAddr(m.Object)
		}
	case *event.AuditRecord:
		if vs, be, ok := strings.Cut(m.Object, "/"); ok {
			var err1, err2 error
			f.vs, err1 = subject.ParseEndpoint(vs)
			f.backend, err2 = subject.ParseEndpoint(be)
			if err1 == nil && err2 == nil {
				f.kind = event.KindBackend
			}
		}
	}
	if !f.va.IsValid() && f.vs.IsValid() {
		f.va = f.vs.Addr
	}
	return f
}

// match reports whether the selector wants a decoded message.
func (s *selector) match(r *record) bool {
	f := refsOf(r)
	if len(s.kinds) > 0 && !slices.Contains(s.kinds, f.kind) {
		return false
	}
	if len(s.objects) == 0 {
		return true
	}
	for _, o := range s.objects {
		if o.match(r.subject, f) {
			return true
		}
	}
	return false
}

func (o object) match(subj string, f refs) bool {
	switch {
	case o.raw != "":
		return subjectMatch(o.raw, subj)
	case o.addr.IsValid():
		return f.va == o.addr || (f.vs.IsValid() && f.vs.Addr == o.addr) || (f.backend.IsValid() && f.backend.Addr == o.addr)
	case o.ep.IsValid():
		return f.vs == o.ep || f.backend == o.ep
	case f.backend.IsValid():
		return f.vs == o.vs && f.backend == o.backend
	default: // the VS's action results apply its backends' changes
		return f.action && f.vs == o.vs
	}
}
