package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a writer that a running command and the test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is one finished hmctl run.
type result struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs hmctl in-process through run, as main does.
func runCLI(args ...string) result {
	var out, errb syncBuffer
	code := run(args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// testEnv is a NATS server with healthmesh's streams and buckets.
type testEnv struct {
	t      *testing.T
	s      *natstest.Server
	js     jetstream.JetStream
	layout *bus.Layout
	sp     subject.Space
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	l, err := bus.Ensure(ctx, js, subject.Space{}, bus.Settings{LeaderTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, s: s, js: js, layout: l, sp: l.Space}
}

// args prepends the connection flags for this env's server.
func (e *testEnv) args(cmd string, rest ...string) []string {
	return append([]string{cmd, "-nats-url", e.s.URL()}, rest...)
}

// publish stores a message in its stream and returns its sequence.
func (e *testEnv) publish(subj string, m bus.Message) uint64 {
	e.t.Helper()
	ack, err := bus.Publish(e.t.Context(), e.js, subj, m)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// publishTransition stores a transition on its subject.
func (e *testEnv) publishTransition(tr *event.Transition) uint64 {
	e.t.Helper()
	var subj string
	switch tr.Kind {
	case event.KindBackend:
		subj = e.sp.EventBackend(mustEndpoint(e.t, tr.VS), mustEndpoint(e.t, tr.Object))
	case event.KindVS:
		subj = e.sp.EventVS(mustEndpoint(e.t, tr.Object))
	case event.KindVA:
		subj = e.sp.EventVA(netip.MustParseAddr(tr.Object))
	}
	return e.publish(subj, tr)
}

func mustEndpoint(t *testing.T, s string) subject.Endpoint {
	t.Helper()
	ep, err := subject.ParseEndpoint(s)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// markers returns, in order, which of the given markers each line holds
// (one per line; lines with none are skipped).
func markers(text string, all []string) []string {
	var out []string
	for _, l := range lines(text) {
		for _, m := range all {
			if strings.Contains(l, `"`+m+`"`) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}
