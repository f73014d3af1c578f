package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/aggregator"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// aggregatorConfig has a static service on documentation addresses: nothing
// probes them, the test publishes the results.
const aggregatorConfig = `
global:
  virtual-address: {actioner: Blank}
  virtual-server: {method: tcp, interval: 1s, down-retry: 999999, up-retry: 999999}
bus:
  leader-ttl: 1s
dpvs-agent:
  enabled: false
services:
  192.0.2.1-TCP-80:
    backends:
      - {addr: 198.51.100.1, port: 8080}
      - {addr: 198.51.100.2, port: 8080}
`

// startAggregator runs an aggregator in-process until the test ends and
// waits until it leads and has written its targets.
func startAggregator(t *testing.T, e *testEnv, id string) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "healthcheck.conf")
	if err := os.WriteFile(conf, []byte(aggregatorConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	nc := e.s.Connect()
	go func() {
		done <- aggregator.Run(ctx, aggregator.Options{Conn: nc, ID: id, ConfigFile: conf, HTTPAddr: "127.0.0.1:0",
			CheckpointEvery: 100 * time.Millisecond, Log: zerolog.Nop()})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("aggregator: %v", err)
		}
	})
	wait.For(t, 10*time.Second, "aggregator lease and targets", func() bool {
		en, err := e.layout.Leader.Get(t.Context(), subject.KeyLeader)
		return err == nil && string(en.Value()) == id && len(e.targets()) == 2
	})
}

func (e *testEnv) targets() []string {
	keys, err := e.layout.Targets.ListKeys(e.t.Context())
	if err != nil {
		return nil
	}
	var out []string
	for k := range keys.Keys() {
		out = append(out, k)
	}
	return out
}

// publishResults publishes one result of observer p1 for every target.
func (e *testEnv) publishResults(st event.State, seq uint64) {
	e.t.Helper()
	for _, tok := range e.targets() {
		tid, err := subject.ParseTargetToken(tok)
		if err != nil {
			e.t.Fatal(err)
		}
		e.publish(e.sp.Result(tid, "p1"), &event.ProbeResult{V: event.Version, Target: tok, Observer: "p1", Seq: seq,
			TS: time.Now().UnixNano(), State: st, Reason: event.ReasonL4OK, Interval: int64(time.Second)})
	}
}

