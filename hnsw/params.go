package hnsw

import (
	"fmt"
	"math"
)

// Params are the HNSW construction and search parameters of an Index.
type Params struct {
	// M is the number of neighbours a node keeps on layers above 0; it also sets the
	// level distribution (mL = 1/ln M).
	M int
	// Mmax0 is the number of neighbours a node keeps on layer 0 (usually 2*M).
	Mmax0 int
	// EfConstruction is the size of the dynamic candidate list during Insert.
	EfConstruction int
	// EfSearch is the size of the dynamic candidate list during Search (raised to k
	// when k is larger).
	EfSearch int
	// Seed seeds the level generator. Levels are drawn from a PCG generator seeded
	// with (Seed, node id), so the same inserts give the same graph, bit for bit, in
	// a fresh index as in one rebuilt by Load.
	Seed uint64
}

// DefaultSeed is the level-generator seed DefaultParams uses.
const DefaultSeed = 0x6e657572_73746f72 // "neurstor"

// Dimension anchors of DefaultParams.
const (
	smallDim = 512       // at or below: M 24, efC 64, efS 64
	largeDim = 2_400_000 // at or above: M 4, efC 16, efS 16
)

// DefaultParams returns parameters for an index over vectors of dim elements. Large
// tensors are expensive to compare, so M and ef shrink as dim grows:
//
//	dim <= 512          M 24, efConstruction 64, efSearch 64
//	dim >= 2.4M         M  4, efConstruction 16, efSearch 16
//	in between          linear in log2(dim) between these anchors, rounded
//
// For example dim 16384 gives M 16, ef 44; dim 65536 gives M 13, ef 36; dim 1<<20
// gives M 6, ef 21. Mmax0 is always 2*M.
func DefaultParams(dim int) Params {
	t := 0.0
	if dim > smallDim {
		t = (math.Log2(float64(dim)) - math.Log2(smallDim)) / (math.Log2(largeDim) - math.Log2(smallDim))
		t = min(t, 1)
	}
	lerp := func(a, b float64) int { return int(math.Round(a + t*(b-a))) }
	m := lerp(24, 4)
	ef := lerp(64, 16)
	return Params{M: m, Mmax0: 2 * m, EfConstruction: ef, EfSearch: ef, Seed: DefaultSeed}
}

func (p Params) validate() error {
	switch {
	case p.M < 2:
		return fmt.Errorf("hnsw: M %d < 2", p.M)
	case p.Mmax0 < p.M:
		return fmt.Errorf("hnsw: Mmax0 %d < M %d", p.Mmax0, p.M)
	case p.M > maxLinks || p.Mmax0 > maxLinks:
		return fmt.Errorf("hnsw: M/Mmax0 above %d", maxLinks)
	case p.EfConstruction < 1:
		return fmt.Errorf("hnsw: efConstruction %d < 1", p.EfConstruction)
	case p.EfSearch < 1:
		return fmt.Errorf("hnsw: efSearch %d < 1", p.EfSearch)
	}
	return nil
}

// mmax is the neighbour limit on layer lc.
func (p Params) mmax(lc int) int {
	if lc == 0 {
		return p.Mmax0
	}
	return p.M
}
