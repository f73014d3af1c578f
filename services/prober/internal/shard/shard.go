// Package shard decides which probers own a target (or a fixed partition of
// targets) by rendezvous hashing over the live members of hm_members.
//
// Every prober computes ownership on its own from the same inputs, so the
// hash is fixed and unseeded (FNV-1a 64 of the strings, finished by a 64-bit
// mixer): two processes, on any machine, always agree. Rendezvous hashing
// ranks the members per key by score(member, key); the owners are the top r.
// Adding a member moves only the keys it now ranks first on (about 1/(N+1) of
// them), and removing one moves only the keys it owned.
package shard

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/healthmesh/healthmesh/shared/event"
)

// ErrMember is wrapped by NewTable's errors about its member list.
var ErrMember = errors.New("invalid member")

// Member is one live prober as ownership sees it.
type Member struct {
	ID   string // unique prober id (the hm_members key's name)
	Node string // host it runs on; "" = a node of its own
	Zone string // failure domain; the same node name in two zones is two nodes
}

// nodeKey is what "one per node" groups by. A member without a node stands
// alone, so unlabelled probers are never merged with each other.
func (m Member) nodeKey() string {
	if m.Node == "" {
		return "\x00id\x00" + m.ID
	}
	return m.Zone + "\x00" + m.Node
}

// Owners returns the owners of key among members, best-ranked first: the top
// r members, all of them when r exceeds their number, or, for
// r == event.ObserversAll, the top-ranked member of each distinct node. Any
// other r < 1 has no owners. Duplicate IDs count once. It gives the same
// answer as NewTable(members).Owners(key, r) without building a table.
func Owners(key string, members []Member, r int) []string {
	ms := make([]tmember, 0, len(members))
	for _, m := range members {
		ms = append(ms, tmember{id: m.ID, h: memberHash(m.ID), node: -1})
	}
	if r == event.ObserversAll {
		nodes := map[string]int32{}
		for i, m := range members {
			n, ok := nodes[m.nodeKey()]
			if !ok {
				n = int32(len(nodes))
				nodes[m.nodeKey()] = n
			}
			ms[i].node = n
		}
	}
	return owners(ms, keyHash(key), r)
}

// Table is a member list prepared for ranking many keys: the members'
// hashes and node groups are computed once. A Table is immutable and safe
// for concurrent use; build a new one when membership changes.
type Table struct {
	members []tmember        // sorted by id
	index   map[string]int32 // id -> position in members
	nodes   [][]int32        // node group -> positions of its members
}

type tmember struct {
	id   string
	h    uint64 // mixed hash of id
	node int32  // node group, -1 when not grouped
}

// NewTable prepares members for ranking. Order does not matter. An empty ID
// or an ID listed twice is an error naming it.
func NewTable(members []Member) (*Table, error) {
	t := &Table{
		members: make([]tmember, 0, len(members)),
		index:   make(map[string]int32, len(members)),
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	nodes := map[string]int32{}
	for i, m := range sorted {
		if m.ID == "" {
			return nil, fmt.Errorf("shard: member %d (node %q): %w: empty id", i, m.Node, ErrMember)
		}
		if i > 0 && sorted[i-1].ID == m.ID {
			return nil, fmt.Errorf("shard: member %q: %w: listed twice", m.ID, ErrMember)
		}
		n, ok := nodes[m.nodeKey()]
		if !ok {
			n = int32(len(t.nodes))
			nodes[m.nodeKey()] = n
			t.nodes = append(t.nodes, nil)
		}
		t.nodes[n] = append(t.nodes[n], int32(i))
		t.index[m.ID] = int32(i)
		t.members = append(t.members, tmember{id: m.ID, h: memberHash(m.ID), node: n})
	}
	return t, nil
}

// Len returns the number of members.
func (t *Table) Len() int { return len(t.members) }

// Nodes returns the number of distinct nodes, which is how many owners a key
// has with r == event.ObserversAll.
func (t *Table) Nodes() int { return len(t.nodes) }

// Owners is the package-level Owners over the table's members.
func (t *Table) Owners(key string, r int) []string {
	return owners(t.members, keyHash(key), r)
}

// Owns reports whether member self is among the owners of key. It does not
// allocate; a member not in the table owns nothing.
func (t *Table) Owns(self, key string, r int) bool {
	i, ok := t.index[self]
	if !ok {
		return false
	}
	me := &t.members[i]
	kh := keyHash(key)
	s := score(kh, me.h)
	switch {
	case r == event.ObserversAll:
		for _, j := range t.nodes[me.node] {
			if j != i && beats(score(kh, t.members[j].h), t.members[j].id, s, me.id) {
				return false
			}
		}
		return true
	case r < 1:
		return false
	case r >= len(t.members):
		return true
	}
	better := 0
	for j := range t.members {
		if int32(j) != i && beats(score(kh, t.members[j].h), t.members[j].id, s, me.id) {
			if better++; better >= r {
				return false
			}
		}
	}
	return true
}

type ranked struct {
	s  uint64
	id string
}

// owners ranks ms for one key. ms[i].node >= 0 selects one-per-node mode.
func owners(ms []tmember, kh uint64, r int) []string {
	if r < 1 && r != event.ObserversAll || len(ms) == 0 {
		return nil
	}
	rs := make([]ranked, 0, len(ms))
	if r == event.ObserversAll {
		best := map[int32]int{} // node -> position in rs
		for _, m := range ms {
			c := ranked{score(kh, m.h), m.id}
			if k, ok := best[m.node]; !ok {
				best[m.node] = len(rs)
				rs = append(rs, c)
			} else if beats(c.s, c.id, rs[k].s, rs[k].id) {
				rs[k] = c
			}
		}
		r = len(rs)
	} else {
		for _, m := range ms {
			rs = append(rs, ranked{score(kh, m.h), m.id})
		}
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		if beats(a.s, a.id, b.s, b.id) {
			return -1
		}
		if beats(b.s, b.id, a.s, a.id) {
			return 1
		}
		return 0
	})
	out := make([]string, 0, min(r, len(rs)))
	for _, c := range rs {
		if len(out) == r {
			break
		}
		if len(out) > 0 && out[len(out)-1] == c.id {
			continue // a duplicate id scores the same and sorts next to itself
		}
		out = append(out, c.id)
	}
	return out
}

// beats orders two candidates: higher score first, then the smaller id, so
// that ranking is total and the same everywhere even on a (2^-64) tie.
func beats(s1 uint64, id1 string, s2 uint64, id2 string) bool {
	if s1 != s2 {
		return s1 > s2
	}
	return id1 < id2
}

// The hash. FNV-1a 64 is fixed and cheap, but its low bits mix poorly for
// short similar strings, so both sides go through a 64-bit finalizer
// (splitmix64's), and the pair is mixed again. Changing any constant here
// reshuffles every installation's ownership: the golden test pins them.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnv1a(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func keyHash(key string) uint64 { return fnv1a(key) }

func memberHash(id string) uint64 { return mix64(fnv1a(id)) }

func score(kh, mh uint64) uint64 { return mix64(kh ^ mh) }
