package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var targets = []Target{TargetF32, TargetF16, TargetBF16}

// checkBoundFor fails t unless every element of c, reconstructed for tg and then
// written as tg and read back the way the store does, is within tau of w, and
// exceptions (NaN and Inf among them) come back bit for bit. It returns the
// number of exceptions.
func checkBoundFor(t testing.TB, w []float32, c *Codes, tau float64, tg Target) int {
	t.Helper()
	if len(c.Q) != len(w) {
		t.Fatalf("%v: %d codes for %d values", tg, len(c.Q), len(w))
	}
	got := make([]float32, len(w))
	c.DequantizeFor(got, tg)
	buf := make([]byte, tg.Size()*len(w))
	tg.Encode(buf, got)
	final := make([]float32, len(w))
	tg.Decode(final, buf)
	isExc := make([]bool, len(w))
	for k, e := range c.Exceptions {
		if k > 0 && e.Index <= c.Exceptions[k-1].Index {
			t.Fatalf("%v: exceptions not sorted", tg)
		}
		isExc[e.Index] = true
		if e.Bits != math.Float32bits(w[e.Index]) {
			t.Fatalf("%v elem %d: exception bits %08x, input %08x", tg, e.Index, e.Bits, math.Float32bits(w[e.Index]))
		}
	}
	bad := 0
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		if bad++; bad > 10 {
			t.FailNow()
		}
	}
	for i, v := range w {
		x := float64(v)
		gb, fb, vb := math.Float32bits(got[i]), math.Float32bits(final[i]), math.Float32bits(v)
		switch {
		case math.IsNaN(x) || math.IsInf(x, 0):
			if !isExc[i] || gb != vb {
				fail("%v elem %d: non-finite %08x came back as %08x", tg, i, vb, gb)
			}
			// written as tg: Inf and (for f32, f16, quiet bf16) NaN bit for bit;
			// a signaling bf16 NaN is quieted by the conversion
			want := vb
			if tg == TargetBF16 && math.IsNaN(x) {
				want |= 0x400000
			}
			if fb != want {
				fail("%v elem %d: non-finite %08x stored as %08x", tg, i, vb, fb)
			}
		case !isExc[i] && gb != fb:
			fail("%v elem %d: reconstruction %08x not a %v value (%08x)", tg, i, gb, tg, fb)
		default:
			if d := math.Abs(float64(final[i]) - x); !(d <= tau) {
				fail("%v elem %d (exception %v): w=%g (%08x) w'=%g (%08x) err=%g > tau=%g",
					tg, i, isExc[i], v, vb, final[i], fb, d, tau)
			}
		}
	}
	return len(c.Exceptions)
}

// next16 returns the 16-bit float pattern next to h (sign-magnitude order).
func next16(h uint16, up bool) uint16 {
	k := int(h & 0x7fff)
	if h&0x8000 != 0 {
		k = -k
	}
	if up {
		k++
	} else {
		k--
	}
	if k < 0 {
		return 0x8000 | uint16(-k)
	}
	return uint16(k)
}

// neighbours returns v and the values of tg on either side of it (v must be a
// value of tg).
func neighbours(tg Target, v float32) []float32 {
	switch tg {
	case TargetF16:
		h := F32ToF16(v)
		return []float32{v, F16ToF32(next16(h, true)), F16ToF32(next16(h, false))}
	case TargetBF16:
		h := F32ToBF16(v)
		return []float32{v, BF16ToF32(next16(h, true)), BF16ToF32(next16(h, false))}
	}
	return []float32{v, math.Nextafter32(v, float32(math.Inf(1))), math.Nextafter32(v, float32(math.Inf(-1)))}
}

