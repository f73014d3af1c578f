package event

import (
	"encoding/binary"
	"math"
)

// AppendProbeResult appends r encoded exactly as Marshal encodes it (a
// msgpack map with the struct's keys in order, omitempty fields left out,
// int as the shortest integer, int64 and uint64 as 9 bytes). It is the
// prober's hottest encoding, once per probe; the reflection-driven encoder
// cost about 2 µs and a dozen allocations each time. A test checks it byte
// for byte against Marshal.
func AppendProbeResult(b []byte, r *ProbeResult) []byte {
	n := 8 // v t o s ts st r rtt
	if r.Node != "" {
		n++
	}
	if r.Detail != "" {
		n++
	}
	if r.Interval != 0 {
		n++
	}
	if r.Rev != 0 {
		n++
	}
	b = append(b, 0x80|byte(n)) // fixmap: at most 12 entries
	b = appendStr(b, "v")
	b = appendInt(b, int64(r.V))
	b = appendStr(b, "t")
	b = appendStr(b, r.Target)
	b = appendStr(b, "o")
	b = appendStr(b, r.Observer)
	if r.Node != "" {
		b = appendStr(b, "n")
		b = appendStr(b, r.Node)
	}
	b = appendStr(b, "s")
	b = appendUint64(b, r.Seq)
	b = appendStr(b, "ts")
	b = appendInt64(b, r.TS)
	b = appendStr(b, "st")
	b = appendStr(b, string(r.State))
	b = appendStr(b, "r")
	b = appendStr(b, string(r.Reason))
	b = appendStr(b, "rtt")
	b = appendInt64(b, r.RTT)
	if r.Detail != "" {
		b = appendStr(b, "d")
		b = appendStr(b, r.Detail)
	}
	if r.Interval != 0 {
		b = appendStr(b, "iv")
		b = appendInt64(b, r.Interval)
	}
	if r.Rev != 0 {
		b = appendStr(b, "rev")
		b = appendUint64(b, r.Rev)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	switch l := len(s); {
	case l < 32:
		b = append(b, 0xa0|byte(l))
	case l <= math.MaxUint8:
		b = append(b, 0xd9, byte(l))
	case l <= math.MaxUint16:
		b = append(b, 0xda)
		b = binary.BigEndian.AppendUint16(b, uint16(l))
	default:
		b = append(b, 0xdb)
		b = binary.BigEndian.AppendUint32(b, uint32(l))
	}
	return append(b, s...)
}

// appendInt is msgpack's shortest form of n (what the encoder does for int).
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= math.MaxInt8:
		return append(b, byte(n))
	case n >= 0 && n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n >= 0 && n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n >= 0 && n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	case n >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(n))
	case n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return appendInt64(b, n)
}

