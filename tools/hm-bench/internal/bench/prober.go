// Package bench is the prober's performance benchmark: it starts a
// nats-server with JetStream, loopback backends (demo-backends) and one
// hm-prober as separate processes, writes N targets into KV hm_targets the
// way the aggregator does, and measures the prober over a fixed window:
// probes scheduled and done, lateness (from its histogram), CPU time per
// 1,000 probes and resident memory per target, from its /metrics and from
// /proc. Every address it probes is on loopback.
package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/tools/demo"
)

// OnTime is the lateness under which a probe counts as on time; it is a
// bucket bound of the prober's lateness histogram.
const OnTime = 50 * time.Millisecond

// Binaries the benchmark runs, looked up in Config.Bin.
const (
	binProber   = "hm-prober"
	binBackends = "demo-backends"
	binNATS     = "nats-server"
)

// Config says what to run.
type Config struct {
	Bin         string        // directory holding hm-prober, demo-backends and nats-server
	Scenarios   []Scenario    // run in order
	Runs        int           // runs of each scenario, each with fresh processes (default 1)
	Settle      time.Duration // idle prober before the 0-target memory baseline (default 3s)
	Warmup      time.Duration // after every target is owned, before measuring (default 10s)
	Duration    time.Duration // the measured window (default 30s)
	Concurrency int           // hm-prober -concurrency; 0 = its default
	ProberEnv   []string      // extra KEY=VALUE environment of hm-prober (GOGC, GOMAXPROCS …)
	Dir         string        // run directories (logs, JetStream store) go here; "" = a temp dir removed at the end
	ProfileDir  string        // "" = no profiling; else CPU and heap profiles of the prober per run
	Progress    io.Writer     // progress lines; nil = none
	Netns       bool          // informational: the run has a network namespace of its own
}

func (c *Config) defaults() error {
	phaseDefaults(&c.Runs, &c.Settle, &c.Warmup, &c.Duration, &c.Progress)
	if len(c.Scenarios) == 0 {
		return fmt.Errorf("bench: %w: none given", ErrScenario)
	}
	for _, b := range []string{binProber, binBackends, binNATS} {
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return fmt.Errorf("bench: %w (build it: make build, and for nats-server see make bench-prober)", err)
		}
	}
	return nil
}

// phaseDefaults fills the run count and phase lengths both benchmarks share.
func phaseDefaults(runs *int, settle, warmup, duration *time.Duration, progress *io.Writer) {
	*runs = max(*runs, 1)
	if *settle <= 0 {
		*settle = 3 * time.Second
	}
	if *warmup <= 0 {
		*warmup = 10 * time.Second
	}
	if *duration <= 0 {
		*duration = 30 * time.Second
	}
	if *progress == nil {
		*progress = io.Discard
	}
}

// Result is one measured run.
type Result struct {
	Scenario   string     `json:"scenario"`
	Method     string     `json:"method"`
	Targets    int        `json:"targets"`
	Interval   string     `json:"interval"`
	Run        int        `json:"run"`
	Window     float64    `json:"window_s"`    // measured seconds
	LoadBefore [3]float64 `json:"load_before"` // /proc/loadavg when the run started
	LoadAfter  [3]float64 `json:"load_after"`  // and when the window closed
	StealPct   float64    `json:"steal_pct"`   // of the box's CPU time during the window (see stealPct)
	Profiled   bool       `json:"profiled"`    // a CPU profile was taken during the window
	Netns      bool       `json:"netns"`       // in a private network namespace

	Expected float64           `json:"expected"` // targets × window / interval
	Started  uint64            `json:"started"`  // lateness observations: probes that started
	Done     uint64            `json:"done"`     // probes_total
	Acked    uint64            `json:"acked"`    // results stored in HM_RESULTS
	Dropped  uint64            `json:"dropped"`  // back-pressure
	Failed   uint64            `json:"failed"`   // publish errors
	Overruns uint64            `json:"overruns"` // ticks skipped
	Reasons  map[string]uint64 `json:"reasons"`  // probes by reason code

	OnTimePct float64 `json:"on_time_pct"` // started within OnTime, of max(expected, started)
	UpPct     float64 `json:"up_pct"`      // probes with an OK reason, of done
	P50ms     float64 `json:"lateness_p50_ms"`
	P99ms     float64 `json:"lateness_p99_ms"`

	Prober   ProcReport `json:"prober"`
	NATS     ProcReport `json:"nats"`
	Backends ProcReport `json:"backends"` // zero for ping: the kernel answers
}

