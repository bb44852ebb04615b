package kernels

import (
	"math"

	"github.com/neurstore/neurstore/quant"
)

// Products with a packed weight (base + quantized delta) and its dense form.
//
// The dense W is never built. Products with at most gemvMaxM rows stream W once:
// with a SIMD level and a run that allows it (packedFastRows) the delta bits are
// decoded in registers next to the base and multiplied with the activations at
// once; otherwise rows of W are decoded into a small buffer (L1/L2 sized) that the
// dense GEMV kernel then uses. In the fused kernels an exception's slot holds the
// value the base + delta formula gives it, v0; a correction a*(exception - v0)
// is added to the outputs afterwards. Products of up to 2*gemvMaxM rows stream W
// twice (gemvMaxM rows, then the rest), which costs less than the GEMM's decode
// into panels at these sizes. Larger products run the GEMM of matmul.go,
// whose panel packing decodes the slice of W it needs (decodeRun, exceptions
// applied), so each weight element is decoded once per task (block of up to
// gemmMC rows of a).
//
// The decoded values are the reference's (denseRef) bit for bit: the same
// operations in the same order, without fused multiply-adds.

// slowChunk is the number of decoded floats the buffered paths hold at a time.
const slowChunk = 1 << 14

// matMulPacked is MatMulPacked.
func matMulPacked(c, a []float32, m int, w *Packed, transposed bool) {
	if err := w.Validate(); err != nil {
		panic(err.Error())
	}
	k, n := w.Rows, w.Cols
	if transposed {
		k, n = n, k
	}
	c, a = c[:m*n], a[:m*k]
	switch {
	case m == 0 || n == 0:
	case k == 0:
		clear(c)
	case w.Delta == nil:
		matMul(c, a, w.BaseF32, m, k, n, transposed)
	case m <= gemvMaxM:
		gemvPacked(useLevel, c, a, m, w, transposed)
	case m <= 2*gemvMaxM:
		// two streaming passes beat decoding W into GEMM panels for a product
		// of a few rows more than a GEMV takes (BenchmarkMatMulSmallM)
		gemvPacked(useLevel, c, a, gemvMaxM, w, transposed)
		gemvPacked(useLevel, c[gemvMaxM*n:], a[gemvMaxM*k:], m-gemvMaxM, w, transposed)
	default:
		gemm(useLevel, c, a, bSource{w: w, trans: transposed, k: k, n: n}, m)
	}
}

// dense is Dense.
func dense(dst []float32, w *Packed) {
	if err := w.Validate(); err != nil {
		panic(err.Error())
	}
	n := w.Rows * w.Cols
	dst = dst[:n]
	if w.Delta == nil {
		copy(dst, w.BaseF32)
		return
	}
	lv := useLevel
	parts := max(1, min(Threads(), n>>17)) // 128K elements a part at least
	if parts == 1 {
		decodeRun(lv, dst, w, 0)
		return
	}
	matParallel(parts, func(lo, hi int) {
		f0, f1 := lo*n/parts/64*64, hi*n/parts/64*64
		if hi == parts {
			f1 = n
		}
		decodeRun(lv, dst[f0:f1], w, f0)
	})
}

// gemvPacked computes c = a·W (W [k×n]) or a·Wᵀ (transposed, W [n×k]) for m <=
// gemvMaxM rows of a: W's rows are outputs (opDot) when transposed, else they
// are added to the outputs (opAxpy, see axpyParts). The rows are split over the
// threads.
func gemvPacked(lv *matLevel, c, a []float32, m int, w *Packed, transposed bool) {
	rows, rowLen := w.Rows, w.Cols
	k, n := rows, rowLen
	op := opAxpy
	if transposed {
		op, k, n = opDot, rowLen, rows
	}
	fast := packedFastRows(lv, w, rowLen)
	parts := min(matParts(2*m*k*n), rows)
	if op == opDot {
		if parts <= 1 {
			packedRows(lv, op, m, a, k, c, n, w, 0, rows, fast)
			return
		}
		matParallel(parts, func(lo, hi int) {
			packedRows(lv, op, m, a, k, c, n, w, lo*rows/parts, hi*rows/parts, fast)
		})
		return
	}
	if parts <= 1 {
		clear(c)
		packedRows(lv, op, m, a, k, c, n, w, 0, rows, fast)
		return
	}
	axpyParts(c, m, n, rows, parts, func(out []float32, r0, r1 int) {
		packedRows(lv, op, m, a, k, out, n, w, r0, r1, fast)
	})
}

