package runtime

import (
	"errors"
	"fmt"
	"math"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/quant"
)

// opCtx is what an op sees besides its inputs.
type opCtx struct {
	alloc Alloc // every output tensor comes from alloc.New (the session arena)
	opset int64 // the model's default-domain opset
}

// An opFunc computes one node. in[i] is nil for an omitted optional input (empty
// name). It returns one tensor per node output (nil for an omitted optional
// output). It must not modify its inputs: they may be weights shared across
// sessions or values still needed later.
type opFunc func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error)

// ops maps op_type to its implementation.
var ops = map[string]opFunc{
	// ops_elementwise.go
	"Abs":            opAbs,
	"Add":            opAdd,
	"And":            logical(func(a, b bool) bool { return a && b }),
	"Cast":           opCast,
	"CastLike":       opCastLike,
	"Ceil":           unaryFloat(math.Ceil),
	"Clip":           opClip,
	"Cos":            unaryFloat(math.Cos),
	"Div":            opDiv,
	"Elu":            opElu,
	"Equal":          compare(eq[float32], eq[float64], eq[int64], eq[int64]),
	"Erf":            opErf,
	"Exp":            unaryFloat(math.Exp),
	"Floor":          unaryFloat(math.Floor),
	"Gelu":           opGelu,
	"Greater":        compare(gt[float32], gt[float64], gt[int64], gtU),
	"GreaterOrEqual": compare(ge[float32], ge[float64], ge[int64], geU),
	"HardSigmoid":    opHardSigmoid,
	"HardSwish":      unaryFloat(hardSwish),
	"LeakyRelu":      opLeakyRelu,
	"Less":           compare(lt[float32], lt[float64], lt[int64], ltU),
	"LessOrEqual":    compare(le[float32], le[float64], le[int64], leU),
	"Log":            unaryFloat(math.Log),
	"Max":            variadic(maxOf[float32], maxOf[float64], maxOf[int64], maxU),
	"Mean":           opMean,
	"Min":            variadic(minOf[float32], minOf[float64], minOf[int64], minU),
	"Mod":            opMod,
	"Mul":            opMul,
	"Neg":            opNeg,
	"Not":            opNot,
	"Or":             logical(func(a, b bool) bool { return a || b }),
	"Pow":            opPow,
	"Reciprocal":     unaryFloat(func(x float64) float64 { return 1 / x }),
	"Relu":           opRelu,
	"Round":          unaryFloat(math.RoundToEven),
	"Sigmoid":        unaryFloat(sigmoid),
	"Sign":           opSign,
	"Sin":            unaryFloat(math.Sin),
	"Softplus":       unaryFloat(softplus),
	"Sqrt":           unaryFloat(math.Sqrt),
	"Sub":            opSub,
	"Sum":            opSum,
	"Tanh":           unaryFloat(math.Tanh),
	"Where":          opWhere,
	"Xor":            logical(func(a, b bool) bool { return a != b }),

	// ops_shape.go
	"Concat":          opConcat,
	"Constant":        opConstant,
	"ConstantOfShape": opConstantOfShape,
	"Dropout":         opDropout,
	"Expand":          opExpand,
	"Flatten":         opFlatten,
	"Gather":          opGather,
	"Identity":        opIdentity,
	"Range":           opRange,
	"Reshape":         opReshape,
	"Shape":           opShape,
	"Size":            opSize,
	"Slice":           opSlice,
	"Split":           opSplit,
	"Squeeze":         opSqueeze,
	"Tile":            opTile,
	"Transpose":       opTranspose,
	"Trilu":           opTrilu,
	"Unsqueeze":       opUnsqueeze,

	// ops_nn.go
	"AveragePool":        opAveragePool,
	"BatchNormalization": opBatchNorm,
	"Conv":               opConv,
	"GlobalAveragePool":  globalPool(false),
	"GlobalMaxPool":      globalPool(true),
	"LayerNormalization": opLayerNorm,
	"LogSoftmax":         softmaxOp(true),
	"MaxPool":            opMaxPool,
	"Softmax":            softmaxOp(false),

	// ops_reduce.go
	"ArgMax":          argOp(true),
	"ArgMin":          argOp(false),
	"ReduceL1":        reduceOp(redL1),
	"ReduceL2":        reduceOp(redL2),
	"ReduceLogSum":    reduceOp(redLogSum),
	"ReduceLogSumExp": reduceOp(redLogSumExp),
	"ReduceMax":       reduceOp(redMax),
	"ReduceMean":      reduceOp(redMean),
	"ReduceMin":       reduceOp(redMin),
	"ReduceProd":      reduceOp(redProd),
	"ReduceSum":       reduceOp(redSum),
	"ReduceSumSquare": reduceOp(redSumSquare),

	// ops_matmul.go
	"Gemm":   opGemm,
	"MatMul": opMatMul,
}

