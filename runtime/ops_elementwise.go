package runtime

import (
	"math"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
)

// Elementwise ops: unary math, activations, broadcasting binary and variadic
// ops, comparisons, logic, Where, Clip and Cast.

// bcast is the numpy broadcast of some operands to their common shape.
type bcast struct {
	out     []int   // the output shape
	dims    []int   // the collapsed iteration space
	strides [][]int // per operand, per dim of dims
}

func newBcast(n *graph.Node, shapes ...[]int) (*bcast, error) {
	out, err := broadcastShape(n, shapes...)
	if err != nil {
		return nil, err
	}
	st := make([][]int, len(shapes))
	for i, s := range shapes {
		st[i] = broadcastStrides(s, out)
	}
	dims, strides := collapse(out, st)
	return &bcast{out: out, dims: dims, strides: strides}, nil
}

// inner is the length of the innermost run; step(j) is operand j's stride along
// it, 0 (broadcast) or 1.
func (b *bcast) inner() int     { return b.dims[len(b.dims)-1] }
func (b *bcast) step(j int) int { return b.strides[j][len(b.dims)-1] }

// rowOps computes one output row d of a broadcasting binary op, by which of
// its operands run along the row: both (vv), only a (vs), only b (sv), or
// neither (one value for the whole row).
type rowOps[A, B, U any] struct {
	vv  func(d []U, x []A, y []B)
	vs  func(d []U, x []A, v B)
	sv  func(d []U, v A, y []B)
	one func(a A, b B) U
}

// eachBinaryRow runs ops over the rows of the broadcast bc, split over the
// kernels' threads when large. dst may be a when a is read contiguously (an
// in-place update).
func eachBinaryRow[A, B, U any](dst []U, a []A, b []B, bc *bcast, ops rowOps[A, B, U]) {
	inner, sa, sb := bc.inner(), bc.step(0), bc.step(1)
	eachRowPar(bc.dims, bc.strides, inner, func(row int, off []int) {
		d := dst[row*inner : (row+1)*inner]
		x, y := off[0], off[1]
		switch {
		case sa == 1 && sb == 1:
			ops.vv(d, a[x:x+inner], b[y:y+inner])
		case sa == 1:
			ops.vs(d, a[x:x+inner], b[y])
		case sb == 1:
			ops.sv(d, a[x], b[y:y+inner])
		default:
			v := ops.one(a[x], b[y])
			for i := range d {
				d[i] = v
			}
		}
	})
}

// binaryLoop sets dst[i] = f(a[.], b[.]) over the broadcast bc (eachBinaryRow).
func binaryLoop[A, B, U any](dst []U, a []A, b []B, bc *bcast, f func(A, B) U) {
	eachBinaryRow(dst, a, b, bc, rowOps[A, B, U]{
		vv: func(d []U, x []A, y []B) {
			for i := range d {
				d[i] = f(x[i], y[i])
			}
		},
		vs: func(d []U, x []A, v B) {
			for i := range d {
				d[i] = f(x[i], v)
			}
		},
		sv: func(d []U, v A, y []B) {
			for i := range d {
				d[i] = f(v, y[i])
			}
		},
		one: f,
	})
}

// arithF32 is Add, Sub, Mul or Div of float32s: binaryLoop with the operation's
// loops written out, so that the compiler sees the arithmetic instead of a call
// per element. The results are those of the f32 functions below.
type arithF32 int

const (
	addF32 arithF32 = iota
	subF32
	mulF32
	divF32
)

// loop is binaryLoop for o.
func (o arithF32) loop(dst, a, b []float32, bc *bcast) {
	eachBinaryRow(dst, a, b, bc, rowOps[float32, float32, float32]{vv: o.vv, vs: o.vs, sv: o.sv, one: o.one})
}

// one returns a o b.
func (o arithF32) one(a, b float32) float32 {
	switch o {
	case addF32:
		return a + b
	case subF32:
		return a - b
	case mulF32:
		return a * b
	}
	return a / b
}