func appendInt64(b []byte, n int64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

func appendUint64(b []byte, n uint64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

// DecodeProbeResult decodes a probe result as Unmarshal does. The form
// AppendProbeResult writes (what every prober sends) is read directly, without
// reflection and with no allocation but the target, observer, node and detail
// strings: it is the aggregator's hottest decoding, once per result. Anything
// else that is valid msgpack (another key order or integer width, unknown
// keys, a newer prober's fields) goes through Unmarshal, so both accept and
// reject the same messages.
func DecodeProbeResult(data []byte, r *ProbeResult) error {
	if decodeProbeResult(data, r) {
		return nil
	}
	*r = ProbeResult{}
	return Unmarshal(data, r)
}

// decodeProbeResult reads the AppendProbeResult form; false means "not that
// form, ask Unmarshal" (r may then hold part of the message).
func decodeProbeResult(b []byte, r *ProbeResult) bool {
	if len(b) == 0 || b[0]&0xf0 != 0x80 {
		return false
	}
	n := int(b[0] & 0x0f)
	b = b[1:]
	*r = ProbeResult{}
	for range n {
		key, rest, ok := readStr(b)
		if !ok {
			return false
		}
		b = rest
		var s []byte
		var i int64
		var u uint64
		switch string(key) {
		case "v":
			i, b, ok = readInt(b)
			r.V = int(i)
		case "t":
			s, b, ok = readStr(b)
			r.Target = string(s)
		case "o":
			s, b, ok = readStr(b)
			r.Observer = string(s)
		case "n":
			s, b, ok = readStr(b)
			r.Node = string(s)
		case "s":
			u, b, ok = readUint(b)
			r.Seq = u
		case "ts":
			r.TS, b, ok = readInt(b)
		case "st":
			s, b, ok = readStr(b)
			r.State = stateOf(s)
		case "r":
			s, b, ok = readStr(b)
			r.Reason = reasonOf(s)
		case "rtt":
			r.RTT, b, ok = readInt(b)
		case "d":
			s, b, ok = readStr(b)
			r.Detail = string(s)
		case "iv":
			r.Interval, b, ok = readInt(b)
		case "rev":
			u, b, ok = readUint(b)
			r.Rev = u
		default:
			return false
		}
		if !ok {
			return false
		}
	}
	return len(b) == 0
}

// readStr reads a msgpack str (not nil, not bin: those go to Unmarshal).
func readStr(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, nil, false
	}
	var l, h int
	switch c := b[0]; {
	case c&0xe0 == 0xa0:
		l, h = int(c&0x1f), 1
	case c == 0xd9 && len(b) >= 2:
		l, h = int(b[1]), 2
	case c == 0xda && len(b) >= 3:
		l, h = int(binary.BigEndian.Uint16(b[1:])), 3
	case c == 0xdb && len(b) >= 5:
		l, h = int(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return nil, nil, false
	}
	if len(b)-h < l {
		return nil, nil, false
	}
	return b[h : h+l], b[h+l:], true
}

// readInt reads a msgpack integer that fits an int64.
func readInt(b []byte) (int64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	c := b[0]
	switch {
	case c <= 0x7f:
		return int64(c), b[1:], true
	case c >= 0xe0:
		return int64(int8(c)), b[1:], true
	case c == 0xd0 && len(b) >= 2:
		return int64(int8(b[1])), b[2:], true
	case c == 0xd1 && len(b) >= 3:
		return int64(int16(binary.BigEndian.Uint16(b[1:]))), b[3:], true
	case c == 0xd2 && len(b) >= 5:
		return int64(int32(binary.BigEndian.Uint32(b[1:]))), b[5:], true
	case c == 0xd3 && len(b) >= 9:
		return int64(binary.BigEndian.Uint64(b[1:])), b[9:], true
	}
	u, rest, ok := readUint(b)
	if !ok || u > math.MaxInt64 {
		return 0, nil, false
	}
	return int64(u), rest, true
}

// readUint reads a non-negative msgpack integer.
func readUint(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
	case c <= 0x7f:
		return uint64(c), b[1:], true
	case c == 0xcc && len(b) >= 2:
		return uint64(b[1]), b[2:], true
	case c == 0xcd && len(b) >= 3:
		return uint64(binary.BigEndian.Uint16(b[1:])), b[3:], true
	case c == 0xce && len(b) >= 5:
		return uint64(binary.BigEndian.Uint32(b[1:])), b[5:], true
	case c == 0xcf && len(b) >= 9:
		return binary.BigEndian.Uint64(b[1:]), b[9:], true
	}
	return 0, nil, false
}

// stateOf and reasonOf return the constant for a known word (no copy).
func stateOf(s []byte) State {
	switch string(s) {
	case string(Up):
		return Up
	case string(Down):
		return Down
	case string(Unknown):
		return Unknown
	}
	return State(s)
}

var knownReasons = func() map[string]Reason {
	m := map[string]Reason{}
	for _, r := range []Reason{ReasonNone, ReasonL4OK, ReasonL4TOUT, ReasonL4CON, ReasonL4RSP, ReasonL6OK, ReasonL6TOUT,
		ReasonL6RSP, ReasonL7OK, ReasonL7STS, ReasonL7RSP, ReasonL7TOUT, ReasonICMPOK, ReasonICMPTO, ReasonICMPUNR,
		ReasonSOCKERR, ReasonPROCERR} {
		m[string(r)] = r
	}
	return m
}()

func reasonOf(s []byte) Reason {
	if r, ok := knownReasons[string(s)]; ok {
		return r
	}
	return Reason(s)
}
