package publish

import (
	"bytes"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/healthmesh/healthmesh/shared/event"
)

// TestAppendResult_matches_event_Marshal: the hand-written encoder must
// produce exactly what the reflection-driven one does, for every field
// present or omitted and every length class of strings and integers.
func TestAppendResult_matches_event_Marshal(t *testing.T) {
	full := event.ProbeResult{V: event.Version, Target: "127_0_0_1-TCP-80-tcp-0000abcd", Observer: "p1", Node: "n1",
		Seq: 42, TS: 1_700_000_000_000_000_000, State: event.Up, Reason: event.ReasonL4OK, RTT: 123456,
		Detail: "status 200", Interval: int64(1e9), Rev: 7}
	with := func(f func(r *event.ProbeResult)) event.ProbeResult {
		r := full
		f(&r)
		return r
	}
	cases := []struct {
		name string
		r    event.ProbeResult
	}{
		{"zero", event.ProbeResult{}},
		{"full", full},
		{"omitempty_fields_empty", with(func(r *event.ProbeResult) { r.Node, r.Detail, r.Interval, r.Rev = "", "", 0, 0 })},
		{"down_with_detail", with(func(r *event.ProbeResult) {
			r.State, r.Reason, r.Detail = event.Down, event.ReasonL4CON, "connection refused"
		})},
		{"detail_31", with(func(r *event.ProbeResult) { r.Detail = strings.Repeat("x", 31) })},
		{"detail_32", with(func(r *event.ProbeResult) { r.Detail = strings.Repeat("x", 32) })},
		{"detail_255", with(func(r *event.ProbeResult) { r.Detail = strings.Repeat("x", 255) })},
		{"detail_256", with(func(r *event.ProbeResult) { r.Detail = strings.Repeat("x", 256) })},
		{"detail_65535", with(func(r *event.ProbeResult) { r.Detail = strings.Repeat("x", 65535) })},
		{"detail_65536", with(func(r *event.ProbeResult) { r.Detail = strings.Repeat("x", 65536) })},
		{"negative_times", with(func(r *event.ProbeResult) { r.TS, r.RTT, r.Interval = -1, math.MinInt64, -5 })},
		{"max_unsigned", with(func(r *event.ProbeResult) { r.Seq, r.Rev = math.MaxUint64, math.MaxUint64 })},
	}
	for _, v := range []int{-1 << 40, math.MinInt32, -40000, -200, -33, -32, -1, 0, 127, 128, 255, 256, 65535, 65536, 1 << 32, 1 << 40} {
		cases = append(cases, struct {
			name string
			r    event.ProbeResult
		}{"version_" + strings.ReplaceAll(strconv.Itoa(v), "-", "minus_"), with(func(r *event.ProbeResult) { r.V = v })})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want, err := event.Marshal(&tc.r)
			if err != nil {
				t.Fatal(err)
			}
			got := appendResult(nil, &tc.r)
			if !bytes.Equal(got, want) {
				t.Fatalf("appendResult differs from event.Marshal:\n got %x\nwant %x", head(got), head(want))
			}
			var back event.ProbeResult
			if err := event.Unmarshal(got, &back); err != nil || back != tc.r {
				t.Fatalf("round trip: %+v, %v; want %+v", back, err, tc.r)
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
	r := &event.ProbeResult{V: event.Version, Target: "127_0_0_1-TCP-20000-tcp-0000abcd", Observer: "hm-bench-prober",
		Node: "hm-bench", Seq: 1234567, TS: 1_700_000_000_000_000_000, State: event.Up, Reason: event.ReasonL4OK,
		RTT: 123456, Interval: int64(1e9), Rev: 1}
	b.Run("event_Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := event.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("appendResult", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendResult(make([]byte, 0, 160), r)
		}
	})
}