// limits returns the extreme values of tg and the special values.
func limits(tg Target) []float32 {
	w := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00000), math.Float32frombits(0xffc00000), 1, -1, 0.5, 2, 1e-3, -1e-3}
	switch tg {
	case TargetF32:
		w = append(w, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
			0x1p-126, math.Nextafter32(0x1p-126, 0), 1e30, -1e-39, 16777216, 1<<40, -(1 << 50),
			math.Float32frombits(0x7f800001), math.Float32frombits(0xffa12345), math.Float32frombits(0x7fc00001))
	case TargetF16:
		for _, h := range []uint16{0x7bff, 0x7bfe, 0x0001, 0x0002, 0x03ff, 0x0400, 0x0401, 0x3bff, 0x3c01,
			0x7c01, 0x7e00, 0x7dff, 0xfc01, 0xfe00, 0x7fff} {
			w = append(w, F16ToF32(h), F16ToF32(h^0x8000))
		}
	case TargetBF16:
		for _, h := range []uint16{0x7f7f, 0x7f7e, 0x0001, 0x0002, 0x007f, 0x0080, 0x0081, 0x3f7f, 0x3f81,
			0x7fc0, 0x7fc1, 0x7fff, 0x7f81, 0x7fbf} {
			w = append(w, BF16ToF32(h), BF16ToF32(h^0x8000))
		}
	}
	return w
}

// targetInput builds an adversarial tensor for tg and tau from r: every value is
// a value of tg.
func targetInput(r *rand.Rand, tg Target, tau float64) []float32 {
	step := 2 * tau
	var w []float32
	add := func(v float32) { w = append(w, tg.Round(v)) }
	for _, v := range limits(tg) {
		add(v)
	}
	// grid half-way points at several magnitudes, rounded to tg, and their neighbours
	for k := int64(-4); k <= 4; k++ {
		for _, kk := range []int64{k, k * 1000003, k * 123456789, k << 40} {
			c := float64(kk) * step
			for _, off := range []float64{-tau, tau, 0, -tau * (1 - 1e-7), tau * (1 + 1e-7)} {
				v := tg.Round(float32(c + off))
				w = append(w, neighbours(tg, v)...)
			}
		}
	}
	for range 600 {
		// values of all magnitudes near the grid's bounds
		x := math.Ldexp(r.Float64()*2-1, r.IntN(80)-40)
		add(float32(x))
		k := math.Round(x / step)
		for _, v := range []float64{k*step + tau, k*step - tau} {
			w = append(w, neighbours(tg, tg.Round(float32(v)))...)
		}
	}
	// realistic weights
	for range 1500 {
		add(float32(r.NormFloat64() * 0.02))
	}
	// outliers among tiny values
	for i := range 500 {
		if i%50 == 0 {
			add(float32(r.NormFloat64() * 1e4))
		} else {
			add(float32(r.NormFloat64() * 1e-6))
		}
	}
	// subnormals of tg
	for range 200 {
		switch tg {
		case TargetF16:
			w = append(w, F16ToF32(uint16(r.IntN(0x400))|uint16(r.IntN(2))<<15))
		case TargetBF16:
			w = append(w, BF16ToF32(uint16(r.IntN(0x80))|uint16(r.IntN(2))<<15))
		default:
			w = append(w, math.Float32frombits(r.Uint32()&0x807fffff))
		}
	}
	// random bit patterns of tg: every exponent, NaNs and Infs included
	for range 500 {
		switch tg {
		case TargetF16:
			w = append(w, F16ToF32(uint16(r.Uint32())))
		case TargetBF16:
			w = append(w, BF16ToF32(uint16(r.Uint32())))
		default:
			w = append(w, math.Float32frombits(r.Uint32()))
		}
	}
	return w
}

// targetTaus are taus around the ulps of tg, plus the general ones.
func targetTaus(tg Target) []float64 {
	out := []float64{1e-30, 1e-12, 1e-8, 1e-5, 1e-4, 3e-4, 1e-3, 0.1, 10, 1e4, 1e30, 5e307}
	var exps []int
	switch tg {
	case TargetF16:
		exps = []int{-25, -24, -20, -14, -11, -10, -6, 0, 5, 10, 15}
	case TargetBF16:
		exps = []int{-134, -133, -126, -100, -20, -14, -8, 0, 20, 100, 127}
	default:
		exps = []int{-150, -149, -126, -24, -23, 0, 23}
	}
	for _, e := range exps {
		for _, f := range []float64{0.5, 1, 0.49, 0.51, 0.75, math.Sqrt2 / 2, 1.5} {
			out = append(out, math.Ldexp(f, e))
		}
	}
	return out
}

