// Command matmul generates kernels/matmul_amd64.s and its Go declarations
// (kernels/matmul_amd64_stubs.go) with avo: the AVX-512 and AVX2+FMA versions of
// the matrix kernels that kernels/matmul.go and kernels/packed.go drive. Run it
// through go generate in kernels (see the //go:generate line of
// kernels/matmul_amd64.go):
//
//	go generate ./kernels
//
// The kernels, for each level (AVX512: 16 float32 lanes, AVX2: 8):
//
//   - gemm<mr>x<nr>: the GEMM micro-kernel, c[mr×nr] (+)= a-panel · b-panel over
//     kc packed steps (the panel layouts are packA and packB's in matmul.go);
//   - gemv{Dot,Axpy}<base>M<m>: the products with m = 1..4 rows of activations
//     that stream the weight once, for a dense float32 weight (Dense) or a
//     packed one whose base is F32, I16, I8 or None (a delta alone) and whose delta is decoded on the
//     fly in registers;
//   - decode<base>: the packed matrix's values, written out (Dense, GEMM panels);
//   - transpose8x8AVX: 8×8 float32 block transposes (packing of transposed panels);
//   - prefetchT0: software prefetch of a byte range (the GEMM's panel decoding
//     reads short runs far apart, which the hardware prefetchers miss).
//
// A packed weight is walked as one contiguous run of rows (its flat order): the
// delta bits of a vector of lanes elements start on a byte (the run starts at a
// multiple of lanes), and the group's zero point changes only between vectors
// (the Go side guarantees both; see packedFast in packed.go). One vector's
// unsigned deltas are decoded by a table for the width: the bytes holding lane
// t's bits are gathered into a 16-bit word by VPSHUFB, widened to 32 bits, shifted
// right by (t*bits)%8 and masked. The value is then formed exactly as denseRef
// does (base + float32(u+zero)*scale, or float32(code+u+zero)*scale, without FMA),
// so decoded values are the reference's bit for bit.
package main

import (
	"encoding/binary"
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("amd64,!purego")
	defineTables()
	for _, l := range []level{avx512, avx2} {
		for mr := 1; mr <= l.mr; mr++ {
			micro(l, mr)
		}
		for _, op := range []int{opDot, opAxpy} {
			for _, b := range []baseKind{dense, f32, i16, i8, none} {
				for m := 1; m <= maxM; m++ {
					newGemv(l, op, b, m).generate()
				}
			}
		}
		for _, b := range []baseKind{f32, i16, i8, none} {
			newGemv(l, opDecode, b, 0).generate()
		}
	}
	transpose()
	prefetch()
	Generate()
}

// maxM is the most activation rows a GEMV kernel takes (the Go side's gemvMaxM).
const maxM = 8

// level is one instruction set the kernels are generated for.
type level struct {
	suffix    string // of the function names
	lanes     int    // float32 lanes in a vector
	z         bool   // AVX-512: ZMM registers, opmasks, embedded broadcasts
	mr, nr    int    // GEMM micro-tile: rows (panel stride of a) and columns
	loadBytes int    // bytes one delta load reads (the Go side keeps them in bounds)
	needs     string // for the doc comments
}

var (
	avx512 = level{"AVX512", 16, true, 8, 32, 16, "AVX512F, AVX512BW, AVX512VL, AVX2 and FMA"}
	avx2   = level{"AVX2", 8, false, 6, 16, 8, "AVX2 and FMA"}
)

// vec allocates a full-width vector register.
func (l level) vec() VecVirtual {
	if l.z {
		return ZMM()
	}
	return YMM()
}

// zero clears v.
func (l level) zero(v VecVirtual) {
	if l.z {
		VPXORD(v, v, v)
	} else {
		VXORPS(v, v, v)
	}
}

// Tables.

var (
	decTable = map[bool]Mem{} // by level.z: the delta decode tables
	tail16   Mem              // uint16 (1<<i)-1 for i in [0, 16): AVX-512 tail opmasks
	tail32   Mem              // eight int32 -1 then eight 0: AVX2 tail masks, from index 8-n
)

// decodeRowSize is the bytes of one width's entry in a level's decode table.
func (l level) decodeRowSize() int {
	if l.z {
		return 128
	}
	return 64
}

