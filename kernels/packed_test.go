package kernels

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/neurstore/neurstore/quant"
)

// randPacked returns a random rows×cols packed matrix with the given base
// ("f32", "i16", "i8", or "none" for a delta alone), delta width, group size (0: one group) and about ex
// exceptions. The codes are small, as a model's would be, so that float32
// products of the decoded values are exact enough for the checks. Most
// exception slots hold u = 0, as quant writes them; some do not, which the
// kernels must handle too.
func randPacked(rng *rand.Rand, rows, cols int, base string, bits, group, ex int) *Packed {
	n := rows * cols
	if group == 0 {
		group = max(n, 1)
	}
	d := &quant.GroupPacked{
		Bits: bits, Group: group, N: n,
		Data:  make([]byte, quant.PackedLen(n, bits)),
		Zero:  make([]int32, (n+group-1)/group),
		Scale: float32(0.0078125), Scale64: 0.0078125,
	}
	for i := range d.Zero {
		d.Zero[i] = int32(rng.IntN(17)) - 8
	}
	for i := range n {
		u := uint(rng.Uint32()) & (1<<bits - 1)
		bit := i * bits
		d.Data[bit/8] |= byte(u << (bit % 8))
		if bit%8+bits > 8 {
			d.Data[bit/8+1] |= byte(u >> (8 - bit%8))
		}
	}
	var idx []int
	for range ex {
		if n > 0 {
			idx = append(idx, rng.IntN(n))
		}
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		if rng.IntN(4) != 0 {
			for b := 0; b < bits; b++ { // u = 0
				bit := i*bits + b
				d.Data[bit/8] &^= 1 << (bit % 8)
			}
		}
		d.Exceptions = append(d.Exceptions, quant.Exception{Index: uint32(i), Bits: math.Float32bits(rng.Float32()*8 - 4)})
	}
	p := &Packed{Rows: rows, Cols: cols, Delta: d}
	switch base {
	case "f32":
		p.BaseF32 = make([]float32, n)
		for i := range p.BaseF32 {
			p.BaseF32[i] = rng.Float32()*2 - 1
		}
	case "i16":
		p.BaseI16 = make([]int16, n)
		for i := range p.BaseI16 {
			p.BaseI16[i] = int16(rng.IntN(2001) - 1000)
		}
	case "i8":
		p.BaseI8 = make([]int8, n)
		for i := range p.BaseI8 {
			p.BaseI8[i] = int8(rng.IntN(256) - 128)
		}
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

// packedCase is one packed matrix configuration of the tests.
type packedCase struct {
	base              string
	bits, group, ex   int
	rows, cols, m     int
	transposed, dense bool
}

// packedCases returns the configurations: each base, width and group size
// (group 0: one group for the whole matrix) on shapes aligned to the vectors
// and not, with and without exceptions, in both layouts and with 1..5 rows of
// activations (5: the GEMM path), plus medium ones.
func packedCases() []packedCase {
	shapes := [][2]int{{16, 64}, {33, 48}, {17, 31}, {64, 129}, {100, 7}, {1, 160}, {96, 1}}
	var cs []packedCase
	i := 0
	for _, base := range []string{"f32", "i16", "i8", "none"} {
		for bits := 1; bits <= 8; bits++ {
			for _, group := range []int{1, 7, 64, 128, 0} {
				s := shapes[i%len(shapes)]
				cs = append(cs, packedCase{
					base: base, bits: bits, group: group, ex: []int{0, 3, 20}[i%3],
					rows: s[0], cols: s[1], m: 1 + i%5, transposed: i%2 == 0,
				})
				i++
			}
		}
	}
	// every fused GEMV kernel: each base, 1..gemvMaxM rows, both layouts, on rows that
	// are whole vectors
	for i, base := range []string{"f32", "i16", "i8", "none"} {
		for m := 1; m <= gemvMaxM; m++ {
			for _, tr := range []bool{false, true} {
				cs = append(cs, packedCase{base: base, bits: 1 + (i+m)%8, group: 64, ex: 7,
					rows: 48, cols: 64, m: m, transposed: tr})
			}
		}
	}
	for i, base := range []string{"f32", "i16", "i8", "none"} {
		for j, m := range []int{1, 2, 3, 4, 9, 21} {
			tr := (i+j)%2 == 0
			cs = append(cs,
				packedCase{base: base, bits: 4, group: 128, ex: 50, rows: 384, cols: 256, m: m, transposed: tr},
				packedCase{base: base, bits: 3, group: 64, ex: 10, rows: 257, cols: 131, m: m, transposed: !tr},
				packedCase{base: base, bits: 5, group: 100, ex: 10, rows: 160, cols: 200, m: m, transposed: tr},
			)
		}
	}
	return cs
}

// bigPackedCases are products large enough to be split over goroutines.
func bigPackedCases() []packedCase {
	return []packedCase{
		{base: "i16", bits: 4, group: 128, ex: 5, rows: 1024, cols: 1024, m: 1, transposed: true},
		{base: "i16", bits: 4, group: 128, ex: 5, rows: 1024, cols: 1024, m: 2, transposed: false},
		{base: "f32", bits: 8, group: 64, ex: 5, rows: 513, cols: 1024, m: 3, transposed: false},
		{base: "i8", bits: 2, group: 7, ex: 5, rows: 512, cols: 640, m: 4, transposed: true},
		{base: "i8", bits: 6, group: 32, ex: 9, rows: 300, cols: 512, m: 12, transposed: true},
		{base: "f32", bits: 1, group: 0, ex: 9, rows: 512, cols: 300, m: 12, transposed: false},
		{base: "none", bits: 4, group: 64, ex: 9, rows: 1024, cols: 512, m: 1, transposed: true},
		{base: "none", bits: 3, group: 0, ex: 9, rows: 512, cols: 1024, m: 16, transposed: false},
	}
}

func TestMatMulPacked(t *testing.T) {
	defer SetThreads(0)
	forEachMatLevel(t, func(t *testing.T) {
		for _, th := range []int{0, 3} {
			SetThreads(th)
			rng := rand.New(rand.NewPCG(11, 12))
			cases := bigPackedCases()
			if th == 0 {
				cases = append(packedCases(), cases...)
			}
			for _, tc := range cases {
				w := randPacked(rng, tc.rows, tc.cols, tc.base, tc.bits, tc.group, tc.ex)
				wd := make([]float32, tc.rows*tc.cols)
				denseRef(wd, w)
				k, n := tc.rows, tc.cols
				b := func(p, j int) float32 { return wd[p*n+j] }
				if tc.transposed {
					k, n = n, k
					b = func(p, j int) float32 { return wd[j*k+p] }
				}
				a := randMat(rng, tc.m*k)
				c := randMat(rng, tc.m*n)
				MatMulPacked(c, a, tc.m, w, tc.transposed)
				checkProduct(t, c, a, tc.m, k, n, b, 1e-5)
				if t.Failed() {
					t.Fatalf("threads %d: %+v", th, tc)
				}
			}
		}
	})
}

// TestDense checks that Dense writes the reference's values bit for bit.
func TestDense(t *testing.T) {
	defer SetThreads(0)
	forEachMatLevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(13, 14))
		for _, th := range []int{0, 4} {
			SetThreads(th)
			cases := append(bigPackedCases(), packedCase{base: "i8", bits: 2, group: 32, ex: 100, rows: 700, cols: 1000})
			if th == 0 {
				cases = append(packedCases(), cases...)
			}
			for _, tc := range cases {
				w := randPacked(rng, tc.rows, tc.cols, tc.base, tc.bits, tc.group, tc.ex)
				want := make([]float32, tc.rows*tc.cols)
				denseRef(want, w)
				got := make([]float32, len(want))
				Dense(got, w)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("threads %d %+v: element %d = %g, want %g", th, tc, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// TestDecodeRun decodes every window of a small matrix, so that each alignment
// of the start and end to vectors, bytes and groups occurs.
func TestDecodeRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, lv := range matLevels {
		for bits := 1; bits <= 8; bits++ {
			for _, group := range []int{1, 5, 16, 32, 0} {
				w := randPacked(rng, 3, 37, []string{"f32", "i16", "i8", "none"}[(bits+group)%4], bits, group, 6)
				want := make([]float32, w.Rows*w.Cols)
				denseRef(want, w)
				got := make([]float32, len(want))
				for f0 := 0; f0 < len(want); f0++ {
					for f1 := f0; f1 <= len(want); f1 += 1 + f1%3 {
						d := got[f0:f1]
						decodeRun(lv, d, w, f0)
						for i, v := range d {
							if math.Float32bits(v) != math.Float32bits(want[f0+i]) {
								t.Fatalf("%s bits %d group %d [%d,%d): element %d = %g, want %g",
									lv.name, bits, group, f0, f1, f0+i, v, want[f0+i])
							}
						}
					}
				}
			}
		}
	}
}

// TestPackedDenseDelta checks a packed matrix without a delta: a dense weight.
func TestPackedDenseDelta(t *testing.T) {
	forEachMatLevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(17, 18))
		for _, m := range []int{1, 4, 11} {
			for _, tr := range []bool{false, true} {
				w := &Packed{Rows: 40, Cols: 33, BaseF32: randMat(rng, 40*33)}
				k, n := w.Rows, w.Cols
				b := func(p, j int) float32 { return w.BaseF32[p*n+j] }
				if tr {
					k, n = n, k
					b = func(p, j int) float32 { return w.BaseF32[j*k+p] }
				}
				a := randMat(rng, m*k)
				c := make([]float32, m*n)
				MatMulPacked(c, a, m, w, tr)
				checkProduct(t, c, a, m, k, n, b, 1e-5)
				got := make([]float32, k*n)
				Dense(got, w)
				if !slices.Equal(got, w.BaseF32) {
					t.Fatalf("Dense of a dense weight differs")
				}
			}
		}
	})
}

// TestPackedInvalid checks that a malformed matrix panics instead of being read
// out of bounds.
func TestPackedInvalid(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	w := randPacked(rng, 32, 32, "i16", 4, 64, 0)
	w.Delta.Data = w.Delta.Data[:len(w.Delta.Data)-1]
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for short delta data")
		}
	}()
	MatMulPacked(make([]float32, 32), make([]float32, 32), 1, w, true)
}
