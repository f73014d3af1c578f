package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// The pipeline benchmark runs the whole of healthmesh — the all-in-one
// binary, or nats-server with the role binaries — against dpvs-agent-emu and
// N loopback backends, and measures what an operator cares about: probes
// done against scheduled, CPU and memory per role, how long a failed
// backend takes to be drained in DPVS compared with the soonest the check
// configuration allows, and how long a killed prober's targets stay
// uncovered.

// Role layouts.
const (
	RolesAllInOne = "all-in-one" // healthmesh: embedded NATS + every role in one process
	RolesSplit    = "split"      // nats-server, hm-aggregator, hm-actioner and Probers × hm-prober
)

// More binaries, looked up in the bin directory.
const (
	binHealthmesh = "healthmesh"
	binAggregator = "hm-aggregator"
	binActioner   = "hm-actioner"
	binAgent      = "dpvs-agent-emu"
)

// backendsPerVS is how many backends each emulated virtual server has.
const backendsPerVS = 100

// MaxPipelineTargets bounds a pipeline scenario; demo-backends raises its own
// descriptor limit (as root) for that many listeners.
const MaxPipelineTargets = 100000

// Objectives of the whole pipeline (issue "all-in-one … hm-bench").
const (
	GoalPipelineCPUPer1000 = 0.044 // CPU-s per 1,000 probes, every role and NATS, 10k TCP at 1 s
	GoalPipelineKiB        = 7.8   // resident KiB per backend, the same
	GoalDetectP99OverMs    = 100   // detection p99 at most this much over the floor
	GoalDetectMaxOverMs    = 1000  // every failure applied within the floor + 1 s
)

// PipelineConfig says what the pipeline benchmark runs.
type PipelineConfig struct {
	Bin          string        // directory of the binaries
	Scenarios    []Scenario    // tcp or http; run in order
	Roles        []string      // RolesAllInOne and/or RolesSplit; every scenario runs in each
	Results      string        // the configuration's bus.results: "jetstream" (default) or "core"
	Runs         int           // runs of each, with fresh processes (default 1)
	Probers      int           // split: hm-prober processes (default 2)
	FailPct      float64       // percent of backends failed to measure detection (default 1)
	DownRetry    int           // the configuration's down-retry (default 1, DPVS's)
	ListInterval time.Duration // -dpvs-service-list-interval (default 5s)
	Settle       time.Duration // idle before the 0-backend memory baseline (default 3s)
	Warmup       time.Duration // after every backend is judged up and taken in, before measuring (default 10s)
	Duration     time.Duration // the measured window (default 30s)
	Dir          string        // run directories go here; "" = a temp dir removed at the end
	ProfileDir   string        // "" = none; else CPU and heap profiles of the probing process(es)
	// HealthmeshArgs are extra flags of the all-in-one (-gogc auto).
	HealthmeshArgs []string
	Progress       io.Writer // progress lines; nil = none
	Netns          bool      // informational: the run has a network namespace of its own
}

func (c *PipelineConfig) defaults() error {
	phaseDefaults(&c.Runs, &c.Settle, &c.Warmup, &c.Duration, &c.Progress)
	if c.Probers <= 0 {
		c.Probers = 2
	}
	if c.FailPct <= 0 {
		c.FailPct = 1
	}
	if c.DownRetry <= 0 {
		c.DownRetry = 1
	}
	if c.ListInterval <= 0 {
		c.ListInterval = 5 * time.Second
	}
	if len(c.Roles) == 0 {
		c.Roles = []string{RolesAllInOne}
	}
	switch c.Results {
	case "":
		c.Results = "jetstream"
	case "jetstream", "core":
	default:
		return fmt.Errorf("bench: results %q: want jetstream or core", c.Results)
	}
	if len(c.Scenarios) == 0 {
		return fmt.Errorf("bench: %w: none given", ErrScenario)
	}
	bin, err := filepath.Abs(c.Bin) // processes run in their own directories
	if err != nil {
		return fmt.Errorf("bench: -bin: %w", err)
	}
	c.Bin = bin
	need := []string{binBackends, binAgent}
	for _, r := range c.Roles {
		switch r {
		case RolesAllInOne:
			need = append(need, binHealthmesh)
		case RolesSplit:
			need = append(need, binNATS, binAggregator, binActioner, binProber)
		default:
			return fmt.Errorf("bench: roles %q: want %s or %s", r, RolesAllInOne, RolesSplit)
		}
	}
	for _, s := range c.Scenarios {
		if s.Method == MethodPing {
			return fmt.Errorf("bench: %w: %s: the pipeline benchmark fails backends by closing them; use tcp or http", ErrScenario, s.Name())
		}
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return fmt.Errorf("bench: %w (build it: make build, and for nats-server see make bench)", err)
		}
	}
	return nil
}

