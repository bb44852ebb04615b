package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Constant folding: the shape arithmetic of exported models (Shape, Gather,
// Concat, Reshape of constants, ...) is evaluated once, at load time.

// maxFoldElements is the largest output Fold computes.
const maxFoldElements = 1 << 16

// maxFoldInput is the largest input (in elements) Fold reads.
const maxFoldInput = 1 << 22

// foldOps are the ops Fold evaluates.
var foldOps = map[string]bool{
	"Shape": true, "Size": true, "Gather": true, "Unsqueeze": true, "Squeeze": true,
	"Concat": true, "Slice": true, "Cast": true, "Range": true, "ConstantOfShape": true,
	"Reshape": true, "Identity": true, "Add": true, "Sub": true, "Mul": true, "Div": true,
	"Equal": true, "Less": true, "Greater": true, "Where": true, "Not": true,
	"Expand": true, "Neg": true, "Abs": true, "ReduceProd": true, "ReduceSum": true,
}

// errNoFold marks a node that Fold leaves to the runtime: an element type it does not
// compute, an output too large, a division by zero.
var errNoFold = errors.New("not folded")

// Fold evaluates every node whose inputs are all known (g.Constants, or initializers
// with data) and whose output is small (at most 1<<16 elements), for the
// shape-arithmetic ops (Shape, Size, Gather, Unsqueeze, Squeeze, Concat, Slice,
// Cast, Range, ConstantOfShape, Reshape, Identity, Add, Sub, Mul, Div, Equal, Less,
// Greater, Where, Not, Expand, Neg, Abs, ReduceProd, ReduceSum) on int64, int32,
// float32, float64 and bool tensors, and replaces the node by an entry of
// g.Constants named after its output. It also folds nodes whose int64 output is
// known from shapes alone: Shape of a value whose shape is fully static, Size, and
// Gather, Concat, ... of such shapes (Gather(Shape(x), 1) when dim 1 of x is
// fixed). Nodes that produce a graph output are kept.
//
// Then it removes dead nodes (whose outputs no graph output depends on) and the
// constants that no node or graph output uses any more. Initializers are kept.
// It returns the number of nodes removed. g.Values is cleared: call Infer after
// Fold. Fold infers shapes as it goes and fails, leaving g unchanged, where Infer
// would, and on constants that cannot be computed (an index out of range).
func (g *Graph) Fold() (int, error) {
	in := newInferer(g)
	isOutput := make(map[string]bool)
	for _, o := range g.Outputs {
		isOutput[o.Name] = true
	}
	folded := make(map[string]*Const)
	var kept []*Node
	for _, n := range g.Nodes {
		if err := in.node(n); err != nil {
			return 0, err
		}
		if n.Domain != "" || len(n.Outputs) != 1 || n.Outputs[0] == "" || isOutput[n.Outputs[0]] || !foldOps[n.Op] {
			kept = append(kept, n)
			continue
		}
		c, err := in.foldNode(n)
		if errors.Is(err, errNoFold) {
			c, err = nil, nil
		}
		if err != nil {
			return 0, fmt.Errorf("graph: %s: %w", n.describe(), err)
		}
		if c == nil {
			c = in.symConst(n)
		}
		if c == nil {
			kept = append(kept, n)
			continue
		}
		folded[c.Name] = c
		in.addConst(c.Name, c)
	}
	kept = liveNodes(kept, g.Outputs)

	removed := len(g.Nodes) - len(kept)
	g.Nodes = kept
	if g.Constants == nil {
		g.Constants = make(map[string]*Const)
	}
	for name, c := range folded {
		g.Constants[name] = c
	}
	used := make(map[string]bool)
	for _, n := range g.Nodes {
		for _, name := range n.Inputs {
			used[name] = true
		}
	}
	for _, o := range g.Outputs {
		used[o.Name] = true
	}
	for name := range g.Constants {
		if !used[name] {
			delete(g.Constants, name)
		}
	}
	g.Values = nil
	return removed, nil
}

// liveNodes returns the nodes (in order) that some graph output depends on.
func liveNodes(nodes []*Node, outputs []ValueInfo) []*Node {
	live := make(map[string]bool)
	for _, o := range outputs {
		live[o.Name] = true
	}
	keep := make([]bool, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		n := nodes[i]
		for _, out := range n.Outputs {
			if out != "" && live[out] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, name := range n.Inputs {
				live[name] = true
			}
		}
	}
	var out []*Node
	for i, n := range nodes {
		if keep[i] {
			out = append(out, n)
		}
	}
	return out
}

// symConst returns n's output as a constant when inference knows all its elements.
func (in *inferer) symConst(n *Node) *Const {
	s, ok := in.syms[n.Outputs[0]]
	if !ok || !s.allKnown() {
		return nil
	}
	t := &tensor{dtype: I64, shape: []int64{int64(len(s.elems))}, i: make([]int64, len(s.elems))}
	if s.scalar {
		t.shape = []int64{}
	}
	for k, e := range s.elems {
		t.i[k] = e.val
	}
	return t.encode(n.Outputs[0])
}

// tensor is a decoded constant: integers and bools in i, floats in f.
type tensor struct {
	dtype DType
	shape []int64
	i     []int64   // I64, I32, Bool (0 or 1)
	f     []float64 // F32, F64
}

func isFloat(d DType) bool { return d == F32 || d == F64 }

func (t *tensor) len() int {
	if isFloat(t.dtype) {
		return len(t.f)
	}
	return len(t.i)
}

func (t *tensor) float(k int) float64 {
	if isFloat(t.dtype) {
		return t.f[k]
	}
	return float64(t.i[k])
}

func (t *tensor) int(k int) int64 {
	if isFloat(t.dtype) {
		return int64(t.f[k])
	}
	return t.i[k]
}

// newTensor returns a tensor of zeros.
func newTensor(dtype DType, shape []int64) *tensor {
	n, _ := NumElements(shape)
	t := &tensor{dtype: dtype, shape: shape}
	if isFloat(dtype) {
		t.f = make([]float64, n)
	} else {
		t.i = make([]int64, n)
	}
	return t
}

// set stores v, rounded to t's type.
func (t *tensor) setFloat(k int, v float64) {
	switch t.dtype {
	case F32:
		t.f[k] = float64(float32(v))
	case F64:
		t.f[k] = v
	default:
		t.setInt(k, int64(v))
	}
}

// setInt stores v, wrapped to t's type.
func (t *tensor) setInt(k int, v int64) {
	switch t.dtype {
	case I32:
		t.i[k] = int64(int32(v))
	case Bool:
		if v != 0 {
			v = 1
		}
		t.i[k] = v
	case F32, F64:
		t.setFloat(k, float64(v))
	default:
		t.i[k] = v
	}
}

// copyFrom sets element k of t to element j of s (same type).
func (t *tensor) copyFrom(k int, s *tensor, j int) {
	if isFloat(t.dtype) {
		t.f[k] = s.f[j]
	} else {
		t.i[k] = s.i[j]
	}
}

// decodeTensor decodes a constant of a type Fold computes; other types give errNoFold.
func decodeTensor(c *Const) (*tensor, error) {
	n, err := NumElements(c.Shape)
	if err != nil {
		return nil, err
	}
	if n > maxFoldInput {
		return nil, errNoFold
	}
	switch c.DType {
	case I64, I32, Bool, F32, F64:
	default:
		return nil, errNoFold
	}
	size := int64(c.DType.Size())
	if c.Data == nil || int64(len(c.Data)) != n*size {
		return nil, fmt.Errorf("constant %s has %d bytes of data, shape %v of %s needs %d", quote(c.Name), len(c.Data), c.Shape, c.DType, n*size)
	}
	t := newTensor(c.DType, append([]int64{}, c.Shape...))
	d := c.Data
	for k := range int(n) {
		switch c.DType {
		case I64:
			t.i[k] = int64(binary.LittleEndian.Uint64(d[8*k:]))
		case I32:
			t.i[k] = int64(int32(binary.LittleEndian.Uint32(d[4*k:])))
		case Bool:
			if d[k] != 0 {
				t.i[k] = 1
			}
		case F32:
			t.f[k] = float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*k:])))
		case F64:
			t.f[k] = math.Float64frombits(binary.LittleEndian.Uint64(d[8*k:]))
		}
	}
	return t, nil
}

