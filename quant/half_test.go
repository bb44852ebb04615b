package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// refF16Value is the value of an f16 bit pattern straight from the IEEE formula.
func refF16Value(h uint16) float64 {
	s := 1.0
	if h&0x8000 != 0 {
		s = -1
	}
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	switch e {
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		return s * math.Inf(1)
	case 0:
		return s * m * 0x1p-24
	}
	return s * (1 + m/1024) * math.Ldexp(1, e-15)
}

// refF16 rounds f to f16 bits in float64 arithmetic, one binade at a time.
func refF16(f float32) uint16 {
	x := float64(f)
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
	}
	ax := math.Abs(x)
	if math.IsInf(ax, 0) {
		return sign | 0x7c00
	}
	if ax < 0x1p-14 { // subnormal: multiples of 2^-24 (1024 * 2^-24 is the smallest normal)
		return sign | uint16(math.RoundToEven(ax*0x1p24))
	}
	_, e := math.Frexp(ax)
	e-- // ax in [2^e, 2^(e+1))
	if e > 15 {
		return sign | 0x7c00
	}
	r := int(math.RoundToEven(ax * math.Ldexp(1, 10-e))) // 1024..2048
	return sign | uint16((e+15)<<10+r-1024)              // r = 2048 carries; 65536 becomes Inf
}

// refBF16 rounds f to bf16 bits in float64 arithmetic.
func refBF16(f float32) uint16 {
	x := float64(f)
	var sign uint16
	if math.Signbit(x) {
		sign = 0x8000
	}
	ax := math.Abs(x)
	if math.IsInf(ax, 0) {
		return sign | 0x7f80
	}
	if ax < 0x1p-126 {
		return sign | uint16(math.RoundToEven(ax*0x1p133))
	}
	_, e := math.Frexp(ax)
	e--
	r := int(math.RoundToEven(ax * math.Ldexp(1, 7-e))) // 128..256
	return sign | uint16((e+127)<<7+r-128)
}

func TestF16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := F16ToF32(h)
		ref := refF16Value(h)
		if math.IsNaN(ref) {
			b := math.Float32bits(f)
			if !math.IsNaN(float64(f)) || b>>31 != uint32(h>>15) || b&0x7fffff != uint32(h&0x3ff)<<13 {
				t.Fatalf("%04x: NaN widened to %08x", h, b)
			}
		} else if float64(f) != ref || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("%04x: got %g want %g", h, f, ref)
		}
		if back := F32ToF16(f); back != h {
			t.Fatalf("%04x: round trip gave %04x", h, back)
		}
	}
}

func TestBF16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		f := BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("%04x: widened to %08x", h, math.Float32bits(f))
		}
		back := F32ToBF16(f)
		if h&0x7fff > 0x7f80 { // NaN: stays NaN, quiet, same sign and payload
			if back != h|0x40 {
				t.Fatalf("%04x: NaN round trip gave %04x", h, back)
			}
			continue
		}
		if back != h {
			t.Fatalf("%04x: round trip gave %04x", h, back)
		}
	}
}

// halfEdgeValues returns float32 values where rounding to f16 and bf16 is
// delicate: every midpoint between neighbouring values of either type and the
// float32s next to it, limits, and their negations.
func halfEdgeValues() []float32 {
	var out []float32
	add := func(v float32) {
		out = append(out, v, math.Nextafter32(v, float32(math.Inf(1))), math.Nextafter32(v, float32(math.Inf(-1))))
	}
	for h := uint16(0); h < 0x7c00; h++ { // f16 midpoints (12 significant bits: exact in float32)
		lo, hi := float64(F16ToF32(h)), float64(F16ToF32(h+1))
		if math.IsInf(hi, 0) {
			hi = 65536
		}
		add(float32((lo + hi) / 2))
		add(float32(-(lo + hi) / 2))
		add(F16ToF32(h))
	}
	for h := uint16(0); h < 0x7f80; h++ { // bf16 midpoints
		lo, hi := float64(BF16ToF32(h)), float64(BF16ToF32(h+1))
		if math.IsInf(hi, 0) {
			hi = 0x1p128
		}
		m := float32((lo + hi) / 2) // may overflow float32 to Inf: fine
		add(m)
		add(-m)
	}
	for _, v := range []float32{0, 65504, 65519, 65520, 65536, 1e5, math.MaxFloat32, math.SmallestNonzeroFloat32,
		0x1p-24, 0x1p-25, 0x1.8p-25, 0x1p-26, 0x1p-14, 0x1.ffcp-15, 0x1p-126, 0x1p-133, 0x1p-134, 0x1.8p-134} {
		add(v)
		add(-v)
	}
	return out
}

