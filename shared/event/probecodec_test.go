package event

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The hand-written encoder must
// produce exactly what the reflection-driven one does, for every field
// present or omitted and every length class of strings and integers, and
// the direct decoder must read it all back.
func TestAppendProbeResult_matches_Marshal_and_decodes_back(t *testing.T) {
	full := ProbeResult{V: Version, Target: "127_0_0_1-TCP-80-tcp-0000abcd", Observer: "p1", Node: "n1",
		Seq: 42, TS: 1_700_000_000_000_000_000, State: Up, Reason: ReasonL4OK, RTT: 123456,
		Detail: "status 200", Interval: int64(1e9), Rev: 7}
	with := func(f func(r *ProbeResult)) ProbeResult {
		r := full
		f(&r)
		return r
	}
	cases := []struct {
		name string
		r    ProbeResult
	}{
		{"zero", ProbeResult{}},
		{"full", full},
		{"omitempty_fields_empty", with(func(r *ProbeResult) { r.Node, r.Detail, r.Interval, r.Rev = "", "", 0, 0 })},
		{"down_with_detail", with(func(r *ProbeResult) {
			r.State, r.Reason, r.Detail = Down, ReasonL4CON, "connection refused"
		})},
		{"detail_31", with(func(r *ProbeResult) { r.Detail = strings.Repeat("x", 31) })},
		{"detail_32", with(func(r *ProbeResult) { r.Detail = strings.Repeat("x", 32) })},
		{"detail_255", with(func(r *ProbeResult) { r.Detail = strings.Repeat("x", 255) })},
		{"detail_256", with(func(r *ProbeResult) { r.Detail = strings.Repeat("x", 256) })},
		{"detail_65535", with(func(r *ProbeResult) { r.Detail = strings.Repeat("x", 65535) })},
		{"detail_65536", with(func(r *ProbeResult) { r.Detail = strings.Repeat("x", 65536) })},
		{"negative_times", with(func(r *ProbeResult) { r.TS, r.RTT, r.Interval = -1, math.MinInt64, -5 })},
		{"max_unsigned", with(func(r *ProbeResult) { r.Seq, r.Rev = math.MaxUint64, math.MaxUint64 })},
	}
	for _, v := range []int{-1 << 40, math.MinInt32, -40000, -200, -33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536, 1 << 32, 1 << 40} {
		cases = append(cases, struct {
			name string
			r    ProbeResult
		}{"version_" + strings.ReplaceAll(strconv.Itoa(v), "-", "minus_"), with(func(r *ProbeResult) { r.V = v })})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := Marshal(&tc.r)
			if err != nil {
				t.Fatal(err)
			}
			got := AppendProbeResult(nil, &tc.r)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendProbeResult differs from Marshal:\n got %x\nwant %x", head(got), head(want))
			}
			var back ProbeResult
			if err := Unmarshal(got, &back); err != nil || back != tc.r {
				t.Fatalf("round trip: %+v, %v; want %+v", back, err, tc.r)
			}
			back = ProbeResult{Target: "left over"}
			if !decodeProbeResult(got, &back) || back != tc.r {
				t.Fatalf("direct decoding: %+v; want %+v", back, tc.r)
			}
		})
	}
}

func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func BenchmarkEncode(b *testing.B) {
	r := &ProbeResult{V: Version, Target: "127_0_0_1-TCP-20000-tcp-0000abcd", Observer: "hm-bench-prober",
		Node: "hm-bench", Seq: 1234567, TS: 1_700_000_000_000_000_000, State: Up, Reason: ReasonL4OK,
		RTT: 123456, Interval: int64(1e9), Rev: 1}
	b.Run("event_Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendProbeResult", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = AppendProbeResult(make([]byte, 0, 160), r)
		}
	})
}

// Whatever is not the prober's own form is decoded (or refused) exactly as
// Unmarshal does it.
func TestDecodeProbeResult_agrees_with_Unmarshal(t *testing.T) {
	base := ProbeResult{V: Version, Target: "127_0_0_1-TCP-80-tcp-0000abcd", Observer: "p1", Seq: 9, TS: 5,
		State: Down, Reason: ReasonL4CON, RTT: 7, Detail: "connection refused"}
	enc := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	own := AppendProbeResult(nil, &base)
	cases := map[string][]byte{
		"own_form": own,
		// Another encoder: keys in another order, narrow integers, a key
		// this version does not know (a newer prober's field).
		"other_order_and_widths": enc(map[string]any{"st": "up", "t": "x", "v": uint8(1), "s": int8(3), "ts": uint16(9),
			"r": "L4OK", "rtt": int32(-4), "o": "p2", "future": []int{1, 2}}),
		"unknown_state_and_reason": enc(map[string]any{"t": "x", "o": "p", "st": "sideways", "r": "MAYBE"}),
		"str_as_bin":               enc(map[string]any{"t": []byte("x"), "o": "p", "st": "up"}),
		"nil_detail":               enc(map[string]any{"t": "x", "o": "p", "st": "up", "d": nil}),
		"seq_too_big_for_int":      enc(map[string]any{"t": "x", "ts": uint64(math.MaxUint64)}),
		"negative_seq":             enc(map[string]any{"t": "x", "s": int64(-1)}),
		"not_a_map":                enc([]string{"t", "x"}),
		"empty":                    {},
		"truncated":                own[:len(own)-3],
		"trailing_bytes":           append(bytes.Clone(own), 0xc0),
		"length_past_the_end":      {0x81, 0xa1, 't', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'},
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			var want ProbeResult
			wantErr := Unmarshal(data, &want)
			got := ProbeResult{Target: "left over", Detail: "left over"}
			err := DecodeProbeResult(data, &got)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("DecodeProbeResult error %v, Unmarshal error %v", err, wantErr)
			}
			if err != nil && !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			if err == nil && got != want {
				t.Fatalf("DecodeProbeResult %+v, Unmarshal %+v", got, want)
			}
		})
	}
}

func BenchmarkDecodeProbeResult(b *testing.B) {
	r := &ProbeResult{V: Version, Target: "127_0_0_1-TCP-20000-tcp-0000abcd", Observer: "hm-bench-prober",
		Node: "hm-bench", Seq: 1234567, TS: 1_700_000_000_000_000_000, State: Up, Reason: ReasonL4OK,
		RTT: 123456, Interval: int64(1e9), Rev: 1}
	data := AppendProbeResult(nil, r)
	b.Run("Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out ProbeResult
			if err := Unmarshal(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeProbeResult", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out ProbeResult
			if err := DecodeProbeResult(data, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
