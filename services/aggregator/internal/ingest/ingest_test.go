package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/ingest"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts a server with the layout and returns a publisher of results
// of one target with the given Seq.
func setup(t *testing.T) (context.Context, *nats.Conn, *bus.Layout, string, func(seq uint64)) {
	t.Helper()
	s := natstest.RunServer(t)
	nc, js := s.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	l, err := bus.Ensure(ctx, js, subject.Space{}, bus.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	ep, _ := subject.ParseEndpoint("127.0.0.1-TCP-80")
	tid := subject.TargetID{Endpoint: ep, Method: "tcp", Hash: "00000001"}
	subj := l.Space.Result(tid, "p1")
	pub := func(seq uint64) {
		r := &event.ProbeResult{V: 1, Target: tid.Token(), Observer: "p1", Seq: seq, State: event.Up, Reason: event.ReasonL4OK}
		if _, err := bus.Publish(ctx, js, subj, r); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, nc, l, subj, pub
}

func TestConsumer_batches_checkpoints_and_resumes(t *testing.T) {
	ctx, nc, l, subj, pub := setup(t)
	for i := uint64(1); i <= 5; i++ {
		pub(i)
	}
	if err := nc.Publish(subj, []byte{0xc1, 0x00}); err != nil { // malformed
		t.Fatal(err)
	}
	nc.Flush()
	pub(6)

	c, err := ingest.Open(ctx, l.Results, "", "", ingest.Position{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Linger = time.Second // every result stored so far in one batch
	b, err := c.Next(ctx, 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 6 || b.Results[5].Seq != 6 || b.Last != 7 || b.Pending != 0 {
		t.Fatalf("batch: %d results, last %d, pending %d", len(b.Results), b.Last, b.Pending)
	}
	if c.Stats.Malformed.Load() != 1 {
		t.Fatalf("malformed = %d, want 1", c.Stats.Malformed.Load())
	}
	if err := b.Ack(ctx); err != nil {
		t.Fatalf("ack: %v", err)
	}
	ci, err := l.Results.Consumer(ctx, ingest.DefaultDurable)
	if err != nil {
		t.Fatal(err)
	}
	if info, _ := ci.Info(ctx); info.AckFloor.Stream != 7 {
		t.Fatalf("ack floor %d, want 7", info.AckFloor.Stream)
	}
	// Nothing new: an empty batch, no error.
	if b, err := c.Next(ctx, 100, 100*time.Millisecond); err != nil || len(b.Results) != 0 {
		t.Fatalf("empty fetch: %v %d", err, len(b.Results))
	}
	pub(7)
	pub(8)
	// A takeover from checkpoint 7 sees exactly the results after it, even
	// though they were delivered (unacked) to the previous consumer.
	if _, err := c.Next(ctx, 100, time.Second); err != nil {
		t.Fatal(err)
	}
	c2, err := ingest.Open(ctx, l.Results, "", "", ingest.Position{AfterSeq: 7}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Linger = time.Second
	b, err = c2.Next(ctx, 100, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != 2 || b.Results[0].Seq != 7 || b.Results[1].Seq != 8 {
		t.Fatalf("resumed batch: %+v", b.Results)
	}
	// The replaced consumer no longer delivers (fencing a stale leader).
	if _, err := c.Next(ctx, 100, 200*time.Millisecond); err == nil {
		t.Log("old consumer fetch returned no error (deleted consumer yields empty fetch)")
	}
}

// A result is handed over once the linger has passed, not when the pull
// (up to 1,000 results or 3 s) ends — 20 results one at a time would take a
// minute, past the test's 20 s — and the pull carries on across calls
// without losing or repeating a result.
func TestConsumer_hands_over_without_waiting_for_the_pull(t *testing.T) {
	ctx, _, l, _, pub := setup(t)
	c, err := ingest.Open(ctx, l.Results, "", "", ingest.Position{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var seen []uint64
	for want := uint64(1); want <= 20; want++ {
		pub(want)
		for uint64(len(seen)) < want {
			b, err := c.Next(ctx, 1000, 3*time.Second)
			if err != nil {
				t.Fatalf("after %d results: %v", len(seen), err)
			}
			for _, r := range b.Results {
				seen = append(seen, r.Seq)
			}
		}
	}
	for i, seq := range seen {
		if seq != uint64(i+1) {
			t.Fatalf("results %v: want 1 to 20, each once, in order", seen)
		}
	}
}

func TestCore_reports_backlog_and_drops(t *testing.T) {
	s := natstest.RunServer(t)
	nc, _ := s.JetStream()
	sub := s.Connect() // the subscriber's own connection, as the aggregator's
	const size, batch, sent = 16, 4, 100
	c, err := ingest.Subscribe(sub, "hm.result.>", size, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := sub.Flush(); err != nil { // the server knows the subscription
		t.Fatal(err)
	}
	ep, _ := subject.ParseEndpoint("127.0.0.1-TCP-80")
	tid := subject.TargetID{Endpoint: ep, Method: "tcp", Hash: "00000001"}
	for i := range sent {
		data, err := event.Marshal(&event.ProbeResult{V: 1, Target: tid.Token(), Observer: "p1", Seq: uint64(i + 1), State: event.Up, Reason: event.ReasonL4OK})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(subject.Space{}.Result(tid, "p1"), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Everything sent is either buffered or dropped once the subscriber's
	// connection has read it and the handler has queued it.
	wait.For(t, 10*time.Second, "the subscription to fill", func() bool {
		return sub.Stats().InMsgs == sent && c.Dropped() == sent-size
	})
	ctx := context.Background()
	b, err := c.Next(ctx, batch, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != batch || b.Pending != size-batch {
		t.Fatalf("first batch: %d results, pending %d; want %d and %d (more than a batch is still buffered: lagging)", len(b.Results), b.Pending, batch, size-batch)
	}
	if got := c.Counts().Dropped.Load(); got != sent-size {
		t.Fatalf("dropped %d, want %d", got, sent-size)
	}
	for range 2 {
		if _, err := c.Next(ctx, batch, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// 4 left: one batch or less is keeping up, not lagging.
	b, err = c.Next(ctx, batch, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Results) != batch || b.Pending != 0 {
		t.Fatalf("last batch: %d results, pending %d; want %d and 0", len(b.Results), b.Pending, batch)
	}
}