// decodeRow is the decode table entry of a width for a level: the VPSHUFB
// control that gathers lane t's bytes (byte (t*bits)/8, and the next one when
// its bits reach into it) into 16-bit word t, then the per-lane right shifts
// (t*bits)%8 as uint32, then the mask (1<<bits)-1 as a uint32.
func (l level) decodeRow(bits int) []byte {
	row := make([]byte, l.decodeRowSize())
	if bits == 0 {
		return row
	}
	shifts, mask := 2*l.lanes, 6*l.lanes
	for t := range l.lanes {
		bit := t * bits
		lo, s := bit/8, bit%8
		hi := 0x80 // VPSHUFB writes 0
		if s+bits > 8 {
			hi = lo + 1
		}
		if hi != 0x80 && hi >= l.loadBytes || lo >= l.loadBytes {
			panic("decode table reads past the load")
		}
		row[2*t], row[2*t+1] = byte(lo), byte(hi)
		binary.LittleEndian.PutUint32(row[shifts+4*t:], uint32(s))
	}
	binary.LittleEndian.PutUint32(row[mask:], uint32(1)<<bits-1)
	return row
}

func defineTables() {
	for _, l := range []level{avx512, avx2} {
		t := GLOBL("mmdecode"+l.suffix, RODATA|NOPTR)
		for bits := 0; bits <= 8; bits++ {
			row := l.decodeRow(bits)
			for i := 0; i < len(row); i += 8 {
				DATA(bits*len(row)+i, U64(binary.LittleEndian.Uint64(row[i:])))
			}
		}
		decTable[l.z] = t
	}
	tail16 = GLOBL("mmtail16", RODATA|NOPTR)
	for i := range 16 {
		DATA(2*i, U16(uint16(1)<<i-1))
	}
	tail32 = GLOBL("mmtail32", RODATA|NOPTR)
	for i := range 16 {
		v := uint32(0)
		if i < 8 {
			v = 0xffffffff
		}
		DATA(4*i, U32(v))
	}
}

// pmem is the memory operand of a parameter.
func pmem(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}

// The GEMM micro-kernel.

