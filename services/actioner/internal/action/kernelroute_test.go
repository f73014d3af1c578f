package action

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestKernelRouteErrors(t *testing.T) {
	ns := newTestNS(t)
	up := Request{Op: OpUp, VIP: netip.MustParseAddr("198.51.100.9")}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name     string
		params   map[string]string
		ctx      context.Context
		wantErr  error
		wantText string
	}{
		{name: "missing_link", params: map[string]string{"ifname": "hm-nope", "netns": ns.name},
			wantText: `interface "hm-nope" not found in network namespace ` + ns.name},
		{name: "missing_netns", params: map[string]string{"ifname": testLink, "netns": ns.name + "-gone"},
			wantText: `network namespace "` + ns.name + `-gone"`},
		{name: "cancelled_context", params: map[string]string{"ifname": testLink, "netns": ns.name},
			ctx: cancelled, wantErr: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, name := range []string{NameKernelRouteAddDel, NameKernelRouteAddDelVerdict} {
				a, err := New(name, tc.params, Deps{})
				if err != nil {
					t.Fatal(err)
				}
				c := tc.ctx
				if c == nil {
					c = testCtx(t)
				}
				errs := []error{a.Apply(c, up)}
				if v, ok := a.(Verdicter); ok {
					_, verr := v.Verdict(c, up)
					errs = append(errs, verr)
				}
				for _, err := range errs {
					if err == nil || IsPermanent(err) {
						t.Fatalf("%s: error %v, want a retryable error", name, err)
					}
					if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
						t.Errorf("%s: error %v, want %v", name, err, tc.wantErr)
					}
					if !strings.Contains(err.Error(), tc.wantText) {
						t.Errorf("%s: error %q, want it to say %q", name, err, tc.wantText)
					}
				}
			}
			if got := ns.state(t); len(got) != 0 {
				t.Errorf("a failed action changed the namespace: %q", got)
			}
		})
	}
}

// TestKernelRouteNetnsPath: the namespace may be given as a path too.
func TestKernelRouteNetnsPath(t *testing.T) {
	ns := newTestNS(t)
	a, err := New(NameKernelRouteAddDel, map[string]string{"ifname": testLink, "netns": "/run/netns/" + ns.name, "with-route": "true"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	applyOK(t, a, Request{Op: OpUp, VIP: netip.MustParseAddr("::ffff:198.51.100.9")})
	want := []string{"addr 198.51.100.9/32", "route 198.51.100.9/32"}
	if got := ns.state(t); !slices.Equal(got, want) {
		t.Errorf("state %q, want %q (mapped VIP unmapped)", got, want)
	}
}
