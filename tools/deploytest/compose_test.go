package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// The compose stack's timing (deploy/compose/healthmesh.conf and the bus
// defaults): what the fault scenarios' bounds are made of.
const (
	probeInterval = time.Second
	memberTTL     = 3 * time.Second
	leaseTTL      = 5 * time.Second
)

// project is the compose project of the fault tests: its own containers,
// networks and volumes, apart from a developer's `make up` (project "main"
// or the directory's name).
const project = "hme2e"

// The demo backends of the stack (docker-compose.yml, dpvs-agent.yaml):
// control name, VS and backend id.
type demoBackend struct {
	name, host, vs, id string
}

var demoBackends = []demoBackend{
	{"web-a", "backend-a", "192.0.2.10-TCP-80", "10.29.10.11-TCP-8080"},
	{"web-b", "backend-b", "192.0.2.10-TCP-80", "10.29.10.12-TCP-8080"},
	{"dns-a", "backend-a", "192.0.2.10-UDP-53", "10.29.10.11-UDP-5353"},
	{"dns-b", "backend-b", "192.0.2.10-UDP-53", "10.29.10.12-UDP-5353"},
	{"ssh-a", "backend-a", "192.0.2.20-TCP-22", "10.29.10.11-TCP-2222"},
	{"ssh-b", "backend-b", "192.0.2.20-TCP-22", "10.29.10.12-TCP-2222"},
}

func backendNamed(name string) demoBackend {
	for _, b := range demoBackends {
		if b.name == name {
			return b
		}
	}
	panic("no demo backend " + name)
}

// stack is the running compose project, seen from the host: docker and
// compose commands, the published ports, an admin NATS connection, the
// events stream and the probe results as they arrive.
type stack struct {
	t       *testing.T
	compose []string // the compose command: docker-compose, or docker compose
	root    string
	env     []string
	natsURL string
	admin   *client
	events  *eventLog
	results *resultLog
	ports   map[string]string // published ports by "service/port", shared by the subtests' copies
}

// startStack brings the stack up with one prober, or skips when the compose
// tests are not asked for.
func startStack(t *testing.T) *stack {
	t.Helper()
	if os.Getenv("HM_E2E_COMPOSE") != "1" {
		t.Skip("compose fault tests: set HM_E2E_COMPOSE=1 (make e2e-compose); they need Docker and `make images`")
	}
	s := &stack{t: t, root: root(t), ports: map[string]string{}}
	s.compose = strings.Fields(os.Getenv("HM_E2E_COMPOSE_CMD"))
	if len(s.compose) == 0 {
		s.compose = []string{"docker-compose"}
		if _, err := exec.LookPath("docker-compose"); err != nil {
			s.compose = []string{"docker", "compose"}
		}
	}
	if out, err := s.run(30*time.Second, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Fatalf("docker is not usable: %v\n%s", err, out)
	}
	// The image names compose uses (make passes IMAGE_PREFIX and IMAGE_TAG
	// this way); the rest of the developer's HM_* variables stay out.
	prefix, tag := os.Getenv("HM_IMAGE_PREFIX"), os.Getenv("HM_IMAGE_TAG")
	if prefix == "" {
		prefix = "healthmesh/"
	}
	if tag == "" {
		tag = "dev"
	}
	for _, img := range []string{"nats-server", "hm-aggregator", "hm-prober", "hm-actioner", "dpvs-agent-emu", "demo-backends"} {
		ref := prefix + img + ":" + tag
		if out, err := s.run(30*time.Second, "docker", "image", "inspect", "--format", "{{.Id}}", ref); err != nil {
			t.Fatalf("image %s is missing: run `make images` first\n%s", ref, out)
		}
	}
	// The NATS port must stay the same across a restart of the nats
	// container (the test's own connection reconnects to it): reserve one.
	// The other published ports are random.
	natsPort := freePort(t)
	s.env = append(cleanEnv(), "HM_IMAGE_PREFIX="+prefix, "HM_IMAGE_TAG="+tag,
		"COMPOSE_PROJECT_NAME="+project, "HM_NATS_PORT="+strconv.Itoa(natsPort),
		"HM_NATS_MONITOR_PORT=0", "HM_AGGREGATOR_A_PORT=0", "HM_AGGREGATOR_B_PORT=0", "HM_DPVS_AGENT_PORT=0",
		"HM_BACKEND_A_PORT=0", "HM_BACKEND_B_PORT=0")
	if os.Getenv("HM_E2E_CLUSTER") == "1" {
		// The same scenarios on the 3-node NATS cluster; "nats" is its node 1.
		s.env = append(s.env, "COMPOSE_FILE=docker-compose.yml"+string(os.PathListSeparator)+"docker-compose.cluster.yml")
		t.Log("on the 3-node NATS cluster (docker-compose.cluster.yml)")
	}
	s.composeOK(2*time.Minute, "--profile", "tools", "down", "--volumes", "--remove-orphans")
	t.Cleanup(s.teardown)
	if out, err := s.run(3*time.Minute, s.compose[0], append(s.compose[1:], "up", "-d", "--scale", "prober=1")...); err != nil {
		hint := ""
		if strings.Contains(out, "Pool overlaps") {
			hint = "\nThe backends network's fixed subnet (10.29.10.0/24) is taken: is another healthmesh stack up (`make down`), or another Docker network on it (`docker network ls`)?"
		}
		t.Fatalf("compose up: %v\n%s%s", err, out, hint)
	}

	s.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	s.admin = connectAs(t, bus.ConnOptions{URLs: s.natsURL, Name: "e2e-admin",
		NKeyFile: filepath.Join(s.root, "deploy", "compose", "secrets", "admin.nk")})
	s.events = followEvents(t, s.admin.js)
	s.results = followResults(t, s.admin.nc)
	s.waitAllUp(90 * time.Second)
	return s
}

