package deploytest

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// TestComposeFaults runs the fault scenarios of the distributed deployment
// against the compose stack, one after the other on the same stack; each
// leaves every backend up and applied. Enabled by HM_E2E_COMPOSE=1.
func TestComposeFaults(t *testing.T) {
	s := startStack(t)
	for _, sc := range []struct {
		name string
		run  func(*stack, *testing.T)
	}{
		{"scale_probers_1_to_3_then_lose_one", (*stack).scaleAndLoseProber},
		{"full_mesh_partition", (*stack).fullMeshPartition},
		{"aggregator_failover", (*stack).aggregatorFailover},
		{"actioner_backlog", (*stack).actionerBacklog},
		{"nats_restart", (*stack).natsRestart},
		{"prober_credentials", (*stack).proberCredentials},
	} {
		t.Run(sc.name, func(t *testing.T) {
			sub := s.with(t)
			defer func() {
				if t.Failed() {
					sub.heal() // so the next scenario starts from a healthy stack
				}
			}()
			sub.waitAllUp(90 * time.Second)
			sc.run(sub, t)
			sub.waitAllUp(90 * time.Second)
		})
	}
}

// with is s for a subtest: failures go to t.
func (s *stack) with(t *testing.T) *stack {
	c := *s
	c.t = t
	return &c
}

// wantObservers is how many probers must probe tg with nodes prober nodes.
func wantObservers(tg event.Target, nodes int) int {
	if tg.Observers == event.ObserversAll || tg.Observers > nodes {
		return nodes
	}
	return tg.Observers
}