// vv sets d[i] = x[i] o y[i].
func (o arithF32) vv(d, x, y []float32) {
	x, y = x[:len(d)], y[:len(d)]
	switch o {
	case addF32:
		for i := range d {
			d[i] = x[i] + y[i]
		}
	case subF32:
		for i := range d {
			d[i] = x[i] - y[i]
		}
	case mulF32:
		for i := range d {
			d[i] = x[i] * y[i]
		}
	default:
		for i := range d {
			d[i] = x[i] / y[i]
		}
	}
}

// vs sets d[i] = x[i] o v.
func (o arithF32) vs(d, x []float32, v float32) {
	x = x[:len(d)]
	switch o {
	case addF32:
		for i := range d {
			d[i] = x[i] + v
		}
	case subF32:
		for i := range d {
			d[i] = x[i] - v
		}
	case mulF32:
		for i := range d {
			d[i] = x[i] * v
		}
	default:
		for i := range d {
			d[i] = x[i] / v
		}
	}
}

// sv sets d[i] = v o y[i].
func (o arithF32) sv(d []float32, v float32, y []float32) {
	y = y[:len(d)]
	switch o {
	case addF32:
		for i := range d {
			d[i] = v + y[i]
		}
	case subF32:
		for i := range d {
			d[i] = v - y[i]
		}
	case mulF32:
		for i := range d {
			d[i] = v * y[i]
		}
	default:
		for i := range d {
			d[i] = v / y[i]
		}
	}
}

// Binary element functions.

func add[T num](a, b T) T      { return a + b }
func sub[T num](a, b T) T      { return a - b }
func mul[T num](a, b T) T      { return a * b }
func div[T floating](a, b T) T { return a / b }
func maxOf[T num](a, b T) T    { return max(a, b) }
func minOf[T num](a, b T) T    { return min(a, b) }

func divI(a, b int64) int64 {
	if b == 0 {
		return 0 // undefined in ONNX; Go would panic
	}
	return a / b
}

func divU(a, b int64) int64 {
	if b == 0 {
		return 0
	}
	return int64(uint64(a) / uint64(b))
}

func maxU(a, b int64) int64 {
	if uint64(a) >= uint64(b) {
		return a
	}
	return b
}

func minU(a, b int64) int64 {
	if uint64(a) <= uint64(b) {
		return a
	}
	return b
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func eq[T num](a, b T) int64 { return b2i(a == b) }
func lt[T num](a, b T) int64 { return b2i(a < b) }
func le[T num](a, b T) int64 { return b2i(a <= b) }
func gt[T num](a, b T) int64 { return b2i(a > b) }
func ge[T num](a, b T) int64 { return b2i(a >= b) }

func ltU(a, b int64) int64 { return b2i(uint64(a) < uint64(b)) }
func leU(a, b int64) int64 { return b2i(uint64(a) <= uint64(b)) }
func gtU(a, b int64) int64 { return b2i(uint64(a) > uint64(b)) }
func geU(a, b int64) int64 { return b2i(uint64(a) >= uint64(b)) }

var (
	opAdd = arith(addF32, add[float64], add[int64], nil)
	opSub = arith(subF32, sub[float64], sub[int64], nil)
	opMul = arith(mulF32, mul[float64], mul[int64], nil)
	opDiv = arith(divF32, div[float64], divI, divU)
)

// binaryInputs checks the two same-typed inputs of a broadcasting op and returns
// their broadcast.
func binaryInputs(n *graph.Node, in []*Tensor) (*bcast, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	if err := sameType(n, in[:2]); err != nil {
		return nil, err
	}
	if !supported(in[0].DType) {
		return nil, errType(n, in[0].DType)
	}
	return newBcast(n, in[0].Shape, in[1].Shape)
}

// arith returns a broadcasting binary op whose output has its inputs' type; u64,
// when not nil, replaces i64 for U64 inputs.
func arith(f32 arithF32, f64 func(a, b float64) float64, i64, u64 func(a, b int64) int64) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		bc, err := binaryInputs(n, in)
		if err != nil {
			return nil, err
		}
		a, b := in[0], in[1]
		if a.DType == graph.Bool {
			return nil, errType(n, a.DType)
		}
		out := c.alloc.New(a.DType, bc.out)
		switch storageOf(a.DType) {
		case storeF32:
			f32.loop(out.F32, a.Floats(), b.Floats(), bc)
		case storeF64:
			binaryLoop(out.F64, a.F64, b.F64, bc, f64)
		default:
			f := i64
			if a.DType == graph.U64 && u64 != nil {
				f = u64
			}
			binaryLoop(out.I64, a.I64, b.I64, bc, f)
		}
		return one(finish(out))
	}
}