// teardown saves the logs of a failed run and removes the project (unless
// HM_E2E_KEEP=1).
func (s *stack) teardown() {
	if s.t.Failed() {
		out, _ := s.run(2*time.Minute, s.compose[0], append(s.compose[1:], "logs", "--no-color", "--timestamps")...)
		f, err := os.CreateTemp("", "hme2e-logs-*.txt")
		if err == nil {
			f.WriteString(out)
			f.Close()
			s.t.Logf("compose logs saved in %s", f.Name())
		}
		if s.events != nil {
			s.t.Logf("HM_EVENTS:\n%s", s.events.dump(0))
		}
	}
	if os.Getenv("HM_E2E_KEEP") == "1" {
		s.t.Logf("HM_E2E_KEEP=1: the stack stays up (COMPOSE_PROJECT_NAME=%s)", project)
		return
	}
	if out, err := s.run(2*time.Minute, s.compose[0], append(s.compose[1:], "--profile", "tools", "down", "--volumes", "--remove-orphans")...); err != nil {
		s.t.Errorf("compose down: %v\n%s", err, out)
	}
}

// run executes a command in the repository root with the stack's
// environment and returns its combined output.
func (s *stack) run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.root
	if s.env != nil {
		cmd.Env = s.env
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %v", name, strings.Join(args, " "), timeout)
	}
	return string(out), err
}

// composeOK runs a compose command and fails the test if it fails.
func (s *stack) composeOK(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.run(timeout, s.compose[0], append(s.compose[1:], args...)...)
	if err != nil {
		s.t.Fatalf("%s %s: %v\n%s", strings.Join(s.compose, " "), strings.Join(args, " "), err, out)
	}
	return out
}

// dockerOK runs a docker command and fails the test if it fails.
func (s *stack) dockerOK(args ...string) string {
	s.t.Helper()
	out, err := s.run(time.Minute, "docker", args...)
	if err != nil {
		s.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// containers returns the full ids of a service's running containers.
func (s *stack) containers(service string) []string {
	s.t.Helper()
	return strings.Fields(s.composeOK(time.Minute, "ps", "-q", service))
}

// container is the one container of a service.
func (s *stack) container(service string) string {
	s.t.Helper()
	ids := s.containers(service)
	if len(ids) != 1 {
		s.t.Fatalf("service %s has %d containers; want 1", service, len(ids))
	}
	return ids[0]
}

// network is the full name of one of the project's networks.
func (s *stack) network(name string) string { return project + "_" + name }

// port is the host address a service's container port is published on.
// It is asked once: the services whose ports the tests use (dpvs-agent,
// the backends) are never restarted, and one compose command costs about
// half a second of CPU, too much for a condition polled in a loop.
func (s *stack) port(service string, port int) string {
	s.t.Helper()
	key := service + "/" + strconv.Itoa(port)
	if addr, ok := s.ports[key]; ok {
		return addr
	}
	out := strings.TrimSpace(s.composeOK(time.Minute, "port", service, strconv.Itoa(port)))
	_, p, err := net.SplitHostPort(out)
	if err != nil {
		s.t.Fatalf("compose port %s %d: %q: %v", service, port, out, err)
	}
	s.ports[key] = "127.0.0.1:" + p
	return s.ports[key]
}

// pollEvery is how often poll asks docker, the emulator or NATS.
const pollEvery = 200 * time.Millisecond

// poll is wait.Until for a condition that asks docker, the emulator or
// NATS: it is evaluated every pollEvery, not at wait.Interval.
func poll(timeout time.Duration, cond func() bool) bool {
	var next time.Time
	var last bool
	return wait.Until(timeout, func() bool {
		if now := time.Now(); !now.Before(next) {
			next = now.Add(pollEvery)
			last = cond()
		}
		return last
	})
}

// observer is the prober member id of a prober container: its host name
// (the short container id) and its pid, 1.
func observer(containerID string) string { return containerID[:12] + "-1" }

// restarts is every container's restart count, by id.
func (s *stack) restarts() map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, id := range strings.Fields(s.composeOK(time.Minute, "ps", "-q")) {
		out[id] = s.dockerOK("inspect", "-f", "{{.RestartCount}}", id)
	}
	return out
}

// httpDo sends a request to a published port and returns the body.
func (s *stack) httpDo(method, url string) []byte {
	s.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		s.t.Fatalf("%s %s: %s: %s", method, url, resp.Status, body)
	}
	return body
}

