package bus

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/natstest"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// TestEnsureLeavesAMatchingLayoutAlone: what the server reports for the
// streams and buckets Ensure made matches what Ensure wants, so the next
// Ensure (every service start) updates nothing.
func TestEnsureLeavesAMatchingLayoutAlone(t *testing.T) {
	s := natstest.RunServer(t)
	_, js := s.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sp := subject.Space{}
	set := Settings{ResultsMaxAge: 2 * time.Hour}
	if _, err := Ensure(ctx, js, sp, set); err != nil {
		t.Fatal(err)
	}
	rc, ec := StreamConfigs(sp, set)
	for _, want := range []jetstream.StreamConfig{rc, ec} {
		st, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !sameStream(st.CachedInfo().Config, want) {
			t.Errorf("stream %s: server config %+v does not match %+v: every start would update it", want.Name, st.CachedInfo().Config, want)
		}
	}
	tc, mc, lc, sc := BucketConfigs(sp, set)
	for _, want := range []jetstream.KeyValueConfig{tc, mc, lc, sc} {
		kv, err := js.KeyValue(ctx, want.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if have := st.(*jetstream.KeyValueBucketStatus).Config(); !sameBucket(have, want) {
			t.Errorf("bucket %s: server config %+v does not match %+v: every start would update it", want.Bucket, have, want)
		}
	}
	// A changed setting is still applied.
	set.ResultsMaxAge = 3 * time.Hour
	l, err := Ensure(ctx, js, sp, set)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Results.CachedInfo().Config.MaxAge; got != 3*time.Hour {
		t.Fatalf("results max age after a change = %v, want 3h", got)
	}
}
