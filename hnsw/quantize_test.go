package hnsw

import (
	"math"
	"math/rand/v2"
	"testing"
)

// quantizeRef is the straightforward form of quantize (one pass through an accessor
// for min/max, math.Round for the codes, codeSums for the sums); quantize must give
// the same codes, bit for bit the same min and scale, and the same sums.
func quantizeRef(vec []float32, pos []int) compact {
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
	c.scale = float32((float64(hi) - float64(lo)) / 255)
	if c.scale == 0 {
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

func sameCompact(a, b compact) bool {
	if math.Float32bits(a.min) != math.Float32bits(b.min) ||
		math.Float32bits(a.scale) != math.Float32bits(b.scale) ||
		a.sumQ != b.sumQ || a.sumQ2 != b.sumQ2 || len(a.code) != len(b.code) {
		return false
	}
	for i := range a.code {
		if a.code[i] != b.code[i] {
			return false
		}
	}
	return true
}

// TestQuantizeRef compares quantize with quantizeRef on random vectors and on the
// awkward ones: constant, signed zeros, values on exact rounding ties, tiny and huge
// ranges, subnormal scales, and sketch positions.
func TestQuantizeRef(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	var vecs [][]float32
	for _, n := range []int{1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 1000, 4097} {
		vecs = append(vecs, normal(r, n, 0.02), normal(r, n, 1e3))
		// ties: integers scaled so that many (x - min)/scale land on k + 0.5
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.IntN(511)) / 2
		}
		v[0], v[len(v)-1] = 0, 255
		vecs = append(vecs, v)
		// signed zeros and a constant vector
		z := make([]float32, n)
		for i := range z {
			if r.IntN(2) == 0 {
				z[i] = float32(math.Copysign(0, -1))
			}
		}
		vecs = append(vecs, z, make([]float32, n))
		if n > 1 {
			z2 := append([]float32(nil), z...)
			z2[n/2] = 1e-3
			vecs = append(vecs, z2)
		}
		// tiny range (subnormal scale) and huge range
		tiny := make([]float32, n)
		huge := make([]float32, n)
		for i := range tiny {
			tiny[i] = float32(r.IntN(4)) * math.SmallestNonzeroFloat32
			huge[i] = float32((r.Float64()*2 - 1) * math.MaxFloat32)
		}
		vecs = append(vecs, tiny, huge)
	}
	for k, v := range vecs {
		if got, want := quantize(v, nil), quantizeRef(v, nil); !sameCompact(got, want) {
			t.Errorf("vector %d (n=%d): quantize differs from the reference", k, len(v))
		}
	}
	// sketch positions over a vector bigger than SketchThreshold would need 4 MiB+;
	// any position list exercises the same gather.
	v := normal(r, 10000, 0.02)
	pos := make([]int, 3001)
	for j := range pos {
		pos[j] = r.IntN(len(v))
	}
	if !sameCompact(quantize(v, pos), quantizeRef(v, pos)) {
		t.Errorf("positions: quantize differs from the reference")
	}
}

// TestCheckVector checks that NaN and both infinities are found wherever they are,
// and that finite extremes pass.
func TestCheckVector(t *testing.T) {
	ok := []float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, 1}
	if err := checkVector(ok, len(ok)); err != nil {
		t.Errorf("finite vector: %v", err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		for _, at := range []int{0, 3, 5} {
			v := append([]float32(nil), ok...)
			v[at] = bad
			if err := checkVector(v, len(v)); err == nil {
				t.Errorf("%v at %d: no error", bad, at)
			}
		}
	}
}

// BenchmarkQuantize measures what Search spends on the query before the graph walk:
// checkVector and quantize of 65536 elements.
func BenchmarkQuantize(b *testing.B) {
	const n = 65536
	v := normal(rand.New(rand.NewPCG(24, 1)), n, 0.02)
	b.SetBytes(4 * n)
	for b.Loop() {
		if err := checkVector(v, n); err != nil {
			b.Fatal(err)
		}
		_ = quantize(v, nil)
	}
}