// packedRows runs op for rows [r0, r1) of the packed w (rows rowLen long): the
// rows under fast through the level's fused kernel, the others buffered. a and c
// are the whole activations and outputs (lda, ldc apart).
func packedRows(lv *matLevel, op, m int, a []float32, lda int, c []float32, ldc int, w *Packed, r0, r1, fast int) {
	rowLen := w.Cols
	if f := min(r1, fast); r0 < f {
		aa, cc := rowArgs(op, a, c, r0)
		lv.gemvPacked(op, m, f-r0, rowLen, aa, lda, cc, ldc, w, r0*rowLen)
		correctExceptions(op, m, a, lda, c, ldc, w, r0*rowLen, f*rowLen)
		r0 = f
	}
	if r0 >= r1 {
		return
	}
	per := max(1, slowChunk/rowLen)
	buf := getMatScratch(min(per, r1-r0) * rowLen)
	for r := r0; r < r1; r += per {
		nr := min(per, r1-r)
		d := (*buf)[:nr*rowLen]
		decodeRun(lv, d, w, r*rowLen)
		aa, cc := rowArgs(op, a, c, r)
		lv.gemv(op, m, nr, rowLen, aa, lda, cc, ldc, d, rowLen)
	}
	putMatScratch(buf)
}

// rowArgs returns the activations and outputs of a kernel call that starts at
// weight row r: for opDot row r is output r, for opAxpy activation r.
func rowArgs(op int, a, c []float32, r int) ([]float32, []float32) {
	if op == opDot {
		return a, c[r:]
	}
	return a[r:], c
}

// packedFastRows returns how many of w's first rows (rowLen elements each) the
// level's fused kernel can take: none unless the rows are whole vectors and no
// group boundary falls inside a vector; then those whose delta loads all stay
// within the data.
func packedFastRows(lv *matLevel, w *Packed, rowLen int) int {
	d := w.Delta
	if lv.gemvPacked == nil || rowLen%lv.vl != 0 || !(d.Group%lv.vl == 0 || d.Group >= d.N) {
		return 0
	}
	// a vector starting at element s loads bytes [s*Bits/8, s*Bits/8+loadBytes)
	room := len(d.Data) - lv.loadBytes
	if room < 0 {
		return 0
	}
	maxStart := room * 8 / d.Bits
	return min(w.Rows, (maxStart+lv.vl)/rowLen)
}

// correctExceptions adds to c the difference the exceptions of w in the flat
// range [f0, f1) make: the fused kernels used the formula's value v0 for them.
func correctExceptions(op, m int, a []float32, lda int, c []float32, ldc int, w *Packed, f0, f1 int) {
	ex := w.Delta.Exceptions
	rowLen := w.Cols
	for i := exceptionFrom(ex, f0); i < len(ex) && int(ex[i].Index) < f1; i++ {
		idx := int(ex[i].Index)
		r, q := idx/rowLen, idx%rowLen
		dv := math.Float32frombits(ex[i].Bits) - elemValue(w, idx)
		for t := range m {
			if op == opDot {
				c[t*ldc+r] += a[t*lda+q] * dv
			} else {
				c[t*ldc+q] += a[t*lda+r] * dv
			}
		}
	}
}

