package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/ingest"
	"github.com/healthmesh/healthmesh/services/aggregator/internal/topology"
	"github.com/healthmesh/healthmesh/shared/bus"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// A fleet is a synthetic inventory for the benchmarks: n targets, one
// backend each, backendsPerVS backends per VS and vssPerVA VSs per VIP. Every
// address is on loopback (127.1.0.0/16 VIPs, 127.2.0.0/15 backends) and
// nothing is ever probed: only results are made up.
type fleet struct {
	ids      []subject.TargetID
	tokens   []string
	desired  Desired
	observer string
	// flapEvery makes every flapEvery-th target alternate Up, Up, Down, Down
	// (a verdict change every second result with retry 1); 0 = all stay Up.
	flapEvery int
}

const (
	fleetInterval = time.Second
	backendsPerVS = 10
	vssPerVA      = 10
)

func newFleet(n, flapEvery int) *fleet {
	f := &fleet{observer: "prober-1", flapEvery: flapEvery,
		ids: make([]subject.TargetID, n), tokens: make([]string, n)}
	p := checker.Params{UpRetry: 1, DownRetry: 1, Interval: fleetInterval, Observers: 1}
	f.desired = Desired{Rev: 1, Targets: make(map[string]TargetDef, n)}
	inv := &f.desired.Inventory
	for i := range n {
		be := subject.Endpoint{Addr: netip.AddrFrom4([4]byte{127, byte(2 + i>>16), byte(i >> 8), byte(i)}),
			Proto: subject.TCP, Port: 8080}
		id := subject.TargetID{Endpoint: be, Method: "tcp", Hash: subject.HashOf("")}
		tok := id.Token()
		f.ids[i], f.tokens[i] = id, tok
		f.desired.Targets[tok] = TargetDef{Params: p, Def: event.Target{ID: tok, Addr: be.Addr.String(), Port: be.Port,
			Proto: "TCP", Method: "tcp", Interval: int64(fleetInterval), Timeout: int64(fleetInterval), Observers: 1}}
		j := i / backendsPerVS // VS index
		if i%backendsPerVS == 0 {
			a := j / vssPerVA // VIP index
			vip := netip.AddrFrom4([4]byte{127, 1, byte(a >> 8), byte(a)})
			if j%vssPerVA == 0 {
				inv.VAs = append(inv.VAs, topology.VASpec{VIP: vip, DownPolicy: topology.DownPolicyAllOf,
					Action: event.ActionSpec{Actioner: "Blank"}})
			}
			inv.VSs = append(inv.VSs, topology.VSSpec{ID: subject.Endpoint{Addr: vip, Proto: subject.TCP, Port: uint16(80 + j%vssPerVA)},
				Action: event.ActionSpec{Actioner: "BackendUpdate"}})
		}
		v := &inv.VSs[len(inv.VSs)-1]
		v.Backends = append(v.Backends, topology.BackendSpec{ID: be, Target: tok, Weight: 100, Version: "1"})
	}
	return f
}

// state is what target i reports in round r.
func (f *fleet) state(i, r int) event.State {
	if f.flapEvery > 0 && i%f.flapEvery == 0 && (r/2)%2 == 1 {
		return event.Down
	}
	return event.Up
}

// result is target i's result of round r, probed at ts.
func (f *fleet) result(i, r int, ts time.Time) event.ProbeResult {
	st, reason := f.state(i, r), event.ReasonL4OK
	if st == event.Down {
		reason = event.ReasonL4CON
	}
	return event.ProbeResult{V: event.Version, Target: f.tokens[i], Observer: f.observer, Seq: uint64(r + 1),
		TS: ts.UnixNano(), State: st, Reason: reason, RTT: int64(100 * time.Microsecond), Interval: int64(fleetInterval)}
}

// changesPerRound is how many target verdicts change in a round after the
// first two (which bring every target from Unknown to Up).
func (f *fleet) changesPerRound() float64 {
	if f.flapEvery == 0 {
		return 0
	}
	return float64((len(f.tokens)+f.flapEvery-1)/f.flapEvery) / 2
}

// rounds pre-decodes one flap cycle (4 rounds) of results, cut in batches
// of batch results as the fetcher would hand them over; replay advances TS
// and Seq so the checkers accept them again.
type rounds struct {
	batches [4][]ingest.Batch
	seq     uint64
}

func (f *fleet) rounds(batch int) *rounds {
	rs := &rounds{}
	for r := range 4 {
		for start := 0; start < len(f.tokens); start += batch {
			end := min(start+batch, len(f.tokens))
			b := ingest.Batch{Results: make([]event.ProbeResult, 0, end-start), Seqs: make([]uint64, 0, end-start)}
			for i := start; i < end; i++ {
				b.Results = append(b.Results, f.result(i, r, time.Time{}))
				b.Seqs = append(b.Seqs, 0)
			}
			rs.batches[r] = append(rs.batches[r], b)
		}
	}
	return rs
}

