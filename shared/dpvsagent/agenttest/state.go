package agenttest

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
)

// State is everything the emulator holds, for assertions: every service of
// the dataplane or the snapshot with its real servers, and the addresses of
// every device.
type State struct {
	Services []ServiceState      `json:"services"` // sorted by ID
	Devices  map[string][]string `json:"devices"`  // device → sorted "ip/plen"
}

// ServiceState is one service.
type ServiceState struct {
	ID          string         `json:"id"` // path id: "192.0.2.1-80-tcp"
	Version     string         `json:"version,omitempty"`
	InSnapshot  bool           `json:"in_snapshot"`
	InDataplane bool           `json:"in_dataplane"`
	SchedName   string         `json:"sched_name,omitempty"`
	Backends    []BackendState `json:"backends"`
}

// BackendState is one real server: what the dataplane forwards with (Weight,
// Inhibited — what health updates set) and what the snapshot lists
// (UserWeight, SnapshotInhibited).
type BackendState struct {
	IP                string    `json:"ip"`
	Port              uint16    `json:"port"`
	Weight            uint16    `json:"weight"`
	Inhibited         bool      `json:"inhibited"`
	Overloaded        bool      `json:"overloaded"`
	Mode              string    `json:"mode,omitempty"`
	UserWeight        uint16    `json:"user_weight"`
	SnapshotInhibited bool      `json:"snapshot_inhibited"`
	InSnapshot        bool      `json:"in_snapshot"`
	InDataplane       bool      `json:"in_dataplane"`
	Updated           time.Time `json:"updated,omitzero"` // last health update applied
	HealthUpdates     int       `json:"health_updates"`   // health updates applied
}

// Schedulable reports whether DPVS would send traffic to the backend:
// present, not inhibited, not overloaded, weight > 0.
func (b BackendState) Schedulable() bool {
	return b.InDataplane && !b.Inhibited && !b.Overloaded && b.Weight > 0
}

// Service returns the service with path id (any case), or nil.
func (s State) Service(id string) *ServiceState {
	key, _, res := parseID(id)
	if res != idOK {
		key = strings.ToLower(id)
	}
	for i := range s.Services {
		if s.Services[i].ID == key {
			return &s.Services[i]
		}
	}
	return nil
}

// Backend returns the backend ip:port of the service, or nil.
func (s *ServiceState) Backend(ip string, port uint16) *BackendState {
	key := rsKey(dpvsagent.RealServer{IP: ip, Port: port})
	for i := range s.Backends {
		b := &s.Backends[i]
		if rsKey(dpvsagent.RealServer{IP: b.IP, Port: b.Port}) == key {
			return b
		}
	}
	return nil
}

// State returns a copy of the emulator's state.
func (a *Agent) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := State{Devices: map[string][]string{}}
	keys := map[string]bool{}
	for k := range a.live {
		keys[k] = true
	}
	for k := range a.snap {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		st.Services = append(st.Services, a.serviceState(k))
	}
	for name, set := range a.devices {
		addrs := make([]string, 0, len(set))
		for p := range set {
			addrs = append(addrs, p)
		}
		slices.SortFunc(addrs, func(x, y string) int {
			px, _ := netip.ParsePrefix(x)
			py, _ := netip.ParsePrefix(y)
			return px.Addr().Compare(py.Addr())
		})
		st.Devices[name] = addrs
	}
	return st
}

// serviceState builds one service's state. Callers hold a.mu.
func (a *Agent) serviceState(key string) ServiceState {
	ss := ServiceState{ID: key, Backends: []BackendState{}}
	l, s := a.live[key], a.snap[key]
	byKey := map[string]int{}
	if l != nil {
		ss.InDataplane, ss.SchedName = true, l.vs.SchedName
		for _, rs := range l.rss {
			byKey[rsKey(rs.spec)] = len(ss.Backends)
			ss.Backends = append(ss.Backends, BackendState{
				IP: rs.spec.IP, Port: rs.spec.Port, Weight: rs.spec.Weight, Inhibited: rs.spec.IsInhibited(),
				Overloaded: rs.spec.Overloaded != nil && *rs.spec.Overloaded, Mode: rs.spec.Mode,
				InDataplane: true, Updated: rs.updated, HealthUpdates: rs.updates,
			})
		}
	}
	if s != nil {
		ss.InSnapshot, ss.Version = true, s.Version
		if ss.SchedName == "" {
			ss.SchedName = s.SchedName
		}
		for _, it := range s.RSs.Items {
			i, ok := byKey[rsKey(it.Spec)]
			if !ok {
				i = len(ss.Backends)
				ss.Backends = append(ss.Backends, BackendState{IP: it.Spec.IP, Port: it.Spec.Port, Mode: it.Spec.Mode})
			}
			b := &ss.Backends[i]
			b.InSnapshot, b.UserWeight, b.SnapshotInhibited = true, it.Spec.Weight, it.Spec.IsInhibited()
		}
	}
	return ss
}
