package action

import "context"

// kernelRouteVerdict is the KernelRouteAddDelVerdict actioner:
// KernelRouteAddDel (same params, same actions) that can also tell whether
// the VIP is on the interface, so a periodic sync detects and repairs
// changes made behind its back.
type kernelRouteVerdict struct{ *kernelRoute }

func newKernelRouteVerdict(m map[string]string, _ Deps) (Actioner, error) {
	k, err := parseKernelRoute(NameKernelRouteAddDelVerdict, m)
	if err != nil {
		return nil, err
	}
	return kernelRouteVerdict{k}, nil
}

// Verdict lists the interface's addresses (and routes, with with-route) and
// reports whether the VIP is present; see Verdicter.
func (k kernelRouteVerdict) Verdict(ctx context.Context, r Request) (bool, error) {
	if err := checkVA(r); err != nil {
		return false, fail(k.name, r, true, err)
	}
	present, err := k.present(ctx, r)
	return present, fail(k.name, r, false, err)
}
