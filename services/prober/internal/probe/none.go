package probe

import (
	"context"

	"github.com/healthmesh/healthmesh/shared/event"
)

// None is the `none` method: always Up, reason NONE, nothing sent.
type None struct{}

// NewNone returns the none method. DPVS accepts and ignores any params.
func NewNone() None { return None{} }

// Probe implements Prober.
func (None) Probe(context.Context, *Target) Result {
	return up(event.ReasonNone, 0, "")
}