// micro emits gemm<mr>x<nr>: c[i][j] (+)= sum over p < kc of a[p*l.mr+i] *
// b[p*l.nr+j] for i < mr, j < nr; c's rows are ldc floats apart.
func micro(l level, mr int) {
	name := fmt.Sprintf("gemm%dx%d%s", mr, l.nr, l.suffix)
	TEXT(name, NOSPLIT, "func(kc int, a, b, c *float32, ldc int, acc bool)")
	Pragma("noescape")
	Doc(name+" computes the "+fmt.Sprint(mr)+"x"+fmt.Sprint(l.nr)+" tile c = a·b (or c += a·b with acc) over kc steps",
		fmt.Sprintf("of the packed panels a (%d floats a step, the first %d used) and b (%d floats a step);", l.mr, mr, l.nr),
		"c's rows are ldc floats apart. Requires "+l.needs+".")
	kc := load("kc")
	a := load("a")
	b := load("b")
	nv := l.nr / l.lanes
	acc := make([][]VecVirtual, mr)
	for i := range acc {
		acc[i] = make([]VecVirtual, nv)
		for v := range acc[i] {
			acc[i][v] = l.vec()
			l.zero(acc[i][v])
		}
	}
	step := func(u int) {
		bv := make([]VecVirtual, nv)
		for v := range bv {
			bv[v] = l.vec()
			VMOVUPS(Mem{Base: b, Disp: 4 * (u*l.nr + v*l.lanes)}, bv[v])
		}
		for i := range mr {
			am := Mem{Base: a, Disp: 4 * (u*l.mr + i)}
			if l.z {
				for v := range nv {
					VFMADD231PS_BCST(am, bv[v], acc[i][v])
				}
				continue
			}
			t := YMM()
			VBROADCASTSS(am, t)
			for v := range nv {
				VFMADD231PS(bv[v], t, acc[i][v])
			}
		}
	}
	const unroll = 4
	Label("loop4")
	CMPQ(kc, U8(unroll))
	JB(LabelRef("loop1"))
	for u := range unroll {
		step(u)
	}
	ADDQ(U32(4*unroll*l.mr), a)
	ADDQ(U32(4*unroll*l.nr), b)
	SUBQ(U8(unroll), kc)
	JMP(LabelRef("loop4"))
	Label("loop1")
	TESTQ(kc, kc)
	JZ(LabelRef("store"))
	step(0)
	ADDQ(U32(4*l.mr), a)
	ADDQ(U32(4*l.nr), b)
	DECQ(kc)
	JMP(LabelRef("loop1"))

	Label("store")
	c := load("c")
	ldc := load("ldc")
	SHLQ(U8(2), ldc)
	flag := load("acc")
	TESTQ(flag, flag)
	JZ(LabelRef("overwrite"))
	for i := range mr {
		for v := range nv {
			m := Mem{Base: c, Disp: 4 * v * l.lanes}
			VADDPS(m, acc[i][v], acc[i][v])
			VMOVUPS(acc[i][v], m)
		}
		if i < mr-1 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
	Label("overwrite")
	for i := range mr {
		for v := range nv {
			VMOVUPS(acc[i][v], Mem{Base: c, Disp: 4 * v * l.lanes})
		}
		if i < mr-1 {
			ADDQ(ldc, c)
		}
	}
	VZEROUPPER()
	RET()
}

// The GEMV and decode kernels.

const (
	opDot    = iota // c[i][j] = sum_p a[i][p] * W[j][p]: one output per weight row
	opAxpy          // c[i][:] += a[i][p] * W[p][:]: one activation per weight row
	opDecode        // dst = the weight's values
)

var opNames = map[int]string{opDot: "Dot", opAxpy: "Axpy", opDecode: "Decode"}

// baseKind is the form of a weight's base.
type baseKind struct {
	name, goType string
	size         int // bytes per element
	packed       bool
}

var (
	dense = baseKind{"Dense", "float32", 4, false}
	f32   = baseKind{"F32", "float32", 4, true}
	i16   = baseKind{"I16", "int16", 2, true}
	i8    = baseKind{"I8", "int8", 1, true}
	// none is a delta without a base (w = float32(u+zero)*scale): the delta
	// half of a base product shared by several fine-tunes. Its base pointer is
	// not read.
	none = baseKind{"None", "int8", 0, true}
)

// gemv generates one GEMV or decode kernel.
type gemv struct {
	l    level
	op   int
	base baseKind
	m    int // activation rows (dot, axpy)
	name string

	w     GPVirtual // the weight (dense) or base (packed) pointer, moving
	wskip GPVirtual // dense: bytes from a row's end to the next row's start
	cnt   GPVirtual // elements left in the row (dense) or in the current chunk (packed)
	rest  GPVirtual // packed: elements left in the row after the current chunk

	// packed
	data, zp, left, vb             GPVirtual
	shuf, shifts, mask, scale, zer VecVirtual

	a, lda GPVirtual // activation row 0, and the rows' distance in bytes
	c, ldc GPVirtual // output rows likewise
	// the kernels with m > 3 rows also use 3*ld, and those with m > 4 a pointer
	// to row 4 (see rowMem)
	a4, lda3 GPVirtual
	c4, ldc3 GPVirtual

	nlabel int
}

func newGemv(l level, op int, b baseKind, m int) *gemv {
	g := &gemv{l: l, op: op, base: b, m: m}
	if op == opDecode {
		g.name = "decode" + b.name + l.suffix
	} else {
		g.name = fmt.Sprintf("gemv%s%sM%d%s", opNames[op], b.name, m, l.suffix)
	}
	return g
}

func (g *gemv) signature() string {
	t := g.base.goType
	switch {
	case g.op == opDecode:
		return fmt.Sprintf("func(n int, dst *float32, base *%s, data *byte, zero *int32, left, group int, scale float32, bits int)", t)
	case !g.base.packed:
		return "func(rows, rowLen int, a *float32, lda int, c *float32, ldc int, w *float32, ldw int)"
	}
	return fmt.Sprintf("func(rows, rowLen int, a *float32, lda int, c *float32, ldc int, base *%s, data *byte, zero *int32, left, group int, scale float32, bits int)", t)
}

func (g *gemv) doc() {
	var what string
	switch g.op {
	case opDot:
		what = fmt.Sprintf("c[i*ldc+r] = sum over p < rowLen of a[i*lda+p] * W[r*rowLen+p], for i < %d and r < rows", g.m)
	case opAxpy:
		what = fmt.Sprintf("c[i*ldc+j] += sum over r < rows of a[i*lda+r] * W[r*rowLen+j], for i < %d and j < rowLen", g.m)
	case opDecode:
		what = "dst[e] = W[e] for e < n (n a multiple of the lanes)"
	}
	var wdesc string
	if g.base.packed {
		wdesc = "W the packed run that starts at base, data (the delta bits, byte aligned) and zero (its group's " +
			"zero point, left elements of the group from the start, group elements a group); rowLen a multiple of the lanes; " +
			"no delta load reaches past the data's end (the Go side checks)."
	} else {
		wdesc = "W's rows ldw floats apart."
	}
	Doc(g.name+" computes "+what+";", wdesc, "Requires "+g.l.needs+".")
}

func (g *gemv) generate() {
	TEXT(g.name, NOSPLIT, g.signature())
	Pragma("noescape")
	g.doc()
	switch g.op {
	case opDot:
		g.dot()
	case opAxpy:
		g.axpy()
	case opDecode:
		g.decode()
	}
	VZEROUPPER()
	RET()
}

// setupWeight loads the weight pointer and, for a packed weight, the decoding
// state and constants.
func (g *gemv) setupWeight() {
	l := g.l
	if !g.base.packed {
		g.w = load("w")
		g.wskip = load("ldw")
		SUBQ(pmem("rowLen"), g.wskip)
		SHLQ(U8(2), g.wskip)
		return
	}
	g.w = load("base")
	g.data = load("data")
	g.zp = load("zero")
	g.left = load("left")
	bits := load("bits")
	g.vb = GP64() // delta bytes per vector: bits*lanes/8
	MOVQ(bits, g.vb)
	if l.z {
		SHLQ(U8(1), g.vb)
	}
	tbl := GP64()
	LEAQ(decTable[l.z], tbl)
	if l.z {
		SHLQ(U8(7), bits)
	} else {
		SHLQ(U8(6), bits)
	}
	ADDQ(bits, tbl)
	if l.z {
		g.shuf = YMM()
		VMOVDQU(Mem{Base: tbl}, g.shuf)
		g.shifts = ZMM()
		VMOVDQU32(Mem{Base: tbl, Disp: 32}, g.shifts)
		g.mask = ZMM()
		VPBROADCASTD(Mem{Base: tbl, Disp: 96}, g.mask)
	} else {
		g.shuf = XMM()
		VMOVDQU(Mem{Base: tbl}, g.shuf)
		g.shifts = YMM()
		VMOVDQU(Mem{Base: tbl, Disp: 16}, g.shifts)
		g.mask = YMM()
		VPBROADCASTD(Mem{Base: tbl, Disp: 48}, g.mask)
	}
	g.scale = l.vec()
	VBROADCASTSS(pmem("scale"), g.scale)
	g.zer = l.vec()
	VPBROADCASTD(Mem{Base: g.zp}, g.zer)
}

func (g *gemv) label(s string) string {
	g.nlabel++
	return fmt.Sprintf("%s%d", s, g.nlabel)
}

// nextGroup moves to the next group's zero point when the current one is used up.
func (g *gemv) nextGroup() {
	same := g.label("samegroup")
	TESTQ(g.left, g.left)
	JNZ(LabelRef(same))
	ADDQ(U8(4), g.zp)
	VPBROADCASTD(Mem{Base: g.zp}, g.zer)
	MOVQ(pmem("group"), g.left)
	Label(same)
}

// value returns a register with the weight's values for vector k (0 or 1) of
// the current step.
func (g *gemv) value(k int) VecVirtual {
	l := g.l
	bm := Mem{Base: g.w, Disp: k * l.lanes * g.base.size}
	if !g.base.packed {
		x := l.vec()
		VMOVUPS(bm, x)
		return x
	}
	dm := Mem{Base: g.data}
	if k == 1 {
		dm.Index, dm.Scale = g.vb, 1
	}
	u := l.vec()
	if l.z {
		t := YMM()
		VBROADCASTI32X4(dm, t) // EVEX: t may be above 15
		VPSHUFB(g.shuf, t, t)
		VPMOVZXWD(t, u)
		VPSRLVD(g.shifts, u, u)
		VPANDD(g.mask, u, u)
	} else {
		t := XMM()
		VMOVQ(dm, t)
		VPSHUFB(g.shuf, t, t)
		VPMOVZXWD(t, u)
		VPSRLVD(g.shifts, u, u)
		VPAND(g.mask, u, u)
	}
	if g.base == f32 {
		// base + float32(u+zero)*scale: rounded twice as denseRef does for
		// decode, one fused multiply-add for the products
		VPADDD(g.zer, u, u)
		VCVTDQ2PS(u, u)
		if g.op == opDecode {
			VMULPS(g.scale, u, u)
			VADDPS(bm, u, u)
		} else {
			VFMADD213PS(bm, g.scale, u)
		}
		return u
	}
	// float32(code+u+zero)*scale, or float32(u+zero)*scale without a base
	if g.base == none {
		VPADDD(g.zer, u, u)
		VCVTDQ2PS(u, u)
		if g.op == opDecode {
			VMULPS(g.scale, u, u)
		}
		return u
	}
	x := l.vec()
	if g.base == i16 {
		VPMOVSXWD(bm, x)
	} else {
		VPMOVSXBD(bm, x)
	}
	VPADDD(u, x, x)
	VPADDD(g.zer, x, x)
	VCVTDQ2PS(x, x)
	if g.op == opDecode {
		VMULPS(g.scale, x, x)
	} // the products apply the scale once per output (dot) or activation (axpy)
	return x
}

// scaled reports whether the products leave the scale out of the values.
func (g *gemv) scaled() bool { return g.base == i16 || g.base == i8 || g.base == none }

// advance moves the weight past n vectors.
func (g *gemv) advance(n int) {
	if g.base.size > 0 {
		ADDQ(U32(n*g.l.lanes*g.base.size), g.w)
	}
	if !g.base.packed {
		return
	}
	if n == 1 {
		ADDQ(g.vb, g.data)
	} else {
		LEAQ(Mem{Base: g.data, Index: g.vb, Scale: 2}, g.data)
	}
}

// loopVectors emits the loop over a row's whole vectors (cnt elements), unroll
// (1 or 2) at a time; body emits vector k's work, next moves the other pointers
// past n vectors. For a packed weight the row is walked in chunks that end at
// the row's end or the group's, whichever comes first, so that the zero point is
// checked once a chunk; a packed row has no tail, a dense one leaves cnt < lanes.
func (g *gemv) loopVectors(unroll int, body func(k int), next func(n int)) {
	lanes := g.l.lanes
	if g.base.packed {
		MOVQ(g.cnt, g.rest)
		Label("chunk")
		TESTQ(g.rest, g.rest)
		JZ(LabelRef("rowdone"))
		g.nextGroup()
		// cnt = min(rest, left); both drop by it
		MOVQ(g.rest, g.cnt)
		CMPQ(g.left, g.cnt)
		CMOVQLT(g.left, g.cnt)
		SUBQ(g.cnt, g.rest)
		SUBQ(g.cnt, g.left)
	}
	if unroll == 2 {
		Label("loop2")
		CMPQ(g.cnt, U32(2*lanes))
		JB(LabelRef("one"))
		body(0)
		body(1)
		g.advance(2)
		next(2)
		SUBQ(U32(2*lanes), g.cnt)
		JMP(LabelRef("loop2"))
		Label("one")
		CMPQ(g.cnt, U32(lanes))
		JB(LabelRef("tail"))
		body(0)
		g.advance(1)
		next(1)
		SUBQ(U32(lanes), g.cnt)
	} else {
		Label("loop1")
		CMPQ(g.cnt, U32(lanes))
		JB(LabelRef("tail"))
		body(0)
		g.advance(1)
		next(1)
		SUBQ(U32(lanes), g.cnt)
		JMP(LabelRef("loop1"))
	}
	Label("tail")
	if g.base.packed {
		JMP(LabelRef("chunk"))
		Label("rowdone")
	}
}

// rowMem is the address of row i (0..7) of the activations or outputs: base is
// row 0, base4 row 4, ld the rows' distance in bytes and ld3 three times it.
func rowMem(i int, base, base4, ld, ld3 GPVirtual, disp int) Mem {
	if i >= 4 {
		base, i = base4, i-4
	}
	switch i {
	case 0:
		return Mem{Base: base, Disp: disp}
	case 1:
		return Mem{Base: base, Index: ld, Scale: 1, Disp: disp}
	case 2:
		return Mem{Base: base, Index: ld, Scale: 2, Disp: disp}
	}
	return Mem{Base: base, Index: ld3, Scale: 1, Disp: disp}
}

func (g *gemv) aMem(i, disp int) Mem { return rowMem(i, g.a, g.a4, g.lda, g.lda3, disp) }
func (g *gemv) cMem(i, disp int) Mem { return rowMem(i, g.c, g.c4, g.ldc, g.ldc3, disp) }

// times3 returns a new register holding 3*ld.
func times3(ld GPVirtual) GPVirtual {
	r := GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, r)
	return r
}

