package action

import (
	"context"
	"fmt"
)

// dpvsAddrKernelRoute is the DpvsAddrKernelRouteAddDel actioner:
// KernelRouteAddDel, then DpvsAddrAddDel within what is left of the same
// deadline, for UP and for DOWN alike (the DPVS order). The first failure
// stops the action and is the one reported; re-applying is safe because
// both halves are idempotent.
//
// Params: ifname (required), dpvs-ifname (required), with-route and netns
// (optional, as for KernelRouteAddDel). Unlike DPVS, with-route really is
// optional here.
type dpvsAddrKernelRoute struct {
	kernel *kernelRoute
	dpvs   *dpvsAddr
}

func newDpvsAddrKernelRoute(m map[string]string, deps Deps) (Actioner, error) {
	const name = NameDpvsAddrKernelRouteAddDel
	k, err := parseKernelRoute(name, m, "dpvs-ifname")
	if err != nil {
		return nil, err
	}
	d, err := parseDpvsAddr(name, m, "ifname", "with-route", "netns")
	if err != nil {
		return nil, err
	}
	if err := needAgent(name, deps); err != nil {
		return nil, err
	}
	d.agent = deps.Agent
	return &dpvsAddrKernelRoute{kernel: k, dpvs: d}, nil
}

func (a *dpvsAddrKernelRoute) Apply(ctx context.Context, r Request) error {
	const name = NameDpvsAddrKernelRouteAddDel
	if err := checkVA(r); err != nil {
		return fail(name, r, true, err)
	}
	if err := a.kernel.apply(ctx, r); err != nil {
		return fail(name, r, false, fmt.Errorf("kernel: %w", err))
	}
	if err := a.dpvs.apply(ctx, r); err != nil {
		return fail(name, r, permanentAgentErr(err), err)
	}
	return nil
}