// num is the element type of a storage slice.
type num interface{ float32 | float64 | int64 }

// floating is a float storage element type.
type floating interface{ float32 | float64 }

// Attribute getters: each returns def when n has no attribute of that name and
// type.

func attrInt(n *graph.Node, name string, def int64) int64 {
	if a, ok := n.Attrs[name]; ok && a.Type == graph.AttrInt {
		return a.I
	}
	return def
}

func attrInts(n *graph.Node, name string, def []int64) []int64 {
	if a, ok := n.Attrs[name]; ok && a.Type == graph.AttrInts {
		return a.Ints
	}
	return def
}

func attrFloat(n *graph.Node, name string, def float32) float32 {
	if a, ok := n.Attrs[name]; ok && a.Type == graph.AttrFloat {
		return a.F
	}
	return def
}

func attrString(n *graph.Node, name, def string) string {
	if a, ok := n.Attrs[name]; ok && a.Type == graph.AttrString {
		return a.S
	}
	return def
}

// hasAttr reports whether n has an attribute called name.
func hasAttr(n *graph.Node, name string) bool {
	_, ok := n.Attrs[name]
	return ok
}

// opErr returns an error naming the op and the node.
func opErr(n *graph.Node, format string, a ...any) error {
	return fmt.Errorf("runtime: %s %q: %s", n.Op, n.Name, fmt.Sprintf(format, a...))
}

// ErrUnsupported marks errors for a feature of an op the runtime does not
// implement (a training mode, 3-D pooling, an element type), as opposed to
// invalid input; errors.Is finds it.
var ErrUnsupported = errors.New("not supported by this runtime")

// unsupported is opErr for a missing feature: errors.Is(err, ErrUnsupported) holds.
func unsupported(n *graph.Node, format string, a ...any) error {
	return unsupportedError{opErr(n, format, a...).Error()}
}

type unsupportedError struct{ msg string }

func (e unsupportedError) Error() string        { return e.msg }
func (e unsupportedError) Is(target error) bool { return target == ErrUnsupported }

// errType is the error for an input element type an op does not take.
func errType(n *graph.Node, dt graph.DType) error {
	return unsupported(n, "element type %s is not supported", dt)
}

// need checks that the first k inputs of n are present.
func need(n *graph.Node, in []*Tensor, k int) error {
	if len(in) < k {
		return opErr(n, "needs %d inputs, got %d", k, len(in))
	}
	for i := range k {
		if in[i] == nil {
			return opErr(n, "input %d is missing", i)
		}
	}
	return nil
}

// optIn returns input i, or nil when it is omitted.
func optIn(in []*Tensor, i int) *Tensor {
	if i < len(in) {
		return in[i]
	}
	return nil
}

// wantOut reports whether the node's output i is requested.
func wantOut(n *graph.Node, i int) bool { return i < len(n.Outputs) && n.Outputs[i] != "" }

// sameType checks that every present input has the element type of the first.
func sameType(n *graph.Node, in []*Tensor) error {
	for _, t := range in[1:] {
		if t != nil && t.DType != in[0].DType {
			return opErr(n, "input types %s and %s differ", in[0].DType, t.DType)
		}
	}
	return nil
}

func one(t *Tensor) ([]*Tensor, error) { return []*Tensor{t}, nil }

