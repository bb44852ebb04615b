package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The difference mode round-trips any bytes for every element size and length
// (including a tail that is not a whole element), and beats XOR on close floats.
func TestLosslessDiffRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, es := range []int{1, 2, 4} {
		for _, n := range []int{0, 1, 3, 4, 5, 17, 1000, 70001} {
			w, b := make([]byte, n), make([]byte, n)
			for i := range w {
				w[i], b[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			if n > 8 { // some equal elements and wrap-arounds
				copy(b[:4], w[:4])
				w[4], b[4] = 0xff, 0x00
			}
			enc, err := LosslessEncodeDiff(w, b, es)
			if err != nil {
				t.Fatal(err)
			}
			got, err := LosslessDecode(enc, b, n)
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("es %d n %d: round trip failed (%v)", es, n, err)
			}
		}
	}
	if _, err := LosslessEncodeDiff([]byte{1}, nil, 1); err == nil {
		t.Fatal("a difference without a base was accepted")
	}
	// close floats: a base and a fine-tune
	n := 1 << 16
	w, b := make([]byte, 4*n), make([]byte, 4*n)
	for i := 0; i < n; i++ {
		x := r.NormFloat64() * 0.02
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x)))
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(float32(x+r.NormFloat64()*2e-4)))
	}
	d, _ := LosslessEncodeDiff(w, b, 4)
	x, _ := LosslessEncode(w, b, 4)
	t.Logf("difference %d bytes, XOR %d bytes, raw %d", len(d), len(x), len(w))
	if len(d) >= len(x) {
		t.Errorf("difference (%d bytes) is not smaller than XOR (%d)", len(d), len(x))
	}
}

// fineTuneBytes returns n float32 elements of a base (normal, with a few rows of
// ten times the spread) and of a fine-tune of it that moves every element.
func fineTuneBytes(seed uint64, n int) (w, base []byte) {
	r := rand.New(rand.NewPCG(seed, 3))
	w, base = make([]byte, 4*n), make([]byte, 4*n)
	for i := range n {
		s := 0.02
		if i/1000%7 == 0 {
			s = 0.2
		}
		b := float32(r.NormFloat64() * s)
		binary.LittleEndian.PutUint32(base[4*i:], math.Float32bits(b))
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(b+float32(r.NormFloat64()*0.002)))
	}
	return w, base
}

func TestLosslessDiffClasses(t *testing.T) {
	w, base := fineTuneBytes(1, 100_003)
	w = append(w, 7, 8, 9) // a tail past the last whole element
	base = append(base, 1, 2, 3)
	b, err := LosslessEncodeDiff(w, base, 4)
	if err != nil {
		t.Fatal(err)
	}
	if b[2] != modeClass {
		t.Fatalf("mode %d, want %d (classes)", b[2], modeClass)
	}
	flat, _ := losslessEncode(w, base, 4, modeSub)
	if len(b) >= len(flat) {
		t.Errorf("classes %d bytes, one class %d: want smaller", len(b), len(flat))
	}
	t.Logf("classes %d bytes, one class %d (%.2f%%)", len(b), len(flat), 100*(1-float64(len(b))/float64(len(flat))))
	got, err := LosslessDecode(b, base, len(w))
	if err != nil || !bytes.Equal(got, w) {
		t.Fatalf("round trip: %v", err)
	}
	// 2-byte elements and bytes that are not floats at all
	r := rand.New(rand.NewPCG(2, 3))
	for _, es := range []int{2, 4} {
		x, y := make([]byte, es*20000), make([]byte, es*20000)
		for i := range x {
			x[i], y[i] = byte(r.IntN(256)), byte(r.IntN(4))
		}
		b, err := LosslessEncodeDiff(x, y, es)
		if err != nil || b[2] != modeClass {
			t.Fatalf("es %d: mode %d, %v", es, b[2], err)
		}
		if got, err := LosslessDecode(b, y, len(x)); err != nil || !bytes.Equal(got, x) {
			t.Fatalf("es %d: round trip: %v", es, err)
		}
	}
	// small inputs and 1-byte elements keep one class
	if b, _ := LosslessEncodeDiff(w[:4000], base[:4000], 4); b[2] != modeSub {
		t.Errorf("1000 elements: mode %d, want %d", b[2], modeSub)
	}
	if b, _ := LosslessEncodeDiff(w[:40000], base[:40000], 1); b[2] != modeSub {
		t.Errorf("1-byte elements: mode %d, want %d", b[2], modeSub)
	}
}

