package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// TestSeparateRoles is scenario A with the roles as separate processes:
// two probers (one per node, full mesh on VIP1's backends), an aggregator
// and an actioner around one standalone nats-server with JetStream.
func TestSeparateRoles(t *testing.T) {
	needBinaries(t)
	t.Parallel()
	l := newLab(t, labOptions{ip: 51, observersAll: true})
	url := startNATS(t, filepath.Join(l.dir, "nats"))
	common := []string{"-nats-url", url, "-log-format", "json"}
	start(t, "hm-aggregator", bin(t, "hm-aggregator"), append([]string{"-config-file", l.conf, "-dpvs-agent-addr", l.agent,
		"-metric-server-addr", "127.0.0.1:0", "-id", "e2e-agg"}, common...)...)
	probers := []string{"e2e-p1", "e2e-p2"}
	for i, id := range probers {
		start(t, "hm-prober "+id, bin(t, "hm-prober"), append([]string{"-id", id, "-node", fmt.Sprintf("node%d", i+1),
			"-metric-server-addr", ""}, common...)...)
	}
	start(t, "hm-actioner", bin(t, "hm-actioner"), append([]string{"-node", "lb1", "-dpvs-agent-addr", l.agent,
		"-metric-server-addr", ""}, common...)...)
	l.waitApplied(t, url)
	web1 := l.backends["web1"]
	b := dial(t, url)

	at := l.fail(t, "web1")
	l.expectDetected(t, web1, false, at)
	l.expect(l.backendTr(web1, event.Up, event.Down))
	_, x := b.last(t, sp.EventBackend(vs1, web1.id))
	var voters []string
	for _, v := range x.Votes {
		if v.State == event.Down && !v.Stale {
			voters = append(voters, v.Observer)
		}
	}
	slices.Sort(voters)
	if x.To != event.Down || !slices.Equal(voters, probers) {
		t.Errorf("web1 %s→%s with down votes from %v, want down by %v (full mesh): %+v", x.From, x.To, voters, probers, x.Votes)
	}

	at = l.recover(t, "web1")
	l.expectDetected(t, web1, true, at)
	l.expect(l.backendTr(web1, event.Down, event.Up))
	checkHistory(t, history(t, url), l.phases)
}

// startNATS runs the real nats-server with JetStream in dir on a port it
// picks, and returns its client URL (from the ports file it writes).
func startNATS(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, "nats-server", bin(t, "nats-server"), "-js", "-sd", filepath.Join(dir, "store"), "-n", "hm-e2e",
		"-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", dir)
	var url string
	wait.For(t, settle, "nats-server's ports file", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*.ports"))
		for _, f := range files {
			var ports struct {
				Nats []string `json:"nats"`
			}
			if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &ports) == nil && len(ports.Nats) > 0 {
				url = ports.Nats[0]
				return true
			}
		}
		return p.exited()
	})
	if url == "" {
		t.Fatalf("nats-server exited before listening: %v", p.err)
	}
	return url
}
