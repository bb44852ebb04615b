package quant

// The paper's rule (NeurStore, SIGMOD 2026), kept only as a baseline to beat.
//
// A base is an 8-bit per-tensor min-max code (lo, hi, 255 levels). A tensor W is
// stored as the delta D = W - deq(Q8(B)) where B is the base (W itself when there is
// none, so the 8-bit base is stored along with the delta). D is quantized min-max at
//
//	b = clamp(ceil(log2(range / (2 tau))), 1, 32),  scale = range / (2^b - 1)
//
// and bit-packed at b bits, without entropy coding. The rounding error is up to
// scale/2 = range / (2 (2^b - 1)); since b only guarantees 2^b >= range / (2 tau),
// that is up to tau * 2^b / (2^b - 1): 2 tau at b = 1, 1.33 tau at b = 2, and above
// tau for every b (plus float32 rounding). This is the paper's flaw; Quantize never
// exceeds tau.
//
// Blob (part of the format; do not change):
//
//	+------+------+-----------------+
//	| 0x50 | base | count uvarint   |   base = 1 when the 8-bit base is included
//	+------+------+-----------------+
//	| [base: lo f32, hi f32, count bytes of 8-bit codes]  |
//	+-----------------------------------------------------+
//	| dmin f64 | scale f64 | b u8 | PackBits(b) payload   |
//	+-----------------------------------------------------+

import (
	"encoding/binary"
	"errors"
	"math"
)

const paperMagic = 0x50

// q8 quantizes w per tensor to 8 bits min-max.
func q8(w []float32) (lo, hi float32, q []byte) {
	if len(w) > 0 {
		lo, hi = w[0], w[0]
	}
	for _, v := range w {
		lo, hi = min(lo, v), max(hi, v)
	}
	q = make([]byte, len(w))
	s := (float64(hi) - float64(lo)) / 255
	if s == 0 {
		return lo, hi, q
	}
	for i, v := range w {
		q[i] = byte(math.Round((float64(v) - float64(lo)) / s))
	}
	return lo, hi, q
}

func deq8(lo, hi float32, q []byte) []float32 {
	s := (float64(hi) - float64(lo)) / 255
	out := make([]float32, len(q))
	for i, v := range q {
		out[i] = float32(float64(lo) + float64(v)*s)
	}
	return out
}

// PaperEncode encodes w by the paper's rule against base (nil: the 8-bit version of
// w itself is the base and goes into the blob). Only finite values are supported.
func PaperEncode(w, base []float32, tau float64) ([]byte, error) {
	if err := checkTau(tau); err != nil {
		return nil, err
	}
	if base != nil && len(base) != len(w) {
		return nil, errors.New("quant: paper base length differs")
	}
	for _, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, errors.New("quant: paper rule needs finite values")
		}
	}
	out := []byte{paperMagic, 0}
	out = binary.AppendUvarint(out, uint64(len(w)))
	var ref []float32
	if base == nil {
		lo, hi, q := q8(w)
		out[1] = 1
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(lo))
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(hi))
		out = append(out, q...)
		ref = deq8(lo, hi, q)
	} else {
		lo, hi, q := q8(base)
		ref = deq8(lo, hi, q)
	}
	d := make([]float64, len(w))
	dmin, dmax := math.Inf(1), math.Inf(-1)
	for i, v := range w {
		d[i] = float64(v) - float64(ref[i])
		dmin, dmax = min(dmin, d[i]), max(dmax, d[i])
	}
	if len(w) == 0 {
		dmin, dmax = 0, 0
	}
	rng := dmax - dmin
	b := 1
	if rng > 0 {
		b = int(math.Ceil(math.Log2(rng / (2 * tau))))
		b = min(max(b, 1), 32)
	}
	scale := rng / float64(uint64(1)<<b-1)
	u := make([]uint64, len(w))
	if scale > 0 {
		for i, x := range d {
			u[i] = uint64(math.Round((x - dmin) / scale))
		}
	}
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(dmin))
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(scale))
	out = append(out, byte(b))
	return append(out, PackBits(u, b)...), nil
}

// PaperDecode reverses PaperEncode; base must be the same base (nil if none).
func PaperDecode(blob []byte, base []float32, maxElems int) ([]float32, error) {
	p := blob
	if len(p) < 2 || p[0] != paperMagic || p[1] > 1 {
		return nil, errCorrupt
	}
	hasBase := p[1] == 1
	p = p[2:]
	cnt, err := uvarint(&p)
	if err != nil || cnt > uint64(max(maxElems, 0)) || cnt > uint64(len(p)) && hasBase {
		return nil, errCorrupt
	}
	n := int(cnt)
	var ref []float32
	if hasBase {
		if len(p) < 8+n {
			return nil, errCorrupt
		}
		lo := math.Float32frombits(binary.LittleEndian.Uint32(p))
		hi := math.Float32frombits(binary.LittleEndian.Uint32(p[4:]))
		ref = deq8(lo, hi, p[8:8+n])
		p = p[8+n:]
	} else {
		if len(base) != n {
			return nil, errors.New("quant: paper base length differs")
		}
		lo, hi, q := q8(base)
		ref = deq8(lo, hi, q)
	}
	if len(p) < 17 {
		return nil, errCorrupt
	}
	dmin := math.Float64frombits(binary.LittleEndian.Uint64(p))
	scale := math.Float64frombits(binary.LittleEndian.Uint64(p[8:]))
	b := int(p[16])
	if b < 1 || b > 32 {
		return nil, errCorrupt
	}
	u, err := UnpackBits(p[17:], n, b)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	for i, v := range u {
		out[i] = float32(float64(ref[i]) + dmin + float64(v)*scale)
	}
	return out, nil
}
