package action

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// MaxOutdatedRetries bounds how often BackendUpdate re-sends after the
// agent answered 270 (the service changed under us) before giving up for
// this attempt; the caller's backoff takes over from there.
const MaxOutdatedRetries = 3

// backendUpdate is the BackendUpdate actioner (the VS actioner): one
// PUT /v2/vs/{id}/rs/health?version=V with the request's backends only,
// weight 0 + inhibited for a down backend and the user weight for an up
// one, as the request carries them. It takes no params.
//
// On 270 the agent's current service comes back: the request is re-based
// on it (its version; backends it no longer lists are dropped; an up
// backend gets the user weight the agent now reports, so an operator's
// weight change made meanwhile is not overwritten) and re-sent, at most
// MaxOutdatedRetries times.
type backendUpdate struct {
	agent *dpvsagent.Client
	log   zerolog.Logger
}

func newBackendUpdate(m map[string]string, deps Deps) (Actioner, error) {
	if err := (params{name: NameBackendUpdate, m: m}).only(); err != nil {
		return nil, err
	}
	if err := needAgent(NameBackendUpdate, deps); err != nil {
		return nil, err
	}
	return &backendUpdate{agent: deps.Agent, log: deps.Log}, nil
}

func (b *backendUpdate) Apply(ctx context.Context, r Request) error {
	vs, items, err := backendItems(r)
	if err != nil {
		return fail(NameBackendUpdate, r, true, err)
	}
	version := r.Version
	for retry := 0; len(items) > 0; retry++ {
		fresh, err := b.agent.UpdateHealth(ctx, vs, version, items)
		if err == nil {
			return nil
		}
		if !errors.Is(err, dpvsagent.ErrOutdated) || fresh == nil {
			return fail(NameBackendUpdate, r, permanentAgentErr(err), err)
		}
		if retry == MaxOutdatedRetries {
			return fail(NameBackendUpdate, r, false, fmt.Errorf("still outdated after %d retries: %w", retry, err))
		}
		dropped := len(items)
		items = rebase(items, fresh)
		b.log.Info().Str("vs", r.Object()).Str("from", version).Str("to", fresh.Version).
			Int("dropped", dropped-len(items)).Msg("dpvs-agent: service version outdated, retrying")
		version = fresh.Version
	}
	return nil // nothing (left) to apply: every backend is gone from the service
}

// backendItems checks r and turns its backends into the request body, one
// item per address and port (the last one wins).
func backendItems(r Request) (subject.VSID, []dpvsagent.RealServer, error) {
	if r.Op != OpApply {
		return subject.VSID{}, nil, fmt.Errorf("%w: op %q (want APPLY)", ErrRequest, r.Op)
	}
	vs := subject.VSID{Addr: vip(r), Proto: r.Proto, Port: r.Port}
	if !vs.IsValid() {
		return vs, nil, fmt.Errorf("%w: want a VS (VIP, TCP or UDP, port), got %s", ErrRequest, vs)
	}
	items := make([]dpvsagent.RealServer, 0, len(r.Backends))
	at := make(map[netip.AddrPort]int, len(r.Backends))
	for i, be := range r.Backends {
		if !be.Addr.IsValid() {
			return vs, nil, fmt.Errorf("%w: backend %d: no address", ErrRequest, i)
		}
		ap := netip.AddrPortFrom(be.Addr.Unmap().WithZone(""), be.Port)
		rs := dpvsagent.RealServer{IP: ap.Addr().String(), Port: be.Port, Weight: be.Weight, Inhibited: dpvsagent.Bool(be.Inhibited)}
		if j, ok := at[ap]; ok {
			items[j] = rs
			continue
		}
		at[ap] = len(items)
		items = append(items, rs)
	}
	return vs, items, nil
}

// rebase keeps the items the fresh service still lists, with the fresh
// user weight for those that are to be up.
func rebase(items []dpvsagent.RealServer, fresh *dpvsagent.VirtualServer) []dpvsagent.RealServer {
	current := make(map[netip.AddrPort]uint16, len(fresh.RSs.Items))
	for _, rs := range fresh.Backends() {
		if a, err := rs.Addr(); err == nil {
			current[netip.AddrPortFrom(a, rs.Port)] = rs.Weight
		}
	}
	out := items[:0:0]
	for _, it := range items {
		a, err := it.Addr()
		if err != nil {
			continue
		}
		w, ok := current[netip.AddrPortFrom(a, it.Port)]
		if !ok {
			continue
		}
		if !it.IsInhibited() {
			it.Weight = w
		}
		out = append(out, it)
	}
	return out
}

// permanentAgentErr reports the agent answers that say the request itself
// is wrong (4xx but timeouts and rate limits), which no retry can fix. A
// transport error, 5xx, DPVS's own 460/461, or a malformed reply is worth
// retrying: the agent or DPVS may recover.
func permanentAgentErr(err error) bool {
	var se *dpvsagent.StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return false
	}
	return se.Code >= 400 && se.Code < 500
}
