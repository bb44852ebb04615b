package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkBound fails t unless every element of c reconstructs within tau of w, and
// non-finite values come back bit for bit.
func checkBound(t *testing.T, w []float32, c *Codes, tau float64) {
	t.Helper()
	got := make([]float32, len(w))
	c.Dequantize(got)
	bad := 0
	for i, v := range w {
		x := float64(v)
		if math.IsNaN(x) || math.IsInf(x, 0) {
			if math.Float32bits(got[i]) != math.Float32bits(v) {
				t.Errorf("elem %d: non-finite %08x came back as %08x", i, math.Float32bits(v), math.Float32bits(got[i]))
				bad++
			}
		} else if d := math.Abs(float64(got[i]) - x); !(d <= tau) {
			t.Errorf("elem %d: w=%g w'=%g err=%g > tau=%g", i, v, got[i], d, tau)
			bad++
		}
		if bad > 10 {
			t.FailNow()
		}
	}
}

var taus = []float64{1e-8, 3e-8, 1e-7, 1e-6, 1e-5, 1e-4, 3e-4, 1e-3, 1e-2, 1e-1}

func adversarial(tau float64, r *rand.Rand) []float32 {
	step := 2 * tau
	w := []float32{0, float32(math.Copysign(0, -1)), 1e30, -1e30, math.MaxFloat32, -math.MaxFloat32,
		math.Nextafter32(math.MaxFloat32, 0), math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		1e-40, -1e-39, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00001), math.Float32frombits(0xffa12345), math.Float32frombits(0x7f800001),
		1, -1, 0.5, 16777216, 1 << 40, -(1 << 50)}
	for k := int64(-5); k <= 5; k++ {
		for _, kk := range []int64{k, k * 1000003, k * 123456789} {
			c := float64(kk) * step
			for _, off := range []float64{-tau, tau, 0, -tau * (1 - 1e-12), tau * (1 + 1e-12)} {
				x := c + off
				f := float32(x)
				w = append(w, f, math.Nextafter32(f, float32(math.Inf(1))), math.Nextafter32(f, float32(math.Inf(-1))))
			}
		}
	}
	for range 2000 {
		// values of all magnitudes near the grid's bounds
		e := r.IntN(80) - 40
		x := math.Ldexp(r.Float64()*2-1, e)
		w = append(w, float32(x))
		k := math.Round(x / step)
		w = append(w, float32(k*step+tau), float32(k*step-tau))
	}
	return w
}

func TestQuantizeBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tau := range taus {
		w := adversarial(tau, r)
		for range 5000 {
			w = append(w, float32(r.NormFloat64()*0.02))
		}
		c, err := Quantize(w, tau)
		if err != nil {
			t.Fatal(err)
		}
		checkBound(t, w, c, tau)
		for i := 1; i < len(c.Exceptions); i++ {
			if c.Exceptions[i].Index <= c.Exceptions[i-1].Index {
				t.Fatal("exceptions not sorted")
			}
		}
		// and after an encode / decode round trip
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b, len(w))
		if err != nil {
			t.Fatal(err)
		}
		checkBound(t, w, d, tau)
		t.Logf("tau %g: %d elements, %d exceptions, %d bytes", tau, len(w), len(c.Exceptions), len(b))
	}
}

func TestQuantizeConstantAndEmpty(t *testing.T) {
	for _, v := range []float32{0, 1, -3.25, 1e-7, 12345.678} {
		w := make([]float32, 1000)
		for i := range w {
			w[i] = v
		}
		c, err := Quantize(w, 1e-4)
		if err != nil {
			t.Fatal(err)
		}
		checkBound(t, w, c, 1e-4)
		b, _ := Encode(c)
		if len(b) > 64 {
			t.Errorf("constant tensor %g encodes to %d bytes", v, len(b))
		}
	}
	c, err := Quantize(nil, 1e-3)
	if err != nil || len(c.Q) != 0 {
		t.Fatal(err)
	}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := Decode(b, 0); err != nil || len(d.Q) != 0 {
		t.Fatal(err)
	}
}

func TestQuantizeBadTau(t *testing.T) {
	for _, tau := range []float64{0, -1, math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64} {
		if _, err := Quantize([]float32{1}, tau); err == nil {
			t.Errorf("tau %v accepted", tau)
		}
	}
}

// Every float32 in a dense range around the bound, for a few taus.
func TestQuantizeExhaustiveSlice(t *testing.T) {
	for _, tau := range []float64{1e-8, 1e-3, 0.1} {
		var w []float32
		start := float32(1)
		for range 200000 {
			w = append(w, start, -start)
			start = math.Nextafter32(start, 2)
		}
		c, err := Quantize(w, tau)
		if err != nil {
			t.Fatal(err)
		}
		checkBound(t, w, c, tau)
	}
}

