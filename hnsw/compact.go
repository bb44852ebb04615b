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
// element. Above it nodes keep a sketch: the codes of SketchSize(dim) positions, one
// drawn at random from each of that many equal strata of [0, dim), with a generator
// seeded by dim alone, so every vector (and every index) of that dim samples the
// same positions. A sketch keeps the index small next to the tensors it points at
// (about 1/256 of a byte per element) while the distance estimate stays far finer
// than the gap between a fine-tune's base and an unrelated tensor; callers re-rank
// the nearest hits exactly.
const (
	SketchThreshold = 64
	minSketch       = 64
	maxSketch       = 1 << 16

	// sketchDiv is the elements per sketch code. It was 64 until 2026-12-04;
	// 256 keeps the same recall (1.000 on the real families) and makes a
	// text-medium family's index 2.5x smaller (112 -> 45 KB, 0.7% of the store at
	// tau 1e-3). Indexes written with 64 still load (Load takes the code count
	// from their records) and keep it.
	sketchDiv    = 256
	oldSketchDiv = 64
)

// SketchSize returns how many codes a node of a dim-element vector keeps in a new
// index: dim up to SketchThreshold, else dim/256 clamped to [64, 65536].
func SketchSize(dim int) int { return sketchSize(dim, sketchDiv) }

func sketchSize(dim, div int) int {
	if dim <= SketchThreshold {
		return dim
	}
	return min(max(dim/div, minSketch), maxSketch)
}

const sketchSeed = 0x736b657463680001

// compact is the compact form of one vector.
type compact struct {
	code  []uint8
	min   float32 // zero point
	scale float32
	sumQ  uint64 // sum(code)
	sumQ2 uint64 // sum(code^2)
}

// sketchPositions returns the n sampled positions for dim, or nil when dim keeps
// every element.
func sketchPositions(dim, n int) []int {
	if dim <= SketchThreshold {
		return nil
	}
	r := rand.New(rand.NewPCG(sketchSeed, uint64(dim)))
	pos := make([]int, n)
	for j := range pos {
		lo := j * dim / n
		hi := (j + 1) * dim / n
		pos[j] = lo + r.IntN(hi-lo)
	}
	return pos
}

// checkVector reports a wrong length or a non-finite element.
func checkVector(vec []float32, dim int) error {
	if len(vec) != dim {
		return fmt.Errorf("hnsw: vector has %d elements, index dim is %d", len(vec), dim)
	}
	// NaN and ±Inf are exactly the float32 values whose exponent bits are all ones.
	const exp = 0x7f800000
	for i, v := range vec {
		if math.Float32bits(v)&exp == exp {
			return fmt.Errorf("hnsw: vector element %d is %v", i, v)
		}
	}
	return nil
}

// quantize returns the compact form of vec (already checked) over pos (nil: all).
func quantize(vec []float32, pos []int) compact {
	if pos != nil {
		g := make([]float32, len(pos))
		for j, p := range pos {
			g[j] = vec[p]
		}
		vec = g
	}
	n := len(vec)
	// min and max over four interleaved runs (the builtins are associative and
	// commutative on NaN-free input, -0 < +0 included, so the result is the same as
	// one run's).
	inf := float32(math.Inf(1))
	lo0, lo1, lo2, lo3 := inf, inf, inf, inf
	hi0, hi1, hi2, hi3 := -inf, -inf, -inf, -inf
	i := 0
	for ; i+4 <= n; i += 4 {
		v := vec[i : i+4 : i+4]
		lo0, hi0 = min(lo0, v[0]), max(hi0, v[0])
		lo1, hi1 = min(lo1, v[1]), max(hi1, v[1])
		lo2, hi2 = min(lo2, v[2]), max(hi2, v[2])
		lo3, hi3 = min(lo3, v[3]), max(hi3, v[3])
	}
	for ; i < n; i++ {
		lo0, hi0 = min(lo0, vec[i]), max(hi0, vec[i])
	}
	lo, hi := min(lo0, lo1, lo2, lo3), max(hi0, hi1, hi2, hi3)

	c := compact{code: make([]uint8, n), min: lo}
	scale := (float64(hi) - float64(lo)) / 255
	c.scale = float32(scale)
	if c.scale == 0 { // constant vector: all codes 0
		return c
	}
	inv := 1 / float64(c.scale)
	lo64 := float64(lo)
	const half = 0x3fe0000000000000 // math.Float64bits(0.5)
	code := c.code[:n]
	var s, s2 uint64
	for i, v := range vec {
		// q = min(max(round(x), 0), 255) with round half away from zero, as
		// math.Round. x >= 0 (v >= lo, inv > 0), so the max is a no-op, and below 255
		// round(x) is the truncation t plus one when r = x-t >= 0.5 (r is exact).
		// That test is a coin toss for a branch, so it is done on the bits: for
		// r >= 0, r >= 0.5 exactly when bits(r) >= bits(0.5), that is when
		// bits(r)-bits(0.5) does not wrap (top bit clear).
		x := (float64(v) - lo64) * inv
		q := uint64(255)
		if x < 255 {
			t := int64(x)
			r := math.Float64bits(x - float64(t))
			q = uint64(t) + 1 - (r-half)>>63
		}
		code[i] = uint8(q)
		s += q
		s2 += q * q
	}
	c.sumQ, c.sumQ2 = s, s2
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
