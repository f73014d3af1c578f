package deploytest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
)

// tcpBackend accepts and closes connections on 127.0.0.1 until stop.
type tcpBackend struct {
	ln   net.Listener
	once sync.Once
	done chan struct{} // closed by the accept loop when it returns
}

func newTCPBackend(t *testing.T) *tcpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &tcpBackend{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(b.stop)
	return b
}

// stop closes the listener: probes get "connection refused".
func (b *tcpBackend) stop() {
	b.once.Do(func() { b.ln.Close() })
	<-b.done
}

// TestRolesUnderShippedPermissions runs hm-aggregator, hm-prober,
// hm-actioner and hmctl against the nats-server of deploy/nats/nats.conf,
// each with its own user: the pipeline works end to end with no permission
// violation, hmctl's user is read only while the operator's may pause, and
// every role is refused what it must not do (fake transitions, targets,
// state, the lease, stream deletion), with one violation counted per attempt
// and nothing changed.
func TestRolesUnderShippedPermissions(t *testing.T) {
	aggregator, prober, actioner, hmctl := bin(t, "hm-aggregator"), bin(t, "hm-prober"), bin(t, "hm-actioner"), bin(t, "hmctl")
	keys := newKeyring(t)
	s, log := startServer(t, filepath.Join(natsDir(t), "nats.conf"), nil)
	env := func(role string) []string {
		return []string{"HM_NATS_URL=" + s.ClientURL(), "HM_NATS_NKEY=" + keys.seeds[role]}
	}
	backend := newTCPBackend(t)
	host, port, _ := net.SplitHostPort(backend.ln.Addr().String())
	beID := host + "-TCP-" + port
	conf := filepath.Join(t.TempDir(), "healthmesh.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`
global:
  virtual-address: {actioner: Blank}
  virtual-server: {method: tcp, interval: 300ms, timeout: 200ms, actioner: Blank}
dpvs-agent: {enabled: false}
services:
  192.0.2.1-TCP-80:
    backends: [{addr: %s, port: %s}]
`, host, port)), 0o644); err != nil {
		t.Fatal(err)
	}

	daemon(t, env("aggregator"), aggregator, "-config-file", conf, "-metric-server-addr", "127.0.0.1:0", "-log-format", "json")
	daemon(t, env("prober"), prober, "-metric-server-addr", "", "-log-format", "json")
	daemon(t, env("actioner"), actioner, "-node", "lb1", "-dpvs-agent-addr", "", "-metric-server-addr", "", "-log-format", "json")
	admin := connectAs(t, bus.ConnOptions{URLs: s.ClientURL(), Name: "admin", NKeyFile: keys.seeds["admin"]})
	events := followEvents(t, admin.js)

	up := events.waitFor(t, 30*time.Second, 0, "backend "+beID+" up", isBackend(beID, event.Up))
	events.waitFor(t, 15*time.Second, up.Seq-1, "the actioner applying it", isAction("192.0.2.1-TCP-80"))

	hm := func(role string, args ...string) (string, int) {
		return command(t, env(role), 20*time.Second, hmctl, append(args, "-timeout", "3s")...)
	}
	reads := []struct {
		name string
		args []string
		want string
	}{
		{"status", []string{"status"}, host + ":" + port},
		{"members", []string{"members"}, "aggregator lease"},
		{"history", []string{"history", "--since", "1h"}, beID},
		{"history_with_results", []string{"history", "--since", "1h", "--results"}, "result #"},
	}
	for _, tt := range reads {
		t.Run("hmctl_"+tt.name, func(t *testing.T) {
			out, code := hm("hmctl", tt.args...)
			if code != 0 || !strings.Contains(out, tt.want) {
				t.Fatalf("hmctl %s as hmctl: exit %d, output:\n%s\nwant exit 0 and %q", tt.name, code, out, tt.want)
			}
		})
	}
	target := "192.0.2.1-TCP-80/" + beID
	t.Run("hmctl_user_cannot_pause", func(t *testing.T) {
		before := len(log.violations())
		if out, code := hm("hmctl", "pause", target, "--reason", "test"); code == 0 {
			t.Fatalf("pause as hmctl: exit 0; want refused. Output:\n%s", out)
		}
		v := log.violations()[before:]
		if len(v) != 1 || !strings.Contains(v[0], `"hm.api.pause"`) {
			t.Errorf("violations %q; want one for hm.api.pause", v)
		}
	})
	t.Run("operator_pauses_and_resumes", func(t *testing.T) {
		seq := events.last()
		for _, verb := range []string{"pause", "resume"} {
			if out, code := hm("operator", verb, target, "--reason", "test"); code != 0 {
				t.Fatalf("%s as operator: exit %d:\n%s", verb, code, out)
			}
		}
		events.waitFor(t, 10*time.Second, seq, "the pause's transition", func(r record) bool { return isBackend(beID, "")(r) && r.T.Paused })
	})

	seq := events.last()
	backend.stop()
	down := events.waitFor(t, 15*time.Second, seq, "backend "+beID+" down", isBackend(beID, event.Down))
	events.waitFor(t, 15*time.Second, down.Seq-1, "the actioner applying it", isAction("192.0.2.1-TCP-80"))
	if v := log.violations(); len(v) != 1 {
		t.Fatalf("the roles at work caused permission violations (only hmctl's pause is expected):\n%s", strings.Join(v, "\n"))
	}

	for _, role := range []string{"prober", "actioner", "hmctl", "operator"} {
		c := connectAs(t, bus.ConnOptions{URLs: s.ClientURL(), Name: role, NKeyFile: keys.seeds[role]})
		checkForbidden(t, c, role, func() int { return len(log.violations()) })
	}
	checkUnchanged(t, admin.js)
}

// checkUnchanged asserts that the forbidden attempts left no trace: no
// fake transition in HM_EVENTS, no fake key in the buckets, the streams
// still there.
func checkUnchanged(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := js.Stream(ctx, "HM_EVENTS")
	if err != nil {
		t.Fatalf("HM_EVENTS after the attempts: %v", err)
	}
	if m, err := ev.GetLastMsgForSubject(ctx, fakeTransitionSubject); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("HM_EVENTS has a message on %s (%v, %v); want none", fakeTransitionSubject, m, err)
	}
	for _, bucket := range []string{"hm_targets", "hm_state", "hm_members"} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", bucket, err)
		}
		if e, err := kv.Get(ctx, "fake"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Errorf("%s has key fake (%v, %v); want none", bucket, e, err)
		}
	}
	// The lease: absent, or held by an aggregator, never by the fake value.
	leader, err := js.KeyValue(ctx, "hm_leader")
	if err != nil {
		t.Fatalf("bucket hm_leader: %v", err)
	}
	if e, err := leader.Get(ctx, "aggregator"); err == nil && string(e.Value()) == "fake" {
		t.Errorf("hm_leader holds the fake lease %q", e.Value())
	} else if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("hm_leader: %v", err)
	}
}
