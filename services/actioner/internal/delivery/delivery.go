// Package delivery consumes backend and VA transitions from HM_EVENTS
// through the node's durable pull consumer and turns them into actions:
// pending changes of one VS are coalesced into one call, an older event is
// never applied after a newer one of the same object, successes and
// permanent failures are acknowledged, and retryable failures are handed
// back to JetStream with a growing delay.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/healthmesh/healthmesh/services/actioner/internal/action"
	"github.com/healthmesh/healthmesh/services/actioner/internal/executor"
	"github.com/healthmesh/healthmesh/services/actioner/internal/ledger"
	"github.com/healthmesh/healthmesh/services/actioner/internal/metrics"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// Defaults of Config's tunables.
const (
	DefaultBatchSize = 1000
	DefaultBatchWait = 20 * time.Millisecond
	DefaultIdleWait  = time.Second
	DefaultAckWait   = 10 * time.Second
)

// DefaultRetry is the redelivery delay after the n-th failed attempt
// (the last value repeats): a failing dpvs-agent is retried until it
// returns.
var DefaultRetry = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second}

// Config configures Run. Zero tunables take their defaults.
type Config struct {
	Stream  jetstream.Stream // HM_EVENTS
	Space   subject.Space
	Node    string
	Exec    *executor.Executor
	Ledger  *ledger.Ledger
	Metrics *metrics.Metrics
	Log     zerolog.Logger

	BatchSize int           // messages per batch (coalescing scope)
	BatchWait time.Duration // after the first message, how long more are collected
	IdleWait  time.Duration // longest wait for a first message before Between runs
	AckWait   time.Duration // the consumer's ack deadline; long actions send InProgress
	Retry     []time.Duration

	// Between, when set, runs before every fetch (so after every batch and
	// every idle wait), in the consumer's goroutine (so it never races an action on the same
	// object); it returns how soon it wants to run again.
	Between func(ctx context.Context) time.Duration
	// Ready, when set, is called once the durable consumer exists.
	Ready func()
	// Recreated, when set, is called (in the consumer's goroutine) each time
	// the consumer had to be created again after a failure: events
	// published while it was gone were not delivered.
	Recreated func()
	// BeforeAck is a test hook called after a successful action and before
	// its messages are acknowledged; if ctx has ended when it returns, they
	// are not.
	BeforeAck func()
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait <= 0 {
		c.BatchWait = DefaultBatchWait
	}
	if c.IdleWait <= 0 {
		c.IdleWait = DefaultIdleWait
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if len(c.Retry) == 0 {
		c.Retry = DefaultRetry
	}
}

// Durable is the durable consumer name of an LB node: replicas of one node
// share it, and every node has its own.
func Durable(node string) string { return "act-" + subject.NameToken(node) }

// ConsumerConfig is the node's durable consumer. MaxDeliver is unlimited:
// an event is retried until the load balancer takes it. Retries are paced
// by NakWithDelay (Config.Retry), not by the consumer's BackOff: the server
// offsets a NAK delay from AckWait but checks it against BackOff[n], so with
// a growing BackOff list a NAK delay d becomes d + BackOff[n] - AckWait
// (measured: 50ms became 2s). Without BackOff, a message nobody
// acknowledged (a crashed actioner) comes back after AckWait. A new durable
// starts with new events: what happened before is re-asserted from
// hm_state.
func ConsumerConfig(sp subject.Space, node string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        Durable(node),
		Description:    "healthmesh actioner of node " + node,
		FilterSubjects: []string{sp.EventsBackendAll(), sp.EventsVAAll()},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		// Unlimited: while the agent is down every failing object keeps its
		// newest event pending (older ones are acknowledged as superseded),
		// and a cap would stall VA events behind them.
		MaxAckPending: -1,
	}
}

