package subject

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// TargetID identifies one probe definition: the endpoint probed, the check
// method, and a short hash of everything else that makes the probe what it is
// (method params, check address/port, source, netns, timing). Two VSs that
// check the same backend the same way share one target, so it is probed once.
//
// Token form: ADDR-PROTO-PORT-METHOD-HASH, e.g. "10_0_0_1-TCP-80-http-9f3a01c2".
type TargetID struct {
	Endpoint
	Method string // method name: none tcp udp ping udpping http (never "auto": it is resolved first)
	Hash   string // 8 lower-case hex digits
}

// Token returns the subject/KV form of the target. Method and Hash go
// through NameToken, which leaves every valid value as it is and keeps a
// malformed one (a '.', a space) from adding or splitting subject tokens;
// ParseTargetToken rejects such a token.
func (t TargetID) Token() string {
	return t.Endpoint.Token() + "-" + NameToken(t.Method) + "-" + NameToken(t.Hash)
}

// String is the same as Token: a target has no separate DPVS form.
func (t TargetID) String() string { return t.Token() }

// ParseTargetToken decodes TargetID.Token's output.
func ParseTargetToken(tok string) (TargetID, error) {
	i := strings.LastIndexByte(tok, '-')
	if i < 0 {
		return TargetID{}, fmt.Errorf("%w: target %q", ErrToken, tok)
	}
	hash := tok[i+1:]
	if !isHash(hash) {
		return TargetID{}, fmt.Errorf("%w: target %q: hash %q", ErrToken, tok, hash)
	}
	rest := tok[:i]
	j := strings.LastIndexByte(rest, '-')
	if j < 0 {
		return TargetID{}, fmt.Errorf("%w: target %q", ErrToken, tok)
	}
	method := rest[j+1:]
	if !isMethodName(method) {
		return TargetID{}, fmt.Errorf("%w: target %q: method %q", ErrToken, tok, method)
	}
	ep, err := ParseEndpointToken(rest[:j])
	if err != nil {
		return TargetID{}, fmt.Errorf("%w: target %q: %v", ErrToken, tok, err)
	}
	return TargetID{Endpoint: ep, Method: method, Hash: hash}, nil
}

// HashOf returns the 8-hex-digit hash used in TargetID.Hash for a canonical
// description of a probe definition.
func HashOf(canonical string) string {
	h := fnv.New32a()
	h.Write([]byte(canonical))
	return fmt.Sprintf("%08x", h.Sum32())
}

func isHash(s string) bool {
	if len(s) != 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func isMethodName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// NameToken encodes a free-form name (node, zone, prober id, actioner kind)
// as a token. Letters, digits and '-' are kept as they are; every other byte,
// '_' included, becomes '_' followed by two lower-case hex digits, so
// "lb1.dc-a" becomes "lb1_2edc-a" and the encoding is reversible.
func NameToken(name string) string {
	if isPlainName(name) {
		return name
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isPlainByte(c) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	return b.String()
}

// ParseNameToken decodes NameToken's output.
func ParseNameToken(tok string) (string, error) {
	if tok == "" {
		return "", fmt.Errorf("%w: empty name", ErrToken)
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case isPlainByte(c):
			b.WriteByte(c)
		case c == '_' && i+2 < len(tok) && isLowerHex(tok[i+1]) && isLowerHex(tok[i+2]):
			b.WriteByte(unhex(tok[i+1])<<4 | unhex(tok[i+2]))
			i += 2
		default:
			return "", fmt.Errorf("%w: name %q", ErrToken, tok)
		}
	}
	s := b.String()
	if NameToken(s) != tok {
		return "", fmt.Errorf("%w: name %q is not canonical", ErrToken, tok)
	}
	return s, nil
}

func isPlainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isPlainByte(s[i]) {
			return false
		}
	}
	return true
}

func isPlainByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func isLowerHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// Partitions is the fixed number of result partitions. It must never change
// for a running installation: changing it remaps almost every target.
const Partitions = 64

// Partition returns the fixed hash partition of a target token: FNV-1a 32 of
// the token modulo n (the same function as nats-server's partition()).
func Partition(targetToken string, n int) int {
	if n <= 0 {
		n = Partitions
	}
	h := fnv.New32a()
	h.Write([]byte(targetToken))
	return int(h.Sum32() % uint32(n))
}