// row4 sets r4 = base + 4*ld.
func row4(r4, base, ld GPVirtual) {
	LEAQ(Mem{Base: base, Index: ld, Scale: 4}, r4)
}

// tailMask loads the mask of the first cnt (1..lanes-1) lanes.
func (g *gemv) tailMask() Register {
	t := GP64()
	if g.l.z {
		LEAQ(tail16, t)
		k := K()
		KMOVW(Mem{Base: t, Index: g.cnt, Scale: 2}, k)
		return k
	}
	LEAQ(tail32, t)
	i := GP64()
	MOVQ(U32(8), i)
	SUBQ(g.cnt, i)
	mk := YMM()
	VMOVDQU(Mem{Base: t, Index: i, Scale: 4}, mk)
	return mk
}

// maskedLoad loads the lanes of mask from m, zeroing the others.
func (g *gemv) maskedLoad(m Mem, mask Register) VecVirtual {
	x := g.l.vec()
	if g.l.z {
		VMOVUPS_Z(m, mask, x)
	} else {
		VMASKMOVPS(m, mask, x)
	}
	return x
}

// maskedStore stores the lanes of mask of x to m.
func (g *gemv) maskedStore(x VecVirtual, mask Register, m Mem) {
	if g.l.z {
		VMOVUPS(x, mask, m)
	} else {
		VMASKMOVPS(x, mask, m)
	}
}