func TestLosslessDiffClassesCorrupt(t *testing.T) {
	w, base := fineTuneBytes(3, 20000)
	b, _ := LosslessEncodeDiff(w, base, 4)
	for cut := 0; cut < len(b); cut += 1 + cut/4 {
		if _, err := LosslessDecode(b[:cut], base, len(w)); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded", cut, len(b))
		}
	}
	if _, err := LosslessDecode(b, base[:len(base)-4], len(w)); err == nil {
		t.Error("a shorter base was accepted")
	}
	one := slices.Clone(b)
	one[1] = 1 // mode 3 needs elements of 2 or 4 bytes
	if _, err := LosslessDecode(one, base, len(w)); err == nil {
		t.Error("mode 3 with 1-byte elements decoded")
	}
	// another base gives other classes: the planes no longer fit them
	_, other := fineTuneBytes(4, 20000)
	if got, err := LosslessDecode(b, other, len(w)); err == nil && bytes.Equal(got, w) {
		t.Error("decoded the original against another base")
	}
}

func FuzzLosslessDecodeDiff(f *testing.F) {
	w, base := fineTuneBytes(5, minClassElems+100)
	for _, n := range []int{len(w), 4 * 500} {
		b, _ := LosslessEncodeDiff(w[:n], base[:n], 4)
		f.Add(b, n == len(w))
	}
	f.Fuzz(func(t *testing.T, b []byte, long bool) {
		bs := base[:4*500]
		if long {
			bs = base
		}
		out, err := LosslessDecode(b, bs, len(bs))
		if err != nil {
			return
		}
		again, err := LosslessEncodeDiff(out, bs, 4)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := LosslessDecode(again, bs, len(bs)); err != nil || !bytes.Equal(back, out) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

// LosslessPlaneBytes comes close to what LosslessEncode keeps, on floats of
// several spreads and on bytes with little to code.
func TestLosslessPlaneBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, tc := range []struct {
		name string
		n    int
		gen  func(i int) float32
	}{
		{"weights", 100000, func(int) float32 { return float32(r.NormFloat64() * 0.02) }},
		{"norm gains", 3000, func(int) float32 { return float32(1 + r.NormFloat64()*0.05) }},
		{"small ints", 50000, func(int) float32 { return float32(r.IntN(4)) }},
		{"constant", 40000, func(int) float32 { return 0.5 }},
	} {
		w := make([]float32, tc.n)
		for i := range w {
			w[i] = tc.gen(i)
		}
		b := make([]byte, 4*len(w)+3) // and a tail
		EncodeF32(b, w)
		enc, err := LosslessEncode(b, nil, 4)
		if err != nil {
			t.Fatal(err)
		}
		est := LosslessPlaneBytes(b, 4)
		if r := float64(len(enc)) / est; tc.name != "constant" && (r < 0.95 || r > 1.06) {
			t.Errorf("%s: encoded %d bytes, estimate %.0f (%.3f)", tc.name, len(enc), est, r)
		}
		if tc.name == "constant" && est > 8 {
			t.Errorf("constant: estimate %.0f bytes", est)
		}
	}
	if got := LosslessPlaneBytes([]byte{1, 2, 3}, 4); got != 3 {
		t.Errorf("a tail alone: %v, want its 3 raw bytes", got)
	}
}