// setBackend fails or recovers a demo backend through its control API.
func (s *stack) setBackend(name string, fail bool) {
	s.t.Helper()
	verb := "recover"
	if fail {
		verb = "fail"
	}
	s.httpDo("POST", "http://"+s.port(backendNamed(name).host, 7000)+"/"+verb+"/"+name)
}

// agentBackend is one backend as dpvs-agent-emu holds it.
type agentBackend struct {
	IP        string `json:"ip"`
	Port      int    `json:"port"`
	Weight    int    `json:"weight"`
	Inhibited bool   `json:"inhibited"`
}

// agentState returns what the emulated DPVS has applied, by backend id.
func (s *stack) agentState() map[string]agentBackend {
	s.t.Helper()
	var st struct {
		Services []struct {
			ID       string         `json:"id"`
			Backends []agentBackend `json:"backends"`
		} `json:"services"`
	}
	if err := json.Unmarshal(s.httpDo("GET", "http://"+s.port("dpvs-agent", 8082)+"/_emu/state"), &st); err != nil {
		s.t.Fatalf("dpvs-agent state: %v", err)
	}
	out := map[string]agentBackend{}
	for _, svc := range st.Services {
		proto := strings.ToUpper(svc.ID[strings.LastIndex(svc.ID, "-")+1:])
		for _, b := range svc.Backends {
			out[fmt.Sprintf("%s-%s-%d", b.IP, proto, b.Port)] = b
		}
	}
	return out
}

// agentChanges counts the calls dpvs-agent-emu has recorded that change
// something (the aggregators' GET /v2/vs polls do not).
func (s *stack) agentChanges() int {
	s.t.Helper()
	var calls []struct {
		Method string `json:"method"`
	}
	if err := json.Unmarshal(s.httpDo("GET", "http://"+s.port("dpvs-agent", 8082)+"/_emu/calls"), &calls); err != nil {
		s.t.Fatalf("dpvs-agent calls: %v", err)
	}
	n := 0
	for _, c := range calls {
		if c.Method != http.MethodGet {
			n++
		}
	}
	return n
}

// latest is the newest state of a backend in its VS, from the events.
func (s *stack) latest(b demoBackend) event.State {
	recs := s.events.since(0, func(r record) bool { return isBackend(b.id, "")(r) && r.T.VS == b.vs })
	if len(recs) == 0 {
		return event.Unknown
	}
	return recs[len(recs)-1].T.To
}

// waitAllUp waits until every demo backend is up, and applied so.
func (s *stack) waitAllUp(timeout time.Duration) {
	s.t.Helper()
	var st map[string]agentBackend
	if !poll(timeout, func() bool {
		st = s.agentState()
		for _, b := range demoBackends {
			if s.latest(b) != event.Up {
				return false
			}
		}
		for _, b := range demoBackends {
			if a := st[b.id]; a.Weight == 0 || a.Inhibited {
				return false
			}
		}
		return true
	}) {
		var b strings.Builder
		for _, d := range demoBackends {
			fmt.Fprintf(&b, "  %s %s: %s, applied %+v\n", d.name, d.id, s.latest(d), st[d.id])
		}
		s.t.Fatalf("not every backend up and applied within %v:\n%s", timeout, b.String())
	}
}