// hsum returns an XMM register whose lane 0 is the sum of v's lanes.
func (g *gemv) hsum(v VecVirtual) VecVirtual {
	y := v.AsY().(VecVirtual)
	if g.l.z {
		y = YMM()
		VEXTRACTF64X4(U8(1), v, y)
		VADDPS(y, v.AsY(), y)
	}
	x := XMM()
	if g.l.z {
		VEXTRACTF32X4(U8(1), y, x) // EVEX: the registers may be above 15
	} else {
		VEXTRACTF128(U8(1), y, x)
	}
	VADDPS(x, y.AsX(), x)
	t := XMM()
	VMOVHLPS(x, x, t)
	VADDPS(t, x, x)
	VMOVSHDUP(x, t)
	VADDSS(t, x, x)
	return x
}

func (g *gemv) dot() {
	l := g.l
	unroll := 2
	if !l.z && g.m > 2 {
		unroll = 1 // registers
	}
	g.lda = load("lda")
	SHLQ(U8(2), g.lda)
	g.c = load("c")
	g.ldc = load("ldc")
	SHLQ(U8(2), g.ldc)
	g.setupWeight()
	g.a, g.cnt, g.rest = GP64(), GP64(), GP64()
	if g.m > 3 {
		g.lda3 = times3(g.lda)
	}
	if g.m > 4 {
		g.a4 = GP64()
	}
	acc := make([][]VecVirtual, g.m)
	for i := range acc {
		acc[i] = make([]VecVirtual, unroll)
		for k := range acc[i] {
			acc[i][k] = l.vec()
		}
	}

	Label("row")
	MOVQ(pmem("a"), g.a)
	if g.m > 4 {
		row4(g.a4, g.a, g.lda)
	}
	MOVQ(pmem("rowLen"), g.cnt)
	for i := range acc {
		for k := range acc[i] {
			l.zero(acc[i][k])
		}
	}
	g.loopVectors(unroll, func(k int) {
		x := g.value(k)
		for i := range g.m {
			VFMADD231PS(g.aMem(i, 4*k*l.lanes), x, acc[i][k])
		}
	}, func(n int) {
		ADDQ(U32(4*n*l.lanes), g.a)
		if g.m > 4 {
			ADDQ(U32(4*n*l.lanes), g.a4)
		}
	})
	if !g.base.packed {
		TESTQ(g.cnt, g.cnt)
		JZ(LabelRef("reduce"))
		mask := g.tailMask()
		x := g.maskedLoad(Mem{Base: g.w}, mask)
		for i := range g.m {
			t := g.maskedLoad(g.aMem(i, 0), mask)
			VFMADD231PS(t, x, acc[i][0])
		}
		LEAQ(Mem{Base: g.w, Index: g.cnt, Scale: 4}, g.w)
		Label("reduce")
	}
	if g.m > 3 {
		g.ldc3 = times3(g.ldc)
	}
	if g.m > 4 {
		g.c4 = GP64()
		row4(g.c4, g.c, g.ldc)
	}
	for i := range g.m {
		if unroll == 2 {
			VADDPS(acc[i][1], acc[i][0], acc[i][0])
		}
		x := g.hsum(acc[i][0])
		if g.scaled() {
			VMULSS(g.scale.AsX(), x, x)
		}
		VMOVSS(x, g.cMem(i, 0))
	}
	ADDQ(U8(4), g.c)
	if !g.base.packed {
		ADDQ(g.wskip, g.w)
	}
	DECQ(pmem("rows"))
	JNZ(LabelRef("row"))
}

