package event

import (
	"errors"
	"fmt"
)

// MaxDepth bounds the nesting of arrays and maps in a message that
// Unmarshal and ToJSON accept. Our messages nest three levels; the bound
// keeps a hostile payload from exhausting the stack.
const MaxDepth = 1000

var errShort = errors.New("unexpected end of data")

// scan walks the first msgpack value in data without decoding it and
// returns the offset where it ends. It fails when a length prefix claims
// more than the bytes left (at least one byte per array element, two per
// map entry) or when nesting exceeds maxDepth.
//
// Why: msgpack v5.4.1 allocates what a length prefix claims before reading
// it (its allocation limit never engages: decodeSliceValue tests the flag
// with "!= 1"), so twelve bytes naming a []Vote of 2^32-1 elements kill the
// process with out-of-memory, which recover cannot catch. Within the
// bounds checked here an allocation is at most a small multiple of the
// message size.
func scan(data []byte, maxDepth int) (int, error) {
	var buf [8]uint64 // our messages nest 3 levels: no allocation
	stack := buf[:0]  // items left in each enclosing container
	left := uint64(1) // items left at the current level (the top value)
	off := 0
	for {
		for left == 0 {
			if len(stack) == 0 {
				return off, nil
			}
			left, stack = stack[len(stack)-1], stack[:len(stack)-1]
		}
		left--
		if off >= len(data) {
			return off, errShort
		}
		c := data[off]
		off++
		var size int       // bytes of the length prefix
		var skip uint64    // payload bytes after the prefix
		var items uint64   // child values
		var per uint64 = 1 // minimum bytes per length unit
		isItems := false
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			items, isItems, per = uint64(c&0x0f)*2, true, 2
		case c <= 0x9f:
			items, isItems = uint64(c&0x0f), true
		case c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c >= 0xc4 && c <= 0xc6: // bin 8/16/32
			size = 1 << (c - 0xc4)
		case c >= 0xc7 && c <= 0xc9: // ext 8/16/32: length, then the type byte
			size = 1 << (c - 0xc7)
		case c == 0xca, c == 0xcb: // float 32/64
			skip = 4 << (c - 0xca)
		case c >= 0xcc && c <= 0xd3: // uint/int 8..64
			skip = 1 << ((c - 0xcc) & 3)
		case c >= 0xd4 && c <= 0xd8: // fixext 1..16, plus the type byte
			skip = 1 + 1<<(c-0xd4)
		case c >= 0xd9 && c <= 0xdb: // str 8/16/32
			size = 1 << (c - 0xd9)
		case c == 0xdc, c == 0xdd: // array 16/32
			size, isItems = 2<<(c-0xdc), true
		case c == 0xde, c == 0xdf: // map 16/32
			size, isItems, per = 2<<(c-0xde), true, 2
		default: // 0xc1 is never used
			return off - 1, fmt.Errorf("invalid code 0x%02x", c)
		}
		if size > 0 {
			if size > len(data)-off {
				return off, errShort
			}
			var n uint64
			for _, b := range data[off : off+size] {
				n = n<<8 | uint64(b)
			}
			off += size
			switch {
			case isItems:
				items = n * per
			case c >= 0xc7 && c <= 0xc9:
				skip = n + 1
			default:
				skip = n
			}
		}
		rest := uint64(len(data) - off)
		if skip > rest || items > rest {
			return off, fmt.Errorf("length %d exceeds the %d bytes left", max(skip, items/per), rest)
		}
		off += int(skip)
		if isItems {
			if len(stack)+1 > maxDepth {
				return off, fmt.Errorf("nested deeper than %d", maxDepth)
			}
			if items > 0 {
				stack = append(stack, left)
				left = items
			}
		}
	}
}