// Run consumes until ctx ends. It re-creates the consumer after any fetch
// error (someone deleted it, NATS restarted) and rides out NATS outages; it
// returns nil when ctx ends.
func Run(ctx context.Context, cfg Config) error {
	cfg.defaults()
	d := &deliverer{cfg: cfg, prefix: strings.TrimSuffix(cfg.Space.EventsAll(), ">")}
	var (
		cons  jetstream.Consumer
		ready bool
	)
	for ctx.Err() == nil {
		if cons == nil {
			var err error
			cons, err = cfg.Stream.CreateOrUpdateConsumer(ctx, ConsumerConfig(cfg.Space, cfg.Node, cfg.AckWait))
			if err != nil {
				d.warn("create consumer", err)
				pause(ctx, 500*time.Millisecond)
				continue
			}
			switch {
			case !ready && cfg.Ready != nil:
				cfg.Ready()
			case ready && cfg.Recreated != nil:
				cfg.Recreated()
			}
			ready = true
		}
		wait := cfg.IdleWait
		if cfg.Between != nil {
			wait = min(max(cfg.Between(ctx), 20*time.Millisecond), cfg.IdleWait)
		}
		msgs, err := d.fetch(ctx, cons, wait)
		if err != nil && ctx.Err() == nil {
			// A deleted consumer shows up as "no responders", a NATS outage
			// as timeouts: re-creating (idempotent) covers both.
			d.warn("fetch", err)
			cons = nil
		}
		if len(msgs) > 0 {
			d.process(ctx, msgs)
		}
		if err != nil && len(msgs) == 0 {
			pause(ctx, 250*time.Millisecond)
		}
	}
	return nil
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

type deliverer struct {
	cfg    Config
	prefix string // "<prefix>.event."

	mu       sync.Mutex
	lastWarn map[string]time.Time // what → last logged, to log each problem once per interval
	muted    map[string]int
}

// warnInterval is how often one kind of problem is logged.
const warnInterval = 10 * time.Second

// warn logs a recurring problem at most once per warnInterval, with the
// number of occurrences it did not log.
func (d *deliverer) warn(what string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastWarn == nil {
		d.lastWarn, d.muted = map[string]time.Time{}, map[string]int{}
	}
	if time.Since(d.lastWarn[what]) < warnInterval {
		d.muted[what]++
		return
	}
	d.cfg.Log.Warn().Err(err).Int("suppressed", d.muted[what]).Msg(what)
	d.lastWarn[what], d.muted[what] = time.Now(), 0
}

// fetch waits up to wait for a first message, then collects what else
// arrives within BatchWait, up to BatchSize: a burst of transitions of one
// VS lands in one batch.
func (d *deliverer) fetch(ctx context.Context, cons jetstream.Consumer, wait time.Duration) ([]jetstream.Msg, error) {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	b, err := cons.Fetch(1, jetstream.FetchContext(wctx))
	if err != nil {
		return nil, err
	}
	msgs := drain(b)
	if err := b.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return msgs, err
	}
	if len(msgs) == 0 || d.cfg.BatchSize == 1 || ctx.Err() != nil {
		return msgs, nil
	}
	b, err = cons.Fetch(d.cfg.BatchSize-1, jetstream.FetchMaxWait(d.cfg.BatchWait))
	if err != nil {
		return msgs, err
	}
	msgs = append(msgs, drain(b)...)
	return msgs, b.Error()
}

func drain(b jetstream.MessageBatch) []jetstream.Msg {
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	return msgs
}

// item is one decoded, current (not stale) event.
type item struct {
	msg jetstream.Msg
	idx int    // index in the batch (its pending slot)
	seq uint64 // stream sequence
	n   int    // delivery count (1 = first)
	key string // ledger key
	id  ledger.Key
	tr  *event.Transition
}

// process handles one batch: decode, drop what is stale or superseded,
// group the rest into jobs, run them, settle the messages.
func (d *deliverer) process(ctx context.Context, msgs []jetstream.Msg) {
	m := d.cfg.Metrics
	m.Batch.Observe(float64(len(msgs)))
	p := newPending(msgs)
	stop := d.keepAlive(p)
	defer func() {
		stop()
		if ctx.Err() != nil {
			p.nakRest() // stopping: let the next process (or a replica) take them now
		}
	}()

	latest := map[string]*item{}
	for i, msg := range msgs {
		it, reason, err := d.decode(msg, i)
		if err != nil {
			m.Skipped.WithLabelValues(reason).Inc()
			d.warn("event dropped", fmt.Errorf("%s seq %d: %w", msg.Subject(), seqOf(msg), err))
			p.term(i)
			continue
		}
		m.Events.WithLabelValues(string(it.id.Kind)).Inc()
		if d.stale(ctx, it) {
			m.Skipped.WithLabelValues(metrics.SkipStale).Inc()
			p.ack(i)
			continue
		}
		d.cfg.Ledger.Want(it.key, it.tr)
		if prev := latest[it.key]; prev != nil {
			older := prev
			if it.seq < prev.seq {
				older, it = it, prev
			}
			m.Skipped.WithLabelValues(metrics.SkipSuperseded).Inc()
			p.ack(older.idx)
		}
		latest[it.key] = it
	}

	jobs, groups := d.plan(latest, p)
	errs := d.cfg.Exec.DoAll(ctx, jobs)
	for i, g := range groups {
		d.settle(ctx, p, g, errs[i])
	}
}