func TestDeltaChain(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 20000
	for _, tau := range taus {
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(r.NormFloat64() * 0.02)
		}
		w[7] = float32(math.NaN())
		prev, err := Quantize(w, tau)
		if err != nil {
			t.Fatal(err)
		}
		checkBound(t, w, prev, tau)
		for step := range 6 {
			next := make([]float32, n)
			for i := range next {
				next[i] = w[i] + float32(r.NormFloat64()*0.002)
			}
			if step == 3 {
				next[100] = float32(math.Inf(-1))
				next[7] = 0.5
			}
			c, err := Quantize(next, tau)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Delta(c, prev)
			if err != nil {
				t.Fatal(err)
			}
			// DeltaOver gives the same delta, in the base's place
			scratch := &Codes{Tau: prev.Tau, Q: slices.Clone(prev.Q)}
			if over, err := DeltaOver(c, scratch); err != nil || over != scratch || !slices.Equal(over.Q, d.Q) || !slices.Equal(over.Exceptions, d.Exceptions) {
				t.Fatalf("DeltaOver differs from Delta (%v)", err)
			}
			// and so does DeltaNarrow, where the base's codes fit in 16 bits
			if nb := NarrowOf(prev); nb != nil {
				nd, err := DeltaNarrow(c, nb)
				if err != nil || !slices.Equal(nd.Q, d.Q) || !slices.Equal(nd.Exceptions, d.Exceptions) {
					t.Fatalf("DeltaNarrow differs from Delta (%v)", err)
				}
				Release(nd)
			} else if !slices.ContainsFunc(prev.Q, func(q int64) bool { return q != int64(int16(q)) }) {
				t.Fatal("NarrowOf refused codes that fit in 16 bits")
			}
			b, err := Encode(d)
			if err != nil {
				t.Fatal(err)
			}
			dd, err := Decode(b, n)
			if err != nil {
				t.Fatal(err)
			}
			rec, err := dd.AddBase(prev)
			if err != nil {
				t.Fatal(err)
			}
			checkBound(t, next, rec, tau)
			w, prev = next, rec
		}
	}
}

func TestDeltaMismatch(t *testing.T) {
	a, _ := Quantize([]float32{1, 2}, 1e-3)
	b, _ := Quantize([]float32{1, 2}, 2e-3)
	c, _ := Quantize([]float32{1}, 1e-3)
	if _, err := Delta(a, b); err == nil {
		t.Error("tau mismatch accepted")
	}
	if _, err := Delta(a, c); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := DeltaOver(a, b); err == nil {
		t.Error("tau mismatch accepted")
	}
	if _, err := DeltaOver(a, c); err == nil {
		t.Error("length mismatch accepted")
	}
	if _, err := DeltaNarrow(a, NarrowOf(b)); err == nil {
		t.Error("tau mismatch accepted")
	}
	if _, err := DeltaNarrow(a, NarrowOf(c)); err == nil {
		t.Error("length mismatch accepted")
	}
	if NarrowOf(&Codes{Tau: 1e-3, Q: []int64{1, math.MaxInt16 + 1}}) != nil || NarrowOf(&Codes{Tau: 1e-3, Q: []int64{math.MinInt16 - 1}}) != nil {
		t.Error("a code past 16 bits narrowed")
	}
	if _, err := a.AddBase(b); err == nil {
		t.Error("tau mismatch accepted")
	}
	bad := &Codes{Tau: 1e-3, Q: []int64{MaxCode, 0}}
	if _, err := bad.AddBase(a); err == nil {
		t.Error("out of range sum accepted")
	}
}

func TestPaperRuleExceedsTau(t *testing.T) {
	const tau = 1e-3
	r := rand.New(rand.NewPCG(5, 6))
	base := make([]float32, 4096)
	w := make([]float32, len(base))
	for i := range base {
		base[i] = float32(r.NormFloat64() * 0.02)
		// deltas spread over 2.2 tau: one bit, scale 2.2 tau, error up to 1.1 tau
		w[i] = base[i] + float32(r.Float64()*2.2*tau)
	}
	blob, err := PaperEncode(w, base, tau)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PaperDecode(blob, base, len(w))
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range w {
		worst = max(worst, math.Abs(float64(got[i])-float64(w[i])))
	}
	if worst <= tau {
		t.Errorf("paper rule stayed within tau (worst %g); the test input should break it", worst)
	}
	t.Logf("paper rule worst error %.3g = %.2f tau", worst, worst/tau)
	c, _ := Quantize(w, tau)
	checkBound(t, w, c, tau)

	// without a base (8-bit base stored inside) it round trips within ~2 tau
	blob, err = PaperEncode(w, nil, tau)
	if err != nil {
		t.Fatal(err)
	}
	got, err = PaperDecode(blob, nil, len(w))
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if d := math.Abs(float64(got[i]) - float64(w[i])); d > 2.01*tau {
			t.Fatalf("paper rule error %g beyond 2 tau", d)
		}
	}
}
