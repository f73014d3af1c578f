package bench

import (
	"strings"
	"testing"
	"time"
)

func TestFloorIsTheEndOfTheStreakAfterTheLastSuccess(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	l := &resultLog{by: map[string][]observed{"tok": {
		// Out of arrival order on purpose: floor sorts by start.
		{start: at(2000), end: at(2001), down: true},
		{start: at(0), end: at(1), down: true},        // in flight as the backend closed...
		{start: at(1000), end: at(1002), down: false}, // ...then one more success
		{start: at(3000), end: at(3003), down: true},
		{start: at(4000), end: at(4001), down: true},
	}}}
	if got, ok := l.floor("tok", 2); !ok || !got.Equal(at(3003)) {
		t.Errorf("floor(2) = %v, %v; want the end of the 2nd failure after the success (+3003ms)", got, ok)
	}
	if got, ok := l.floor("tok", 3); !ok || !got.Equal(at(4001)) {
		t.Errorf("floor(3) = %v, %v; want +4001ms", got, ok)
	}
	if _, ok := l.floor("tok", 4); ok {
		t.Error("floor(4): only 3 failures in a row were seen, want none")
	}
	if _, ok := l.floor("other", 1); ok {
		t.Error("floor of a target without results, want none")
	}
}

func TestDist(t *testing.T) {
	if d := dist(nil); d != (Dist{}) {
		t.Errorf("dist(nil) = %+v", d)
	}
	var xs []float64
	for i := 100; i >= 1; i-- {
		xs = append(xs, float64(i))
	}
	if d := dist(xs); d != (Dist{P50: 50, P99: 99, Max: 100, N: 100}) {
		t.Errorf("dist(1..100) = %+v", d)
	}
	if xs[0] != 100 {
		t.Error("dist sorted its argument")
	}
}

func TestPipelineVerdict(t *testing.T) {
	ok := PipelineResult{Roles: RolesAllInOne, Method: MethodTCP, Interval: "1s", Scheduled: 10000, Achieved: 10000,
		Total:     ProcReport{CPUPer1000: 0.04, PerTargetKiB: 7},
		Detection: Detection{Failed: 100, Applied: 100, Over: Dist{P99: 80, Max: 90}}}
	if v := ok.Verdict(); v != "" {
		t.Fatalf("verdict %q, want none", v)
	}
	bad := ok
	bad.Total.CPUPer1000, bad.Detection.Applied, bad.Detection.Over.P99 = 0.05, 99, 120
	bad.Reshard = &Reshard{Transitions: 3}
	v := bad.Verdict()
	for _, want := range []string{"cpu 0.0500s/1k", "1 of 100 failures never applied", "p99 120ms", "3 backend transitions"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict %q does not say %q", v, want)
		}
	}
	slow := ok
	slow.Interval, slow.Total.CPUPer1000 = "3s", 0.09 // the CPU objective is for 1 s
	if v := slow.Verdict(); v != "" {
		t.Errorf("verdict at 3 s %q, want none", v)
	}
}
