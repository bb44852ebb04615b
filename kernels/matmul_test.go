package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// matSizes are the dimensions the product tests combine.
var matSizes = []int{1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17, 31, 33, 64, 100, 129}

// matShapes returns the (m, k, n) the product tests run: every m and k of
// matSizes with n cycling through them, a few larger products and products
// large enough to run in parallel.
func matShapes() [][3]int {
	var s [][3]int
	for i, m := range matSizes {
		for j, k := range matSizes {
			s = append(s, [3]int{m, k, matSizes[(i+2*j)%len(matSizes)]})
		}
	}
	return append(s,
		[3]int{257, 513, 131}, [3]int{1, 4096, 300}, [3]int{4, 1000, 1000},
		[3]int{3, 700, 4096}, [3]int{300, 40, 700}, [3]int{6, 300, 2000},
	)
}

// forEachMatLevel runs f as a subtest with each matrix kernel level in use.
func forEachMatLevel(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := useLevel
	defer func() { useLevel = saved }()
	for _, lv := range matLevels {
		useLevel = lv
		t.Run(lv.name, f)
	}
}

// randMat returns n floats uniform in [-1, 1).
func randMat(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	return x
}

// checkProduct checks c[m×n] against the product of a [m×k] and B, B[p][j] =
// b(p, j), computed in float64: each element within tol of the sum of the
// absolute products (so that cancellation does not count against it).
func checkProduct(t *testing.T, c, a []float32, m, k, n int, b func(p, j int) float32, tol float64) {
	t.Helper()
	bad := 0
	for i := range m {
		for j := range n {
			var s, abs float64
			for p := range k {
				x := float64(a[i*k+p]) * float64(b(p, j))
				s += x
				abs += math.Abs(x)
			}
			got := float64(c[i*n+j])
			if !(math.Abs(got-s) <= tol*abs+1e-30) {
				if bad++; bad <= 5 {
					t.Errorf("c[%d][%d] = %g, want %g (error %.3g of %g)", i, j, got, s, math.Abs(got-s), abs)
				}
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d elements wrong", bad)
	}
}

func TestMatMul(t *testing.T) {
	forEachMatLevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, s := range matShapes() {
			m, k, n := s[0], s[1], s[2]
			if useLevel == goLevel && m*k*n > 1<<22 {
				continue // slow, and the same Go code as the smaller shapes
			}
			a, b := randMat(rng, m*k), randMat(rng, k*n)
			c := randMat(rng, m*n) // overwritten
			MatMul(c, a, b, m, k, n)
			checkProduct(t, c, a, m, k, n, func(p, j int) float32 { return b[p*n+j] }, 1e-5)
			MatMulT(c, a, b, m, k, n) // b as w [n×k]
			checkProduct(t, c, a, m, k, n, func(p, j int) float32 { return b[j*k+p] }, 1e-5)
			if t.Failed() {
				t.Fatalf("shape %dx%dx%d", m, k, n)
			}
		}
	})
}

// TestMatMulEdges checks the empty products and that a zero-length reduction
// clears c.
func TestMatMulEdges(t *testing.T) {
	forEachMatLevel(t, func(t *testing.T) {
		MatMul(nil, nil, nil, 0, 5, 3)
		MatMulT(nil, nil, nil, 4, 5, 0)
		for _, m := range []int{1, 9} {
			c := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}[:2*m]
			MatMul(c, nil, nil, m, 0, 2)
			for i, v := range c {
				if v != 0 {
					t.Fatalf("m=%d k=0: c[%d] = %g, want 0", m, i, v)
				}
			}
		}
	})
}