func TestQuantizeForBound(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, tg := range targets {
		for _, tau := range targetTaus(tg) {
			w := targetInput(r, tg, tau)
			c, err := QuantizeFor(w, tau, tg)
			if err != nil {
				t.Fatal(err)
			}
			nexc := checkBoundFor(t, w, c, tau, tg)
			// and after an encode / decode round trip
			b, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Decode(b, len(w))
			if err != nil {
				t.Fatal(err)
			}
			checkBoundFor(t, w, d, tau, tg)
			if testing.Verbose() && (tau == 1e-4 || tau == 1e-3) {
				t.Logf("%-4v tau %-8g %d elements, %d exceptions", tg, tau, len(w), nexc)
			}
		}
	}
}

// Constant tensors, and tensors of one special value, for every target.
func TestQuantizeForConstant(t *testing.T) {
	for _, tg := range targets {
		for _, v := range limits(tg) {
			for _, tau := range []float64{1e-30, 1e-4, 0.3, 1e30} {
				w := make([]float32, 300)
				for i := range w {
					w[i] = tg.Round(v)
				}
				c, err := QuantizeFor(w, tau, tg)
				if err != nil {
					t.Fatal(err)
				}
				checkBoundFor(t, w, c, tau, tg)
			}
		}
		c, err := QuantizeFor(nil, 1e-3, tg)
		if err != nil || len(c.Q) != 0 {
			t.Fatal(tg, err)
		}
	}
}

// Random mixtures of every kind of value with random taus, many times over.
func TestQuantizeForProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	iters := 400
	if testing.Short() {
		iters = 50
	}
	for it := range iters {
		tg := targets[it%3]
		var tau float64
		switch r.IntN(3) {
		case 0: // log-uniform over the whole range
			tau = math.Pow(10, r.Float64()*60-30)
		case 1: // near an ulp of tg
			ts := targetTaus(tg)
			tau = ts[r.IntN(len(ts))] * (1 + (r.Float64()-0.5)*1e-3)
		default:
			tau = math.Pow(10, -1-r.Float64()*5)
		}
		n := 1 + r.IntN(3000)
		w := make([]float32, n)
		lim := limits(tg)
		scale := math.Pow(10, r.Float64()*12-9)
		for i := range w {
			var v float32
			switch r.IntN(8) {
			case 0:
				v = lim[r.IntN(len(lim))]
			case 1:
				v = float32(r.NormFloat64() * scale * 1e4)
			case 2:
				v = float32(math.Round(r.NormFloat64()*4) * 2 * tau) // on the grid
			case 3:
				v = float32((math.Round(r.NormFloat64()*4) + 0.5) * 2 * tau) // half way
			case 4:
				v = math.Float32frombits(r.Uint32())
			default:
				v = float32(r.NormFloat64() * scale)
			}
			w[i] = tg.Round(v)
		}
		c, err := QuantizeFor(w, tau, tg)
		if err != nil {
			t.Fatal(err)
		}
		checkBoundFor(t, w, c, tau, tg)
	}
}

// With tau a power of two, rounding to the target never forces an exception
// (below the largest finite value less tau): where 2 tau >= the target's ulp the
// grid points near w are values of the target, and where it is smaller w's
// rounding interval holds the nearest one.
func TestQuantizeForPowerOfTwoTau(t *testing.T) {
	r := rand.New(rand.NewPCG(39, 40))
	for _, tg := range targets {
		// a grid point past the largest finite value rounds to Inf
		maxFinite := map[Target]float64{TargetF32: math.MaxFloat32, TargetF16: 65504, TargetBF16: float64(BF16ToF32(0x7f7f))}[tg]
		for k := -150; k <= 120; k += 3 {
			tau := math.Ldexp(1, k)
			w := make([]float32, 2000)
			for i := range w {
				var v float32
				switch tg {
				case TargetF16:
					v = F16ToF32(uint16(r.Uint32()))
				case TargetBF16:
					v = BF16ToF32(uint16(r.Uint32()))
				default:
					v = math.Float32frombits(r.Uint32())
				}
				w[i] = v
			}
			c, err := QuantizeFor(w, tau, tg)
			if err != nil {
				t.Fatal(err)
			}
			checkBoundFor(t, w, c, tau, tg)
			for _, e := range c.Exceptions {
				x := float64(w[e.Index])
				if !math.IsNaN(x) && !math.IsInf(x, 0) && math.Abs(x)/(2*tau) < MaxCode/2 && math.Abs(x)+tau < maxFinite {
					t.Fatalf("%v tau 2^%d: %g (%08x) is an exception", tg, k, x, math.Float32bits(w[e.Index]))
				}
			}
		}
	}
}

