package deploytest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/subject"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// TestClusterR3 runs three servers of deploy/nats/cluster.conf on loopback,
// lets the aggregator's user create the
// layout with replicas 3 as `bus: {replicas: 3}` asks, and checks every
// stream and bucket is replicated on all three; then one server goes away
// and a prober can still heartbeat.
func TestClusterR3(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: a 3-node JetStream cluster takes seconds to elect its leaders")
	}
	keys := newKeyring(t)
	conf := filepath.Join(natsDir(t), "cluster.conf")
	// The routes must be known before the first server starts (a JetStream
	// cluster needs configured routes): reserve three loopback ports.
	ports := make([]int, 3)
	var routes []*url.URL
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])})
	}
	var servers []*server.Server
	var logs []*serverLog
	for i, port := range ports {
		t.Setenv("HM_NATS_NAME", fmt.Sprintf("nats-%d", i+1))
		t.Setenv("HM_NATS_ROUTES", "[nats://nats-1:6222]") // the container's; replaced below
		s, l := startServer(t, conf, func(o *server.Options) {
			o.Cluster.Host, o.Cluster.Port = "127.0.0.1", port
			o.Routes = routes
		})
		servers = append(servers, s)
		logs = append(logs, l)
	}
	// A JetStream API request sent before the cluster has a meta leader gets
	// no answer at all (the servers drop it); bus.Ensure's attempt would wait
	// out its whole context. Roles in production simply retry (the compose
	// stack restarts them); here, wait for the leader.
	wait.For(t, 30*time.Second, "a JetStream meta leader", func() bool {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	agg := connectAs(t, bus.ConnOptions{URLs: servers[1].ClientURL(), Name: "aggregator", NKeyFile: keys.seeds["aggregator"]})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sp := subject.Space{}
	if _, err := bus.Ensure(ctx, agg.js, sp, bus.Settings{Replicas: 3}); err != nil {
		for i, l := range logs {
			t.Logf("---- nats-%d ----\n%s", i+1, l)
		}
		t.Fatalf("create the layout with replicas 3: %v", err)
	}
	names := []string{sp.StreamResults(), sp.StreamEvents(), "KV_" + sp.BucketTargets(), "KV_" + sp.BucketMembers(),
		"KV_" + sp.BucketLeader(), "KV_" + sp.BucketState()}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			var info *jetstream.StreamInfo
			ok := wait.Until(30*time.Second, func() bool {
				s, err := agg.js.Stream(ctx, name)
				if err != nil {
					return false
				}
				info = s.CachedInfo()
				return info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2
			})
			if !ok || info.Config.Replicas != 3 {
				t.Fatalf("stream %s: replicas %d, cluster %+v; want 3 replicas with a leader", name, info.Config.Replicas, info.Cluster)
			}
		})
	}

	// A prober heartbeats on the third server while the first goes away:
	// two of three replicas are a quorum.
	prober := connectAs(t, bus.ConnOptions{URLs: servers[2].ClientURL(), Name: "prober", NKeyFile: keys.seeds["prober"]})
	members, err := prober.js.KeyValue(ctx, sp.BucketMembers())
	if err != nil {
		t.Fatalf("prober binds to %s: %v", sp.BucketMembers(), err)
	}
	servers[0].Shutdown()
	servers[0].WaitForShutdown()
	var lastErr error
	if !wait.Until(30*time.Second, func() bool {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, lastErr = members.Put(pctx, "prober-1", []byte("alive"))
		return lastErr == nil
	}) {
		t.Fatalf("heartbeat with one of three servers down: %v", lastErr)
	}
	if n := len(prober.denied); n != 0 {
		t.Errorf("prober got %d permission violations: %v", n, prober.denied)
	}
}
