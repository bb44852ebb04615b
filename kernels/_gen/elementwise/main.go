// Command elementwise generates kernels/elementwise_amd64.s and its Go stubs with
// avo: the AVX2+FMA and AVX-512 versions of the vector primitives declared by
// vecKernels in kernels/elementwise.go. Run it through go generate in kernels:
//
//	go generate ./kernels
//
// Each assembly function computes exactly the scalar algorithm of the same name
// in elementwise.go and norm.go (exp32, erf32, gelu32, the LayerNorm sums), with
// the same float32 constants; the constants below must stay equal to those.
package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The constants of elementwise.go.
const (
	expLo  = -104
	expHi  = 88.8
	log2e  = 1.44269504088896341
	ln2Hi  = 0.693359375
	ln2Lo  = -2.12194440e-4
	erfLim = 0.75
)

var (
	expP = [...]float32{1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1}
	erfS = [...]float32{1.1283791, -0.3761262, 0.11283393, -0.026835434, 0.0051159817, -0.0006761097}
	erfP = [...]float32{-1.2655121, 1.0000002, 0.37488836, 0.08608908, -0.11374725, 0.0016013731, -0.5117559, 0.6707619, -0.24328732}
)

func main() {
	ConstraintExpr("amd64,!purego")
	defineConstants()
	for _, l := range []level{avx512, avx2} {
		maxOf(l)
		expShift(l)
		scale(l)
		mapKernel(l, "erf", "dst[i] = erf(x[i]) (erf32).", l.erf)
		mapKernel(l, "gelu", "dst[i] = x[i]*(1+erf(x[i]/√2))/2 (gelu32).", l.gelu)
		sum(l)
		sumSqDev(l)
		normalize(l)
		tapAdd(l)
	}
	Generate()
}

// level is one instruction set the kernels are generated for.
type level struct {
	suffix string // of the function names
	lanes  int    // float32 lanes in a vector
	z      bool   // AVX-512: ZMM registers, opmasks, embedded broadcasts
	needs  string // for the doc comments
}

var (
	avx512 = level{"AVX512", 16, true, "AVX512F, AVX2 and FMA"}
	avx2   = level{"AVX2", 8, false, "AVX2 and FMA"}
)

// vec allocates a full-width vector register; half one of half the width (the
// float32 source of a vector of float64).
func (l level) vec() VecVirtual {
	if l.z {
		return ZMM()
	}
	return YMM()
}

func (l level) half() VecVirtual {
	if l.z {
		return YMM()
	}
	return XMM()
}

// Constants live in one read-only table, each repeated over 32 bytes: AVX2 uses
// them as 256-bit memory operands, AVX-512 broadcasts their first 4 bytes.
var (
	constTable Mem
	constAt    = map[string]int{}
	mask16     Mem // uint16 (1<<i)-1 for i in [0, 16): AVX-512 tail opmasks
	mask32     Mem // eight int32 -1 then eight 0: AVX2 tail masks, from index 8-n
	mask64     Mem // four int64 -1 then four 0: float64 tail masks, from index 4-n
)

func defineConstants() {
	constTable = GLOBL("elemconst", RODATA|NOPTR)
	off := 0
	u32 := func(name string, v uint32) {
		constAt[name] = off
		for i := range 8 {
			DATA(off+4*i, U32(v))
		}
		off += 32
	}
	f32 := func(name string, v float32) { u32(name, math.Float32bits(v)) }
	f32("expLo", expLo)
	f32("expHi", expHi)
	f32("log2e", log2e)
	f32("ln2Hi", ln2Hi)
	f32("ln2Lo", ln2Lo)
	for i, c := range expP {
		f32(name("expP", i), c)
	}
	for i, c := range erfS {
		f32(name("erfS", i), c)
	}
	for i, c := range erfP {
		f32(name("erfP", i), c)
	}
	f32("erfLim", erfLim)
	f32("zero", 0)
	f32("half", 0.5)
	f32("one", 1)
	f32("two", 2)
	f32("invSqrt2", math.Sqrt2/2)
	u32("negInf", 0xff800000)
	u32("absMask", 0x7fffffff)
	u32("signMask", 0x80000000)
	u32("bias127", 127)

	mask16 = GLOBL("tailmask16", RODATA|NOPTR)
	for i := range 16 {
		DATA(2*i, U16(uint16(1)<<i-1))
	}
	mask32 = GLOBL("tailmask32", RODATA|NOPTR)
	for i := range 16 {
		v := uint32(0)
		if i < 8 {
			v = 0xffffffff
		}
		DATA(4*i, U32(v))
	}
	mask64 = GLOBL("tailmask64", RODATA|NOPTR)
	for i := range 8 {
		v := uint64(0)
		if i < 4 {
			v = math.MaxUint64
		}
		DATA(8*i, U64(v))
	}
}