func (g *gemv) axpy() {
	l := g.l
	g.a = load("a")
	g.lda = load("lda")
	SHLQ(U8(2), g.lda)
	g.ldc = load("ldc")
	SHLQ(U8(2), g.ldc)
	if g.m > 3 {
		g.ldc3 = times3(g.ldc)
	}
	g.setupWeight()
	g.c, g.cnt, g.rest = GP64(), GP64(), GP64()
	if g.m > 4 {
		g.c4 = GP64()
	}
	s := make([]VecVirtual, g.m)
	for i := range s {
		s[i] = l.vec()
	}

	Label("row")
	// this row's activations: 3*lda and row 4 live only here
	if g.m > 3 {
		g.lda3 = times3(g.lda)
	}
	if g.m > 4 {
		g.a4 = GP64()
		row4(g.a4, g.a, g.lda)
	}
	for i := range s {
		VBROADCASTSS(g.aMem(i, 0), s[i])
		if g.scaled() {
			VMULPS(g.scale, s[i], s[i])
		}
	}
	MOVQ(pmem("c"), g.c)
	if g.m > 4 {
		row4(g.c4, g.c, g.ldc)
	}
	MOVQ(pmem("rowLen"), g.cnt)
	g.loopVectors(2, func(k int) {
		x := g.value(k)
		for i := range g.m {
			t := l.vec()
			m := g.cMem(i, 4*k*l.lanes)
			VMOVUPS(m, t)
			VFMADD231PS(x, s[i], t)
			VMOVUPS(t, m)
		}
	}, func(n int) {
		ADDQ(U32(4*n*l.lanes), g.c)
		if g.m > 4 {
			ADDQ(U32(4*n*l.lanes), g.c4)
		}
	})
	if !g.base.packed {
		TESTQ(g.cnt, g.cnt)
		JZ(LabelRef("next"))
		mask := g.tailMask()
		x := g.maskedLoad(Mem{Base: g.w}, mask)
		for i := range g.m {
			m := g.cMem(i, 0)
			t := g.maskedLoad(m, mask)
			VFMADD231PS(x, s[i], t)
			g.maskedStore(t, mask, m)
		}
		LEAQ(Mem{Base: g.w, Index: g.cnt, Scale: 4}, g.w)
		Label("next")
		ADDQ(g.wskip, g.w)
	}
	ADDQ(U8(4), g.a)
	DECQ(pmem("rows"))
	JNZ(LabelRef("row"))
}

