package ingest

import (
	"testing"

	"github.com/healthmesh/healthmesh/shared/event"
)

// A released batch's slices come back, emptied, for a later batch, and the
// released results no longer hold their strings.
func TestBatch_release_recycles_the_slices(t *testing.T) {
	for range 20 { // the pool may drop an item (the race detector drops a quarter)
		b := newBatch()
		for i := range 100 {
			b.Results = append(b.Results, event.ProbeResult{Target: "t", Observer: "o"})
			b.Seqs = append(b.Seqs, uint64(i))
		}
		held := b.Results[:1]
		b.Last = 100
		b.Release()
		if b.Results != nil || b.Seqs != nil || b.Last != 100 {
			t.Fatalf("after Release: %d results, %d seqs, last %d; want none, none, 100", len(b.Results), len(b.Seqs), b.Last)
		}
		if held[0].Target != "" {
			t.Fatalf("a released result still holds target %q", held[0].Target)
		}
		next := newBatch()
		if len(next.Results) != 0 || len(next.Seqs) != 0 {
			t.Fatalf("a new batch holds %d results", len(next.Results))
		}
		if cap(next.Results) >= 100 && cap(next.Seqs) >= 100 {
			return
		}
	}
	t.Fatal("no new batch in 20 reused the released slices")
}
