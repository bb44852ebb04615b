package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestLayerNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, rows := range []int{1, 2, 3, 7, 64} {
			for _, cols := range testSizes {
				// Offsets far above the spread test the cancellation in the
				// deviations.
				for _, offset := range []float32{0, 1000, -3e5} {
					for _, withBias := range []bool{false, true} {
						x := randVec(r, rows*cols, offset-2, offset+2)
						scale := randVec(r, cols, -2, 2)
						var bias []float32
						if withBias {
							bias = randVec(r, cols, -1, 1)
						}
						want := make([]float32, rows*cols)
						layerNormRef(want, x, scale, bias, rows, cols, 1e-5)
						got, check := guarded(rows * cols)
						LayerNorm(got, x, scale, bias, rows, cols, 1e-5)
						check(t)
						for i := range got {
							tol := 1e-6 * math.Abs(float64(want[i]))
							if bias != nil {
								tol += 1e-6 * math.Abs(float64(bias[i%cols]))
							}
							if math.Abs(float64(got[i]-want[i])) > tol+1e-30 {
								t.Fatalf("%dx%d offset %v bias %v: [%d] = %v, want %v",
									rows, cols, offset, withBias, i, got[i], want[i])
							}
						}
						// In place.
						LayerNorm(x, x, scale, bias, rows, cols, 1e-5)
						for i := range x {
							if x[i] != got[i] {
								t.Fatalf("%dx%d in place: [%d] = %v, want %v", rows, cols, i, x[i], got[i])
							}
						}
					}
				}
			}
		}
	})
}

func TestLayerNormSpecials(t *testing.T) {
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, x := range [][]float32{
			{5, 5, 5, 5, 5},           // zero variance: (x-mean) = 0
			{1, nan, 2},               // NaN: all NaN
			{1, inf, 2, 3},            // Inf: NaN or Inf as the reference
			{3e38, -3e38, 3e38, 1e31}, // huge values, summed exactly in float64 in any order
		} {
			cols := len(x)
			scale := make([]float32, cols)
			for i := range scale {
				scale[i] = 1.5
			}
			want := make([]float32, cols)
			layerNormRef(want, x, scale, nil, 1, cols, 1e-3)
			got := make([]float32, cols)
			LayerNorm(got, x, scale, nil, 1, cols, 1e-3)
			for i := range got {
				if !same(got[i], want[i]) && math.Abs(float64(got[i]-want[i])) > 1e-6*math.Abs(float64(want[i])) {
					t.Errorf("layernorm(%v)[%d] = %v, want %v", x, i, got[i], want[i])
				}
			}
		}
	})
}