func (g *gemv) decode() {
	l := g.l
	g.setupWeight()
	dst := load("dst")
	g.cnt = load("n")
	g.rest = GP64()
	g.loopVectors(2, func(k int) {
		VMOVUPS(g.value(k), Mem{Base: dst, Disp: 4 * k * l.lanes})
	}, func(n int) {
		ADDQ(U32(4*n*l.lanes), dst)
	})
}

// transpose emits transpose8x8AVX: n blocks of 8 rows × 8 columns of src (rows ld
// floats apart) go to dst transposed (rows ldd floats apart): dst[q*ldd+r] =
// src[r*ld+q] for r, q < 8, the blocks 8 columns of src (8 rows of dst) apart.
func transpose() {
	TEXT("transpose8x8AVX", NOSPLIT, "func(dst, src *float32, ld, ldd, n int)")
	Pragma("noescape")
	Doc("transpose8x8AVX writes dst[(8b+q)*ldd+r] = src[r*ld+8b+q] for r, q < 8 and b < n.",
		"Requires AVX.")
	src := load("src")
	dst := load("dst")
	ld := load("ld")
	ldd := load("ldd")
	n := load("n")
	SHLQ(U8(2), ld)
	SHLQ(U8(2), ldd)
	ld3, s4 := GP64(), GP64()
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, ld3)
	LEAQ(Mem{Base: src, Index: ld, Scale: 4}, s4)
	ldd3, d4 := GP64(), GP64()
	LEAQ(Mem{Base: ldd, Index: ldd, Scale: 2}, ldd3)
	LEAQ(Mem{Base: dst, Index: ldd, Scale: 4}, d4)
	at := func(base, l, l3 GPVirtual, i, disp int) Mem {
		switch i {
		case 0:
			return Mem{Base: base, Disp: disp}
		case 1:
			return Mem{Base: base, Index: l, Scale: 1, Disp: disp}
		case 2:
			return Mem{Base: base, Index: l, Scale: 2, Disp: disp}
		}
		return Mem{Base: base, Index: l3, Scale: 1, Disp: disp}
	}
	Label("block")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	for half := range 2 { // columns 4*half .. 4*half+3
		r := make([]VecVirtual, 4)
		for q := range 4 {
			// lanes 0-3: row q, lanes 4-7: row q+4
			r[q] = YMM()
			VMOVUPS(at(src, ld, ld3, q, 16*half), r[q].AsX())
			VINSERTF128(U8(1), at(s4, ld, ld3, q, 16*half), r[q], r[q])
		}
		t0, t1, t2, t3 := YMM(), YMM(), YMM(), YMM()
		VUNPCKLPS(r[1], r[0], t0) // r0_0 r1_0 r0_1 r1_1
		VUNPCKHPS(r[1], r[0], t1) // r0_2 r1_2 r0_3 r1_3
		VUNPCKLPS(r[3], r[2], t2)
		VUNPCKHPS(r[3], r[2], t3)
		o := []VecVirtual{YMM(), YMM(), YMM(), YMM()}
		VSHUFPS(U8(0x44), t2, t0, o[0]) // column 0: r0_0 r1_0 r2_0 r3_0
		VSHUFPS(U8(0xee), t2, t0, o[1])
		VSHUFPS(U8(0x44), t3, t1, o[2])
		VSHUFPS(U8(0xee), t3, t1, o[3])
		for q := range 4 {
			col := 4*half + q
			if col < 4 {
				VMOVUPS(o[q], at(dst, ldd, ldd3, col, 0))
			} else {
				VMOVUPS(o[q], at(d4, ldd, ldd3, col-4, 0))
			}
		}
	}
	ADDQ(U8(32), src)
	ADDQ(U8(32), s4)
	LEAQ(Mem{Base: dst, Index: ldd, Scale: 8}, dst)
	LEAQ(Mem{Base: d4, Index: ldd, Scale: 8}, d4)
	DECQ(n)
	JMP(LabelRef("block"))
	Label("done")
	VZEROUPPER()
	RET()
}

// load loads a parameter into a new general-purpose register.
func load(name string) GPVirtual {
	r := GP64()
	Load(Param(name), r)
	return r
}

// prefetch emits prefetchT0: PREFETCHT0 on each 64-byte line of [p, p+n).
func prefetch() {
	TEXT("prefetchT0", NOSPLIT, "func(p *byte, n int)")
	Pragma("noescape")
	Doc("prefetchT0 prefetches the cache lines of [p, p+n) into all cache levels.", "Requires SSE.")
	p := load("p")
	n := load("n")
	t := GP64()
	MOVQ(p, t)
	ANDQ(U8(63), t)
	ADDQ(t, n) // count from p's line start
	Label("line")
	CMPQ(n, U8(0))
	JLE(LabelRef("done"))
	PREFETCHT0(Mem{Base: p})
	ADDQ(U8(64), p)
	SUBQ(U8(64), n)
	JMP(LabelRef("line"))
	Label("done")
	RET()
}
