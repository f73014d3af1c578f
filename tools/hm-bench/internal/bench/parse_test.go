package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 150 ticks.
	const rest = " S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 12 0 100 2000000 500"
	cases := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr string
	}{
		{"plain", "123 (hm-prober)" + rest, 4 * time.Second, ""},
		{"name_with_spaces_and_parens", "123 (a (b) c)" + rest, 4 * time.Second, ""},
		{"no_name", "123 hm-prober S 1", 0, "no command name"},
		{"short", "123 (x) S 1 2", 0, "fields after the command name"},
		{"not_a_number", "123 (x) S 1 2 3 4 5 6 7 8 9 10 x 150", 0, "field 14"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, sys, err := parseStatCPU([]byte(tc.stat))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want || sys != tc.want*150/400 {
				t.Fatalf("parseStatCPU = %v (sys %v), %v; want %v (sys 1.5s)", got, sys, err, tc.want)
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\thm-prober\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t7\nVmBad:\t12\n"
	cases := []struct {
		name    string
		key     string
		want    int64
		wantErr string
	}{
		{"rss", "VmRSS", 40 << 20, ""},
		{"hwm", "VmHWM", 50 << 20, ""},
		{"missing", "VmSwap", 0, "no VmSwap line"},
		{"no_unit", "VmBad", 0, `want "N kB"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatusKB([]byte(status), tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStatusKB = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}

func TestSampleProcSelf(t *testing.T) {
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.HWM < s.RSS || s.FDs < 3 {
		t.Fatalf("sample of this process %+v: want RSS > 0, peak >= RSS, at least stdio open", s)
	}
}

const metricsPage = `# TYPE healthmesh_prober_probes_total counter
healthmesh_prober_probes_total{method="tcp",reason="L4OK"} 900
healthmesh_prober_probes_total{method="tcp",reason="L4CON"} 100
# TYPE healthmesh_prober_owned_targets gauge
healthmesh_prober_owned_targets 10
# TYPE healthmesh_prober_schedule_lateness_seconds histogram
healthmesh_prober_schedule_lateness_seconds_bucket{le="0.01"} 800
healthmesh_prober_schedule_lateness_seconds_bucket{le="0.05"} 990
healthmesh_prober_schedule_lateness_seconds_bucket{le="0.1"} 1000
healthmesh_prober_schedule_lateness_seconds_bucket{le="+Inf"} 1000
healthmesh_prober_schedule_lateness_seconds_sum 4.5
healthmesh_prober_schedule_lateness_seconds_count 1000
`

func TestScrapeParsing(t *testing.T) {
	sc, err := parseScrape(strings.NewReader(metricsPage))
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Sum(metricProbes); got != 1000 {
		t.Fatalf("probes = %v, want 1000", got)
	}
	if got := sc.Sum(metricOwned); got != 10 {
		t.Fatalf("owned = %v, want 10", got)
	}
	if got := sc.Sum("absent_total"); got != 0 {
		t.Fatalf("absent = %v, want 0", got)
	}
	if got := sc.SumWhere(metricProbes, map[string]string{"method": "tcp", "reason": "L4CON"}); got != 100 {
		t.Fatalf("tcp L4CON probes = %v, want 100", got)
	}
	if got := sc.SumWhere(metricProbes, map[string]string{"method": "http"}); got != 0 {
		t.Fatalf("http probes = %v, want 0", got)
	}
	if got := sc.ByLabel(metricProbes, "reason"); got["L4OK"] != 900 || got["L4CON"] != 100 {
		t.Fatalf("by reason = %v", got)
	}
	h, ok := sc.Histogram(metricLateness)
	if !ok || h.Count != 1000 || len(h.Buckets) != 3 {
		t.Fatalf("histogram = %+v, %v", h, ok)
	}
	if _, err := parseScrape(strings.NewReader("not metrics {{{")); err == nil {
		t.Fatal("garbage parsed without error")
	}
}

func TestHistogram(t *testing.T) {
	h := Histogram{Count: 1000, Buckets: []Bucket{{0.01, 800}, {0.05, 990}, {0.1, 1000}}}
	earlier := Histogram{Count: 500, Buckets: []Bucket{{0.01, 400}, {0.05, 495}, {0.1, 500}}}
	cases := []struct {
		name string
		q    float64
		want float64
	}{
		{"p50_in_first_bucket", 0.5, 0.01 * 500 / 800},
		{"p80_at_first_bound", 0.8, 0.01},
		{"p99_in_second_bucket", 0.99, 0.01 + 0.04*(990-800)/190},
		{"p100", 1, 0.1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := h.Quantile(tc.q); math.Abs(got-tc.want) > 1e-12 {
				t.Fatalf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
	t.Run("empty_is_nan", func(t *testing.T) {
		if !math.IsNaN(Histogram{}.Quantile(0.5)) {
			t.Fatal("want NaN")
		}
	})
	t.Run("beyond_last_bound", func(t *testing.T) {
		over := Histogram{Count: 10, Buckets: []Bucket{{0.01, 5}}}
		if got := over.Quantile(0.99); got != 0.01 {
			t.Fatalf("got %v, want the highest finite bound", got)
		}
	})
	t.Run("sub_and_at_most", func(t *testing.T) {
		d, err := h.Sub(earlier)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := d.AtMost(0.05); !ok || n != 495 || d.Count != 500 {
			t.Fatalf("delta %+v: at most 0.05 = %d, %v", d, n, ok)
		}
		if _, ok := d.AtMost(0.02); ok {
			t.Fatal("AtMost between bounds answered")
		}
	})
	t.Run("sub_rejects_shape_change", func(t *testing.T) {
		if _, err := h.Sub(Histogram{Count: 1, Buckets: []Bucket{{0.01, 1}}}); err == nil {
			t.Fatal("want an error")
		}
		if _, err := earlier.Sub(h); err == nil {
			t.Fatal("a histogram going backwards must be an error")
		}
	})
}

func TestParseScenarios(t *testing.T) {
	cases := []struct {
		name    string
		list    string
		want    []Scenario
		wantErr string
	}{
		{"defaults", DefaultScenarios(), []Scenario{
			{MethodTCP, 10000, time.Second, time.Second / 2},
			{MethodPing, 10000, time.Second, time.Second / 2},
			{MethodHTTP, 5000, time.Second, time.Second / 2},
		}, ""},
		{"own_interval", " tcp:5@2s ", []Scenario{{MethodTCP, 5, 2 * time.Second, time.Second}}, ""},
		{"empty", " , ", nil, "empty list"},
		{"no_count", "tcp", nil, "METHOD:N"},
		{"unknown_method", "udp:10", nil, `method "udp"`},
		{"zero_targets", "tcp:0", nil, "target count"},
		{"too_many", "tcp:20000", nil, "target count"},
		{"bad_interval", "tcp:1@soon", nil, "interval"},
		{"interval_too_short", "tcp:1@1ms", nil, "at least 10ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseScenarios(tc.list, time.Second)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("ParseScenarios = %v, %v; want %v", got, err, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("scenario %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestScenarioAddressesAreLoopback(t *testing.T) {
	cases := []struct {
		name     string
		s        Scenario
		wantArgs []string
	}{
		{"tcp_two_addresses", Scenario{Method: MethodTCP, Targets: 1500, Interval: time.Second},
			[]string{"-tcp-range", "127.0.1.1:20000-20999", "-tcp-range", "127.0.1.2:20000-20499"}},
		{"http", Scenario{Method: MethodHTTP, Targets: 3, Interval: time.Second},
			[]string{"-http-range", "127.0.2.1:20000-20002"}},
		{"ping_no_backends", Scenario{Method: MethodPing, Targets: 600, Interval: time.Second}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eps := tc.s.endpoints()
			seen := map[string]bool{}
			for _, ep := range eps {
				if !ep.Addr().IsLoopback() {
					t.Fatalf("%s is not loopback", ep)
				}
				if b := ep.Addr().As4(); tc.s.Method == MethodPing && (b[3] == 0 || b[3] == 255) {
					t.Fatalf("ping target %s ends in .0 or .255", ep)
				}
				seen[ep.String()] = true
			}
			if len(eps) != tc.s.Targets || len(seen) != tc.s.Targets {
				t.Fatalf("%d endpoints, %d distinct, want %d", len(eps), len(seen), tc.s.Targets)
			}
			if got := tc.s.backendArgs(); strings.Join(got, " ") != strings.Join(tc.wantArgs, " ") {
				t.Fatalf("backend args %q, want %q", got, tc.wantArgs)
			}
		})
	}
}

func TestScenarioTargetsAreWhatTheAggregatorWrites(t *testing.T) {
	s := Scenario{Method: MethodHTTP, Targets: 3, Interval: 2 * time.Second, Timeout: time.Second}
	targets, err := s.targets(9)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 3 {
		t.Fatalf("%d targets, want 3", len(targets))
	}
	for key, tg := range targets {
		tid, err := subject.ParseTargetToken(key)
		if err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		data, err := event.Marshal(tg)
		if err != nil {
			t.Fatal(err)
		}
		var back event.Target
		if err := event.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		if back.V != event.Version || back.ID != key || tid.Method != MethodHTTP || back.Method != MethodHTTP ||
			back.Addr != tid.Addr.String() || back.Port != tid.Port || back.Proto != "TCP" || back.Observers != 1 ||
			back.Interval != int64(2*time.Second) || back.Timeout != int64(time.Second) || back.Rev != 9 || len(back.UsedBy) != 1 {
			t.Fatalf("target %s = %+v", key, back)
		}
	}
}

func TestVerdict(t *testing.T) {
	good := Result{Done: 100, OnTimePct: 99.9, P99ms: 5, Prober: ProcReport{CPUPer1000: 0.02, PerTargetKiB: 3}}
	cases := []struct {
		name string
		f    func(r *Result)
		want string
	}{
		{"all_met", func(*Result) {}, ""},
		{"late", func(r *Result) { r.OnTimePct = 99 }, "on-time"},
		{"p99", func(r *Result) { r.P99ms = 50 }, "p99"},
		{"cpu", func(r *Result) { r.Prober.CPUPer1000 = 0.05 }, "cpu"},
		{"memory", func(r *Result) { r.Prober.PerTargetKiB = 5 }, "rss"},
		{"nothing_done", func(r *Result) { r.Done = 0 }, "no probe done"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.f(&r)
			got := r.Verdict()
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("Verdict = %q, want it to mention %q", got, tc.want)
			}
		})
	}
}

func TestLogValueAndPortsFile(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "hm-prober.log")
	lines := "not json\n{\"level\":\"info\",\"message\":\"prober started\"}\n{\"message\":\"http listening\",\"addr\":\"127.0.0.1:4321\"}\n"
	if err := os.WriteFile(log, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := logValue(log, "http listening", "addr"); err != nil || got != "127.0.0.1:4321" {
		t.Fatalf("logValue = %q, %v", got, err)
	}
	if got, err := logValue(log, "never logged", "addr"); err != nil || got != "" {
		t.Fatalf("logValue of a missing line = %q, %v; want empty", got, err)
	}

	if got, err := natsPorts(dir, 77); err != nil || got != "" {
		t.Fatalf("no ports file yet: %q, %v", got, err)
	}
	ports := filepath.Join(dir, "nats-server_77.ports")
	if err := os.WriteFile(ports, []byte(`{"nats":["nats://127.0.0.1:4222"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := natsPorts(dir, 77); err != nil || got != "" {
		t.Fatalf("half-written ports file: %q, %v; want to wait", got, err)
	}
	if err := os.WriteFile(ports, []byte(`{"nats":["nats://127.0.0.1:4222"],"monitoring":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := natsPorts(dir, 77); err != nil || got != "nats://127.0.0.1:4222" {
		t.Fatalf("natsPorts = %q, %v", got, err)
	}
	if err := os.WriteFile(ports, []byte(`{"nats":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natsPorts(dir, 77); err == nil {
		t.Fatal("a ports file without a client URL must be an error")
	}
}

func TestParseBoxCPU(t *testing.T) {
	a, err := parseBoxCPU([]byte("cpu  100 5 50 800 10 0 5 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\n"))
	if err != nil || a != (boxCPU{total: 1000, steal: 30}) {
		t.Fatalf("parseBoxCPU = %+v, %v; want total 1000 (guest not counted twice), steal 30", a, err)
	}
	b := boxCPU{total: 1200, steal: 80}
	if got := stealPct(a, b); got != 25 {
		t.Fatalf("stealPct = %v, want 25 (50 of 200 ticks)", got)
	}
	if got := stealPct(b, b); got != 0 {
		t.Fatalf("stealPct over no time = %v, want 0", got)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu  1 2 3", "cpu  1 2 3 x 5 6 7 8"} {
		if _, err := parseBoxCPU([]byte(bad)); err == nil {
			t.Errorf("parseBoxCPU(%q) = nil error", bad)
		}
	}
}