// seqOf is the message's stream sequence, 0 when its metadata is unreadable.
func seqOf(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// decode parses a message; on error it returns the skip reason.
func (d *deliverer) decode(msg jetstream.Msg, idx int) (*item, string, error) {
	md, err := msg.Metadata()
	if err != nil {
		return nil, metrics.SkipMalformed, fmt.Errorf("metadata: %w", err)
	}
	key, ok := strings.CutPrefix(msg.Subject(), d.prefix)
	if !ok {
		return nil, metrics.SkipMalformed, errors.New("not a transition subject")
	}
	id, err := ledger.ParseKey(key)
	if err != nil {
		return nil, metrics.SkipMalformed, err
	}
	tr := new(event.Transition)
	if err := event.Unmarshal(msg.Data(), tr); err != nil {
		return nil, metrics.SkipMalformed, err
	}
	if tr.Kind != id.Kind {
		return nil, metrics.SkipMalformed, fmt.Errorf("kind %q on a %s subject", tr.Kind, id.Kind)
	}
	return &item{msg: msg, idx: idx, seq: md.Sequence.Stream, n: int(md.NumDelivered), key: key, id: id, tr: tr}, "", nil
}

// stale reports whether a newer event of the same object exists: one this
// process delivered before, a newer generation in hm_state, or (for a
// redelivery, which may follow a restart) a later message on the object's
// subject in the stream.
func (d *deliverer) stale(ctx context.Context, it *item) bool {
	if d.cfg.Ledger.Observe(it.key, it.seq) || d.cfg.Ledger.Outdated(it.key, it.tr.Gen) {
		return true
	}
	if it.n <= 1 {
		return false // first deliveries come in stream order
	}
	last, err := d.cfg.Stream.GetLastMsgForSubject(ctx, it.msg.Subject())
	if err != nil {
		d.warn("last event lookup", err)
		return false // cannot tell: applying again is safe, skipping might not be
	}
	return last.Sequence > it.seq
}

// group is the messages one job settles.
type group struct {
	items []*item
}

// plan turns the current events into jobs: one per VS and actioner with
// all its backends, one per VA. Events that ask for nothing are settled
// here.
func (d *deliverer) plan(latest map[string]*item, p *pending) ([]executor.Job, []group) {
	items := make([]*item, 0, len(latest))
	for _, it := range latest {
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b *item) int { return cmpSeq(a.seq, b.seq) })

	var (
		jobs   []executor.Job
		groups []group
		byVS   = map[string]int{} // VS token + spec → index in jobs
	)
	for _, it := range items {
		t := it.tr
		switch it.id.Kind {
		case event.KindBackend:
			if t.Apply == nil || t.Action == nil {
				d.noop(p, it, metrics.SkipNoop)
				continue
			}
			if t.Apply.Listed {
				// DPVS listed it so already (a healthy backend's first up):
				// a call would change nothing. The resync still compares it
				// with dpvs-agent every action-sync-time.
				d.noop(p, it, metrics.SkipListed)
				continue
			}
			gk := it.id.VS.Token() + "\x00" + t.Action.Key()
			i, ok := byVS[gk]
			if !ok {
				i = len(jobs)
				byVS[gk] = i
				jobs = append(jobs, executor.Job{
					Spec: *t.Action, Kind: event.KindBackend, Op: string(action.OpApply),
					Request: action.Request{
						Op: action.OpApply, VIP: it.id.VS.Addr, Port: it.id.VS.Port, Proto: it.id.VS.Proto,
						Env: map[string]string{action.EnvObject: it.id.VS.String()},
					},
				})
				groups = append(groups, group{})
			}
			j := &jobs[i]
			j.Request.Backends = append(j.Request.Backends, action.Backend{
				Addr: it.id.Backend.Addr, Port: it.id.Backend.Port, Weight: t.Apply.Weight, Inhibited: t.Apply.Inhibited,
			})
			j.Request.Version = newerVersion(j.Request.Version, t.Apply.Version)
			j.Attempt, j.EventSeq = max(j.Attempt, it.n), max(j.EventSeq, it.seq)
			groups[i].items = append(groups[i].items, it)
		case event.KindVA:
			op, ok := vaOp(t.To)
			if !ok || t.Action == nil {
				d.noop(p, it, metrics.SkipNoop)
				continue
			}
			jobs = append(jobs, executor.Job{
				Spec: *t.Action, Kind: event.KindVA, Op: string(op), Attempt: it.n, EventSeq: it.seq,
				Request: action.Request{Op: op, VIP: it.id.VA, Env: transitionEnv(it.id.VA.String(), t)},
			})
			groups = append(groups, group{items: []*item{it}})
		}
	}
	for _, j := range jobs {
		if j.Kind == event.KindBackend {
			d.cfg.Metrics.Coalesced.Observe(float64(len(j.Request.Backends)))
		}
	}
	return jobs, groups
}

