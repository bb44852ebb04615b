package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestPackBitsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for width := 0; width <= 64; width++ {
		for _, n := range []int{0, 1, 7, 8, 9, 63, 1000} {
			vals := make([]uint64, n)
			for i := range vals {
				vals[i] = r.Uint64()
				if width < 64 {
					vals[i] &= 1<<width - 1
				}
			}
			b := PackBits(vals, width)
			if len(b) != PackedLen(n, width) {
				t.Fatalf("width %d n %d: %d bytes", width, n, len(b))
			}
			got, err := UnpackBits(b, n, width)
			if err != nil || !slices.Equal(got, vals) {
				t.Fatalf("width %d n %d: round trip failed (%v)", width, n, err)
			}
			if n > 0 && PackedLen(n, width) > 0 {
				if _, err := UnpackBits(b[:len(b)-1], n, width); err == nil {
					t.Fatalf("short input accepted")
				}
			}
		}
	}
	// layout: element i at bit i*width, little-endian
	if b := PackBits([]uint64{1, 2, 3}, 3); !bytes.Equal(b, []byte{0b11010001, 0b0}) {
		t.Fatalf("layout %08b", b)
	}
}

func TestPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, bits := range []int{1, 2, 3, 4, 5, 6, 7, 8, 16} {
		c := &Codes{Tau: 1e-3, Q: make([]int64, 5000), Exceptions: []Exception{{3, 0x7fc00000}}}
		span := int64(1) << bits
		off := r.Int64N(1000) - 500
		for i := range c.Q {
			c.Q[i] = off + r.Int64N(span)
		}
		c.Q[3] = -1 << 40 // exception slot: ignored by Pack
		p, err := c.Pack(bits)
		if err != nil {
			t.Fatal(bits, err)
		}
		if len(p.Data) != PackedLen(len(c.Q), bits) || p.Scale != float32(2e-3) {
			t.Fatal("packed size or scale")
		}
		u, err := p.Unpack()
		if err == nil {
			u.Q[3] = c.Q[3] // exception slot: its code is not kept
		}
		if err != nil || !slices.Equal(u.Q, c.Q) || !slices.Equal(u.Exceptions, c.Exceptions) || u.Tau != c.Tau {
			t.Fatalf("bits %d: unpack differs (%v)", bits, err)
		}
		// kernel's view: (u - Zero) * Scale
		v, _ := UnpackBits(p.Data, p.N, p.Bits)
		for i := range v {
			if i != 3 && int64(v[i])-int64(p.Zero) != c.Q[i] {
				t.Fatal("zero point")
			}
		}
		c.Q[0] = off + span // one too wide
		c.Q[1] = off
		if _, err := c.Pack(bits); err == nil {
			t.Fatalf("bits %d: too wide range accepted", bits)
		}
	}
	if _, err := (&Codes{Tau: 1}).Pack(9); err == nil {
		t.Fatal("width 9 accepted")
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	gens := map[string]func(i int) int64{
		"zeros":    func(int) int64 { return 0 },
		"small":    func(int) int64 { return int64(r.NormFloat64() * 2) },
		"medium":   func(int) int64 { return int64(r.NormFloat64() * 300) },
		"wide":     func(int) int64 { return int64(r.NormFloat64() * 1e7) },
		"extreme":  func(int) int64 { return r.Int64N(2*MaxCode+1) - MaxCode },
		"outliers": func(i int) int64 { return map[bool]int64{true: 1 << 40, false: int64(i % 3)}[i%997 == 0] },
		"uniform8": func(int) int64 { return r.Int64N(256) - 128 },
	}
	for name, g := range gens {
		for _, n := range []int{1, 100, 300000} {
			c := &Codes{Tau: 5e-4, Q: make([]int64, n)}
			for i := range c.Q {
				c.Q[i] = g(i)
			}
			if n > 50 {
				c.Exceptions = []Exception{{5, 0x7f800000}, {50, 0xffc01234}}
				c.Q[5], c.Q[50] = 0, 0
			}
			b, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Decode(b, n)
			if err != nil {
				t.Fatalf("%s/%d: %v", name, n, err)
			}
			if d.Tau != c.Tau || !slices.Equal(d.Q, c.Q) || !slices.Equal(d.Exceptions, c.Exceptions) {
				t.Fatalf("%s/%d: round trip differs", name, n)
			}
			if _, err := Decode(b, n-1); err == nil {
				t.Fatalf("%s/%d: maxElems not enforced", name, n)
			}
			if n == 300000 {
				t.Logf("%-9s width %2d codec %d: %.3f bytes/elem", name, b[2], b[1], float64(len(b))/float64(n))
			}
		}
	}
}

func TestLosslessRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	const n = 200001
	weights := make([]byte, 4*n)
	near := make([]byte, 4*n)
	for i := range n {
		v := float32(r.NormFloat64() * 0.02)
		binary.LittleEndian.PutUint32(weights[4*i:], math.Float32bits(v))
		binary.LittleEndian.PutUint32(near[4*i:], math.Float32bits(v+float32(r.NormFloat64()*0.002)))
	}
	random := make([]byte, 4*n+3)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	nans := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(nans[4*i:], 0x7fc00000|uint32(i&7))
	}
	cases := []struct {
		name    string
		w, base []byte
	}{
		{"weights", weights, nil}, {"weights-xor", near, weights}, {"random", random, nil},
		{"random-xor", random, reversed(random)}, {"zeros", make([]byte, 4*n), nil},
		{"nans", nans, nil}, {"empty", nil, nil}, {"tiny", []byte{1, 2, 3}, nil},
	}
	for _, c := range cases {
		if c.base != nil && len(c.base) != len(c.w) {
			c.base = random[:len(c.w)]
		}
		for _, es := range []int{1, 2, 4} {
			b, err := LosslessEncode(c.w, c.base, es)
			if err != nil {
				t.Fatal(err)
			}
			got, err := LosslessDecode(b, c.base, len(c.w))
			if err != nil || !bytes.Equal(got, c.w) {
				t.Fatalf("%s/%d: round trip failed (%v)", c.name, es, err)
			}
			if len(c.w) > 0 {
				if _, err := LosslessDecode(b, c.base, len(c.w)-1); err == nil {
					t.Fatalf("%s: maxBytes not enforced", c.name)
				}
			}
			if es == 4 && len(c.w) > 0 {
				t.Logf("%-12s %.3f bytes per 4 bytes", c.name, 4*float64(len(b))/float64(len(c.w)))
			}
		}
	}
	if _, err := LosslessEncode([]byte{1, 2}, []byte{1}, 2); err == nil {
		t.Fatal("base length mismatch accepted")
	}
	if _, err := LosslessEncode([]byte{1, 2}, nil, 3); err == nil {
		t.Fatal("element size 3 accepted")
	}
}

// f16 / bf16 tensors go through the same codec with element size 2.
func TestLosslessHalf(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	w := make([]byte, 2*100000)
	for i := 0; i < len(w); i += 2 {
		bits := math.Float32bits(float32(r.NormFloat64() * 0.02))
		binary.LittleEndian.PutUint16(w[i:], uint16(bits>>16)) // bf16
	}
	b, err := LosslessEncode(w, nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := LosslessDecode(b, nil, len(w))
	if err != nil || !bytes.Equal(got, w) {
		t.Fatal("bf16 round trip", err)
	}
	t.Logf("bf16 N(0,0.02): %.3f bytes/elem", float64(len(b))/float64(len(w)/2))
}

func TestDecodeCorruptTruncations(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	c := &Codes{Tau: 1e-3, Q: make([]int64, 50000), Exceptions: []Exception{{1, 0x7fc00000}}}
	for i := range c.Q {
		c.Q[i] = int64(r.NormFloat64() * 40)
	}
	c.Q[1] = 0
	b, _ := Encode(c)
	for range 300 {
		i := r.IntN(min(len(b), 200))
		if r.IntN(2) == 0 {
			i = r.IntN(len(b))
		}
		Decode(b[:i], 1<<20) // must not panic
		m := bytes.Clone(b)
		m[i] ^= byte(1 + r.IntN(255))
		Decode(m, 1<<20)
	}
	lb, _ := LosslessEncode(b, nil, 4)
	for range 300 {
		i := r.IntN(len(lb))
		LosslessDecode(lb[:i], nil, 1<<20)
		m := bytes.Clone(lb)
		m[i] ^= byte(1 + r.IntN(255))
		LosslessDecode(m, nil, 1<<20)
	}
}

func reversed(b []byte) []byte {
	c := slices.Clone(b)
	slices.Reverse(c)
	return c
}

func TestDecodeNegativeMax(t *testing.T) {
	c := &Codes{Tau: 1, Q: []int64{1, 2, 3}}
	b, _ := Encode(c)
	if _, err := Decode(b, -1); err == nil {
		t.Error("Decode: negative maximum accepted")
	}
	lb, _ := LosslessEncode([]byte{1, 2, 3, 4}, nil, 4)
	if _, err := LosslessDecode(lb, nil, -1); err == nil {
		t.Error("LosslessDecode: negative maximum accepted")
	}
	pb, _ := PaperEncode([]float32{1, 2}, nil, 0.1)
	if _, err := PaperDecode(pb, nil, -1); err == nil {
		t.Error("PaperDecode: negative maximum accepted")
	}
}

// TestPlaneBytes checks the estimate against what Encode really writes, for codes
// of one to three byte planes: at most 2% under it (the import's clearEstimate
// counts on that) and 5% over; and 0 for all-zero codes.
func TestPlaneBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, spread := range []float64{0.7, 5, 60, 4000} {
		c := &Codes{Tau: 1e-3, Q: make([]int64, 1<<18)}
		for i := range c.Q {
			c.Q[i] = int64(math.Round(r.NormFloat64() * spread))
		}
		blob, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		est := PlaneBytes(c)
		if ratio := float64(len(blob)) / est; ratio < 0.98 || ratio > 1.05 {
			t.Errorf("spread %g: encoded %d bytes, estimate %.0f (ratio %.4f)", spread, len(blob), est, ratio)
		}
	}
	zero := &Codes{Tau: 1e-3, Q: make([]int64, 1000)}
	if est := PlaneBytes(zero); est != 0 {
		t.Errorf("all-zero codes: estimate %g bytes, want 0", est)
	}
}
