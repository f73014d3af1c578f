// Package inventory turns the configuration and the dpvs-agent service list
// into what the aggregator judges (a topology.Inventory) and what probers
// probe (deduplicated targets for KV hm_targets).
//
// Services come from dpvs-agent (GET /v2/vs) and/or the config file's
// `services` section; a VS listed by both takes dpvs-agent's backends. Each
// VS is checked with its effective virtual-server config (per-VS block, else
// the global one), adjusted by what DPVS says about the service: a DestCheck
// method replaces the configured one (passive or unknown → the VS is left
// unchecked: DPVS checks it itself), ProxyProto adds proxy-protocol, and a
// QUIC service checked by http is left unchecked (no HTTP/3 probe). An
// unchecked VS is reported and never drags its VA down.
//
// A target is what is probed: address, port, protocol, method, params,
// source, netns, check address/port. Its ID hashes exactly those, not the
// timing, so changing interval, timeout or retries keeps the target and its
// state (as DPVS does on reload). Backends of several VSs that are probed the
// same way share one target; its timing comes from the first VS in ID order.
package inventory

import (
	"time"

	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/engine"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/config"
	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Problem is something in the inventory that could not be used as is.
type Problem struct {
	Object string // VS or backend ID
	Msg    string
}

func (p Problem) String() string { return p.Object + ": " + p.Msg }

// vsSource is one VS with its backends as the inventory sees it.
type vsSource struct {
	id       subject.VSID
	backends []topology.BackendSpec
	agent    *dpvsagent.VirtualServer // nil for static services
}

// Build computes the desired state. agent is the last good dpvs-agent list
// (nil when the agent is not used).
func Build(cfg *config.Config, agent []dpvsagent.VirtualServer) (engine.Desired, []Problem) {
	var problems []Problem
	byID := map[subject.VSID]*vsSource{}
	for id, svc := range cfg.Services {
		src := &vsSource{id: id}
		for _, b := range svc.Backends {
			src.backends = append(src.backends, topology.BackendSpec{
				ID: subject.BackendID{Addr: b.Addr, Proto: id.Proto, Port: b.Port}, Weight: b.Weight, Inhibited: b.Inhibited})
		}
		byID[id] = src
	}
	for i := range agent {
		v := &agent[i]
		id, err := v.ID()
		if err != nil {
			problems = append(problems, Problem{Object: fmt.Sprintf("%s:%d", v.Addr, v.Port), Msg: err.Error()})
			continue
		}
		src := &vsSource{id: id, agent: v}
		for _, rs := range v.Backends() {
			a, err := rs.Addr()
			if err != nil {
				problems = append(problems, Problem{Object: id.String(), Msg: err.Error()})
				continue
			}
			src.backends = append(src.backends, topology.BackendSpec{
				ID: subject.BackendID{Addr: a.Unmap(), Proto: id.Proto, Port: rs.Port}, Weight: rs.Weight,
				Inhibited: rs.IsInhibited(), Version: v.Version, Listed: true})
		}
		byID[id] = src
	}
	ids := make([]subject.VSID, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })

	d := engine.Desired{Targets: map[string]engine.TargetDef{}, Rev: revision(cfg.Revision)}
	vips := map[netip.Addr]bool{}
	for _, id := range ids {
		src := byID[id]
		vips[id.Addr] = true
		vc := cfg.EffectiveVS(id)
		spec := topology.VSSpec{
			ID:       id,
			Backends: src.backends,
			Action: event.ActionSpec{Actioner: vc.Actioner, Params: vc.ActionParams,
				Timeout: int64(vc.ActionTimeout), SyncTime: int64(vc.ActionSyncTime)},
			Guards: topology.Guards{MinUp: vc.MinUp, MaxDownFraction: vc.MaxDownFraction},
		}
		method, params, why := fromAgent(vc, src.agent)
		if why != "" {
			spec.Unchecked, spec.UncheckedReason = true, why
			for i := range spec.Backends {
				spec.Backends[i].Target = ""
			}
			d.Inventory.VSs = append(d.Inventory.VSs, spec)
			continue
		}
		for i := range spec.Backends {
			b := &spec.Backends[i]
			tid, def, err := target(cfg, vc, method, params, b.ID)
			if err != nil {
				problems = append(problems, Problem{Object: id.String() + "/" + b.ID.String(), Msg: err.Error()})
				continue
			}
			b.Target = tid
			if have, ok := d.Targets[tid]; ok {
				have.Def.UsedBy = append(have.Def.UsedBy, id.String()+"/"+b.ID.String())
				d.Targets[tid] = have
				continue
			}
			def.Def.UsedBy = []string{id.String() + "/" + b.ID.String()}
			d.Targets[tid] = def
		}
		d.Inventory.VSs = append(d.Inventory.VSs, spec)
	}
	for vip := range vips {
		va := cfg.EffectiveVA(vip)
		d.Inventory.VAs = append(d.Inventory.VAs, topology.VASpec{
			VIP: vip, DownPolicy: int(va.DownPolicy), Disabled: va.Disable,
			Action: event.ActionSpec{Actioner: va.Actioner, Params: va.ActionParams,
				Timeout: int64(va.ActionTimeout), SyncTime: int64(va.ActionSyncTime)},
		})
	}
	sort.Slice(d.Inventory.VAs, func(i, j int) bool { return d.Inventory.VAs[i].VIP.Less(d.Inventory.VAs[j].VIP) })
	return d, problems
}