// encode returns t as a constant named name.
func (t *tensor) encode(name string) *Const {
	n := t.len()
	data := make([]byte, 0, n*t.dtype.Size())
	for k := range n {
		switch t.dtype {
		case I64:
			data = binary.LittleEndian.AppendUint64(data, uint64(t.i[k]))
		case I32:
			data = binary.LittleEndian.AppendUint32(data, uint32(t.i[k]))
		case Bool:
			data = append(data, byte(t.i[k]))
		case F32:
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(t.f[k])))
		case F64:
			data = binary.LittleEndian.AppendUint64(data, math.Float64bits(t.f[k]))
		}
	}
	shape := t.shape
	if shape == nil {
		shape = []int64{}
	}
	return &Const{Name: name, DType: t.dtype, Shape: shape, Data: data}
}

// outShape returns the static shape inference gave n's output; errNoFold when it is
// not fully known or too large.
func (in *inferer) outShape(n *Node) ([]int64, error) {
	v := in.values[n.Outputs[0]]
	if v == nil || v.Shape == nil {
		return nil, errNoFold
	}
	shape := make([]int64, len(v.Shape))
	for i, d := range v.Shape {
		if !d.static() {
			return nil, errNoFold
		}
		shape[i] = d.Value
	}
	if c, err := NumElements(shape); err != nil || c > maxFoldElements {
		return nil, errNoFold
	}
	return shape, nil
}

