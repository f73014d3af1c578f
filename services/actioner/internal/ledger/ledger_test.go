package ledger

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

const (
	keyBE1 = "backend.192_0_2_1-TCP-80.192_0_2_11-TCP-8080"
	keyBE2 = "backend.192_0_2_1-TCP-80.192_0_2_12-TCP-8080"
	keyBE3 = "backend.192_0_2_2-UDP-53.192_0_2_13-UDP-53"
	keyVA1 = "va.192_0_2_1"
)

func TestObserve_flags_older_sequences(t *testing.T) {
	l := New()
	steps := []struct {
		key       string
		seq       uint64
		wantStale bool
	}{
		{keyBE1, 10, false},
		{keyBE1, 10, false}, // the same event redelivered
		{keyBE1, 20, false},
		{keyBE1, 10, true}, // an old one redelivered after a newer one
		{keyBE2, 5, false}, // other objects have their own order
		{keyBE1, 21, false},
	}
	for i, st := range steps {
		if got := l.Observe(st.key, st.seq); got != st.wantStale {
			t.Errorf("step %d: Observe(%s, %d) = %v, want %v", i, st.key, st.seq, got, st.wantStale)
		}
	}
}

func TestWant_and_Record(t *testing.T) {
	tr := func(gen uint64) *event.Transition { return &event.Transition{Gen: gen, To: event.Down} }
	errAgent := errors.New("agent down")
	type step struct {
		do           func(l *Ledger)
		wantGen      uint64
		wantStatus   Status
		wantFailures int
		unchanged    bool // Changed stays at or under the Mark taken before the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "success_applies", steps: []step{
			{do: func(l *Ledger) { l.Want(keyBE1, tr(1)) }, wantGen: 1, wantStatus: Unconfirmed},
			{do: func(l *Ledger) { l.Record(keyBE1, 1, nil, false) }, wantGen: 1, wantStatus: Applied},
		}},
		{name: "failures_count_until_success", steps: []step{
			{do: func(l *Ledger) { l.Want(keyBE1, tr(1)) }, wantGen: 1},
			{do: func(l *Ledger) { l.Record(keyBE1, 1, errAgent, false) }, wantGen: 1, wantStatus: Failed, wantFailures: 1},
			{do: func(l *Ledger) { l.Record(keyBE1, 1, errAgent, false) }, wantGen: 1, wantStatus: Failed, wantFailures: 2},
			{do: func(l *Ledger) { l.Record(keyBE1, 1, nil, false) }, wantGen: 1, wantStatus: Applied},
		}},
		{name: "permanent_is_rejected", steps: []step{
			{do: func(l *Ledger) { l.Want(keyBE1, tr(1)) }, wantGen: 1},
			{do: func(l *Ledger) { l.Record(keyBE1, 1, errAgent, true) }, wantGen: 1, wantStatus: Rejected, wantFailures: 1},
			{do: func(l *Ledger) { l.Want(keyBE1, tr(1)) }, wantGen: 1, wantStatus: Rejected, wantFailures: 1, unchanged: true},
			{do: func(l *Ledger) { l.Want(keyBE1, tr(2)) }, wantGen: 2, wantStatus: Unconfirmed},
		}},
		{name: "older_generation_is_ignored", steps: []step{
			{do: func(l *Ledger) { l.Want(keyBE1, tr(5)) }, wantGen: 5},
			{do: func(l *Ledger) { l.Record(keyBE1, 5, nil, false) }, wantGen: 5, wantStatus: Applied},
			{do: func(l *Ledger) { l.Want(keyBE1, tr(4)) }, wantGen: 5, wantStatus: Applied, unchanged: true},
		}},
		{name: "outcome_of_an_old_generation_is_ignored", steps: []step{
			{do: func(l *Ledger) { l.Want(keyBE1, tr(1)) }, wantGen: 1},
			{do: func(l *Ledger) { l.Want(keyBE1, tr(2)) }, wantGen: 2},
			{do: func(l *Ledger) { l.Record(keyBE1, 1, nil, false) }, wantGen: 2, wantStatus: Unconfirmed, unchanged: true},
		}},
		{name: "forget_then_want_again", steps: []step{
			{do: func(l *Ledger) { l.Want(keyBE1, tr(3)); l.Record(keyBE1, 3, nil, false) }, wantGen: 3, wantStatus: Applied},
			{do: func(l *Ledger) { l.Forget(keyBE1); l.Want(keyBE1, tr(1)) }, wantGen: 1, wantStatus: Unconfirmed},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := New()
			for i, st := range tc.steps {
				mark := l.Mark()
				st.do(l)
				o, ok := l.Get(keyBE1)
				if !ok {
					t.Fatalf("step %d: no entry", i)
				}
				if o.Desired.Gen != st.wantGen || o.Status != st.wantStatus || o.Failures != st.wantFailures {
					t.Errorf("step %d: gen %d %s failures %d, want gen %d %s failures %d",
						i, o.Desired.Gen, o.Status, o.Failures, st.wantGen, st.wantStatus, st.wantFailures)
				}
				if changed := o.Changed > mark; changed == st.unchanged {
					t.Errorf("step %d: changed since the mark = %v, want %v", i, changed, !st.unchanged)
				}
			}
		})
	}
}

