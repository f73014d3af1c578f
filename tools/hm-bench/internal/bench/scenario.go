package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// ErrScenario is wrapped by every error about a bad scenario description.
var ErrScenario = errors.New("bad scenario")

// Methods the benchmark can drive, and where their targets live. Every
// address is on loopback: no probe ever leaves the machine.
const (
	MethodTCP  = "tcp"
	MethodPing = "ping"
	MethodHTTP = "http"
)

// Address plan: TCP and HTTP backends listen on portsPerAddr ports of
// consecutive 127.0.<net>.x addresses (demo-backends serves them); ping
// targets are distinct 127.1.x.y addresses, answered by the kernel.
const (
	firstPort    = 20000
	portsPerAddr = 1000
	hostsPerNet  = 250 // .1 to .250 of each /24
	// MaxTargets bounds a scenario: the backends process needs a descriptor
	// per listener, and the hard limit here is about 20,000.
	MaxTargets = 16000
)

// Scenario is one benchmark: N targets of one method at one interval.
type Scenario struct {
	Method   string        `json:"method"`
	Targets  int           `json:"targets"`
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
}

// Name is the scenario as written on the command line: "tcp:10000@1s".
func (s Scenario) Name() string {
	return fmt.Sprintf("%s:%d@%v", s.Method, s.Targets, s.Interval)
}

// DefaultScenarios are the runs of the prober's performance objective.
func DefaultScenarios() string { return "tcp:10000,ping:10000,http:5000" }

// ParseScenarios reads a comma-separated list of METHOD:N[@INTERVAL]; the
// interval defaults to interval and the timeout is half the interval.
func ParseScenarios(list string, interval time.Duration) ([]Scenario, error) {
	return parseScenarios(list, interval, MaxTargets)
}

// ParsePipelineScenarios is ParseScenarios for the pipeline benchmark: up to
// MaxPipelineTargets backends.
func ParsePipelineScenarios(list string, interval time.Duration) ([]Scenario, error) {
	return parseScenarios(list, interval, MaxPipelineTargets)
}

func parseScenarios(list string, interval time.Duration, maxTargets int) ([]Scenario, error) {
	var out []Scenario
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		s, err := parseScenario(item, interval, maxTargets)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty list (want e.g. %s)", ErrScenario, DefaultScenarios())
	}
	return out, nil
}

func parseScenario(item string, interval time.Duration, maxTargets int) (Scenario, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %q: %s", ErrScenario, item, fmt.Sprintf(format, a...))
	}
	method, rest, ok := strings.Cut(item, ":")
	if !ok {
		return Scenario{}, bad("want METHOD:N[@INTERVAL], e.g. tcp:10000@1s")
	}
	switch method {
	case MethodTCP, MethodPing, MethodHTTP:
	default:
		return Scenario{}, bad("method %q: want %s, %s or %s", method, MethodTCP, MethodPing, MethodHTTP)
	}
	count, iv, hasIV := strings.Cut(rest, "@")
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 || n > maxTargets {
		return Scenario{}, bad("target count %q: want 1 to %d", count, maxTargets)
	}
	if hasIV {
		if interval, err = time.ParseDuration(iv); err != nil {
			return Scenario{}, bad("interval %q: want a duration such as 1s", iv)
		}
	}
	if interval < 10*time.Millisecond {
		return Scenario{}, bad("interval %v: want at least 10ms", interval)
	}
	return Scenario{Method: method, Targets: n, Interval: interval, Timeout: interval / 2}, nil
}

// endpoints returns the scenario's N addresses in order.
func (s Scenario) endpoints() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, s.Targets)
	for i := range s.Targets {
		if s.Method == MethodPing {
			// 127.1.<i/250>.<1+i%250>: distinct addresses, never .0 or .255.
			a := netip.AddrFrom4([4]byte{127, 1, byte(i / hostsPerNet), byte(1 + i%hostsPerNet)})
			out = append(out, netip.AddrPortFrom(a, firstPort))
			continue
		}
		net := byte(1) // tcp: 127.0.1.x
		if s.Method == MethodHTTP {
			net = 2
		}
		a := netip.AddrFrom4([4]byte{127, 0, net, byte(1 + i/portsPerAddr)})
		out = append(out, netip.AddrPortFrom(a, uint16(firstPort+i%portsPerAddr)))
	}
	return out
}

// backendArgs returns the demo-backends flags serving the scenario's
// endpoints, or nil when the kernel answers (ping).
func (s Scenario) backendArgs() []string {
	return s.backendArgsFor(s.endpoints())
}

// backendArgsFor returns the demo-backends flags serving eps, a run of the
// scenario's endpoints.
func (s Scenario) backendArgsFor(eps []netip.AddrPort) []string {
	if s.Method == MethodPing {
		return nil
	}
	flag := "-tcp-range"
	if s.Method == MethodHTTP {
		flag = "-http-range"
	}
	// One range per address: IP:FIRST-LAST.
	var args []string
	for i := 0; i < len(eps); {
		j := i
		for j+1 < len(eps) && eps[j+1].Addr() == eps[i].Addr() {
			j++
		}
		args = append(args, flag, fmt.Sprintf("%s:%d-%d", eps[i].Addr(), eps[i].Port(), eps[j].Port()))
		i = j + 1
	}
	return args
}

// targets returns the hm_targets entries (key → value) exactly as the
// aggregator writes them for backends of a VS checked with the scenario's
// method and no params (see the aggregator's inventory.target).
func (s Scenario) targets(rev uint64) (map[string]*event.Target, error) {
	out := make(map[string]*event.Target, s.Targets)
	hash := subject.HashOf("src=\nns=\n") // no params, source or netns
	vs := subject.VSID{Addr: netip.AddrFrom4([4]byte{127, 0, 0, 100}), Proto: subject.TCP, Port: 80}
	for _, ep := range s.endpoints() {
		b := subject.BackendID{Addr: ep.Addr(), Proto: subject.TCP, Port: ep.Port()}
		tid := subject.TargetID{Endpoint: b, Method: s.Method, Hash: hash}
		tok := tid.Token()
		if _, err := subject.ParseTargetToken(tok); err != nil {
			return nil, fmt.Errorf("bench: target %s: %w", tok, err)
		}
		out[subject.KeyTarget(tid)] = &event.Target{
			V: event.Version, ID: tok, Addr: b.Addr.String(), Port: b.Port, Proto: b.Proto.String(),
			Method: s.Method, Interval: int64(s.Interval), Timeout: int64(s.Timeout), Observers: 1,
			Rev: rev, UsedBy: []string{vs.String() + "/" + b.String()},
		}
	}
	return out, nil
}
