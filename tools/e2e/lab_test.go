package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
	"github.com/healthmesh/healthmesh/tools/demo"
)

// Probe timing of every lab: short, so a scenario takes seconds.
const (
	interval  = 500 * time.Millisecond
	downRetry = 1
	// detectBound is how soon the load balancer must hear of a backend that
	// stopped or came back: down-retry+1 probes, plus one second for the
	// pipeline (result, verdict, event, action).
	detectBound = interval*(downRetry+1) + time.Second
	// settle bounds the waits for things with no promised latency (start-up,
	// a VIP after a VS after its backends).
	settle = 20 * time.Second
)

// The device DpvsAddrAddDel puts VIPs on, in the emulator.
const dpvsIfname = "dpdk0"

// The lab's services: VIP1 (the DpvsAddrAddDel VIP) serves HTTP from web1
// and web2; VIP2 serves TCP from ssh1 and, when the lab has a network
// namespace, is announced by KernelRouteAddDel inside it.
var (
	vip1 = netip.MustParseAddr("192.0.2.1")
	vip2 = netip.MustParseAddr("192.0.2.2")
	vs1  = subject.VSID{Addr: vip1, Proto: subject.TCP, Port: 80}
	vs2  = subject.VSID{Addr: vip2, Proto: subject.TCP, Port: 22}
)

// backend is one demo backend and where the lab put it.
type backend struct {
	name   string
	vs     subject.VSID
	id     subject.BackendID
	weight uint16 // the user weight seeded into the emulator
	ok     event.Reason
}

// lab is demo-backends plus dpvs-agent-emu seeded with the lab's services,
// and the configuration healthmesh reads.
type lab struct {
	dir      string
	control  string // demo-backends control API
	agent    string // emulator address
	conf     string // healthmesh configuration file
	netns    string // namespace VIP2 is announced in; "" without one
	backends map[string]*backend
	phases   [][]tr // the transitions each step caused, in step order
}

type labOptions struct {
	ip           byte   // backends listen on 127.0.0.ip, ip+1, ip+2 (ports picked by the kernel)
	observersAll bool   // probe VIP1's backends from every prober node
	netns        string // announce VIP2 with KernelRouteAddDel in this namespace
}

func newLab(t *testing.T, o labOptions) *lab {
	t.Helper()
	l := &lab{dir: t.TempDir(), netns: o.netns, backends: map[string]*backend{
		"web1": {name: "web1", vs: vs1, weight: 100, ok: event.ReasonL7OK},
		"web2": {name: "web2", vs: vs1, weight: 50, ok: event.ReasonL7OK},
		"ssh1": {name: "ssh1", vs: vs2, weight: 7, ok: event.ReasonL4OK},
	}}
	ip := func(i byte) string { return netip.AddrFrom4([4]byte{127, 0, 0, o.ip + i}).String() }
	listen := fmt.Sprintf("http://%s:0?name=web1,http://%s:0?name=web2,tcp://%s:0?name=ssh1&banner=SSH-2.0-e2e%%0D%%0A",
		ip(0), ip(1), ip(2))
	farm := start(t, "demo-backends", bin(t, "demo-backends"), "-listen", listen, "-control", "127.0.0.1:0",
		"-log-format", "json")
	var ready demo.Ready
	farm.waitJSON(t, farm.stdout, settle, demo.ReadyMsg, &ready)
	l.control = ready.Control
	var listed []demo.Status
	getJSON(t, "http://"+l.control+"/backends", &listed)
	for _, s := range listed {
		b := l.backends[s.Name]
		if b == nil {
			t.Fatalf("demo-backends lists unknown backend %q", s.Name)
		}
		ap, err := netip.ParseAddrPort(s.Addr)
		if err != nil {
			t.Fatalf("demo-backends: %s addr %q: %v", s.Name, s.Addr, err)
		}
		b.id = subject.BackendID{Addr: ap.Addr(), Proto: subject.TCP, Port: ap.Port()}
	}
	for _, b := range l.backends {
		if !b.id.IsValid() {
			t.Fatalf("demo-backends did not list %s", b.name)
		}
	}

	seed := agenttest.Seed{}
	for _, vs := range []subject.VSID{vs1, vs2} {
		svc := agenttest.SeedService{Port: vs.Port, Proto: vs.Proto.Lower()}
		for _, b := range l.sorted() {
			if b.vs == vs {
				svc.Backends = append(svc.Backends, agenttest.SeedBackend{IP: b.id.Addr.String(), Port: b.id.Port, Weight: &b.weight})
			}
		}
		seed.VIPs = append(seed.VIPs, agenttest.SeedVIP{Addr: vs.Addr.String(), Services: []agenttest.SeedService{svc}})
	}
	seedFile := l.write(t, "agent-seed.json", mustJSON(t, seed))
	emu := start(t, "dpvs-agent-emu", bin(t, "dpvs-agent-emu"), "-listen", "127.0.0.1:0", "-seed", seedFile)
	var serving struct {
		Addr string `json:"addr"`
	}
	emu.waitJSON(t, emu.stderr, settle, "serving", &serving)
	l.agent = serving.Addr

	l.conf = l.write(t, "healthmesh.conf", []byte(l.config(o)))
	return l
}