// PipelineResult is one measured run of the pipeline.
type PipelineResult struct {
	Scenario   string     `json:"scenario"`
	Roles      string     `json:"roles"`
	Results    string     `json:"results"` // bus.results: jetstream or core
	Method     string     `json:"method"`
	Targets    int        `json:"targets"`
	Interval   string     `json:"interval"`
	DownRetry  int        `json:"down_retry"`
	Run        int        `json:"run"`
	Window     float64    `json:"window_s"`
	LoadBefore [3]float64 `json:"load_before"`
	LoadAfter  [3]float64 `json:"load_after"`
	StealPct   float64    `json:"steal_pct"` // of the box's CPU time during the measured window (see stealPct)
	Netns      bool       `json:"netns"`
	Profiled   bool       `json:"profiled"`
	StartupS   float64    `json:"startup_s"` // from seeding the emulator to every backend judged up and taken in

	Scheduled float64 `json:"probes_per_s_scheduled"` // targets / interval
	Achieved  float64 `json:"probes_per_s_achieved"`  // probes done / window
	Done      uint64  `json:"probes_done"`
	UpPct     float64 `json:"up_pct"`
	OnTimePct float64 `json:"on_time_pct"`
	P99LateMs float64 `json:"lateness_p99_ms"`

	// Roles: "healthmesh" (all-in-one), or "nats", "aggregator", "actioner"
	// and "prober" (every hm-prober added up). Total is all of them: the
	// pipeline. The emulator and the backends are the load, reported apart.
	PerRole  map[string]ProcReport `json:"per_role"`
	Total    ProcReport            `json:"pipeline"`
	Agent    ProcReport            `json:"dpvs_agent_emu"`
	Backends ProcReport            `json:"backends"`

	Detection Detection `json:"detection"`
	Reshard   *Reshard  `json:"reshard,omitempty"` // split with 2+ probers
}

// Detection is the failure of FailPct of the backends, measured from the
// moment the benchmark closed them to the first dpvs-agent call setting each
// one to weight 0 + inhibited. Floor is, per backend, when the result that
// completed its down-retry+1 failures ended: nothing could have known
// sooner. ConfigFloorMs is the floor's worst case from the configuration,
// interval × (down-retry + 1).
type Detection struct {
	Failed        int      `json:"failed"`
	Applied       int      `json:"applied"`
	ConfigFloorMs float64  `json:"config_floor_max_ms"`
	Latency       Dist     `json:"latency_ms"`
	Floor         Dist     `json:"floor_ms"`
	Over          Dist     `json:"over_floor_ms"` // latency − floor, per backend
	NoFloor       int      `json:"no_floor"`      // applied, but their failing results were not all seen
	Spurious      int      `json:"spurious"`      // weight-0 updates of backends that did not fail
	Missing       []string `json:"missing,omitempty"`
	// Slowest are the failures applied longest after their floor, with
	// both moments, to line up with a kept run's logs and HM_EVENTS.
	Slowest []SlowFailure `json:"slowest,omitempty"`
}

// SlowFailure is one failure's floor and the moment it was applied.
type SlowFailure struct {
	Backend string    `json:"backend"`
	Floor   time.Time `json:"floor"`
	Applied time.Time `json:"applied"`
	OverMs  float64   `json:"over_ms"`
}

// Dist is a distribution in milliseconds.
type Dist struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// Reshard is a prober killed with SIGKILL mid-run.
type Reshard struct {
	Orphaned    int     `json:"orphaned"`  // targets the killed prober owned
	CoveredS    float64 `json:"covered_s"` // until the survivors own every target
	MemberTTLS  float64 `json:"member_ttl_s"`
	Transitions int     `json:"backend_transitions"` // backend transitions from the kill to 3 intervals after covered
}