// TestMatMulThreads runs parallel products with more parts than cores and
// checks them against the serial result of the same level: the same bits, but
// for MatMul with few rows, whose parts sum rows of b in buffers of their own.
func TestMatMulThreads(t *testing.T) {
	defer SetThreads(0)
	forEachMatLevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, s := range [][3]int{{70, 300, 500}, {2, 2000, 999}, {40, 64, 3000}} {
			m, k, n := s[0], s[1], s[2]
			a, b := randMat(rng, m*k), randMat(rng, k*n)
			want, got := make([]float32, m*n), make([]float32, m*n)
			for _, trans := range []bool{false, true} {
				SetThreads(1)
				matMul(want, a, b, m, k, n, trans)
				for _, th := range []int{2, 3, 7} {
					SetThreads(th)
					matMul(got, a, b, m, k, n, trans)
					if m <= gemvMaxM && !trans {
						b := func(p, j int) float32 { return b[p*n+j] }
						checkProduct(t, got, a, m, k, n, b, 1e-5)
						continue
					}
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%v threads=%d trans=%v: c[%d] = %g, want %g", s, th, trans, i, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

func TestMatParallel(t *testing.T) {
	defer SetThreads(0)
	for _, th := range []int{1, 2, 5} {
		SetThreads(th)
		for _, n := range []int{0, 1, 3, 10} {
			var hits [10]atomic.Int32
			matParallel(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					hits[i].Add(1)
				}
			})
			for i := range n {
				if hits[i].Load() != 1 {
					t.Fatalf("threads %d n %d: item %d run %d times", th, n, i, hits[i].Load())
				}
			}
		}
		func() {
			defer func() {
				if p := recover(); p != "boom" {
					t.Errorf("threads %d: recovered %v, want boom", th, p)
				}
			}()
			matParallel(4, func(lo, hi int) {
				if hi == 4 {
					panic("boom")
				}
			})
		}()
	}
}

// TestMicroKernels checks every micro-kernel tile height, with and without
// accumulation, against a direct sum.
func TestMicroKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, lv := range matLevels {
		for mr := 1; mr <= lv.mr; mr++ {
			for _, kc := range []int{1, 3, 4, 7, 256} {
				a, b := randMat(rng, kc*lv.mr), randMat(rng, kc*lv.nr)
				ldc := lv.nr + 3
				c := randMat(rng, mr*ldc)
				c0 := append([]float32(nil), c...)
				for _, acc := range []bool{false, true} {
					copy(c, c0)
					lv.micro(mr, kc, a, b, c, ldc, acc)
					for i := range mr {
						for j := range ldc {
							want := float64(c0[i*ldc+j])
							if j < lv.nr {
								if !acc {
									want = 0
								}
								for p := range kc {
									want += float64(a[p*lv.mr+i]) * float64(b[p*lv.nr+j])
								}
							}
							if got := float64(c[i*ldc+j]); math.Abs(got-want) > 1e-5*float64(kc+1) {
								t.Fatalf("%s %dx%d kc=%d acc=%v: c[%d][%d] = %g, want %g", lv.name, mr, lv.nr, kc, acc, i, j, got, want)
							}
						}
					}
				}
			}
		}
	}
}

func TestTranspose8(t *testing.T) {
	for _, lv := range matLevels {
		if lv.transpose8 == nil {
			continue
		}
		const ld, ldd, n = 37, 11, 3
		src := randMat(rand.New(rand.NewPCG(7, 8)), 7*ld+8*n)
		dst := make([]float32, (8*n-1)*ldd+8)
		lv.transpose8(dst, src, ld, ldd, n)
		for r := range 8 {
			for q := range 8 * n {
				if dst[q*ldd+r] != src[r*ld+q] {
					t.Fatalf("%s: dst[%d][%d] = %g, want %g", lv.name, q, r, dst[q*ldd+r], src[r*ld+q])
				}
			}
		}
	}
}

// TestMatMulAllocs checks that serial products allocate nothing once warm.
func TestMatMulAllocs(t *testing.T) {
	if poolDrops() {
		t.Skip("sync.Pool drops items at random (race detector)")
	}
	defer SetThreads(0)
	SetThreads(1)
	rng := rand.New(rand.NewPCG(9, 10))
	a, b := randMat(rng, 64*300), randMat(rng, 300*200)
	c := make([]float32, 64*200)
	w := randPacked(rng, 300, 200, "i16", 4, 128, 3)
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"MatMul64", func() { MatMul(c, a, b, 64, 300, 200) }},
		{"MatMulT64", func() { MatMulT(c, a, b, 64, 300, 200) }},
		{"MatMul1", func() { MatMul(c, a, b, 1, 300, 200) }},
		{"MatMulT3", func() { MatMulT(c, a, b, 3, 300, 200) }},
		{"Packed1", func() { MatMulPacked(c, a, 1, w, false) }},
		{"PackedT2", func() { MatMulPacked(c, a, 2, w, true) }},
		{"Packed64", func() { MatMulPacked(c, a, 64, w, false) }},
	} {
		tc.f()
		if n := testing.AllocsPerRun(10, tc.f); n != 0 {
			t.Errorf("%s: %v allocations per call", tc.name, n)
		}
	}
}

// poolDrops reports whether a sync.Pool loses items put into it, as it does at
// random under the race detector: then scratch buffers are allocated again.
func poolDrops() bool {
	var p sync.Pool
	for range 100 {
		x := new(int)
		p.Put(x)
		if p.Get() != x {
			return true
		}
	}
	return false
}

func ExampleMatMul() {
	a := []float32{1, 2, 3, 4} // 2×2
	b := []float32{5, 6, 7, 8} // 2×2
	c := make([]float32, 4)
	MatMul(c, a, b, 2, 2, 2)
	fmt.Println(c)
	// Output: [19 22 43 50]
}