func TestBackends_VAs_and_Initial(t *testing.T) {
	l := New()
	l.Want(keyBE1, &event.Transition{Gen: 1})
	l.Want(keyVA1, &event.Transition{Gen: 1})
	l.Synced(event.KindBackend)
	if l.IsSynced() {
		t.Fatal("synced with only the backend entries loaded")
	}
	l.Synced(event.KindVA)
	if !l.IsSynced() {
		t.Fatal("not synced after both loads")
	}
	l.Want(keyBE2, &event.Transition{Gen: 1})
	l.Want(keyBE3, &event.Transition{Gen: 1})

	var got []string
	for vs, objs := range l.Backends() {
		for _, o := range objs {
			got = append(got, fmt.Sprintf("%s %s initial=%v", vs, o.Key, o.Initial))
		}
	}
	slices.Sort(got)
	want := []string{
		"192_0_2_1-TCP-80 " + keyBE1 + " initial=true",
		"192_0_2_1-TCP-80 " + keyBE2 + " initial=false",
		"192_0_2_2-UDP-53 " + keyBE3 + " initial=false",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Backends:\n got %q\nwant %q", got, want)
	}
	if vas := l.VAs(); len(vas) != 1 || vas[0].Key != keyVA1 || !vas[0].Initial {
		t.Errorf("VAs = %+v", vas)
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		want    Key
		wantErr string
	}{
		{name: "backend", key: keyBE1, want: Key{Kind: event.KindBackend,
			VS:      subject.VSID{Addr: netip.MustParseAddr("192.0.2.1"), Proto: subject.TCP, Port: 80},
			Backend: subject.BackendID{Addr: netip.MustParseAddr("192.0.2.11"), Proto: subject.TCP, Port: 8080}}},
		{name: "va_ipv6", key: "va.2001-db8--1", want: Key{Kind: event.KindVA, VA: netip.MustParseAddr("2001:db8::1")}},
		{name: "vs_key", key: "vs.192_0_2_1-TCP-80", wantErr: "want backend.<vs>.<backend> or va.<va>"},
		{name: "backend_without_backend", key: "backend.192_0_2_1-TCP-80", wantErr: "want backend.<vs>.<backend>"},
		{name: "backend_extra_token", key: "backend.192_0_2_1-TCP-80.x.y", wantErr: "want backend.<vs>.<backend>"},
		{name: "bad_vs_proto", key: "backend.192_0_2_1-SCTP-80.192_0_2_11-TCP-8080", wantErr: "vs:"},
		{name: "bad_backend_addr", key: "backend.192_0_2_1-TCP-80.192_0_2_300-TCP-8080", wantErr: "backend:"},
		{name: "bad_va", key: "va.192_0_2", wantErr: "va:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.key)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrKey mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestOutdated_and_Count(t *testing.T) {
	l := New()
	l.Want(keyBE1, &event.Transition{Gen: 5})
	l.Want(keyVA1, &event.Transition{Gen: 1})
	tests := []struct {
		name string
		key  string
		gen  uint64
		want bool
	}{
		{name: "older_generation", key: keyBE1, gen: 4, want: true},
		{name: "same_generation", key: keyBE1, gen: 5, want: false},
		{name: "newer_generation", key: keyBE1, gen: 6, want: false},
		{name: "unknown_object", key: keyBE2, gen: 1, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := l.Outdated(tc.key, tc.gen); got != tc.want {
				t.Errorf("Outdated(%s, %d) = %v, want %v", tc.key, tc.gen, got, tc.want)
			}
		})
	}
	if b, v := l.Count(); b != 1 || v != 1 {
		t.Errorf("Count = %d, %d; want 1, 1", b, v)
	}
}

func TestWant_keeps_what_applying_needs_and_shares_specs(t *testing.T) {
	l := New()
	spec := func(vip string) *event.ActionSpec {
		return &event.ActionSpec{Actioner: "BackendUpdate", Params: map[string]string{"vip": vip}, Timeout: 2e9}
	}
	full := func(gen uint64, s *event.ActionSpec) *event.Transition {
		return &event.Transition{
			Kind: event.KindBackend, Object: "192.0.2.11-TCP-8080", VS: "192.0.2.1-TCP-80", From: event.Up, To: event.Down,
			Reason: "L4CON", Detail: "connection refused", Gen: gen, Votes: []event.Vote{{Observer: "p1", State: event.Down}},
			Counts: &event.Counts{Up: 1, Total: 2},
			Apply:  &event.BackendApply{VIP: "192.0.2.1", VPort: 80, Proto: "TCP", Addr: "192.0.2.11", Port: 8080, Weight: 0, UserWeight: 5, Inhibited: true, Version: "7"},
			Action: s,
		}
	}
	l.Want(keyBE1, full(3, spec("a")))
	l.Want(keyBE2, full(1, spec("a"))) // an equal spec, another copy
	l.Want(keyVA1, &event.Transition{Kind: event.KindVA, To: event.Up, Gen: 2, Action: spec("b")})

	o1, _ := l.Get(keyBE1)
	o2, _ := l.Get(keyBE2)
	want := Desired{Gen: 3, From: event.Up, To: event.Down, Reason: "L4CON", Action: o1.Desired.Action, Apply: true, Inhibited: true, Version: "7"}
	if *o1.Desired != want {
		t.Errorf("backend desired = %+v, want %+v", *o1.Desired, want)
	}
	if o1.Desired.Action != o2.Desired.Action || o1.Desired.Action.Params["vip"] != "a" {
		t.Errorf("equal specs not shared: %p %p", o1.Desired.Action, o2.Desired.Action)
	}
	va, _ := l.Get(keyVA1)
	if va.Desired.Apply || va.Desired.To != event.Up || va.Desired.Action.Params["vip"] != "b" {
		t.Errorf("va desired = %+v", *va.Desired)
	}

	// A configuration changing the spec over and over: the ones no object
	// asks for any more are dropped.
	for i := range 1000 {
		l.Want(keyBE1, full(uint64(4+i), spec(fmt.Sprint("c", i))))
	}
	if n := len(l.specs); n > 64 {
		t.Errorf("%d specs kept after 1,000 changes of one object's spec, want at most 64", n)
	}
	if o, _ := l.Get(keyBE2); o.Desired.Action.Params["vip"] != "a" {
		t.Errorf("a spec still used was dropped: %+v", o.Desired.Action)
	}
	if o, _ := l.Get(keyBE1); o.Desired.Action.Params["vip"] != "c999" || o.Desired.Gen != 1003 {
		t.Errorf("latest = %+v %+v", *o.Desired, o.Desired.Action)
	}
}