// compare returns a broadcasting comparison with a Bool output.
func compare(f32 func(a, b float32) int64, f64 func(a, b float64) int64, i64, u64 func(a, b int64) int64) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		bc, err := binaryInputs(n, in)
		if err != nil {
			return nil, err
		}
		a, b := in[0], in[1]
		out := c.alloc.New(graph.Bool, bc.out)
		switch storageOf(a.DType) {
		case storeF32:
			binaryLoop(out.I64, a.Floats(), b.Floats(), bc, f32)
		case storeF64:
			binaryLoop(out.I64, a.F64, b.F64, bc, f64)
		default:
			f := i64
			if a.DType == graph.U64 {
				f = u64
			}
			binaryLoop(out.I64, a.I64, b.I64, bc, f)
		}
		return one(out)
	}
}

// logical returns a broadcasting op on two Bool inputs.
func logical(f func(a, b bool) bool) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		bc, err := binaryInputs(n, in)
		if err != nil {
			return nil, err
		}
		if in[0].DType != graph.Bool {
			return nil, errType(n, in[0].DType)
		}
		out := c.alloc.New(graph.Bool, bc.out)
		binaryLoop(out.I64, in[0].I64, in[1].I64, bc, func(a, b int64) int64 { return b2i(f(a != 0, b != 0)) })
		return one(out)
	}
}

func opNot(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if x.DType != graph.Bool {
		return nil, errType(n, x.DType)
	}
	out := c.alloc.New(graph.Bool, x.Shape)
	for i, v := range x.I64 {
		out.I64[i] = b2i(v == 0)
	}
	return one(out)
}

// variadic returns an op folding f over its inputs, all broadcast together (Max,
// Min, Sum).
func variadic(f32 func(a, b float32) float32, f64 func(a, b float64) float64, i64, u64 func(a, b int64) int64) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if len(in) == 0 {
			return nil, opErr(n, "needs at least one input")
		}
		if err := need(n, in, len(in)); err != nil {
			return nil, err
		}
		if err := sameType(n, in); err != nil {
			return nil, err
		}
		dt := in[0].DType
		if !supported(dt) || dt == graph.Bool {
			return nil, errType(n, dt)
		}
		shapes := make([][]int, len(in))
		for i, t := range in {
			shapes[i] = t.Shape
		}
		shape, err := broadcastShape(n, shapes...)
		if err != nil {
			return nil, err
		}
		out := c.alloc.New(dt, shape)
		viewCopy(out, in[0], shape, 0, broadcastStrides(in[0].Shape, shape))
		for _, t := range in[1:] {
			bc, err := newBcast(n, shape, t.Shape)
			if err != nil {
				return nil, err
			}
			switch storageOf(dt) {
			case storeF32:
				binaryLoop(out.F32, out.F32, t.Floats(), bc, f32)
			case storeF64:
				binaryLoop(out.F64, out.F64, t.F64, bc, f64)
			default:
				f := i64
				if dt == graph.U64 && u64 != nil {
					f = u64
				}
				binaryLoop(out.I64, out.I64, t.I64, bc, f)
			}
			finish(out)
		}
		return one(out)
	}
}

var opSum = variadic(add[float32], add[float64], add[int64], nil)

func opMean(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if len(in) > 0 && in[0] != nil && !isFloat(in[0].DType) {
		return nil, errType(n, in[0].DType)
	}
	outs, err := opSum(c, n, in)
	if err != nil {
		return nil, err
	}
	out, k := outs[0], float64(len(in))
	for i, v := range out.F32 {
		out.F32[i] = float32(float64(v) / k)
	}
	for i, v := range out.F64 {
		out.F64[i] = v / k
	}
	return one(finish(out))
}

