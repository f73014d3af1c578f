package subject

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAddrToken(t *testing.T) {
	tests := []struct {
		name string
		addr netip.Addr
		want string
	}{
		{"ipv4", netip.MustParseAddr("10.0.0.1"), "10_0_0_1"},
		{"ipv4_zero", netip.MustParseAddr("0.0.0.0"), "0_0_0_0"},
		{"ipv4_broadcast", netip.MustParseAddr("255.255.255.255"), "255_255_255_255"},
		{"ipv6_unspecified", netip.MustParseAddr("::"), "--"},
		{"ipv6_loopback", netip.MustParseAddr("::1"), "--1"},
		{"ipv6_trailing_zeros", netip.MustParseAddr("2001:db8::"), "2001-db8--"},
		{"ipv6_doc", netip.MustParseAddr("2001:db8::1"), "2001-db8--1"},
		{"ipv6_full", netip.MustParseAddr("2001:db8:1:2:3:4:5:6"), "2001-db8-1-2-3-4-5-6"},
		{"ipv6_upper_case_input", netip.MustParseAddr("2001:DB8::AB"), "2001-db8--ab"},
		{"ipv6_one_trailing", netip.MustParseAddr("1::"), "1--"},
		{"ipv4_mapped_unmapped", netip.MustParseAddr("::ffff:10.0.0.1"), "10_0_0_1"},
		{"ipv4_compatible_stays_v6", netip.MustParseAddr("::1.2.3.4"), "--102-304"},
		{"nat64_stays_v6", netip.MustParseAddr("64:ff9b::1.2.3.4"), "64-ff9b--102-304"},
		{"zone_dropped", netip.MustParseAddr("fe80::1%eth0"), "fe80--1"},
		{"zero_addr", netip.Addr{}, "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AddrToken(tt.addr); got != tt.want {
				t.Errorf("AddrToken(%v) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestParseAddrToken(t *testing.T) {
	tests := []struct {
		name    string
		tok     string
		want    netip.Addr
		wantErr bool
	}{
		{"ipv4", "10_0_0_1", netip.MustParseAddr("10.0.0.1"), false},
		{"ipv6_unspecified", "--", netip.MustParseAddr("::"), false},
		{"ipv6_loopback", "--1", netip.MustParseAddr("::1"), false},
		{"ipv6_trailing_zeros", "2001-db8--", netip.MustParseAddr("2001:db8::"), false},
		{"ipv6_doc", "2001-db8--1", netip.MustParseAddr("2001:db8::1"), false},
		{"empty", "", netip.Addr{}, true},
		{"invalid_marker", "invalid", netip.Addr{}, true},
		{"ipv4_with_dots", "10.0.0.1", netip.Addr{}, true},
		{"ipv4_leading_zero", "010_0_0_1", netip.Addr{}, true},
		{"ipv4_short", "10_0_1", netip.Addr{}, true},
		{"ipv4_octet_overflow", "10_0_0_256", netip.Addr{}, true},
		{"ipv6_colons", "2001:db8::1", netip.Addr{}, true},
		{"ipv6_upper_case", "2001-DB8--1", netip.Addr{}, true},
		{"ipv6_not_compressed", "2001-db8-0-0-0-0-0-1", netip.Addr{}, true},
		{"ipv6_leading_zeros", "2001-0db8--1", netip.Addr{}, true},
		{"ipv6_mapped_form", "--ffff-a00-1", netip.Addr{}, true},
		{"ipv6_mapped_dotted", "--ffff-10_0_0_1", netip.Addr{}, true},
		{"ipv6_zone", "fe80--1%eth0", netip.Addr{}, true},
		{"ipv6_zone_token", "fe80--1_eth0", netip.Addr{}, true},
		{"mixed_separators", "10_0-0_1", netip.Addr{}, true},
		{"name", "localhost", netip.Addr{}, true},
		{"space", "10_0_0_1 ", netip.Addr{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, "ParseAddrToken", ParseAddrToken, tt.tok, tt.want, tt.wantErr)
		})
	}
}

func TestParseProto(t *testing.T) {
	tests := []struct {
		in      string
		want    Proto
		wantErr bool
	}{
		{"TCP", TCP, false},
		{"tcp", TCP, false},
		{"Udp", UDP, false},
		{"6", TCP, false},
		{"17", UDP, false},
		{"", 0, true},
		{"SCTP", 0, true},
		{"132", 0, true},
		{" tcp", 0, true},
	}
	for _, tt := range tests {
		t.Run(snake(tt.in), func(t *testing.T) {
			checkParse(t, "ParseProto", ParseProto, tt.in, tt.want, tt.wantErr)
		})
	}
}

func TestProtoNames(t *testing.T) {
	tests := []struct {
		name        string
		p           Proto
		str, lower  string
		validInEpID bool
	}{
		{"tcp", TCP, "TCP", "tcp", true},
		{"udp", UDP, "UDP", "udp", true},
		{"zero", 0, "PROTO0", "proto0", false},
		{"sctp", 132, "PROTO132", "proto132", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.p.Lower(); got != tt.lower {
				t.Errorf("Lower() = %q, want %q", got, tt.lower)
			}
			e := Endpoint{Addr: netip.MustParseAddr("10.0.0.1"), Proto: tt.p, Port: 80}
			if got := e.IsValid(); got != tt.validInEpID {
				t.Errorf("Endpoint{Proto: %v}.IsValid() = %v, want %v", tt.p, got, tt.validInEpID)
			}
		})
	}
}

func TestEndpointEncode(t *testing.T) {
	tests := []struct {
		name     string
		ep       Endpoint
		str, tok string
		hostPort string
	}{
		{"ipv4_tcp", ep("192.168.88.1", TCP, 80), "192.168.88.1-TCP-80", "192_168_88_1-TCP-80", "192.168.88.1:80"},
		{"ipv4_udp", ep("10.0.0.1", UDP, 53), "10.0.0.1-UDP-53", "10_0_0_1-UDP-53", "10.0.0.1:53"},
		{"port_zero", ep("10.0.0.1", TCP, 0), "10.0.0.1-TCP-0", "10_0_0_1-TCP-0", "10.0.0.1:0"},
		{"port_max", ep("10.0.0.1", TCP, 65535), "10.0.0.1-TCP-65535", "10_0_0_1-TCP-65535", "10.0.0.1:65535"},
		{"ipv6", ep("2001::1", UDP, 53), "2001::1-UDP-53", "2001--1-UDP-53", "[2001::1]:53"},
		{"ipv6_unspecified", ep("::", TCP, 80), "::-TCP-80", "---TCP-80", "[::]:80"},
		{"ipv6_loopback", ep("::1", TCP, 8080), "::1-TCP-8080", "--1-TCP-8080", "[::1]:8080"},
		{"ipv6_trailing_zeros", ep("2001:db8::", TCP, 443), "2001:db8::-TCP-443", "2001-db8---TCP-443", "[2001:db8::]:443"},
		{"ipv4_mapped", ep("::ffff:10.0.0.1", TCP, 80), "10.0.0.1-TCP-80", "10_0_0_1-TCP-80", "10.0.0.1:80"},
		{"zone_dropped", ep("fe80::1%eth0", TCP, 80), "fe80::1-TCP-80", "fe80--1-TCP-80", "[fe80::1]:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.ep.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := tt.ep.Token(); got != tt.tok {
				t.Errorf("Token() = %q, want %q", got, tt.tok)
			}
			if got := tt.ep.HostPort(); got != tt.hostPort {
				t.Errorf("HostPort() = %q, want %q", got, tt.hostPort)
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Endpoint
		wantErr bool
	}{
		{"ipv4_tcp", "192.168.88.1-TCP-80", ep("192.168.88.1", TCP, 80), false},
		{"ipv4_udp_lower", "10.0.0.1-udp-53", ep("10.0.0.1", UDP, 53), false},
		{"ipv6", "2001::1-UDP-53", ep("2001::1", UDP, 53), false},
		{"ipv6_unspecified", "::-TCP-80", ep("::", TCP, 80), false},
		{"ipv6_loopback", "::1-TCP-0", ep("::1", TCP, 0), false},
		{"ipv6_trailing_zeros", "2001:db8::-TCP-65535", ep("2001:db8::", TCP, 65535), false},
		{"ipv4_mapped_unmapped", "::ffff:10.0.0.1-TCP-80", ep("10.0.0.1", TCP, 80), false},
		{"zone_rejected", "fe80::1%eth0-TCP-80", Endpoint{}, true},
		{"empty", "", Endpoint{}, true},
		{"no_port", "10.0.0.1-TCP", Endpoint{}, true},
		{"no_proto", "10.0.0.1-80", Endpoint{}, true},
		{"port_too_big", "10.0.0.1-TCP-65536", Endpoint{}, true},
		{"port_negative", "10.0.0.1-TCP--1", Endpoint{}, true},
		{"port_leading_zero", "10.0.0.1-TCP-080", Endpoint{}, true},
		{"port_plus", "10.0.0.1-TCP-+80", Endpoint{}, true},
		{"port_empty", "10.0.0.1-TCP-", Endpoint{}, true},
		{"port_hex", "10.0.0.1-TCP-0x50", Endpoint{}, true},
		{"proto_numeric", "10.0.0.1-6-80", Endpoint{}, true},
		{"proto_unknown", "10.0.0.1-SCTP-80", Endpoint{}, true},
		{"proto_empty", "10.0.0.1--80", Endpoint{}, true},
		{"dpvs_agent_order", "10.0.0.1-80-tcp", Endpoint{}, true},
		{"token_form", "10_0_0_1-TCP-80", Endpoint{}, true},
		{"bad_addr", "10.0.0.256-TCP-80", Endpoint{}, true},
		{"hostname", "lb-TCP-80", Endpoint{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, "ParseEndpoint", ParseEndpoint, tt.in, tt.want, tt.wantErr)
		})
	}
}

func TestParseEndpointToken(t *testing.T) {
	tests := []struct {
		name    string
		tok     string
		want    Endpoint
		wantErr bool
	}{
		{"ipv4_tcp", "192_168_88_1-TCP-80", ep("192.168.88.1", TCP, 80), false},
		{"ipv4_udp", "10_0_0_1-UDP-53", ep("10.0.0.1", UDP, 53), false},
		{"ipv6", "2001--1-UDP-53", ep("2001::1", UDP, 53), false},
		{"ipv6_unspecified", "---TCP-80", ep("::", TCP, 80), false},
		{"ipv6_loopback", "--1-TCP-8080", ep("::1", TCP, 8080), false},
		{"ipv6_trailing_zeros", "2001-db8---TCP-443", ep("2001:db8::", TCP, 443), false},
		{"port_max", "10_0_0_1-TCP-65535", ep("10.0.0.1", TCP, 65535), false},
		{"proto_lower", "10_0_0_1-tcp-80", Endpoint{}, true},
		{"proto_numeric", "10_0_0_1-6-80", Endpoint{}, true},
		{"dpvs_form", "10.0.0.1-TCP-80", Endpoint{}, true},
		{"port_too_big", "10_0_0_1-TCP-65536", Endpoint{}, true},
		{"port_leading_zero", "10_0_0_1-TCP-00", Endpoint{}, true},
		{"no_port", "10_0_0_1-TCP", Endpoint{}, true},
		{"no_addr", "-TCP-80", Endpoint{}, true},
		{"addr_only", "10_0_0_1", Endpoint{}, true},
		{"mapped_form", "--ffff-a00-1-TCP-80", Endpoint{}, true},
		{"zone", "fe80--1%eth0-TCP-80", Endpoint{}, true},
		{"empty", "", Endpoint{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkParse(t, "ParseEndpointToken", ParseEndpointToken, tt.tok, tt.want, tt.wantErr)
			if back := got.Token(); !tt.wantErr && back != tt.tok {
				t.Errorf("Token() of the parsed endpoint = %q, want %q", back, tt.tok)
			}
		})
	}
}

// checkParse runs one row of a parser table: an error wrapping ErrToken
// when wantErr, else the value want. It returns what parse returned.
func checkParse[T comparable](t *testing.T, fn string, parse func(string) (T, error), in string, want T, wantErr bool) T {
	t.Helper()
	got, err := parse(in)
	switch {
	case wantErr && !errors.Is(err, ErrToken):
		t.Fatalf("%s(%q) = %v, %v; want an error wrapping ErrToken", fn, in, got, err)
	case !wantErr && err != nil:
		t.Fatalf("%s(%q): %v", fn, in, err)
	case !wantErr && got != want:
		t.Errorf("%s(%q) = %#v, want %#v", fn, in, got, want)
	}
	return got
}

// ep builds an Endpoint from an address literal (zones allowed, so tests
// can check that encoders drop them).
func ep(addr string, p Proto, port uint16) Endpoint {
	return Endpoint{Addr: netip.MustParseAddr(addr), Proto: p, Port: port}
}

// snake turns a table input into a snake_case subtest name.
func snake(s string) string {
	if s == "" {
		return "empty"
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}