func name(prefix string, i int) string { return prefix + string(rune('0'+i)) }

// c is the constant called name.
func c(name string) Mem {
	off, ok := constAt[name]
	if !ok {
		panic("no constant " + name)
	}
	return constTable.Offset(off)
}

// Operations with a constant operand.

// bcast returns a register holding the constant in every lane.
func (l level) bcast(name string) VecVirtual {
	v := l.vec()
	VBROADCASTSS(c(name), v)
	return v
}

// fmaddC: acc = mul*acc + constant.
func (l level) fmaddC(name string, mul, acc VecVirtual) {
	if l.z {
		VFMADD213PS_BCST(c(name), mul, acc)
	} else {
		VFMADD213PS(c(name), mul, acc)
	}
}

// fnmaddC: acc = acc - mul*constant (one rounding).
func (l level) fnmaddC(name string, mul, acc VecVirtual) {
	if l.z {
		VFNMADD231PS_BCST(c(name), mul, acc)
	} else {
		VFNMADD231PS(c(name), mul, acc)
	}
}

// mulC: dst = src*constant.
func (l level) mulC(name string, src, dst VecVirtual) {
	if l.z {
		VMULPS_BCST(c(name), src, dst)
	} else {
		VMULPS(c(name), src, dst)
	}
}

// addC: dst = src+constant.
func (l level) addC(name string, src, dst VecVirtual) {
	if l.z {
		VADDPS_BCST(c(name), src, dst)
	} else {
		VADDPS(c(name), src, dst)
	}
}

// andC: dst = src & constant, bitwise.
func (l level) andC(name string, src, dst VecVirtual) {
	if l.z {
		VPANDD_BCST(c(name), src, dst)
	} else {
		VANDPS(c(name), src, dst)
	}
}

// or: dst = a | b, bitwise.
func (l level) or(a, b, dst VecVirtual) {
	if l.z {
		VPORD(a, b, dst)
	} else {
		VORPS(a, b, dst)
	}
}

// zero sets v to all zero bits.
func (l level) zero(v VecVirtual) {
	if l.z {
		VPXORQ(v, v, v)
	} else {
		VXORPS(v, v, v)
	}
}

// lessC returns the lanes where src < constant (ordered: false for NaN), as an
// opmask (AVX-512) or a vector of all-ones lanes (AVX2).
func (l level) lessC(name string, src VecVirtual) Register {
	if l.z {
		k := K()
		VCMPPS_BCST(U8(1), c(name), src, k) // predicate 1: LT_OS
		return k
	}
	m := YMM()
	VCMPPS(U8(1), c(name), src, m)
	return m
}

// selectInto sets dst = a in the lanes of mask, leaving dst elsewhere.
func (l level) selectInto(mask Register, a, dst VecVirtual) {
	if l.z {
		VMOVAPS(a, mask, dst)
	} else {
		VBLENDVPS(mask, a, dst, dst)
	}
}

// The algorithms.

// exp returns exp(x) (exp32); lo and hi hold expLo and expHi. x is overwritten.
func (l level) exp(x, lo, hi VecVirtual) VecVirtual {
	// Clamp with x as the second source, so that a NaN x goes through.
	VMAXPS(x, lo, x)
	VMINPS(x, hi, x)
	n := l.vec()
	l.mulC("log2e", x, n)
	if l.z {
		VRNDSCALEPS(U8(0), n, n) // round to nearest even
	} else {
		VROUNDPS(U8(0), n, n)
	}
	l.fnmaddC("ln2Hi", n, x) // r = x - n*ln2Hi - n*ln2Lo
	l.fnmaddC("ln2Lo", n, x)
	p := l.bcast("expP0")
	for i := 1; i < len(expP); i++ {
		l.fmaddC(name("expP", i), x, p)
	}
	r2 := l.vec()
	VMULPS(x, x, r2)
	VFMADD213PS(x, r2, p) // p = p*r² + r
	l.addC("one", p, p)
	if l.z {
		VSCALEFPS(n, p, p) // p * 2**n
		return p
	}
	// p * 2**n1 * 2**n2 with n1 = n>>1, n2 = n-n1, as exp32.
	n2 := l.vec()
	VCVTPS2DQ(n, n2)
	n1 := l.vec()
	VPSRAD(U8(1), n2, n1)
	VPSUBD(n1, n2, n2)
	VPADDD(c("bias127"), n1, n1)
	VPSLLD(U8(23), n1, n1)
	VPADDD(c("bias127"), n2, n2)
	VPSLLD(U8(23), n2, n2)
	VMULPS(n1, p, p)
	VMULPS(n2, p, p)
	return p
}

