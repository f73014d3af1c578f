package topology

import (
	"fmt"
	"testing"
	"time"

	"github.com/healthmesh/healthmesh/services/aggregator/internal/checker"
	"github.com/healthmesh/healthmesh/shared/event"
)

// fanOut builds vas × vssPerVA services that all use target "shared"; with
// withOwn each VS also has a backend of its own that is Up, so only the
// backends change and the VSs stay Up.
func fanOut(b *testing.B, vas, vssPerVA int, withOwn bool) *Model {
	b.Helper()
	var i Inventory
	for a := range vas {
		for p := range vssPerVA {
			v := vs(fmt.Sprintf("192.0.2.%d-TCP-%d", a+1, p+1), be(b1, "shared"))
			if withOwn {
				v.Backends = append(v.Backends, be(fmt.Sprintf("203.0.113.%d-TCP-%d", a+1, 1000+p), "own"))
			}
			i.VSs = append(i.VSs, v)
		}
	}
	m := New()
	if _, err := m.SetInventory(i, t0); err != nil {
		b.Fatal(err)
	}
	m.TargetVerdict("own", checker.Change{To: up}, nil, event.Quorum{}, t0)
	return m
}

func BenchmarkTargetVerdictFanOut(b *testing.B) {
	cases := []struct {
		name     string
		vas, vss int
		withOwn  bool
	}{
		{"backends_1000_vs_stay_up", 100, 10, true},
		{"backends_1000_vs_and_va_flip", 100, 10, false},
		{"backends_10", 1, 10, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m := fanOut(b, c.vas, c.vss, c.withOwn)
			votes := []event.Vote{{Observer: "p1", State: up}}
			states := [2]event.State{up, down}
			now := t0
			events := 0
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				now = now.Add(time.Second)
				es := m.TargetVerdict("shared", checker.Change{To: states[n%2], Reason: event.ReasonL4OK}, votes, event.Quorum{}, now)
				events += len(es)
			}
			b.ReportMetric(float64(events)/float64(b.N), "events/op")
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
