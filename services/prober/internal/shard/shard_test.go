package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/healthmesh/healthmesh/shared/event"
)

func members(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("prober-%d", i), Node: fmt.Sprintf("lb%d", i)}
	}
	return ms
}

func keys(n int) []string {
	ks := make([]string, n)
	for i := range ks {
		ks[i] = fmt.Sprintf("10_0_%d_%d-TCP-80-tcp-%08x", i/250, i%250, i)
	}
	return ks
}

func mustTable(t testing.TB, ms []Member) *Table {
	t.Helper()
	tb, err := NewTable(ms)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestOwnersCount(t *testing.T) {
	tests := []struct {
		name string
		n, r int
		want int
	}{
		{"one_of_one", 1, 1, 1},
		{"one_of_five", 5, 1, 1},
		{"three_of_five", 5, 3, 3},
		{"five_of_five", 5, 5, 5},
		{"more_than_members", 3, 7, 3},
		{"all_one_per_node", 4, event.ObserversAll, 4},
		{"zero_is_none", 4, 0, 0},
		{"below_all_is_none", 4, -2, 0},
		{"no_members", 0, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := members(tt.n)
			tb := mustTable(t, ms)
			for _, k := range keys(2000) {
				got := Owners(k, ms, tt.r)
				if len(got) != tt.want {
					t.Fatalf("Owners(%q, r=%d) = %v, want %d owners", k, tt.r, got, tt.want)
				}
				if c := slices.Compact(slices.Sorted(slices.Values(got))); len(c) != len(got) {
					t.Fatalf("Owners(%q) = %v: duplicate owner", k, got)
				}
				if tg := tb.Owners(k, tt.r); !slices.Equal(tg, got) {
					t.Fatalf("Table.Owners(%q) = %v, Owners = %v", k, tg, got)
				}
				for _, m := range ms {
					if own, want := tb.Owns(m.ID, k, tt.r), slices.Contains(got, m.ID); own != want {
						t.Fatalf("Owns(%s, %q, %d) = %v, want %v (owners %v)", m.ID, k, tt.r, own, want, got)
					}
				}
			}
		})
	}
}

func TestOwnersOrderIndependent(t *testing.T) {
	ms := members(7)
	shuffled := slices.Clone(ms)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	tb := mustTable(t, shuffled)
	for _, r := range []int{1, 3, event.ObserversAll} {
		t.Run(fmt.Sprintf("r_%d", r), func(t *testing.T) {
			for _, k := range keys(500) {
				a, b, c := Owners(k, ms, r), Owners(k, shuffled, r), tb.Owners(k, r)
				if !slices.Equal(a, b) || !slices.Equal(a, c) {
					t.Fatalf("key %q: owners depend on member order: %v %v %v", k, a, b, c)
				}
			}
		})
	}
}

