package probe

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
)

// PROXY protocol headers (haproxy.org/download/2.9/doc/proxy-protocol.txt).
// Unlike DPVS, which sent "PROXY UNKNOWN" (v1) and a LOCAL command (v2),
// probes send the PROXY command with the connection's real addresses: a
// backend that requires the header and validates it then sees a well-formed
// client, and logs the prober's address instead of nothing.

// ppv2Sig is the 12-byte v2 signature.
const ppv2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// proxyHeader returns the header of version v for connection c, whose
// addresses it reports (source = our local end, destination = the backend).
func proxyHeader(v ProxyProtocol, c net.Conn, udp bool) []byte {
	local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	switch v {
	case ProxyV1:
		return proxyV1(local, remote)
	case ProxyV2:
		return proxyV2(local, remote, udp)
	}
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// proxyV1 builds "PROXY TCP4 src dst sport dport\r\n" (TCP6 for IPv6), or
// "PROXY UNKNOWN\r\n" when the addresses are unusable.
func proxyV1(src, dst netip.AddrPort) []byte {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		return []byte("PROXY UNKNOWN\r\n")
	}
	fam := "TCP4"
	if s.Is6() {
		fam = "TCP6"
	}
	b := make([]byte, 0, 108) // the spec's maximum v1 line
	b = append(b, "PROXY "...)
	b = append(b, fam...)
	b = append(b, ' ')
	b = s.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = d.WithZone("").AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, "\r\n"...)
}

// proxyV2 builds the binary v2 header with the PROXY command: signature,
// version 2 | command PROXY (0x21), family | transport (0x11 TCP4, 0x12 UDP4,
// 0x21 TCP6, 0x22 UDP6), address length, then src addr, dst addr, src port,
// dst port. Unusable addresses yield the LOCAL command with no address.
func proxyV2(src, dst netip.AddrPort, udp bool) []byte {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	b := make([]byte, 16, 16+36)
	copy(b, ppv2Sig)
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		b[12] = 0x20 // version 2, LOCAL; family UNSPEC; length 0
		return b
	}
	b[12] = 0x21
	fam, n := byte(0x10), 12
	if s.Is6() {
		fam, n = 0x20, 36
	}
	if udp {
		fam |= 0x02
	} else {
		fam |= 0x01
	}
	b[13] = fam
	binary.BigEndian.PutUint16(b[14:], uint16(n))
	b = append(b, s.AsSlice()...)
	b = append(b, d.AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}
