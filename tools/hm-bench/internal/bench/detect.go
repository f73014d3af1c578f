package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/healthmesh/healthmesh/shared/dpvsagent"
	"github.com/healthmesh/healthmesh/shared/dpvsagent/agenttest"
	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/subject"
)

// observed is one probe result of a failed backend, as the bench saw it.
type observed struct {
	start, end time.Time
	down       bool
}

// resultLog collects the results of the failed backends' targets.
type resultLog struct {
	mu  sync.Mutex
	by  map[string][]observed // target token → results in arrival order
	bad int                   // undecodable
}

func (l *resultLog) handle(m *nats.Msg) {
	var r event.ProbeResult
	if err := event.Unmarshal(m.Data, &r); err != nil {
		l.mu.Lock()
		l.bad++
		l.mu.Unlock()
		return
	}
	start := time.Unix(0, r.TS)
	o := observed{start: start, end: start.Add(time.Duration(r.RTT)), down: r.State == event.Down}
	l.mu.Lock()
	l.by[r.Target] = append(l.by[r.Target], o)
	l.mu.Unlock()
}

// floor is when the failure of a target could first be known: the end of
// the result completing need failing results in a row (after the last
// success, per observer stream as received). ok is false when the results
// seen do not complete such a streak.
func (l *resultLog) floor(token string, need int) (time.Time, bool) {
	l.mu.Lock()
	rs := slices.Clone(l.by[token])
	l.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i].start.Before(rs[j].start) })
	streak := 0
	for _, r := range rs {
		if !r.down {
			streak = 0
			continue
		}
		if streak++; streak == need {
			return r.end, true
		}
	}
	return time.Time{}, false
}

// detect fails FailPct of the backends (closing their listeners), and
// measures, per backend, from the close to the first dpvs-agent health
// update that sets it to weight 0 + inhibited, with the floor beside it.
func (p *pipe) detect(ctx context.Context, nc *nats.Conn, tokens map[string]string) (Detection, error) {
	eps := p.s.endpoints()
	k := max(1, int(math.Round(float64(len(eps))*p.c.FailPct/100)))
	step := float64(len(eps)) / float64(k)
	failed := map[string]bool{} // "ip:port"
	var order []string
	byFarm := map[*farm]url.Values{}
	for i := range k {
		at := int(float64(i)*step + step/2)
		key := eps[at].String()
		failed[key] = true
		order = append(order, key)
		f := p.farmOf(at)
		if byFarm[f] == nil {
			byFarm[f] = url.Values{"proto": {p.s.Method}}
		}
		byFarm[f].Add("addr", key)
	}
	d := Detection{Failed: k, ConfigFloorMs: float64((time.Duration(p.c.DownRetry+1) * p.s.Interval).Milliseconds())}

	// Watch the failed targets' results (core subscriptions: the server
	// filters, the bench sees only these).
	log := &resultLog{by: map[string][]observed{}}
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	for _, key := range order {
		tok, ok := tokens[key]
		if !ok {
			return d, fmt.Errorf("bench: backend %s has no target in hm_targets", key)
		}
		part := subject.Partition(tok, subject.Partitions)
		s, err := nc.Subscribe(fmt.Sprintf("hm.result.%d.%s.*", part, tok), log.handle)
		if err != nil {
			return d, fmt.Errorf("bench: subscribe: %w", err)
		}
		subs = append(subs, s)
	}
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		return d, fmt.Errorf("bench: nats flush: %w", err)
	}

	if err := p.do(ctx, http.MethodDelete, "http://"+p.agentAd+"/_emu/calls", "", http.StatusNoContent); err != nil {
		return d, err
	}
	failedAt := time.Now()
	for f, q := range byFarm {
		if err := p.post(ctx, "http://"+f.control+"/fail?"+q.Encode(), "", http.StatusOK); err != nil {
			return d, err
		}
	}

	applied := map[string]time.Time{}
	spurious := map[string]bool{}
	deadline := time.Duration(d.ConfigFloorMs)*time.Millisecond + 30*time.Second
	// The call log since the failure is small; its times are the emulator's,
	// so polling slower only delays the end of the wait, not the numbers.
	err := waitEvery(ctx, 250*time.Millisecond, deadline, fmt.Sprintf("%d failed backends applied down", k), func() (bool, error) {
		if err := p.checkAlive(); err != nil {
			return false, err
		}
		if err := p.downCalls(ctx, failed, applied, spurious); err != nil {
			return false, err
		}
		return len(applied) == k, nil
	})
	if err != nil && ctx.Err() != nil {
		return d, err
	}
	// A deadline is a result (Missing), not an error.
	d.Applied, d.Spurious = len(applied), len(spurious)
	var lat, floor, over []float64
	for _, key := range order {
		at, ok := applied[key]
		if !ok {
			d.Missing = append(d.Missing, key)
			continue
		}
		lat = append(lat, ms(at.Sub(failedAt)))
		f, ok := log.floor(tokens[key], p.c.DownRetry+1)
		if !ok {
			d.NoFloor++
			continue
		}
		floor = append(floor, ms(f.Sub(failedAt)))
		over = append(over, ms(at.Sub(f)))
		d.Slowest = append(d.Slowest, SlowFailure{Backend: key, Floor: f, Applied: at, OverMs: ms(at.Sub(f))})
	}
	d.Latency, d.Floor, d.Over = dist(lat), dist(floor), dist(over)
	slices.SortFunc(d.Slowest, func(a, b SlowFailure) int { return cmp.Compare(b.OverMs, a.OverMs) })
	d.Slowest = d.Slowest[:min(len(d.Slowest), 5)]
	if log.bad > 0 {
		return d, fmt.Errorf("bench: %d results of the failed targets could not be decoded", log.bad)
	}
	return d, nil
}