// erfSmall returns x*S(x²) (erfSmall).
func (l level) erfSmall(x VecVirtual) VecVirtual {
	s := l.vec()
	VMULPS(x, x, s)
	p := l.bcast(name("erfS", len(erfS)-1))
	for i := len(erfS) - 2; i >= 0; i-- {
		l.fmaddC(name("erfS", i), s, p)
	}
	VMULPS(x, p, p)
	return p
}

// erfcParts returns t = 1/(1 + a/2) and P(t) (erfcParts).
func (l level) erfcParts(a VecVirtual) (t, q VecVirtual) {
	d := l.vec()
	l.mulC("half", a, d) // exact, so this equals fma(0.5, a, 1)
	l.addC("one", d, d)
	t = l.bcast("one")
	VDIVPS(d, t, t)
	q = l.bcast(name("erfP", len(erfP)-1))
	for i := len(erfP) - 2; i >= 0; i-- {
		l.fmaddC(name("erfP", i), t, q)
	}
	return t, q
}

// erf returns erf(x) (erf32).
func (l level) erf(x, lo, hi VecVirtual) VecVirtual {
	a := l.vec()
	l.andC("absMask", x, a)
	t, q := l.erfcParts(a)
	VFNMADD231PS(a, a, q) // -a² + P(t), one rounding
	e := l.exp(q, lo, hi)
	VMULPS(t, e, e) // erfc(a)
	r := l.bcast("one")
	VSUBPS(e, r, r) // 1 - erfc(a)
	sign := l.vec()
	l.andC("signMask", x, sign)
	l.or(sign, r, r)
	small := l.erfSmall(x)
	l.selectInto(l.lessC("erfLim", a), small, r)
	return r
}

// gelu returns x*(1+erf(x/√2))/2 (gelu32).
func (l level) gelu(x, lo, hi VecVirtual) VecVirtual {
	z := l.vec()
	l.mulC("invSqrt2", x, z)
	a := l.vec()
	l.andC("absMask", z, a)
	h := l.vec()
	l.mulC("half", x, h)
	t, q := l.erfcParts(a)
	VFNMADD231PS(x, h, q) // -x²/2 + P(t), one rounding
	e := l.exp(q, lo, hi)
	VMULPS(t, e, e) // erfc(|z|)
	neg := l.vec()
	VMULPS(e, h, neg) // for x < 0: h*erfc
	r := l.bcast("two")
	VSUBPS(e, r, r)
	VMULPS(h, r, r) // for x >= 0: h*(2-erfc)
	if l.z {
		l.selectInto(l.lessC("zero", x), neg, r)
	} else {
		// By the sign bit: differs from x < 0 only for -0 and NaN, both
		// decided by the small form or NaN anyway.
		VBLENDVPS(x, neg, r, r)
	}
	small := l.erfSmall(z)
	VFMADD213PS(h, h, small) // h*erf + h
	l.selectInto(l.lessC("erfLim", a), small, r)
	return r
}

// Tails: the last n < lanes elements, through masked loads and stores.

// tailMask returns the mask of the first n lanes (n in [1, lanes)).
func (l level) tailMask(n Register) Register {
	tbl := GP64()
	if l.z {
		LEAQ(mask16, tbl)
		k := K()
		KMOVW(Mem{Base: tbl, Index: n, Scale: 2}, k)
		return k
	}
	LEAQ(mask32, tbl)
	i := GP64()
	MOVQ(U32(8), i)
	SUBQ(n, i)
	m := YMM()
	VMOVDQU(Mem{Base: tbl, Index: i, Scale: 4}, m)
	return m
}

