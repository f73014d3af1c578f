package event

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestScan(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantEnd int
		wantErr bool
	}{
		{"fixint", []byte{0x05}, 1, false},
		{"negative_fixint", []byte{0xff}, 1, false},
		{"nil_then_trailing", []byte{0xc0, 0x01}, 1, false},
		{"fixstr", []byte{0xa2, 'h', 'i'}, 3, false},
		{"str8", []byte{0xd9, 0x02, 'h', 'i'}, 4, false},
		{"bin16", []byte{0xc5, 0x00, 0x01, 0xff}, 4, false},
		{"float32", []byte{0xca, 0, 0, 0, 0}, 5, false},
		{"float64", []byte{0xcb, 0, 0, 0, 0, 0, 0, 0, 0}, 9, false},
		{"uint64", []byte{0xcf, 0, 0, 0, 0, 0, 0, 0, 1}, 9, false},
		{"int16", []byte{0xd1, 0x80, 0x00}, 3, false},
		{"fixext4", []byte{0xd6, 0xff, 0, 0, 0, 1}, 6, false},
		{"ext8", []byte{0xc7, 0x02, 0x05, 0xaa, 0xbb}, 5, false},
		{"fixmap", []byte{0x81, 0xa1, 'k', 0x92, 0x01, 0x02}, 6, false},
		{"map16", []byte{0xde, 0x00, 0x01, 0x01, 0x02}, 5, false},
		{"array32", []byte{0xdd, 0x00, 0x00, 0x00, 0x02, 0xc2, 0xc3}, 7, false},
		{"empty_containers", []byte{0x92, 0x90, 0x80}, 3, false},
		{"nested_then_sibling", []byte{0x92, 0x91, 0x91, 0x01, 0x02, 0xc0}, 5, false},
		{"empty", nil, 0, true},
		{"never_used", []byte{0xc1}, 0, true},
		{"truncated_array", []byte{0x93, 0x01, 0x02}, 0, true},
		{"truncated_map_value", []byte{0x81, 0xa1, 'k'}, 0, true},
		{"truncated_prefix", []byte{0xdd, 0x00, 0x00}, 0, true},
		{"truncated_ext_type", []byte{0xc7, 0x00}, 0, true},
		{"array32_huge", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01}, 0, true},
		{"map32_huge", []byte{0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01}, 0, true},
		{"map_needs_two_bytes_per_entry", []byte{0xde, 0x00, 0x02, 0x01, 0x01, 0x01}, 0, true},
		{"str32_huge", []byte{0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'}, 0, true},
		{"at_max_depth", append(bytes.Repeat([]byte{0x91}, MaxDepth), 0xc0), MaxDepth + 1, false},
		{"too_deep", append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0), 0, true},
		{"too_deep_empty_innermost", append(bytes.Repeat([]byte{0x91}, MaxDepth), 0x90), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end, err := scan(tt.in, MaxDepth)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("scan(%x) = %d, nil; want an error", tt.in, end)
				}
				return
			}
			if err != nil || end != tt.wantEnd {
				t.Fatalf("scan(%x) = %d, %v; want %d", tt.in, end, err, tt.wantEnd)
			}
		})
	}
}

// TestScanAgreesWithMsgpack checks scan's end offset against msgpack's own
// Skip on every fixture and on values of every msgpack type.
func TestScanAgreesWithMsgpack(t *testing.T) {
	values := []any{
		nil, true, int8(-5), 200, 70000, int64(-1 << 40), uint64(1 << 63), float32(1.5), 2.5, "s",
		string(bytes.Repeat([]byte("x"), 300)), []byte{1, 2}, bytes.Repeat([]byte{7}, 70000),
		[]any{1, []any{2, map[string]any{"a": []int{}}}}, map[int]string{1: "a"},
		make([]int, 20), map[string]int{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10, "k": 11, "l": 12, "m": 13, "n": 14, "o": 15, "p": 16},
	}
	for _, f := range fixtures() {
		values = append(values, f.msg)
	}
	for i, v := range values {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, 0xc0) // a trailing byte scan must not swallow
		r := bytes.NewReader(b)
		if err := msgpack.NewDecoder(r).Skip(); err != nil {
			t.Fatalf("value %d: msgpack Skip: %v", i, err)
		}
		want := len(b) - r.Len()
		if got, err := scan(b, MaxDepth); err != nil || got != want {
			t.Errorf("value %d (%T): scan = %d, %v; msgpack ends at %d", i, v, got, err, want)
		}
	}
}

// TestUnmarshalHugeLengths is the regression test for the out-of-memory
// crash: without scan, msgpack allocates 2^32-1 Votes for the first case.
func TestUnmarshalHugeLengths(t *testing.T) {
	huge := func(key string, code byte) []byte {
		b := []byte{0x81, 0xa0 | byte(len(key))}
		b = append(b, key...)
		return append(b, code, 0xff, 0xff, 0xff, 0xff)
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"votes_array32", huge("votes", 0xdd)},
		{"used_array32", huge("used", 0xdd)},
		{"params_map32", huge("p", 0xdf)},
		{"labels_map32", huge("labels", 0xdf)},
		{"unknown_array32", huge("x", 0xdd)},
		{"unknown_str32", huge("x", 0xdb)},
		{"unknown_bin32", huge("x", 0xc6)},
		{"top_map32", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"deep_unknown", append([]byte{0x81, 0xa1, 'x'}, append(bytes.Repeat([]byte{0x91}, 5*MaxDepth), 0xc0)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, schema := range schemaNames() {
				v, _ := SchemaFor(schema)
				if err := Unmarshal(tt.in, v); !errors.Is(err, ErrDecode) {
					t.Errorf("%s: Unmarshal(%x) = %v; want an error wrapping ErrDecode", schema, tt.in, err)
				}
			}
		})
	}
}

// BenchmarkUnmarshal measures what scan adds to decoding a transition.
func BenchmarkUnmarshal(b *testing.B) {
	var msg []byte
	for _, f := range fixtures() {
		if f.file() == "transition.v1.backend_down" {
			msg, _ = Marshal(f.msg)
		}
	}
	b.Run("event_unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var tr Transition
			if err := Unmarshal(msg, &tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("msgpack_only", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var tr Transition
			if err := msgpack.Unmarshal(msg, &tr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan_only", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := scan(msg, MaxDepth); err != nil {
				b.Fatal(err)
			}
		}
	})
}