// downCalls reads the emulator's calls since the failure and records, per
// backend, the first successful health update setting it to weight 0 +
// inhibited: in applied when it failed, in spurious when it did not.
func (p *pipe) downCalls(ctx context.Context, failed map[string]bool, applied map[string]time.Time, spurious map[string]bool) error {
	body, err := p.get(ctx, "http://"+p.agentAd+"/_emu/calls?format=jsonl")
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var c agenttest.Call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return fmt.Errorf("bench: emulator call log: %w", err)
		}
		if c.Method != http.MethodPut || !strings.HasSuffix(c.Path, "/rs/health") || c.Status < 200 || c.Status > 299 {
			continue
		}
		var req struct{ Items []dpvsagent.RealServer }
		if json.Unmarshal(c.Body, &req) != nil {
			continue
		}
		for _, rs := range req.Items {
			if rs.Weight != 0 || !rs.IsInhibited() {
				continue
			}
			key := rs.IP + ":" + strconv.Itoa(int(rs.Port))
			if !failed[key] {
				spurious[key] = true
				continue
			}
			if _, seen := applied[key]; !seen {
				applied[key] = c.Time
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("bench: emulator call log: %w", err)
	}
	return nil
}

// reshard kills the prober owning the most targets with SIGKILL and
// measures how long until the survivors own every target, then counts the
// backend transitions published from the kill to three intervals later:
// a reshard must not change any verdict.
func (p *pipe) reshard(ctx context.Context) (*Reshard, error) {
	victim, most := -1, -1.0
	for i, e := range p.probers {
		sc, err := scrape(ctx, p.client, e.url)
		if err != nil {
			return nil, err
		}
		if n := sc.Sum(metricOwned); n > most {
			victim, most = i, n
		}
	}
	before, err := p.backendTransitions(ctx)
	if err != nil {
		return nil, err
	}
	rs := &Reshard{Orphaned: int(most), MemberTTLS: p.memberTTL.Seconds()}
	killed := time.Now()
	p.probers[victim].p.kill()
	if err := waitFor(ctx, 2*time.Minute, "the surviving probers to own every target", func() (bool, error) {
		n, err := p.owned(ctx)
		return n == p.s.Targets, err
	}); err != nil {
		return nil, err
	}
	rs.CoveredS = time.Since(killed).Seconds()
	if err := idle(ctx, 3*p.s.Interval); err != nil {
		return nil, err
	}
	after, err := p.backendTransitions(ctx)
	if err != nil {
		return nil, err
	}
	rs.Transitions = int(after - before)
	return rs, nil
}

// backendTransitions is the aggregator's count of backend transitions.
func (p *pipe) backendTransitions(ctx context.Context) (float64, error) {
	sc, err := scrape(ctx, p.client, p.agg.url)
	if err != nil {
		return 0, err
	}
	return sc.ByLabel(metricTransitions, "kind")["backend"], nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// dist is the p50, p99 and maximum of xs (nearest rank).
func dist(xs []float64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Dist{P50: at(0.50), P99: at(0.99), Max: s[len(s)-1], N: len(s)}
}
