package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// startWatch runs `hmctl watch args…` until the test ends; it returns once
// the subscriptions are in place.
func startWatch(t *testing.T, e *testEnv, args ...string) (stdout, stderr *syncBuffer) {
	t.Helper()
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cli{ctx: ctx, stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, now: time.Now}
	done := make(chan int, 1)
	go func() { done <- c.run(e.args("watch", args...)) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("watch exit %d: %s", code, stderr.String())
		}
	})
	wait.For(t, 5*time.Second, "watch subscribed", func() bool {
		return strings.Contains(stderr.String(), "watching ") || strings.Contains(stderr.String(), "hmctl:")
	})
	if !strings.Contains(stderr.String(), "watching ") {
		t.Fatalf("watch failed: %s", stderr.String())
	}
	return stdout, stderr
}

func TestWatch(t *testing.T) {
	e := newTestEnv(t)
	all := []string{"t1", "t2", "t3", "t4", "t5", "t6", "end"}
	// Sentinels published after t1..t6: once one is printed, everything
	// before it has been seen, so what is missing was filtered out.
	end := func(kind event.Kind, vs, obj, va string) *event.Transition {
		return &event.Transition{V: event.Version, Kind: kind, VS: vs, Object: obj, VA: va, From: event.Up, To: event.Down,
			Reason: event.ReasonAggr, Detail: "end", Gen: 9}
	}
	endVS := end(event.KindVS, "", vs80, "192.0.2.1")
	tests := []struct {
		name     string
		args     []string
		subjects string // what it says it subscribes to
		end      *event.Transition
		want     []string
	}{
		{"everything", nil, "hm.event.>", endVS, []string{"t1", "t2", "t3", "t4", "t5", "end"}},
		{"vs_filter", []string{vs80}, "hm.event.backend.> hm.event.vs.192_0_2_1-TCP-80", endVS, []string{"t1", "t2", "t4", "end"}},
		{"kind_filter", []string{"va"}, "hm.event.va.>", end(event.KindVA, "", "192.0.2.1", "192.0.2.1"), []string{"t3", "end"}},
		{"kind_and_vip", []string{"backend", "192.0.2.2"}, "hm.event.backend.>", end(event.KindBackend, vs443, be2, "192.0.2.2"), []string{"t5", "end"}},
		{"backend_pair", []string{vs80 + "/" + be1}, "hm.event.backend.192_0_2_1-TCP-80.198_51_100_1-TCP-8080",
			end(event.KindBackend, vs80, be1, "192.0.2.1"), []string{"t1", "t4", "end"}},
		{"raw_subject_with_audit", []string{"--all", "hm.event.vs.>", "hm.audit.>"}, "hm.audit.> hm.event.vs.>", endVS, []string{"t2", "t6", "end"}},
		{"all_adds_audit", []string{"--all", vs80}, "hm.action.> hm.audit.>", endVS, []string{"t1", "t2", "t4", "t6", "end"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr := startWatch(t, e, tc.args...)
			if !strings.Contains(stderr.String(), tc.subjects) {
				t.Errorf("subscribed to %q, want %q", stderr.String(), tc.subjects)
			}
			// Repeats of t1..t6 are duplicates to the stream, but a
			// core subscription sees every publish.
			seedTransitions(e)
			tc.end.Gen++ // a new message id each time
			tc.end.TS = time.Now().UnixNano()
			e.publishTransition(tc.end)
			wait.For(t, 5*time.Second, "watch printed the end", func() bool { return slices.Contains(markers(stdout.String(), all), "end") })
			if got := markers(stdout.String(), all); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v:\n%s", got, tc.want, stdout.String())
			}
		})
	}

	t.Run("json_lines", func(t *testing.T) {
		stdout, _ := startWatch(t, e, "--json", "va")
		e.publishTransition(&event.Transition{V: event.Version, Kind: event.KindVA, Object: "192.0.2.1", VA: "192.0.2.1",
			From: event.Up, To: event.Down, Reason: event.ReasonAggr, Detail: "json", Gen: 7, TS: time.Now().UnixNano()})
		wait.For(t, 5*time.Second, "a JSON line", func() bool { return strings.HasSuffix(stdout.String(), "\n") })
		var j jsonRecord
		if err := json.Unmarshal([]byte(stdout.String()), &j); err != nil {
			t.Fatalf("%v: %s", err, stdout.String())
		}
		var ev map[string]any
		if err := json.Unmarshal(j.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if j.Subject != "hm.event.va.192_0_2_1" || j.Time.IsZero() || ev["d"] != "json" || ev["to"] != "down" {
			t.Fatalf("json line: %s", stdout.String())
		}
	})
}