// heal undoes what a scenario may have left behind when it failed half way:
// every backend recovered and on its network, every service running, three
// probers, fresh aggregators (one may hold the lease without working).
// Errors are ignored (most of it is usually already so).
func (s *stack) heal() {
	clear(s.ports) // containers may be started anew
	s.run(3*time.Minute, s.compose[0], append(s.compose[1:], "restart", "aggregator-a", "aggregator-b")...)
	for _, b := range demoBackends {
		if host, err := s.run(time.Minute, s.compose[0], append(s.compose[1:], "port", b.host, "7000")...); err == nil {
			req, _ := http.NewRequest(http.MethodPost, "http://"+strings.TrimSpace(host)+"/recover/"+b.name, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	s.run(3*time.Minute, s.compose[0], append(s.compose[1:], "up", "-d", "--no-recreate", "--scale", "prober=3")...)
	ids, _ := s.run(time.Minute, s.compose[0], append(s.compose[1:], "ps", "-q", "prober")...)
	for _, id := range strings.Fields(ids) {
		s.run(time.Minute, "docker", "network", "connect", s.network("backends"), id)
	}
	for host, ip := range map[string]string{"backend-a": "10.29.10.11", "backend-b": "10.29.10.12"} {
		if id, err := s.run(time.Minute, s.compose[0], append(s.compose[1:], "ps", "-q", host)...); err == nil {
			s.run(time.Minute, "docker", "network", "connect", "--ip", ip, s.network("backends"), strings.TrimSpace(id))
		}
	}
}

// leader is the id of the aggregator holding the lease ("" for none).
func (s *stack) leader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := s.admin.js.KeyValue(ctx, "hm_leader")
	if err != nil {
		return ""
	}
	e, err := kv.Get(ctx, "aggregator")
	if err != nil {
		return ""
	}
	return string(e.Value())
}

// members lists the prober ids registered in KV hm_members (nil when the
// bucket cannot be read).
func (s *stack) members() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := s.admin.js.KeyValue(ctx, "hm_members")
	if err != nil {
		return nil
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		return nil
	}
	return keys
}

// natsViolations returns a counter of the permission violations in the
// nats service's log (docker logs: a compose command is too slow to poll).
func (s *stack) natsViolations() func() int {
	id := s.container("nats")
	return func() int {
		out, err := s.run(time.Minute, "docker", "logs", id)
		if err != nil {
			s.t.Errorf("docker logs nats: %v", err)
		}
		return strings.Count(out, " Violation - ")
	}
}

// targets reads the desired targets from KV hm_targets, by token.
func (s *stack) targets() map[string]event.Target {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := s.admin.js.KeyValue(ctx, "hm_targets")
	if err != nil {
		s.t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]event.Target{}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if err != nil {
			s.t.Fatal(err)
		}
		var tg event.Target
		if err := event.Unmarshal(e.Value(), &tg); err != nil {
			s.t.Fatalf("target %s: %v", k, err)
		}
		out[tg.ID] = tg
	}
	return out
}

// freePort reserves a loopback port number for a published port that must
// not change (listen on :0, then release it).
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// resultLog keeps when each observer reported on each target, from the
// probe results published on hm.result.>.
type resultLog struct {
	mu    sync.Mutex
	seen  map[string]map[string][]time.Time // target -> observer -> arrival times
	downs map[string]map[string]time.Time   // target -> observer -> last down result
}

func followResults(t *testing.T, nc *nats.Conn) *resultLog {
	t.Helper()
	l := &resultLog{seen: map[string]map[string][]time.Time{}, downs: map[string]map[string]time.Time{}}
	sub, err := nc.Subscribe("hm.result.>", func(m *nats.Msg) {
		// hm.result.<part>.<target>.<observer>
		tok := strings.Split(m.Subject, ".")
		if len(tok) != 5 {
			return
		}
		tg, ob := tok[3], tok[4]
		now := time.Now()
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.seen[tg] == nil {
			l.seen[tg] = map[string][]time.Time{}
		}
		l.seen[tg][ob] = append(l.seen[tg][ob], now)
		if m.Header.Get(event.HdrState) == string(event.Down) {
			if l.downs[tg] == nil {
				l.downs[tg] = map[string]time.Time{}
			}
			l.downs[tg][ob] = now
		}
	})
	if err != nil {
		t.Fatalf("subscribe to the results: %v", err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return l
}

// downSince reports whether observer reported target down after at.
func (l *resultLog) downSince(target, observer string, at time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.downs[target][observer].After(at)
}

// observers returns who reported on target in [from, to).
func (l *resultLog) observers(target string, from, to time.Time) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for ob, times := range l.seen[target] {
		for _, at := range times {
			if !at.Before(from) && at.Before(to) {
				out = append(out, ob)
				break
			}
		}
	}
	return out
}
