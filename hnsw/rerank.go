package hnsw

import (
	"cmp"
	"fmt"
	"slices"
)

// Rerank returns cands with Dist replaced by the exact squared L2 distance between
// query and each candidate's full vector, as returned by exact, sorted nearest first
// (ties by id). cands is not modified. An error from exact, or a vector of the wrong
// length, stops it.
func Rerank(query []float32, cands []Result, exact func(ID) ([]float32, error)) ([]Result, error) {
	out := make([]Result, len(cands))
	for i, c := range cands {
		v, err := exact(c.ID)
		if err != nil {
			return nil, fmt.Errorf("hnsw: rerank %d: %w", c.ID, err)
		}
		if len(v) != len(query) {
			return nil, fmt.Errorf("hnsw: rerank %d: vector has %d elements, query %d", c.ID, len(v), len(query))
		}
		out[i] = Result{c.ID, sqL2(query, v)}
	}
	slices.SortFunc(out, func(a, b Result) int {
		if c := cmp.Compare(a.Dist, b.Dist); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

// sqL2 is the exact squared L2 distance, accumulated in float64.
func sqL2(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1 float64
	i := 0
	for ; i+2 <= len(a); i += 2 {
		d0 := float64(a[i]) - float64(b[i])
		d1 := float64(a[i+1]) - float64(b[i+1])
		s0 += d0 * d0
		s1 += d1 * d1
	}
	if i < len(a) {
		d := float64(a[i]) - float64(b[i])
		s0 += d * d
	}
	return s0 + s1
}
