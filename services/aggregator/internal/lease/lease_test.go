package lease_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/lease"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ttl = 1 * time.Second

// candidate runs lease.Run on its own connection and records its tenures.
type candidate struct {
	id     string
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	terms  []uint64
	active atomic.Bool
	lost   atomic.Int32
}

func startCandidate(t *testing.T, s *natstest.Server, id string) *candidate {
	t.Helper()
	_, js := s.JetStream()
	l, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{LeaderTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return runCandidate(t, l.Leader, id)
}

func runCandidate(t *testing.T, kv jetstream.KeyValue, id string) *candidate {
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{id: id, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		lease.Run(ctx, lease.Options{KV: kv, Key: subject.KeyLeader, ID: id, TTL: ttl, Log: zerolog.Nop()}, func(lctx context.Context, tm lease.Term) {
			c.mu.Lock()
			c.terms = append(c.terms, tm.Term)
			c.mu.Unlock()
			c.active.Store(true)
			<-lctx.Done()
			c.active.Store(false)
			c.lost.Add(1)
		})
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

func (c *candidate) lastTerm() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.terms) == 0 {
		return 0
	}
	return c.terms[len(c.terms)-1]
}

func TestLease_one_active_and_clean_handover(t *testing.T) {
	s := natstest.RunServer(t)
	a := startCandidate(t, s, "a")
	wait.For(t, 5*time.Second, "a active", a.active.Load)
	b := startCandidate(t, s, "b")
	// b must stay standby while a renews, for several TTLs.
	if wait.Until(3*ttl, b.active.Load) {
		t.Fatal("b became active while a holds the lease")
	}
	start := time.Now()
	a.stop() // clean stop releases the lease
	wait.For(t, ttl, "b active after a's clean stop", b.active.Load)
	t.Logf("clean handover took %v", time.Since(start))
	if b.lastTerm() <= a.lastTerm() {
		t.Fatalf("terms must grow: a=%d b=%d", a.lastTerm(), b.lastTerm())
	}
}

func TestLease_standby_takes_over_after_crash_within_ttl(t *testing.T) {
	s := natstest.RunServer(t)
	// a gets its own connection so that we can cut it off like a crash.
	nc := s.Connect()
	js, _ := jetstream.New(nc)
	la, err := bus.Ensure(context.Background(), js, subject.Space{}, bus.Settings{LeaderTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	a := runCandidate(t, la.Leader, "a")
	wait.For(t, 5*time.Second, "a active", a.active.Load)
	b := startCandidate(t, s, "b")

	nc.Close() // a can neither renew nor release
	start := time.Now()
	wait.For(t, 2*ttl, "a stands down", func() bool { return !a.active.Load() })
	wait.For(t, 3*ttl, "b takes over", b.active.Load)
	took := time.Since(start)
	t.Logf("takeover after crash took %v (ttl %v)", took, ttl)
	if took > ttl+ttl/2+500*time.Millisecond {
		t.Fatalf("takeover took %v, want within about the lease TTL %v", took, ttl)
	}
	id, term, err := lease.Holder(context.Background(), b.kvHolder(t, s), subject.KeyLeader)
	if err != nil || id != "b" || term == 0 {
		t.Fatalf("holder = %q term %d err %v", id, term, err)
	}
}

func (c *candidate) kvHolder(t *testing.T, s *natstest.Server) jetstream.KeyValue {
	_, js := s.JetStream()
	kv, err := js.KeyValue(context.Background(), subject.Space{}.BucketLeader())
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
