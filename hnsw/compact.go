package hnsw

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Compact vectors.
//
// A node keeps its vector x (or, above SketchThreshold, the sketch positions of x) as
// 8-bit codes q with a per-vector zero point m = min(x) and scale s = (max(x)-m)/255:
// q_i = round((x_i - m)/s), dequantized x_i ~ s*q_i + m. A constant vector has s = 0
// and all codes 0.
//
// The squared L2 distance between dequantized a (sa, ma, qa) and b (sb, mb, qb) over n
// codes, with c = ma - mb:
//
//	||a-b||^2 = sum_i (sa*qa_i - sb*qb_i + c)^2
//	          = sa^2*sum(qa^2) + sb^2*sum(qb^2) + n*c^2
//	            - 2*sa*sb*sum(qa*qb) + 2*c*sa*sum(qa) - 2*c*sb*sum(qb)
//
// sum(q) and sum(q^2) are stored per vector; only sum(qa*qb) (dotU8) depends on both.
// For a sketch the result is scaled by dim/n to estimate the full distance.

// SketchThreshold is the largest element count for which nodes keep codes for every
// element. Above it nodes keep a sketch: the codes of SketchSize positions, one drawn
// at random from each of SketchSize equal strata of [0, dim), with a generator seeded
// by dim alone, so every vector (and every index) of that dim samples the same
// positions.
const (
	SketchThreshold = 1 << 20
	SketchSize      = 1 << 18
)

const sketchSeed = 0x736b657463680001

// compact is the compact form of one vector.
type compact struct {
	code  []uint8
	min   float32 // zero point
	scale float32
	sumQ  uint64 // sum(code)
	sumQ2 uint64 // sum(code^2)
}

// sketchPositions returns the sampled positions for dim, or nil when dim keeps every
// element.
func sketchPositions(dim int) []int {
	if dim <= SketchThreshold {
		return nil
	}
	r := rand.New(rand.NewPCG(sketchSeed, uint64(dim)))
	pos := make([]int, SketchSize)
	for j := range pos {
		lo := j * dim / SketchSize
		hi := (j + 1) * dim / SketchSize
		pos[j] = lo + r.IntN(hi-lo)
	}
	return pos
}

// checkVector reports a wrong length or a non-finite element.
func checkVector(vec []float32, dim int) error {
	if len(vec) != dim {
		return fmt.Errorf("hnsw: vector has %d elements, index dim is %d", len(vec), dim)
	}
	for i, v := range vec {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("hnsw: vector element %d is %v", i, v)
		}
	}
	return nil
}

// quantize returns the compact form of vec (already checked) over pos (nil: all).
func quantize(vec []float32, pos []int) compact {
	n := len(vec)
	if pos != nil {
		n = len(pos)
	}
	at := func(i int) float32 {
		if pos != nil {
			return vec[pos[i]]
		}
		return vec[i]
	}
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for i := range n {
		v := at(i)
		lo = min(lo, v)
		hi = max(hi, v)
	}
	c := compact{code: make([]uint8, n), min: lo}
	scale := (float64(hi) - float64(lo)) / 255
	c.scale = float32(scale)
	if c.scale == 0 { // constant vector: all codes 0
		return c
	}
	inv := 1 / float64(c.scale)
	for i := range n {
		q := math.Round((float64(at(i)) - float64(lo)) * inv)
		q = min(max(q, 0), 255)
		c.code[i] = uint8(q)
	}
	c.sumQ, c.sumQ2 = codeSums(c.code)
	return c
}

// codeSums returns sum(q) and sum(q^2).
func codeSums(q []uint8) (s, s2 uint64) {
	for _, v := range q {
		s += uint64(v)
		s2 += uint64(v) * uint64(v)
	}
	return s, s2
}

// dist returns the squared L2 distance between the dequantized a and b, scaled by
// mult (dim/len(code) for a sketch, else 1). Rounding can make the expansion dip
// below zero for (near) equal vectors; it is clamped at 0.
func dist(a, b *compact, mult float64) float64 {
	sa, sb := float64(a.scale), float64(b.scale)
	c := float64(a.min) - float64(b.min)
	n := float64(len(a.code))
	var dot float64
	if sa != 0 && sb != 0 {
		dot = float64(dotU8(a.code, b.code))
	}
	d := sa*sa*float64(a.sumQ2) + sb*sb*float64(b.sumQ2) + n*c*c -
		2*sa*sb*dot + 2*c*sa*float64(a.sumQ) - 2*c*sb*float64(b.sumQ)
	return max(d, 0) * mult
}