func TestF32ToHalfReference(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	n := 4 << 20
	if testing.Short() {
		n = 1 << 18
	}
	check := func(f float32) {
		if math.IsNaN(float64(f)) {
			if h := F32ToF16(f); h&0x7c00 != 0x7c00 || h&0x3ff == 0 || h>>15 != uint16(math.Float32bits(f)>>31) {
				t.Fatalf("f16 of NaN %08x is %04x", math.Float32bits(f), h)
			}
			if h := F32ToBF16(f); h&0x7fc0 != 0x7fc0 || h>>15 != uint16(math.Float32bits(f)>>31) {
				t.Fatalf("bf16 of NaN %08x is %04x", math.Float32bits(f), h)
			}
			return
		}
		if got, want := F32ToF16(f), refF16(f); got != want {
			t.Fatalf("F32ToF16(%g = %08x) = %04x, want %04x", f, math.Float32bits(f), got, want)
		}
		if got, want := F32ToBF16(f), refBF16(f); got != want {
			t.Fatalf("F32ToBF16(%g = %08x) = %04x, want %04x", f, math.Float32bits(f), got, want)
		}
		// the inlined rounding used by QuantizeFor agrees
		b := math.Float32bits(f)
		if got, want := roundF16Bits(b), math.Float32bits(F16ToF32(F32ToF16(f))); got != want {
			t.Fatalf("roundF16Bits(%08x) = %08x, want %08x", b, got, want)
		}
		if got, want := roundBF16Bits(b), math.Float32bits(BF16ToF32(F32ToBF16(f))); got != want {
			t.Fatalf("roundBF16Bits(%08x) = %08x, want %08x", b, got, want)
		}
	}
	edges := halfEdgeValues()
	for _, f := range edges {
		check(f)
	}
	// every float32 bit pattern's top 19 bits with low bits around the f16 half
	// way point, and random patterns of every kind
	if !testing.Short() {
		lows := []uint32{0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x7fff, 0x8000, 0x8001}
		for top := uint32(0); top < 1<<19; top++ {
			for _, lo := range lows {
				check(math.Float32frombits(top<<13 | lo))
			}
			check(math.Float32frombits(top<<13 | r.Uint32()&0x1fff))
		}
	}
	for range n {
		check(math.Float32frombits(r.Uint32()))
		// and values in the f16 range, where most of its rounding happens
		check(math.Float32frombits(r.Uint32N(0x47800000-0x33000000) + 0x33000000 | r.Uint32()&0x80000000))
	}
	t.Logf("%d edge values, %d random ones", len(edges), 2*n)
}

func TestHalfSlices(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	src := make([]float32, 1001)
	for i := range src {
		src[i] = float32(r.NormFloat64() * math.Ldexp(1, r.IntN(40)-20))
	}
	src[3] = float32(math.NaN())
	src[4] = float32(math.Inf(-1))
	for _, tg := range []Target{TargetF32, TargetF16, TargetBF16} {
		buf := make([]byte, tg.Size()*len(src)+1) // one spare byte: ignored
		if n := tg.Encode(buf, src); n != len(src) {
			t.Fatalf("%v: encoded %d", tg, n)
		}
		back := make([]float32, len(src))
		if n := tg.Decode(back, buf); n != len(src) {
			t.Fatalf("%v: decoded %d", tg, n)
		}
		for i, v := range src {
			want := tg.Round(v)
			if math.Float32bits(back[i]) != math.Float32bits(want) {
				t.Fatalf("%v elem %d: %08x want %08x", tg, i, math.Float32bits(back[i]), math.Float32bits(want))
			}
			var bits uint32
			switch tg {
			case TargetF32:
				bits = binary.LittleEndian.Uint32(buf[4*i:])
			case TargetF16:
				bits = math.Float32bits(F16ToF32(binary.LittleEndian.Uint16(buf[2*i:])))
			case TargetBF16:
				bits = uint32(binary.LittleEndian.Uint16(buf[2*i:])) << 16
			}
			if bits != math.Float32bits(want) {
				t.Fatalf("%v elem %d: layout", tg, i)
			}
		}
		// short destinations convert what fits, like copy
		if n := tg.Decode(back[:10], buf); n != 10 {
			t.Fatalf("%v: short decode %d", tg, n)
		}
		if n := tg.Encode(buf[:tg.Size()*5+1], src); n != 5 {
			t.Fatalf("%v: short encode %d", tg, n)
		}
	}
	if F32ToF16(65504) != 0x7bff || F32ToF16(65520) != 0x7c00 || F32ToF16(-1e9) != 0xfc00 ||
		F32ToF16(0x1p-24) != 1 || F32ToF16(0x1p-25) != 0 || F32ToF16(0x1.000002p-25) != 1 || F32ToF16(float32(math.Copysign(0, -1))) != 0x8000 {
		t.Fatal("f16 spot checks")
	}
	if F32ToBF16(math.MaxFloat32) != 0x7f80 || F32ToBF16(1) != 0x3f80 || F32ToBF16(math.Float32frombits(0x7f800001)) != 0x7fc0 {
		t.Fatal("bf16 spot checks")
	}
}

func BenchmarkHalf(b *testing.B) {
	_, ft := fineTunePair(benchN, 1)
	buf := make([]byte, 2*benchN)
	out := make([]float32, benchN)
	for _, tg := range []Target{TargetF16, TargetBF16} {
		b.Run("encode-"+tg.String(), func(b *testing.B) {
			b.SetBytes(4 * benchN)
			for b.Loop() {
				tg.Encode(buf, ft)
			}
		})
		b.Run("decode-"+tg.String(), func(b *testing.B) {
			b.SetBytes(4 * benchN)
			for b.Loop() {
				tg.Decode(out, buf)
			}
		})
	}
}

func TestWiden(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	check := func(b uint32) {
		v := math.Float32frombits(b)
		got, want := widen(v), float64(v)
		if math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Fatalf("widen(%08x) = %016x, want %016x", b, math.Float64bits(got), math.Float64bits(want))
		}
	}
	for _, b := range []uint32{0, 0x80000000, 1, 0x007fffff, 0x00800000, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00000, 0x3f800000} {
		check(b)
		check(b ^ 0x80000000)
	}
	for range 1 << 20 {
		check(r.Uint32())
	}
}