// numel is the element count of shape.
func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// stridesOf returns the C-order element strides of shape.
func stridesOf(shape []int) []int {
	s := make([]int, len(shape))
	k := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = k
		k *= shape[i]
	}
	return s
}

// normAxis maps axis in [-rank, rank) to [0, rank).
func normAxis(n *graph.Node, axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, opErr(n, "axis %d is out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// normAxes normalizes a list of axes for rank, refusing duplicates.
func normAxes(n *graph.Node, axes []int64, rank int) ([]int, error) {
	out := make([]int, len(axes))
	seen := make([]bool, rank)
	for i, a := range axes {
		ax, err := normAxis(n, a, rank)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, opErr(n, "axis %d is repeated", a)
		}
		seen[ax] = true
		out[i] = ax
	}
	return out, nil
}

// intsOf returns the elements of an integer tensor input (a shape, axes, ...).
func intsOf(n *graph.Node, t *Tensor, what string) ([]int64, error) {
	if storageOf(t.DType) != storeI64 {
		return nil, opErr(n, "%s must be an integer tensor, got %s", what, t.DType)
	}
	if len(t.I64) != t.Len() {
		return nil, opErr(n, "%s has %d elements for shape %v", what, len(t.I64), t.Shape)
	}
	return t.I64, nil
}

// scalarOf returns the single element of a one-element tensor as float64 (an
// int64 element is returned exactly through the second result).
func scalarOf(n *graph.Node, t *Tensor, what string) (float64, int64, error) {
	if t.Len() != 1 {
		return 0, 0, opErr(n, "%s must have one element, got shape %v", what, t.Shape)
	}
	switch storageOf(t.DType) {
	case storeF32:
		v := t.Floats()[0]
		return float64(v), int64(v), nil
	case storeF64:
		return t.F64[0], int64(t.F64[0]), nil
	}
	v := t.I64[0]
	if t.DType == graph.U64 {
		return float64(uint64(v)), v, nil
	}
	return float64(v), v, nil
}

// axesArg returns the axes of an op that takes them as input idx from opset since
// and as an attribute before; ok is false when none are given. Either source is
// accepted whatever the opset, the one the opset names first.
func axesArg(c *opCtx, n *graph.Node, in []*Tensor, idx int, since int64) ([]int64, bool, error) {
	fromInput := func() ([]int64, bool, error) {
		t := optIn(in, idx)
		if t == nil {
			return nil, false, nil
		}
		v, err := intsOf(n, t, "axes")
		return v, err == nil, err
	}
	if c.opset >= since {
		if v, ok, err := fromInput(); ok || err != nil {
			return v, ok, err
		}
		if hasAttr(n, "axes") {
			return attrInts(n, "axes", nil), true, nil
		}
		return nil, false, nil
	}
	if hasAttr(n, "axes") {
		return attrInts(n, "axes", nil), true, nil
	}
	return fromInput()
}

// Element type helpers.

func isFloat(dt graph.DType) bool { return storageOf(dt) != storeI64 }

func isUnsigned(dt graph.DType) bool {
	switch dt {
	case graph.U8, graph.U16, graph.U32, graph.U64:
		return true
	}
	return false
}

// supported reports whether tensors of dt can be computed on (float8 types are
// stored but not computed).
func supported(dt graph.DType) bool {
	return dt.Valid() && dt != graph.F8E4M3 && dt != graph.F8E5M2
}

// roundTo rounds v to the float type dt (f16 and bf16 to nearest even).
func roundTo(dt graph.DType, v float32) float32 {
	switch dt {
	case graph.F16:
		return quant.F16ToF32(quant.F32ToF16(v))
	case graph.BF16:
		return quant.BF16ToF32(quant.F32ToBF16(v))
	}
	return v
}

// wrapInt converts v to the integer type dt the way a C cast does: narrow types
// wrap, booleans become 0 or 1.
func wrapInt(dt graph.DType, v int64) int64 {
	switch dt {
	case graph.I8:
		return int64(int8(v))
	case graph.I16:
		return int64(int16(v))
	case graph.I32:
		return int64(int32(v))
	case graph.U8:
		return int64(uint8(v))
	case graph.U16:
		return int64(uint16(v))
	case graph.U32:
		return int64(uint32(v))
	case graph.Bool:
		if v != 0 {
			return 1
		}
	}
	return v
}

// finish brings the elements of t, computed in its wider storage type, to t's
// element type: f16 and bf16 round to nearest even, narrow integers wrap. It
// returns t.
func finish(t *Tensor) *Tensor {
	switch t.DType {
	case graph.F16, graph.BF16:
		for i, v := range t.F32 {
			t.F32[i] = roundTo(t.DType, v)
		}
	case graph.I8, graph.I16, graph.I32, graph.U8, graph.U16, graph.U32, graph.Bool:
		for i, v := range t.I64 {
			t.I64[i] = wrapInt(t.DType, v)
		}
	}
	return t
}

// onnxDTypes maps TensorProto.DataType numbers (Cast's "to") to element types.
var onnxDTypes = map[int64]graph.DType{
	1: graph.F32, 2: graph.U8, 3: graph.I8, 4: graph.U16, 5: graph.I16, 6: graph.I32,
	7: graph.I64, 9: graph.Bool, 10: graph.F16, 11: graph.F64, 12: graph.U32,
	13: graph.U64, 16: graph.BF16, 17: graph.F8E4M3, 19: graph.F8E5M2,
}

// copyElems copies n elements from src at so to dst at do (same storage kind).
func copyElems(dst *Tensor, do int, src *Tensor, so, n int) {
	switch storageOf(src.DType) {
	case storeF32:
		copy(dst.F32[do:do+n], src.Floats()[so:so+n])
	case storeF64:
		copy(dst.F64[do:do+n], src.F64[so:so+n])
	default:
		copy(dst.I64[do:do+n], src.I64[so:so+n])
	}
}

// cloneTensor returns a copy of t from the allocator.
func cloneTensor(c *opCtx, t *Tensor, shape []int) *Tensor {
	out := c.alloc.New(t.DType, shape)
	copyElems(out, 0, t, 0, t.Len())
	return out
}

// Iteration over strided views. An iteration space is a list of dims walked in
// C order; each operand has a stride per dim (0 where it is broadcast).

// collapse drops the size-1 dims of an iteration space and merges neighbours that
// every operand walks as one run, so the innermost loop gets long. It returns at
// least one dim.
func collapse(dims []int, strides [][]int) ([]int, [][]int) {
	var d []int
	s := make([][]int, len(strides))
	for i, n := range dims {
		if n == 1 {
			continue
		}
		k := len(d) - 1
		merge := k >= 0
		for j := range s {
			if merge && s[j][k] != strides[j][i]*n {
				merge = false
			}
		}
		if merge {
			d[k] *= n
			for j := range s {
				s[j][k] = strides[j][i]
			}
			continue
		}
		d = append(d, n)
		for j := range s {
			s[j] = append(s[j], strides[j][i])
		}
	}
	if len(d) == 0 {
		d = []int{1}
		for j := range s {
			s[j] = []int{0}
		}
	}
	return d, s
}

// eachRow calls fn once per run of the last dim of the iteration space, in C
// order: row numbers the runs, off[j] is operand j's offset at the run's start.
// It does nothing for an empty space.
func eachRow(dims []int, strides [][]int, fn func(row int, off []int)) {
	eachRowRange(dims, strides, 0, numel(dims[:len(dims)-1]), fn)
}

// parallelWork is the work (elements written, or their equivalent) under which
// eachRowPar stays on the caller's goroutine.
const parallelWork = 1 << 15

// eachRowPar is eachRow with the rows split over the kernels' threads when the
// space is large: rowWork is one row's work in elements. fn must be safe to run
// concurrently on different rows (each writes only its own row's outputs) and
// must not keep off.
func eachRowPar(dims []int, strides [][]int, rowWork int, fn func(row int, off []int)) {
	rows := numel(dims[:len(dims)-1])
	if rows < 2 || rows*rowWork < 2*parallelWork {
		eachRowRange(dims, strides, 0, rows, fn)
		return
	}
	kernels.ParallelFor(rows, max(1, parallelWork/max(rowWork, 1)), func(lo, hi int) {
		eachRowRange(dims, strides, lo, hi, fn)
	})
}

// eachRowRange is eachRow for rows [r0, r1).
func eachRowRange(dims []int, strides [][]int, r0, r1 int, fn func(row int, off []int)) {
	for _, d := range dims {
		if d == 0 {
			return
		}
	}
	nd := len(dims) - 1
	idx := make([]int, nd)
	off := make([]int, len(strides))
	for d, r := nd-1, r0; d >= 0; d-- { // the indices of row r0
		idx[d] = r % dims[d]
		r /= dims[d]
		for j := range off {
			off[j] += idx[d] * strides[j][d]
		}
	}
	for r := r0; r < r1; r++ {
		fn(r, off)
		for d := nd - 1; d >= 0; d-- {
			idx[d]++
			for j := range off {
				off[j] += strides[j][d]
			}
			if idx[d] < dims[d] {
				break
			}
			for j := range off {
				off[j] -= strides[j][d] * dims[d]
			}
			idx[d] = 0
		}
	}
}

// stridedCopy fills dst, contiguous with shape dims, with
// src[base + Σ i[d]*strides[d]].
func stridedCopy[T num](dst, src []T, dims []int, base int, strides []int) {
	d, s := collapse(dims, [][]int{strides})
	inner, st := d[len(d)-1], s[0][len(d)-1]
	eachRowPar(d, s, inner, func(row int, off []int) {
		out := dst[row*inner : (row+1)*inner]
		p := base + off[0]
		switch st {
		case 1:
			copy(out, src[p:p+inner])
		case 0:
			v := src[p]
			for i := range out {
				out[i] = v
			}
		default:
			for i := range out {
				out[i] = src[p]
				p += st
			}
		}
	})
}

// viewCopy is stridedCopy on tensors of the same storage kind.
func viewCopy(dst, src *Tensor, dims []int, base int, strides []int) {
	switch storageOf(src.DType) {
	case storeF32:
		stridedCopy(dst.F32, src.Floats(), dims, base, strides)
	case storeF64:
		stridedCopy(dst.F64, src.F64, dims, base, strides)
	default:
		stridedCopy(dst.I64, src.I64, dims, base, strides)
	}
}

// broadcastShape returns the numpy broadcast of shapes.
func broadcastShape(n *graph.Node, shapes ...[]int) ([]int, error) {
	rank := 0
	for _, s := range shapes {
		rank = max(rank, len(s))
	}
	out := make([]int, rank)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		for i, d := range s {
			o := &out[rank-len(s)+i]
			switch {
			case d == *o || d == 1:
			case *o == 1:
				*o = d
			default:
				return nil, opErr(n, "shapes %v do not broadcast", shapes)
			}
		}
	}
	return out, nil
}

// broadcastStrides returns the strides that read a contiguous tensor of shape
// as if broadcast to out (0 along broadcast dims).
func broadcastStrides(shape, out []int) []int {
	st := make([]int, len(out))
	own := stridesOf(shape)
	for i, d := range shape {
		j := len(out) - len(shape) + i
		if d != 1 || out[j] == 1 {
			st[j] = own[i]
		}
	}
	return st
}

// checkData checks that each present tensor holds the element count its shape
// says (a packed weight: Rows*Cols), before a kernel that trusts it runs.
func checkData(n *graph.Node, in ...*Tensor) error {
	for i, t := range in {
		if t == nil {
			continue
		}
		var have int
		switch {
		case t.Packed != nil && t.F32 == nil:
			have = t.Packed.Rows * t.Packed.Cols
		case storageOf(t.DType) == storeF32:
			have = len(t.F32)
		case storageOf(t.DType) == storeF64:
			have = len(t.F64)
		default:
			have = len(t.I64)
		}
		if have != t.Len() {
			return opErr(n, "input %d holds %d elements for shape %v", i, have, t.Shape)
		}
	}
	return nil
}
