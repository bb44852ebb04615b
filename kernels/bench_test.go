package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The matrix benchmarks report GFLOP/s, and for the products that stream a
// weight once (GEMV) the weight bytes read per second through b.SetBytes, to
// compare with BenchmarkMemBandwidth in the same run. They use every goroutine
// Threads() allows (GOMAXPROCS, set by -cpu); the /<level> sub-benchmarks pin
// a kernel level.

// benchMatLevels runs f as a sub-benchmark per matrix kernel level, fastest
// first.
func benchMatLevels(b *testing.B, f func(b *testing.B)) {
	saved := useLevel
	defer func() { useLevel = saved }()
	for i := len(matLevels) - 1; i >= 0; i-- {
		useLevel = matLevels[i]
		b.Run(useLevel.name, f)
	}
}

// reportFlops reports the rate of flops work per op.
func reportFlops(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkMatMul(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range [][3]int{{64, 512, 512}, {1, 4096, 4096}, {256, 1024, 1024}} {
		m, k, n := s[0], s[1], s[2]
		a, w := randMat(rng, m*k), randMat(rng, k*n)
		c := make([]float32, m*n)
		for _, trans := range []bool{false, true} {
			name := fmt.Sprintf("%dx%dx%d", m, k, n)
			if trans {
				name += "T"
			}
			b.Run(name, func(b *testing.B) {
				benchMatLevels(b, func(b *testing.B) {
					if m == 1 {
						b.SetBytes(int64(4 * k * n))
					}
					for b.Loop() {
						matMul(c, a, w, m, k, n, trans)
					}
					reportFlops(b, float64(2*m*k*n))
				})
			})
		}
	}
}

func BenchmarkMatMulPacked(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	const k, n = 4096, 4096
	for _, tc := range []struct {
		name string
		base string
		m    int
	}{
		{"gemv-i16+4bit", "i16", 1},
		{"gemv-f32+4bit", "f32", 1},
		{"gemv4-i16+4bit", "i16", 4},
		{"batch64-i16+4bit", "i16", 64},
	} {
		w := randPacked(rng, n, k, tc.base, 4, 128, 16) // [n×k]: transposed use
		a := randMat(rng, tc.m*k)
		c := make([]float32, tc.m*n)
		for _, trans := range []bool{true, false} {
			name := tc.name
			if trans {
				name += "/T"
			}
			b.Run(name, func(b *testing.B) {
				benchMatLevels(b, func(b *testing.B) {
					b.SetBytes(w.Bytes())
					for b.Loop() {
						matMulPacked(c, a, tc.m, w, trans)
					}
					reportFlops(b, float64(2*tc.m*k*n))
				})
			})
		}
	}
	b.Run("dense-i16+4bit", func(b *testing.B) {
		w := randPacked(rng, n, k, "i16", 4, 128, 16)
		dst := make([]float32, n*k)
		benchMatLevels(b, func(b *testing.B) {
			b.SetBytes(w.Bytes())
			for b.Loop() {
				dense(dst, w)
			}
		})
	})
}

// BenchmarkMemBandwidth reads (sum) and copies a 64 MiB buffer with Threads()
// goroutines: the memory bandwidth the GEMV rates above compare with. copy's
// bytes are those read (as many are written).
func BenchmarkMemBandwidth(b *testing.B) {
	const size = 64 << 20
	src := make([]uint64, size/8)
	for i := range src {
		src[i] = uint64(i)
	}
	dst := make([]uint64, len(src))
	var sink uint64
	b.Run("sum", func(b *testing.B) {
		b.SetBytes(size)
		sums := make([]uint64, Threads())
		for b.Loop() {
			parts := Threads()
			matParallel(parts, func(lo, hi int) {
				sums[lo] = sumWords(src[lo*len(src)/parts : hi*len(src)/parts])
			})
		}
		sink += sums[0]
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			parts := Threads()
			matParallel(parts, func(lo, hi int) {
				i, j := lo*len(src)/parts, hi*len(src)/parts
				copy(dst[i:j], src[i:j])
			})
		}
	})
	_ = sink
}

// sumWords adds x's words, walking its four quarters at once (four streams keep
// more cache misses in flight than one), so that the loop is bound by memory.
func sumWords(x []uint64) uint64 {
	q := len(x) / 4
	x0, x1, x2, x3 := x[:q], x[q:2*q], x[2*q:3*q], x[3*q:4*q]
	var s0, s1, s2, s3 uint64
	for i := 0; i+1 < q; i += 2 {
		s0 += x0[i] + x0[i+1]
		s1 += x1[i] + x1[i+1]
		s2 += x2[i] + x2[i+1]
		s3 += x3[i] + x3[i+1]
	}
	if q%2 == 1 {
		s0 += x0[q-1] + x1[q-1] + x2[q-1] + x3[q-1]
	}
	for _, v := range x[4*q:] {
		s0 += v
	}
	return s0 + s1 + s2 + s3
}

