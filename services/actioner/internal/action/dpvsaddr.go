package action

import (
	"context"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
)

// dpvsAddr is the DpvsAddrAddDel actioner: UP puts the VIP on a DPVS
// device (PUT /v2/device/{dpvs-ifname}/addr), DOWN removes it (DELETE). The
// agent answers 200 for "added or already there" and "deleted or already
// gone", so both are idempotent; any other status fails.
//
// Params: dpvs-ifname (required).
type dpvsAddr struct {
	name   string
	ifname string
	agent  *dpvsagent.Client
}

func newDpvsAddr(m map[string]string, deps Deps) (Actioner, error) {
	d, err := parseDpvsAddr(NameDpvsAddrAddDel, m)
	if err != nil {
		return nil, err
	}
	if err := needAgent(NameDpvsAddrAddDel, deps); err != nil {
		return nil, err
	}
	d.agent = deps.Agent
	return d, nil
}

// parseDpvsAddr reads the dpvs-agent params under actioner name; extra
// names more keys the caller accepts on top.
func parseDpvsAddr(name string, m map[string]string, extra ...string) (*dpvsAddr, error) {
	p := params{name: name, m: m}
	if err := p.only(append([]string{"dpvs-ifname"}, extra...)...); err != nil {
		return nil, err
	}
	ifname, err := p.dpvsIfname("dpvs-ifname")
	if err != nil {
		return nil, err
	}
	return &dpvsAddr{name: name, ifname: ifname}, nil
}

func (d *dpvsAddr) Apply(ctx context.Context, r Request) error {
	if err := checkVA(r); err != nil {
		return fail(d.name, r, true, err)
	}
	err := d.apply(ctx, r)
	return fail(d.name, r, permanentAgentErr(err), err)
}

// apply sends the VIP without a prefix length: the agent makes it /32 or
// /128, as DPVS's healthcheck relies on.
func (d *dpvsAddr) apply(ctx context.Context, r Request) error {
	if r.Op == OpUp {
		return d.agent.AddAddr(ctx, d.ifname, vip(r).String())
	}
	return d.agent.DelAddr(ctx, d.ifname, vip(r).String())
}
