package dpvsagent

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/healthmesh/healthmesh/shared/subject"
)

// Address families as dpvs-agent reports them in VirtualServer.Af.
const (
	AfInet  uint32 = 2
	AfInet6 uint32 = 10
)

// VirtualServer is dpvs-agent's VirtualServerSpecExpand: one virtual service
// as GET /v2/vs lists it and as the 270 reply of the health update carries it.
// Field names are the agent's JSON keys. Booleans the agent reports as
// strings ("true"/"false") stay strings here.
type VirtualServer struct {
	Addr            string         `json:"Addr,omitempty"`
	Af              uint32         `json:"Af,omitempty"`
	Port            uint16         `json:"Port,omitempty"`
	Proto           uint8          `json:"Proto,omitempty"`
	Fwmark          uint32         `json:"Fwmark,omitempty"`
	Version         string         `json:"Version,omitempty"`
	SchedName       string         `json:"SchedName,omitempty"`
	Flags           string         `json:"Flags,omitempty"`
	SynProxy        string         `json:"SynProxy,omitempty"`
	ExpireQuiescent string         `json:"ExpireQuiescent,omitempty"`
	Quic            string         `json:"Quic,omitempty"`
	Timeout         uint32         `json:"Timeout,omitempty"`
	ConnTimeout     uint32         `json:"ConnTimeout,omitempty"`
	Netmask         uint32         `json:"Netmask,omitempty"`
	Bps             uint32         `json:"Bps,omitempty"`
	LimitProportion uint32         `json:"LimitProportion,omitempty"`
	ProxyProto      uint8          `json:"ProxyProto,omitempty"`
	DestCheck       []string       `json:"DestCheck"` // no omitempty in the agent: null when empty
	Match           *Match         `json:"Match,omitempty"`
	Stats           *ServerStats   `json:"Stats,omitempty"`
	RSs             RealServerList `json:"RSs,omitzero"`
}

// RealServerList is the agent's RealServerExpandList, the RSs of a service.
type RealServerList struct {
	Items []RealServerExpand `json:"Items"`
}

// RealServerExpand is one listed real server: its spec and, when asked for,
// its statistics.
type RealServerExpand struct {
	Spec  RealServer   `json:"Spec"`
	Stats *ServerStats `json:"Stats,omitempty"`
}

// RealServer is the agent's RealServerSpecTiny, used both in listings (as
// RealServerExpand.Spec) and in request bodies (RealServerTinyList items).
// Port and weight are always present on the wire.
type RealServer struct {
	IP         string `json:"ip"`
	Port       uint16 `json:"port"`
	Weight     uint16 `json:"weight"`
	Inhibited  *bool  `json:"inhibited,omitempty"`
	Overloaded *bool  `json:"overloaded,omitempty"`
	Mode       string `json:"mode,omitempty"`
}

// ServerStats are the agent's per-service and per-real-server counters.
type ServerStats struct {
	Conns    uint64 `json:"Conns,omitempty"`
	InPkts   uint64 `json:"InPkts,omitempty"`
	InBytes  uint64 `json:"InBytes,omitempty"`
	OutPkts  uint64 `json:"OutPkts,omitempty"`
	OutBytes uint64 `json:"OutBytes,omitempty"`
	Cps      uint32 `json:"Cps,omitempty"`
	InPps    uint32 `json:"InPps,omitempty"`
	InBps    uint32 `json:"InBps,omitempty"`
	OutPps   uint32 `json:"OutPps,omitempty"`
	OutBps   uint32 `json:"OutBps,omitempty"`
}

// Match is the agent's MatchSpec (match-based services, which healthmesh
// does not check but keeps so nothing is lost in a round trip).
type Match struct {
	Src       *AddrRange `json:"Src,omitempty"`
	Dest      *AddrRange `json:"Dest,omitempty"`
	InIfName  string     `json:"InIfName,omitempty"`
	OutIfName string     `json:"OutIfName,omitempty"`
}

// AddrRange is the agent's AddrRange.
type AddrRange struct {
	Start string `json:"Start,omitempty"`
	End   string `json:"End,omitempty"`
}

// VirtualServerSpec is the agent's VirtualServerSpecTiny, the body of
// PUT /v2/vs/{id} that creates or updates a service. Unlike the listing, the
// booleans are JSON booleans here.
type VirtualServerSpec struct {
	SchedName       string `json:"SchedName,omitempty"`
	Fwmark          uint32 `json:"Fwmark,omitempty"`
	Timeout         uint32 `json:"Timeout,omitempty"`
	ConnTimeout     uint32 `json:"ConnTimeout,omitempty"`
	Bps             uint32 `json:"Bps,omitempty"`
	LimitProportion uint32 `json:"LimitProportion,omitempty"`
	SynProxy        *bool  `json:"SynProxy,omitempty"`
	ExpireQuiescent *bool  `json:"ExpireQuiescent,omitempty"`
	Quic            *bool  `json:"Quic,omitempty"`
	ProxyProtocol   string `json:"ProxyProtocol,omitempty"`
	Match           *Match `json:"Match,omitempty"`
}