// noop acknowledges an event that asks for nothing to be applied (a
// backend gone Unknown, a VA with no actioner, what DPVS already has) and
// records it as done.
func (d *deliverer) noop(p *pending, it *item, why string) {
	d.cfg.Metrics.Skipped.WithLabelValues(why).Inc()
	d.cfg.Ledger.Record(it.key, it.tr.Gen, nil, false)
	p.ack(it.idx)
}

// settle acknowledges or hands back a job's messages after its action.
func (d *deliverer) settle(ctx context.Context, p *pending, g group, err error) {
	if ctx.Err() != nil && err != nil {
		return // interrupted by shutdown: redelivered to whoever runs next
	}
	permanent := action.IsPermanent(err)
	for _, it := range g.items {
		d.cfg.Ledger.Record(it.key, it.tr.Gen, err, permanent)
	}
	switch {
	case err == nil:
		if d.cfg.BeforeAck != nil {
			d.cfg.BeforeAck()
			if ctx.Err() != nil {
				return
			}
		}
		for _, it := range g.items {
			p.ack(it.idx)
		}
	case permanent:
		for _, it := range g.items {
			p.ack(it.idx)
		}
	default:
		for _, it := range g.items {
			p.nak(it.idx, d.retryDelay(it.n))
		}
	}
}

// retryDelay is the redelivery delay after a message's n-th failure.
func (d *deliverer) retryDelay(n int) time.Duration {
	return d.cfg.Retry[min(max(n-1, 0), len(d.cfg.Retry)-1)]
}

// keepAlive tells the server, every third of the ack deadline, that the
// batch's unsettled messages are still being worked on, so a long action
// (a script with a long timeout, a slow agent) does not get them
// redelivered meanwhile. The returned func stops it and waits for it.
func (d *deliverer) keepAlive(p *pending) (stop func()) {
	done := make(chan struct{}) // closed by stop
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(d.cfg.AckWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.inProgress()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func vaOp(s event.State) (action.Op, bool) {
	switch s {
	case event.Up:
		return action.OpUp, true
	case event.Down:
		return action.OpDown, true
	}
	return "", false
}

// transitionEnv is what a script learns about the transition behind it.
func transitionEnv(object string, t *event.Transition) map[string]string {
	return map[string]string{
		action.EnvObject: object,
		action.EnvFrom:   string(t.From),
		action.EnvTo:     string(t.To),
		action.EnvReason: string(t.Reason),
	}
}

// newerVersion returns the more recent of two dpvs-agent versions (decimal
// millisecond timestamps); a stale one only costs a 270 round trip, and the
// newest one seen is the likeliest to be current.
func newerVersion(a, b string) string {
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	na, ea := strconv.ParseUint(a, 10, 64)
	nb, eb := strconv.ParseUint(b, 10, 64)
	if ea != nil || eb != nil {
		return max(a, b)
	}
	if nb > na {
		return b
	}
	return a
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pending is a batch's messages with what has been done to them: each is
// settled (acked, naked or terminated) at most once, and those not yet
// settled get InProgress while actions run.
type pending struct {
	mu   sync.Mutex
	msgs []jetstream.Msg
	done []bool
}

func newPending(msgs []jetstream.Msg) *pending {
	return &pending{msgs: msgs, done: make([]bool, len(msgs))}
}

func (p *pending) settle(i int, f func(jetstream.Msg) error) {
	p.mu.Lock()
	if p.done[i] {
		p.mu.Unlock()
		return
	}
	p.done[i] = true
	m := p.msgs[i]
	p.mu.Unlock()
	_ = f(m) // a lost ack means a redelivery, which is harmless
}

func (p *pending) ack(i int)  { p.settle(i, jetstream.Msg.Ack) }
func (p *pending) term(i int) { p.settle(i, jetstream.Msg.Term) }
func (p *pending) nak(i int, delay time.Duration) {
	p.settle(i, func(m jetstream.Msg) error { return m.NakWithDelay(delay) })
}

func (p *pending) nakRest() {
	for i := range p.msgs {
		p.settle(i, jetstream.Msg.Nak)
	}
}

func (p *pending) inProgress() {
	p.mu.Lock()
	var open []jetstream.Msg
	for i, m := range p.msgs {
		if !p.done[i] {
			open = append(open, m)
		}
	}
	p.mu.Unlock()
	for _, m := range open {
		_ = m.InProgress()
	}
}
