package schedule

// timerHeap is a 4-ary min-heap of slots ordered by due time. A slot holds
// the due time next to the entry pointer, so sifting compares within the
// slice (four children share a cache line or two) instead of chasing 100k
// pointers; at 100k jobs that is most of the scheduler's CPU.
//
// Entries do not track their slot. Remove and Update leave the old slot in
// place and it is dropped when it reaches the top (see Scheduler.live):
// there is at most one stale slot per Remove or Update, and it leaves within
// one interval.
type timerHeap []slot

type slot struct {
	due int64
	e   *entry
}

func (h timerHeap) up(j int) {
	x := h[j]
	for j > 0 {
		p := (j - 1) / 4
		if h[p].due <= x.due {
			break
		}
		h[j] = h[p]
		j = p
	}
	h[j] = x
}

func (h timerHeap) down(i int) {
	n := len(h)
	x := h[i]
	for {
		c := 4*i + 1
		if c >= n {
			break
		}
		m := c
		for k := c + 1; k < min(c+4, n); k++ {
			if h[k].due < h[m].due {
				m = k
			}
		}
		if h[m].due >= x.due {
			break
		}
		h[i] = h[m]
		i = m
	}
	h[i] = x
}

func (h *timerHeap) push(due int64, e *entry) {
	*h = append(*h, slot{due, e})
	h.up(len(*h) - 1)
}

func (h *timerHeap) pop() slot {
	old := *h
	top := old[0]
	n := len(old) - 1
	old[0] = old[n]
	old[n] = slot{} // drop the pointer for the GC
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
	return top
}

func (h timerHeap) init() {
	if len(h) < 2 {
		return
	}
	for i := (len(h) - 2) / 4; i >= 0; i-- {
		h.down(i)
	}
}

// countDue returns how many slots accepted by keep are due at now. Only the
// due part of the heap is visited: a slot that is not due has no due
// descendants.
func (h timerHeap) countDue(now int64, keep func(slot) bool) int {
	n := 0
	stack := []int{0}
	for len(stack) > 0 {
		i := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if i >= len(h) || h[i].due > now {
			continue
		}
		if keep(h[i]) {
			n++
		}
		for c := 4*i + 1; c <= 4*i+4; c++ {
			stack = append(stack, c)
		}
	}
	return n
}
