package executor

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/healthmesh/healthmesh/services/actioner/internal/action"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func newExec(t *testing.T) (*Executor, *metrics.Metrics) {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	return New(Config{Node: "lb1", Metrics: m}), m
}

var upVA = action.Request{Op: action.OpUp, VIP: netip.MustParseAddr("192.0.2.1")}

func TestDo_classifies_outcomes(t *testing.T) {
	tests := []struct {
		name          string
		spec          event.ActionSpec
		req           action.Request
		wantPermanent bool
		wantErr       string
		wantLabel     string // actioner label of the metric
		wantResult    string
	}{
		{name: "blank_succeeds", spec: event.ActionSpec{Actioner: "Blank"}, req: upVA,
			wantLabel: "Blank", wantResult: metrics.ResultOK},
		{name: "unknown_actioner_is_permanent", spec: event.ActionSpec{Actioner: "Nope"}, req: upVA,
			wantPermanent: true, wantErr: `unknown actioner "Nope"`, wantLabel: "unknown", wantResult: metrics.ResultPermanent},
		{name: "bad_params_are_permanent", spec: event.ActionSpec{Actioner: "KernelRouteAddDel"}, req: upVA,
			wantPermanent: true, wantErr: `param "ifname": required`, wantLabel: "KernelRouteAddDel", wantResult: metrics.ResultPermanent},
		{name: "no_agent_is_permanent", spec: event.ActionSpec{Actioner: "BackendUpdate"}, req: upVA,
			wantPermanent: true, wantErr: "no dpvs-agent configured", wantLabel: "BackendUpdate", wantResult: metrics.ResultPermanent},
		{name: "kernel_route_missing_link_is_retryable", req: upVA,
			spec:    event.ActionSpec{Actioner: "KernelRouteAddDel", Params: map[string]string{"ifname": "hm-no-such"}},
			wantErr: `interface "hm-no-such" not found`, wantLabel: "KernelRouteAddDel", wantResult: metrics.ResultError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, m := newExec(t)
			err := x.Do(context.Background(), Job{Spec: tc.spec, Request: tc.req, Kind: event.KindVA, Op: "UP", Attempt: 1})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if action.IsPermanent(err) != tc.wantPermanent {
				t.Errorf("permanent = %v, want %v", action.IsPermanent(err), tc.wantPermanent)
			}
			if got := testutil.ToFloat64(m.Actions.WithLabelValues(tc.wantLabel, tc.wantResult)); got != 1 {
				t.Errorf("actions_total{%s,%s} = %v, want 1", tc.wantLabel, tc.wantResult, got)
			}
		})
	}
}

func TestDo_stopping_is_not_recorded(t *testing.T) {
	x, m := newExec(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	spec := event.ActionSpec{Actioner: "KernelRouteAddDel", Params: map[string]string{"ifname": "lo"}}
	err := x.Do(ctx, Job{Spec: spec, Request: upVA, Kind: event.KindVA, Op: "UP"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := testutil.CollectAndCount(m.Actions); n != 0 {
		t.Errorf("%d action series recorded for an action cut short by shutdown", n)
	}
}

func TestActioner_is_cached_by_name_and_params(t *testing.T) {
	x, _ := newExec(t)
	get := func(params map[string]string) action.Actioner {
		a, err := x.Actioner(event.ActionSpec{Actioner: "KernelRouteAddDel", Params: params}, upVA)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := get(map[string]string{"ifname": "lo", "with-route": "yes"})
	if b := get(map[string]string{"with-route": "yes", "ifname": "lo"}); a != b {
		t.Error("same name and params built twice")
	}
	if c := get(map[string]string{"ifname": "lo"}); a == c {
		t.Error("different params share an actioner")
	}
}

func TestTimeout_and_objectToken(t *testing.T) {
	x, _ := newExec(t)
	if got := x.Timeout(event.ActionSpec{}); got != DefaultTimeout {
		t.Errorf("default timeout %v", got)
	}
	if got := x.Timeout(event.ActionSpec{Timeout: int64(300 * time.Millisecond)}); got != 300*time.Millisecond {
		t.Errorf("spec timeout %v", got)
	}
	vs := action.Request{Op: action.OpApply, VIP: netip.MustParseAddr("2001:db8::1"), Proto: subject.UDP, Port: 53}
	tests := []struct {
		name string
		req  action.Request
		want string
	}{
		{name: "va", req: upVA, want: "192_0_2_1"},
		{name: "vs", req: vs, want: "2001-db8--1-UDP-53"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := objectToken(tc.req); got != tc.want {
				t.Errorf("objectToken = %q, want %q", got, tc.want)
			}
		})
	}
}