// round readies round r's batches for probe time ts and returns them.
func (rs *rounds) round(r int, ts time.Time) []ingest.Batch {
	bs := rs.batches[r%4]
	for k := range bs {
		b := &bs[k]
		for i := range b.Results {
			rs.seq++
			b.Results[i].TS, b.Results[i].Seq, b.Seqs[i] = ts.UnixNano(), uint64(r+1), rs.seq
		}
		b.Last = rs.seq
	}
	return bs
}

// offline is a JetStream that stores nothing and acknowledges everything at
// once, so the engine's fold, journal and checkpoint code runs without a
// server: what remains is the engine's own CPU and memory.
type offline struct {
	jetstream.JetStream // nil: any other method is not meant to be called
	seq                 atomic.Uint64
	writes              atomic.Uint64
	bytes               atomic.Uint64
	done                chan struct{}
	mu                  sync.Mutex // keys and refuse: the journal writes from several goroutines
	// keys, when not nil, are the KV keys the writes left (subject:
	// "$KV.<bucket>.<key>").
	keys map[string]bool
	// refuse, when not nil, names subjects whose next async write fails
	// (once each).
	refuse map[string]bool
}

// refused is the outcome of a write the server refused.
type refused struct{ m *nats.Msg }

func (refused) Ok() <-chan *jetstream.PubAck { return make(chan *jetstream.PubAck) }

func (refused) Err() <-chan error {
	c := make(chan error, 1)
	c <- errors.New("refused")
	return c
}

func (r refused) Msg() *nats.Msg { return r.m }

func newOffline() *offline {
	o := &offline{done: make(chan struct{})}
	close(o.done)
	return o
}

func (o *offline) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	o.bytes.Add(uint64(len(m.Data)))
	return &jetstream.PubAck{Sequence: o.seq.Add(1)}, nil
}

func (o *offline) PublishAsync(_ string, data []byte, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	o.writes.Add(1)
	o.bytes.Add(uint64(len(data)))
	return nil, nil
}

func (o *offline) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	o.writes.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.refuse[m.Subject] {
		delete(o.refuse, m.Subject)
		return refused{m}, nil
	}
	if o.keys != nil {
		o.keys[m.Subject] = m.Header.Get("KV-Operation") != "DEL"
	}
	return nil, nil
}

func (o *offline) PublishAsyncComplete() <-chan struct{} { return o.done }

type offlineStream struct{ jetstream.Stream }

func (offlineStream) GetLastMsgForSubject(context.Context, string) (*jetstream.RawStreamMsg, error) {
	return nil, jetstream.ErrMsgNotFound
}

type offlineKV struct {
	jetstream.KeyValue
	name string
}

func (k offlineKV) Bucket() string { return k.name }

func (k offlineKV) Put(context.Context, string, []byte) (uint64, error) { return 1, nil }

// offlineEngine is an engine as Run builds it, on the offline JetStream,
// with a clock the caller moves.
func offlineEngine(tb testing.TB, js *offline, now *time.Time) *engine {
	tb.Helper()
	sp := subject.Space{}
	l := &bus.Layout{Space: sp, Events: offlineStream{}, Results: offlineStream{},
		Targets: offlineKV{name: sp.BucketTargets()}, State: offlineKV{name: sp.BucketState()}}
	return newEngine(Options{JS: js, Layout: l, ID: "bench", Term: 1, Log: zerolog.Nop(),
		Metrics: NewMetrics(prometheus.NewRegistry()), Now: func() time.Time { return *now }})
}

// warm gives every target of f its first verdict (Unknown → Up): rounds 0
// and 1. It returns the clock after them.
func warm(tb testing.TB, e *engine, f *fleet, rs *rounds, now *time.Time) {
	tb.Helper()
	for r := range 2 {
		*now = now.Add(fleetInterval)
		for _, b := range rs.round(r, *now) {
			if err := e.fold(context.Background(), b); err != nil {
				tb.Fatal(err)
			}
		}
	}
	for _, tok := range []string{f.tokens[0], f.tokens[len(f.tokens)-1]} {
		if v := e.targets[tok].c.Verdict(); v != event.Up {
			tb.Fatalf("target %s after warm-up: %s, want up", tok, v)
		}
	}
}

// fleetName names a fleet of n targets in benchmark output.
func fleetName(n, flapEvery int) string {
	if flapEvery == 0 {
		return fmt.Sprintf("targets_%d_steady", n)
	}
	return fmt.Sprintf("targets_%d_flap_1_in_%d", n, flapEvery)
}
