package subject

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// fuzzAddr builds an address from fuzz input: the first 4 bytes for IPv4,
// the first 16 for IPv6 (short input is zero-padded), so every address of
// both families is reachable.
func fuzzAddr(raw []byte, v4 bool) netip.Addr {
	var b [16]byte
	copy(b[:], raw)
	if v4 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

func fuzzProto(udp bool) Proto {
	if udp {
		return UDP
	}
	return TCP
}

func FuzzEndpointRoundTrip(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, true, uint16(80), false, "")
	f.Add([]byte{}, false, uint16(0), true, "")                                     // ::
	f.Add([]byte{15: 1}, false, uint16(65535), false, "")                           // ::1
	f.Add([]byte{0x20, 0x01, 0x0d, 0xb8}, false, uint16(53), true, "")              // 2001:db8::
	f.Add([]byte{10: 0xff, 11: 0xff, 12: 10, 15: 1}, false, uint16(443), false, "") // ::ffff:10.0.0.1
	f.Add([]byte{0xfe, 0x80, 15: 1}, false, uint16(22), false, "eth0")              // fe80::1%eth0
	f.Add([]byte{255, 255, 255, 255}, true, uint16(1), true, "")
	methods := []string{"none", "tcp", "udp", "ping", "udpping", "http"}
	f.Fuzz(func(t *testing.T, raw []byte, v4 bool, port uint16, udp bool, zone string) {
		a := fuzzAddr(raw, v4)
		if !v4 && zone != "" {
			a = a.WithZone(zone) // encoders drop zones
		}
		want := Endpoint{Addr: a.Unmap().WithZone(""), Proto: fuzzProto(udp), Port: port}
		e := Endpoint{Addr: a, Proto: want.Proto, Port: port}

		tok := AddrToken(a)
		if got, err := ParseAddrToken(tok); err != nil || got != want.Addr {
			t.Fatalf("ParseAddrToken(AddrToken(%v) = %q) = %v, %v; want %v", a, tok, got, err, want.Addr)
		}
		etok := e.Token()
		if got, err := ParseEndpointToken(etok); err != nil || got != want {
			t.Fatalf("ParseEndpointToken(%q) = %v, %v; want %v", etok, got, err, want)
		}
		str := e.String()
		if got, err := ParseEndpoint(str); err != nil || got != want {
			t.Fatalf("ParseEndpoint(%q) = %v, %v; want %v", str, got, err, want)
		}
		target := TargetID{Endpoint: e, Method: methods[int(port)%len(methods)], Hash: HashOf(string(raw))}
		ttok := target.Token()
		got, err := ParseTargetToken(ttok)
		if err != nil || got.Endpoint != want || got.Method != target.Method || got.Hash != target.Hash {
			t.Fatalf("ParseTargetToken(%q) = %v, %v; want %v", ttok, got, err, target)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", "-", "--", "---", "_", "10_0_0_1", "--1", "2001-db8--", "fe80--1%eth0",
		"10_0_0_1-TCP-80", "---TCP-80", "10.0.0.1-tcp-80", "::ffff:10.0.0.1-UDP-53",
		"10_0_0_1-TCP-80-http-0123abcd", "2001-db8---UDP-0-ping-deadbeef", "lb1_2edc-a",
		"a_5fb", "_c3_a9", "TCP", "17", "hm", "lab-2", "10_0_0_1-TCP-080", "invalid",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkErr := func(fn string, err error) {
			if err != nil && !errors.Is(err, ErrToken) {
				t.Fatalf("%s(%q): error %v does not wrap ErrToken", fn, s, err)
			}
		}
		if a, err := ParseAddrToken(s); err == nil {
			if back := AddrToken(a); back != s {
				t.Fatalf("AddrToken(ParseAddrToken(%q)) = %q", s, back)
			}
		} else {
			checkErr("ParseAddrToken", err)
		}
		if e, err := ParseEndpointToken(s); err == nil {
			if back := e.Token(); back != s || !e.IsValid() {
				t.Fatalf("ParseEndpointToken(%q) = %v (valid %v), re-encoded %q", s, e, e.IsValid(), back)
			}
		} else {
			checkErr("ParseEndpointToken", err)
		}
		if id, err := ParseTargetToken(s); err == nil {
			if back := id.Token(); back != s {
				t.Fatalf("ParseTargetToken(%q) re-encoded %q", s, back)
			}
		} else {
			checkErr("ParseTargetToken", err)
		}
		if n, err := ParseNameToken(s); err == nil {
			if back := NameToken(n); back != s {
				t.Fatalf("NameToken(ParseNameToken(%q)) = %q", s, back)
			}
		} else {
			checkErr("ParseNameToken", err)
		}
		// The DPVS form is lenient on input (protocol case, mapped
		// addresses), so it must round-trip through its canonical form.
		if e, err := ParseEndpoint(s); err == nil {
			canon := e.String()
			again, err := ParseEndpoint(canon)
			if err != nil || again != e || !e.IsValid() {
				t.Fatalf("ParseEndpoint(%q) = %v; its String %q parses to %v, %v", s, e, canon, again, err)
			}
			if back, err := ParseEndpointToken(e.Token()); err != nil || back != e {
				t.Fatalf("ParseEndpoint(%q) = %v; its token %q parses to %v, %v", s, e, e.Token(), back, err)
			}
		} else {
			checkErr("ParseEndpoint", err)
		}
		if p, err := ParseProto(s); err == nil {
			if again, err := ParseProto(p.String()); err != nil || again != p || (p != TCP && p != UDP) {
				t.Fatalf("ParseProto(%q) = %v; ParseProto(%q) = %v, %v", s, p, p.String(), again, err)
			}
		} else {
			checkErr("ParseProto", err)
		}
		if sp, err := NewSpace(s); err == nil {
			checkNames(t, sp, "lb1", "pause")
		} else {
			checkErr("NewSpace", err)
		}
	})
}

func FuzzEncodersLegal(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1}, true, uint16(80), uint8(6), "http", "0123abcd", "lb1.dc-a", "")
	f.Add([]byte{}, false, uint16(0), uint8(17), "", "", "", "lab-2")
	f.Add([]byte{10: 0xff, 11: 0xff, 12: 10}, false, uint16(53), uint8(0), "a.b c", "*>", "\x00\xff_", "hm")
	f.Add([]byte(nil), true, uint16(65535), uint8(132), "UDP PING", "..", "é é", "x")
	f.Fuzz(func(t *testing.T, raw []byte, v4 bool, port uint16, proto uint8, method, hash, name, prefix string) {
		a := fuzzAddr(raw, v4)
		if len(raw) == 0 && !v4 {
			a = netip.Addr{} // the zero address is an input too
		}
		e := Endpoint{Addr: a, Proto: Proto(proto), Port: port}
		target := TargetID{Endpoint: e, Method: method, Hash: hash}
		for _, tok := range []string{AddrToken(a), e.Token(), target.Token(), KeyTarget(target)} {
			if !legalToken(tok) {
				t.Fatalf("illegal token %q from %v / %#v", tok, a, target)
			}
		}
		nt := NameToken(name)
		if name != "" {
			if !legalToken(nt) {
				t.Fatalf("NameToken(%q) = %q: illegal token", name, nt)
			}
			if back, err := ParseNameToken(nt); err != nil || back != name {
				t.Fatalf("ParseNameToken(NameToken(%q) = %q) = %q, %v", name, nt, back, err)
			}
		} else if nt != "" {
			t.Fatalf("NameToken(\"\") = %q, want \"\"", nt)
		}
		sp, err := NewSpace(prefix)
		if err != nil {
			sp = Space{}
		}
		if name == "" {
			name = "x" // an empty name gives an empty token: callers reject empty names
		}
		checkNames(t, sp, name, name)
		for _, s := range []string{
			sp.Result(target, name), sp.EventBackend(e, e), sp.EventVS(e), sp.EventVA(a),
			sp.Action(name, e.Token()), sp.Action(name, AddrToken(a)),
		} {
			if !legalSubject(s) {
				t.Fatalf("illegal subject %q", s)
			}
		}
		for _, k := range []string{
			KeyTarget(target), KeyMember(name), KeyLeader, KeyBackendState(e, e),
			KeyVSState(e), KeyVAState(a), KeyTargetState(target), KeyMeta,
		} {
			if !legalKey(k) {
				t.Fatalf("illegal KV key %q", k)
			}
		}
	})
}

