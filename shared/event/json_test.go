package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func mustMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatalf("msgpack.Marshal(%#v): %v", v, err)
	}
	return b
}

func TestToJSON(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"probe_result", mustMsgpack(t, &ProbeResult{V: 1, Target: "192_0_2_10-TCP-80-tcp-0123abcd", Observer: "p1", Seq: 7, TS: 1700000000000000000, State: Down, Reason: ReasonL4CON, RTT: 1500, Detail: "connection refused"}),
			`{"d":"connection refused","o":"p1","r":"L4CON","rtt":1500,"s":7,"st":"down","t":"192_0_2_10-TCP-80-tcp-0123abcd","ts":1700000000000000000,"v":1}`},
		{"nil", []byte{0xc0}, `null`},
		{"bools", mustMsgpack(t, []bool{true, false}), `[true,false]`},
		{"ints", mustMsgpack(t, []any{0, -1, -32, -33, 127, 128, 255, 256, 65536, int64(math.MinInt64), uint64(math.MaxUint64)}),
			`[0,-1,-32,-33,127,128,255,256,65536,-9223372036854775808,18446744073709551615]`},
		{"sized_ints", []byte{0x94, 0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0xff, 0xff, 0xff, 0xfe, 0xcd, 0xff, 0xff}, `[-128,-32768,-2,65535]`},
		{"floats", mustMsgpack(t, []any{1.5, float32(0.25), math.NaN(), math.Inf(1), math.Inf(-1)}), `[1.5,0.25,"NaN","+Inf","-Inf"]`},
		{"string_keys_sorted", mustMsgpack(t, map[string]int{"b": 2, "a": 1}), `{"a":1,"b":2}`},
		{"int_keys", mustMsgpack(t, map[int]string{1: "a", -2: "b"}), `{"-2":"b","1":"a"}`},
		{"mixed_keys", []byte{0x83, 0xc3, 0x01, 0xc0, 0x02, 0x92, 0x01, 0x02, 0x03}, `{"[1,2]":3,"null":2,"true":1}`},
		{"nested_any_keys", mustMsgpack(t, map[string]any{"m": map[uint8]any{7: map[bool]int{false: 1}}}), `{"m":{"7":{"false":1}}}`},
		{"bin_utf8", mustMsgpack(t, []byte("héllo")), `"héllo"`},
		{"bin_binary", mustMsgpack(t, []byte{0xff, 0x00, 0x80}), `"/wCA"`},
		{"bin_key", []byte{0x81, 0xc4, 0x01, 'k', 0x01}, `{"k":1}`},
		{"html_not_escaped", mustMsgpack(t, "<a&b>"), `"<a&b>"`},
		{"str8", mustMsgpack(t, string(bytes.Repeat([]byte("x"), 40))), `"` + string(bytes.Repeat([]byte("x"), 40)) + `"`},
		{"timestamp", mustMsgpack(t, time.Unix(1700000000, 5).UTC()), `"2023-11-14T22:13:20.000000005Z"`},
		{"timestamp32", []byte{0xd6, 0xff, 0x65, 0x53, 0xf1, 0x00}, `"2023-11-14T22:13:20Z"`},
		{"ext_other", []byte{0xd4, 0x05, 0x01}, `{"data":"AQ==","ext":5}`},
		{"ext8", []byte{0xc7, 0x02, 0xfe, 0x01, 0x02}, `{"data":"AQI=","ext":-2}`},
		{"empty_containers", []byte{0x82, 0xa1, 'a', 0x90, 0xa1, 'm', 0x80}, `{"a":[],"m":{}}`},
		{"duplicate_key_last_wins", []byte{0x82, 0xa1, 'k', 0x01, 0xa1, 'k', 0x02}, `{"k":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToJSON(tt.in)
			if err != nil {
				t.Fatalf("ToJSON(%x): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Errorf("ToJSON(%x) =\n%s\nwant\n%s", tt.in, got, tt.want)
			}
		})
	}
}

func TestToJSONErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"never_used_code", []byte{0xc1}},
		{"truncated_map", []byte{0x82, 0xa1, 'a', 0x01}},
		{"truncated_str", []byte{0xa5, 'a'}},
		{"truncated_uint64", []byte{0xcf, 0x01}},
		{"trailing_bytes", []byte{0x01, 0x02}},
		// Each of these crashes the process with out-of-memory when given to
		// msgpack.Unmarshal into an interface{}.
		{"map32_huge", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"array32_huge", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"str32_huge", []byte{0xdb, 0xff, 0xff, 0xff, 0xff}},
		{"bin32_huge", []byte{0xc6, 0xff, 0xff, 0xff, 0xff}},
		{"ext32_huge", []byte{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"nested_map_huge", []byte{0x81, 0xa1, 'p', 0xdf, 0xff, 0xff, 0xff, 0xff}},
		{"timestamp_bad_size", []byte{0xd5, 0xff, 0x00, 0x00}},
		{"timestamp_bad_nsec", []byte{0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00}},
		{"too_deep", append(bytes.Repeat([]byte{0x91}, MaxDepth+1), 0xc0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToJSON(tt.in)
			if !errors.Is(err, ErrDecode) {
				t.Errorf("ToJSON(%x) = %s, %v; want an error wrapping ErrDecode", tt.in, got, err)
			}
		})
	}
}

func TestToJSONDepthLimit(t *testing.T) {
	in := append(bytes.Repeat([]byte{0x91}, MaxDepth), 0x01)
	got, err := ToJSON(in)
	if err != nil {
		t.Fatalf("ToJSON of %d nested arrays: %v", MaxDepth, err)
	}
	want := string(bytes.Repeat([]byte("["), MaxDepth)) + "1" + string(bytes.Repeat([]byte("]"), MaxDepth))
	if string(got) != want {
		t.Errorf("ToJSON of %d nested arrays = %.40s…, want %.40s…", MaxDepth, got, want)
	}
}

// TestToJSONMatchesTypedDecode checks that the generic decoder sees the same
// fields as the typed one for every message type.
func TestToJSONMatchesTypedDecode(t *testing.T) {
	for _, m := range fixtures() {
		t.Run(m.testName(), func(t *testing.T) {
			b, err := Marshal(m.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ToJSON(b)
			if err != nil {
				t.Fatalf("ToJSON: %v", err)
			}
			var fromJSON, fromTyped map[string]any
			if err := json.Unmarshal(got, &fromJSON); err != nil {
				t.Fatalf("ToJSON gave invalid JSON %s: %v", got, err)
			}
			// Reference: msgpack's own decoding of a well-formed message
			// into a map, through encoding/json for the same number types.
			var ref map[string]any
			if err := msgpack.Unmarshal(b, &ref); err != nil {
				t.Fatal(err)
			}
			refJSON, err := json.Marshal(ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(refJSON, &fromTyped); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromJSON, fromTyped) {
				t.Errorf("ToJSON = %s\nmsgpack decode = %s", got, refJSON)
			}
		})
	}
}

func TestSchemaFor(t *testing.T) {
	tests := []struct {
		schema string
		want   any
	}{
		{SchemaProbeResult, &ProbeResult{}},
		{SchemaTransition, &Transition{}},
		{SchemaActionResult, &ActionResult{}},
		{SchemaAudit, &AuditRecord{}},
		{SchemaTarget, &Target{}},
		{SchemaMember, &Member{}},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			got, err := SchemaFor(tt.schema)
			if err != nil || reflect.TypeOf(got) != reflect.TypeOf(tt.want) {
				t.Errorf("SchemaFor(%q) = %T, %v; want %T", tt.schema, got, err, tt.want)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		if got, err := SchemaFor("transition.v2"); !errors.Is(err, ErrUnknownSchema) {
			t.Errorf("SchemaFor(transition.v2) = %T, %v; want ErrUnknownSchema", got, err)
		}
	})
}

func FuzzToJSON(f *testing.F) {
	for _, m := range fixtures() {
		b, err := Marshal(m.msg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x83, 0xc3, 0x01, 0xc0, 0x02, 0x92, 0x01, 0x02, 0x03})
	f.Add([]byte{0xd7, 0xff, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00})
	f.Add([]byte{0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ToJSON(data)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("ToJSON(%x): error %v does not wrap ErrDecode", data, err)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("ToJSON(%x) = %q: invalid JSON", data, got)
		}
	})
}
