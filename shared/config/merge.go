package config

import (
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// mergeVA fills the zero fields of a VA block from its parent, as DPVS does:
// disable is never inherited and action-params only when the block has none.
func mergeVA(c, parent VAConf) VAConf {
	inheritZero(reflectOf(&c), reflect.ValueOf(parent), "Disable")
	return c
}

// mergeVS fills the zero fields of a VS block from its parent. method-params
// belong to method: a block without a method takes the parent's method and
// its params (dropping its own); a block with a method never inherits params.
func mergeVS(c, parent VSConf) VSConf {
	if c.Method == 0 {
		c.Method = parent.Method
		c.MethodParams = maps.Clone(parent.MethodParams)
	}
	inheritZero(reflectOf(&c), reflect.ValueOf(parent), "Method", "MethodParams")
	return c
}

// inheritZero copies each zero field of dst (a map: each empty one) from
// parent, except the named fields. Done by reflection so that a new field
// inherits without anyone remembering to add it here.
func inheritZero(dst, parent reflect.Value, except ...string) {
	t := dst.Type()
	for i := range t.NumField() {
		if slices.Contains(except, t.Field(i).Name) {
			continue
		}
		f, pf := dst.Field(i), parent.Field(i)
		switch {
		case f.Kind() == reflect.Map:
			if f.Len() == 0 && pf.Len() > 0 {
				f.Set(cloneMap(pf))
			}
		case f.IsZero():
			f.Set(pf)
		}
	}
}

func cloneMap(m reflect.Value) reflect.Value {
	out := reflect.MakeMapWithSize(m.Type(), m.Len())
	for it := m.MapRange(); it.Next(); {
		out.SetMapIndex(it.Key(), it.Value())
	}
	return out
}

// merge builds the effective configuration from the blocks as written.
func (p *parser) merge(cfg *Config, raw rawFile) {
	cfg.Global.VirtualAddress = mergeVA(raw.globalVA, defaultVA())
	cfg.Global.VirtualServer = mergeVS(raw.globalVS, defaultVS())
	for vip, va := range raw.vas {
		cfg.VirtualAddresses[vip] = mergeVA(va, cfg.Global.VirtualAddress)
	}
	for id, vs := range raw.vss {
		cfg.VirtualServers[id] = mergeVS(vs, cfg.Global.VirtualServer)
	}
	for id, sf := range raw.services {
		path := join(keyServices, p.svKey[id])
		weight := cfg.EffectiveVS(id).Weight
		if weight == 0 {
			weight = DefaultServiceWeight
		}
		svc := Service{Backends: make([]Backend, 0, len(sf.Backends))}
		for i, bf := range sf.Backends {
			b := Backend{Addr: bf.Addr, Port: id.Port, Weight: weight, Inhibited: bf.Inhibited}
			if bf.Port != nil {
				b.Port = *bf.Port
			}
			if bf.Weight != nil {
				b.Weight = *bf.Weight
			}
			bp := join(join(path, "backends"), strconv.Itoa(i))
			if !p.has(join(bp, "addr")) {
				p.errf(bp, "addr is required")
			}
			if bf.Port != nil && b.Port == 0 {
				p.errf(join(bp, "port"), "must be 1..65535 (leave it out to use the service's port %d)", id.Port)
			}
			svc.Backends = append(svc.Backends, b)
		}
		cfg.Services[id] = svc
	}
}

// EffectiveVA returns the configuration of a VA: its own block if the file
// has one, else the global block — the lookup DPVS does at run time. The
// maps are copies.
func (c *Config) EffectiveVA(vip netip.Addr) VAConf {
	va, ok := c.VirtualAddresses[vip.Unmap().WithZone("")]
	if !ok {
		va = c.Global.VirtualAddress
	}
	va.ActionParams = maps.Clone(va.ActionParams)
	return va
}

// EffectiveVS returns the configuration of a VS: its own block if the file
// has one, else the global block, with auto resolved for the VS's protocol
// (as DPVS does when it creates the VS). The maps are copies.
func (c *Config) EffectiveVS(id subject.VSID) VSConf {
	id.Addr = id.Addr.Unmap().WithZone("")
	vs, ok := c.VirtualServers[id]
	if !ok {
		vs = c.Global.VirtualServer
	}
	vs.Method = vs.Method.ResolveAuto(id.Proto)
	vs.MethodParams = maps.Clone(vs.MethodParams)
	vs.ActionParams = maps.Clone(vs.ActionParams)
	return vs
}