// Pinned values: ownership must be identical in every process and release.
// If this test fails, the hash changed and every installation would reshuffle.
func TestGolden(t *testing.T) {
	if got, want := fnv1a("a"), uint64(0xaf63dc4c8601ec8c); got != want { // the published FNV-1a 64 test vector
		t.Fatalf("fnv1a(a) = %#x, want %#x", got, want)
	}
	if got, want := score(keyHash("7"), memberHash("prober-a")), uint64(0x9763cf512d91e8d1); got != want {
		t.Fatalf("score = %#x, want %#x", got, want)
	}
	ms := []Member{{ID: "prober-a"}, {ID: "prober-b"}, {ID: "prober-c"}, {ID: "prober-d"}}
	tests := []struct {
		name string
		key  string
		r    int
		want []string
	}{
		{"partition_7", "7", 4, []string{"prober-c", "prober-a", "prober-b", "prober-d"}},
		{"partition_42", "42", 4, []string{"prober-a", "prober-d", "prober-c", "prober-b"}},
		{"target", "10_0_0_1-TCP-80-tcp-0badc0de", 4, []string{"prober-d", "prober-a", "prober-c", "prober-b"}},
		{"target_top_two", "10_0_0_1-TCP-80-tcp-0badc0de", 2, []string{"prober-d", "prober-a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Owners(tt.key, ms, tt.r); !slices.Equal(got, tt.want) {
				t.Fatalf("Owners(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestAddMemberMovesOnlyToIt(t *testing.T) {
	ks := keys(20000)
	for _, n := range []int{1, 2, 4, 9} {
		for _, r := range []int{1, 2} {
			t.Run(fmt.Sprintf("n_%d_r_%d", n, r), func(t *testing.T) {
				before := members(n)
				after := members(n + 1)
				newID := after[n].ID
				old, cur := mustTable(t, before), mustTable(t, after)
				moved := 0
				for _, k := range ks {
					o, c := old.Owners(k, r), cur.Owners(k, r)
					if slices.Equal(sortedCopy(o), sortedCopy(c)) {
						continue
					}
					moved++
					// The new set is the old one with one owner replaced by the new member.
					if !slices.Contains(c, newID) {
						t.Fatalf("key %q moved from %v to %v without the new member", k, o, c)
					}
					kept := 0
					for _, id := range c {
						if slices.Contains(o, id) {
							kept++
						}
					}
					if kept != len(c)-1 {
						t.Fatalf("key %q: owners %v -> %v: more than one owner changed", k, o, c)
					}
				}
				// Expected share: the new member lands in the top r with probability r/(n+1)
				// (when n >= r; with n < r it simply joins).
				want := float64(min(r, n+1)) / float64(n+1)
				if n < r {
					want = 1
				}
				if got := float64(moved) / float64(len(ks)); got < want-0.02 || got > want+0.02 {
					t.Fatalf("moved %.3f of keys, want about %.3f", got, want)
				}
			})
		}
	}
}

func TestRemoveMemberMovesOnlyItsKeys(t *testing.T) {
	ks := keys(20000)
	for _, r := range []int{1, 2, event.ObserversAll} {
		t.Run(fmt.Sprintf("r_%d", r), func(t *testing.T) {
			before := members(6)
			gone := before[2].ID
			after := slices.Delete(slices.Clone(before), 2, 3)
			old, cur := mustTable(t, before), mustTable(t, after)
			moved := 0
			for _, k := range ks {
				o, c := old.Owners(k, r), cur.Owners(k, r)
				if !slices.Contains(o, gone) {
					if !slices.Equal(o, c) {
						t.Fatalf("key %q not owned by %s changed: %v -> %v", k, gone, o, c)
					}
					continue
				}
				moved++
				// Everyone else keeps it, and the next in rank takes the freed place.
				if r != event.ObserversAll {
					wantSet := slices.DeleteFunc(old.Owners(k, r+1), func(id string) bool { return id == gone })
					if !slices.Equal(c, wantSet) {
						t.Fatalf("key %q: owners %v -> %v, want %v", k, o, c, wantSet)
					}
				}
			}
			if moved == 0 {
				t.Fatalf("no key was owned by %s", gone)
			}
		})
	}
}

func TestBalance(t *testing.T) {
	ms := members(5)
	tb := mustTable(t, ms)
	ks := keys(50000)
	for _, m := range ms {
		owned := 0
		for _, k := range ks {
			if tb.Owns(m.ID, k, 1) {
				owned++
			}
		}
		if got := float64(owned) / float64(len(ks)); got < 0.185 || got > 0.215 {
			t.Errorf("%s owns %.3f of keys, want about 0.200", m.ID, got)
		}
	}
}

func TestObserversAllOnePerNode(t *testing.T) {
	ms := []Member{
		{ID: "a", Node: "lb1", Zone: "z1"},
		{ID: "b", Node: "lb1", Zone: "z1"}, // same node as a
		{ID: "c", Node: "lb1", Zone: "z2"}, // same node name, other zone: another node
		{ID: "d", Node: "lb2", Zone: "z1"},
		{ID: "e"},                          // no node: a node of its own
		{ID: "f"},                          // likewise, not merged with e
		{ID: "g", Node: "lb2", Zone: "z1"}, // same node as d
	}
	tb := mustTable(t, ms)
	if tb.Nodes() != 5 {
		t.Fatalf("Nodes() = %d, want 5", tb.Nodes())
	}
	wins := map[string]int{}
	for _, k := range keys(4000) {
		got := tb.Owners(k, event.ObserversAll)
		if len(got) != 5 {
			t.Fatalf("key %q: owners %v, want 5 (one per node)", k, got)
		}
		if slices.Contains(got, "a") == slices.Contains(got, "b") {
			t.Fatalf("key %q: owners %v, want exactly one of a, b (node z1/lb1)", k, got)
		}
		if slices.Contains(got, "d") == slices.Contains(got, "g") {
			t.Fatalf("key %q: owners %v, want exactly one of d, g (node z1/lb2)", k, got)
		}
		for _, id := range []string{"c", "e", "f"} {
			if !slices.Contains(got, id) {
				t.Fatalf("key %q: owners %v, want %s (alone on its node)", k, got, id)
			}
		}
		for _, id := range got {
			wins[id]++
		}
	}
	// Inside a node the choice is spread, not always the same member.
	for _, id := range []string{"a", "b", "d", "g"} {
		if wins[id] < 1800 || wins[id] > 2200 {
			t.Errorf("%s owns %d of 4000 keys, want about 2000", id, wins[id])
		}
	}
}

func TestNewTableErrors(t *testing.T) {
	tests := []struct {
		name    string
		members []Member
		want    string
	}{
		{"empty_id", []Member{{ID: "a"}, {ID: "", Node: "lb9"}}, `shard: member 0 (node "lb9"): invalid member: empty id`},
		{"duplicate_id", []Member{{ID: "a", Node: "lb1"}, {ID: "b"}, {ID: "a", Node: "lb2"}}, `shard: member "a": invalid member: listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTable(tt.members)
			if !errors.Is(err, ErrMember) || err.Error() != tt.want {
				t.Fatalf("NewTable error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestOddInput(t *testing.T) {
	tb := mustTable(t, members(3))
	tests := []struct {
		name string
		ok   bool
	}{
		{"unknown_member_owns_nothing", tb.Owns("nobody", "k", 3)},
		{"zero_observers_owns_nothing", tb.Owns("prober-0", "k", 0)},
		{"negative_observers_owns_nothing", tb.Owns("prober-0", "k", -5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ok {
				t.Fatal("Owns = true, want false")
			}
		})
	}
	t.Run("duplicates_count_once", func(t *testing.T) {
		ms := []Member{{ID: "x"}, {ID: "x"}, {ID: "y"}}
		for _, k := range keys(200) {
			if got := Owners(k, ms, 3); len(got) != 2 || got[0] == got[1] {
				t.Fatalf("Owners(%q) = %v, want x and y once each", k, got)
			}
		}
	})
	t.Run("empty_table", func(t *testing.T) {
		empty := mustTable(t, nil)
		if got := empty.Owners("k", 1); got != nil {
			t.Fatalf("Owners = %v, want none", got)
		}
	})
}

func sortedCopy(s []string) []string { return slices.Sorted(slices.Values(s)) }

// BenchmarkReshard measures what a prober does after a membership change:
// build the table and decide ownership of every target.
func BenchmarkReshard(b *testing.B) {
	for _, r := range []int{1, 2, event.ObserversAll} {
		b.Run(fmt.Sprintf("targets_100k_members_5_r_%d", r), func(b *testing.B) {
			ms := members(5)
			ks := keys(100000)
			b.ReportAllocs()
			owned := 0
			for b.Loop() {
				tb, err := NewTable(ms)
				if err != nil {
					b.Fatal(err)
				}
				owned = 0
				for _, k := range ks {
					if tb.Owns("prober-3", k, r) {
						owned++
					}
				}
			}
			if owned == 0 {
				b.Fatal("prober-3 owns nothing")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(ks)), "ns/target")
		})
	}
}

func BenchmarkOwners(b *testing.B) {
	tb, _ := NewTable(members(5))
	ks := keys(1024)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = tb.Owners(ks[i%len(ks)], 2)
		i++
	}
}
