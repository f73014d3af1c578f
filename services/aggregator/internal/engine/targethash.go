package engine

import (
	"encoding/binary"
	"hash/maphash"
	"maps"
	"math"
	"slices"

	"github.com/healthmesh/healthmesh/shared/event"
)

// targetHash digests a target definition as hm_targets holds it, with
// version v, field by field: two definitions that marshal alike hash alike (a nil and an empty
// map or list included), without marshaling. writeTargets compares it with
// what it wrote last, so an inventory that changed a few backends costs a
// hash per target, not a marshal per target (at 10,000 targets that was
// 70% of handing over an inventory, on the engine's loop).
//
// Every field of event.Target must be written here; a test sets each one
// in turn and fails when the hash does not change.
func (e *engine) targetHash(t *event.Target, v int) uint64 {
	var h targetHasher
	h.h.SetSeed(e.seed)
	h.int(int64(v))
	h.str(t.ID)
	h.str(t.Addr)
	h.int(int64(t.Port))
	h.str(t.Proto)
	h.str(t.Method)
	h.int(int64(len(t.Params)))
	if len(t.Params) > 0 {
		for _, k := range slices.Sorted(maps.Keys(t.Params)) {
			h.str(k)
			h.str(t.Params[k])
		}
	}
	h.int(t.Interval)
	h.int(t.Timeout)
	h.int(int64(t.Observers))
	h.int(int64(math.Float64bits(t.Jitter)))
	h.int(t.FastInterval)
	h.int(t.DownInterval)
	h.str(t.Source)
	h.str(t.Netns)
	h.str(t.CheckAddr)
	h.int(int64(t.CheckPort))
	h.int(int64(t.Rev))
	h.int(int64(len(t.UsedBy)))
	for _, u := range t.UsedBy {
		h.str(u)
	}
	return h.h.Sum64()
}

type targetHasher struct {
	h   maphash.Hash
	buf [8]byte
}

func (h *targetHasher) int(v int64) {
	binary.LittleEndian.PutUint64(h.buf[:], uint64(v))
	_, _ = h.h.Write(h.buf[:])
}

// str writes s with its length, so that ("ab","c") and ("a","bc") differ.
func (h *targetHasher) str(s string) {
	h.int(int64(len(s)))
	_, _ = h.h.WriteString(s)
}