func TestQuantizeForMatchesQuantize(t *testing.T) {
	r := rand.New(rand.NewPCG(35, 36))
	for _, tau := range taus {
		w := adversarial(tau, r)
		a, err := Quantize(w, tau)
		if err != nil {
			t.Fatal(err)
		}
		b, err := QuantizeFor(w, tau, TargetF32)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a.Q, b.Q) || !slices.Equal(a.Exceptions, b.Exceptions) || a.Tau != b.Tau {
			t.Fatalf("tau %g: QuantizeFor(f32) differs from Quantize", tau)
		}
		x, y := make([]float32, len(w)), make([]float32, len(w))
		a.Dequantize(x)
		a.DequantizeFor(y, TargetF32)
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatal("DequantizeFor(f32) differs from Dequantize")
			}
		}
	}
}

// The grid elements meet the bound even for inputs the target cannot represent;
// only exceptions keep the unrepresentable input bits.
func TestQuantizeForUnrepresentable(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 38))
	for _, tg := range []Target{TargetF16, TargetBF16} {
		for _, tau := range []float64{1e-5, 1e-4, 1e-3, 0.1} {
			w := make([]float32, 20000)
			for i := range w {
				w[i] = float32(r.NormFloat64() * 0.02)
			}
			c, err := QuantizeFor(w, tau, tg)
			if err != nil {
				t.Fatal(err)
			}
			got := make([]float32, len(w))
			c.DequantizeFor(got, tg)
			for _, e := range c.Exceptions {
				got[e.Index] = w[e.Index]
			}
			for i := range w {
				final := tg.Round(got[i])
				if d := math.Abs(float64(final) - float64(w[i])); d > tau && !isException(c.Exceptions, i) {
					t.Fatalf("%v tau %g elem %d: err %g", tg, tau, i, d)
				}
			}
		}
	}
}

// Realistic weights stored as f16 / bf16: the bound after rounding costs few
// exceptions, and the delta chain keeps it.
func TestQuantizeForFineTune(t *testing.T) {
	const n = 1 << 16
	for _, tg := range targets {
		for _, tau := range []float64{1e-5, 3e-5, 6.1e-5, 1e-4, 1e-3, 0x1p-17, 0x1p-15, 0x1p-14, 0x1p-13, 0x1p-10} {
			base, ft := fineTunePair(n, 7)
			for i := range base {
				base[i], ft[i] = tg.Round(base[i]), tg.Round(ft[i])
			}
			cb, err := QuantizeFor(base, tau, tg)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := QuantizeFor(ft, tau, tg)
			if err != nil {
				t.Fatal(err)
			}
			checkBoundFor(t, base, cb, tau, tg)
			checkBoundFor(t, ft, cf, tau, tg)
			d, err := Delta(cf, cb)
			if err != nil {
				t.Fatal(err)
			}
			blob, err := Encode(d)
			if err != nil {
				t.Fatal(err)
			}
			dd, err := Decode(blob, n)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := dd.AddBase(cb)
			if err != nil {
				t.Fatal(err)
			}
			checkBoundFor(t, ft, rec, tau, tg)
			// With a power-of-two tau the grid points near w are values of tg
			// (2 tau >= ulp) or w's rounding interval holds the nearest one
			// (2 tau < ulp): no exceptions. Otherwise about ulp/tau of the
			// elements sit where neither neighbouring code survives the rounding.
			nexc := len(cb.Exceptions) + len(cf.Exceptions)
			if _, e := math.Frexp(tau); tau == math.Ldexp(0.5, e) && nexc > 0 {
				t.Errorf("%v tau %g (a power of two): %d exceptions", tg, tau, nexc)
			}
			t.Logf("%-4v tau %-22v exceptions base %5d ft %5d (%5.2f%%), delta %.3f bytes/elem",
				tg, tau, len(cb.Exceptions), len(cf.Exceptions), 100*float64(nexc)/(2*n), float64(len(blob))/n)
		}
	}
}

