package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/ingest"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConsumer_batches_checkpoints_and_resumes(t *testing.T) {
	s := natstest.RunServer(t)
	nc, js := s.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
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