func opWhere(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 3); err != nil {
		return nil, err
	}
	cond, x, y := in[0], in[1], in[2]
	if cond.DType != graph.Bool {
		return nil, opErr(n, "condition must be BOOL, got %s", cond.DType)
	}
	if err := sameType(n, in[1:3]); err != nil {
		return nil, err
	}
	if !supported(x.DType) {
		return nil, errType(n, x.DType)
	}
	bc, err := newBcast(n, cond.Shape, x.Shape, y.Shape)
	if err != nil {
		return nil, err
	}
	out := c.alloc.New(x.DType, bc.out)
	switch storageOf(x.DType) {
	case storeF32:
		whereLoop(out.F32, cond.I64, x.Floats(), y.Floats(), bc)
	case storeF64:
		whereLoop(out.F64, cond.I64, x.F64, y.F64, bc)
	default:
		whereLoop(out.I64, cond.I64, x.I64, y.I64, bc)
	}
	return one(out)
}

func whereLoop[T num](dst []T, cond []int64, x, y []T, bc *bcast) {
	inner, sc, sx, sy := bc.inner(), bc.step(0), bc.step(1), bc.step(2)
	eachRowPar(bc.dims, bc.strides, inner, func(row int, off []int) {
		d := dst[row*inner : (row+1)*inner]
		ci, xi, yi := off[0], off[1], off[2]
		for k := range d {
			if cond[ci] != 0 {
				d[k] = x[xi]
			} else {
				d[k] = y[yi]
			}
			ci, xi, yi = ci+sc, xi+sx, yi+sy
		}
	})
}

// floatsF64 returns t's elements as float64, converting into a scratch slice
// unless t is already F64.
func floatsF64(t *Tensor) []float64 {
	switch storageOf(t.DType) {
	case storeF64:
		return t.F64
	case storeF32:
		out := make([]float64, t.Len())
		for i, v := range t.Floats() {
			out[i] = float64(v)
		}
		return out
	}
	out := make([]float64, len(t.I64))
	for i, v := range t.I64 {
		if t.DType == graph.U64 {
			out[i] = float64(uint64(v))
		} else {
			out[i] = float64(v)
		}
	}
	return out
}

// f2i converts a float to int64, truncating toward zero, saturating out-of-range
// values and mapping NaN to 0 (Go leaves those conversions undefined).
func f2i(v float64) int64 {
	switch {
	case v != v:
		return 0
	case v >= 0x1p63:
		return math.MaxInt64
	case v < -0x1p63:
		return math.MinInt64
	}
	return int64(v)
}

// ipow is a**b in integers; a negative exponent gives the truncated quotient.
func ipow(a, b int64) int64 {
	if b < 0 {
		switch a {
		case 1:
			return 1
		case -1:
			if b&1 != 0 {
				return -1
			}
			return 1
		}
		return 0
	}
	r := int64(1)
	for b > 0 {
		if b&1 != 0 {
			r *= a
		}
		a *= a
		b >>= 1
	}
	return r
}

func opPow(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x, y := in[0], in[1]
	for _, t := range in[:2] {
		if !supported(t.DType) || t.DType == graph.Bool {
			return nil, errType(n, t.DType)
		}
	}
	bc, err := newBcast(n, x.Shape, y.Shape)
	if err != nil {
		return nil, err
	}
	out := c.alloc.New(x.DType, bc.out)
	switch {
	case storageOf(x.DType) == storeF32 && isTwo(n, y):
		// x² as one rounded product: what float32(math.Pow(x, 2)) gives, since a
		// float32's exact square fits a float64 (the decomposed LayerNorm's Pow);
		// out has x's elements in x's order (y is one element)
		xf := x.Floats()
		self, err := newBcast(n, x.Shape, x.Shape)
		if err != nil {
			return nil, err
		}
		mulF32.loop(out.F32, xf, xf, self)
	case storageOf(x.DType) == storeI64 && storageOf(y.DType) == storeI64:
		binaryLoop(out.I64, x.I64, y.I64, bc, ipow)
	case storageOf(x.DType) == storeF32 && storageOf(y.DType) == storeF32:
		binaryLoop(out.F32, x.Floats(), y.Floats(), bc, func(a, b float32) float32 {
			return float32(math.Pow(float64(a), float64(b)))
		})
	case storageOf(x.DType) == storeF32:
		binaryLoop(out.F32, x.Floats(), floatsF64(y), bc, func(a float32, b float64) float32 {
			return float32(math.Pow(float64(a), b))
		})
	case storageOf(x.DType) == storeF64:
		binaryLoop(out.F64, x.F64, floatsF64(y), bc, math.Pow)
	default:
		binaryLoop(out.I64, floatsF64(x), floatsF64(y), bc, func(a, b float64) int64 {
			return f2i(math.Pow(a, b))
		})
	}
	return one(finish(out))
}

