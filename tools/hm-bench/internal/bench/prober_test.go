package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// envTestBin passes the directory of the binaries built by TestRunEndToEnd
// to its copy inside the network namespace.
const envTestBin = "HM_BENCH_TEST_BIN"

// TestRunEndToEnd builds hm-prober, demo-backends and nats-server, then runs
// a small benchmark for real in a network namespace of its own (the
// backends listen on fixed ports 20000+: no clash with anything else), and
// checks that the prober probed every target on time and the numbers add up.
func TestRunEndToEnd(t *testing.T) {
	if InNetns() {
		runInNetns(t)
		return
	}
	if testing.Short() {
		t.Skip("builds three binaries and runs them for about 15 s")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build the binaries with")
	}
	bin := t.TempDir()
	build := func(dir, out, pkg string) {
		t.Helper()
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, out), pkg)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s in %s: %v\n%s", pkg, dir, err, msg)
		}
	}
	tools := filepath.Join("..", "..", "..")
	build(filepath.Join(tools, "..", "services", "prober"), binProber, "./cmd/hm-prober")
	build(tools, binBackends, "./demo-backends")
	build(tools, binNATS, "github.com/nats-io/nats-server/v2")

	t.Setenv(envTestBin, bin)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := Reexec(ctx, []string{"-test.run=^TestRunEndToEnd$", "-test.v", "-test.count=1"}, &out, &out)
	if err != nil && strings.Contains(out.String(), "operation not permitted") {
		t.Skipf("cannot create a network namespace: %s", out.String())
	}
	if err != nil || !strings.Contains(out.String(), "--- PASS: TestRunEndToEnd") {
		t.Fatalf("run in a network namespace: %v\n%s", err, out.String())
	}
	t.Log(out.String())
}

// runInNetns is the test body, in the namespace Reexec made.
func runInNetns(t *testing.T) {
	if err := LoopbackUp(); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	c := Config{
		Bin:       os.Getenv(envTestBin),
		Scenarios: []Scenario{{Method: MethodTCP, Targets: 50, Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}},
		Settle:    500 * time.Millisecond, Warmup: time.Second, Duration: 3 * time.Second,
		ProfileDir: t.TempDir(), Progress: &progress, Netns: true,
	}
	rs, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, progress.String())
	}
	if len(rs) != 1 {
		t.Fatalf("%d results, want 1", len(rs))
	}
	r := rs[0]
	t.Logf("%+v", r)
	// 50 targets every 200 ms for about 3 s: about 750 probes.
	if r.Expected < 700 || r.Done < uint64(0.8*r.Expected) || r.Done > uint64(1.2*r.Expected) {
		t.Fatalf("expected %.0f, done %d: want done within 20%% of expected", r.Expected, r.Done)
	}
	if r.UpPct != 100 || r.Reasons["L4OK"] != r.Done {
		t.Fatalf("reasons %v: want every probe L4OK", r.Reasons)
	}
	// Acks trail the probes: at the end of the window up to a second's
	// results may still be in flight on a loaded box (a CI run beside other
	// packages' tests measured 5 % unacknowledged with half the CPU stolen).
	if perSecond := float64(r.Done) / r.Window; float64(r.Acked)+perSecond < float64(r.Done) {
		t.Fatalf("acked %d of %d results: more than a second's (%.0f) unacknowledged", r.Acked, r.Done, perSecond)
	}
	if r.Prober.CPUSeconds <= 0 || r.Prober.RSSEnd <= 0 || r.Prober.RSSBase <= 0 || r.NATS.RSSEnd <= 0 {
		t.Fatalf("process numbers missing: prober %+v nats %+v", r.Prober, r.NATS)
	}
	for _, kind := range []string{"cpu", "heap"} {
		if fi, err := os.Stat(filepath.Join(c.ProfileDir, "tcp-50-"+kind+".pprof")); err != nil || fi.Size() == 0 {
			t.Fatalf("%s profile: %v", kind, err)
		}
	}
	var table bytes.Buffer
	if err := WriteTable(&table, rs); err != nil || !strings.Contains(table.String(), "tcp:50@200ms") {
		t.Fatalf("table: %v\n%s", err, table.String())
	}
	var js bytes.Buffer
	if err := WriteJSON(&js, rs); err != nil || !strings.Contains(js.String(), `"on_time_pct"`) {
		t.Fatalf("json: %v\n%s", err, js.String())
	}
}