// foldNode evaluates n when all its inputs are known constants. It returns nil when
// some are not.
func (in *inferer) foldNode(n *Node) (*Const, error) {
	if n.Op == "Shape" || n.Op == "Size" {
		return nil, nil // the shape tracking of symConst covers them
	}
	args := make([]*tensor, len(n.Inputs))
	for i, name := range n.Inputs {
		if name == "" {
			continue
		}
		c, ok := in.consts[name]
		if !ok {
			return nil, nil
		}
		t, err := decodeTensor(c)
		if err != nil {
			return nil, err
		}
		args[i] = t
	}
	if len(args) == 0 && n.Op != "ConstantOfShape" {
		return nil, nil
	}
	shape, err := in.outShape(n)
	if err != nil {
		return nil, err
	}
	dtype := in.values[n.Outputs[0]].DType
	switch dtype {
	case I64, I32, Bool, F32, F64:
	default:
		return nil, errNoFold
	}
	out := newTensor(dtype, shape)
	arg := func(i int) *tensor {
		if i < len(args) {
			return args[i]
		}
		return nil
	}
	x := arg(0)
	if x == nil && n.Op != "ConstantOfShape" {
		return nil, errNoFold
	}
	switch n.Op {
	case "Identity", "Reshape", "Unsqueeze", "Squeeze":
		if x.len() != out.len() || x.dtype != dtype {
			return nil, errNoFold
		}
		for k := range out.len() {
			out.copyFrom(k, x, k)
		}
	case "Expand":
		if x.dtype != dtype {
			return nil, errNoFold
		}
		idx, ok := bcastMap(shape, x.shape)
		if !ok {
			return nil, errNoFold
		}
		for k, j := range idx {
			out.copyFrom(k, x, j)
		}
	case "Cast":
		for k := range out.len() {
			if isFloat(x.dtype) {
				if dtype == Bool {
					out.setInt(k, b2i(x.f[k] != 0))
				} else {
					out.setFloat(k, x.f[k])
				}
			} else {
				out.setInt(k, x.i[k])
			}
		}
	case "Neg", "Abs":
		if x.dtype != dtype || dtype == Bool {
			return nil, errNoFold
		}
		for k := range out.len() {
			if isFloat(dtype) {
				v := -x.f[k]
				if n.Op == "Abs" {
					v = math.Abs(x.f[k])
				}
				out.setFloat(k, v)
			} else {
				v := -x.i[k]
				if n.Op == "Abs" && x.i[k] >= 0 {
					v = x.i[k]
				}
				out.setInt(k, v)
			}
		}
	case "Not":
		if x.dtype != Bool {
			return nil, errNoFold
		}
		for k := range out.len() {
			out.i[k] = 1 - x.i[k]
		}
	case "Add", "Sub", "Mul", "Div", "Equal", "Less", "Greater":
		y := arg(1)
		if y == nil || y.dtype != x.dtype {
			return nil, errNoFold
		}
		if err := binaryOp(n.Op, out, x, y); err != nil {
			return nil, err
		}
	case "Where":
		a, b := arg(1), arg(2)
		if a == nil || b == nil || x.dtype != Bool || a.dtype != dtype || b.dtype != dtype {
			return nil, errNoFold
		}
		ic, ok1 := bcastMap(shape, x.shape)
		ia, ok2 := bcastMap(shape, a.shape)
		ib, ok3 := bcastMap(shape, b.shape)
		if !ok1 || !ok2 || !ok3 {
			return nil, errNoFold
		}
		for k := range out.len() {
			if x.i[ic[k]] != 0 {
				out.copyFrom(k, a, ia[k])
			} else {
				out.copyFrom(k, b, ib[k])
			}
		}
	case "Gather":
		return foldGather(n, out, x, arg(1))
	case "Concat":
		return foldConcat(n, out, args)
	case "Slice":
		return in.foldSlice(n, out, x)
	case "Range":
		a, b := arg(1), arg(2)
		if a == nil || b == nil || x.len() != 1 || a.len() != 1 || b.len() != 1 ||
			x.dtype != dtype || a.dtype != dtype || b.dtype != dtype {
			return nil, errNoFold
		}
		for k := range out.len() {
			if isFloat(dtype) {
				out.setFloat(k, x.f[0]+float64(k)*b.f[0])
			} else {
				out.setInt(k, x.i[0]+int64(k)*b.i[0])
			}
		}
	case "ConstantOfShape":
		if v := n.AttrTensor("value"); v != nil {
			vt, err := decodeTensor(v)
			if err != nil {
				return nil, err
			}
			if vt.len() != 1 {
				return nil, fmt.Errorf("value has %d elements, want 1", vt.len())
			}
			for k := range out.len() {
				out.copyFrom(k, vt, 0)
			}
		}
	case "ReduceSum", "ReduceProd":
		return in.foldReduce(n, out, x)
	default:
		return nil, errNoFold
	}
	return out.encode(n.Outputs[0]), nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// bcastMap returns, for each element of a tensor of shape out, the index of the
// element of a tensor of shape in that broadcasting maps to it; ok is false when in
// does not broadcast to out.
func bcastMap(out, in []int64) (idx []int, ok bool) {
	r := len(out)
	off := r - len(in)
	if off < 0 {
		return nil, false
	}
	strides := make([]int, r)
	st := 1
	for i := len(in) - 1; i >= 0; i-- {
		switch in[i] {
		case 1:
		case out[off+i]:
			strides[off+i] = st
		default:
			return nil, false
		}
		st *= int(in[i])
	}
	n, _ := NumElements(out)
	idx = make([]int, n)
	coord := make([]int64, r)
	cur := 0
	for k := range idx {
		idx[k] = cur
		for d := r - 1; d >= 0; d-- {
			coord[d]++
			cur += strides[d]
			if coord[d] < out[d] {
				break
			}
			cur -= strides[d] * int(coord[d])
			coord[d] = 0
		}
	}
	return idx, true
}

// binaryOp computes out = x op y with broadcasting.
func binaryOp(op string, out, x, y *tensor) error {
	ix, ok1 := bcastMap(out.shape, x.shape)
	iy, ok2 := bcastMap(out.shape, y.shape)
	if !ok1 || !ok2 {
		return errNoFold
	}
	if x.dtype == Bool && (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
		return errNoFold
	}
	for k := range out.len() {
		if isFloat(x.dtype) {
			a, b := x.f[ix[k]], y.f[iy[k]]
			switch op {
			case "Add":
				out.setFloat(k, a+b)
			case "Sub":
				out.setFloat(k, a-b)
			case "Mul":
				out.setFloat(k, a*b)
			case "Div":
				out.setFloat(k, a/b)
			case "Equal":
				out.setInt(k, b2i(a == b))
			case "Less":
				out.setInt(k, b2i(a < b))
			case "Greater":
				out.setInt(k, b2i(a > b))
			}
			continue
		}
		a, b := x.i[ix[k]], y.i[iy[k]]
		switch op {
		case "Add":
			out.setInt(k, a+b)
		case "Sub":
			out.setInt(k, a-b)
		case "Mul":
			out.setInt(k, a*b)
		case "Div":
			if b == 0 {
				return errNoFold
			}
			out.setInt(k, a/b)
		case "Equal":
			out.setInt(k, b2i(a == b))
		case "Less":
			out.setInt(k, b2i(a < b))
		case "Greater":
			out.setInt(k, b2i(a > b))
		}
	}
	return nil
}

func foldGather(n *Node, out, x, idx *tensor) (*Const, error) {
	if idx == nil || isFloat(idx.dtype) || idx.dtype == Bool || len(x.shape) == 0 {
		return nil, errNoFold
	}
	axis, err := normAxis(n.AttrInt("axis", 0), len(x.shape))
	if err != nil {
		return nil, err
	}
	d := x.shape[axis]
	inner := 1
	for _, v := range x.shape[axis+1:] {
		inner *= int(v)
	}
	k := 0
	outer := out.len() / max(1, len(idx.i)*inner)
	if len(idx.i) == 0 || inner == 0 {
		return out.encode(n.Outputs[0]), nil
	}
	if outer*len(idx.i)*inner != out.len() || outer*int(d)*inner != x.len() {
		return nil, errNoFold
	}
	for o := range outer {
		for _, j := range idx.i {
			if j < -d || j >= d {
				return nil, fmt.Errorf("index %d is out of range for axis %d of size %d", j, axis, d)
			}
			if j < 0 {
				j += d
			}
			base := (o*int(d) + int(j)) * inner
			for e := range inner {
				out.copyFrom(k, x, base+e)
				k++
			}
		}
	}
	return out.encode(n.Outputs[0]), nil
}

func foldConcat(n *Node, out *tensor, args []*tensor) (*Const, error) {
	axis, err := normAxis(n.AttrInt("axis", 0), len(out.shape))
	if err != nil {
		return nil, err
	}
	outer := 1
	for _, v := range out.shape[:axis] {
		outer *= int(v)
	}
	k := 0
	for o := range outer {
		for _, a := range args {
			if a == nil {
				continue
			}
			if a.dtype != out.dtype || len(a.shape) != len(out.shape) {
				return nil, errNoFold
			}
			block := 1
			for _, v := range a.shape[axis:] {
				block *= int(v)
			}
			for e := range block {
				if k >= out.len() || o*block+e >= a.len() {
					return nil, errNoFold
				}
				out.copyFrom(k, a, o*block+e)
				k++
			}
		}
	}
	if k != out.len() {
		return nil, errNoFold
	}
	return out.encode(n.Outputs[0]), nil
}

func (in *inferer) foldSlice(n *Node, out, x *tensor) (*Const, error) {
	if x.dtype != out.dtype {
		return nil, errNoFold
	}
	starts, ends, axes, steps, ok := in.sliceArgs(n)
	if !ok {
		return nil, errNoFold
	}
	list, steps, err := checkSlice(starts, ends, axes, steps, len(x.shape))
	if err != nil {
		return nil, err
	}
	r := len(x.shape)
	first := make([]int64, r) // the first input coordinate of each axis
	step := make([]int64, r)
	for i := range step {
		step[i] = 1
	}
	for i, a := range list {
		start, count := sliceRange(x.shape[a], starts[i], ends[i], steps[i])
		if count != out.shape[a] {
			return nil, errNoFold
		}
		first[a], step[a] = start, steps[i]
	}
	strides := make([]int64, r)
	st := int64(1)
	for i := r - 1; i >= 0; i-- {
		strides[i] = st
		st *= x.shape[i]
	}
	coord := make([]int64, r)
	for k := range out.len() {
		var j int64
		for d := range r {
			j += (first[d] + coord[d]*step[d]) * strides[d]
		}
		out.copyFrom(k, x, int(j))
		for d := r - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < out.shape[d] {
				break
			}
			coord[d] = 0
		}
	}
	return out.encode(n.Outputs[0]), nil
}