// ProcReport is one process over the window.
type ProcReport struct {
	CPUSeconds   float64 `json:"cpu_s"`
	CPUPer1000   float64 `json:"cpu_s_per_1000"`     // per 1,000 probes done
	SysPer1000   float64 `json:"sys_cpu_s_per_1000"` // the kernel's part of it (system calls, and loopback's softirqs)
	RSSBase      int64   `json:"rss_base"`           // bytes, with 0 targets
	RSSEnd       int64   `json:"rss_end"`            // bytes, at the end of the window
	HWM          int64   `json:"rss_peak"`           // bytes, VmHWM at the end of the window
	PerTargetKiB float64 `json:"kib_per_target"`     // (RSSEnd − RSSBase) / targets
	MaxFDs       int     `json:"max_fds"`            // sampled every second
}

// Run runs every scenario c.Runs times and returns the results, in order.
// On error it returns the results measured so far with it. It stops every
// process it started before returning.
func Run(ctx context.Context, c Config) ([]Result, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	dir, cleanup, err := workDir(c.Dir, "hm-bench-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var out []Result
	for _, s := range c.Scenarios {
		for run := 1; run <= c.Runs; run++ {
			fmt.Fprintf(c.Progress, "== %s run %d/%d\n", s.Name(), run, c.Runs)
			r, err := runOne(ctx, &c, s, run, dir)
			if err != nil {
				return out, fmt.Errorf("%s run %d: %w", s.Name(), run, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// workDir returns dir, or a new temporary directory (named pattern…) that
// cleanup removes.
func workDir(dir, pattern string) (string, func(), error) {
	if dir != "" {
		return dir, func() {}, nil
	}
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", nil, fmt.Errorf("bench: %w", err)
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// runner is one run's processes and connections.
type runner struct {
	c        *Config
	s        Scenario
	dir      string
	client   *http.Client
	procs    []*proc
	nats     *proc
	backends *proc
	prober   *proc
	metrics  string // prober /metrics URL
	debug    string // prober /debug/pprof/ URL
}

func runOne(ctx context.Context, c *Config, s Scenario, run int, base string) (Result, error) {
	r := &runner{c: c, s: s, dir: filepath.Join(base, fmt.Sprintf("%s-%d-%d", s.Method, s.Targets, run)),
		client: &http.Client{Transport: &http.Transport{}}}
	defer r.client.CloseIdleConnections()
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("bench: %w", err)
	}
	defer r.stopAll()
	res := Result{Scenario: s.Name(), Method: s.Method, Targets: s.Targets, Interval: s.Interval.String(), Run: run,
		LoadBefore: loadAvg(), Profiled: c.ProfileDir != "", Netns: c.Netns}

	url, err := r.startNATS(ctx)
	if err != nil {
		return res, err
	}
	nc, err := nats.Connect(url, nats.Name("hm-bench"))
	if err != nil {
		return res, fmt.Errorf("bench: nats %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	layout, err := bus.Ensure(ectx, js, subject.Space{}, bus.Settings{})
	cancel()
	if err != nil {
		return res, err
	}
	if err := r.startBackends(ctx); err != nil {
		return res, err
	}
	if err := r.startProber(ctx, url); err != nil {
		return res, err
	}

	// Memory baseline: the prober and the server with no target.
	fmt.Fprintf(c.Progress, "   prober up; settling %v for the 0-target baseline\n", c.Settle)
	if err := idle(ctx, c.Settle); err != nil {
		return res, err
	}
	proberBase, err := sampleProc(r.prober.pid())
	if err != nil {
		return res, err
	}
	natsBase, err := sampleProc(r.nats.pid())
	if err != nil {
		return res, err
	}

	targets, err := s.targets(1)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(c.Progress, "   writing %d targets to %s\n", len(targets), layout.Targets.Bucket())
	if err := putTargets(ctx, layout.Targets, targets); err != nil {
		return res, err
	}
	if err := waitFor(ctx, 2*time.Minute, fmt.Sprintf("the prober to own %d targets", s.Targets), func() (bool, error) {
		if err := r.prober.exited(); err != nil {
			return false, err
		}
		sc, err := scrape(ctx, r.client, r.metrics)
		if err != nil {
			return false, err
		}
		return int(sc.Sum(metricOwned)) == s.Targets, nil
	}); err != nil {
		return res, err
	}
	fmt.Fprintf(c.Progress, "   all owned; warming up %v\n", c.Warmup)
	if err := idle(ctx, c.Warmup); err != nil {
		return res, err
	}

	fmt.Fprintf(c.Progress, "   measuring %v\n", c.Duration)
	w, err := r.measure(ctx)
	if err != nil {
		return res, err
	}
	res.LoadAfter = loadAvg()
	if err := r.checkAlive(); err != nil {
		return res, err
	}
	if err := w.fill(&res, s, proberBase, natsBase); err != nil {
		return res, err
	}
	return res, nil
}

// startNATS starts nats-server with JetStream on a random loopback port and
// returns its client URL.
func (r *runner) startNATS(ctx context.Context) (string, error) {
	p, url, err := startNATSServer(ctx, r.dir, r.c.Bin)
	if p != nil {
		r.procs, r.nats = append(r.procs, p), p
	}
	return url, err
}

// startNATSServer starts nats-server with JetStream (store in dir) on a
// random loopback port and returns it with its client URL. The caller stops
// the process (returned even on error).
func startNATSServer(ctx context.Context, dir, bin string) (*proc, string, error) {
	p, err := startProc("nats-server", dir, filepath.Join(bin, binNATS), nil,
		"-js", "-sd", filepath.Join(dir, "jetstream"), "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir)
	if err != nil {
		return nil, "", err
	}
	var url string
	err = waitFor(ctx, 30*time.Second, "nats-server's ports file", func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		var err error
		url, err = natsPorts(dir, p.pid())
		return url != "", err
	})
	return p, url, err
}

// startBackends starts demo-backends serving the scenario's endpoints (none
// for ping) and waits for its ready line.
func (r *runner) startBackends(ctx context.Context) error {
	if r.s.Method == MethodPing {
		return nil
	}
	p, _, err := startFarm(ctx, r.dir, r.c.Bin, "demo-backends", r.s, r.s.endpoints(), "")
	if p != nil {
		r.procs, r.backends = append(r.procs, p), p
	}
	return err
}

// startFarm starts demo-backends, as name, serving eps (endpoints of s),
// with its control API on control ("" = none), waits for its ready line and
// returns the control API's bound address. The caller stops the process
// (returned even on error).
func startFarm(ctx context.Context, dir, bin, name string, s Scenario, eps []netip.AddrPort, control string) (*proc, string, error) {
	args := append(s.backendArgsFor(eps), "-control", control, "-log-format", "json", "-log-level", "warn")
	p, err := startProc(name, dir, filepath.Join(bin, binBackends), nil, args...)
	if err != nil {
		return nil, "", err
	}
	var bound string
	return p, bound, waitFor(ctx, 3*time.Minute, "demo-backends to listen", func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		f, err := os.Open(p.stdout)
		if err != nil {
			return false, err
		}
		defer f.Close()
		rd, err := demo.ReadReady(f)
		if err != nil {
			return false, nil // not written yet
		}
		if rd.Backends != len(eps) {
			return false, fmt.Errorf("%s serves %d backends, want %d", name, rd.Backends, len(eps))
		}
		bound = rd.Control
		return true, nil
	})
}

// startProber starts hm-prober with its metrics on a random loopback port
// and waits until /metrics answers.
func (r *runner) startProber(ctx context.Context, url string) error {
	args := []string{"-nats-url", url, "-id", "hm-bench-prober", "-node", "hm-bench",
		"-metric-server-addr", "127.0.0.1:0", "-log-format", "json", "-log-level", "info"}
	if r.c.ProfileDir != "" {
		args = append(args, "-pprof")
	}
	if r.c.Concurrency > 0 {
		args = append(args, "-concurrency", strconv.Itoa(r.c.Concurrency))
	}
	p, err := startProc("hm-prober", r.dir, filepath.Join(r.c.Bin, binProber), r.c.ProberEnv, args...)
	if err != nil {
		return err
	}
	r.procs, r.prober = append(r.procs, p), p
	var addr string
	if err := waitFor(ctx, 30*time.Second, "hm-prober's http address", func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		var err error
		addr, err = logValue(p.stderr, "http listening", "addr")
		return addr != "", err
	}); err != nil {
		return err
	}
	r.metrics = "http://" + addr + "/metrics"
	r.debug = "http://" + addr + "/debug/pprof/"
	return waitFor(ctx, 30*time.Second, "hm-prober's /metrics", func() (bool, error) {
		if err := p.exited(); err != nil {
			return false, err
		}
		_, err := scrape(ctx, r.client, r.metrics)
		return err == nil, nil
	})
}

func (r *runner) checkAlive() error {
	for _, p := range r.procs {
		if err := p.exited(); err != nil {
			return err
		}
	}
	return nil
}

// stopAll stops the processes, the last started first.
func (r *runner) stopAll() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].stop(10 * time.Second)
	}
}

// putTargets writes the targets with a few concurrent puts.
func putTargets(ctx context.Context, kv jetstream.KeyValue, targets map[string]*event.Target) error {
	keys := make(chan string)
	errc := make(chan error, 1) // the first error; later ones are dropped
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				data, err := event.Marshal(targets[k])
				if err == nil {
					_, err = kv.Put(ctx, k, data)
				}
				if err != nil {
					select {
					case errc <- fmt.Errorf("bench: put target %s: %w", k, err):
					default:
					}
				}
			}
		}()
	}
	for k := range maps.Keys(targets) {
		keys <- k
	}
	close(keys)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// window is what measure read at both ends of the window.
type window struct {
	took                 time.Duration
	m0, m1               Scrape
	prober0, prober1     ProcSample
	nats0, nats1         ProcSample
	backends0, backends1 ProcSample
	maxFDs               int // the prober's, sampled every second
	box0, box1           boxCPU
}

// measure reads everything at the start of the window, samples descriptors
// every second, profiles the prober if asked, and reads everything again at
// the end.
func (r *runner) measure(ctx context.Context) (*window, error) {
	w := &window{}
	read := func(m *Scrape, pr, na, ba *ProcSample) error {
		var err error
		if *pr, err = sampleProc(r.prober.pid()); err != nil {
			return err
		}
		if *na, err = sampleProc(r.nats.pid()); err != nil {
			return err
		}
		if r.backends != nil {
			if *ba, err = sampleProc(r.backends.pid()); err != nil {
				return err
			}
		}
		*m, err = scrape(ctx, r.client, r.metrics)
		return err
	}
	start := time.Now()
	w.box0 = sampleBox()
	if err := read(&w.m0, &w.prober0, &w.nats0, &w.backends0); err != nil {
		return nil, err
	}
	var (
		wg      sync.WaitGroup
		profErr error // written by the profiling goroutine; read after wg.Wait
	)
	if r.c.ProfileDir != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			secs := int(r.c.Duration.Seconds())
			profErr = r.fetch(ctx, fmt.Sprintf("profile?seconds=%d", secs), r.profilePath("cpu"))
		}()
	}
	deadline := time.NewTimer(r.c.Duration)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil, fmt.Errorf("bench: %w", ctx.Err())
		case <-deadline.C:
			done = true
		case <-tick.C:
			if err := r.checkAlive(); err != nil {
				wg.Wait()
				return nil, err
			}
			if s, err := sampleProc(r.prober.pid()); err == nil {
				w.maxFDs = max(w.maxFDs, s.FDs)
			}
		}
	}
	if err := read(&w.m1, &w.prober1, &w.nats1, &w.backends1); err != nil {
		wg.Wait()
		return nil, err
	}
	w.took, w.box1 = time.Since(start), sampleBox()
	w.maxFDs = max(w.maxFDs, w.prober0.FDs, w.prober1.FDs)
	wg.Wait()
	if profErr != nil {
		return nil, profErr
	}
	if r.c.ProfileDir != "" {
		if err := r.fetch(ctx, "heap", r.profilePath("heap")); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (r *runner) profilePath(kind string) string {
	return filepath.Join(r.c.ProfileDir, fmt.Sprintf("%s-%d-%s.pprof", r.s.Method, r.s.Targets, kind))
}

// fetch saves a /debug/pprof/ document of the prober.
func (r *runner) fetch(ctx context.Context, what, path string) error {
	return fetchPprof(ctx, r.client, r.debug, what, r.c.Duration+30*time.Second, path)
}

// fetchPprof saves the /debug/pprof/ document what (under debugURL) to path.
func fetchPprof(ctx context.Context, client *http.Client, debugURL, what string, timeout time.Duration, path string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, debugURL+what, nil)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("bench: profile %s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: profile %s: status %d", what, resp.StatusCode)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: profile: %w", err)
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bench: profile %s: %w", path, err)
	}
	return nil
}

