package kernels

import (
	"math/rand/v2"
	"testing"
)

// Benchmarks of softmax, GELU, layer norm and convolution: "ref" is the pure-Go
// reference, the others the exported kernel at each SIMD level (at the default
// Threads()).

// benchLevels runs f as a sub-benchmark per SIMD level, after one for ref.
func benchLevels(b *testing.B, ref, f func()) {
	b.Run("ref", func(b *testing.B) {
		for b.Loop() {
			ref()
		}
	})
	for _, k := range kernelLevels {
		b.Run(k.name, func(b *testing.B) {
			saved := vk
			vk = k
			defer func() { vk = saved }()
			for b.Loop() {
				f()
			}
		})
	}
}

func BenchmarkSoftmax64x1000(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	x := randVec(r, 64*1000, -10, 10)
	b.SetBytes(int64(4 * len(x)))
	benchLevels(b, func() { softmaxRef(x, 64, 1000) }, func() { Softmax(x, 64, 1000) })
}

func BenchmarkGelu1M(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randVec(r, 1<<20, -6, 6)
	dst := make([]float32, len(x))
	b.SetBytes(int64(4 * len(x)))
	benchLevels(b, func() { geluRef(dst, x) }, func() { Gelu(dst, x) })
}

func BenchmarkErf1M(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 3))
	x := randVec(r, 1<<20, -4, 4)
	dst := make([]float32, len(x))
	b.SetBytes(int64(4 * len(x)))
	benchLevels(b, func() { erfRef(dst, x) }, func() { Erf(dst, x) })
}

func BenchmarkLayerNorm64x768(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 4))
	x := randVec(r, 64*768, -3, 3)
	scale, bias := randVec(r, 768, 0, 2), randVec(r, 768, -1, 1)
	dst := make([]float32, len(x))
	b.SetBytes(int64(4 * len(x)))
	benchLevels(b,
		func() { layerNormRef(dst, x, scale, bias, 64, 768, 1e-5) },
		func() { LayerNorm(dst, x, scale, bias, 64, 768, 1e-5) })
}

// benchConv compares Conv2D with conv2DRef (the SIMD level does not matter to it).
func benchConv(b *testing.B, p ConvParams) {
	r := rand.New(rand.NewPCG(1, 5))
	x := randVec(r, p.N*p.C*p.H*p.W, -1, 1)
	w := randVec(r, p.M*p.C/p.Group*p.KH*p.KW, -1, 1)
	bias := randVec(r, p.M, -1, 1)
	dst := make([]float32, p.N*p.M*p.OutH()*p.OutW())
	b.Run("ref", func(b *testing.B) {
		for b.Loop() {
			conv2DRef(dst, x, w, bias, p)
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			Conv2D(dst, x, w, bias, p)
		}
	})
}

func BenchmarkConv2D1x64x56x56K3(b *testing.B) {
	benchConv(b, ConvParams{N: 1, C: 64, H: 56, W: 56, M: 64, KH: 3, KW: 3,
		StrideH: 1, StrideW: 1, PadT: 1, PadL: 1, PadB: 1, PadR: 1, DilH: 1, DilW: 1, Group: 1})
}

func BenchmarkConv2DDepthwise8x32x16x16K3(b *testing.B) {
	benchConv(b, ConvParams{N: 8, C: 32, H: 16, W: 16, M: 32, KH: 3, KW: 3,
		StrideH: 1, StrideW: 1, PadT: 1, PadL: 1, PadB: 1, PadR: 1, DilH: 1, DilW: 1, Group: 32})
}
