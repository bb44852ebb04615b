package hnsw

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

// ID is a caller-chosen node id (the store maps tensor ids to these).
type ID uint64

// Result is one search hit: a node and its squared L2 distance to the query (compact
// distance from Search, exact from Rerank).
type Result struct {
	ID   ID
	Dist float64
}

// maxLevelCap bounds node levels (a level above it is clamped; with M >= 2 the chance
// of reaching it is below 2^-31 per node).
const maxLevelCap = 31

// maxLinks bounds a neighbour list (the record stores counts as uint16).
const maxLinks = 1<<16 - 1

// node is one indexed vector.
type node struct {
	id    ID
	seq   uint64 // insertion sequence number: orders nodes after Load as at insert
	level int
	vec   compact
	links [][]int32 // links[lc]: neighbour node indices on layer lc, 0 <= lc <= level
}

// Index is an HNSW index over vectors of one dimension. Search may run concurrently
// with other Searches; Insert is exclusive.
type Index struct {
	dim  int
	p    Params
	pos  []int   // sketch positions; nil when nodes keep every element
	mult float64 // dim / code length: scales sketch distances to full ones
	mL   float64 // level multiplier 1/ln(M)

	// mu guards nodes, byID, entry, maxLevel, nextSeq and every node's links: Search
	// and MarshalNode hold it for reading, Insert for writing.
	mu       sync.RWMutex
	nodes    []*node // by internal index, in insertion (seq) order
	byID     map[ID]int32
	entry    int32 // entry point index, -1 while empty
	maxLevel int
	nextSeq  uint64
}

// New returns an empty index over vectors of dim elements.
func New(dim int, p Params) (*Index, error) { return newIndex(dim, p, SketchSize(dim)) }

// newIndex is New for nodes of codeLen codes (SketchSize(dim), or the sketch size
// an older index was written with).
func newIndex(dim int, p Params, codeLen int) (*Index, error) {
	if dim < 1 || dim > math.MaxInt32 {
		return nil, fmt.Errorf("hnsw: bad dim %d", dim)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	x := &Index{dim: dim, p: p, pos: sketchPositions(dim, codeLen), mult: 1,
		mL: 1 / math.Log(float64(p.M)), byID: map[ID]int32{}, entry: -1}
	if x.pos != nil {
		x.mult = float64(dim) / float64(len(x.pos))
	}
	return x, nil
}

// Dim returns the vector dimension of the index.
func (x *Index) Dim() int { return x.dim }

// Len returns the number of nodes.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.nodes)
}

// codeLen is the number of codes a node of this index keeps.
func (x *Index) codeLen() int {
	if x.pos != nil {
		return len(x.pos)
	}
	return x.dim
}

// level draws the level of node id from a PCG generator seeded by (Seed, id).
func (x *Index) level(id ID) int {
	r := rand.New(rand.NewPCG(x.p.Seed, uint64(id)))
	l := math.Floor(-math.Log(1-r.Float64()) * x.mL)
	return int(min(l, maxLevelCap))
}

// cand is a node index with its distance to the current query.
type cand struct {
	d float64
	i int32
}

func candLess(a, b cand) bool { return a.d < b.d || a.d == b.d && a.i < b.i }

// Insert adds vec under id. It returns the ids of every node whose record changed
// (the new node and each node whose neighbour lists changed), sorted, so the caller
// persists only those. Errors: wrong length, NaN or Inf elements, duplicate id.
func (x *Index) Insert(id ID, vec []float32) (changed []ID, err error) {
	if err := checkVector(vec, x.dim); err != nil {
		return nil, err
	}
	c := quantize(vec, x.pos)
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, dup := x.byID[id]; dup {
		return nil, fmt.Errorf("hnsw: duplicate id %d", id)
	}
	if len(x.nodes) >= math.MaxInt32 {
		return nil, fmt.Errorf("hnsw: index full")
	}
	lvl := x.level(id)
	n := &node{id: id, seq: x.nextSeq, level: lvl, vec: c, links: make([][]int32, lvl+1)}
	q := int32(len(x.nodes))
	x.nodes = append(x.nodes, n)
	x.byID[id] = q
	x.nextSeq++
	if x.entry < 0 {
		x.entry, x.maxLevel = q, lvl
		return []ID{id}, nil
	}

	dc := distCache{x: x, m: map[uint64]float64{}}
	dq := func(j int32) float64 { return dc.get(q, j) }
	touched := map[int32]bool{q: true}
	ep := []cand{{dq(x.entry), x.entry}}
	for lc := x.maxLevel; lc > lvl; lc-- {
		ep = x.searchLayer(dq, ep, 1, lc)
	}
	for lc := min(lvl, x.maxLevel); lc >= 0; lc-- {
		w := x.searchLayer(dq, ep, x.p.EfConstruction, lc)
		nb := selectHeuristic(w, x.p.M, dc.get)
		n.links[lc] = make([]int32, len(nb))
		for k, e := range nb {
			n.links[lc][k] = e.i
		}
		for _, e := range nb {
			if x.connect(e.i, q, lc, &dc) {
				touched[e.i] = true
			}
		}
		ep = w
	}
	if lvl > x.maxLevel {
		x.entry, x.maxLevel = q, lvl
	}
	for i := range touched {
		changed = append(changed, x.nodes[i].id)
	}
	slices.Sort(changed)
	return changed, nil
}