// halfTailMask returns the mask of the first n lanes of a half vector (n in
// [1, lanes/2)) for the float32 sources of float64 vectors: an opmask, or the
// XMM lanes of the AVX2 table.
func (l level) halfTailMask(n Register) Register {
	if l.z {
		return l.tailMask(n)
	}
	tbl := GP64()
	LEAQ(mask32, tbl)
	i := GP64()
	MOVQ(U32(8), i)
	SUBQ(n, i)
	m := XMM()
	VMOVDQU(Mem{Base: tbl, Index: i, Scale: 4}, m)
	return m
}

func (l level) maskedLoad(m Mem, mask Register, dst VecVirtual) {
	if l.z {
		VMOVUPS_Z(m, mask, dst)
	} else {
		VMASKMOVPS(m, mask, dst)
	}
}

func (l level) maskedStore(src VecVirtual, mask Register, m Mem) {
	if l.z {
		VMOVUPS(src, mask, m)
	} else {
		VMASKMOVPS(src, mask, m)
	}
}

// Horizontal reductions to lane 0 of an XMM register.

func (l level) reducePS(v VecVirtual, op func(a, b, dst Op)) VecVirtual {
	y := v
	if l.z {
		y = YMM()
		VEXTRACTF64X4(U8(1), v, y)
		op(y, v.AsY(), y)
	}
	x := XMM()
	VEXTRACTF128(U8(1), y, x)
	op(x, y.AsX(), x)
	s := XMM()
	VPERMILPS(U8(0x4e), x, s)
	op(s, x, x)
	VPERMILPS(U8(0xb1), x, s)
	op(s, x, x)
	return x
}

func (l level) reducePD(v VecVirtual) VecVirtual {
	y := v
	if l.z {
		y = YMM()
		VEXTRACTF64X4(U8(1), v, y)
		VADDPD(y, v.AsY(), y)
	}
	x := XMM()
	VEXTRACTF128(U8(1), y, x)
	VADDPD(x, y.AsX(), x)
	s := XMM()
	VPERMILPD(U8(1), x, s)
	VADDSD(s, x, x)
	return x
}

func vmaxps(a, b, dst Op) { VMAXPS(a, b, dst) }

// The functions.

func header(l level, fn, signature, doc string) {
	TEXT(fn+l.suffix, NOSPLIT, signature)
	Pragma("noescape")
	Doc(fn+l.suffix+" is the "+l.suffix+" level of vecKernels."+fn+": "+doc, "Requires "+l.needs+".")
}

func advance(n Register, elems int, ptrs ...Register) {
	for _, p := range ptrs {
		ADDQ(U32(4*elems), p)
	}
	SUBQ(U32(elems), n)
}