// fill computes the result from the window's two readings.
func (w *window) fill(res *Result, s Scenario, proberBase, natsBase ProcSample) error {
	res.Window, res.StealPct = w.took.Seconds(), stealPct(w.box0, w.box1)
	res.Expected = float64(s.Targets) * w.took.Seconds() / s.Interval.Seconds()
	delta := func(name string) uint64 {
		d := w.m1.Sum(name) - w.m0.Sum(name)
		return uint64(math.Round(math.Max(d, 0)))
	}
	res.Done, res.Acked = delta(metricProbes), delta(metricAcked)
	res.Dropped, res.Failed, res.Overruns = delta(metricDropped), delta(metricFailed), delta(metricOverruns)
	res.Reasons = map[string]uint64{}
	before := w.m0.ByLabel(metricProbes, "reason")
	var ok uint64
	for reason, n := range w.m1.ByLabel(metricProbes, "reason") {
		d := uint64(math.Round(n - before[reason]))
		if d == 0 {
			continue
		}
		res.Reasons[reason] = d
		if strings.HasSuffix(reason, "OK") {
			ok += d
		}
	}
	if res.Done > 0 {
		res.UpPct = 100 * float64(ok) / float64(res.Done)
	}

	h0, ok0 := w.m0.Histogram(metricLateness)
	h1, ok1 := w.m1.Histogram(metricLateness)
	if !ok0 || !ok1 {
		return fmt.Errorf("bench: the prober exports no %s histogram", metricLateness)
	}
	h, err := h1.Sub(h0)
	if err != nil {
		return err
	}
	res.Started = h.Count
	onTime, found := h.AtMost(OnTime.Seconds())
	if !found {
		return fmt.Errorf("bench: %s has no %v bucket", metricLateness, OnTime)
	}
	if denom := math.Max(res.Expected, float64(h.Count)); denom > 0 {
		res.OnTimePct = 100 * float64(onTime) / denom
	}
	res.P50ms = 1000 * h.Quantile(0.50)
	res.P99ms = 1000 * h.Quantile(0.99)

	res.Prober = report(w.prober0, w.prober1, proberBase, s.Targets, res.Done)
	res.Prober.MaxFDs = w.maxFDs
	res.NATS = report(w.nats0, w.nats1, natsBase, s.Targets, res.Done)
	if w.backends1.RSS > 0 {
		res.Backends = report(w.backends0, w.backends1, ProcSample{}, 0, res.Done)
	}
	return nil
}

func report(s0, s1, base ProcSample, targets int, done uint64) ProcReport {
	p := ProcReport{CPUSeconds: (s1.CPU - s0.CPU).Seconds(), RSSBase: base.RSS, RSSEnd: s1.RSS, HWM: s1.HWM, MaxFDs: s1.FDs}
	if done > 0 {
		p.CPUPer1000 = p.CPUSeconds / (float64(done) / 1000)
		p.SysPer1000 = (s1.Sys - s0.Sys).Seconds() / (float64(done) / 1000)
	}
	if targets > 0 {
		p.PerTargetKiB = float64(s1.RSS-base.RSS) / float64(targets) / 1024
	}
	return p
}

// idle waits d unless ctx ends first: a deliberate pause (settling, warm
// up), not a wait for a condition.
func idle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("bench: %w", ctx.Err())
	case <-t.C:
		return nil
	}
}

// loadAvg reads the 1, 5 and 15 minute load averages (zeros if unreadable:
// they annotate the numbers, they are not measured).
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