// connect adds the link e -> q on layer lc, shrinking e's list with the heuristic
// when it overflows. It reports whether e's list changed.
func (x *Index) connect(e, q int32, lc int, dc *distCache) bool {
	en := x.nodes[e]
	old := en.links[lc]
	if len(old) < x.p.mmax(lc) {
		en.links[lc] = append(old, q)
		return true
	}
	cs := make([]cand, 0, len(old)+1)
	for _, j := range append(old[:len(old):len(old)], q) {
		cs = append(cs, cand{dc.get(e, j), j})
	}
	slices.SortFunc(cs, cmpCand)
	sel := selectHeuristic(cs, x.p.mmax(lc), dc.get)
	nl := make([]int32, len(sel))
	for k, s := range sel {
		nl[k] = s.i
	}
	if slices.Equal(nl, old) {
		return false
	}
	en.links[lc] = nl
	return true
}

func cmpCand(a, b cand) int {
	if candLess(a, b) {
		return -1
	}
	if candLess(b, a) {
		return 1
	}
	return 0
}

// selectHeuristic is the paper's Algorithm 4 (extendCandidates false,
// keepPrunedConnections true): w holds candidates sorted by distance to the base
// element; a candidate is kept when it is closer to the base than to every element
// kept so far; the result is topped up to m with the nearest discarded candidates.
func selectHeuristic(w []cand, m int, dd func(a, b int32) float64) []cand {
	r := make([]cand, 0, m)
	var discarded []cand
	for _, e := range w {
		if len(r) >= m {
			break
		}
		good := true
		for _, s := range r {
			if dd(e.i, s.i) < e.d {
				good = false
				break
			}
		}
		if good {
			r = append(r, e)
		} else {
			discarded = append(discarded, e)
		}
	}
	for _, e := range discarded {
		if len(r) >= m {
			break
		}
		r = append(r, e)
	}
	return r
}

// distCache memoises node-to-node distances during one Insert (the heuristic and
// the neighbour shrinks compare the same nearby nodes many times).
type distCache struct {
	x *Index
	m map[uint64]float64
}

func (c *distCache) get(a, b int32) float64 {
	if a > b {
		a, b = b, a
	}
	k := uint64(a)<<32 | uint64(uint32(b))
	if d, ok := c.m[k]; ok {
		return d
	}
	d := dist(&c.x.nodes[a].vec, &c.x.nodes[b].vec, c.x.mult)
	c.m[k] = d
	return d
}

// searchLayer is the paper's Algorithm 2: a best-first search on layer lc from the
// entry points ep that returns up to ef nearest nodes, sorted by distance. dq gives
// the query's distance to a node.
func (x *Index) searchLayer(dq func(int32) float64, ep []cand, ef, lc int) []cand {
	visited := make([]uint64, (len(x.nodes)+63)/64)
	var cands, res heap
	res.max = true
	for _, e := range ep {
		visited[e.i/64] |= 1 << (e.i % 64)
		cands.push(e)
		res.push(e)
		if len(res.s) > ef {
			res.pop()
		}
	}
	for len(cands.s) > 0 {
		c := cands.pop()
		if len(res.s) >= ef && candLess(res.s[0], c) {
			break
		}
		for _, j := range x.nodes[c.i].links[lc] {
			if visited[j/64]&(1<<(j%64)) != 0 {
				continue
			}
			visited[j/64] |= 1 << (j % 64)
			e := cand{dq(j), j}
			if len(res.s) < ef || candLess(e, res.s[0]) {
				cands.push(e)
				res.push(e)
				if len(res.s) > ef {
					res.pop()
				}
			}
		}
	}
	out := res.s
	slices.SortFunc(out, cmpCand)
	return out
}

// Search returns the approximate k nearest nodes to query by compact distance,
// nearest first. It may run concurrently with other Searches.
func (x *Index) Search(query []float32, k int) ([]Result, error) {
	if k < 1 {
		return nil, fmt.Errorf("hnsw: k %d < 1", k)
	}
	if err := checkVector(query, x.dim); err != nil {
		return nil, err
	}
	q := quantize(query, x.pos)
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.entry < 0 {
		return nil, nil
	}
	dq := func(j int32) float64 { return dist(&q, &x.nodes[j].vec, x.mult) }
	ep := []cand{{dq(x.entry), x.entry}}
	for lc := x.maxLevel; lc > 0; lc-- {
		ep = x.searchLayer(dq, ep, 1, lc)
	}
	w := x.searchLayer(dq, ep, max(x.p.EfSearch, k), 0)
	out := make([]Result, min(k, len(w)))
	for i := range out {
		out[i] = Result{x.nodes[w[i].i].id, w[i].d}
	}
	return out, nil
}

// heap is a binary heap of candidates: a min-heap, or a max-heap when max is set.
type heap struct {
	s   []cand
	max bool
}

func (h *heap) less(i, j int) bool {
	if h.max {
		return candLess(h.s[j], h.s[i])
	}
	return candLess(h.s[i], h.s[j])
}

func (h *heap) push(c cand) {
	h.s = append(h.s, c)
	for i := len(h.s) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.s[i], h.s[p] = h.s[p], h.s[i]
		i = p
	}
}

func (h *heap) pop() cand {
	top := h.s[0]
	last := len(h.s) - 1
	h.s[0] = h.s[last]
	h.s = h.s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && h.less(l, m) {
			m = l
		}
		if r < last && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
	return top
}