// isTwo reports whether the exponent y is the single value 2.
func isTwo(n *graph.Node, y *Tensor) bool {
	v, _, err := scalarOf(n, y, "exponent")
	return err == nil && v == 2
}

// pyMod is the remainder with the divisor's sign (Python's %, numpy's mod).
func pyMod(a, b float64) float64 {
	r := math.Mod(a, b)
	if r != 0 && (r < 0) != (b < 0) {
		r += b
	}
	return r
}

func opMod(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	bc, err := binaryInputs(n, in)
	if err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	if a.DType == graph.Bool {
		return nil, errType(n, a.DType)
	}
	fmod := attrInt(n, "fmod", 0) != 0
	ff := pyMod
	if fmod {
		ff = math.Mod
	}
	out := c.alloc.New(a.DType, bc.out)
	switch storageOf(a.DType) {
	case storeF32:
		binaryLoop(out.F32, a.Floats(), b.Floats(), bc, func(x, y float32) float32 {
			return float32(ff(float64(x), float64(y)))
		})
	case storeF64:
		binaryLoop(out.F64, a.F64, b.F64, bc, ff)
	default:
		f := func(x, y int64) int64 {
			if y == 0 {
				return 0
			}
			if y == -1 {
				return 0 // also MinInt64 % -1
			}
			r := x % y
			if !fmod && r != 0 && (r < 0) != (y < 0) {
				r += y
			}
			return r
		}
		if a.DType == graph.U64 {
			f = func(x, y int64) int64 {
				if y == 0 {
					return 0
				}
				return int64(uint64(x) % uint64(y))
			}
		}
		binaryLoop(out.I64, a.I64, b.I64, bc, f)
	}
	return one(finish(out))
}

// Unary ops.

// unaryFloat returns an op applying f to each element of a float tensor
// (float32 elements go through float64).
func unaryFloat(f func(float64) float64) opFunc {
	return unaryFloatWith(func(*graph.Node) func(float64) float64 { return f })
}

// unaryFloatWith is unaryFloat for a function built from the node's attributes.
func unaryFloatWith(mk func(n *graph.Node) func(float64) float64) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if err := need(n, in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if !isFloat(x.DType) {
			return nil, errType(n, x.DType)
		}
		f := mk(n)
		out := c.alloc.New(x.DType, x.Shape)
		if storageOf(x.DType) == storeF32 {
			for i, v := range x.Floats() {
				out.F32[i] = float32(f(float64(v)))
			}
		} else {
			for i, v := range x.F64 {
				out.F64[i] = f(v)
			}
		}
		return one(finish(out))
	}
}

// unaryNum returns an op on any numeric tensor: ff for floats, fi for signed
// integers, fu (nil: fi) for unsigned ones.
func unaryNum(ff func(float64) float64, fi, fu func(int64) int64) opFunc {
	floatOp := unaryFloat(ff)
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if err := need(n, in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if isFloat(x.DType) {
			return floatOp(c, n, in)
		}
		if !supported(x.DType) || x.DType == graph.Bool {
			return nil, errType(n, x.DType)
		}
		f := fi
		if fu != nil && isUnsigned(x.DType) {
			f = fu
		}
		out := c.alloc.New(x.DType, x.Shape)
		for i, v := range x.I64 {
			out.I64[i] = f(v)
		}
		return one(finish(out))
	}
}

