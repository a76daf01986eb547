package model

// bpeSymbol is a node of the doubly linked list of a word's current tokens.
type bpeSymbol struct {
	id, prev, next int
}

func bpeLink(syms []bpeSymbol, id int) []bpeSymbol {
	n := len(syms)
	if n > 0 {
		syms[n-1].next = n
	}
	return append(syms, bpeSymbol{id: id, prev: n - 1, next: -1})
}

// bpeCandidate is a possible merge of the symbol at pos with its successor.
type bpeCandidate struct {
	rank, pos   int32
	left, right int32
	token       int32
}

func (a bpeCandidate) less(b bpeCandidate) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// bpeSmallWord is the longest word (in symbols) merged by linear scans
// rather than with a heap: fewer map look-ups' worth of overhead for the
// short words that make up almost all text.
const bpeSmallWord = 64

// bpeMerge applies merges to the symbol list in place (merged-away symbols
// get id -1 and are unlinked) until none applies: always the lowest-ranked
// pair, the leftmost one among equals.
func bpeMerge(syms []bpeSymbol, merges map[uint64]bpeRule) {
	if len(syms) < 2 {
		return
	}
	if len(syms) <= bpeSmallWord {
		bpeMergeSmall(syms, merges)
		return
	}
	bpeMergeHeap(syms, merges)
}

// bpeMergeHeap is bpeMerge for long words: candidate merges wait in a heap
// ordered by rank then position, and stale ones are skipped when popped.
func bpeMergeHeap(syms []bpeSymbol, merges map[uint64]bpeRule) {
	h := make(bpeHeap, 0, len(syms))
	push := func(pos int) {
		nx := syms[pos].next
		if nx < 0 {
			return
		}
		if r, ok := merges[bpePairKey(syms[pos].id, syms[nx].id)]; ok {
			h.push(bpeCandidate{rank: r.rank, pos: int32(pos), left: int32(syms[pos].id), right: int32(syms[nx].id), token: r.token})
		}
	}
	for i := 0; i < len(syms)-1; i++ {
		push(i)
	}
	for len(h) > 0 {
		c := h.pop()
		s := &syms[c.pos]
		// Skip stale candidates: either side changed since it was pushed.
		if s.id != int(c.left) || s.next < 0 || syms[s.next].id != int(c.right) {
			continue
		}
		r := s.next
		s.id = int(c.token)
		s.next = syms[r].next
		if s.next >= 0 {
			syms[s.next].prev = int(c.pos)
		}
		syms[r].id = -1
		if s.prev >= 0 {
			push(s.prev)
		}
		push(int(c.pos))
	}
}

// bpeMergeSmall is bpeMerge for short words: it keeps the rule of each
// adjacent pair and scans for the best one.
func bpeMergeSmall(syms []bpeSymbol, merges map[uint64]bpeRule) {
	const none = int32(1<<31 - 1)
	var buf [bpeSmallWord]bpeRule
	rules := buf[:len(syms)]
	rule := func(i int) {
		rules[i].rank = none
		if nx := syms[i].next; nx >= 0 {
			if r, ok := merges[bpePairKey(syms[i].id, syms[nx].id)]; ok {
				rules[i] = r
			}
		}
	}
	for i := range syms {
		rule(i)
	}
	for {
		best, bestRank := -1, none
		for i := 0; i >= 0; i = syms[i].next {
			if rules[i].rank < bestRank {
				best, bestRank = i, rules[i].rank
			}
		}
		if best < 0 {
			return
		}
		s := &syms[best]
		r := s.next
		s.id = int(rules[best].token)
		s.next = syms[r].next
		if s.next >= 0 {
			syms[s.next].prev = best
		}
		syms[r].id = -1
		rule(best)
		if s.prev >= 0 {
			rule(s.prev)
		}
	}
}

// bpeHeap is a binary min-heap of candidates (no interface boxing).
type bpeHeap []bpeCandidate

func (h *bpeHeap) push(c bpeCandidate) {
	*h = append(*h, c)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if !a[i].less(a[p]) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *bpeHeap) pop() bpeCandidate {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a = a[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && a[l].less(a[m]) {
			m = l
		}
		if r < n && a[r].less(a[m]) {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
