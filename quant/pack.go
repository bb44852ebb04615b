package quant

import (
	"errors"
	"fmt"
	"math"
)

// zigzag maps signed codes to unsigned ones so small magnitudes get small values:
// 0, -1, 1, -2, 2 ... -> 0, 1, 2, 3, 4 ...
func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// PackedLen is the number of bytes PackBits writes for n values of the given width.
func PackedLen(n, width int) int { return int((uint64(n)*uint64(width) + 7) / 8) }

// PackBits packs the low width bits (0..64) of each value little-endian: value i
// occupies bits [i*width, (i+1)*width) of the output, bit 0 being the least
// significant bit of byte 0. Higher bits of the values are ignored.
func PackBits(vals []uint64, width int) []byte {
	out := make([]byte, PackedLen(len(vals), width))
	if width == 0 {
		return out
	}
	var mask uint64 = math.MaxUint64
	if width < 64 {
		mask = 1<<width - 1
	}
	w := &bitWriter{out: out}
	if width <= 32 {
		for _, v := range vals {
			w.put(v&mask, width)
		}
	} else {
		for _, v := range vals {
			v &= mask
			w.put(v&0xffffffff, 32)
			w.put(v>>32, width-32)
		}
	}
	w.flush()
	return out
}

// bitWriter appends pieces of at most 32 bits, low bits first.
type bitWriter struct {
	out  []byte
	o    int
	acc  uint64
	nacc int // < 8 between calls
}

func (w *bitWriter) put(v uint64, n int) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.out[w.o] = byte(w.acc)
		w.o++
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) flush() {
	if w.nacc > 0 {
		w.out[w.o] = byte(w.acc)
	}
}

// bitReader takes pieces of at most 32 bits, low bits first; the caller has checked
// that the input is long enough.
type bitReader struct {
	in   []byte
	i    int
	acc  uint64
	nacc int
}

func (r *bitReader) get(n int) uint64 {
	for r.nacc < n {
		r.acc |= uint64(r.in[r.i]) << r.nacc
		r.i++
		r.nacc += 8
	}
	v := r.acc & (1<<n - 1)
	r.acc >>= n
	r.nacc -= n
	return v
}

// UnpackBits reverses PackBits for n values; it fails if b is shorter than needed.
func UnpackBits(b []byte, n, width int) ([]uint64, error) {
	if width < 0 || width > 64 {
		return nil, fmt.Errorf("quant: bad width %d", width)
	}
	if n < 0 || len(b) < PackedLen(n, width) {
		return nil, errCorrupt
	}
	out := make([]uint64, n)
	if width == 0 {
		return out, nil
	}
	r := &bitReader{in: b}
	if width <= 32 {
		for i := range out {
			out[i] = r.get(width)
		}
	} else {
		for i := range out {
			lo := r.get(32)
			out[i] = lo | r.get(width-32)<<32
		}
	}
	return out, nil
}

// Packed is a fixed-width form of Codes for compute kernels: element i is the
// unsigned integer u at bits [i*Bits, (i+1)*Bits) of Data (little-endian, as in
// PackBits) and its value is float32(float64(int64(u)-Zero) * Scale64) with
// Scale64 = 2*tau; Scale is the same step as a float32 for kernels. Exceptions, if
// any, override elements (a kernel may patch them after the fact).
type Packed struct {
	Bits       int // 1..8 or 16
	N          int
	Data       []byte
	Scale      float32
	Scale64    float64
	Zero       int
	Exceptions []Exception
}

// Pack returns the fixed-width form of c; it fails if the codes' range does not fit
// in bits. Zero is chosen as -min(Q) over the non-exception elements, so every
// stored u is q - min(Q); exception slots hold u = 0.
func (c *Codes) Pack(bits int) (*Packed, error) {
	if !(bits >= 1 && bits <= 8 || bits == 16) {
		return nil, fmt.Errorf("quant: pack width %d not in 1..8 or 16", bits)
	}
	// the range ignores exception slots (their code is meaningless); they get u = 0
	isExc := func(i, next int) bool {
		return next < len(c.Exceptions) && int(c.Exceptions[next].Index) == i
	}
	var lo, hi int64
	first := true
	for i, next := 0, 0; i < len(c.Q); i++ {
		if isExc(i, next) {
			next++
			continue
		}
		if q := c.Q[i]; first {
			lo, hi, first = q, q, false
		} else {
			lo, hi = min(lo, q), max(hi, q)
		}
	}
	if uint64(hi-lo) >= 1<<bits || hi-lo < 0 {
		return nil, fmt.Errorf("quant: codes span %d..%d, too wide for %d bits", lo, hi, bits)
	}
	u := make([]uint64, len(c.Q))
	for i, next := 0, 0; i < len(c.Q); i++ {
		if isExc(i, next) {
			next++
			continue
		}
		u[i] = uint64(c.Q[i] - lo)
	}
	return &Packed{
		Bits: bits, N: len(c.Q), Data: PackBits(u, bits),
		Scale: float32(2 * c.Tau), Scale64: 2 * c.Tau, Zero: int(-lo),
		Exceptions: append([]Exception(nil), c.Exceptions...),
	}, nil
}

// Unpack returns the Codes a Packed form holds (Q is -Zero at exception slots,
// which Dequantize overrides).
func (p *Packed) Unpack() (*Codes, error) {
	if p.Scale64 <= 0 || math.IsNaN(p.Scale64) || math.IsInf(p.Scale64, 0) {
		return nil, errors.New("quant: packed form has no valid scale")
	}
	u, err := UnpackBits(p.Data, p.N, p.Bits)
	if err != nil {
		return nil, err
	}
	c := &Codes{Tau: p.Scale64 / 2, Q: make([]int64, p.N)}
	for i, v := range u {
		c.Q[i] = int64(v) - int64(p.Zero)
	}
	c.Exceptions = append([]Exception(nil), p.Exceptions...)
	return c, nil
}
