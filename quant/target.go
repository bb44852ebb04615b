package quant

// Target-aware quantization: the bound holds after the reconstruction is rounded to
// the tensor's own element type.
//
// A tensor read from an f16 or bf16 file is quantized from its float32 widening
// (exact), and when the store writes it back it reconstructs each element as
// float32(float64(q) * 2 tau) and rounds that to f16 / bf16. That last rounding can
// add up to half an ulp of the target, far more than tau at coarse targets, so
// QuantizeFor checks each code after it: for every non-exception element
//
//	|float64(round_t(float32(float64(q) * 2 tau))) - float64(w)| <= tau
//
// and elements no neighbouring code can hold that way become exceptions keeping the
// float32 bits of w (exact in the target when w came from it).
//
// How many: when tau is within a few ulps of the target at w and not a power of
// two, about ulp/tau of the elements sit near the middle between two grid points
// where the rounding pushes both neighbouring codes past tau (N(0, 0.02) weights
// as f16 at tau 3e-5: 17%; as bf16 at tau 1e-4: 15%; at tau 1e-3: 0.1%). With tau
// a power of two there are none (for finite |w| below the largest finite value
// less tau and |w| / 2tau <= MaxCode): where 2 tau >= ulp the grid points near w
// are values of the target, and where it is smaller the nearest one lies in w's
// rounding interval (TestQuantizeForPowerOfTwoTau). A caller storing half
// precision tensors should prefer such a tau: the largest power of two <= its tau
// keeps the bound and costs at most one bit per element more (bf16 fine-tune
// delta at tau 1e-4: 1.46 bytes/element with 15% exceptions, 0.76 at 2^-14).

import (
	"errors"
	"fmt"
	"math"
)

// Target is the element type a reconstruction is finally stored in.
type Target uint8

const (
	TargetF32  Target = iota // float32: no further rounding
	TargetF16                // IEEE binary16
	TargetBF16               // bfloat16
)

func (t Target) String() string {
	switch t {
	case TargetF32:
		return "f32"
	case TargetF16:
		return "f16"
	case TargetBF16:
		return "bf16"
	}
	return fmt.Sprintf("Target(%d)", uint8(t))
}

// Valid reports whether t is one of the known targets.
func (t Target) Valid() bool { return t <= TargetBF16 }

// Size is the number of bytes of one element of t (0 for an unknown target).
func (t Target) Size() int {
	switch t {
	case TargetF32:
		return 4
	case TargetF16, TargetBF16:
		return 2
	}
	return 0
}

// Round returns the value of t nearest to v (ties to even), as a float32; for
// TargetF32 it returns v. NaN stays NaN (see half.go for its payload). It panics
// on an unknown target.
func (t Target) Round(v float32) float32 {
	switch t {
	case TargetF32:
		return v
	case TargetF16:
		return F16ToF32(F32ToF16(v))
	case TargetBF16:
		return BF16ToF32(F32ToBF16(v))
	}
	panic("quant: unknown target " + t.String())
}

// Decode converts little-endian elements of t in src to dst, like DecodeF16 and
// friends; it panics on an unknown target.
func (t Target) Decode(dst []float32, src []byte) int {
	switch t {
	case TargetF32:
		return DecodeF32(dst, src)
	case TargetF16:
		return DecodeF16(dst, src)
	case TargetBF16:
		return DecodeBF16(dst, src)
	}
	panic("quant: unknown target " + t.String())
}

// Encode converts src to little-endian elements of t in dst, like EncodeF16 and
// friends; it panics on an unknown target.
func (t Target) Encode(dst []byte, src []float32) int {
	switch t {
	case TargetF32:
		return EncodeF32(dst, src)
	case TargetF16:
		return EncodeF16(dst, src)
	case TargetBF16:
		return EncodeBF16(dst, src)
	}
	panic("quant: unknown target " + t.String())
}

// roundBits rounds the float32 with bits b (not NaN) to t.
func (t Target) roundBits(b uint32) uint32 {
	switch t {
	case TargetF16:
		return roundF16Bits(b)
	case TargetBF16:
		return roundBF16Bits(b)
	}
	return b
}

// roundF16Slow is roundF16Bits outside the f16 normal range: zero, subnormals,
// overflow and Inf.
func roundF16Slow(b uint32) uint32 {
	if b&0x7fffffff == 0 {
		return b
	}
	return math.Float32bits(F16ToF32(F32ToF16(math.Float32frombits(b))))
}