// RunPipeline runs every scenario in every role layout c.Runs times. On
// error it returns the results measured so far with it. It stops every
// process it started before returning.
func RunPipeline(ctx context.Context, c PipelineConfig) ([]PipelineResult, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	dir, cleanup, err := workDir(c.Dir, "hm-bench-pipeline-")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var out []PipelineResult
	for _, s := range c.Scenarios {
		for _, roles := range c.Roles {
			for run := 1; run <= c.Runs; run++ {
				fmt.Fprintf(c.Progress, "== %s %s run %d/%d\n", s.Name(), roles, run, c.Runs)
				r, err := runPipeline(ctx, &c, s, roles, run, dir)
				if err != nil {
					return out, fmt.Errorf("%s %s run %d: %w", s.Name(), roles, run, err)
				}
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// pipe is one pipeline run's processes and addresses.
type pipe struct {
	c         *PipelineConfig
	s         Scenario
	roles     string
	dir       string
	client    *http.Client
	procs     []*proc
	agent     *proc
	farms     []farm
	natsURL   string
	agentAd   string        // emulator address
	memberTTL time.Duration // of hm_members

	roleProcs map[string][]*proc // role → its processes (prober: several)
	probers   []*endpoint        // where prober metrics are read
	agg       *endpoint          // where aggregator metrics are read
	act       *endpoint          // where actioner metrics are read
}

// endpoint is a process with a metrics page.
type endpoint struct {
	p     *proc
	url   string // /metrics
	debug string // /debug/pprof/
}

func runPipeline(ctx context.Context, c *PipelineConfig, s Scenario, roles string, run int, base string) (PipelineResult, error) {
	p := &pipe{c: c, s: s, roles: roles, roleProcs: map[string][]*proc{},
		dir:    filepath.Join(base, fmt.Sprintf("%s-%d-%s-%s-%d", s.Method, s.Targets, s.Interval, roles, run)),
		client: &http.Client{Transport: &http.Transport{}, Timeout: time.Minute}}
	defer p.client.CloseIdleConnections()
	res := PipelineResult{Scenario: s.Name(), Roles: roles, Results: c.Results, Method: s.Method, Targets: s.Targets,
		Interval: s.Interval.String(), DownRetry: c.DownRetry, Run: run, LoadBefore: loadAvg(), Netns: c.Netns,
		Profiled: c.ProfileDir != "", Scheduled: float64(s.Targets) / s.Interval.Seconds()}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer p.stopAll()

	if err := p.startAgent(ctx); err != nil {
		return res, err
	}
	if err := p.startFarms(ctx); err != nil {
		return res, err
	}
	conf := filepath.Join(p.dir, "healthmesh.conf")
	if err := os.WriteFile(conf, []byte(p.config()), 0o644); err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	var err error
	if roles == RolesAllInOne {
		err = p.startAllInOne(ctx, conf)
	} else {
		err = p.startSplit(ctx, conf)
	}
	if err != nil {
		return res, err
	}
	nc, err := nats.Connect(p.natsURL, nats.Name("hm-bench"))
	if err != nil {
		return res, fmt.Errorf("bench: nats %s: %w", p.natsURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}

	members, err := js.KeyValue(ctx, subject.Space{}.BucketMembers())
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	mst, err := members.Status(ctx)
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	p.memberTTL = mst.TTL()

	fmt.Fprintf(c.Progress, "   pipeline up; settling %v for the 0-backend baseline\n", c.Settle)
	if err := idle(ctx, c.Settle); err != nil {
		return res, err
	}
	base0, err := p.sampleRoles()
	if err != nil {
		return res, err
	}

	fmt.Fprintf(c.Progress, "   seeding dpvs-agent-emu with %d backends in %d services\n", s.Targets, (s.Targets+backendsPerVS-1)/backendsPerVS)
	seeded := time.Now()
	if err := p.seed(ctx); err != nil {
		return res, err
	}
	if err := p.waitApplied(ctx); err != nil {
		return res, err
	}
	res.StartupS = time.Since(seeded).Seconds()
	// The failure phase needs the target of each backend. Read now, before
	// the warm-up: listing 10,000 keys loads a block of hm_targets into the
	// server's cache (4 MB) and costs it CPU, which would otherwise fall on
	// the measured window or on the failures' detection.
	tokens, err := p.targetTokens(ctx, js)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(c.Progress, "   every backend judged up and taken in after %.1fs; warming up %v\n", res.StartupS, c.Warmup)
	if err := idle(ctx, c.Warmup); err != nil {
		return res, err
	}

	fmt.Fprintf(c.Progress, "   measuring %v\n", c.Duration)
	if err := p.measure(ctx, &res, base0); err != nil {
		return res, err
	}
	res.LoadAfter = loadAvg()

	fmt.Fprintf(c.Progress, "   failing %.3g%% of the backends\n", c.FailPct)
	if res.Detection, err = p.detect(ctx, nc, tokens); err != nil {
		return res, err
	}
	if roles == RolesSplit && len(p.probers) > 1 {
		fmt.Fprintf(c.Progress, "   killing a prober\n")
		rs, err := p.reshard(ctx)
		if err != nil {
			return res, err
		}
		res.Reshard = rs
	}
	return res, p.checkAlive()
}

// config is the healthmesh configuration of the run: DPVS defaults but the
// interval and timeout of the scenario, services from the emulator.
func (p *pipe) config() string {
	method := p.s.Method
	params := ""
	if method == MethodHTTP {
		params = "\n    method-params: {uri: /, response-codes: \"200-299\"}"
	}
	return fmt.Sprintf(`# hm-bench pipeline run: %s
global:
  virtual-address:
    actioner: DpvsAddrAddDel
    action-params: {dpvs-ifname: dpdk0}
  virtual-server:
    method: %s%s
    interval: %v
    timeout: %v
    down-retry: %d
    up-retry: 1
    actioner: BackendUpdate
dpvs-agent:
  addr: %s
bus:
  results: %s
`, p.s.Name(), method, params, p.s.Interval, p.s.Timeout, p.c.DownRetry, p.agentAd, p.c.Results)
}

// startAgent starts dpvs-agent-emu, empty, on a random port.
func (p *pipe) startAgent(ctx context.Context) error {
	a, err := startProc("dpvs-agent-emu", p.dir, filepath.Join(p.c.Bin, binAgent), nil, "-listen", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.procs, p.agent = append(p.procs, a), a
	return waitFor(ctx, 30*time.Second, "dpvs-agent-emu's address", func() (bool, error) {
		if err := a.exited(); err != nil {
			return false, err
		}
		var err error
		p.agentAd, err = logValue(a.stderr, "serving", "addr")
		return p.agentAd != "", err
	})
}

// farmSize is the most backends one demo-backends process serves: each
// listener is a descriptor and the hard limit here is 20,000 (raising it
// needs CAP_SYS_RESOURCE).
const farmSize = 15000

// farm is one demo-backends process and the run of endpoints it serves.
type farm struct {
	p       *proc
	control string
	first   int // index of its first endpoint
	eps     []netip.AddrPort
}

// startFarms starts demo-backends processes serving every backend, each
// with its control API.
func (p *pipe) startFarms(ctx context.Context) error {
	eps := p.s.endpoints()
	for first := 0; first < len(eps); first += farmSize {
		run := eps[first:min(first+farmSize, len(eps))]
		name := fmt.Sprintf("demo-backends-%d", len(p.farms)+1)
		f, control, err := startFarm(ctx, p.dir, p.c.Bin, name, p.s, run, "127.0.0.1:0")
		if f != nil {
			p.procs = append(p.procs, f)
			p.farms = append(p.farms, farm{p: f, control: control, first: first, eps: run})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// farmOf is the farm serving the i-th endpoint.
func (p *pipe) farmOf(i int) *farm { return &p.farms[i/farmSize] }

// logArgs are the logging flags of every healthmesh process.
var logArgs = []string{"-log-format", "json", "-log-level", "info"}

func (p *pipe) startAllInOne(ctx context.Context, conf string) error {
	args := append([]string{"-config-file", conf, "-dpvs-agent-addr", p.agentAd,
		"-dpvs-service-list-interval", p.c.ListInterval.String(), "-data-dir", filepath.Join(p.dir, "data"),
		"-nats-addr", "127.0.0.1:0", "-metric-server-addr", "127.0.0.1:0", "-node", "hm-bench"}, logArgs...)
	if p.c.ProfileDir != "" {
		args = append(args, "-pprof")
	}
	args = append(args, p.c.HealthmeshArgs...)
	hm, err := startProc("healthmesh", p.dir, filepath.Join(p.c.Bin, binHealthmesh), nil, args...)
	if err != nil {
		return err
	}
	p.procs = append(p.procs, hm)
	p.roleProcs["healthmesh"] = []*proc{hm}
	var addr string
	if err := waitFor(ctx, time.Minute, "healthmesh to be ready", func() (bool, error) {
		if err := hm.exited(); err != nil {
			return false, err
		}
		var err error
		if p.natsURL, err = logValue(hm.stderr, "healthmesh ready", "nats_url"); err != nil || p.natsURL == "" {
			return false, err
		}
		addr, err = logValue(hm.stderr, "healthmesh ready", "http_addr")
		return addr != "", err
	}); err != nil {
		return err
	}
	e := &endpoint{p: hm, url: "http://" + addr + "/metrics", debug: "http://" + addr + "/debug/pprof/"}
	p.probers, p.agg, p.act = []*endpoint{e}, e, e
	return nil
}

func (p *pipe) startSplit(ctx context.Context, conf string) error {
	n, url, err := startNATSServer(ctx, p.dir, p.c.Bin)
	if n != nil {
		p.procs = append(p.procs, n)
		p.roleProcs["nats"] = []*proc{n}
	}
	if err != nil {
		return err
	}
	p.natsURL = url
	// The aggregator creates the streams and buckets; the others wait for them.
	agg, err := p.startRole(ctx, "aggregator", binAggregator, "http listening",
		"-nats-url", p.natsURL, "-id", "hm-bench-aggregator", "-config-file", conf, "-dpvs-agent-addr", p.agentAd,
		"-dpvs-service-list-interval", p.c.ListInterval.String(), "-metric-server-addr", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.agg = agg
	if p.act, err = p.startRole(ctx, "actioner", binActioner, "actioner ready",
		"-nats-url", p.natsURL, "-node", "hm-bench", "-dpvs-agent-addr", p.agentAd, "-metric-server-addr", "127.0.0.1:0"); err != nil {
		return err
	}
	for i := range p.c.Probers {
		args := []string{"-nats-url", p.natsURL, "-id", fmt.Sprintf("hm-bench-prober-%d", i+1),
			"-node", fmt.Sprintf("hm-bench-%d", i+1), "-metric-server-addr", "127.0.0.1:0"}
		if p.c.ProfileDir != "" {
			args = append(args, "-pprof")
		}
		e, err := p.startRole(ctx, "prober", binProber, "http listening", args...)
		if err != nil {
			return err
		}
		p.probers = append(p.probers, e)
	}
	return nil
}

// startRole starts a role binary and waits for its log line ready, which
// carries its HTTP address (field addr or http_addr).
func (p *pipe) startRole(ctx context.Context, role, bin, ready string, args ...string) (*endpoint, error) {
	name := fmt.Sprintf("%s-%d", bin, len(p.roleProcs[role])+1)
	pr, err := startProc(name, p.dir, filepath.Join(p.c.Bin, bin), nil, append(args, logArgs...)...)
	if err != nil {
		return nil, err
	}
	p.procs = append(p.procs, pr)
	p.roleProcs[role] = append(p.roleProcs[role], pr)
	var addr string
	if err := waitFor(ctx, time.Minute, name+" to be ready", func() (bool, error) {
		if err := pr.exited(); err != nil {
			return false, err
		}
		var err error
		if addr, err = logValue(pr.stderr, ready, "addr"); addr != "" || err != nil {
			return addr != "", err
		}
		addr, err = logValue(pr.stderr, ready, "http_addr")
		return addr != "", err
	}); err != nil {
		return nil, err
	}
	return &endpoint{p: pr, url: "http://" + addr + "/metrics", debug: "http://" + addr + "/debug/pprof/"}, nil
}

func (p *pipe) checkAlive() error {
	for _, pr := range p.procs {
		if pr.killed {
			continue
		}
		if err := pr.exited(); err != nil {
			return err
		}
	}
	return nil
}

func (p *pipe) stopAll() {
	for i := len(p.procs) - 1; i >= 0; i-- {
		p.procs[i].stop(15 * time.Second)
	}
}

// vsOf is the emulated virtual server of the i-th backend: 100 backends per
// service, services on 198.18.x.y:80 (a benchmarking range; never probed:
// only backends are).
func vsOf(i int) subject.VSID {
	v := i / backendsPerVS
	a := [4]byte{198, 18, byte(v / 250), byte(1 + v%250)}
	return subject.VSID{Addr: netip.AddrFrom4(a), Proto: subject.TCP, Port: 80}
}

// seed gives the emulator every backend, grouped into services.
func (p *pipe) seed(ctx context.Context) error {
	var seed agenttest.Seed
	byVIP := map[string]int{}
	for i, ep := range p.s.endpoints() {
		vs := vsOf(i)
		vip := vs.Addr.String()
		vi, ok := byVIP[vip]
		if !ok {
			vi = len(seed.VIPs)
			byVIP[vip] = vi
			seed.VIPs = append(seed.VIPs, agenttest.SeedVIP{Addr: vip, Services: []agenttest.SeedService{{Port: vs.Port, Proto: "tcp"}}})
		}
		svc := &seed.VIPs[vi].Services[0]
		svc.Backends = append(svc.Backends, agenttest.SeedBackend{IP: ep.Addr().String(), Port: ep.Port()})
	}
	seed.Devices = map[string][]string{"dpdk0": {}}
	body, err := json.Marshal(seed)
	if err != nil {
		return fmt.Errorf("bench: seed: %w", err)
	}
	return p.post(ctx, "http://"+p.agentAd+"/_emu/seed", string(body), http.StatusOK, http.StatusNoContent)
}

// waitApplied waits until the probers own every target, the aggregator
// has judged every backend up, the actioner has taken in every backend
// transition, and DPVS serves every backend with its weight. (The
// emulator is seeded serving, so the first "up"s are Listed: no call.)
func (p *pipe) waitApplied(ctx context.Context) error {
	timeout := 2*time.Minute + time.Duration(p.s.Targets/1000)*5*time.Second
	return waitEvery(ctx, time.Second, timeout, fmt.Sprintf("all %d backends judged up, taken in and owned", p.s.Targets), func() (bool, error) {
		if err := p.checkAlive(); err != nil {
			return false, err
		}
		owned, err := p.owned(ctx)
		if err != nil || owned != p.s.Targets {
			return false, err
		}
		agg, err := scrape(ctx, p.client, p.agg.url)
		if err != nil {
			return false, err
		}
		act, err := scrape(ctx, p.client, p.act.url)
		if err != nil {
			return false, err
		}
		ups := agg.SumWhere(metricTransitions, map[string]string{"kind": "backend", "to": "up"})
		all := agg.SumWhere(metricTransitions, map[string]string{"kind": "backend"})
		if int(ups) < p.s.Targets || act.SumWhere(metricActEvents, map[string]string{"kind": "backend"}) < all {
			return false, nil
		}
		st, err := p.agentState(ctx)
		if err != nil {
			return false, err
		}
		up := 0
		for _, svc := range st.Services {
			for _, b := range svc.Backends {
				if !b.Inhibited && b.Weight == b.UserWeight {
					up++
				}
			}
		}
		return up == p.s.Targets, nil
	})
}

// owned is the number of targets the live probers own, added up.
func (p *pipe) owned(ctx context.Context) (int, error) {
	n := 0.0
	for _, e := range p.probers {
		if e.p.killed {
			continue
		}
		sc, err := scrape(ctx, p.client, e.url)
		if err != nil {
			return 0, err
		}
		n += sc.Sum(metricOwned)
	}
	return int(n), nil
}

func (p *pipe) agentState(ctx context.Context) (agenttest.State, error) {
	var st agenttest.State
	body, err := p.get(ctx, "http://"+p.agentAd+"/_emu/state")
	if err != nil {
		return st, err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(&st); err != nil {
		return st, fmt.Errorf("bench: emulator state: %w", err)
	}
	return st, nil
}

// targetTokens maps each backend ("ip:port") to its target token, as the
// aggregator wrote it into hm_targets.
func (p *pipe) targetTokens(ctx context.Context, js jetstream.JetStream) (map[string]string, error) {
	kv, err := js.KeyValue(ctx, subject.Space{}.BucketTargets())
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: list targets: %w", err)
	}
	out := make(map[string]string, p.s.Targets)
	for k := range lister.Keys() {
		tid, err := subject.ParseTargetToken(k)
		if err != nil {
			continue // not a target key
		}
		out[tid.Endpoint.Addr.String()+":"+strconv.Itoa(int(tid.Endpoint.Port))] = k
	}
	if len(out) != p.s.Targets {
		return nil, fmt.Errorf("bench: hm_targets has %d targets, want %d", len(out), p.s.Targets)
	}
	return out, nil
}

// sample reads every pipeline process, by role (probers added up), plus
// the emulator and the backends.
type rolesSample struct {
	roles    map[string]ProcSample
	agent    ProcSample
	backends ProcSample
	fds      int
}

func (p *pipe) sampleRoles() (rolesSample, error) {
	s := rolesSample{roles: map[string]ProcSample{}}
	for role, ps := range p.roleProcs {
		var sum ProcSample
		for _, pr := range ps {
			if pr.killed {
				continue
			}
			one, err := sampleProc(pr.pid())
			if err != nil {
				return s, err
			}
			sum.CPU += one.CPU
			sum.Sys += one.Sys
			sum.RSS += one.RSS
			sum.HWM += one.HWM
			sum.FDs += one.FDs
		}
		s.roles[role] = sum
	}
	var err error
	if s.agent, err = sampleProc(p.agent.pid()); err != nil {
		return s, err
	}
	for _, f := range p.farms {
		one, err := sampleProc(f.p.pid())
		if err != nil {
			return s, err
		}
		s.backends = addSample(s.backends, one)
	}
	return s, nil
}

// measure reads the probers' metrics and every process at both ends of the
// window, and fills the throughput and resource numbers of res.
func (p *pipe) measure(ctx context.Context, res *PipelineResult, base rolesSample) error {
	scrapeAll := func() ([]Scrape, error) {
		out := make([]Scrape, len(p.probers))
		for i, e := range p.probers {
			sc, err := scrape(ctx, p.client, e.url)
			if err != nil {
				return nil, err
			}
			out[i] = sc
		}
		return out, nil
	}
	start, box0 := time.Now(), sampleBox()
	s0, err := p.sampleRoles()
	if err != nil {
		return err
	}
	m0, err := scrapeAll()
	if err != nil {
		return err
	}
	profErr := make(chan error, len(p.probers))
	if p.c.ProfileDir != "" {
		for i, e := range p.probers {
			go func() {
				path := filepath.Join(p.c.ProfileDir, fmt.Sprintf("pipeline-%s-%d-%s-%s-%d-cpu.pprof",
					p.s.Method, p.s.Targets, p.s.Interval, p.roles, i+1))
				secs := int(p.c.Duration.Seconds())
				profErr <- fetchPprof(ctx, p.client, e.debug, fmt.Sprintf("profile?seconds=%d", secs), p.c.Duration+30*time.Second, path)
			}()
		}
	}
	if err := idle(ctx, p.c.Duration); err != nil {
		return err
	}
	if err := p.checkAlive(); err != nil {
		return err
	}
	s1, err := p.sampleRoles()
	if err != nil {
		return err
	}
	m1, err := scrapeAll()
	if err != nil {
		return err
	}
	took := time.Since(start)
	res.StealPct = stealPct(box0, sampleBox())
	if p.c.ProfileDir != "" {
		for range p.probers {
			if err := <-profErr; err != nil {
				return err
			}
		}
		// The heap at the end of the window: where the memory per backend goes.
		for i, e := range p.probers {
			path := filepath.Join(p.c.ProfileDir, fmt.Sprintf("pipeline-%s-%d-%s-%s-%d-heap.pprof",
				p.s.Method, p.s.Targets, p.s.Interval, p.roles, i+1))
			if err := fetchPprof(ctx, p.client, e.debug, "heap", time.Minute, path); err != nil {
				return err
			}
			// The text form ends with runtime.MemStats: how the heap's
			// pages are used (in use, idle, released), stacks, metadata.
			if err := fetchPprof(ctx, p.client, e.debug, "heap?debug=1", time.Minute, strings.TrimSuffix(path, ".pprof")+".txt"); err != nil {
				return err
			}
		}
	}

	res.Window = took.Seconds()
	var ok, onTime float64
	var late Histogram
	for i := range p.probers {
		d := m1[i].Sum(metricProbes) - m0[i].Sum(metricProbes)
		res.Done += uint64(math.Round(math.Max(d, 0)))
		before := m0[i].ByLabel(metricProbes, "reason")
		for reason, n := range m1[i].ByLabel(metricProbes, "reason") {
			if strings.HasSuffix(reason, "OK") {
				ok += n - before[reason]
			}
		}
		h0, ok0 := m0[i].Histogram(metricLateness)
		h1, ok1 := m1[i].Histogram(metricLateness)
		if !ok0 || !ok1 {
			return fmt.Errorf("bench: no %s histogram at %s", metricLateness, p.probers[i].url)
		}
		h, err := h1.Sub(h0)
		if err != nil {
			return err
		}
		n, found := h.AtMost(OnTime.Seconds())
		if !found {
			return fmt.Errorf("bench: %s has no %v bucket", metricLateness, OnTime)
		}
		onTime += float64(n)
		if late, err = late.add(h); err != nil {
			return err
		}
	}
	res.Achieved = float64(res.Done) / took.Seconds()
	if res.Done > 0 {
		res.UpPct = 100 * ok / float64(res.Done)
	}
	expected := res.Scheduled * took.Seconds()
	if denom := math.Max(expected, float64(late.Count)); denom > 0 {
		res.OnTimePct = 100 * onTime / denom
	}
	res.P99LateMs = 1000 * late.Quantile(0.99)

	res.PerRole = map[string]ProcReport{}
	var total0, total1, totalBase ProcSample
	for role := range p.roleProcs {
		r := report(s0.roles[role], s1.roles[role], base.roles[role], p.s.Targets, res.Done)
		res.PerRole[role] = r
		total0, total1, totalBase = addSample(total0, s0.roles[role]), addSample(total1, s1.roles[role]), addSample(totalBase, base.roles[role])
	}
	res.Total = report(total0, total1, totalBase, p.s.Targets, res.Done)
	res.Agent = report(s0.agent, s1.agent, base.agent, p.s.Targets, res.Done)
	res.Backends = report(s0.backends, s1.backends, ProcSample{}, 0, res.Done)
	return nil
}

func addSample(a, b ProcSample) ProcSample {
	return ProcSample{CPU: a.CPU + b.CPU, Sys: a.Sys + b.Sys, RSS: a.RSS + b.RSS, HWM: a.HWM + b.HWM, FDs: a.FDs + b.FDs}
}

// add returns h plus d (both deltas of histograms with the same buckets).
func (h Histogram) add(d Histogram) (Histogram, error) {
	if len(h.Buckets) == 0 {
		return d, nil
	}
	if len(h.Buckets) != len(d.Buckets) {
		return h, fmt.Errorf("bench: histograms with %d and %d buckets", len(h.Buckets), len(d.Buckets))
	}
	out := Histogram{Count: h.Count + d.Count, Sum: h.Sum + d.Sum, Buckets: make([]Bucket, len(h.Buckets))}
	for i := range h.Buckets {
		out.Buckets[i] = Bucket{Le: h.Buckets[i].Le, Count: h.Buckets[i].Count + d.Buckets[i].Count}
	}
	return out, nil
}

func (p *pipe) get(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("bench: GET %s: status %d", url, resp.StatusCode)
	}
	return resp.Body, nil
}

func (p *pipe) post(ctx context.Context, url, body string, want ...int) error {
	return p.do(ctx, http.MethodPost, url, body, want...)
}

func (p *pipe) do(ctx context.Context, method, url, body string, want ...int) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("bench: %s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	return fmt.Errorf("bench: %s %s: status %d: %s", method, strings.SplitN(url, "?", 2)[0], resp.StatusCode, msg)
}
