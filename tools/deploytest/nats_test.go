package deploytest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// roles are the users of deploy/nats/users.conf: role r's public key is in
// HM_NKEY_<R>.
var roles = []string{"aggregator", "prober", "actioner", "hmctl", "operator", "admin"}

// natsDir is the shipped NATS configuration directory.
func natsDir(t testing.TB) string { return filepath.Join(root(t), "deploy", "nats") }

// keyring holds one fresh nkey per role: the seed files for the clients,
// the public keys in the environment for users.conf.
type keyring struct {
	seeds map[string]string // role -> seed file
}

// newKeyring makes the keys and sets HM_NKEY_* for the test.
func newKeyring(t *testing.T) *keyring {
	t.Helper()
	dir := t.TempDir()
	k := &keyring{seeds: map[string]string{}}
	for _, r := range roles {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		k.seeds[r] = filepath.Join(dir, r+".nk")
		if err := os.WriteFile(k.seeds[r], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("HM_NKEY_"+strings.ToUpper(r), pub)
	}
	return k
}

// serverLog is a nats-server logger that keeps every line, to find the
// permission violations the server reports.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) add(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *serverLog) Noticef(format string, v ...any) { l.add(format, v...) }
func (l *serverLog) Warnf(format string, v ...any)   { l.add(format, v...) }
func (l *serverLog) Fatalf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Errorf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Debugf(format string, v ...any)  { l.add(format, v...) }
func (l *serverLog) Tracef(format string, v ...any)  { l.add(format, v...) }

func (l *serverLog) String() string { return l.since(0) }

// len is the number of lines logged so far.
func (l *serverLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// since returns the lines after the first n.
func (l *serverLog) since(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[n:], "\n")
}

// violations returns the permission violations logged so far ("Publish
// Violation - Subject …", "Subscription Violation - …").
func (l *serverLog) violations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.Contains(s, " Violation - ") {
			out = append(out, s)
		}
	}
	return out
}

// startServer runs the nats-server of a shipped configuration file
// in-process, moved to loopback on random ports with a temp store (the
// files' listen addresses and /data are the container's); tweak may change
// more options. The environment (HM_NKEY_* …) must be set before.
func startServer(t *testing.T, conf string, tweak func(*server.Options)) (*server.Server, *serverLog) {
	t.Helper()
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("load %s: %v", conf, err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	if tweak != nil {
		tweak(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server with %s: %v", conf, err)
	}
	log := &serverLog{}
	s.SetLoggerV2(log, false, false, false)
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats-server with %s not ready in 10s; its log:\n%s", conf, log.String())
	}
	return s, log
}

// client is a connection under one role's credentials, counting the
// permission violations the server reports to it.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu     sync.Mutex
	denied []string // permission violation errors, in order
}

func (c *client) deniedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.denied)
}

// connectAs opens a bus.Connect connection with o (URL and credentials).
func connectAs(t testing.TB, o bus.ConnOptions) *client {
	t.Helper()
	c := &client{}
	o.Log = zerolog.Nop()
	o.Extra = append(o.Extra, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			c.mu.Lock()
			c.denied = append(c.denied, err.Error())
			c.mu.Unlock()
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := bus.Connect(ctx, o)
	if err != nil {
		t.Fatalf("connect as %s: %v", o.Name, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// forbidden is something a role must not be able to do: try returns the
// client-side error (nil when the client cannot tell, as for a core
// publish), and the server must answer with exactly one permission
// violation.
type forbidden struct {
	name string
	try  func(ctx context.Context, c *client) error
}

// fakeTransition is a made-up backend DOWN published where the aggregator's
// transitions go.
const fakeTransitionSubject = "hm.event.backend.192_0_2_99-TCP-80.192_0_2_98-TCP-80"

// forbiddenFor lists what each role must not do (for the default prefix).
func forbiddenFor(role string) []forbidden {
	jsPublish := func(name, subj string) forbidden {
		return forbidden{"jetstream_publish_" + name, func(ctx context.Context, c *client) error {
			m := nats.NewMsg(subj)
			m.Header.Set("Hm-To", "down")
			m.Data = []byte("fake")
			_, err := c.js.PublishMsg(ctx, m)
			return err
		}}
	}
	corePublish := func(name, subj string) forbidden {
		return forbidden{"core_publish_" + name, func(ctx context.Context, c *client) error {
			if err := c.nc.Publish(subj, []byte("fake")); err != nil {
				return err
			}
			return c.nc.FlushWithContext(ctx)
		}}
	}
	kvPut := func(bucket, key string) forbidden {
		return forbidden{"kv_put_" + bucket, func(ctx context.Context, c *client) error {
			// Bind without a lookup (the role may not read that bucket's
			// info) and write: the put is a publish on $KV.<bucket>.<key>.
			_, err := c.js.PublishMsg(ctx, &nats.Msg{Subject: "$KV." + bucket + "." + key, Data: []byte("fake")})
			return err
		}}
	}
	deleteStream := forbidden{"delete_stream_HM_EVENTS", func(ctx context.Context, c *client) error {
		return c.js.DeleteStream(ctx, "HM_EVENTS")
	}}
	switch role {
	case "prober":
		return []forbidden{jsPublish("fake_transition", fakeTransitionSubject), corePublish("fake_transition", fakeTransitionSubject),
			kvPut("hm_targets", "fake"), kvPut("hm_state", "fake"), kvPut("hm_leader", "aggregator"),
			corePublish("pause", "hm.api.pause"), deleteStream}
	case "actioner":
		return []forbidden{jsPublish("fake_transition", fakeTransitionSubject), corePublish("fake_result", "hm.result.0.fake.fake"),
			kvPut("hm_targets", "fake"), kvPut("hm_state", "fake"), deleteStream}
	case "hmctl":
		return []forbidden{corePublish("pause", "hm.api.pause"), corePublish("resume", "hm.api.resume"),
			jsPublish("fake_transition", fakeTransitionSubject), kvPut("hm_members", "fake"), kvPut("hm_targets", "fake"), deleteStream}
	case "operator":
		return []forbidden{jsPublish("fake_transition", fakeTransitionSubject), kvPut("hm_targets", "fake"), deleteStream}
	}
	return nil
}

// checkForbidden runs every forbidden action of a role and requires one
// permission violation for each, reported to the client (counted) and, when
// logged is not nil, logged by the server (logged counts the violations in
// the server's log).
func checkForbidden(t *testing.T, c *client, role string, logged func() int) {
	t.Helper()
	for _, f := range forbiddenFor(role) {
		t.Run(role+"_"+f.name, func(t *testing.T) {
			before, inLog := c.deniedCount(), 0
			if logged != nil {
				inLog = logged()
			}
			// The server answers a denied request with an error, not a reply:
			// the client-side error is a timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			err := f.try(ctx, c)
			cancel()
			if err == nil && !strings.HasPrefix(f.name, "core_publish_") {
				t.Errorf("%s as %s succeeded; want it refused", f.name, role)
			}
			ok := wait.Until(5*time.Second, func() bool { return c.deniedCount() == before+1 })
			if !ok {
				t.Errorf("%s as %s: %d permission violations reported to the client, want 1 (error: %v)",
					f.name, role, c.deniedCount()-before, err)
			}
			if logged != nil {
				// The server logs after answering: give the log a moment.
				wait.Until(5*time.Second, func() bool { return logged()-inLog >= 1 })
				if got := logged() - inLog; got != 1 {
					t.Errorf("%s as %s: server logged %d permission violations, want 1", f.name, role, got)
				}
			}
		})
	}
}
