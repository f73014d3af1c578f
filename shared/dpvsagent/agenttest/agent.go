// Package agenttest is a faithful emulator of the dpvs-agent REST subset
// healthmesh uses (see package dpvsagent and §8 of the DPVS reference), as an
// http.Handler that tests start in-process (NewServer) and that the
// dpvs-agent-emu binary serves.
//
// It keeps two models, as the real agent does: the DPVS dataplane ("live":
// what forwarding would use) and the agent's in-memory snapshot, which is the
// only thing GET /v2/vs lists by default and the only place a Version exists.
// The agent's quirks are reproduced on purpose:
//
//   - only services created through the API (or Seed) are listed;
//   - Version is the time in milliseconds as a decimal string, set when a
//     service is created and on every PUT/POST of its real servers (never on
//     PUT of an existing service, DELETE of real servers or a health update);
//     here it also strictly increases within one millisecond;
//   - DELETE /v2/vs/{id}/rs removes the real servers from the dataplane but
//     leaves them listed in the snapshot;
//   - a health update writes weight and inhibited into the dataplane, but only
//     inhibited into the snapshot, which keeps the user's weight;
//   - the health update answers 460/500/270/200/461 in the order of §8.5,
//     270 carrying the current service, and drops the connection for an id
//     with fewer than three '-' parts (the real handler panics);
//   - Items are listed in random order; Quic, SynProxy and ExpireQuiescent
//     are "true"/"false" strings; DestCheck is null; ProxyProto is never set;
//   - device addresses: PUT answers 200 whether added or already present,
//     DELETE 200 whether deleted or absent.
//
// Beyond the agent: faults can be injected (Fault, AddFault, POST
// /_emu/faults), every API call is recorded (Calls, GET /_emu/calls, an
// optional JSON-lines log), the whole state can be read (State, GET
// /_emu/state) and the agent can be seeded from YAML (ParseSeed, Seed, POST
// /_emu/seed). Everything is safe for concurrent use.
package agenttest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
)

// Agent is the emulated dpvs-agent. Create it with New.
type Agent struct {
	mux      *http.ServeMux // the /v2 API
	ctl      *http.ServeMux // the /_emu/ control API
	now      func() time.Time
	log      io.Writer
	maxCalls int

	mu          sync.Mutex
	snap        map[string]*dpvsagent.VirtualServer // the agent's snapshot, by path id
	live        map[string]*liveService             // the DPVS dataplane, by path id
	devices     map[string]map[string]struct{}
	lastVersion int64
	faults      []*faultState
	calls       []Call
	logErr      error
}

// Option configures an Agent.
type Option func(*Agent)

// WithClock sets the clock used for versions and call times (default
// time.Now).
func WithClock(now func() time.Time) Option { return func(a *Agent) { a.now = now } }

// WithLog writes every recorded call as one JSON line to w. Writes are
// serialized; the first write error is kept (see LogErr) and logging stops.
func WithLog(w io.Writer) Option { return func(a *Agent) { a.log = w } }

// WithMaxCalls keeps only the last n recorded calls (default 0: all).
func WithMaxCalls(n int) Option { return func(a *Agent) { a.maxCalls = n } }

// WithFaults installs faults from the start (see AddFault). An invalid
// fault answers the calls it matches with a 500 naming the problem.
func WithFaults(fs ...Fault) Option {
	return func(a *Agent) {
		for _, f := range fs {
			a.faults = append(a.faults, &faultState{Fault: f, left: f.Count})
		}
	}
}

// New returns an empty agent.
func New(opts ...Option) *Agent {
	a := &Agent{
		now:     time.Now,
		snap:    map[string]*dpvsagent.VirtualServer{},
		live:    map[string]*liveService{},
		devices: map[string]map[string]struct{}{},
	}
	for _, o := range opts {
		o(a)
	}
	a.mux = http.NewServeMux()
	a.mux.HandleFunc("GET /v2/vs", a.listVS)
	a.mux.HandleFunc("GET /v2/vs/{id}", a.getVS)
	a.mux.HandleFunc("PUT /v2/vs/{id}", a.putVS)
	a.mux.HandleFunc("DELETE /v2/vs/{id}", a.deleteVS)
	a.mux.HandleFunc("PUT /v2/vs/{id}/rs", a.putRS)
	a.mux.HandleFunc("POST /v2/vs/{id}/rs", a.postRS)
	a.mux.HandleFunc("DELETE /v2/vs/{id}/rs", a.deleteRS)
	a.mux.HandleFunc("PUT /v2/vs/{id}/rs/health", a.putHealth)
	a.mux.HandleFunc("PUT /v2/device/{name}/addr", a.putAddr)
	a.mux.HandleFunc("DELETE /v2/device/{name}/addr", a.deleteAddr)
	a.ctl = a.controlMux()
	return a
}

// NewServer starts an Agent behind an httptest server on 127.0.0.1:0 and
// returns it with its base URL ("http://127.0.0.1:port"); both are shut down
// when the test ends.
func NewServer(t testing.TB, opts ...Option) (*Agent, string) {
	t.Helper()
	a := New(opts...)
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL
}