func maxOf(l level) {
	header(l, "maxOf", "func(x []float32) float32", "the largest element of x.")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	var acc [4]VecVirtual
	for i := range acc {
		acc[i] = l.bcast("negInf")
	}
	Label("loop4")
	CMPQ(n, U32(4*l.lanes))
	JB(LabelRef("loop1"))
	for i := range acc {
		VMAXPS(Mem{Base: x}.Offset(4*l.lanes*i), acc[i], acc[i])
	}
	advance(n, 4*l.lanes, x)
	JMP(LabelRef("loop4"))
	Label("loop1")
	CMPQ(n, U32(l.lanes))
	JB(LabelRef("tail"))
	VMAXPS(Mem{Base: x}, acc[0], acc[0])
	advance(n, l.lanes, x)
	JMP(LabelRef("loop1"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("reduce"))
	mask := l.tailMask(n)
	if l.z {
		VMAXPS(Mem{Base: x}, acc[1], mask, acc[1]) // masked-off lanes keep acc[1]
	} else {
		v := l.vec()
		VMASKMOVPS(Mem{Base: x}, mask, v)
		VBLENDVPS(mask, v, acc[1], v) // -Inf-or-more in the masked-off lanes
		VMAXPS(v, acc[1], acc[1])
	}
	Label("reduce")
	VMAXPS(acc[1], acc[0], acc[0])
	VMAXPS(acc[3], acc[2], acc[2])
	VMAXPS(acc[2], acc[0], acc[0])
	Store(l.reducePS(acc[0], vmaxps), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// mapKernel generates fn(dst, x []float32) writing body(x[i]) to dst[i].
func mapKernel(l level, fn, doc string, body func(x, lo, hi VecVirtual) VecVirtual) {
	header(l, fn, "func(dst, x []float32)", doc)
	dst := Load(Param("dst").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	lo, hi := l.bcast("expLo"), l.bcast("expHi")
	Label("loop")
	CMPQ(n, U32(l.lanes))
	JB(LabelRef("tail"))
	v := l.vec()
	VMOVUPS(Mem{Base: x}, v)
	VMOVUPS(body(v, lo, hi), Mem{Base: dst})
	advance(n, l.lanes, x, dst)
	JMP(LabelRef("loop"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	mask := l.tailMask(n)
	v = l.vec()
	l.maskedLoad(Mem{Base: x}, mask, v)
	l.maskedStore(body(v, lo, hi), mask, Mem{Base: dst})
	Label("done")
	VZEROUPPER()
	RET()
}

// addPD adds the float32 lanes of v, widened to float64, into acc.
func (l level) addPD(v, acc VecVirtual) {
	lo, hi := l.vec(), l.vec()
	h := l.half()
	if l.z {
		VCVTPS2PD(v.AsY(), lo)
		VEXTRACTF64X4(U8(1), v, h)
	} else {
		VCVTPS2PD(v.AsX(), lo)
		VEXTRACTF128(U8(1), v, h)
	}
	VCVTPS2PD(h, hi)
	VADDPD(lo, acc, acc)
	VADDPD(hi, acc, acc)
}

func expShift(l level) {
	header(l, "expShift", "func(dst, x []float32, m float32) float64",
		"dst[i] = exp(x[i]-m) (exp32), returning their sum in float64.")
	dst := Load(Param("dst").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	m := l.vec()
	VBROADCASTSS(Load(Param("m"), XMM()), m)
	lo, hi := l.bcast("expLo"), l.bcast("expHi")
	acc := l.vec()
	l.zero(acc)
	Label("loop")
	CMPQ(n, U32(l.lanes))
	JB(LabelRef("tail"))
	v := l.vec()
	VMOVUPS(Mem{Base: x}, v)
	VSUBPS(m, v, v)
	e := l.exp(v, lo, hi)
	VMOVUPS(e, Mem{Base: dst})
	l.addPD(e, acc)
	advance(n, l.lanes, x, dst)
	JMP(LabelRef("loop"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	mask := l.tailMask(n)
	v = l.vec()
	l.maskedLoad(Mem{Base: x}, mask, v)
	VSUBPS(m, v, v)
	e = l.exp(v, lo, hi)
	l.maskedStore(e, mask, Mem{Base: dst})
	if l.z {
		VMOVAPS_Z(e, mask, e)
	} else {
		VANDPS(mask, e, e)
	}
	l.addPD(e, acc)
	Label("done")
	Store(l.reducePD(acc), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func scale(l level) {
	header(l, "scale", "func(x []float32, s float32)", "x[i] *= s.")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	s := l.vec()
	VBROADCASTSS(Load(Param("s"), XMM()), s)
	Label("loop")
	CMPQ(n, U32(l.lanes))
	JB(LabelRef("tail"))
	v := l.vec()
	VMULPS(Mem{Base: x}, s, v)
	VMOVUPS(v, Mem{Base: x})
	advance(n, l.lanes, x)
	JMP(LabelRef("loop"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	mask := l.tailMask(n)
	v = l.vec()
	l.maskedLoad(Mem{Base: x}, mask, v)
	VMULPS(s, v, v)
	l.maskedStore(v, mask, Mem{Base: x})
	Label("done")
	VZEROUPPER()
	RET()
}

// The LayerNorm primitives work in float64 vectors of lanes/2 elements, each
// widened from a half vector of float32.

// loadPD widens the lanes/2 float32 at m into the float64 vector d; with a mask,
// only the masked ones, and zeros elsewhere.
func (l level) loadPD(m Mem, mask Register, d VecVirtual) {
	switch {
	case mask == nil:
		VCVTPS2PD(m, d)
	case l.z:
		VCVTPS2PD_Z(m, mask, d)
	default:
		h := XMM()
		VMASKMOVPS(m, mask, h)
		VCVTPS2PD(h, d)
	}
}

// pdLoop emits the loop over whole float64 vectors of x (step) and the masked
// tail (tail gets the mask).
func (l level) pdLoop(n Register, ptrs []Register, step func(), tail func(mask Register)) {
	dl := l.lanes / 2
	Label("loop")
	CMPQ(n, U32(dl))
	JB(LabelRef("tail"))
	step()
	advance(n, dl, ptrs...)
	JMP(LabelRef("loop"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("done"))
	tail(l.halfTailMask(n))
	Label("done")
}

func sum(l level) {
	header(l, "sum", "func(x []float32) float64", "the sum of x in float64.")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	acc0, acc1 := l.vec(), l.vec()
	l.zero(acc0)
	l.zero(acc1)
	// Two vectors a step, into two sums, then one.
	dl := l.lanes / 2
	Label("loop2")
	CMPQ(n, U32(2*dl))
	JB(LabelRef("loop"))
	d0, d1 := l.vec(), l.vec()
	VCVTPS2PD(Mem{Base: x}, d0)
	VCVTPS2PD(Mem{Base: x}.Offset(4*dl), d1)
	VADDPD(d0, acc0, acc0)
	VADDPD(d1, acc1, acc1)
	advance(n, 2*dl, x)
	JMP(LabelRef("loop2"))
	l.pdLoop(n, []Register{x}, func() {
		d := l.vec()
		VCVTPS2PD(Mem{Base: x}, d)
		VADDPD(d, acc0, acc0)
	}, func(mask Register) {
		d := l.vec()
		l.loadPD(Mem{Base: x}, mask, d)
		VADDPD(d, acc1, acc1)
	})
	VADDPD(acc1, acc0, acc0)
	Store(l.reducePD(acc0), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func sumSqDev(l level) {
	header(l, "sumSqDev", "func(x []float32, mean float64) float64",
		"the sum of (float64(x[i])-mean)² in float64.")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	mean := l.vec()
	VBROADCASTSD(Load(Param("mean"), XMM()), mean)
	acc0, acc1 := l.vec(), l.vec()
	l.zero(acc0)
	l.zero(acc1)
	dl := l.lanes / 2
	Label("loop2")
	CMPQ(n, U32(2*dl))
	JB(LabelRef("loop"))
	d0, d1 := l.vec(), l.vec()
	VCVTPS2PD(Mem{Base: x}, d0)
	VCVTPS2PD(Mem{Base: x}.Offset(4*dl), d1)
	VSUBPD(mean, d0, d0)
	VSUBPD(mean, d1, d1)
	VFMADD231PD(d0, d0, acc0)
	VFMADD231PD(d1, d1, acc1)
	advance(n, 2*dl, x)
	JMP(LabelRef("loop2"))
	l.pdLoop(n, []Register{x}, func() {
		d := l.vec()
		VCVTPS2PD(Mem{Base: x}, d)
		VSUBPD(mean, d, d)
		VFMADD231PD(d, d, acc0)
	}, func(mask Register) {
		d := l.vec()
		l.loadPD(Mem{Base: x}, mask, d)
		if l.z {
			VSUBPD_Z(mean, d, mask, d) // zero, not -mean, in the masked-off lanes
		} else {
			VSUBPD(mean, d, d)
			tbl, i, m := GP64(), GP64(), YMM()
			LEAQ(mask64, tbl)
			MOVQ(U32(4), i)
			SUBQ(n, i)
			VMOVDQU(Mem{Base: tbl, Index: i, Scale: 8}, m)
			VANDPD(m, d, d)
		}
		VFMADD231PD(d, d, acc1)
	})
	VADDPD(acc1, acc0, acc0)
	Store(l.reducePD(acc0), ReturnIndex(0))
	VZEROUPPER()
	RET()
}

func normalize(l level) {
	header(l, "normalize", "func(dst, x, scale, bias []float32, mean, inv float64)",
		"dst[i] = float32((float64(x[i])-mean)*inv)*scale[i] (+ bias[i] if len(bias) > 0).")
	dst := Load(Param("dst").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	sc := Load(Param("scale").Base(), GP64())
	bias := Load(Param("bias").Base(), GP64())
	biasLen := Load(Param("bias").Len(), GP64())
	n := Load(Param("x").Len(), GP64())
	mean, inv := l.vec(), l.vec()
	VBROADCASTSD(Load(Param("mean"), XMM()), mean)
	VBROADCASTSD(Load(Param("inv"), XMM()), inv)

	// y returns the float32 half vector float32((x-mean)*inv) from the float64 d.
	y := func(d VecVirtual) VecVirtual {
		VSUBPD(mean, d, d)
		VMULPD(inv, d, d)
		h := l.half()
		if l.z {
			VCVTPD2PS(d, h)
		} else {
			VCVTPD2PSY(d, h)
		}
		return h
	}
	loops := func(withBias bool, prefix string) {
		ptrs := []Register{dst, x, sc}
		if withBias {
			ptrs = append(ptrs, bias)
		}
		dl := l.lanes / 2
		Label(prefix + "loop")
		CMPQ(n, U32(dl))
		JB(LabelRef(prefix + "tail"))
		d := l.vec()
		VCVTPS2PD(Mem{Base: x}, d)
		h := y(d)
		VMULPS(Mem{Base: sc}, h, h)
		if withBias {
			VADDPS(Mem{Base: bias}, h, h)
		}
		VMOVUPS(h, Mem{Base: dst})
		advance(n, dl, ptrs...)
		JMP(LabelRef(prefix + "loop"))

		Label(prefix + "tail")
		TESTQ(n, n)
		JZ(LabelRef("done"))
		mask := l.halfTailMask(n)
		d = l.vec()
		l.loadPD(Mem{Base: x}, mask, d)
		h = y(d)
		// scale and bias through masked loads: the lanes past n may be
		// past the end of the slices.
		if l.z {
			s := ZMM()
			VMOVUPS_Z(Mem{Base: sc}, mask, s)
			VMULPS(s.AsY(), h, h)
			if withBias {
				VMOVUPS_Z(Mem{Base: bias}, mask, s)
				VADDPS(s.AsY(), h, h)
			}
			VMOVUPS(h.AsZ(), mask, Mem{Base: dst})
		} else {
			s := XMM()
			VMASKMOVPS(Mem{Base: sc}, mask, s)
			VMULPS(s, h, h)
			if withBias {
				VMASKMOVPS(Mem{Base: bias}, mask, s)
				VADDPS(s, h, h)
			}
			VMASKMOVPS(h, mask, Mem{Base: dst})
		}
		JMP(LabelRef("done"))
	}
	TESTQ(biasLen, biasLen)
	JZ(LabelRef("nobias_loop"))
	loops(true, "bias_")
	loops(false, "nobias_")
	Label("done")
	VZEROUPPER()
	RET()
}

func tapAdd(l level) {
	header(l, "tapAdd", "func(out, in []float32, w float32, rows, cols, outStride, inStride int)",
		"out[r*outStride+c] += w*in[r*inStride+c] (fused) for r < rows, c < cols.")
	out := Load(Param("out").Base(), GP64())
	in := Load(Param("in").Base(), GP64())
	rows := Load(Param("rows"), GP64())
	cols := Load(Param("cols"), GP64())
	outStride := Load(Param("outStride"), GP64())
	inStride := Load(Param("inStride"), GP64())
	SHLQ(U8(2), outStride) // in bytes
	SHLQ(U8(2), inStride)
	w := l.vec()
	VBROADCASTSS(Load(Param("w"), XMM()), w)
	// The mask of the last cols % lanes columns of each row.
	rem := GP64()
	MOVQ(cols, rem)
	ANDQ(U32(l.lanes-1), rem)
	var mask Register
	JZ(LabelRef("rows"))
	mask = l.tailMask(rem)
	Label("rows")
	TESTQ(rows, rows)
	JZ(LabelRef("done"))
	o, i, n := GP64(), GP64(), GP64()
	MOVQ(out, o)
	MOVQ(in, i)
	MOVQ(cols, n)
	Label("cols")
	CMPQ(n, U32(l.lanes))
	JB(LabelRef("tail"))
	v := l.vec()
	VMOVUPS(Mem{Base: o}, v)
	VFMADD231PS(Mem{Base: i}, w, v)
	VMOVUPS(v, Mem{Base: o})
	advance(n, l.lanes, o, i)
	JMP(LabelRef("cols"))
	Label("tail")
	TESTQ(n, n)
	JZ(LabelRef("next"))
	v, x := l.vec(), l.vec()
	l.maskedLoad(Mem{Base: o}, mask, v)
	l.maskedLoad(Mem{Base: i}, mask, x)
	VFMADD231PS(x, w, v)
	l.maskedStore(v, mask, Mem{Base: o})
	Label("next")
	ADDQ(outStride, out)
	ADDQ(inStride, in)
	DECQ(rows)
	JMP(LabelRef("rows"))
	Label("done")
	VZEROUPPER()
	RET()
}
