package deploytest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/healthmesh/healthmesh/shared/event"
	"github.com/healthmesh/healthmesh/shared/wait"
)

// record is one message of HM_EVENTS, decoded.
type record struct {
	Seq     uint64
	Subject string
	T       *event.Transition   // hm.event.…
	A       *event.ActionResult // hm.action.…
}

func (r record) String() string {
	switch {
	case r.T != nil:
		obj := r.T.Object
		if r.T.Kind == event.KindBackend {
			obj = r.T.VS + "/" + obj
		}
		return fmt.Sprintf("#%d %s %s %s→%s (term %d, gen %d)", r.Seq, r.T.Kind, obj, r.T.From, r.T.To, r.T.Term, r.T.Gen)
	case r.A != nil:
		return fmt.Sprintf("#%d action %s %s %s ok=%v node=%s eseq=%d", r.Seq, r.A.Actioner, r.A.Op, r.A.Object, r.A.OK, r.A.Node, r.A.EventSeq)
	}
	return fmt.Sprintf("#%d %s", r.Seq, r.Subject)
}

// eventLog follows HM_EVENTS from its start with an ordered consumer, the
// way hmctl history does, until the test ends.
type eventLog struct {
	mu   sync.Mutex
	recs []record
}

// followEvents waits for the stream (created by the aggregator) and follows
// it. On a fresh 3-node cluster the first aggregator may give up once before
// JetStream has a leader (deploy/README.md): allow two minutes.
func followEvents(t testing.TB, js jetstream.JetStream) *eventLog {
	t.Helper()
	l := &eventLog{}
	var cons jetstream.Consumer
	var lastErr error
	if !wait.Until(2*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cons, lastErr = js.OrderedConsumer(ctx, "HM_EVENTS", jetstream.OrderedConsumerConfig{})
		return lastErr == nil
	}) {
		t.Fatalf("follow HM_EVENTS: %v", lastErr)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		r := record{Seq: md.Sequence.Stream, Subject: m.Subject()}
		switch {
		case strings.HasPrefix(r.Subject, "hm.event."):
			var tr event.Transition
			if event.Unmarshal(m.Data(), &tr) == nil {
				r.T = &tr
			}
		case strings.HasPrefix(r.Subject, "hm.action."):
			var a event.ActionResult
			if event.Unmarshal(m.Data(), &a) == nil {
				r.A = &a
			}
		}
		l.mu.Lock()
		l.recs = append(l.recs, r)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("consume HM_EVENTS: %v", err)
	}
	t.Cleanup(func() {
		cc.Stop()
		<-cc.Closed()
	})
	return l
}

// last is the sequence of the newest record seen (0 for none).
func (l *eventLog) last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recs) == 0 {
		return 0
	}
	return l.recs[len(l.recs)-1].Seq
}

// since returns the records after sequence seq that match keep.
func (l *eventLog) since(seq uint64, keep func(record) bool) []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []record
	for _, r := range l.recs {
		if r.Seq > seq && (keep == nil || keep(r)) {
			out = append(out, r)
		}
	}
	return out
}

// waitFor waits until a record after seq matches and returns the first.
func (l *eventLog) waitFor(t testing.TB, timeout time.Duration, seq uint64, what string, match func(record) bool) record {
	t.Helper()
	var got []record
	if !wait.Until(timeout, func() bool {
		got = l.since(seq, match)
		return len(got) > 0
	}) {
		t.Fatalf("no %s within %v after #%d; the events since:\n%s", what, timeout, seq, l.dump(seq))
	}
	return got[0]
}

// dump formats the records after seq, for failure messages.
func (l *eventLog) dump(seq uint64) string {
	var b strings.Builder
	for _, r := range l.since(seq, nil) {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}

// isBackend matches a backend transition of backend (DPVS id, e.g.
// 127.0.0.1-TCP-8080) in any VS to state to ("" = any).
func isBackend(backend string, to event.State) func(record) bool {
	return func(r record) bool {
		return r.T != nil && r.T.Kind == event.KindBackend && r.T.Object == backend && (to == "" || r.T.To == to)
	}
}

// isAction matches a successful action result whose VS or VIP is object.
func isAction(object string) func(record) bool {
	return func(r record) bool { return r.A != nil && r.A.OK && r.A.Object == object }
}
