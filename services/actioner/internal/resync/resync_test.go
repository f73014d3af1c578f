package resync

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/healthmesh/healthmesh/services/actioner/internal/executor"
	"github.com/healthmesh/healthmesh/services/actioner/internal/ledger"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/shared/event"
)

// TestStep_due_times drives Step with a fake clock over VAs whose actioner
// is Blank (no verdict): only objects not applied yet are re-applied, each
// when its sync time says.
func TestStep_due_times(t *testing.T) {
	const (
		vaInitial  = "va.192_0_2_1" // in hm_state at start: due at once
		vaLater    = "va.192_0_2_2" // appears later, sync time 5s
		vaRejected = "va.192_0_2_3" // failed permanently: left alone
		vaUnknown  = "va.192_0_2_4" // desired unknown: nothing to assert
	)
	blank := func(sync time.Duration) *event.ActionSpec {
		return &event.ActionSpec{Actioner: "Blank", SyncTime: int64(sync)}
	}
	tr := func(to event.State, sync time.Duration) *event.Transition {
		return &event.Transition{Kind: event.KindVA, To: to, Gen: 1, Action: blank(sync)}
	}

	t0 := time.Unix(1_700_000_000, 0)
	now := t0
	m := metrics.New(prometheus.NewRegistry())
	l := ledger.New()
	r := New(Config{
		Exec:   executor.New(executor.Config{Node: "lb1", Metrics: m}),
		Ledger: l, Metrics: m, Now: func() time.Time { return now },
	})
	ctx := context.Background()

	if got := r.Step(ctx); got != 100*time.Millisecond {
		t.Fatalf("Step before hm_state is loaded waits %v, want 100ms", got)
	}
	l.Want(vaInitial, tr(event.Up, 0))
	l.Want(vaRejected, tr(event.Down, 0))
	l.Record(vaRejected, 1, context.DeadlineExceeded, true)
	l.Synced(event.KindBackend)
	l.Synced(event.KindVA)

	repairs := func() float64 { return testutil.ToFloat64(m.SyncRepairs.WithLabelValues("Blank")) }
	steps := []struct {
		name        string
		at          time.Duration // since t0
		add         string        // key to add before the step
		addTr       *event.Transition
		wantRepairs float64 // cumulative
		wantNext    time.Duration
	}{
		{name: "initial_object_at_once", at: 0, wantRepairs: 1, wantNext: idle},
		// Nothing is due until the next look: an object added meanwhile
		// is first seen then.
		{name: "no_look_before_the_next", at: time.Second, add: vaLater, addTr: tr(event.Up, 5*time.Second), wantRepairs: 1, wantNext: idle - time.Second},
		{name: "new_object_waits_its_period", at: idle, add: vaUnknown, addTr: tr(event.Unknown, time.Second), wantRepairs: 1, wantNext: time.Second},
		{name: "unknown_is_never_asserted", at: idle + time.Second, wantRepairs: 1, wantNext: time.Second},
		{name: "new_object_due", at: idle + 5*time.Second, wantRepairs: 2, wantNext: time.Second},
		{name: "next_due_is_reported", at: idle + 5*time.Second + 500*time.Millisecond, wantRepairs: 2, wantNext: 500 * time.Millisecond},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now = t0.Add(st.at)
			if st.add != "" {
				l.Want(st.add, st.addTr)
			}
			next := r.Step(ctx)
			if got := repairs(); got != st.wantRepairs {
				t.Errorf("repairs = %v, want %v", got, st.wantRepairs)
			}
			if next != st.wantNext {
				t.Errorf("next = %v, want %v", next, st.wantNext)
			}
		})
	}
	if o, _ := l.Get(vaRejected); o.Status != ledger.Rejected {
		t.Errorf("rejected VA: %s", o.Status)
	}
	for _, k := range []string{vaInitial, vaLater} {
		if o, _ := l.Get(k); o.Status != ledger.Applied {
			t.Errorf("%s: %s, want applied", k, o.Status)
		}
	}
}
