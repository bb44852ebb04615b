package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// convCases is the grid of convolutions the tests compare with conv2DRef.
func convCases() []ConvParams {
	base := func(n, c, h, w, m, k int) ConvParams {
		return ConvParams{N: n, C: c, H: h, W: w, M: m, KH: k, KW: k,
			StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	}
	var cs []ConvParams
	add := func(p ConvParams, edit func(*ConvParams)) {
		edit(&p)
		cs = append(cs, p)
	}
	for _, p := range []ConvParams{base(1, 4, 9, 7, 6, 3), base(2, 6, 8, 8, 4, 3), base(3, 2, 5, 11, 3, 1)} {
		add(p, func(*ConvParams) {})
		add(p, func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 1, 1, 1, 1 })
		add(p, func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 1, 0, 2, 1 }) // asymmetric
		add(p, func(p *ConvParams) { p.StrideH, p.StrideW = 2, 2 })
		add(p, func(p *ConvParams) { p.StrideH, p.StrideW, p.PadT, p.PadL, p.PadB, p.PadR = 2, 1, 0, 2, 1, 0 })
		add(p, func(p *ConvParams) { p.DilH, p.DilW, p.PadT, p.PadL, p.PadB, p.PadR = 2, 2, 2, 2, 2, 2 })
		add(p, func(p *ConvParams) { p.DilH, p.StrideW = 2, 2 })
		if p.C%2 == 0 && p.M%2 == 0 {
			add(p, func(p *ConvParams) { p.Group = 2 })
			add(p, func(p *ConvParams) { p.Group, p.StrideH, p.PadB = 2, 2, 1 })
		}
	}
	// Depthwise (G = C = M), and with a channel multiplier (G = C, M = 2C).
	for _, p := range []ConvParams{base(2, 5, 9, 8, 5, 3), base(1, 8, 16, 16, 8, 5), base(3, 3, 4, 6, 3, 3)} {
		p.Group = p.C
		add(p, func(*ConvParams) {})
		add(p, func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 1, 1, 1, 1 })
		add(p, func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 2, 0, 1, 3 })
		add(p, func(p *ConvParams) { p.StrideH, p.StrideW, p.PadT, p.PadL = 2, 2, 1, 1 })
		add(p, func(p *ConvParams) { p.StrideW, p.DilH, p.DilW, p.PadL, p.PadR = 3, 2, 2, 2, 1 })
		add(p, func(p *ConvParams) { p.M = 2 * p.C })
	}
	// 1×1: direct (stride 1, no padding), strided, padded.
	for _, p := range []ConvParams{base(2, 8, 6, 5, 12, 1), base(1, 3, 1, 1, 2, 1)} {
		add(p, func(*ConvParams) {})
		add(p, func(p *ConvParams) { p.DilH, p.DilW = 2, 3 })
		if p.C%4 == 0 && p.M%4 == 0 {
			add(p, func(p *ConvParams) { p.Group = 4 })
		}
		add(p, func(p *ConvParams) { p.StrideH, p.StrideW = 2, 2 })
		add(p, func(p *ConvParams) { p.PadT, p.PadR = 1, 2 })
	}
	// Kernels larger than the input, reaching it only through padding;
	// rectangular kernels.
	add(base(2, 3, 3, 3, 4, 5), func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 2, 2, 2, 2 })
	add(base(1, 2, 2, 4, 3, 7), func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 3, 4, 2, 3 })
	add(base(1, 2, 2, 2, 2, 3), func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 2, 2, 2, 2; p.Group = 2 })
	add(base(2, 4, 7, 9, 6, 1), func(p *ConvParams) { p.KH, p.KW, p.PadT, p.PadB = 3, 1, 1, 1 })
	add(base(2, 4, 7, 9, 6, 1), func(p *ConvParams) { p.KH, p.KW, p.PadL, p.PadR, p.StrideW = 1, 5, 2, 0, 2 })
	// Large enough to split one product over the threads.
	add(base(1, 16, 20, 20, 32, 3), func(p *ConvParams) { p.PadT, p.PadL, p.PadB, p.PadR = 1, 1, 1, 1 })
	add(base(1, 64, 14, 14, 64, 1), func(*ConvParams) {})
	add(base(2, 32, 12, 12, 32, 3), func(p *ConvParams) { p.Group = 32 })
	return cs
}

// relL2 is |got-want|₂ / |want|₂ (or |got-want|₂ when want is 0).
func relL2(got, want []float32) float64 {
	var d, w float64
	for i := range want {
		e := float64(got[i]) - float64(want[i])
		d += e * e
		w += float64(want[i]) * float64(want[i])
	}
	if w == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / w)
}