func TestQuantizeForBadArgs(t *testing.T) {
	if _, err := QuantizeFor([]float32{1}, 1e-3, Target(3)); err == nil {
		t.Error("unknown target accepted")
	}
	for _, tg := range targets {
		for _, tau := range []float64{0, -1, math.NaN(), math.Inf(1), math.MaxFloat64} {
			if _, err := QuantizeFor([]float32{1}, tau, tg); err == nil {
				t.Errorf("%v: tau %v accepted", tg, tau)
			}
		}
	}
	if Target(3).Valid() || Target(3).Size() != 0 || Target(3).String() != "Target(3)" || !TargetBF16.Valid() {
		t.Error("unknown target's methods")
	}
	defer func() {
		if recover() == nil {
			t.Error("DequantizeFor with an unknown target did not panic")
		}
	}()
	(&Codes{Tau: 1, Q: []int64{1}}).DequantizeFor(make([]float32, 1), Target(9))
}

func fuzzSeedsQuantizeFor() [][]byte {
	var seeds [][]byte
	for _, tg := range targets {
		r := rand.New(rand.NewPCG(uint64(tg), 1))
		w := targetInput(r, tg, 1e-3)[:200]
		b := make([]byte, tg.Size()*len(w))
		tg.Encode(b, w)
		seeds = append(seeds, b)
	}
	return seeds
}

func FuzzQuantizeFor(f *testing.F) {
	for i, s := range fuzzSeedsQuantizeFor() {
		for _, tau := range []float64{1e-3, 0x1p-12, 1e-30, 1e30} {
			f.Add(s, tau, uint8(i))
		}
	}
	f.Add([]byte{}, 1.0, uint8(0))
	f.Add([]byte{0, 0x7c, 0xff, 0x7b, 1, 0}, 0x1p-25, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, tau float64, target uint8) {
		tg := Target(target % 3)
		// the bytes are elements of tg, so every value is exact in tg
		w := make([]float32, len(b)/tg.Size())
		tg.Decode(w, b)
		c, err := QuantizeFor(w, tau, tg)
		if checkTau(tau) != nil {
			if err == nil {
				t.Fatalf("tau %v accepted", tau)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkBoundFor(t, w, c, tau, tg)
		// an array given back dirty must not leak into the next codes
		q := slices.Clone(c.Q)
		dirty(c)
		again, err := QuantizeFor(w, tau, tg)
		if err != nil || !slices.Equal(again.Q, q) {
			t.Fatalf("quantized again from a released array: %v", err)
		}
	})
}

// dirty fills c's codes with garbage and gives the array back (Release), so that
// the next Quantize or Decode is likely to get it.
func dirty(c *Codes) {
	for i := range c.Q {
		c.Q[i] = 0x5a5a5a5a5a5a
	}
	Release(c)
}

func BenchmarkQuantizeFor(b *testing.B) {
	_, ft := fineTunePair(benchN, 1)
	for _, tg := range targets {
		w := make([]float32, len(ft))
		for i, v := range ft {
			w[i] = tg.Round(v)
		}
		for _, tau := range []float64{1e-4, 1e-3} {
			b.Run(tg.String()+"/"+tauName(tau), func(b *testing.B) {
				b.SetBytes(4 * benchN)
				for b.Loop() {
					if _, err := QuantizeFor(w, tau, tg); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkDequantizeFor(b *testing.B) {
	_, ft := fineTunePair(benchN, 1)
	c, _ := Quantize(ft, 1e-4)
	dst := make([]float32, benchN)
	for _, tg := range targets {
		b.Run(tg.String(), func(b *testing.B) {
			b.SetBytes(4 * benchN)
			for b.Loop() {
				c.DequantizeFor(dst, tg)
			}
		})
	}
}