// BenchmarkMatMulSmallM times the products of the batch sizes a server sees
// (a few rows) against a 2048×2048 weight, dense and packed (6-bit delta over
// an int16 base, and a delta alone), and reports the time per activation row:
// where the GEMV kernels (up to gemvMaxM rows) and the GEMM cross over.
func BenchmarkMatMulSmallM(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	const k, n = 2048, 2048
	dense := randMat(rng, k*n)
	for _, base := range []string{"dense", "i16", "none"} {
		var w *Packed
		if base != "dense" {
			w = randPacked(rng, k, n, base, 6, 64, 16)
		}
		for _, m := range []int{1, 4, 5, 8, 9, 12, 16, 17, 32, 64} {
			a := randMat(rng, m*k)
			c := make([]float32, m*n)
			for _, trans := range []bool{false, true} {
				name := fmt.Sprintf("%s/m%d", base, m)
				if trans {
					name += "/T"
				}
				b.Run(name, func(b *testing.B) {
					for b.Loop() {
						if w == nil {
							matMul(c, a, dense, m, k, n, trans)
						} else {
							matMulPacked(c, a, m, w, trans)
						}
					}
					b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N)/float64(m), "us/row")
				})
			}
		}
	}
}

// BenchmarkCrossModelSplit compares the two ways a run over V = 6 fine-tunes of
// one base (r rows each) can multiply a transposed weight (as Gemm does):
// "fused", each part by its own base + 6-bit delta, and "split", the base once
// for all rows (an int16 base with a 1-bit delta, as runtime's base-only
// products carry their scale) plus each part by its delta alone. The split
// reads the base once instead of V times but decodes V+1 times: it pays only
// where the weight streams from memory rather than cache (runtime's
// splitRowsPerPart).
func BenchmarkCrossModelSplit(b *testing.B) {
	rng := rand.New(rand.NewPCG(4, 4))
	const parts = 6
	for _, size := range []int{1024, 2048, 4096, 8192} {
		base := randPacked(rng, size, size, "i16", 1, 64, 0)
		whole := make([]*Packed, parts)
		delta := make([]*Packed, parts)
		for i := range parts {
			w := randPacked(rng, size, size, "i16", 6, 64, 0)
			// the fine-tunes share the base's codes, as in the runtime's cache
			whole[i] = &Packed{Rows: size, Cols: size, BaseI16: base.BaseI16, Delta: w.Delta}
			delta[i] = &Packed{Rows: size, Cols: size, Delta: w.Delta}
		}
		for _, r := range []int{1, 2, 4} {
			a := randMat(rng, parts*r*size)
			c := make([]float32, parts*r*size)
			tmp := make([]float32, r*size)
			b.Run(fmt.Sprintf("%dx%d/rows%d/fused", size, size, r), func(b *testing.B) {
				for b.Loop() {
					for i := range parts {
						matMulPacked(c[i*r*size:], a[i*r*size:], r, whole[i], true)
					}
				}
			})
			b.Run(fmt.Sprintf("%dx%d/rows%d/split", size, size, r), func(b *testing.B) {
				for b.Loop() {
					matMulPacked(c, a, parts*r, base, true)
					for i := range parts {
						matMulPacked(tmp, a[i*r*size:], r, delta[i], true)
						o := c[i*r*size : (i+1)*r*size]
						for j, v := range tmp {
							o[j] += v
						}
					}
				}
			})
		}
	}
}

// BenchmarkSmallWeights compares a small transposed weight multiplied packed
// (6-bit delta over an int16 base) with its decoded float32 copy, warm in
// cache: the evidence for runtime's denseWeightElements.
func BenchmarkSmallWeights(b *testing.B) {
	rng := rand.New(rand.NewPCG(6, 6))
	for _, size := range []int{128, 256, 512, 1024} {
		w := randPacked(rng, size, size, "i16", 6, 64, 0)
		d := make([]float32, size*size)
		dense(d, w)
		for _, m := range []int{1, 8, 32} {
			a := randMat(rng, m*size)
			c := make([]float32, m*size)
			b.Run(fmt.Sprintf("%dx%d/rows%d/packed", size, size, m), func(b *testing.B) {
				for b.Loop() {
					matMulPacked(c, a, m, w, true)
				}
			})
			b.Run(fmt.Sprintf("%dx%d/rows%d/dense", size, size, m), func(b *testing.B) {
				for b.Loop() {
					matMul(c, a, d, m, size, size, true)
				}
			})
		}
	}
}