func TestAggregatorCommands(t *testing.T) {
	e := newTestEnv(t)
	startAggregator(t, e, "agg-test")
	e.publishResults(event.Up, 1)
	wait.For(t, 10*time.Second, "VS up in status", func() bool {
		r := runCLI(e.args("status")...)
		return r.code == 0 && strings.Contains(r.stdout, "TCP 192.0.2.1:80") && strings.Count(r.stdout, "Healthy") == 4
	})

	t.Run("status_tree", func(t *testing.T) {
		r := runCLI(e.args("status")...)
		for _, want := range []string{"Active aggregator: agg-test", "192.0.2.1", "-> 198.51.100.1:8080", "-> 198.51.100.2:8080", "backends(up,down,unknown)=2,0,0"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("status_json", func(t *testing.T) {
		r := runCLI(e.args("status", "--json")...)
		var rep aggregator.APIReply
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("exit %d: %v\n%s%s", r.code, err, r.stdout, r.stderr)
		}
		if !rep.OK || len(rep.Tree) != 1 || len(rep.Tree[0].VSs) != 1 || len(rep.Tree[0].VSs[0].Backends) != 2 || rep.Info.ID != "agg-test" {
			t.Fatalf("reply: %+v", rep)
		}
	})

	pauseTests := []struct {
		name  string
		args  []string
		code  int
		out   string // in stdout (exit 0) or stderr
		audit string // verb of the audit record it must store
	}{
		{"pause_backend_with_vs", []string{"pause", be1, "--vs", vs80, "--reason", "kernel upgrade", "--who", "alice"}, 0,
			"paused " + be1 + " in " + vs80 + " by alice", "pause"},
		{"resume_vs_slash_backend", []string{"resume", vs80 + "/" + be1, "--who", "bob"}, 0,
			"resumed " + be1 + " in " + vs80 + " by bob", "resume"},
		{"pause_unknown_backend", []string{"pause", vs80 + "/198.51.100.9-TCP-8080", "--reason", "x", "--who", "carol"}, 1,
			"hmctl: pause " + vs80 + "/198.51.100.9-TCP-8080: ", "pause"},
		{"pause_needs_reason", []string{"pause", vs80 + "/" + be1}, 2, "--reason is required", ""},
		{"pause_needs_vs", []string{"pause", be1, "--reason", "x"}, 2, "which VS?", ""},
		{"pause_vs_disagrees", []string{"pause", vs80 + "/" + be1, "--vs", vs443, "--reason", "x"}, 2, "but --vs says", ""},
		{"pause_bad_backend", []string{"pause", vs80 + "/nonsense", "--reason", "x"}, 2, `backend "nonsense"`, ""},
	}
	for _, tc := range pauseTests {
		t.Run(tc.name, func(t *testing.T) {
			before := e.lastSeq(t, tc.audit)
			r := runCLI(e.args(tc.args[0], tc.args[1:]...)...)
			got := r.stdout
			if tc.code != 0 {
				got = r.stderr
			}
			if r.code != tc.code || !strings.Contains(got, tc.out) {
				t.Fatalf("exit %d (want %d), want %q:\n%s%s", r.code, tc.code, tc.out, r.stdout, r.stderr)
			}
			if tc.audit == "" {
				return
			}
			if after := e.lastSeq(t, tc.audit); after <= before {
				t.Fatalf("no new %s audit record", tc.audit)
			}
			m, err := e.layout.Events.GetLastMsgForSubject(t.Context(), e.sp.Audit(tc.audit))
			if err != nil {
				t.Fatal(err)
			}
			var rec event.AuditRecord
			if err := event.Unmarshal(m.Data, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.OK != (tc.code == 0) || !strings.Contains(tc.args[len(tc.args)-1], rec.Who) {
				t.Fatalf("audit record %+v", rec)
			}
		})
	}

	t.Run("history_shows_the_pause", func(t *testing.T) {
		r := runCLI(e.args("history", "--all", "--object", vs80+"/"+be1)...)
		for _, want := range []string{`pause ok  by alice: "kernel upgrade"`, "PAUSED", "resume ok  by bob"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("history lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("members", func(t *testing.T) {
		now := time.Now()
		m := &event.Member{V: event.Version, ID: "prober-a", Node: "lb1", Zone: "z1", Labels: map[string]string{"rack": "r7"},
			Started: now.Add(-time.Minute).UnixNano(), Heartbeat: now.UnixNano(), Owned: 42, Version: "v1.2.3"}
		b, err := event.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.layout.Members.Put(t.Context(), subject.KeyMember(m.ID), b); err != nil {
			t.Fatal(err)
		}
		r := runCLI(e.args("members")...)
		ls := lines(r.stdout)
		if r.code != 0 || len(ls) != 3 {
			t.Fatalf("exit %d, want a header, one prober and the lease:\n%s%s", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"prober-a", "lb1", "z1", "42", "ago", "v1.2.3", "rack=r7"} {
			if !strings.Contains(ls[1], want) {
				t.Errorf("member line lacks %q: %s", want, ls[1])
			}
		}
		if !strings.HasPrefix(ls[2], "aggregator lease: agg-test (revision ") {
			t.Errorf("lease line: %s", ls[2])
		}

		r = runCLI(e.args("members", "--json")...)
		var rep membersReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("exit %d: %v: %s%s", r.code, err, r.stdout, r.stderr)
		}
		if len(rep.Members) != 1 || rep.Members[0].Owned != 42 || rep.Members[0].Labels["rack"] != "r7" || rep.Leader == nil || rep.Leader.ID != "agg-test" {
			t.Fatalf("members json: %s", r.stdout)
		}
	})
}

// lastSeq is the sequence of the last audit record of a verb (0: none).
func (e *testEnv) lastSeq(t *testing.T, verb string) uint64 {
	if verb == "" {
		return 0
	}
	m, err := e.layout.Events.GetLastMsgForSubject(t.Context(), e.sp.Audit(verb))
	if err != nil {
		return 0
	}
	return m.Sequence
}

func TestNoAggregator(t *testing.T) {
	e := newTestEnv(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"status", e.args("status"), "hmctl: status: no active aggregator answered on hm.api.status"},
		{"pause", e.args("pause", vs80+"/"+be1, "--reason", "x"), "hmctl: pause: no active aggregator answered on hm.api.pause"},
		{"resume", e.args("resume", vs80+"/"+be1), "hmctl: resume: no active aggregator answered on hm.api.resume"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want 1 with %q: %s", r.code, tc.want, r.stderr)
			}
		})
	}
	t.Run("members_vacant_lease", func(t *testing.T) {
		r := runCLI(e.args("members")...)
		if r.code != 0 || !strings.Contains(r.stdout, "(no prober is heartbeating)") || !strings.Contains(r.stdout, "aggregator lease: vacant") {
			t.Fatalf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("other_prefix_has_no_stream", func(t *testing.T) {
		r := runCLI(e.args("history", "-subject-prefix", "other")...)
		if r.code != 1 || !strings.Contains(r.stderr, `stream OTHER_EVENTS not found: is healthmesh running on this NATS with subject prefix "other"?`) {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
	})
}
