package quant

// Half-precision conversions: IEEE 754 binary16 (f16) and bfloat16 (bf16).
//
// Widening (F16ToF32, BF16ToF32) is exact for every bit pattern, NaN payloads
// included. Narrowing (F32ToF16, F32ToBF16) rounds to nearest, ties to even, and
// overflows to Inf; f16 subnormals are produced and read correctly (bf16 shares
// float32's exponent range, so its subnormals are float32 subnormals truncated).
//
// NaN: F32ToF16 keeps the sign and the top 10 payload bits and sets the quiet bit
// only if those bits are all zero, so every f16 pattern round-trips through float32
// bit for bit. F32ToBF16 keeps the sign and top 7 payload bits and always sets the
// quiet bit: quiet bf16 NaNs round-trip bit for bit, signaling ones come back quiet.
//
// The slice helpers read and write little-endian element bytes. Like copy they
// convert min(len(dst), len(src)/size) elements and return that count.

import (
	"encoding/binary"
	"math"
)

// F16ToF32 returns the float32 value of the binary16 bit pattern h (exact).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0x1f: // Inf or NaN: the payload moves up unchanged
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0:
		if mant == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: mant * 2^-24, a normal float32; both factors are exact
		return math.Float32frombits(sign | math.Float32bits(float32(mant)*0x1p-24))
	}
	return math.Float32frombits(sign | (exp+(127-15))<<23 | mant<<13)
}

// F32ToF16 returns the binary16 bit pattern nearest to f (ties to even; overflow
// gives Inf; NaN stays NaN, see the package notes above).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a > 0x7f800000: // NaN
		m := uint16(a>>13) & 0x3ff
		if m == 0 {
			m = 0x200
		}
		return sign | 0x7c00 | m
	case a >= 0x477ff000: // >= 65520 (65504 + half an ulp, a tie to even 2^16): Inf
		return sign | 0x7c00
	case a >= 0x38800000: // normal f16 range [2^-14, 65520)
		// round the low 13 bits to even; a mantissa carry moves into the exponent
		a += 0xfff + (a>>13)&1
		return sign | uint16((a-(127-15)<<23)>>13)
	case a < 0x33000000: // below 2^-25: rounds to zero (2^-25 itself ties to 0)
		return sign
	}
	// f16 subnormal: round(m * 2^(e-150) * 2^24) = round(m >> (126-e))
	e := a >> 23
	m := a&0x7fffff | 0x800000
	shift := 126 - e // 14..24
	r := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && r&1 == 1 {
		r++ // r == 0x400 is the smallest normal, encoded the same way
	}
	return sign | uint16(r)
}

// BF16ToF32 returns the float32 value of the bfloat16 bit pattern h (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 returns the bfloat16 bit pattern nearest to f (ties to even; overflow
// gives Inf; NaN becomes a quiet NaN with the same sign and top payload bits).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// roundF16Bits returns the float32 bits of the f16 value nearest to the float32
// with bits b (not NaN). Hot loops inline its two halves by hand.
func roundF16Bits(b uint32) uint32 {
	if f16Normal(b) {
		return roundF16Normal(b)
	}
	return roundF16Slow(b)
}

// f16Normal reports whether the float32 with bits b rounds to a normal f16
// (magnitude in [2^-14, 65520)).
func f16Normal(b uint32) bool { return b<<1-0x38800000<<1 < (0x477ff000-0x38800000)<<1 }

// roundF16Normal rounds the float32 with bits b to 10 mantissa bits, ties to even;
// it is f16 rounding where f16Normal(b) holds.
func roundF16Normal(b uint32) uint32 { return (b + 0xfff + (b>>13)&1) &^ 0x1fff }

// roundBF16Bits returns the float32 bits of the bf16 value nearest to the float32
// with bits b (not NaN).
func roundBF16Bits(b uint32) uint32 { return (b + 0x7fff + (b>>16)&1) &^ 0xffff }

// DecodeF16 converts little-endian binary16 values in src to dst.
func DecodeF16(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2)
	src, dst = src[:2*n], dst[:n]
	for i := range dst {
		dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
	}
	return n
}

// EncodeF16 converts src to little-endian binary16 values in dst.
func EncodeF16(dst []byte, src []float32) int {
	n := min(len(dst)/2, len(src))
	dst, src = dst[:2*n], src[:n]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
	}
	return n
}

// DecodeBF16 converts little-endian bfloat16 values in src to dst.
func DecodeBF16(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/2)
	src, dst = src[:2*n], dst[:n]
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
	return n
}

// EncodeBF16 converts src to little-endian bfloat16 values in dst.
func EncodeBF16(dst []byte, src []float32) int {
	n := min(len(dst)/2, len(src))
	dst, src = dst[:2*n], src[:n]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
	}
	return n
}

// DecodeF32 converts little-endian float32 values in src to dst (bits unchanged).
func DecodeF32(dst []float32, src []byte) int {
	n := min(len(dst), len(src)/4)
	src, dst = src[:4*n], dst[:n]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
	return n
}

// EncodeF32 converts src to little-endian float32 values in dst (bits unchanged).
func EncodeF32(dst []byte, src []float32) int {
	n := min(len(dst)/4, len(src))
	dst, src = dst[:4*n], src[:n]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
	return n
}