func identityI(v int64) int64 { return v }

var (
	opAbs = unaryNum(math.Abs, func(v int64) int64 {
		if v < 0 {
			return -v
		}
		return v
	}, identityI)
	opNeg  = unaryNum(func(v float64) float64 { return -v }, func(v int64) int64 { return -v }, nil)
	opSign = unaryNum(func(v float64) float64 {
		switch {
		case v > 0:
			return 1
		case v < 0:
			return -1
		}
		return v // 0, -0 or NaN
	}, func(v int64) int64 {
		switch {
		case v > 0:
			return 1
		case v < 0:
			return -1
		}
		return 0
	}, func(v int64) int64 { return b2i(v != 0) })
	opRelu = unaryNum(func(v float64) float64 {
		if v < 0 {
			return 0
		}
		return v
	}, func(v int64) int64 { return max(v, 0) }, identityI)
)

func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus is log(1 + e^x), computed without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

func hardSwish(x float64) float64 { return x * max(0, min(1, x/6+0.5)) }

var (
	opElu = unaryFloatWith(func(n *graph.Node) func(float64) float64 {
		alpha := float64(attrFloat(n, "alpha", 1))
		return func(x float64) float64 {
			if x < 0 {
				return alpha * (math.Exp(x) - 1)
			}
			return x
		}
	})
	opLeakyRelu = unaryFloatWith(func(n *graph.Node) func(float64) float64 {
		alpha := float64(attrFloat(n, "alpha", 0.01))
		return func(x float64) float64 {
			if x < 0 {
				return alpha * x
			}
			return x
		}
	})
	opHardSigmoid = unaryFloatWith(func(n *graph.Node) func(float64) float64 {
		alpha := float64(attrFloat(n, "alpha", 0.2))
		beta := float64(attrFloat(n, "beta", 0.5))
		return func(x float64) float64 { return max(0, min(1, alpha*x+beta)) }
	})
	geluTanh = unaryFloat(func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	})
	geluErf = unaryFloat(func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) })
	erfF64  = unaryFloat(math.Erf)
)

func opGelu(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	switch a := attrString(n, "approximate", "none"); a {
	case "tanh":
		return geluTanh(c, n, in)
	case "none":
	default:
		return nil, unsupported(n, "approximate %q is not supported", a)
	}
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if storageOf(x.DType) != storeF32 {
		return geluErf(c, n, in)
	}
	out := c.alloc.New(x.DType, x.Shape)
	kernels.Gelu(out.F32, x.Floats())
	return one(finish(out))
}

func opErf(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if storageOf(x.DType) != storeF32 {
		return erfF64(c, n, in)
	}
	out := c.alloc.New(x.DType, x.Shape)
	kernels.Erf(out.F32, x.Floats())
	return one(finish(out))
}