// config is the DPVS-layout configuration: the make-run demo's, with short
// intervals.
func (l *lab) config(o labOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global:
  virtual-address:
    down-policy: 2
    actioner: DpvsAddrAddDel
    action-params: {dpvs-ifname: %s}
  virtual-server:
    interval: %v
    timeout: 300ms
    down-retry: %d
    up-retry: 1
    actioner: BackendUpdate
virtual-servers:
  %s:
    method: http
    method-params: {uri: /health, response-codes: "200-299"}
`, dpvsIfname, interval, downRetry, vs1)
	if o.observersAll {
		b.WriteString("    observers: all\n")
	}
	fmt.Fprintf(&b, `  %s:
    method: tcp
    method-params: {receive: "SSH-2.0"}
`, vs2)
	if l.netns != "" {
		fmt.Fprintf(&b, `virtual-addresses:
  %s:
    actioner: KernelRouteAddDel
    action-params: {ifname: %s, netns: %s}
`, vip2, nsIfname, l.netns)
	}
	fmt.Fprintf(&b, "dpvs-agent:\n  addr: %s\n  list-interval: 1s\n", l.agent)
	return b.String()
}

func (l *lab) write(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(l.dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func (l *lab) sorted() []*backend {
	var bs []*backend
	for _, b := range l.backends {
		bs = append(bs, b)
	}
	slices.SortFunc(bs, func(x, y *backend) int { return strings.Compare(x.name, y.name) })
	return bs
}

// fail and recover stop and restart demo backends; they return the time
// just before the first request, what detection latency is measured from.
func (l *lab) fail(t *testing.T, names ...string) time.Time { return l.toggle(t, "fail", names) }

func (l *lab) recover(t *testing.T, names ...string) time.Time { return l.toggle(t, "recover", names) }

func (l *lab) toggle(t *testing.T, verb string, names []string) time.Time {
	t.Helper()
	at := time.Now()
	for _, n := range names {
		var st []demo.Status
		postJSON(t, "http://"+l.control+"/"+verb+"/"+n, &st)
		want := map[string]string{"fail": demo.StateFailed, "recover": demo.StateUp}[verb]
		if len(st) != 1 || st[0].State != want {
			t.Fatalf("demo-backends %s %s: got %+v, want state %q", verb, n, st, want)
		}
	}
	return at
}

// state is the emulator's state.
func (l *lab) state(t *testing.T) agenttest.State {
	t.Helper()
	var st agenttest.State
	getJSON(t, "http://"+l.agent+"/_emu/state", &st)
	return st
}

// backendState is a backend as the emulator's dataplane has it.
func (l *lab) backendState(t *testing.T, b *backend) agenttest.BackendState {
	t.Helper()
	svc := l.state(t).Service(dpvsagent.PathID(b.vs))
	if svc == nil {
		t.Fatalf("emulator has no service %s", b.vs)
	}
	bs := svc.Backend(b.id.Addr.String(), b.id.Port)
	if bs == nil {
		t.Fatalf("emulator has no backend %s in %s", b.id, b.vs)
	}
	return *bs
}

// vipOnDevice reports whether the emulator has the VIP on dpdk0.
func (l *lab) vipOnDevice(t *testing.T, vip netip.Addr) bool {
	t.Helper()
	return slices.Contains(l.state(t).Devices[dpvsIfname], netip.PrefixFrom(vip, vip.BitLen()).String())
}

// healthCall waits for the emulator to receive a health update of b after
// from that sets it down (weight 0, inhibited) or up (its user weight, not
// inhibited), and returns when the call arrived.
func (l *lab) healthCall(t *testing.T, b *backend, up bool, from time.Time) time.Time {
	t.Helper()
	path := "/v2/vs/" + dpvsagent.PathID(b.vs) + "/rs/health"
	var at time.Time
	match := func() bool {
		var calls []agenttest.Call
		getJSON(t, "http://"+l.agent+"/_emu/calls", &calls)
		for _, c := range calls {
			if c.Method != http.MethodPut || c.Path != path || c.Time.Before(from) || c.Status < 200 || c.Status > 299 {
				continue
			}
			var body struct{ Items []dpvsagent.RealServer }
			if json.Unmarshal(c.Body, &body) != nil {
				continue
			}
			for _, rs := range body.Items {
				if rs.IP != b.id.Addr.String() || rs.Port != b.id.Port {
					continue
				}
				if up && rs.Weight == b.weight && !rs.IsInhibited() || !up && rs.Weight == 0 && rs.IsInhibited() {
					at = c.Time
					return true
				}
			}
		}
		return false
	}
	what := map[bool]string{true: fmt.Sprintf("weight %d", b.weight), false: "weight 0 + inhibited"}[up]
	wait.For(t, settle, fmt.Sprintf("dpvs-agent PUT %s setting %s to %s", path, b.name, what), match)
	return at
}

// expectDetected asserts that the health update for b came within
// detectBound of the change, and that the dataplane holds it.
func (l *lab) expectDetected(t *testing.T, b *backend, up bool, changed time.Time) {
	t.Helper()
	took := l.healthCall(t, b, up, changed).Sub(changed)
	t.Logf("%s %s: dpvs-agent updated %v after the change", b.name, map[bool]string{true: "up", false: "down"}[up], took.Round(time.Millisecond))
	if took > detectBound {
		t.Errorf("%s: the health update came %v after the change, want within %v (interval %v × (down-retry %d + 1) + 1s)",
			b.name, took.Round(time.Millisecond), detectBound, interval, downRetry)
	}
	st := l.backendState(t, b)
	if up && (st.Weight != b.weight || st.Inhibited) || !up && (st.Weight != 0 || !st.Inhibited) {
		t.Errorf("%s in the dataplane: weight %d inhibited %v after the update", b.name, st.Weight, st.Inhibited)
	}
}

// waitApplied waits until every backend is judged up and both VIPs are
// announced: the start-up phase is over. The emulator is seeded serving
// every backend with its user weight, so those first "up"s cost no
// dpvs-agent call (BackendApply.Listed), which it checks too.
func (l *lab) waitApplied(t *testing.T, natsURL string) {
	t.Helper()
	wait.Check(t, settle, 250*time.Millisecond, "every backend judged up", func() error {
		recs, err := tryHistory(t, natsURL)
		if err != nil {
			return err
		}
		up := map[string]bool{}
		for _, r := range recs {
			if r.Event.Kind == event.KindBackend && r.Event.To == event.Up {
				up[r.Event.Object] = true
			}
		}
		for _, b := range l.sorted() {
			if !up[b.id.String()] {
				return fmt.Errorf("%s has no transition to up yet", b.name)
			}
		}
		return nil
	})
	wait.For(t, settle, fmt.Sprintf("%s on %s", vip1, dpvsIfname), func() bool { return l.vipOnDevice(t, vip1) })
	if l.netns == "" {
		wait.For(t, settle, fmt.Sprintf("%s on %s", vip2, dpvsIfname), func() bool { return l.vipOnDevice(t, vip2) })
	} else {
		wait.For(t, settle, fmt.Sprintf("%s on %s in netns %s", vip2, nsIfname, l.netns),
			func() bool { return nsHasAddr(t, l.netns, vip2) })
	}
	// The VAs' actions came after the backends' events: those are taken in.
	for _, b := range l.sorted() {
		if st := l.backendState(t, b); st.Weight != b.weight || st.Inhibited || st.HealthUpdates != 0 {
			t.Errorf("%s at start: weight %d inhibited %v, %d health updates; want %d, false and no call (DPVS serves it already)",
				b.name, st.Weight, st.Inhibited, st.HealthUpdates, b.weight)
		}
	}
	var start []tr
	for _, b := range l.sorted() {
		start = append(start, l.backendTr(b, event.Unknown, event.Up))
	}
	for _, vs := range []subject.VSID{vs1, vs2} {
		start = append(start, vsTr(vs, event.Unknown, event.Up), vaTr(vs.Addr, event.Unknown, event.Up))
	}
	l.expect(start...)
}

// expect records the transitions one step caused (in any order among
// themselves, after those of every earlier step).
func (l *lab) expect(trs ...tr) { l.phases = append(l.phases, trs) }

func (l *lab) backendTr(b *backend, from, to event.State) tr {
	r := b.ok
	if to == event.Down {
		r = event.ReasonL4CON // a stopped demo backend refuses connections
	}
	return tr{kind: event.KindBackend, vs: b.vs.String(), obj: b.id.String(), from: from, to: to, reason: r}
}

func vsTr(vs subject.VSID, from, to event.State) tr {
	return tr{kind: event.KindVS, vs: vs.String(), obj: vs.String(), from: from, to: to, reason: event.ReasonAggr}
}

func vaTr(va netip.Addr, from, to event.State) tr {
	return tr{kind: event.KindVA, obj: va.String(), from: from, to: to, reason: event.ReasonAggr}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	do(t, http.MethodGet, url, v)
}

func postJSON(t *testing.T, url string, v any) {
	t.Helper()
	do(t, http.MethodPost, url, v)
}

func do(t *testing.T, method, url string, v any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s %s: %v in %s", method, url, err, body)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
