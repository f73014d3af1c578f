package event

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// ErrUnknownSchema is returned by SchemaFor for a name it does not know.
var ErrUnknownSchema = errors.New("event: unknown schema")

// SchemaFor returns a pointer to a new zero message of the Go type that a
// Hm-Schema header names (*ProbeResult for "probe_result.v1" …), so a
// decoder can pick the type of a message from its headers.
func SchemaFor(schemaHeader string) (any, error) {
	switch schemaHeader {
	case SchemaProbeResult:
		return new(ProbeResult), nil
	case SchemaTransition:
		return new(Transition), nil
	case SchemaActionResult:
		return new(ActionResult), nil
	case SchemaAudit:
		return new(AuditRecord), nil
	case SchemaTarget:
		return new(Target), nil
	case SchemaMember:
		return new(Member), nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownSchema, schemaHeader)
}

// ToJSON decodes any msgpack payload, whatever its schema, and returns it as
// compact JSON with sorted keys; it backs `hmctl decode`, a
// `nats sub --translate` filter. Map keys that are not strings are written
// as their JSON text (1 → "1"); bin values become strings when they are
// valid UTF-8 and base64 otherwise; NaN and ±Inf become "NaN", "+Inf",
// "-Inf"; timestamps (ext -1) become RFC 3339 strings; other extensions
// become {"ext": type, "data": base64}. Nesting deeper than MaxDepth and
// bytes after the first value are errors. Errors wrap ErrDecode.
//
// It does not use msgpack.Unmarshal into an interface{}: that allocates
// what a length prefix claims before reading it, so five bytes (a map32 of
// 2^32-1 entries) make the process die of out-of-memory.
func ToJSON(data []byte) ([]byte, error) {
	end, err := scan(data, MaxDepth)
	if err != nil {
		return nil, fmt.Errorf("%w: to json: offset %d: %v", ErrDecode, end, err)
	}
	if end < len(data) {
		return nil, fmt.Errorf("%w: to json: %d bytes after the value at offset %d", ErrDecode, len(data)-end, end)
	}
	d := jsonDecoder{b: data}
	v, err := d.value(0)
	if err != nil { // scan has checked the lengths; this is a bad timestamp
		return nil, fmt.Errorf("%w: to json: offset %d: %v", ErrDecode, d.off, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a terminal filter: keep <, > and & readable
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("%w: to json: %v", ErrDecode, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// jsonDecoder is a generic msgpack decoder producing values that
// encoding/json can marshal: nil, bool, int64, uint64, float64, string,
// []any and map[string]any. ToJSON runs scan first; the decoder checks
// lengths and depth again so that it is safe on its own.
type jsonDecoder struct {
	b   []byte
	off int
}

func (d *jsonDecoder) next(n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.off {
		return nil, errShort
	}
	p := d.b[d.off : d.off+n]
	d.off += n
	return p, nil
}

// be reads a big-endian unsigned integer of n bytes (1, 2, 4 or 8).
func (d *jsonDecoder) be(n int) (uint64, error) {
	p, err := d.next(n)
	if err != nil {
		return 0, err
	}
	var u uint64
	for _, c := range p {
		u = u<<8 | uint64(c)
	}
	return u, nil
}

// length reads an n-byte length and checks that at least per bytes for
// each element remain, so nothing is allocated for data that is not there.
func (d *jsonDecoder) length(n, per int) (int, error) {
	u, err := d.be(n)
	if err != nil {
		return 0, err
	}
	if u > uint64(len(d.b)-d.off)/uint64(per) {
		return 0, fmt.Errorf("length %d exceeds the %d bytes left", u, len(d.b)-d.off)
	}
	return int(u), nil
}

func (d *jsonDecoder) value(depth int) (any, error) {
	p, err := d.next(1)
	if err != nil {
		return nil, err
	}
	c := p[0]
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	case c <= 0x8f:
		return d.mapOf(int(c&0x0f), depth)
	case c <= 0x9f:
		return d.arrayOf(int(c&0x0f), depth)
	case c <= 0xbf:
		return d.str(int(c & 0x1f))
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xc4, 0xc5, 0xc6: // bin 8/16/32
		n, err := d.length(1<<(c-0xc4), 1)
		if err != nil {
			return nil, err
		}
		b, _ := d.next(n)
		return binString(b), nil
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32
		n, err := d.length(1<<(c-0xc7), 1)
		if err != nil {
			return nil, err
		}
		return d.ext(n)
	case 0xca:
		u, err := d.be(4)
		return jsonFloat(float64(math.Float32frombits(uint32(u)))), err
	case 0xcb:
		u, err := d.be(8)
		return jsonFloat(math.Float64frombits(u)), err
	case 0xcc, 0xcd, 0xce, 0xcf: // uint 8/16/32/64
		return d.be(1 << (c - 0xcc))
	case 0xd0, 0xd1, 0xd2, 0xd3: // int 8/16/32/64
		n := 1 << (c - 0xd0)
		u, err := d.be(n)
		shift := 64 - 8*n // sign-extend
		return int64(u<<shift) >> shift, err
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1/2/4/8/16
		return d.ext(1 << (c - 0xd4))
	case 0xd9, 0xda, 0xdb: // str 8/16/32
		n, err := d.length(1<<(c-0xd9), 1)
		if err != nil {
			return nil, err
		}
		return d.str(n)
	case 0xdc, 0xdd: // array 16/32
		n, err := d.length(2<<(c-0xdc), 1)
		if err != nil {
			return nil, err
		}
		return d.arrayOf(n, depth)
	case 0xde, 0xdf: // map 16/32
		n, err := d.length(2<<(c-0xde), 2)
		if err != nil {
			return nil, err
		}
		return d.mapOf(n, depth)
	}
	return nil, fmt.Errorf("invalid code 0x%02x", c)
}

func (d *jsonDecoder) str(n int) (any, error) {
	b, err := d.next(n)
	return string(b), err
}

func (d *jsonDecoder) arrayOf(n, depth int) (any, error) {
	if depth >= MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	if n > len(d.b)-d.off {
		return nil, errShort
	}
	a := make([]any, n)
	for i := range a {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a[i] = v
	}
	return a, nil
}

func (d *jsonDecoder) mapOf(n, depth int) (any, error) {
	if depth >= MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	if n > (len(d.b)-d.off)/2 {
		return nil, errShort
	}
	m := make(map[string]any, n)
	for range n {
		k, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[keyString(k)] = v
	}
	return m, nil
}

// ext decodes an extension of n data bytes (its type byte comes first).
func (d *jsonDecoder) ext(n int) (any, error) {
	t, err := d.next(1)
	if err != nil {
		return nil, err
	}
	b, err := d.next(n)
	if err != nil {
		return nil, err
	}
	if typ := int8(t[0]); typ != -1 {
		return map[string]any{"ext": int64(typ), "data": base64.StdEncoding.EncodeToString(b)}, nil
	}
	var sec int64
	var nsec uint32
	switch n { // the msgpack timestamp formats
	case 4:
		sec = int64(binary.BigEndian.Uint32(b))
	case 8:
		u := binary.BigEndian.Uint64(b)
		nsec, sec = uint32(u>>34), int64(u&(1<<34-1))
	case 12:
		nsec, sec = binary.BigEndian.Uint32(b), int64(binary.BigEndian.Uint64(b[4:]))
	default:
		return nil, fmt.Errorf("timestamp of %d bytes", n)
	}
	if nsec >= 1e9 {
		return nil, fmt.Errorf("timestamp with %d nanoseconds", nsec)
	}
	tm := time.Unix(sec, int64(nsec)).UTC()
	if tm.Year() < 0 || tm.Year() > 9999 { // outside what RFC 3339 can write
		return strconv.FormatInt(sec, 10) + "." + fmt.Sprintf("%09d", nsec), nil
	}
	return tm.Format(time.RFC3339Nano), nil
}

// binString returns b as a string when it is valid UTF-8, else as base64.
func binString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// jsonFloat keeps floats that JSON cannot write from failing the encoding.
func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}

// keyString turns a decoded map key into a JSON object key.
func keyString(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	b, err := json.Marshal(k)
	if err != nil { // cannot happen for decoded values; keep the key visible anyway
		return fmt.Sprint(k)
	}
	return string(b)
}
