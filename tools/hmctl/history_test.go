package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Documentation addresses: nothing is probed, the test publishes everything.
const (
	vs80  = "192.0.2.1-TCP-80"
	vs443 = "192.0.2.2-TCP-443"
	be1   = "198.51.100.1-TCP-8080"
	be2   = "198.51.100.2-TCP-8080"
)

// seedTransitions are t1..t5, told apart by their Detail; t1-t3 are stored
// before the returned time, t4 and t5 after it.
func seedTransitions(e *testEnv) (mid time.Time) {
	now := time.Now().UnixNano()
	vote := []event.Vote{{Observer: "p1", State: event.Up, Count: 2, TS: now}, {Observer: "p2", State: event.Down, Stale: true, TS: now}}
	for _, tr := range []*event.Transition{
		{Kind: event.KindBackend, VS: vs80, Object: be1, VA: "192.0.2.1", From: event.Unknown, To: event.Up, Reason: event.ReasonL4OK, Detail: "t1", Gen: 1, Votes: vote,
			Quorum: &event.Quorum{Need: 1, Observers: 2, Live: 1, Up: 1}},
		{Kind: event.KindVS, Object: vs80, VA: "192.0.2.1", From: event.Unknown, To: event.Up, Reason: event.ReasonAggr, Detail: "t2", Gen: 1,
			Counts: &event.Counts{Up: 1, Total: 1}},
		{Kind: event.KindVA, Object: "192.0.2.1", VA: "192.0.2.1", From: event.Unknown, To: event.Up, Reason: event.ReasonAggr, Detail: "t3", Gen: 1},
	} {
		tr.V, tr.TS = event.Version, now
		e.publishTransition(tr)
	}
	mid = time.Now()
	for _, tr := range []*event.Transition{
		{Kind: event.KindBackend, VS: vs80, Object: be1, VA: "192.0.2.1", From: event.Up, To: event.Down, Reason: event.ReasonL4CON, Detail: "t4", Gen: 2,
			Apply: &event.BackendApply{Weight: 0, Inhibited: true}},
		{Kind: event.KindBackend, VS: vs443, Object: be2, VA: "192.0.2.2", From: event.Up, To: event.Down, Reason: event.ReasonL4TOUT, Detail: "t5", Gen: 2},
	} {
		tr.V, tr.TS = event.Version, time.Now().UnixNano()
		e.publishTransition(tr)
	}
	e.publish(e.sp.Audit("pause"), &event.AuditRecord{V: event.Version, Verb: "pause", Who: "alice@lb1", Why: "t6",
		Object: vs80 + "/" + be1, OK: true, TS: time.Now().UnixNano()})
	return mid
}

func TestHistory(t *testing.T) {
	e := newTestEnv(t)
	mid := seedTransitions(e)
	all := []string{"t1", "t2", "t3", "t4", "t5", "t6"}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"everything_in_order", nil, []string{"t1", "t2", "t3", "t4", "t5"}},
		{"vs_object_and_its_backends", []string{"--object", vs80}, []string{"t1", "t2", "t4"}},
		{"address_object_is_everything_on_the_vip", []string{"--object", "192.0.2.1"}, []string{"t1", "t2", "t3", "t4"}},
		{"rip_object", []string{"--object", "198.51.100.2"}, []string{"t5"}},
		{"token_form_object", []string{"--object", "192_0_2_2-TCP-443"}, []string{"t5"}},
		{"backend_pair_object", []string{"--object", vs80 + "/" + be1}, []string{"t1", "t4"}},
		{"backend_in_any_vs", []string{"--object", be2}, []string{"t5"}},
		{"two_objects", []string{"--object", "192.0.2.2", "--object", "192.0.2.1"}, []string{"t1", "t2", "t3", "t4", "t5"}},
		{"kind_vs", []string{"--kind", "vs"}, []string{"t2"}},
		{"kind_and_object", []string{"--kind", "va,vs", "--object", "192.0.2.1"}, []string{"t2", "t3"}},
		{"raw_subject", []string{"--object", "hm.event.va.>"}, []string{"t3"}},
		{"since_rfc3339", []string{"--since", mid.Format(time.RFC3339Nano)}, []string{"t4", "t5"}},
		{"until_rfc3339", []string{"--until", mid.Format(time.RFC3339Nano)}, []string{"t1", "t2", "t3"}},
		{"since_until_duration", []string{"--since", "10m", "--until", mid.Format(time.RFC3339Nano), "--kind", "backend"}, []string{"t1"}},
		{"future_since_is_empty", []string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, nil},
		{"all_adds_audit", []string{"--all", "--object", vs80 + "/" + be1}, []string{"t1", "t4", "t6"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(e.args("history", tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := markers(r.stdout, all); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v:\n%s", got, tc.want, r.stdout)
			}
		})
	}

	t.Run("line_shows_reason_votes_and_apply", func(t *testing.T) {
		r := runCLI(e.args("history", "--object", vs80+"/"+be1)...)
		ls := lines(r.stdout)
		if len(ls) != 2 {
			t.Fatalf("want 2 lines:\n%s", r.stdout)
		}
		for _, want := range []string{"backend", vs80 + "/" + be1, "unknown", "→", "up", "L4OK", "votes p1=up p2=down(stale)", "quorum up=1 down=0 live=1 need=1"} {
			if !strings.Contains(ls[0], want) {
				t.Errorf("first line lacks %q: %s", want, ls[0])
			}
		}
		for _, want := range []string{"L4CON", "apply weight=0 inhibited"} {
			if !strings.Contains(ls[1], want) {
				t.Errorf("second line lacks %q: %s", want, ls[1])
			}
		}
	})

	t.Run("json_lines", func(t *testing.T) {
		r := runCLI(e.args("history", "--json", "--all")...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var prev uint64
		var objs []string
		for _, l := range lines(r.stdout) {
			var j struct {
				Subject string
				Seq     uint64
				Time    time.Time
				Event   map[string]any
			}
			if err := json.Unmarshal([]byte(l), &j); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			if j.Seq <= prev || j.Subject == "" || j.Time.IsZero() {
				t.Fatalf("bad subject/seq/time after #%d: %s", prev, l)
			}
			prev = j.Seq
			objs = append(objs, fmt.Sprintf("%v %v", j.Event["d"], j.Event["why"]))
		}
		want := []string{"t1 <nil>", "t2 <nil>", "t3 <nil>", "t4 <nil>", "t5 <nil>", "<nil> t6"}
		if !slices.Equal(objs, want) {
			t.Fatalf("got %q, want %q", objs, want)
		}
	})
}

func TestHistoryUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad_since", []string{"--since", "yesterday"}, "--since"},
		{"negative_since", []string{"--since", "-2h"}, "negative"},
		{"until_before_since", []string{"--since", "1h", "--until", "2h"}, "before"},
		{"bad_kind", []string{"--kind", "pool"}, `kind "pool"`},
		{"bad_object", []string{"--object", "not an id"}, `object "not an id"`},
		{"kind_excludes_object", []string{"--kind", "va", "--object", vs80 + "/" + be1}, "select nothing"},
		{"positional", []string{vs80}, "unexpected arguments"},
		{"bad_results_last", []string{"--results", "--results-last", "0"}, "--results-last"},
		{"bad_prefix", []string{"-subject-prefix", "a.b"}, "-subject-prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// No server: usage errors are found before connecting.
			r := runCLI(append([]string{"history", "-nats-url", "nats://127.0.0.1:1", "-connect-timeout", "10ms"}, tc.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want 2 with %q: %s", r.code, tc.want, r.stderr)
			}
		})
	}
}

func TestHistoryResults(t *testing.T) {
	e := newTestEnv(t)
	be := mustEndpoint(t, be1)
	target := subject.TargetID{Endpoint: be, Method: "tcp", Hash: subject.HashOf("tcp probe")}
	other := subject.TargetID{Endpoint: mustEndpoint(t, be2), Method: "tcp", Hash: subject.HashOf("tcp probe")}
	obsSeq := map[string]uint64{}
	result := func(tid subject.TargetID, obs string, st event.State, r event.Reason) uint64 {
		obsSeq[obs]++
		return e.publish(e.sp.Result(tid, obs), &event.ProbeResult{V: event.Version, Target: tid.Token(), Observer: obs, Node: "n-" + obs,
			Seq: obsSeq[obs], TS: time.Now().UnixNano(), State: st, Reason: r, RTT: int64(time.Millisecond), Interval: int64(time.Second)})
	}
	for range 4 {
		result(target, "p1", event.Up, event.ReasonL4OK)
	}
	result(target, "p2", event.Down, event.ReasonL4CON)
	otherSeq := result(other, "p1", event.Down, event.ReasonL4TOUT)
	result(target, "p2", event.Down, event.ReasonL4CON)
	result(target, "p1", event.Down, event.ReasonL4CON)
	result(target, "p1", event.Down, event.ReasonL4CON)
	deciding := result(target, "p1", event.Down, event.ReasonL4CON)
	result(target, "p1", event.Down, event.ReasonL4CON) // after the decision: not shown
	e.publishTransition(&event.Transition{V: event.Version, Kind: event.KindBackend, VS: vs80, Object: be1, VA: "192.0.2.1",
		From: event.Up, To: event.Down, Reason: event.ReasonL4CON, Detail: "decided", Gen: 2, TS: time.Now().UnixNano(),
		Target: target.Token(), ResultSeq: deciding})
	e.publishTransition(&event.Transition{V: event.Version, Kind: event.KindBackend, VS: vs80, Object: be2, VA: "192.0.2.1",
		From: event.Up, To: event.Down, Reason: event.ReasonPaused, Detail: "paused", Gen: 1, TS: time.Now().UnixNano()})
	// An operator transition records the stream position it was decided at,
	// here another target's result.
	e.publishTransition(&event.Transition{V: event.Version, Kind: event.KindBackend, VS: vs443, Object: be1, VA: "192.0.2.2",
		From: event.Up, To: event.Down, Reason: event.ReasonPaused, Detail: "paused-at", Gen: 1, TS: time.Now().UnixNano(),
		Target: target.Token(), ResultSeq: otherSeq})

	t.Run("text", func(t *testing.T) {
		r := runCLI(e.args("history", "--results", "--object", vs80+"/"+be1)...)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		ls := lines(r.stdout)
		if len(ls) != 2+5+2 || !strings.Contains(ls[0], `"decided"`) || !strings.Contains(ls[1], "results of target "+target.Token()) {
			t.Fatalf("want the transition, the target, then 5 results of p1 and 2 of p2:\n%s", r.stdout)
		}
		var p1, p2, decidingLines int
		for _, l := range ls[2:] {
			if !strings.HasPrefix(l, "    result #") || strings.Contains(l, "L4TOUT") {
				t.Fatalf("not a result of the target: %s", l)
			}
			switch {
			case strings.Contains(l, "p1@n-p1"):
				p1++
			case strings.Contains(l, "p2@n-p2"):
				p2++
			}
			if strings.Contains(l, "deciding") {
				decidingLines++
				if !strings.Contains(l, fmt.Sprintf("#%-7d", deciding)) {
					t.Errorf("deciding mark on the wrong result: %s", l)
				}
			}
		}
		if p1 != 5 || p2 != 2 || decidingLines != 1 {
			t.Fatalf("p1 %d (want 5), p2 %d (want 2), deciding %d (want 1):\n%s", p1, p2, decidingLines, r.stdout)
		}
		if got := ls[len(ls)-1]; !strings.Contains(got, "down") || !strings.Contains(got, "deciding") {
			t.Fatalf("the last result shown must be the deciding one: %s", got)
		}
	})

	t.Run("results_last", func(t *testing.T) {
		r := runCLI(e.args("history", "--results", "--results-last", "1", "--object", vs80+"/"+be1)...)
		if n := len(lines(r.stdout)); r.code != 0 || n != 4 {
			t.Fatalf("exit %d, %d lines, want the transition and one result per observer:\n%s%s", r.code, n, r.stdout, r.stderr)
		}
	})

	t.Run("not_decided_by_a_result", func(t *testing.T) {
		r := runCLI(e.args("history", "--results", "--object", vs80+"/"+be2)...)
		if r.code != 0 || !strings.Contains(r.stdout, "results: none: this transition (PAUSED) was not decided by a probe result") {
			t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("operator_transition_shows_results_up_to_its_position", func(t *testing.T) {
		r := runCLI(e.args("history", "--results", "--object", vs443+"/"+be1)...)
		ls := lines(r.stdout)
		if r.code != 0 || len(ls) != 2+4+1 || strings.Contains(r.stdout, "deciding") || strings.Contains(r.stdout, "L4TOUT") {
			t.Fatalf("exit %d, want the transition, the target and the 5 results before #%d, none deciding:\n%s%s", r.code, otherSeq, r.stdout, r.stderr)
		}
	})

	t.Run("json", func(t *testing.T) {
		r := runCLI(e.args("history", "--json", "--results", "--object", vs80+"/"+be1)...)
		var j jsonRecord
		if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
			t.Fatalf("exit %d: %v: %s%s", r.code, err, r.stdout, r.stderr)
		}
		n := 0
		for _, res := range j.Results {
			if res.Deciding {
				n++
				if res.Seq != deciding {
					t.Errorf("deciding result #%d, want #%d", res.Seq, deciding)
				}
			}
		}
		if len(j.Results) != 7 || n != 1 || j.ResultsNote != "" {
			t.Fatalf("results %d (want 7), deciding %d, note %q", len(j.Results), n, j.ResultsNote)
		}
	})

	t.Run("aged_out", func(t *testing.T) {
		if err := e.layout.Results.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		r := runCLI(e.args("history", "--results", "--object", vs80+"/"+be1)...)
		if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("results: AGED OUT of HM_RESULTS: result #%d is gone", deciding)) ||
			strings.Contains(r.stdout, "    result #") {
			t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
}

func TestHistoryResultsCoreMode(t *testing.T) {
	e := newTestEnv(t)
	if _, err := bus.Ensure(t.Context(), e.js, e.sp, bus.Settings{Results: bus.ResultsCore}); err != nil {
		t.Fatal(err)
	}
	seedTransitions(e)
	if r := runCLI(e.args("history")...); r.code != 0 || !strings.Contains(r.stdout, "t4") {
		t.Fatalf("history in core mode: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	r := runCLI(e.args("history", "--results")...)
	if r.code == 0 || !strings.Contains(r.stderr, "bus.results: core") {
		t.Fatalf("history --results in core mode: exit %d, want an error naming bus.results: core: %s", r.code, r.stderr)
	}
}