// fromAgent applies what DPVS says about the service to the configured
// method. A non-empty reason means the VS cannot be checked.
func fromAgent(vc config.VSConf, v *dpvsagent.VirtualServer) (config.Method, map[string]string, string) {
	method, params := vc.Method, maps.Clone(vc.MethodParams)
	if params == nil {
		params = map[string]string{}
	}
	if v != nil {
		if len(v.DestCheck) > 0 {
			m, err := config.ParseMethod(strings.ToLower(v.DestCheck[0]))
			switch {
			case err != nil || m == config.MethodPassive:
				return 0, nil, fmt.Sprintf("dpvs dest-check %q: checked by DPVS itself, not by healthmesh", v.DestCheck[0])
			case m != method:
				method, params = m.ResolveAuto(protoOf(v)), map[string]string{}
			}
		}
		switch {
		case v.ProxyProto&0x1 != 0:
			params["proxy-protocol"] = "v1"
		case v.ProxyProto&0x2 != 0:
			params["proxy-protocol"] = "v2"
		}
		if strings.EqualFold(v.Quic, "true") && method == config.MethodHTTP {
			return 0, nil, "QUIC service: HTTP/3 checks are not supported"
		}
	}
	if !method.Probed() {
		return 0, nil, "method " + method.String() + " cannot be probed"
	}
	if (method == config.MethodUDP || method == config.MethodUDPPing) && params["proxy-protocol"] == "v1" {
		delete(params, "proxy-protocol") // PROXY v1 is text over a stream: not for UDP
	}
	return method, params, ""
}

func protoOf(v *dpvsagent.VirtualServer) subject.Proto {
	if v.Proto == uint8(subject.UDP) {
		return subject.UDP
	}
	return subject.TCP
}

// target builds the probe definition of one backend.
func target(cfg *config.Config, vc config.VSConf, method config.Method, params map[string]string, b subject.BackendID) (string, engine.TargetDef, error) {
	ep := b
	if vc.CheckAddress != "" {
		a, err := netip.ParseAddr(vc.CheckAddress)
		if err != nil {
			return "", engine.TargetDef{}, fmt.Errorf("check-address %q: %v", vc.CheckAddress, err)
		}
		ep.Addr = a.Unmap()
	}
	if vc.CheckPort != 0 {
		ep.Port = vc.CheckPort
	}
	var canon strings.Builder
	keys := slices.Sorted(maps.Keys(params))
	for _, k := range keys {
		canon.WriteString(k + "=" + params[k] + "\n")
	}
	canon.WriteString("src=" + vc.Source + "\nns=" + vc.Netns + "\n")
	if ep != b {
		canon.WriteString("check=" + ep.HostPort() + "\n")
	}
	tid := subject.TargetID{Endpoint: b, Method: method.String(), Hash: subject.HashOf(canon.String())}
	obs := int(vc.Observers)
	if obs == 0 {
		obs = 1
	}
	upRetry, downRetry := vc.UpCount()-1, vc.DownCount()-1
	def := engine.TargetDef{
		Params: checker.Params{UpRetry: upRetry, DownRetry: downRetry, StaleIntervals: cfg.Aggregator.StaleIntervals,
			MinStale: minStale(cfg.Bus.MemberTTL, vc.Interval, vc.DownInterval, max(upRetry, downRetry)),
			Quorum:   vc.Quorum, Observers: obs, Interval: vc.Interval, InitialState: vc.InitialState},
		Def: event.Target{
			ID: tid.Token(), Addr: b.Addr.String(), Port: b.Port, Proto: b.Proto.String(), Method: method.String(),
			Params: params, Interval: int64(vc.Interval), Timeout: int64(vc.Timeout), Observers: obs,
			Jitter: jitter(vc.Jitter, cfg.Prober.Jitter), FastInterval: int64(vc.FastInterval), DownInterval: int64(vc.DownInterval),
			Source: vc.Source, Netns: vc.Netns,
		},
	}
	if ep.Addr != b.Addr {
		def.Def.CheckAddr = ep.Addr.String()
	}
	if ep.Port != b.Port {
		def.Def.CheckPort = ep.Port
	}
	if len(params) == 0 {
		def.Def.Params = nil
	}
	return tid.Token(), def, nil
}

func jitter(vs, global float64) float64 {
	if vs > 0 {
		return vs
	}
	return global
}

// revision turns the config's content hash into a number for events.
func revision(hex string) uint64 {
	if len(hex) > 15 {
		hex = hex[:15]
	}
	n, _ := strconv.ParseUint(hex, 16, 64)
	return n
}

// minStale is how long a dead prober's targets can go without a debounced
// result from their new owner: its membership expires (member TTL), the new
// owner's first probe comes within an interval, and retry+1 results in a row
// make its first debounced state; one more interval is slack. Silence
// shorter than that is a reshard, not evidence.
func minStale(memberTTL, interval, downInterval time.Duration, retry int) time.Duration {
	iv := max(interval, downInterval)
	return memberTTL + time.Duration(retry+2)*iv
}
