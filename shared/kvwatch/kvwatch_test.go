package kvwatch_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/kvwatch"
	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWatch_reports_initial_values_updates_and_deletes(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, m event.Member) {
		b, _ := event.Marshal(&m)
		if _, err := kv.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	put("a", event.Member{ID: "a"})
	put("b", event.Member{ID: "b"})
	if _, err := kv.Put(ctx, "junk", []byte{0xc1}); err != nil { // 0xc1 is never valid msgpack
		t.Fatal(err)
	}

	var mu sync.Mutex
	got := map[string]string{}
	synced := 0
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		kvwatch.Watch(wctx, kv, kvwatch.Handler[event.Member]{
			Put:    func(k string, m *event.Member, _ uint64) { mu.Lock(); got[k] = m.ID; mu.Unlock() },
			Delete: func(k string) { mu.Lock(); delete(got, k); mu.Unlock() },
			Synced: func() { mu.Lock(); synced++; mu.Unlock() },
		}, zerolog.Nop())
	}()
	defer func() { cancel(); <-done }()
	state := func(want map[string]string, wantSynced int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			if synced != wantSynced || len(got) != len(want) {
				return false
			}
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
			return true
		}
	}
	wait.For(t, 5*time.Second, "initial values, malformed skipped", state(map[string]string{"a": "a", "b": "b"}, 1))
	put("c", event.Member{ID: "c2"})
	if err := kv.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, "update and delete", state(map[string]string{"b": "b", "c": "c2"}, 1))
}
