package kvwrite_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/kvwrite"
	"github.com/healthmesh/healthmesh/shared/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// bucket starts a server with a bucket "t" whose messages are at most 64 bytes
// (a larger write is refused by the server: a write that fails).
func bucket(t *testing.T) (context.Context, jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	_, js := natstest.RunServer(t).JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t", MaxValueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, js, kv
}

// Writes that fail are named by the next Wait, once; the others are stored.
// More writes than are followed between two looks (collectAt) still report
// theirs.
func TestWait_names_failed_keys_once(t *testing.T) {
	ctx, js, kv := bucket(t)
	w := kvwrite.New(js, "t")
	const n = 5000
	for i := range n {
		v := []byte("v" + strconv.Itoa(i))
		if i == 100 || i == 4500 {
			v = bytes.Repeat([]byte("x"), 128)
		}
		if err := w.Put(ctx, "k"+strconv.Itoa(i), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Delete(ctx, "k7"); err != nil {
		t.Fatal(err)
	}
	err := w.Wait(ctx)
	var failed *kvwrite.Failed
	if !errors.As(err, &failed) || len(failed.Keys) != 2 || failed.Keys["k100"] == nil || failed.Keys["k4500"] == nil {
		t.Fatalf("Wait = %v, want k100 and k4500 failed", err)
	}
	if e, err := kv.Get(ctx, "k4999"); err != nil || string(e.Value()) != "v4999" {
		t.Fatalf("k4999: %v", err)
	}
	if _, err := kv.Get(ctx, "k7"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("deleted k7: %v", err)
	}
	if err := w.Wait(ctx); err != nil {
		t.Fatalf("second Wait = %v, want nil (reported once)", err)
	}
}

// stalling refuses the first async publishes as a full window does; stuck
// makes the window never drain.
type stalling struct {
	jetstream.JetStream
	refuse int
	stuck  bool
}

func (s *stalling) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if s.refuse > 0 {
		s.refuse--
		return nil, jetstream.ErrTooManyStalledMsgs
	}
	return s.JetStream.PublishMsgAsync(m, opts...)
}

func (s *stalling) PublishAsyncComplete() <-chan struct{} {
	if s.stuck {
		return make(chan struct{})
	}
	return s.JetStream.PublishAsyncComplete()
}

// A full window of unacknowledged writes is back-pressure, not a failure:
// an inventory or checkpoint of 100,000 keys is far larger than it.
func TestPut_waits_for_a_full_window(t *testing.T) {
	ctx, js, kv := bucket(t)
	w := kvwrite.New(&stalling{JetStream: js, refuse: 3}, "t")
	if err := w.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := w.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("k: %v", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	w = kvwrite.New(&stalling{JetStream: js, refuse: 1, stuck: true}, "t")
	if err := w.Put(canceled, "k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put while the window stays full, context canceled = %v, want context.Canceled", err)
	}
}