// coverage says how the targets are probed in [from, to): nil when each is
// probed by exactly the probers it should be among alive, else what is off.
// Results of the gone probers (killed: their last ones may still arrive)
// are ignored.
func (s *stack) coverage(targets map[string]event.Target, alive, gone []string, from, to time.Time) error {
	var bad []string
	for id, tg := range targets {
		obs := slices.DeleteFunc(s.results.observers(id, from, to), func(o string) bool { return slices.Contains(gone, o) })
		slices.Sort(obs)
		want := wantObservers(tg, len(alive))
		strange := slices.ContainsFunc(obs, func(o string) bool { return !slices.Contains(alive, o) })
		if len(obs) != want || strange {
			bad = append(bad, fmt.Sprintf("%s (observers %d): probed by %v, want %d of %v", id, tg.Observers, obs, want, alive))
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%s", strings.Join(bad, "\n  "))
	}
	return nil
}

// steadyCoverage waits until hm_members holds exactly the alive probers and
// every target is probed by exactly its R probers over the last two
// intervals, then requires that to hold for four more intervals.
//
// Coverage alone is not a settled state: while probers join one after the
// other, an intermediate membership can give each target exactly R probers
// for a moment, and the next join then moves targets again. So the window
// counted starts one interval after hm_members last changed to the alive
// set (time for the old owners to stop and the new ones to probe).
func (s *stack) steadyCoverage(targets map[string]event.Target, alive []string, settle time.Duration) {
	s.t.Helper()
	window := 2 * probeInterval
	var want []string // the alive probers' hm_members keys
	for _, o := range alive {
		want = append(want, subject.KeyMember(o))
	}
	slices.Sort(want)
	var complete time.Time // since when hm_members has held exactly alive
	var err error
	if !poll(settle, func() bool {
		now := time.Now()
		members := slices.Sorted(slices.Values(s.members()))
		if !slices.Equal(members, want) {
			complete = time.Time{}
			err = fmt.Errorf("hm_members holds %v; want the alive probers %v", members, want)
			return false
		}
		if complete.IsZero() {
			complete = now
		}
		if now.Sub(complete) < probeInterval+window {
			err = fmt.Errorf("hm_members complete since %v only", now.Sub(complete).Round(time.Millisecond))
			return false
		}
		err = s.coverage(targets, alive, nil, now.Add(-window), now)
		return err == nil
	}) {
		s.t.Fatalf("targets not probed by exactly R probers within %v:\n  %v", settle, err)
	}
	// Then it must hold: watch for a break over four intervals.
	if wait.Until(4*probeInterval, func() bool {
		now := time.Now()
		err = s.coverage(targets, alive, nil, now.Add(-window), now)
		return err != nil
	}) {
		s.t.Fatalf("coverage not steady:\n  %v", err)
	}
}

// scaleAndLoseProber: 1 → 3 probers, every target probed by exactly R of
// them; one is killed (no clean leave), its targets are covered again within
// the member TTL plus one interval; no transition at all from the reshards.
func (s *stack) scaleAndLoseProber(t *testing.T) {
	seq := s.events.last()
	targets := s.targets()
	if len(targets) != len(demoBackends) {
		t.Fatalf("%d targets in hm_targets; want %d", len(targets), len(demoBackends))
	}
	one := s.containers("prober")
	s.steadyCoverage(targets, []string{observer(one[0])}, 15*time.Second)

	s.composeOK(3*time.Minute, "up", "-d", "--no-recreate", "--scale", "prober=3")
	ids := s.containers("prober")
	if len(ids) != 3 {
		t.Fatalf("%d prober containers after scaling; want 3", len(ids))
	}
	var alive []string
	for _, id := range ids {
		alive = append(alive, observer(id))
	}
	s.steadyCoverage(targets, alive, 30*time.Second)

	victim := ids[0]
	killed := time.Now()
	s.dockerOK("kill", victim)
	alive = slices.DeleteFunc(alive, func(o string) bool { return o == observer(victim) })
	var err error
	bound := memberTTL + probeInterval + time.Second
	if !wait.Until(bound+10*time.Second, func() bool {
		err = s.coverage(targets, alive, []string{observer(victim)}, killed, time.Now())
		return err == nil
	}) {
		t.Fatalf("targets not covered again by the surviving probers:\n  %v", err)
	}
	took := time.Since(killed)
	t.Logf("prober %s killed: every target covered again by the other two after %v (member TTL %v + interval %v)",
		observer(victim), took.Round(10*time.Millisecond), memberTTL, probeInterval)
	if took > bound {
		t.Errorf("coverage came back after %v; want within member TTL + one interval (+1s slack) = %v", took, bound)
	}
	s.steadyCoverage(targets, alive, 15*time.Second)
	if trs := s.events.since(seq, func(r record) bool { return r.T != nil }); len(trs) > 0 {
		t.Errorf("the reshards caused transitions:\n%s", s.events.dump(seq))
	}
	// Back to three probers for the next scenarios.
	s.dockerOK("start", victim)
}

// fullMeshPartition: a prober cut off from the backends (not from NATS) is
// out-voted, so no backend of the full-mesh VS goes down; the backend host
// cut off goes down.
func (s *stack) fullMeshPartition(t *testing.T) {
	const meshVS = "192.0.2.10-TCP-80"
	ids := s.containers("prober")
	if len(ids) != 3 {
		t.Fatalf("%d probers; want 3", len(ids))
	}
	backends := s.network("backends")
	seq := s.events.last()
	cut := ids[1]
	s.dockerOK("network", "disconnect", backends, cut)
	cutAt := time.Now()
	// The cut prober must really be failing: its web probes come back down.
	webA := backendNamed("web-a")
	webTarget := s.targetOf(webA)
	if !wait.Until(20*time.Second, func() bool { return s.results.downSince(webTarget, observer(cut), cutAt) }) {
		t.Fatalf("the cut prober %s reports no failure for %s", observer(cut), webA.id)
	}
	// Down-retry 1 needs two failures in a row: watch five intervals for a
	// backend of the full-mesh VS going down (there must be none).
	meshDown := func(r record) bool {
		return r.T != nil && r.T.Kind == event.KindBackend && r.T.VS == meshVS && r.T.To == event.Down
	}
	if wait.Until(5*probeInterval, func() bool { return len(s.events.since(seq, meshDown)) > 0 }) {
		t.Errorf("full mesh: a backend went down although only one of three probers was cut:\n%s", s.events.dump(seq))
	}

	seq = s.events.last()
	webB := backendNamed("web-b")
	s.dockerOK("network", "disconnect", backends, s.container(webB.host))
	down := s.events.waitFor(t, 20*time.Second, seq, webB.id+" down", func(r record) bool {
		return isBackend(webB.id, event.Down)(r) && r.T.VS == meshVS
	})
	t.Logf("backend host cut: %s", down)
	if r := s.events.since(seq, func(r record) bool { return isBackend(webA.id, event.Down)(r) }); len(r) > 0 {
		t.Errorf("%s went down with %s's host cut: %v", webA.id, webB.host, r)
	}
	s.dockerOK("network", "connect", "--ip", "10.29.10.12", backends, s.container(webB.host))
	s.dockerOK("network", "connect", backends, cut)
}

// targetOf is the target token of a demo backend (from hm_targets).
func (s *stack) targetOf(b demoBackend) string {
	s.t.Helper()
	for id, tg := range s.targets() {
		for _, u := range tg.UsedBy {
			if u == b.vs+"/"+b.id {
				return id
			}
		}
	}
	s.t.Fatalf("no target in hm_targets is used by %s/%s", b.vs, b.id)
	return ""
}

// aggregatorFailover: the active aggregator is killed; the standby takes
// over within the lease TTL; a transition decided just before the kill is
// not repeated and one decided just after is not lost.
func (s *stack) aggregatorFailover(t *testing.T) {
	active := s.leader()
	if active != "aggregator-a" && active != "aggregator-b" {
		t.Fatalf("lease holder %q; want aggregator-a or aggregator-b", active)
	}
	standby := map[string]string{"aggregator-a": "aggregator-b", "aggregator-b": "aggregator-a"}[active]
	seq := s.events.last()
	before, after := backendNamed("dns-b"), backendNamed("ssh-a")

	s.setBackend(before.name, true)
	s.events.waitFor(t, 20*time.Second, seq, before.id+" down", isBackend(before.id, event.Down))
	killed := time.Now()
	s.dockerOK("kill", s.container(active))
	s.setBackend(after.name, true)
	if !wait.Until(leaseTTL+10*time.Second, func() bool { return s.leader() == standby }) {
		t.Fatalf("%s did not take the lease over (holder %q)", standby, s.leader())
	}
	took := time.Since(killed)
	t.Logf("%s killed: %s active after %v (lease TTL %v)", active, standby, took.Round(10*time.Millisecond), leaseTTL)
	// The lease expires at most a TTL after the dead leader's last renewal;
	// the server then needs up to about a second to expire the key and tell
	// the standby (measured: takeovers 4.2-6.1s with a 5s TTL).
	if bound := leaseTTL + 1500*time.Millisecond; took > bound {
		t.Errorf("takeover after %v; want within the lease TTL %v plus the server's expiry latency (%v)", took, leaseTTL, bound)
	}
	s.events.waitFor(t, 30*time.Second, seq, after.id+" down", isBackend(after.id, event.Down))
	s.setBackend(before.name, false)
	s.setBackend(after.name, false)
	for _, b := range []demoBackend{before, after} {
		s.events.waitFor(t, 30*time.Second, seq, b.id+" up", isBackend(b.id, event.Up))
	}
	s.exactlyOnce(seq, before, after)
	s.composeOK(2*time.Minute, "start", active)
}

// exactlyOnce requires one down and one up transition for each backend
// after seq, none lost, none doubled, and each applied by the actioner:
// the history (what hmctl history reads) and the actions agree.
func (s *stack) exactlyOnce(seq uint64, backends ...demoBackend) {
	s.t.Helper()
	for _, b := range backends {
		for _, to := range []event.State{event.Down, event.Up} {
			if got := s.events.since(seq, isBackend(b.id, to)); len(got) != 1 {
				s.t.Errorf("%s: %d transitions to %s; want exactly 1:\n%s", b.id, len(got), to, s.events.dump(seq))
			}
		}
	}
	// Applied: an action result for the transition's VS names it or a later
	// event of that VS (the actioner coalesces a VS's pending events).
	var missing []string
	if !wait.Until(30*time.Second, func() bool {
		missing = nil
		for _, b := range backends {
			for _, tr := range s.events.since(seq, func(r record) bool { return isBackend(b.id, "")(r) && r.T.VS == b.vs }) {
				if len(s.events.since(seq, func(r record) bool { return isAction(b.vs)(r) && r.A.EventSeq >= tr.Seq })) == 0 {
					missing = append(missing, tr.String())
				}
			}
		}
		return len(missing) == 0
	}) {
		s.t.Errorf("transitions the actioner did not apply:\n  %s\nthe events since #%d:\n%s", strings.Join(missing, "\n  "), seq, s.events.dump(seq))
	}
}

// actionerBacklog: the actioner is stopped while backends fail and recover;
// started again, it applies what is pending, in order, so DPVS ends where
// the transitions say.
func (s *stack) actionerBacklog(t *testing.T) {
	seq := s.events.last()
	s.composeOK(2*time.Minute, "stop", "actioner")
	calls := s.agentChanges()
	ssh, dns := backendNamed("ssh-a"), backendNamed("dns-a")
	s.setBackend(ssh.name, true)
	s.events.waitFor(t, 20*time.Second, seq, ssh.id+" down", isBackend(ssh.id, event.Down))
	s.setBackend(dns.name, true)
	s.events.waitFor(t, 20*time.Second, seq, dns.id+" down", isBackend(dns.id, event.Down))
	s.setBackend(ssh.name, false)
	s.events.waitFor(t, 20*time.Second, seq, ssh.id+" up again", isBackend(ssh.id, event.Up))
	if n := s.agentChanges(); n != calls {
		t.Fatalf("dpvs-agent got %d changes while the actioner was stopped", n-calls)
	}
	pending := s.events.last()

	// Each VS's last pending transition, which the actioner must apply.
	lastPending := map[string]uint64{}
	for _, b := range []demoBackend{ssh, dns} {
		trs := s.events.since(seq, func(r record) bool { return isBackend(b.id, "")(r) && r.T.VS == b.vs })
		lastPending[b.vs] = trs[len(trs)-1].Seq
	}
	// applied is the newest event applied per VS since the restart; a
	// re-assertion of hm_state (op SYNC, event 0) is not an applied event.
	applied := func() (map[string]uint64, []record) {
		recs := s.events.since(pending, func(r record) bool {
			return r.A != nil && r.A.OK && r.A.Kind == event.KindBackend && r.A.EventSeq > 0
		})
		last := map[string]uint64{}
		for _, r := range recs {
			last[r.A.Object] = max(last[r.A.Object], r.A.EventSeq)
		}
		return last, recs
	}

	s.composeOK(2*time.Minute, "start", "actioner")
	// The resync may set DPVS right from hm_state before the backlog is
	// delivered: wait for both, the pending events applied and DPVS right.
	if !poll(30*time.Second, func() bool {
		last, _ := applied()
		for vs, want := range lastPending {
			if last[vs] < want {
				return false
			}
		}
		st := s.agentState()
		return st[dns.id].Weight == 0 && st[dns.id].Inhibited && st[ssh.id].Weight > 0 && !st[ssh.id].Inhibited
	}) {
		st := s.agentState()
		last, _ := applied()
		t.Fatalf("after the restart: applied events %v, want at least %v; DPVS has %s=%+v %s=%+v, want %s down (weight 0, inhibited) and %s up; events since #%d:\n%s",
			last, lastPending, dns.id, st[dns.id], ssh.id, st[ssh.id], dns.id, ssh.id, seq, s.events.dump(seq))
	}
	// In order: per VS, the applied events' sequences only go forward.
	_, recs := applied()
	prev := map[string]uint64{}
	for _, r := range recs {
		if r.A.EventSeq < prev[r.A.Object] {
			t.Errorf("%s applied event #%d after #%d: out of order", r.A.Object, r.A.EventSeq, prev[r.A.Object])
		}
		prev[r.A.Object] = r.A.EventSeq
	}
	s.setBackend(dns.name, false)
}

// natsRestart: NATS stops while a backend fails and comes back; every
// service reconnects by itself (no container restarts) and the transition is
// recorded once and applied.
func (s *stack) natsRestart(t *testing.T) {
	seq := s.events.last()
	restarts := s.restarts()
	b := backendNamed("ssh-b")
	s.composeOK(2*time.Minute, "stop", "nats")
	s.setBackend(b.name, true)
	s.composeOK(2*time.Minute, "start", "nats")
	down := s.events.waitFor(t, 60*time.Second, seq, b.id+" down after the restart", isBackend(b.id, event.Down))
	t.Logf("after the NATS restart: %s", down)
	if !poll(30*time.Second, func() bool {
		a := s.agentState()[b.id]
		return a.Weight == 0 && a.Inhibited
	}) {
		t.Errorf("the actioner did not apply %s down after the restart: %+v", b.id, s.agentState()[b.id])
	}
	// Every prober is back: registered again in hm_members, and each
	// reports again.
	ids := s.containers("prober")
	var alive []string
	for _, id := range ids {
		alive = append(alive, observer(id))
	}
	var members []string
	if !poll(30*time.Second, func() bool {
		members = s.members()
		return len(members) == len(alive)
	}) {
		t.Errorf("after the NATS restart hm_members holds %v; want the %d probers %v", members, len(alive), alive)
	}
	s.steadyCoverage(s.targets(), alive, 30*time.Second)
	s.setBackend(b.name, false)
	s.events.waitFor(t, 30*time.Second, seq, b.id+" up", isBackend(b.id, event.Up))
	s.exactlyOnce(seq, b)
	if now := s.restarts(); !maps.Equal(now, restarts) {
		t.Errorf("containers restarted instead of reconnecting: restart counts %v, before %v", now, restarts)
	}
}

// proberCredentials: a client with the probers' credentials cannot publish
// a fake transition, write hm_targets, hm_state or the lease, or delete the
// history: each attempt is refused, counted by the client and logged by the
// server, and nothing changes.
func (s *stack) proberCredentials(t *testing.T) {
	c := connectAs(t, bus.ConnOptions{URLs: s.natsURL, Name: "stolen-prober-key",
		NKeyFile: s.root + "/deploy/compose/secrets/prober.nk"})
	checkForbidden(t, c, "prober", s.natsViolations())
	checkUnchanged(t, s.admin.js)
}
