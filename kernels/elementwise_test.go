package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// testSizes are the row and vector lengths the tests try: tiny, odd, around the
// vector widths (8 and 16 lanes, 4 and 8 float64 lanes) and large.
var testSizes = []int{1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 100, 1000}

var (
	inf = float32(math.Inf(1))
	nan = float32(math.NaN())
)

// forEachLevel runs f as a subtest once per SIMD level this build and CPU can run,
// with vk (what the exported kernels use) set to that level.
func forEachLevel(t *testing.T, f func(t *testing.T, k *vecKernels)) {
	t.Helper()
	for _, k := range kernelLevels {
		t.Run(k.name, func(t *testing.T) {
			saved := vk
			vk = k
			defer func() { vk = saved }()
			f(t, k)
		})
	}
}

// TestLevels checks that the SIMD levels the CPU has are the ones in use.
func TestLevels(t *testing.T) {
	names := ""
	for _, k := range kernelLevels {
		names += " " + k.name
	}
	t.Logf("levels:%s; in use: %s", names, vk.name)
	if vk != kernelLevels[len(kernelLevels)-1] {
		t.Errorf("in use %s, want the last level", vk.name)
	}
}

// randVec returns n values uniform in [lo, hi).
func randVec(r *rand.Rand, n int, lo, hi float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float32()
	}
	return v
}

// guarded returns a slice of n elements whose backing array goes on past it with
// sentinel values, and a check that the sentinels are intact.
func guarded(n int) ([]float32, func(t *testing.T)) {
	const pad = 17
	b := make([]float32, n+pad)
	for i := n; i < len(b); i++ {
		b[i] = -12345
	}
	return b[:n], func(t *testing.T) {
		t.Helper()
		for i := n; i < len(b); i++ {
			if b[i] != -12345 {
				t.Fatalf("element %d past the end (%d) written: %v", i-n, n, b[i])
			}
		}
	}
}

// ulps is the distance from got to the float64 want in units of the float32
// spacing at want.
func ulps(got float32, want float64) float64 {
	w := float32(want)
	if w == 0 {
		return math.Abs(float64(got)) / 0x1p-149
	}
	spacing := math.Abs(float64(math.Nextafter32(w, inf)) - float64(w))
	if math.IsInf(float64(w), 0) {
		spacing = math.Abs(float64(w) - float64(math.Nextafter32(w, 0)))
	}
	return math.Abs(float64(got)-want) / spacing
}

// same reports whether got and want agree exactly, NaNs included.
func same(got, want float32) bool {
	return got == want || got != got && want != want
}

func TestExp(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		// A dense sweep over the whole range, through expShift with m = 0.
		var x []float32
		for v := float32(-104.5); v < 89; v += 0.000731 {
			x = append(x, v)
		}
		dst := make([]float32, len(x))
		k.expShift(dst, x, 0)
		var worst float64
		for i, v := range x {
			want := math.Exp(float64(v))
			if want < 0x1p-126 { // subnormal result: within a unit of the last place
				if d := math.Abs(float64(dst[i]) - want); d > 0x1p-149 {
					t.Fatalf("exp(%v) = %v, want %v", v, dst[i], want)
				}
				continue
			}
			if float32(want) > math.MaxFloat32 || math.IsInf(float64(float32(want)), 1) {
				if !math.IsInf(float64(dst[i]), 1) {
					t.Fatalf("exp(%v) = %v, want +Inf", v, dst[i])
				}
				continue
			}
			worst = max(worst, ulps(dst[i], want))
		}
		t.Logf("exp: max error %.3f ulp over %d points", worst, len(x))
		if worst > 2 {
			t.Errorf("exp: max error %.3f ulp, want <= 2", worst)
		}

		specials := []struct{ x, want float32 }{
			{float32(math.Inf(-1)), 0}, {inf, inf}, {nan, nan}, {0, 1},
			{-1e30, 0}, {1e30, inf}, {89, inf}, {-104, 0}, {-110, 0},
			{math.MaxFloat32, inf}, {-math.MaxFloat32, 0},
		}
		for _, s := range specials {
			for _, n := range []int{1, 33} { // in a tail and in a full vector
				x := make([]float32, n)
				for i := range x {
					x[i] = s.x
				}
				d := make([]float32, n)
				k.expShift(d, x, 0)
				for i := range d {
					if !same(d[i], s.want) {
						t.Errorf("exp(%v) = %v, want %v", s.x, d[i], s.want)
						break
					}
				}
			}
		}
		if got := k.expShift(dst[:1], []float32{88.72}, 0); math.IsInf(got, 0) || float32(got) != dst[0] {
			t.Errorf("exp(88.72) = %v (sum %v), want finite", dst[0], got)
		}
	})
}

func TestExpShiftSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, n := range append(testSizes, 0, 4, 5, 9) {
			x := randVec(r, n, -20, 5)
			dst, check := guarded(n)
			s := k.expShift(dst, x, 3)
			check(t)
			var want float64
			for i, v := range x {
				want += float64(dst[i])
				if u := ulps(dst[i], math.Exp(float64(v-3))); u > 2 {
					t.Fatalf("n=%d: exp(%v-3) = %v, %.2f ulp off", n, v, dst[i], u)
				}
			}
			if math.Abs(s-want) > 1e-12*max(want, 1) {
				t.Errorf("n=%d: sum %v, want %v", n, s, want)
			}
		}
	})
}

func TestErf(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		// A dense sweep of [-6, 6] and of the small arguments, where the error
		// is also bounded relatively.
		var x []float32
		for v := float32(-6); v <= 6; v += 1.0 / 65536 {
			x = append(x, v)
		}
		for v := float32(1e-38); v < 1; v *= 1.0007 {
			x = append(x, v, -v)
		}
		dst := make([]float32, len(x))
		k.erf(dst, x)
		var worstAbs, worstRel float64
		for i, v := range x {
			want := math.Erf(float64(v))
			e := math.Abs(float64(dst[i]) - want)
			worstAbs = max(worstAbs, e)
			if math.Abs(float64(v)) < erfLim && want != 0 {
				worstRel = max(worstRel, e/math.Abs(want))
			}
		}
		t.Logf("erf: max abs error %.3g, max rel error below %v %.3g, over %d points", worstAbs, erfLim, worstRel, len(x))
		if worstAbs > 2e-7 {
			t.Errorf("erf: max abs error %.3g, want <= 2e-7", worstAbs)
		}
		if worstRel > 4e-7 {
			t.Errorf("erf: max rel error %.3g below %v, want <= 4e-7", worstRel, erfLim)
		}

		neg0 := float32(math.Copysign(0, -1))
		specials := []struct{ x, want float32 }{
			{0, 0}, {neg0, neg0}, {inf, 1}, {-inf, -1}, {nan, nan},
			{1e30, 1}, {-1e30, -1}, {math.MaxFloat32, 1}, {-math.MaxFloat32, -1},
			{4, 1}, {-4, -1}, {10, 1}, {0x1p-149, float32(2 / math.SqrtPi * 0x1p-149)},
		}
		for _, s := range specials {
			for _, n := range []int{1, 33} {
				x := make([]float32, n)
				for i := range x {
					x[i] = s.x
				}
				d := make([]float32, n)
				k.erf(d, x)
				for i := range d {
					if !same(d[i], s.want) || math.Signbit(float64(d[i])) != math.Signbit(float64(s.want)) && s.want == s.want {
						t.Errorf("erf(%v) = %v, want %v", s.x, d[i], s.want)
						break
					}
				}
			}
		}
	})
}

// geluTol is the relative error allowed in GELU at x: the float32 rounding of
// -x²/2 inside the exponential grows with x² in the negative tail.
func geluTol(x float32) float64 { return 1e-6 * (1 + float64(x)*float64(x)/25) }