// QuantizeFor is Quantize for a tensor stored as t: the bound holds after each
// reconstruction is rounded to t (see above), provided every w is exactly
// representable in t, as it is when w is the widening of a t tensor. (For other
// inputs the grid elements still meet the bound; exceptions keep w's float32 bits,
// which rounding to t may move.) QuantizeFor(w, tau, TargetF32) is Quantize(w, tau).
// The codes live on the same grid as Quantize's, so Delta and AddBase apply.
func QuantizeFor(w []float32, tau float64, t Target) (*Codes, error) {
	switch t {
	case TargetF32:
		return Quantize(w, tau)
	case TargetF16, TargetBF16:
	default:
		return nil, fmt.Errorf("quant: unknown target %d", uint8(t))
	}
	if err := checkTau(tau); err != nil {
		return nil, err
	}
	if uint64(len(w)) > math.MaxUint32 {
		return nil, errors.New("quant: tensor has more than 2^32-1 elements")
	}
	step := 2 * tau
	inv := 1 / step
	c := &Codes{Tau: tau, Q: codesOf(len(w))}
	// Two copies of one loop so that the rounding inlines.
	if t == TargetF16 {
		for i, v := range w {
			x := widen(v)
			r := math.RoundToEven(x * inv)
			if !(r <= MaxCode && r >= -MaxCode) {
				c.Exceptions = append(c.Exceptions, Exception{uint32(i), math.Float32bits(v)})
				c.Q[i] = 0
				continue
			}
			q := int64(r)
			rb := math.Float32bits(float32(r * step))
			if f16Normal(rb) {
				rb = roundF16Normal(rb)
			} else {
				rb = roundF16Slow(rb)
			}
			rec := float64(math.Float32frombits(rb))
			if math.Abs(rec-x) > tau {
				var ok bool
				if q, ok = fixCodeFor(x, q, step, tau, t); !ok {
					c.Exceptions = append(c.Exceptions, Exception{uint32(i), math.Float32bits(v)})
					q = 0
				}
			}
			c.Q[i] = q
		}
		return c, nil
	}
	for i, v := range w {
		x := widen(v)
		r := math.RoundToEven(x * inv)
		if !(r <= MaxCode && r >= -MaxCode) {
			c.Exceptions = append(c.Exceptions, Exception{uint32(i), math.Float32bits(v)})
			c.Q[i] = 0
			continue
		}
		q := int64(r)
		rec := float64(math.Float32frombits(roundBF16Bits(math.Float32bits(float32(r * step)))))
		if math.Abs(rec-x) > tau {
			var ok bool
			if q, ok = fixCodeFor(x, q, step, tau, t); !ok {
				c.Exceptions = append(c.Exceptions, Exception{uint32(i), math.Float32bits(v)})
				q = 0
			}
		}
		c.Q[i] = q
	}
	return c, nil
}

// fixCodeFor is fixCode with the reconstruction rounded to t.
func fixCodeFor(x float64, q int64, step, tau float64, t Target) (int64, bool) {
	for _, cand := range [...]int64{q - 1, q + 1} {
		if cand > MaxCode || cand < -MaxCode {
			continue
		}
		rec := float64(math.Float32frombits(t.roundBits(math.Float32bits(float32(float64(cand) * step)))))
		if math.Abs(rec-x) <= tau {
			return cand, true
		}
	}
	return 0, false
}

// DequantizeFor writes the reconstruction for a tensor stored as t into dst (which
// must hold len(c.Q) values): grid elements already rounded to t, so converting dst
// to t (EncodeF16, EncodeBF16) is exact for them, and exceptions copied as stored,
// bit for bit (exact in t when they came from a t tensor). For TargetF32 it is
// Dequantize. It panics on a short dst or an unknown target.
func (c *Codes) DequantizeFor(dst []float32, t Target) {
	if len(dst) < len(c.Q) {
		panic("quant: Dequantize destination too short")
	}
	step := 2 * c.Tau
	dst = dst[:len(c.Q)]
	switch t {
	case TargetF32:
		c.Dequantize(dst)
		return
	case TargetF16:
		for i, q := range c.Q {
			rb := math.Float32bits(float32(float64(q) * step))
			if f16Normal(rb) {
				rb = roundF16Normal(rb)
			} else {
				rb = roundF16Slow(rb)
			}
			dst[i] = math.Float32frombits(rb)
		}
	case TargetBF16:
		for i, q := range c.Q {
			dst[i] = math.Float32frombits(roundBF16Bits(math.Float32bits(float32(float64(q) * step))))
		}
	default:
		panic("quant: unknown target " + t.String())
	}
	for _, e := range c.Exceptions {
		if int(e.Index) < len(dst) {
			dst[e.Index] = math.Float32frombits(e.Bits)
		}
	}
}

// widen is float64(v) built in integer registers for normal v: the SSE
// conversion only writes the low half of its register and so waits for the
// register's last writer, which in the quantizing loops chains every iteration
// to the previous one.
func widen(v float32) float64 {
	b := math.Float32bits(v)
	if e := b >> 23 & 0xff; e-1 < 0xfe {
		return math.Float64frombits(uint64(b&0x80000000)<<32 | (uint64(b&0x7fffffff)<<29 + (1023-127)<<52))
	}
	return float64(v)
}
