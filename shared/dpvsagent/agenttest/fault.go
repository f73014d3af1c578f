package agenttest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Fault is an injected misbehaviour, applied to the API calls it matches
// (Method, if set, and PathPrefix, if set) before they are handled, in this
// order:
//
//  1. Latency: the answer is delayed (a client that gives up first is
//     recorded with status 0).
//  2. BumpVersion: the snapshot version of the service named in the path
//     (of every service when the path names none) moves, as if someone had
//     changed its real servers; a health update then gets a 270.
//  3. Drop: the connection is closed without an answer.
//  4. Status204: 204 with no body (the agent's answer to an IPC failure on
//     the live path); the call is not handled.
//  5. Status: that status with Body; the call is not handled.
//  6. EmptyBody (alone): the call is handled, its state changes apply, but
//     the answer's body is dropped (GET /v2/vs then answers 200 with nothing,
//     the input that made DPVS's healthcheck withdraw every VIP).
//
// Count is how many calls the fault applies to (0: until cleared). The first
// matching fault applies; a call consumes at most one.
type Fault struct {
	Method      string   `json:"method,omitempty"`
	PathPrefix  string   `json:"path_prefix,omitempty"`
	Latency     Duration `json:"latency,omitempty"`
	BumpVersion bool     `json:"bump_version,omitempty"`
	Drop        bool     `json:"drop,omitempty"`
	Status204   bool     `json:"status_204,omitempty"`
	Status      int      `json:"status,omitempty"`
	Body        string   `json:"body,omitempty"`
	EmptyBody   bool     `json:"empty_body,omitempty"`
	Count       int      `json:"count,omitempty"`
}

// validate rejects faults that cannot be applied.
func (f Fault) validate() error {
	switch {
	case f.Status != 0 && (f.Status < 100 || f.Status > 999):
		return fmt.Errorf("fault status %d: want 100..999", f.Status)
	case f.Count < 0:
		return fmt.Errorf("fault count %d: want >= 0 (0 = until cleared)", f.Count)
	case f.Latency < 0:
		return fmt.Errorf("fault latency %s: want >= 0", time.Duration(f.Latency))
	case f.PathPrefix != "" && !strings.HasPrefix(f.PathPrefix, "/"):
		return fmt.Errorf("fault path_prefix %q: want an absolute path", f.PathPrefix)
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("200ms").
type Duration time.Duration

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string such as "200ms" or "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"200ms\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// faultState is an installed fault with its remaining count.
type faultState struct {
	Fault
	left int // calls left when Count > 0
}

// FaultStatus is an installed fault as Faults and GET /_emu/faults report it.
type FaultStatus struct {
	Fault
	Left int `json:"left,omitempty"` // calls it still applies to (0 with Count 0: unlimited)
}

// AddFault installs a fault after the ones already installed.
func (a *Agent) AddFault(f Fault) error {
	if err := f.validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults = append(a.faults, &faultState{Fault: f, left: f.Count})
	return nil
}

// ClearFaults removes every installed fault.
func (a *Agent) ClearFaults() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults = nil
}

// Faults lists the installed faults.
func (a *Agent) Faults() []FaultStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]FaultStatus, len(a.faults))
	for i, f := range a.faults {
		out[i] = FaultStatus{Fault: f.Fault, Left: f.left}
	}
	return out
}

// takeFault returns the first fault matching r and consumes one of its
// uses; a fault with no uses left is removed.
func (a *Agent) takeFault(r *http.Request) (Fault, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, f := range a.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if !strings.HasPrefix(r.URL.Path, f.PathPrefix) {
			continue
		}
		if f.Count > 0 {
			f.left--
			if f.left <= 0 {
				a.faults = append(a.faults[:i], a.faults[i+1:]...)
			}
		}
		return f.Fault, true
	}
	return Fault{}, false
}

// bumpFor moves the version of the service named in path, or of every
// service when the path names none.
func (a *Agent) bumpFor(path string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rest, ok := strings.CutPrefix(path, "/v2/vs/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		if key, _, res := parseID(id); res == idOK {
			if s := a.snap[key]; s != nil {
				s.Version = a.nextVersion()
			}
			return
		}
	}
	for _, s := range a.snap {
		s.Version = a.nextVersion()
	}
}

// BumpVersion moves the snapshot version of a service, as a change of its
// real servers by someone else would. It reports whether the service exists.
func (a *Agent) BumpVersion(pathID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	key, _, res := parseID(pathID)
	s := a.snap[key]
	if res != idOK || s == nil {
		return false
	}
	s.Version = a.nextVersion()
	return true
}