func TestConv2D(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	forEachLevel(t, func(t *testing.T, _ *vecKernels) { // the depthwise path uses tapAdd
		testConv2D(t, r)
	})
}

func testConv2D(t *testing.T, r *rand.Rand) {
	for _, th := range []int{1, 3} {
		withThreads(th, func() {
			for _, p := range convCases() {
				oh, ow := p.OutH(), p.OutW()
				x := randVec(r, p.N*p.C*p.H*p.W, -1, 1)
				w := randVec(r, p.M*p.C/p.Group*p.KH*p.KW, -1, 1)
				for _, bias := range [][]float32{nil, randVec(r, p.M, -1, 1)} {
					want := make([]float32, p.N*p.M*oh*ow)
					conv2DRef(want, x, w, bias, p)
					got, check := guarded(len(want))
					for i := range got {
						got[i] = float32(math.NaN()) // every output must be written
					}
					Conv2D(got, x, w, bias, p)
					check(t)
					if e := relL2(got, want); !(e <= 1e-5) {
						t.Errorf("threads %d %+v bias %v: relative L2 error %.3g", th, p, bias != nil, e)
					}
				}
			}
		})
	}
}

func TestConv2DEmpty(t *testing.T) {
	// A kernel that does not fit the padded input: no output at all.
	p := ConvParams{N: 1, C: 1, H: 2, W: 2, M: 1, KH: 5, KW: 5, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	Conv2D(nil, make([]float32, 4), make([]float32, 25), nil, p)
	p.N, p.H, p.W, p.KH, p.KW = 0, 3, 3, 1, 1
	Conv2D(nil, nil, make([]float32, 1), nil, p)
}

func TestConv2DChecks(t *testing.T) {
	ok := ConvParams{N: 1, C: 2, H: 4, W: 4, M: 2, KH: 3, KW: 3, StrideH: 1, StrideW: 1, DilH: 1, DilW: 1, Group: 1}
	for _, tc := range []struct {
		name     string
		edit     func(p *ConvParams)
		x, w, d  int
		panicMsg string
	}{
		{"short input", func(*ConvParams) {}, 31, 36, 8, "input"},
		{"short weights", func(*ConvParams) {}, 32, 35, 8, "weights"},
		{"short output", func(*ConvParams) {}, 32, 36, 7, "output"},
		{"groups", func(p *ConvParams) { p.Group = 3 }, 32, 36, 8, "groups"},
		{"stride", func(p *ConvParams) { p.StrideW = 0 }, 32, 36, 8, "strides"},
	} {
		p := ok
		tc.edit(&p)
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), tc.panicMsg) {
					t.Errorf("%s: recovered %v, want a panic about %s", tc.name, r, tc.panicMsg)
				}
			}()
			Conv2D(make([]float32, tc.d), make([]float32, tc.x), make([]float32, tc.w), nil, p)
		}()
	}
}

func TestValidRange(t *testing.T) {
	for off := -9; off <= 9; off++ {
		for stride := 1; stride <= 3; stride++ {
			for size := 0; size <= 6; size++ {
				for n := 0; n <= 8; n++ {
					lo, hi := validRange(off, stride, size, n)
					for o := range n {
						in := o*stride+off >= 0 && o*stride+off < size
						if in != (o >= lo && o < hi) {
							t.Fatalf("validRange(%d, %d, %d, %d) = [%d, %d): wrong at %d", off, stride, size, n, lo, hi, o)
						}
					}
					if lo > hi {
						t.Fatalf("validRange(%d, %d, %d, %d) = [%d, %d)", off, stride, size, n, lo, hi)
					}
				}
			}
		}
	}
}

func TestTapAdd(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	forEachLevel(t, func(t *testing.T, k *vecKernels) {
		for _, cols := range append(testSizes, 0) {
			for _, rows := range []int{0, 1, 2, 5} {
				outStride, inStride := cols+3, 2*cols+1
				n := max(0, (rows-1)*outStride+cols)
				in := randVec(r, max(0, (rows-1)*inStride+cols), -1, 1)
				out, check := guarded(n)
				for i := range out {
					out[i] = float32(i)
				}
				want := append([]float32(nil), out...)
				tapAddGeneric(want, in, 0.75, rows, cols, outStride, inStride)
				k.tapAdd(out, in, 0.75, rows, cols, outStride, inStride)
				check(t)
				for i := range out {
					if math.Abs(float64(out[i]-want[i])) > 1e-6*math.Abs(float64(want[i])) {
						t.Fatalf("rows %d cols %d: [%d] = %v, want %v", rows, cols, i, out[i], want[i])
					}
				}
			}
		}
	})
}
