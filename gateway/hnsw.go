package gateway

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"sync"
)

// hnsw is a Hierarchical Navigable Small World index (Malkov & Yashunin)
// over L2-normalised vectors, with cosine similarity (dot product). Nodes
// are never unlinked: a deleted node stays in the graph for navigation and
// is skipped in results; the owner rebuilds the index when deletions pile
// up. Safe for concurrent use: searches share a read lock, inserts take
// the write lock.
type hnsw struct {
	mu       sync.RWMutex
	m, m0    int // links per node above layer 0, and at layer 0
	efConstr int
	efSearch int
	ml       float64
	rng      *rand.Rand
	nodes    []hnswNode
	entry    int32
	maxLevel int
	deleted  int
}

type hnswNode struct {
	vec     []float32
	links   [][]int32 // per level
	deleted bool
}

func newHNSW(m, efConstruction, efSearch int, seed uint64) *hnsw {
	return &hnsw{m: m, m0: 2 * m, efConstr: efConstruction, efSearch: efSearch, ml: 1 / math.Log(float64(m)),
		rng: rand.New(rand.NewPCG(seed, 0x4e5357)), entry: -1}
}

// dotGeneric is the portable dot product; dot uses AVX2 where it can (dot_simd.go).
func dotGeneric(a, b []float32) float32 {
	var s0, s1, s2, s3 float32
	n := len(a)
	i := 0
	for ; i+4 <= n; i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < n; i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// cand is a node with its distance (1 - cosine) to the query.
type cand struct {
	id   int32
	dist float32
}

type minHeap []cand

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(i, j int) bool { return h[i].dist < h[j].dist }
func (h minHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(cand)) }
func (h *minHeap) Pop() any          { o := *h; x := o[len(o)-1]; *h = o[:len(o)-1]; return x }

type maxHeap []cand

func (h maxHeap) Len() int           { return len(h) }
func (h maxHeap) Less(i, j int) bool { return h[i].dist > h[j].dist }
func (h maxHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *maxHeap) Push(x any)        { *h = append(*h, x.(cand)) }
func (h *maxHeap) Pop() any          { o := *h; x := o[len(o)-1]; *h = o[:len(o)-1]; return x }

func (h *hnsw) dist(q []float32, id int32) float32 { return 1 - dot(q, h.nodes[id].vec) }

// searchLayer returns up to ef nearest nodes to q at level, from the entry
// points, nearest first.
func (h *hnsw) searchLayer(q []float32, eps []cand, ef, level int) []cand {
	visited := make(map[int32]struct{}, ef*8)
	cands := minHeap{}
	res := maxHeap{}
	for _, e := range eps {
		visited[e.id] = struct{}{}
		cands = append(cands, e)
		res = append(res, e)
	}
	heap.Init(&cands)
	heap.Init(&res)
	for cands.Len() > 0 {
		c := heap.Pop(&cands).(cand)
		if res.Len() >= ef && c.dist > res[0].dist {
			break
		}
		links := h.nodes[c.id].links
		if level >= len(links) {
			continue
		}
		for _, nb := range links[level] {
			if _, seen := visited[nb]; seen {
				continue
			}
			visited[nb] = struct{}{}
			d := h.dist(q, nb)
			if res.Len() < ef || d < res[0].dist {
				heap.Push(&cands, cand{nb, d})
				heap.Push(&res, cand{nb, d})
				if res.Len() > ef {
					heap.Pop(&res)
				}
			}
		}
	}
	out := make([]cand, res.Len())
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&res).(cand)
	}
	return out
}

// selectNeighbors is the paper's heuristic: keep a candidate only if it is
// closer to the base than to every neighbour already kept, then fill up
// with the nearest of the rest.
func (h *hnsw) selectNeighbors(cs []cand, m int) []int32 {
	out := make([]int32, 0, m)
	var skipped []int32
	for _, c := range cs {
		if len(out) >= m {
			break
		}
		good := true
		for _, o := range out {
			if 1-dot(h.nodes[c.id].vec, h.nodes[o].vec) < c.dist {
				good = false
				break
			}
		}
		if good {
			out = append(out, c.id)
		} else {
			skipped = append(skipped, c.id)
		}
	}
	for _, s := range skipped {
		if len(out) >= m {
			break
		}
		out = append(out, s)
	}
	return out
}

// add inserts v (normalised, not copied) and returns its id.
func (h *hnsw) add(v []float32) int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	level := int(math.Floor(-math.Log(1-h.rng.Float64()) * h.ml))
	id := int32(len(h.nodes))
	h.nodes = append(h.nodes, hnswNode{vec: v, links: make([][]int32, level+1)})
	if h.entry < 0 {
		h.entry, h.maxLevel = id, level
		return id
	}
	ep := []cand{{h.entry, h.dist(v, h.entry)}}
	for l := h.maxLevel; l > level; l-- {
		ep = h.searchLayer(v, ep, 1, l)[:1]
	}
	for l := min(level, h.maxLevel); l >= 0; l-- {
		cs := h.searchLayer(v, ep, h.efConstr, l)
		maxM := h.m
		if l == 0 {
			maxM = h.m0
		}
		nbs := h.selectNeighbors(cs, h.m)
		h.nodes[id].links[l] = nbs
		for _, nb := range nbs {
			links := append(h.nodes[nb].links[l], id)
			if len(links) > maxM {
				base := h.nodes[nb].vec
				cs2 := make([]cand, len(links))
				for i, x := range links {
					cs2[i] = cand{x, 1 - dot(base, h.nodes[x].vec)}
				}
				sortCands(cs2)
				links = h.selectNeighbors(cs2, maxM)
			}
			h.nodes[nb].links[l] = links
		}
		ep = cs
	}
	if level > h.maxLevel {
		h.entry, h.maxLevel = id, level
	}
	return id
}

func sortCands(cs []cand) {
	// insertion sort: the lists are short (at most 2m+1)
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].dist < cs[j-1].dist; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
}

// search returns up to k live nodes nearest to q, nearest first, with
// their cosine similarity.
func (h *hnsw) search(q []float32, k int) []cand {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.entry < 0 {
		return nil
	}
	ep := []cand{{h.entry, h.dist(q, h.entry)}}
	for l := h.maxLevel; l > 0; l-- {
		ep = h.searchLayer(q, ep, 1, l)[:1]
	}
	cs := h.searchLayer(q, ep, max(h.efSearch, k), 0)
	out := make([]cand, 0, k)
	for _, c := range cs {
		if h.nodes[c.id].deleted {
			continue
		}
		out = append(out, cand{c.id, 1 - c.dist})
		if len(out) == k {
			break
		}
	}
	return out
}

func (h *hnsw) remove(id int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.nodes[id].deleted {
		h.nodes[id].deleted = true
		h.deleted++
	}
}

func (h *hnsw) size() (live, deleted int) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.nodes) - h.deleted, h.deleted
}
