// Package subject owns healthmesh's identifiers and their encoding into NATS
// subject tokens and JetStream KV keys, plus every subject, stream, bucket and
// key name the services use.
//
// Object IDs follow DPVS: a VA is the VIP ("192.168.88.1", "2001::1"), a VS is
// "VIP-PROTO-PORT" ("192.168.88.1-TCP-80") and a backend is "RIP-PROTO-PORT"
// within a VS. Subject tokens cannot contain '.', and KV keys allow only
// [-/_=.a-zA-Z0-9], so addresses are written with '.' → '_' (IPv4) and
// ':' → '-' (IPv6). Every encoding here is reversible and its output uses only
// [-_a-zA-Z0-9], which is legal in both places.
package subject

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrToken is wrapped by every decoding error of this package.
var ErrToken = errors.New("invalid token")

// Proto is a transport protocol of a virtual service, written as DPVS writes
// it in IDs (upper case).
type Proto uint8

// Protocol numbers as IANA (and dpvs-agent's Proto field) give them.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// String returns "TCP" or "UDP" (or "PROTO<n>" for anything else).
func (p Proto) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return "PROTO" + strconv.Itoa(int(p))
}

// Lower returns the lower-case name dpvs-agent URLs use ("tcp", "udp").
func (p Proto) Lower() string { return strings.ToLower(p.String()) }

// ParseProto accepts "TCP"/"UDP" in any case and the numbers 6 and 17.
func ParseProto(s string) (Proto, error) {
	switch strings.ToUpper(s) {
	case "TCP", "6":
		return TCP, nil
	case "UDP", "17":
		return UDP, nil
	}
	return 0, fmt.Errorf("%w: protocol %q (want TCP or UDP)", ErrToken, s)
}

// AddrToken encodes an address as a token: IPv4 dots become '_', IPv6 colons
// become '-'. IPv4-mapped IPv6 addresses are unmapped and zones are dropped,
// so the token names the address DPVS would use. The zero Addr becomes
// "invalid", which no parser accepts: its String() ("invalid IP") holds a
// space, and a space in a subject splits the NATS PUB line.
func AddrToken(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return strings.ReplaceAll(a.String(), ".", "_")
	}
	return strings.ReplaceAll(a.String(), ":", "-")
}

// ParseAddrToken decodes AddrToken's output. It accepts only the canonical
// form AddrToken produces, so every address has exactly one token.
func ParseAddrToken(tok string) (netip.Addr, error) {
	var s string
	switch {
	case tok == "":
		return netip.Addr{}, fmt.Errorf("%w: empty address", ErrToken)
	case strings.Contains(tok, "-"):
		s = strings.ReplaceAll(tok, "-", ":")
	default:
		s = strings.ReplaceAll(tok, "_", ".")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || AddrToken(a) != tok {
		return netip.Addr{}, fmt.Errorf("%w: address %q", ErrToken, tok)
	}
	return a, nil
}

// Endpoint is an address, protocol and port. It is the shape of both a VS ID
// (the VIP side) and a backend ID (the RIP side).
type Endpoint struct {
	Addr  netip.Addr
	Proto Proto
	Port  uint16
}

// VSID identifies a virtual service: VIP-PROTO-PORT.
type VSID = Endpoint

// BackendID identifies a backend (real server) within a VS: RIP-PROTO-PORT.
type BackendID = Endpoint

// String returns the DPVS form: "192.168.88.1-TCP-80", "2001::1-UDP-53".
func (e Endpoint) String() string {
	return e.Addr.Unmap().WithZone("").String() + "-" + e.Proto.String() + "-" + strconv.Itoa(int(e.Port))
}

// Token returns the subject/KV form: "192_168_88_1-TCP-80", "2001--1-UDP-53".
func (e Endpoint) Token() string {
	return AddrToken(e.Addr) + "-" + e.Proto.String() + "-" + strconv.Itoa(int(e.Port))
}

// HostPort returns "ip:port" or "[ip6]:port" for dialing.
func (e Endpoint) HostPort() string {
	return netip.AddrPortFrom(e.Addr.Unmap().WithZone(""), e.Port).String()
}

// IsValid reports whether the endpoint has an address and a known protocol.
func (e Endpoint) IsValid() bool { return e.Addr.IsValid() && (e.Proto == TCP || e.Proto == UDP) }

// ParseEndpoint parses the DPVS form "IP-PROTO-PORT", decoding from the
// right (port, protocol, then the address, which may contain '-' never but
// may contain ':'). Protocol is case-insensitive on input.
func ParseEndpoint(s string) (Endpoint, error) {
	rest, port, err := cutPort(s)
	if err != nil {
		return Endpoint{}, err
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return Endpoint{}, fmt.Errorf("%w: %q: want IP-PROTO-PORT", ErrToken, s)
	}
	proto, err := ParseProto(rest[i+1:])
	if err != nil || strings.ContainsAny(rest[i+1:], "0123456789") {
		return Endpoint{}, fmt.Errorf("%w: %q: protocol %q (want TCP or UDP)", ErrToken, s, rest[i+1:])
	}
	a, err := netip.ParseAddr(rest[:i])
	if err != nil || a.Zone() != "" {
		return Endpoint{}, fmt.Errorf("%w: %q: address %q", ErrToken, s, rest[:i])
	}
	return Endpoint{Addr: a.Unmap(), Proto: proto, Port: port}, nil
}

// ParseEndpointToken decodes Endpoint.Token's output.
func ParseEndpointToken(tok string) (Endpoint, error) {
	rest, port, err := cutPort(tok)
	if err != nil {
		return Endpoint{}, err
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 {
		return Endpoint{}, fmt.Errorf("%w: %q: want ADDR-PROTO-PORT", ErrToken, tok)
	}
	p := rest[i+1:]
	if p != "TCP" && p != "UDP" {
		return Endpoint{}, fmt.Errorf("%w: %q: protocol %q", ErrToken, tok, p)
	}
	proto, _ := ParseProto(p)
	a, err := ParseAddrToken(rest[:i])
	if err != nil {
		return Endpoint{}, fmt.Errorf("%w: %q: %v", ErrToken, tok, err)
	}
	return Endpoint{Addr: a, Proto: proto, Port: port}, nil
}

func cutPort(s string) (string, uint16, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return "", 0, fmt.Errorf("%w: %q: no port", ErrToken, s)
	}
	ps := s[i+1:]
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || strconv.FormatUint(p, 10) != ps {
		return "", 0, fmt.Errorf("%w: %q: port %q", ErrToken, s, ps)
	}
	return s[:i], uint16(p), nil
}