// Bool returns a pointer to b, for RealServer.Inhibited and friends.
func Bool(b bool) *bool { return &b }

// ID returns the service's identifier. It fails when the address does not
// parse or the protocol is not TCP or UDP.
func (v *VirtualServer) ID() (subject.VSID, error) {
	a, err := netip.ParseAddr(v.Addr)
	if err != nil || a.Zone() != "" {
		return subject.VSID{}, fmt.Errorf("%w: service address %q", ErrInvalid, v.Addr)
	}
	p := subject.Proto(v.Proto)
	if p != subject.TCP && p != subject.UDP {
		return subject.VSID{}, fmt.Errorf("%w: service %s port %d: protocol %d (want 6 TCP or 17 UDP)",
			ErrInvalid, v.Addr, v.Port, v.Proto)
	}
	return subject.VSID{Addr: a.Unmap(), Proto: p, Port: v.Port}, nil
}

// VersionUint parses Version, the agent's decimal millisecond timestamp.
func (v *VirtualServer) VersionUint() (uint64, error) {
	n, err := strconv.ParseUint(v.Version, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: service %s-%d: version %q: not a decimal number", ErrInvalid, v.Addr, v.Port, v.Version)
	}
	return n, nil
}

// Backends returns the specs of the listed real servers, in listing order.
func (v *VirtualServer) Backends() []RealServer {
	out := make([]RealServer, len(v.RSs.Items))
	for i, it := range v.RSs.Items {
		out[i] = it.Spec
	}
	return out
}

// validate checks what healthmesh relies on: the service id, a numeric
// version when wantVersion, and parsable real server addresses.
func (v *VirtualServer) validate(wantVersion bool) error {
	id, err := v.ID()
	if err != nil {
		return err
	}
	if wantVersion {
		if _, err := v.VersionUint(); err != nil {
			return err
		}
	}
	for i, rs := range v.RSs.Items {
		if _, err := rs.Spec.Addr(); err != nil {
			return fmt.Errorf("service %s: RSs.Items[%d]: %w", id, i, err)
		}
	}
	return nil
}

// Addr parses the real server's IP.
func (r RealServer) Addr() (netip.Addr, error) {
	a, err := netip.ParseAddr(r.IP)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: real server address %q", ErrInvalid, r.IP)
	}
	return a.Unmap(), nil
}

// IsInhibited reports the inhibited flag, absent meaning false.
func (r RealServer) IsInhibited() bool { return r.Inhibited != nil && *r.Inhibited }

// PathID returns the service id dpvs-agent uses in URL paths:
// lower(ip)-port-proto, IPv6 raw ("2001::1-80-tcp").
func PathID(vs subject.VSID) string {
	return strings.ToLower(vs.Addr.Unmap().WithZone("").String()) + "-" +
		strconv.Itoa(int(vs.Port)) + "-" + vs.Proto.Lower()
}

// ErrPathID is wrapped by ParsePathID's errors.
var ErrPathID = errors.New("invalid service id")

// ParsePathID parses a path id as the agent does: ip-port-proto with the
// protocol in any case. IPv6 addresses contain no '-', so the id is split
// from the right.
func ParsePathID(s string) (subject.VSID, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return subject.VSID{}, fmt.Errorf("%w: %q: want ip-port-proto", ErrPathID, s)
	}
	rest, ps := s[:i], s[i+1:]
	var proto subject.Proto
	switch strings.ToLower(ps) {
	case "tcp":
		proto = subject.TCP
	case "udp":
		proto = subject.UDP
	default:
		return subject.VSID{}, fmt.Errorf("%w: %q: protocol %q (want tcp or udp)", ErrPathID, s, ps)
	}
	j := strings.LastIndexByte(rest, '-')
	if j < 0 {
		return subject.VSID{}, fmt.Errorf("%w: %q: want ip-port-proto", ErrPathID, s)
	}
	port, err := strconv.ParseUint(rest[j+1:], 10, 16)
	if err != nil {
		return subject.VSID{}, fmt.Errorf("%w: %q: port %q", ErrPathID, s, rest[j+1:])
	}
	a, err := netip.ParseAddr(rest[:j])
	if err != nil || a.Zone() != "" {
		return subject.VSID{}, fmt.Errorf("%w: %q: address %q", ErrPathID, s, rest[:j])
	}
	return subject.VSID{Addr: a.Unmap(), Proto: proto, Port: uint16(port)}, nil
}
