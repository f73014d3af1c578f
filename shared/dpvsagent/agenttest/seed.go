package agenttest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Seed is an initial content for the emulator: services grouped by VIP, and
// device addresses. In YAML (JSON works too):
//
//	vips:
//	  - addr: 192.0.2.1
//	    services:
//	      - port: 80            # required
//	        proto: tcp          # tcp (default) or udp
//	        sched: wrr          # default wrr
//	        backends:
//	          - {ip: 127.0.0.1, port: 8081, weight: 100}  # weight default 100
//	          - {ip: 127.0.0.2, port: 8081, inhibited: true, mode: DR}
//	devices:
//	  dpdk0: [192.0.2.1]        # "ip" or "ip/plen"
//
// Seeded services are created as PUT /v2/vs/{id} and POST /v2/vs/{id}/rs
// would create them, so they are in the snapshot with a version.
type Seed struct {
	VIPs    []SeedVIP           `yaml:"vips" json:"vips"`
	Devices map[string][]string `yaml:"devices" json:"devices"`
}

// SeedVIP is one VIP with its services.
type SeedVIP struct {
	Addr     string        `yaml:"addr" json:"addr"`
	Services []SeedService `yaml:"services" json:"services"`
}

// SeedService is one service of a VIP.
type SeedService struct {
	Port            uint16        `yaml:"port" json:"port"`
	Proto           string        `yaml:"proto" json:"proto"`
	Sched           string        `yaml:"sched" json:"sched"`
	SynProxy        bool          `yaml:"synproxy" json:"synproxy"`
	Quic            bool          `yaml:"quic" json:"quic"`
	ExpireQuiescent bool          `yaml:"expire_quiescent" json:"expire_quiescent"`
	Timeout         uint32        `yaml:"timeout" json:"timeout"`
	ConnTimeout     uint32        `yaml:"conn_timeout" json:"conn_timeout"`
	Backends        []SeedBackend `yaml:"backends" json:"backends"`
}

// SeedBackend is one real server.
type SeedBackend struct {
	IP        string  `yaml:"ip" json:"ip"`
	Port      uint16  `yaml:"port" json:"port"`
	Weight    *uint16 `yaml:"weight" json:"weight"` // default DefaultSeedWeight
	Inhibited bool    `yaml:"inhibited" json:"inhibited"`
	Mode      string  `yaml:"mode" json:"mode"` // default FNAT
}

// DefaultSeedWeight is the weight of a seeded backend that gives none.
const DefaultSeedWeight = 100

// ErrSeed is wrapped by every seed error.
var ErrSeed = errors.New("invalid seed")

// ParseSeed decodes a YAML (or JSON) seed strictly: unknown keys are errors.
func ParseSeed(b []byte) (Seed, error) {
	var s Seed
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil && !errors.Is(err, io.EOF) {
		return Seed{}, fmt.Errorf("%w: %w", ErrSeed, err)
	}
	if _, err := s.compile(); err != nil {
		return Seed{}, err
	}
	return s, nil
}

// LoadSeedFile reads and parses a seed file.
func LoadSeedFile(path string) (Seed, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Seed{}, fmt.Errorf("seed: %w", err)
	}
	s, err := ParseSeed(b)
	if err != nil {
		return Seed{}, fmt.Errorf("seed %s: %w", path, err)
	}
	return s, nil
}

type seedService struct {
	key  string
	id   subject.VSID
	spec dpvsagent.VirtualServerSpec
	rss  []dpvsagent.RealServer
}

type seedAddr struct {
	device string
	prefix netip.Prefix
}

type compiledSeed struct {
	services []seedService
	addrs    []seedAddr
}

// compile validates the seed and turns it into API operations; errors name
// the offending element.
func (s Seed) compile() (compiledSeed, error) {
	var c compiledSeed
	seen := map[string]string{}
	for i, v := range s.VIPs {
		at := fmt.Sprintf("vips[%d]", i)
		addr, err := (dpvsagent.RealServer{IP: v.Addr}).Addr()
		if err != nil {
			return c, fmt.Errorf("%w: %s.addr: %q is not an IP address", ErrSeed, at, v.Addr)
		}
		for j, svc := range v.Services {
			at := fmt.Sprintf("%s.services[%d]", at, j)
			proto := subject.TCP
			if svc.Proto != "" {
				if proto, err = subject.ParseProto(svc.Proto); err != nil {
					return c, fmt.Errorf("%w: %s.proto: %q (want tcp or udp)", ErrSeed, at, svc.Proto)
				}
			}
			if svc.Port == 0 {
				return c, fmt.Errorf("%w: %s.port: required (1..65535)", ErrSeed, at)
			}
			id := subject.VSID{Addr: addr, Proto: proto, Port: svc.Port}
			key := dpvsagent.PathID(id)
			if prev, dup := seen[key]; dup {
				return c, fmt.Errorf("%w: %s: service %s already defined at %s", ErrSeed, at, id, prev)
			}
			seen[key] = at
			ss := seedService{key: key, id: id, spec: dpvsagent.VirtualServerSpec{
				SchedName: svc.Sched, Timeout: svc.Timeout, ConnTimeout: svc.ConnTimeout,
				SynProxy: dpvsagent.Bool(svc.SynProxy), Quic: dpvsagent.Bool(svc.Quic),
				ExpireQuiescent: dpvsagent.Bool(svc.ExpireQuiescent),
			}}
			rsSeen := map[string]int{}
			for k, b := range svc.Backends {
				at := fmt.Sprintf("%s.backends[%d]", at, k)
				w := uint16(DefaultSeedWeight)
				if b.Weight != nil {
					w = *b.Weight
				}
				rs, err := normRS(dpvsagent.RealServer{IP: b.IP, Port: b.Port, Weight: w,
					Inhibited: dpvsagent.Bool(b.Inhibited), Mode: b.Mode})
				if err != nil {
					return c, fmt.Errorf("%w: %s: %v", ErrSeed, at, err)
				}
				if prev, dup := rsSeen[rsKey(rs)]; dup {
					return c, fmt.Errorf("%w: %s: backend %s:%d duplicates backends[%d]", ErrSeed, at, b.IP, b.Port, prev)
				}
				rsSeen[rsKey(rs)] = k
				ss.rss = append(ss.rss, rs)
			}
			c.services = append(c.services, ss)
		}
	}
	for name, addrs := range s.Devices {
		if name == "" {
			return c, fmt.Errorf("%w: devices: empty device name", ErrSeed)
		}
		for i, a := range addrs {
			p, err := parsePrefix(a)
			if err != nil {
				return c, fmt.Errorf("%w: devices.%s[%d]: %v", ErrSeed, name, i, err)
			}
			c.addrs = append(c.addrs, seedAddr{device: name, prefix: p})
		}
	}
	return c, nil
}

// Seed adds the seed's services (replacing the real servers of services that
// exist) and device addresses. Nothing is applied when the seed is invalid.
func (a *Agent) Seed(s Seed) error {
	c, err := s.compile()
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, svc := range c.services {
		a.upsertVS(svc.key, svc.id, svc.spec)
		a.replaceRS(svc.key, svc.rss)
	}
	for _, d := range c.addrs {
		a.addDeviceAddr(d.device, d.prefix)
	}
	return nil
}

// Reset forgets every service, device address, fault and recorded call.
func (a *Agent) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.snap = map[string]*dpvsagent.VirtualServer{}
	a.live = map[string]*liveService{}
	a.devices = map[string]map[string]struct{}{}
	a.faults, a.calls = nil, nil
}