func (in *inferer) foldReduce(n *Node, out, x *tensor) (*Const, error) {
	if x.dtype != out.dtype || x.dtype == Bool {
		return nil, errNoFold
	}
	axes, ok := n.AttrInts("axes")
	if !ok {
		axes, _ = in.constInts(n, 1)
	}
	r := len(x.shape)
	reduced := make([]bool, r)
	if len(axes) == 0 {
		if n.AttrInt("noop_with_empty_axes", 0) != 0 {
			if x.len() != out.len() {
				return nil, errNoFold
			}
			for k := range out.len() {
				out.copyFrom(k, x, k)
			}
			return out.encode(n.Outputs[0]), nil
		}
		for i := range reduced {
			reduced[i] = true
		}
	} else {
		list, err := normAxes(axes, r)
		if err != nil {
			return nil, err
		}
		for _, a := range list {
			reduced[a] = true
		}
	}
	// Strides of the output, over the input's axes (0 for reduced ones).
	strides := make([]int, r)
	st := 1
	for i := r - 1; i >= 0; i-- {
		if !reduced[i] {
			strides[i] = st
			st *= int(x.shape[i])
		}
	}
	if st != out.len() {
		return nil, errNoFold
	}
	prod := n.Op == "ReduceProd"
	for k := range out.len() {
		if prod {
			out.setInt(k, 1)
		}
	}
	coord := make([]int64, r)
	cur := 0
	for k := range x.len() {
		if isFloat(x.dtype) {
			if prod {
				out.f[cur] *= x.f[k]
			} else {
				out.f[cur] += x.f[k]
			}
		} else {
			if prod {
				out.setInt(cur, out.i[cur]*x.i[k])
			} else {
				out.setInt(cur, out.i[cur]+x.i[k])
			}
		}
		for d := r - 1; d >= 0; d-- {
			coord[d]++
			cur += strides[d]
			if coord[d] < x.shape[d] {
				break
			}
			cur -= strides[d] * int(coord[d])
			coord[d] = 0
		}
	}
	if out.dtype == F32 {
		for k := range out.f {
			out.f[k] = float64(float32(out.f[k]))
		}
	}
	return out.encode(n.Outputs[0]), nil
}