func opClip(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if !supported(x.DType) || x.DType == graph.Bool {
		return nil, errType(n, x.DType)
	}
	var loT, hiT *Tensor
	if c.opset >= 11 {
		loT, hiT = optIn(in, 1), optIn(in, 2)
	}
	for _, t := range []*Tensor{loT, hiT} {
		if t != nil && t.DType != x.DType {
			return nil, opErr(n, "input types %s and %s differ", x.DType, t.DType)
		}
	}
	out := c.alloc.New(x.DType, x.Shape)
	if isFloat(x.DType) {
		lo, hi := math.Inf(-1), math.Inf(1)
		if c.opset < 11 {
			lo = float64(attrFloat(n, "min", float32(math.Inf(-1))))
			hi = float64(attrFloat(n, "max", float32(math.Inf(1))))
		}
		var err error
		if loT != nil {
			if lo, _, err = scalarOf(n, loT, "min"); err != nil {
				return nil, err
			}
		}
		if hiT != nil {
			if hi, _, err = scalarOf(n, hiT, "max"); err != nil {
				return nil, err
			}
		}
		if storageOf(x.DType) == storeF32 {
			lo32, hi32 := float32(lo), float32(hi)
			for i, v := range x.Floats() {
				out.F32[i] = min(max(v, lo32), hi32)
			}
		} else {
			for i, v := range x.F64 {
				out.F64[i] = min(max(v, lo), hi)
			}
		}
		return one(out)
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if x.DType == graph.U64 {
		lo, hi = 0, -1 // as uint64: 0 and the largest
	}
	var err error
	if loT != nil {
		if _, lo, err = scalarOf(n, loT, "min"); err != nil {
			return nil, err
		}
	}
	if hiT != nil {
		if _, hi, err = scalarOf(n, hiT, "max"); err != nil {
			return nil, err
		}
	}
	for i, v := range x.I64 {
		if x.DType == graph.U64 {
			out.I64[i] = minU(maxU(v, lo), hi)
		} else {
			out.I64[i] = min(max(v, lo), hi)
		}
	}
	return one(out)
}

// Cast.

func opCast(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	code := attrInt(n, "to", 0)
	to, ok := onnxDTypes[code]
	if !ok {
		return nil, unsupported(n, "cast to ONNX data type %d is not supported", code)
	}
	return castTo(c, n, in[0], to)
}

func opCastLike(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	return castTo(c, n, in[0], in[1].DType)
}

// castTo converts x to element type to like numpy's astype: floats to integers
// truncate toward zero and wrap, integers wrap to the narrower type, anything
// nonzero is true, and every float result is rounded once to its type.
func castTo(c *opCtx, n *graph.Node, x *Tensor, to graph.DType) ([]*Tensor, error) {
	if !supported(x.DType) {
		return nil, errType(n, x.DType)
	}
	if !supported(to) {
		return nil, unsupported(n, "cast to %s is not supported", to)
	}
	out := c.alloc.New(to, x.Shape)
	from := storageOf(x.DType)
	switch storageOf(to) {
	case storeF32:
		switch from {
		case storeF32:
			copy(out.F32, x.Floats())
			if to != graph.F32 && to != x.DType {
				finish(out)
			}
		case storeF64:
			for i, v := range x.F64 {
				out.F32[i] = narrow(to, v)
			}
		default:
			for i, v := range x.I64 {
				out.F32[i] = narrow(to, intToFloat(x.DType, v))
			}
		}
	case storeF64:
		switch from {
		case storeF32:
			for i, v := range x.Floats() {
				out.F64[i] = float64(v)
			}
		case storeF64:
			copy(out.F64, x.F64)
		default:
			for i, v := range x.I64 {
				out.F64[i] = intToFloat(x.DType, v)
			}
		}
	default:
		switch from {
		case storeF32:
			for i, v := range x.Floats() {
				out.I64[i] = floatToInt(to, float64(v))
			}
		case storeF64:
			for i, v := range x.F64 {
				out.I64[i] = floatToInt(to, v)
			}
		default:
			for i, v := range x.I64 {
				out.I64[i] = wrapInt(to, v)
			}
		}
	}
	return one(out)
}

// intToFloat is the value of the integer element v of type dt.
func intToFloat(dt graph.DType, v int64) float64 {
	if dt == graph.U64 {
		return float64(uint64(v))
	}
	return float64(v)
}

// floatToInt converts v to the integer type dt: truncated toward zero, then
// wrapped; NaN is true for Bool.
func floatToInt(dt graph.DType, v float64) int64 {
	switch {
	case dt == graph.Bool:
		return b2i(v != 0)
	case dt == graph.U64 && v >= 0x1p63 && v < 0x1p64:
		return int64(uint64(v))
	}
	return wrapInt(dt, f2i(v))
}

// narrow rounds v once to the float type dt (F32, F16 or BF16). Going through
// float32 would round twice, so an inexact float32 is made round-to-odd first,
// which keeps the second rounding correct.
func narrow(dt graph.DType, v float64) float32 {
	f := float32(v)
	if dt == graph.F32 || float64(f) == v || v != v || math.IsInf(float64(f), 0) {
		return roundTo(dt, f)
	}
	b := math.Float32bits(f)
	if math.Abs(float64(f)) > math.Abs(v) {
		b-- // the float32 below v in magnitude
	}
	return roundTo(dt, math.Float32frombits(b|1))
}
