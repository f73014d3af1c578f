package action

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
)

// Actioner names, as configured (case-sensitive, as in DPVS).
const (
	NameBlank                     = "Blank"
	NameBackendUpdate             = "BackendUpdate"
	NameKernelRouteAddDel         = "KernelRouteAddDel"
	NameKernelRouteAddDelVerdict  = "KernelRouteAddDelVerdict"
	NameDpvsAddrAddDel            = "DpvsAddrAddDel"
	NameDpvsAddrKernelRouteAddDel = "DpvsAddrKernelRouteAddDel"
	NameScript                    = "Script"
)

// ErrNoAgent: an actioner that calls dpvs-agent was built without one.
var ErrNoAgent = errors.New("no dpvs-agent configured")

// Deps are what actioners may need beyond their params.
type Deps struct {
	// Agent is the dpvs-agent client; BackendUpdate, DpvsAddrAddDel and
	// DpvsAddrKernelRouteAddDel refuse to build without it.
	Agent *dpvsagent.Client
	// Log receives per-action detail (270 retries, script output) at debug
	// and info level. The zero value logs nothing.
	Log zerolog.Logger
}

type constructor func(params map[string]string, deps Deps) (Actioner, error)

// registry is the one list of actioners: Names and New both read it, so a
// name cannot exist without an implementation.
func registry() []struct {
	name  string
	build constructor
} {
	return []struct {
		name  string
		build constructor
	}{
		{NameBlank, newBlank},
		{NameBackendUpdate, newBackendUpdate},
		{NameKernelRouteAddDel, newKernelRoute},
		{NameKernelRouteAddDelVerdict, newKernelRouteVerdict},
		{NameDpvsAddrAddDel, newDpvsAddr},
		{NameDpvsAddrKernelRouteAddDel, newDpvsAddrKernelRoute},
		{NameScript, newScript},
	}
}

// Names lists every actioner name New accepts, in registry order.
func Names() []string {
	reg := registry()
	names := make([]string, len(reg))
	for i, e := range reg {
		names[i] = e.name
	}
	return names
}

// New builds the actioner called name from its params, validating them:
// an unknown name is ErrUnknown, a missing, malformed or unsupported param
// is ErrParams naming the key. params may be nil.
func New(name string, params map[string]string, deps Deps) (Actioner, error) {
	for _, e := range registry() {
		if e.name == name {
			return e.build(params, deps)
		}
	}
	return nil, fmt.Errorf("%w %q (want one of %s)", ErrUnknown, name, strings.Join(Names(), ", "))
}

// needAgent is the check of the actioners that call dpvs-agent.
func needAgent(name string, deps Deps) error {
	if deps.Agent == nil {
		return fmt.Errorf("%w: %s calls dpvs-agent: configure its address", ErrNoAgent, name)
	}
	return nil
}
