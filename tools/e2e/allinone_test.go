package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// hmReady is the all-in-one's "healthmesh ready" log line.
type hmReady struct {
	NATSURL  string `json:"nats_url"`
	HTTPAddr string `json:"http_addr"`
}

func startHealthmesh(t *testing.T, name string, args []string) (*proc, hmReady) {
	t.Helper()
	p := start(t, name, bin(t, "healthmesh"), args...)
	var r hmReady
	p.waitJSON(t, p.stderr, settle, "healthmesh ready", &r)
	if !strings.HasPrefix(r.NATSURL, "nats://127.0.0.1:") {
		t.Fatalf("%s: NATS URL %q, want one on 127.0.0.1", name, r.NATSURL)
	}
	return p, r
}

// TestAllInOne runs healthmesh as a drop-in for the DPVS healthcheck
// program: one process, its DPVS flags and config file, against the
// dpvs-agent emulator and demo backends. The steps build on each other:
// each one's transitions are part of the history the later ones check.
func TestAllInOne(t *testing.T) {
	needBinaries(t)
	t.Parallel()
	ns, why := newNetns(t)
	l := newLab(t, labOptions{ip: 41, netns: ns})
	args := []string{"-config-file", l.conf, "-dpvs-agent-addr", l.agent, "-dpvs-service-list-interval", "1s",
		"-data-dir", filepath.Join(l.dir, "data"), "-nats-addr", "127.0.0.1:0", "-metric-server-addr", "127.0.0.1:0",
		"-node", "e2e", "-log-format", "json"}
	hm, ready := startHealthmesh(t, "healthmesh", args)
	l.waitApplied(t, ready.NATSURL)
	web1, web2, ssh1 := l.backends["web1"], l.backends["web2"], l.backends["ssh1"]

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"a_stopped_backend_is_drained_and_restored", func(t *testing.T) {
			at := l.fail(t, "web1")
			l.expectDetected(t, web1, false, at)
			l.expect(l.backendTr(web1, event.Up, event.Down))
			if st := l.backendState(t, web2); st.Weight != web2.weight || st.Inhibited {
				t.Errorf("web2 was touched: weight %d inhibited %v", st.Weight, st.Inhibited)
			}
			at = l.recover(t, "web1")
			l.expectDetected(t, web1, true, at)
			l.expect(l.backendTr(web1, event.Down, event.Up))
			if !l.vipOnDevice(t, vip1) {
				t.Errorf("%s left %s while one backend was down", vip1, dpvsIfname)
			}
		}},
		{"b_vip_withdrawn_when_every_backend_is_down", func(t *testing.T) {
			l.fail(t, "web1", "web2")
			wait.For(t, settle, fmt.Sprintf("%s withdrawn from %s", vip1, dpvsIfname), func() bool { return !l.vipOnDevice(t, vip1) })
			for _, b := range []*backend{web1, web2} {
				if st := l.backendState(t, b); st.Weight != 0 || !st.Inhibited {
					t.Errorf("%s with its VIP down: weight %d inhibited %v, want 0 and inhibited", b.name, st.Weight, st.Inhibited)
				}
			}
			l.expect(l.backendTr(web1, event.Up, event.Down), l.backendTr(web2, event.Up, event.Down),
				vsTr(vs1, event.Up, event.Down), vaTr(vip1, event.Up, event.Down))

			l.recover(t, "web2")
			wait.For(t, settle, fmt.Sprintf("%s back on %s", vip1, dpvsIfname), func() bool { return l.vipOnDevice(t, vip1) })
			if st := l.backendState(t, web2); st.Weight != web2.weight || st.Inhibited {
				t.Errorf("web2 back: weight %d inhibited %v, want %d", st.Weight, st.Inhibited, web2.weight)
			}
			if st := l.backendState(t, web1); st.Weight != 0 || !st.Inhibited {
				t.Errorf("web1 still stopped: weight %d inhibited %v, want 0 and inhibited", st.Weight, st.Inhibited)
			}
			l.expect(l.backendTr(web2, event.Down, event.Up), vsTr(vs1, event.Down, event.Up), vaTr(vip1, event.Down, event.Up))

			at := l.recover(t, "web1")
			l.expectDetected(t, web1, true, at)
			l.expect(l.backendTr(web1, event.Down, event.Up))
		}},
		{"b_kernel_route_in_netns", func(t *testing.T) {
			if ns == "" {
				t.Skipf("skipping KernelRouteAddDel in a network namespace: %s", why)
			}
			l.fail(t, "ssh1")
			wait.For(t, settle, fmt.Sprintf("%s removed from %s in netns %s", vip2, nsIfname, ns),
				func() bool { return !nsHasAddr(t, ns, vip2) })
			l.expect(l.backendTr(ssh1, event.Up, event.Down), vsTr(vs2, event.Up, event.Down), vaTr(vip2, event.Up, event.Down))
			l.recover(t, "ssh1")
			wait.For(t, settle, fmt.Sprintf("%s back on %s in netns %s", vip2, nsIfname, ns),
				func() bool { return nsHasAddr(t, ns, vip2) })
			l.expect(l.backendTr(ssh1, event.Down, event.Up), vsTr(vs2, event.Down, event.Up), vaTr(vip2, event.Down, event.Up))
			if l.vipOnDevice(t, vip2) {
				t.Errorf("%s is on the emulator's %s too: its VA actioner is KernelRouteAddDel", vip2, dpvsIfname)
			}
		}},
		{"c_history_and_headers", func(t *testing.T) {
			recs := history(t, ready.NATSURL)
			checkHistory(t, recs, l.phases)
			checkHistoryText(t, ready.NATSURL, recs)
			b := dial(t, ready.NATSURL)
			for _, c := range []struct {
				name string
				subj string
				want tr
			}{
				{"backend", sp.EventBackend(vs1, web1.id), l.backendTr(web1, event.Down, event.Up)},
				{"vs", sp.EventVS(vs1), vsTr(vs1, event.Down, event.Up)},
				{"va", sp.EventVA(vip1), vaTr(vip1, event.Down, event.Up)},
			} {
				t.Run(c.name, func(t *testing.T) { checkHeaders(t, b, c.subj, c.want) })
			}
		}},
		{"d_kill_9_and_restart", func(t *testing.T) {
			before := history(t, ready.NATSURL)
			killedAt := time.Now()
			hm.kill()
			if ws, ok := hm.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("healthmesh did not die of SIGKILL: %v", hm.cmd.ProcessState)
			}
			var hm2 *proc
			hm2, ready = startHealthmesh(t, "healthmesh (restarted)", args)
			hm2.waitJSON(t, hm2.stderr, settle, "aggregator active", &struct{}{})
			// Probing resumes: a few rounds of fresh results before the
			// test changes anything, so a spurious verdict would show.
			b := dial(t, ready.NATSURL)
			r0 := b.lastSeq(t, sp.StreamResults())
			fresh := r0 + uint64(3*len(l.backends))
			wait.For(t, settle, fmt.Sprintf("results stream past #%d", fresh), func() bool { return b.lastSeq(t, sp.StreamResults()) >= fresh })

			at := l.fail(t, "web1")
			l.expectDetected(t, web1, false, at)
			l.expect(l.backendTr(web1, event.Up, event.Down))

			after := history(t, ready.NATSURL)
			if len(after) < len(before) {
				t.Fatalf("history lost records: %d before the kill, %d after", len(before), len(after))
			}
			for i := range before {
				if after[i].line != before[i].line {
					t.Errorf("history record %d changed across the restart:\n before %s\n after  %s", i+1, before[i].line, after[i].line)
				}
			}
			// No transition but web1's: nothing whose health did not change.
			checkHistory(t, after, l.phases)

			var calls []agenttest.Call
			getJSON(t, "http://"+l.agent+"/_emu/calls", &calls)
			for _, c := range calls {
				if c.Time.After(killedAt) && c.Method == http.MethodDelete {
					t.Errorf("after the restart dpvs-agent got %s %s %s", c.Method, c.Path, c.Body)
				}
			}
			if !l.vipOnDevice(t, vip1) {
				t.Errorf("%s left %s across the restart", vip1, dpvsIfname)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			return // the later steps build on this one
		}
	}
}