// checkNames checks every name of sp that does not depend on an ID.
func checkNames(t *testing.T, sp Space, observer, verb string) {
	t.Helper()
	for _, n := range []string{
		sp.StreamResults(), sp.StreamEvents(), sp.BucketTargets(), sp.BucketMembers(),
		sp.BucketLeader(), sp.BucketState(),
	} {
		if !legalToken(n) {
			t.Fatalf("space %q: illegal stream or bucket name %q", sp.Prefix, n)
		}
	}
	for _, s := range []string{
		sp.ResultsAll(), sp.ResultsPartition(Partitions - 1), sp.EventsAll(), sp.EventsBackendAll(),
		sp.EventsVAAll(), sp.ActionsAll(), sp.Audit(verb), sp.AuditAll(), sp.API(verb), sp.APIAll(),
	} {
		if !legalSubject(s) {
			t.Fatalf("space %q (observer %q): illegal subject %q", sp.Prefix, observer, s)
		}
	}
}

func legalTokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// legalToken reports whether s is a non-empty subject token of [-_a-zA-Z0-9].
func legalToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !legalTokenByte(s[i]) {
			return false
		}
	}
	return true
}

// legalSubject reports whether every token of s is legal; only the last
// may be the '>' wildcard.
func legalSubject(s string) bool {
	toks := strings.Split(s, ".")
	for i, tok := range toks {
		if tok == ">" && i == len(toks)-1 && i > 0 {
			continue
		}
		if !legalToken(tok) {
			return false
		}
	}
	return true
}

// legalKey reports whether s matches ^[-/_=.a-zA-Z0-9]+$, the JetStream KV
// key set.
func legalKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !legalTokenByte(c) && c != '/' && c != '=' && c != '.' {
			return false
		}
	}
	return true
}

func TestLegalCheckers(t *testing.T) {
	// The checkers above are what the fuzz tests rely on; they must reject.
	tests := []struct {
		name string
		fn   func(string) bool
		in   string
		want bool
	}{
		{"token_ok", legalToken, "a-Z_0", true},
		{"token_empty", legalToken, "", false},
		{"token_dot", legalToken, "a.b", false},
		{"token_star", legalToken, "*", false},
		{"token_space", legalToken, "a b", false},
		{"subject_ok", legalSubject, "hm.result.>", true},
		{"subject_gt_middle", legalSubject, "hm.>.x", false},
		{"subject_empty_token", legalSubject, "hm..x", false},
		{"subject_trailing_dot", legalSubject, "hm.x.", false},
		{"key_ok", legalKey, "a/b=c.d_e-F9", true},
		{"key_colon", legalKey, "a:b", false},
		{"key_empty", legalKey, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fn(tt.in); got != tt.want {
				t.Errorf("(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
