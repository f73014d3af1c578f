package prober

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/healthmesh/healthmesh/services/prober/internal/probe"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// spec is a target as the prober keeps it: its definition from hm_targets,
// parsed once when it arrives and shared by the desired set and the
// target's job. The decoded definition (a 240-byte struct and its strings)
// is not kept: at 10,000 targets that was 3 MB of the prober's heap.
type spec struct {
	token     string       // the target's ID: its results' Target
	target    probe.Target // address and port to check (check-addr/check-port applied), source resolved
	method    string       // resolved (never auto), one of probe.Methods
	params    map[string]string
	interval  int64 // ns
	fast      int64 // ns, while a state is changing
	down      int64 // ns, while down
	jitter    float64
	observers int
	rev       uint64
}

// parseSpec checks and parses a target definition. An error names the field.
func parseSpec(def *event.Target) (*spec, error) {
	if _, err := subject.ParseTargetToken(def.ID); err != nil {
		return nil, err
	}
	proto, err := subject.ParseProto(def.Proto)
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParseAddr(def.Addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", def.Addr, err)
	}
	if def.CheckAddr != "" {
		if addr, err = netip.ParseAddr(def.CheckAddr); err != nil {
			return nil, fmt.Errorf("check address %q: %w", def.CheckAddr, err)
		}
	}
	port := def.Port
	if def.CheckPort != 0 {
		port = def.CheckPort
	}
	pt := probe.Target{Addr: netip.AddrPortFrom(addr.Unmap(), port), Proto: proto, Timeout: time.Duration(def.Timeout), Netns: def.Netns}
	if def.Source != "" {
		src, err := netip.ParseAddr(def.Source)
		if err != nil {
			// Not a literal: a go-sockaddr template, resolved here, on the
			// prober's host, where the address belongs.
			if src, err = probe.ResolveSource(def.Source); err != nil {
				return nil, err
			}
		}
		pt.Source = src
	}
	method := probe.Resolve(strings.ToLower(def.Method), proto)
	// The package's own copy of the name, not the decoded one.
	if ms := probe.Methods(); slices.Contains(ms, method) {
		method = ms[slices.Index(ms, method)]
	}
	return &spec{token: def.ID, target: pt, method: method, params: def.Params,
		interval: def.Interval, fast: def.FastInterval, down: def.DownInterval, jitter: def.Jitter,
		observers: def.Observers, rev: def.Rev}, nil
}

// sameProbe reports whether a and b are probed the same way on the same
// schedule: a job built for a serves b.
func sameProbe(a, b *spec) bool {
	return a.token == b.token && a.target == b.target && a.method == b.method && a.interval == b.interval &&
		a.fast == b.fast && a.down == b.down && a.jitter == b.jitter && a.observers == b.observers &&
		maps.Equal(a.params, b.params)
}