// exceptionFrom returns the index of the first exception at element f or later.
func exceptionFrom(ex []quant.Exception, f int) int {
	lo, hi := 0, len(ex)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if int(ex[mid].Index) < f {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// decodeRun writes elements [f0, f0+len(dst)) of w, exceptions applied: the
// level's kernel on the aligned middle of each piece, Go on the edges.
func decodeRun(lv *matLevel, dst []float32, w *Packed, f0 int) {
	d := w.Delta
	if d == nil {
		copy(dst, w.BaseF32[f0:f0+len(dst)])
		return
	}
	switch {
	case lv.decode == nil:
		decodeGo(dst, w, f0)
	case d.Group%lv.vl == 0 || d.Group >= d.N:
		decodePiece(lv, dst, w, f0)
	default:
		// cut at group boundaries, which fall inside vectors
		for s := 0; s < len(dst); {
			e := min(len(dst), ((f0+s)/d.Group+1)*d.Group-f0)
			decodePiece(lv, dst[s:e], w, f0+s)
			s = e
		}
	}
	ex := d.Exceptions
	for i := exceptionFrom(ex, f0); i < len(ex) && int(ex[i].Index) < f0+len(dst); i++ {
		dst[int(ex[i].Index)-f0] = math.Float32frombits(ex[i].Bits)
	}
}

// decodePiece is decodeRun without the exceptions for a run with no group
// boundary inside a vector.
func decodePiece(lv *matLevel, dst []float32, w *Packed, f0 int) {
	d := w.Delta
	f1 := f0 + len(dst)
	h, t := roundUp(f0, lv.vl), f1/lv.vl*lv.vl
	if room := len(d.Data) - lv.loadBytes; room >= 0 {
		// the last vector's load must stay within the data
		t = min(t, (room*8/d.Bits+lv.vl)/lv.vl*lv.vl)
	} else {
		t = 0
	}
	if h >= t {
		decodeGo(dst, w, f0)
		return
	}
	decodeGo(dst[:h-f0], w, f0)
	lv.decode(dst[h-f0:t-f0], w, h)
	decodeGo(dst[t-f0:], w, t)
}

// deltaReader reads the quantized values u + Zero[g] of consecutive elements.
type deltaReader struct {
	data  []byte
	zero  []int32
	bit   uint64
	bits  uint64
	mask  uint32
	g     int // current group
	left  int // elements of group g not yet read
	group int
}

func newDeltaReader(d *quant.GroupPacked, f int) deltaReader {
	return deltaReader{
		data: d.Data, zero: d.Zero,
		bit: uint64(f) * uint64(d.Bits), bits: uint64(d.Bits), mask: uint32(1)<<d.Bits - 1,
		g: f / d.Group, left: d.Group - f%d.Group, group: d.Group,
	}
}

// next returns the next element's u + Zero[g].
func (r *deltaReader) next() int32 {
	if r.left == 0 {
		r.g++
		r.left = r.group
	}
	r.left--
	i := r.bit >> 3
	win := uint32(r.data[i])
	if i+1 < uint64(len(r.data)) {
		win |= uint32(r.data[i+1]) << 8
	}
	u := win >> (r.bit & 7) & r.mask
	r.bit += r.bits
	return int32(u) + r.zero[r.g]
}

// decodeGo writes elements [f0, f0+len(dst)) of w (with a delta) by the formula,
// without the exceptions.
func decodeGo(dst []float32, w *Packed, f0 int) {
	if len(dst) == 0 {
		return
	}
	d := w.Delta
	f1 := f0 + len(dst)
	switch {
	case w.BaseF32 != nil:
		r := newDeltaReader(d, f0)
		base := w.BaseF32[f0:f1]
		for i := range dst {
			// the conversion keeps the product rounded (no fused multiply-add)
			dst[i] = base[i] + float32(float32(r.next())*d.Scale)
		}
	case w.BaseI16 != nil:
		decodeIntGo(dst, w.BaseI16[f0:f1], d, f0)
	case w.BaseI8 != nil:
		decodeIntGo(dst, w.BaseI8[f0:f1], d, f0)
	default:
		r := newDeltaReader(d, f0)
		for i := range dst {
			dst[i] = float32(r.next()) * d.Scale
		}
	}
}

// decodeIntGo is decodeGo for an integer base.
func decodeIntGo[T int8 | int16](dst []float32, base []T, d *quant.GroupPacked, f0 int) {
	r := newDeltaReader(d, f0)
	base = base[:len(dst)]
	for i := range dst {
		dst[i] = float32(int32(base[i])+r.next()) * d.Scale
	}
}

// elemValue is element i of w by the formula, ignoring the exceptions.
func elemValue(w *Packed, i int) float32 {
	var v [1]float32
	decodeGo(v[:], w, i)
	return v[0]
}
