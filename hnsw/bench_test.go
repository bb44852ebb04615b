package hnsw

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchIndex builds an index of n bases of dim elements and queries that are
// fine-tunes of random bases.
func benchIndex(b *testing.B, dim, n int) (*Index, [][]float32) {
	b.Helper()
	bases, queries, _ := family(21, dim, n, 50)
	x := build(b, dim, DefaultParams(dim), bases)
	return x, queries
}

// BenchmarkSearch measures one k=5 lookup (no rerank). The 1000x65536 case is the
// target workload (< 5 ms per lookup).
func BenchmarkSearch(b *testing.B) {
	for _, c := range []struct{ dim, n int }{
		{65536, 1000},
		{1 << 20, 16}, {1 << 20, 64},
		{4 << 20, 16}, // sketch
	} {
		b.Run(fmt.Sprintf("%dx%d", c.n, c.dim), func(b *testing.B) {
			x, queries := benchIndex(b, c.dim, c.n)
			b.SetBytes(int64(c.dim) * 4)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := x.Search(queries[i%len(queries)], 5); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInsert measures inserts into an index of dim 16384 that grows from 200
// nodes.
func BenchmarkInsert(b *testing.B) {
	const dim = 16384
	x, _ := benchIndex(b, dim, 200)
	r := rand.New(rand.NewPCG(22, 1))
	vecs := make([][]float32, 64)
	for i := range vecs {
		vecs[i] = normal(r, dim, 0.02)
	}
	b.SetBytes(dim * 4)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		v := vecs[i%len(vecs)]
		v[i%dim] += 1e-3 // keep vectors distinct
		if _, err := x.Insert(ID(1_000_000+i), v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDot(b *testing.B) {
	const n = 65536
	r := rand.New(rand.NewPCG(23, 1))
	x, y := make([]uint8, n), make([]uint8, n)
	for i := range x {
		x[i], y[i] = uint8(r.IntN(256)), uint8(r.IntN(256))
	}
	b.SetBytes(2 * n)
	var s uint64
	for b.Loop() {
		s += dotU8(x, y)
	}
	_ = s
}