func TestGelu(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		var x []float32
		for v := float32(-14); v <= 10; v += 1.0 / 16384 {
			x = append(x, v)
		}
		for v := float32(1e-30); v < 1; v *= 1.001 {
			x = append(x, v, -v)
		}
		dst := make([]float32, len(x))
		k.gelu(dst, x)
		want := make([]float32, len(x))
		geluRef(want, x)
		var worst float64
		var at float32
		for i, v := range x {
			w := 0.5 * float64(v) * math.Erfc(-float64(v)/math.Sqrt2) // no cancellation
			e := math.Abs(float64(dst[i]) - w)
			// Where erfc(z)*x/2 is subnormal, its rounding is scaled by x/2.
			if e > geluTol(v)*math.Abs(w)+math.Abs(float64(v))*0x1p-149 {
				t.Fatalf("gelu(%v) = %v, want %v (reference %v)", v, dst[i], w, want[i])
			}
			if math.Abs(w) > 0x1p-126 && e/math.Abs(w) > worst {
				worst, at = e/math.Abs(w), v
			}
		}
		t.Logf("gelu: max rel error %.3g (at %v) over %d points", worst, at, len(x))

		specials := []struct{ x, want float32 }{
			{0, 0}, {inf, inf}, {-inf, nan}, {nan, nan},
			{1e30, 1e30}, {-1e30, 0}, {math.MaxFloat32, math.MaxFloat32}, {-20, 0},
		}
		for _, s := range specials {
			ref := make([]float32, 1)
			geluRef(ref, []float32{s.x})
			if !same(ref[0], s.want) {
				t.Fatalf("geluRef(%v) = %v, test expects %v", s.x, ref[0], s.want)
			}
			for _, n := range []int{1, 33} {
				x := make([]float32, n)
				for i := range x {
					x[i] = s.x
				}
				d := make([]float32, n)
				k.gelu(d, x)
				for i := range d {
					if !same(d[i], s.want) {
						t.Errorf("gelu(%v) = %v, want %v", s.x, d[i], s.want)
						break
					}
				}
			}
		}
	})
}

// TestLevelsAgree checks the assembly against the generic level on a sweep: they
// compute the same algorithm with the same constants, so they agree to within a
// rounding (the generic fused multiply-add rounds through float64).
func TestLevelsAgree(t *testing.T) {
	var x []float32
	for v := float32(-15); v <= 15; v += 0.000377 {
		x = append(x, v)
	}
	want := map[string][]float32{}
	for name, f := range map[string]func(dst, x []float32){
		"erf":  genericKernels.erf,
		"gelu": genericKernels.gelu,
		"exp":  func(dst, x []float32) { genericKernels.expShift(dst, x, 0) },
	} {
		want[name] = make([]float32, len(x))
		f(want[name], x)
	}
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for name, f := range map[string]func(dst, x []float32){
			"erf":  k.erf,
			"gelu": k.gelu,
			"exp":  func(dst, x []float32) { k.expShift(dst, x, 0) },
		} {
			got := make([]float32, len(x))
			f(got, x)
			for i := range x {
				if g, w := got[i], want[name][i]; g != w && ulps(g, float64(w)) > 1 {
					t.Fatalf("%s(%v) = %v, generic %v", name, x[i], g, w)
				}
			}
		}
	})
}

func TestErfGeluSizes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, n := range append(testSizes, 0, 100003) {
			x := randVec(r, n, -8, 8)
			for _, tc := range []struct {
				name     string
				f, ref   func(dst, x []float32)
				abs, rel float64
			}{
				{"Erf", Erf, erfRef, 2e-7, 0},
				// geluRef's 1+erf cancels in float64 below about -5 (it is
				// -0 below -8.3): 1e-15 absolute covers its error there,
				// while TestGelu checks the tail against erfc.
				{"Gelu", Gelu, geluRef, 1e-15, geluTol(8)},
			} {
				want := make([]float32, n)
				tc.ref(want, x)
				dst, check := guarded(n)
				tc.f(dst, x)
				check(t)
				for i := range want {
					if e := math.Abs(float64(dst[i] - want[i])); e > tc.abs+tc.rel*math.Abs(float64(want[i])) {
						t.Fatalf("%s n=%d: [%d] = %v, want %v", tc.name, n, i, dst[i], want[i])
					}
				}
				// In place.
				y := append([]float32(nil), x...)
				tc.f(y, y)
				for i := range y {
					if y[i] != dst[i] {
						t.Fatalf("%s n=%d in place: [%d] = %v, want %v", tc.name, n, i, y[i], dst[i])
					}
				}
			}
		}
	})
}

// softmaxClose reports whether got matches the reference's want.
func softmaxClose(got, want float32) bool {
	if want != want {
		return got != got
	}
	return math.Abs(float64(got-want)) <= 1e-6*math.Abs(float64(want))+1e-37
}

func TestSoftmax(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, rows := range []int{1, 2, 3, 7, 64} {
			for _, cols := range testSizes {
				for _, spread := range []float32{1, 30, 1e4} {
					x := randVec(r, rows*cols, -spread, spread)
					want := append([]float32(nil), x...)
					softmaxRef(want, rows, cols)
					got, check := guarded(rows * cols)
					copy(got, x)
					Softmax(got, rows, cols)
					check(t)
					for i := range got {
						if !softmaxClose(got[i], want[i]) {
							t.Fatalf("%dx%d spread %v: [%d] = %v, want %v", rows, cols, spread, i, got[i], want[i])
						}
					}
				}
			}
		}
	})
}

func TestSoftmaxSpecials(t *testing.T) {
	rows := [][]float32{
		{1, 2, inf, 3},            // +Inf: all NaN
		{-inf, -inf, -inf},        // all -Inf: all NaN
		{1, nan, 2, 3, 4},         // NaN: all NaN
		{-inf, 0, 1, -inf},        // -Inf elements: 0
		{3e38, -3e38, 1e38},       // huge: differences overflow to -Inf, exp 0
		{math.MaxFloat32, 0},      // huge and zero
		{-math.MaxFloat32, -1e38}, // huge negative
		{5},                       // single element: 1
		{1e-40, -1e-40, 0},        // subnormal inputs
	}
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, row := range rows {
			for _, rep := range []int{1, 5} { // the specials in a tail, then in full vectors
				var x []float32
				for range rep {
					x = append(x, row...)
				}
				x = append(x, row...) // so that specials land in a tail too
				want := append([]float32(nil), x...)
				softmaxRef(want, 1, len(x))
				got := append([]float32(nil), x...)
				Softmax(got, 1, len(x))
				for i := range got {
					if !softmaxClose(got[i], want[i]) {
						t.Fatalf("softmax(%v)[%d] = %v, want %v", x, i, got[i], want[i])
					}
				}
			}
		}
	})
}

// TestPrimitives checks the reductions of each level against plain loops, on
// every test size, with specials.
func TestPrimitives(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, n := range append(testSizes, 0, 4, 5, 9, 63, 64, 65) {
			x := randVec(r, n, -100, 100)
			want := float32(math.Inf(-1))
			var sum, sq float64
			for _, v := range x {
				want = max(want, v)
				sum += float64(v)
			}
			mean := sum / float64(max(n, 1))
			for _, v := range x {
				sq += (float64(v) - mean) * (float64(v) - mean)
			}
			if got := k.maxOf(x); got != want {
				t.Errorf("n=%d: maxOf = %v, want %v", n, got, want)
			}
			if n > 0 {
				// The maximum at each position, tails included.
				for i := range x {
					y := append([]float32(nil), x...)
					y[i] = 1000
					if got := k.maxOf(y); got != 1000 {
						t.Fatalf("n=%d: maxOf with 1000 at %d = %v", n, i, got)
					}
				}
			}
			if got := k.sum(x); math.Abs(got-sum) > 1e-12*(1+math.Abs(sum)) {
				t.Errorf("n=%d: sum = %v, want %v", n, got, sum)
			}
			if got := k.sumSqDev(x, mean); math.Abs(got-sq) > 1e-12*(1+sq) {
				t.Errorf("n=%d: sumSqDev = %v, want %v", n, got, sq)
			}
			y, check := guarded(n)
			copy(y, x)
			k.scale(y, 0.25)
			check(t)
			for i := range y {
				if y[i] != x[i]*0.25 {
					t.Fatalf("n=%d: scale [%d] = %v, want %v", n, i, y[i], x[i]*0.25)
				}
			}
		}
		if got := k.maxOf([]float32{-inf, -inf}); got != -inf {
			t.Errorf("maxOf(-Inf, -Inf) = %v", got)
		}
	})
}

func TestAllocs(t *testing.T) {
	x := make([]float32, 4*100)
	scale := make([]float32, 100)
	for i := range scale {
		scale[i] = 1
	}
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"Softmax", func() { Softmax(x, 4, 100) }},
		{"Gelu", func() { Gelu(x, x) }},
		{"Erf", func() { Erf(x, x) }},
		{"LayerNorm", func() { LayerNorm(x, x, scale, nil, 4, 100, 1e-5) }},
	} {
		if a := testing.AllocsPerRun(20, tc.f); a != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tc.name, a)
		}
	}
}

func ExampleSoftmax() {
	x := []float32{1, 2, 3, 0, 0, 0}
	Softmax(x, 2, 3)
	fmt.Printf("%.4f\n", x)
	// Output: [0.0900 0.2447 0.6652 0.3333 0.3333 0.3333]
}
