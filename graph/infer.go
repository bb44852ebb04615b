package graph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Shape inference. Infer walks the nodes in order and applies a rule per op (the
// ONNX spec's, for opsets 11 to 18). Dims are fixed (Value >= 0), symbolic (Param
// names them: "batch") or unknown (Value -1, Param ""). Symbolic dims propagate by
// name: two dims with the same Param are the same size.
//
// Besides shapes, inference tracks the contents of small int64 tensors built from
// shapes (Shape, Gather, Concat, Unsqueeze, Slice, ... of shapes), element by
// element, each a known integer, a named symbolic size or unknown. That lets
// Reshape, Expand and friends give symbolic dims even when their shape input is
// computed at run time, and lets Fold turn such tensors into constants when all their
// elements are known.

// Infer fills g.Values with the element type and shape of every value: graph inputs
// (from their declared types), initializers and constants (from their dims), and
// node outputs (by the op's rule). Constant inputs (g.Constants, initializers with
// data) are used where an op's output shape depends on them (Reshape, Slice, ...);
// otherwise the output's rank may still be known with unknown dims. Where a graph
// output's declared type is more precise than the inferred one, the declared dims
// fill the gaps.
//
// Infer fails, naming the node, on shapes that cannot match (MatMul inner dims 3 and
// 4, broadcasting 2 with 3, a Reshape that changes the element count, ...) and on
// invalid attributes (an axis out of range, a perm that is not a permutation).
// Nodes of ops the runtime does not implement get outputs of unknown type and rank.
func (g *Graph) Infer() error {
	in := newInferer(g)
	for _, n := range g.Nodes {
		if err := in.node(n); err != nil {
			return err
		}
	}
	if err := in.outputs(); err != nil {
		return err
	}
	g.Values = in.values
	return nil
}

// String formats d: its size, its name, or "?" when it is unknown.
func (d Dim) String() string {
	switch {
	case d.Value >= 0:
		return strconv.FormatInt(d.Value, 10)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// formatShape formats a shape as [batch,32,64], or "unknown" when the rank is
// unknown.
func formatShape(s []Dim) string {
	if s == nil {
		return "(unknown rank)"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}

var unknownDim = Dim{Value: -1}

func fixed(v int64) Dim { return Dim{Value: v} }

func (d Dim) static() bool { return d.Value >= 0 }

// broadcastDim returns the dim that broadcasting a with b gives; ok is false when
// they cannot broadcast (two different fixed sizes, neither 1).
func broadcastDim(a, b Dim) (Dim, bool) {
	switch {
	case a.Value == 1:
		return b, true
	case b.Value == 1:
		return a, true
	case a.static() && b.static():
		return a, a.Value == b.Value
	case a.static():
		return a, true
	case b.static():
		return b, true
	case a.Param != "" && a.Param == b.Param:
		return a, true
	}
	return unknownDim, true
}

// unifyDim returns the dim that two dims known to be equal give; ok is false when
// they are different fixed sizes.
func unifyDim(a, b Dim) (Dim, bool) {
	switch {
	case a.static() && b.static():
		return a, a.Value == b.Value
	case a.static():
		return a, true
	case b.static():
		return b, true
	case a.Param != "":
		return a, true
	}
	return b, true
}

// broadcast returns the shape multidirectional broadcasting gives, nil when some
// rank is unknown.
func broadcast(shapes ...[]Dim) ([]Dim, error) {
	r := 0
	for _, s := range shapes {
		if s == nil {
			return nil, nil
		}
		r = max(r, len(s))
	}
	out := make([]Dim, r)
	for i := range out {
		out[i] = fixed(1)
	}
	for _, s := range shapes {
		off := r - len(s)
		for i, d := range s {
			m, ok := broadcastDim(out[off+i], d)
			if !ok {
				list := make([]string, len(shapes))
				for j, s := range shapes {
					list[j] = formatShape(s)
				}
				return nil, fmt.Errorf("shapes %s cannot be broadcast together", strings.Join(list, " and "))
			}
			out[off+i] = m
		}
	}
	return out, nil
}

// mulDims returns the product of dims: fixed when they all are, the one symbolic dim
// when the others are all 1, unknown otherwise or on overflow.
func mulDims(dims []Dim) Dim {
	p := int64(1)
	var sym *Dim
	for i, d := range dims {
		switch {
		case d.Value == 1:
		case d.static():
			if d.Value != 0 && p > math.MaxInt64/d.Value {
				return unknownDim
			}
			p *= d.Value
		case sym == nil:
			sym = &dims[i]
		default:
			return unknownDim
		}
	}
	if sym != nil {
		if p == 1 {
			return *sym
		}
		if p == 0 {
			return fixed(0)
		}
		return unknownDim
	}
	return fixed(p)
}

func cloneDims(s []Dim) []Dim {
	if s == nil {
		return nil
	}
	return append([]Dim{}, s...)
}

func unknownShape(rank int) []Dim {
	s := make([]Dim, rank)
	for i := range s {
		s[i] = unknownDim
	}
	return s
}

func constDims(shape []int64) []Dim {
	s := make([]Dim, len(shape))
	for i, d := range shape {
		s[i] = fixed(d)
	}
	return s
}

// staticNumel returns the element count of s when all its dims are fixed.
func staticNumel(s []Dim) (int64, bool) {
	if s == nil {
		return 0, false
	}
	n := int64(1)
	for _, d := range s {
		if !d.static() {
			return 0, false
		}
		if d.Value != 0 && n > math.MaxInt64/d.Value {
			return 0, false
		}
		n *= d.Value
	}
	return n, true
}

// normAxis returns axis in [0, rank), counting a negative axis from the end.
func normAxis(axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// normAxes normalizes axes for rank and fails on duplicates.
func normAxes(axes []int64, rank int) ([]int, error) {
	out := make([]int, len(axes))
	seen := make(map[int]bool)
	for i, a := range axes {
		ax, err := normAxis(a, rank)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, fmt.Errorf("axes %v repeat axis %d", axes, a)
		}
		seen[ax] = true
		out[i] = ax
	}
	return out, nil
}

// symElem is one element of a small int64 tensor built from shapes: a known integer,
// a named symbolic size, or unknown.
type symElem struct {
	val   int64
	param string
	known bool
}

// symValue is the content of a scalar or 1-D int64 tensor, element by element.
type symValue struct {
	elems  []symElem
	scalar bool
}

func (s symValue) allKnown() bool {
	for _, e := range s.elems {
		if !e.known {
			return false
		}
	}
	return true
}

func dimElem(d Dim) symElem {
	if d.static() {
		return symElem{val: d.Value, known: true}
	}
	return symElem{param: d.Param}
}

// maxSymLen is the largest int64 tensor whose content inference tracks.
const maxSymLen = 1024

// inferer holds the state of one inference pass.
type inferer struct {
	g      *Graph
	values map[string]*ValueInfo
	consts map[string]*Const // values known at load time: constants, initializers with data
	syms   map[string]symValue
}

func newInferer(g *Graph) *inferer {
	in := &inferer{
		g:      g,
		values: make(map[string]*ValueInfo),
		consts: make(map[string]*Const),
		syms:   make(map[string]symValue),
	}
	for _, v := range g.Inputs {
		in.values[v.Name] = &ValueInfo{Name: v.Name, DType: v.DType, Shape: cloneDims(v.Shape)}
	}
	for _, c := range g.Initializers {
		in.addConst(c.Name, c)
	}
	for name, c := range g.Constants {
		in.addConst(name, c)
	}
	return in
}

// addConst records the constant c as value name; its data is known when not nil.
func (in *inferer) addConst(name string, c *Const) {
	in.values[name] = &ValueInfo{Name: name, DType: c.DType, Shape: constDims(c.Shape)}
	if c.Data != nil {
		in.consts[name] = c
	}
}

// info returns what is known of value name (an unknown type and rank when nothing).
func (in *inferer) info(name string) *ValueInfo {
	if v, ok := in.values[name]; ok {
		return v
	}
	return &ValueInfo{Name: name}
}

// arg returns what is known of input i of n; ok is false when the input is absent.
func (in *inferer) arg(n *Node, i int) (*ValueInfo, bool) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return &ValueInfo{}, false
	}
	return in.info(n.Inputs[i]), true
}

// set records the type of output i of n, when n has it.
func (in *inferer) set(n *Node, i int, dtype DType, shape []Dim) {
	if i < len(n.Outputs) && n.Outputs[i] != "" {
		in.values[n.Outputs[i]] = &ValueInfo{Name: n.Outputs[i], DType: dtype, Shape: shape}
	}
}

// constInts returns the elements of input i of n when it is a known int64 or int32
// tensor of rank 0 or 1.
func (in *inferer) constInts(n *Node, i int) ([]int64, bool) {
	if i >= len(n.Inputs) || n.Inputs[i] == "" {
		return nil, false
	}
	name := n.Inputs[i]
	if c, ok := in.consts[name]; ok {
		if len(c.Shape) > 1 {
			return nil, false
		}
		return constToInts(c)
	}
	if s, ok := in.syms[name]; ok && s.allKnown() {
		vs := make([]int64, len(s.elems))
		for j, e := range s.elems {
			vs[j] = e.val
		}
		return vs, true
	}
	return nil, false
}

// constToInts returns the elements of an int64 or int32 constant.
func constToInts(c *Const) ([]int64, bool) {
	n, err := NumElements(c.Shape)
	if err != nil || c.Data == nil {
		return nil, false
	}
	switch c.DType {
	case I64:
		if int64(len(c.Data)) != 8*n {
			return nil, false
		}
		vs := make([]int64, n)
		for j := range vs {
			vs[j] = int64(binary.LittleEndian.Uint64(c.Data[8*j:]))
		}
		return vs, true
	case I32:
		if int64(len(c.Data)) != 4*n {
			return nil, false
		}
		vs := make([]int64, n)
		for j := range vs {
			vs[j] = int64(int32(binary.LittleEndian.Uint32(c.Data[4*j:])))
		}
		return vs, true
	}
	return nil, false
}

// symOf returns the content of value name when it is tracked: an int64 tensor of
// rank 0 or 1 built from shapes, or a small int64 constant.
func (in *inferer) symOf(name string) (symValue, bool) {
	if name == "" {
		return symValue{}, false
	}
	if s, ok := in.syms[name]; ok {
		return s, true
	}
	c, ok := in.consts[name]
	if !ok || c.DType != I64 || len(c.Shape) > 1 {
		return symValue{}, false
	}
	vs, ok := constToInts(c)
	if !ok || len(vs) > maxSymLen {
		return symValue{}, false
	}
	s := symValue{elems: make([]symElem, len(vs)), scalar: len(c.Shape) == 0}
	for i, v := range vs {
		s.elems[i] = symElem{val: v, known: true}
	}
	return s, true
}

// shapeArg returns the elements of input i of n, a 1-D shape-like tensor; ok is false
// when they are not tracked. rank is its length when known from its shape, else -1.
func (in *inferer) shapeArg(n *Node, i int) (elems []symElem, rank int, ok bool) {
	rank = -1
	v, present := in.arg(n, i)
	if !present {
		return nil, rank, false
	}
	if len(v.Shape) == 1 && v.Shape[0].static() && v.Shape[0].Value <= maxSymLen {
		rank = int(v.Shape[0].Value)
	}
	s, ok := in.symOf(n.Inputs[i])
	if !ok || s.scalar {
		return nil, rank, false
	}
	return s.elems, len(s.elems), true
}

// node infers the outputs of n.
func (in *inferer) node(n *Node) error {
	if err := in.rule(n); err != nil {
		return fmt.Errorf("graph: %s: %w", n.describe(), err)
	}
	for _, out := range n.Outputs {
		if _, ok := in.values[out]; !ok && out != "" {
			in.values[out] = &ValueInfo{Name: out}
		}
	}
	in.symRule(n)
	return nil
}

// outputs merges the graph outputs' declared types into the inferred ones.
func (in *inferer) outputs() error {
	for _, o := range in.g.Outputs {
		v, ok := in.values[o.Name]
		if !ok {
			v = &ValueInfo{Name: o.Name}
			in.values[o.Name] = v
		}
		if v.DType == DTypeInvalid {
			v.DType = o.DType
		} else if o.DType != DTypeInvalid && o.DType != v.DType {
			return fmt.Errorf("graph: output %s: inferred type %s, the model declares %s", quote(o.Name), v.DType, o.DType)
		}
		switch {
		case o.Shape == nil:
		case v.Shape == nil:
			v.Shape = cloneDims(o.Shape)
		case len(v.Shape) != len(o.Shape):
			return fmt.Errorf("graph: output %s: inferred shape %s, the model declares %s", quote(o.Name), formatShape(v.Shape), formatShape(o.Shape))
		default:
			for i, d := range o.Shape {
				w := v.Shape[i]
				switch {
				case w.static() && d.static() && w.Value != d.Value:
					return fmt.Errorf("graph: output %s: inferred shape %s, the model declares %s", quote(o.Name), formatShape(v.Shape), formatShape(o.Shape))
				case !w.static() && w.Param == "":
					v.Shape[i] = d
				}
			}
		}
	}
	return nil
}

// Ops grouped by shape rule.
var (
	unaryOps = map[string]bool{
		"Abs": true, "Ceil": true, "Cos": true, "Erf": true, "Exp": true, "Floor": true,
		"Log": true, "Neg": true, "Reciprocal": true, "Relu": true, "Round": true,
		"Sigmoid": true, "Sign": true, "Sin": true, "Softplus": true, "Sqrt": true,
		"Tanh": true, "Elu": true, "HardSigmoid": true, "HardSwish": true,
		"LeakyRelu": true, "Gelu": true, "Identity": true, "Clip": true, "Trilu": true,
	}
	arithOps   = map[string]bool{"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Mod": true}
	compareOps = map[string]bool{
		"Equal": true, "Less": true, "Greater": true, "GreaterOrEqual": true,
		"LessOrEqual": true, "And": true, "Or": true, "Xor": true,
	}
	variadicOps = map[string]bool{"Max": true, "Min": true, "Mean": true, "Sum": true}
	reduceOps   = map[string]bool{
		"ReduceL2": true, "ReduceLogSumExp": true, "ReduceMax": true, "ReduceMean": true,
		"ReduceMin": true, "ReduceProd": true, "ReduceSum": true, "ReduceSumSquare": true,
	}
)

// rule applies n's shape rule.
func (in *inferer) rule(n *Node) error {
	if n.Domain != "" {
		return nil
	}
	x, _ := in.arg(n, 0)
	switch {
	case unaryOps[n.Op]:
		in.set(n, 0, x.DType, cloneDims(x.Shape))
		return nil
	case arithOps[n.Op] || compareOps[n.Op] || variadicOps[n.Op] || n.Op == "Where":
		return in.broadcastRule(n)
	case reduceOps[n.Op]:
		return in.reduce(n, x)
	}
	switch n.Op {
	case "Not":
		in.set(n, 0, Bool, cloneDims(x.Shape))
	case "Dropout":
		in.set(n, 0, x.DType, cloneDims(x.Shape))
		in.set(n, 1, Bool, cloneDims(x.Shape))
	case "Softmax", "LogSoftmax":
		def := int64(-1)
		if in.g.Opset < 13 {
			def = 1
		}
		if x.Shape != nil {
			if _, err := normAxis(n.AttrInt("axis", def), len(x.Shape)); err != nil {
				return err
			}
		}
		in.set(n, 0, x.DType, cloneDims(x.Shape))
	case "Cast":
		to := n.AttrInt("to", 0)
		t, ok := onnxTypes[uint64(to)]
		if !ok {
			return fmt.Errorf("cast to data type %s is not supported", onnxTypeName(uint64(to)))
		}
		in.set(n, 0, t.dtype, cloneDims(x.Shape))
	case "CastLike":
		t, _ := in.arg(n, 1)
		in.set(n, 0, t.DType, cloneDims(x.Shape))
	case "Constant":
		c, err := constantValue(n)
		if err != nil {
			return err
		}
		in.addConst(c.Name, c)
	case "Shape":
		if x.Shape == nil {
			in.set(n, 0, I64, unknownShape(1))
			return nil
		}
		start, end := shapeRange(n, len(x.Shape))
		in.set(n, 0, I64, []Dim{fixed(int64(end - start))})
	case "Size":
		in.set(n, 0, I64, []Dim{})
	case "ConstantOfShape":
		return in.constantOfShape(n)
	case "Range":
		return in.rangeRule(n, x)
	case "Reshape":
		return in.reshape(n, x)
	case "Flatten":
		if x.Shape == nil {
			in.set(n, 0, x.DType, unknownShape(2))
			return nil
		}
		axis := n.AttrInt("axis", 1)
		r := len(x.Shape)
		if axis < -int64(r) || axis > int64(r) {
			return fmt.Errorf("axis %d is out of range for rank %d", axis, r)
		}
		if axis < 0 {
			axis += int64(r)
		}
		in.set(n, 0, x.DType, []Dim{mulDims(x.Shape[:axis]), mulDims(x.Shape[axis:])})
	case "Expand":
		return in.expand(n, x)
	case "Tile":
		return in.tile(n, x)
	case "Transpose":
		return in.transpose(n, x)
	case "Gather":
		return in.gather(n, x)
	case "Unsqueeze":
		return in.unsqueeze(n, x)
	case "Squeeze":
		return in.squeeze(n, x)
	case "Concat":
		return in.concat(n)
	case "Split":
		return in.split(n, x)
	case "Slice":
		return in.slice(n, x)
	case "MatMul":
		return in.matmul(n, x)
	case "Gemm":
		return in.gemm(n, x)
	case "Conv":
		return in.conv(n, x)
	case "MaxPool", "AveragePool":
		return in.pool(n, x)
	case "GlobalAveragePool", "GlobalMaxPool":
		if x.Shape == nil {
			in.set(n, 0, x.DType, nil)
			return nil
		}
		if len(x.Shape) < 2 {
			return fmt.Errorf("input %s has rank %d, want at least 2", formatShape(x.Shape), len(x.Shape))
		}
		out := cloneDims(x.Shape)
		for i := 2; i < len(out); i++ {
			out[i] = fixed(1)
		}
		in.set(n, 0, x.DType, out)
	case "BatchNormalization":
		in.set(n, 0, x.DType, cloneDims(x.Shape))
		for i := 1; i < len(n.Outputs); i++ {
			v, _ := in.arg(n, i+2) // running mean and var are shaped like inputs 3 and 4
			in.set(n, i, v.DType, cloneDims(v.Shape))
		}
	case "LayerNormalization":
		in.set(n, 0, x.DType, cloneDims(x.Shape))
		stash := F32
		if t, ok := onnxTypes[uint64(n.AttrInt("stash_type", 1))]; ok {
			stash = t.dtype
		}
		var stat []Dim
		if x.Shape != nil {
			axis, err := normAxis(n.AttrInt("axis", -1), len(x.Shape))
			if err != nil {
				return err
			}
			stat = cloneDims(x.Shape)
			for i := axis; i < len(stat); i++ {
				stat[i] = fixed(1)
			}
		}
		in.set(n, 1, stash, stat)
		in.set(n, 2, stash, cloneDims(stat))
	case "ArgMax", "ArgMin":
		if x.Shape == nil {
			in.set(n, 0, I64, nil)
			return nil
		}
		axis, err := normAxis(n.AttrInt("axis", 0), len(x.Shape))
		if err != nil {
			return err
		}
		in.set(n, 0, I64, reduceShape(x.Shape, []int{axis}, n.AttrInt("keepdims", 1) != 0))
	}
	return nil
}

// broadcastRule infers the elementwise ops with multidirectional broadcasting: the
// arithmetic, comparison and variadic ops and Where.
func (in *inferer) broadcastRule(n *Node) error {
	var shapes [][]Dim
	dtype := DTypeInvalid
	for i := range n.Inputs {
		v, ok := in.arg(n, i)
		if !ok {
			continue
		}
		shapes = append(shapes, v.Shape)
		if dtype == DTypeInvalid && (n.Op != "Where" || i > 0) { // Where's condition is bool
			dtype = v.DType
		}
	}
	if len(shapes) == 0 {
		return errors.New("no inputs")
	}
	out, err := broadcast(shapes...)
	if err != nil {
		return err
	}
	if compareOps[n.Op] {
		dtype = Bool
	}
	in.set(n, 0, dtype, out)
	return nil
}

// shapeRange returns the dims [start, end) that Shape's start and end attributes
// select from a shape of rank r.
func shapeRange(n *Node, r int) (int, int) {
	clamp := func(v int64) int {
		if v < 0 {
			v += int64(r)
		}
		return int(min(max(v, 0), int64(r)))
	}
	start := clamp(n.AttrInt("start", 0))
	end := clamp(n.AttrInt("end", int64(r)))
	return start, max(start, end)
}

// reduceShape removes (or sets to 1, with keepdims) the axes of s.
func reduceShape(s []Dim, axes []int, keepdims bool) []Dim {
	drop := make(map[int]bool)
	for _, a := range axes {
		drop[a] = true
	}
	out := []Dim{}
	for i, d := range s {
		switch {
		case !drop[i]:
			out = append(out, d)
		case keepdims:
			out = append(out, fixed(1))
		}
	}
	return out
}

func (in *inferer) reduce(n *Node, x *ValueInfo) error {
	keep := n.AttrInt("keepdims", 1) != 0
	axes, ok := n.AttrInts("axes")
	if !ok {
		if _, present := in.arg(n, 1); present {
			axes, ok = in.constInts(n, 1)
			if !ok {
				// Unknown axes: the rank is known with keepdims, or from the axes' count.
				switch {
				case x.Shape == nil:
					in.set(n, 0, x.DType, nil)
				case keep:
					in.set(n, 0, x.DType, unknownShape(len(x.Shape)))
				default:
					a, _ := in.arg(n, 1)
					if len(a.Shape) == 1 && a.Shape[0].static() && a.Shape[0].Value <= int64(len(x.Shape)) {
						in.set(n, 0, x.DType, unknownShape(len(x.Shape)-int(a.Shape[0].Value)))
					} else {
						in.set(n, 0, x.DType, nil)
					}
				}
				return nil
			}
		}
	}
	if x.Shape == nil {
		in.set(n, 0, x.DType, nil)
		return nil
	}
	var list []int
	if len(axes) == 0 {
		if n.AttrInt("noop_with_empty_axes", 0) != 0 {
			in.set(n, 0, x.DType, cloneDims(x.Shape))
			return nil
		}
		for i := range x.Shape {
			list = append(list, i)
		}
	} else {
		var err error
		if list, err = normAxes(axes, len(x.Shape)); err != nil {
			return err
		}
	}
	in.set(n, 0, x.DType, reduceShape(x.Shape, list, keep))
	return nil
}

// shapeDims turns the elements of a shape input into dims; negative sizes fail.
func shapeDims(elems []symElem) ([]Dim, error) {
	out := make([]Dim, len(elems))
	for i, e := range elems {
		switch {
		case !e.known:
			out[i] = Dim{Value: -1, Param: e.param}
		case e.val < 0:
			return nil, fmt.Errorf("shape holds a negative size %d", e.val)
		default:
			out[i] = fixed(e.val)
		}
	}
	return out, nil
}

func (in *inferer) constantOfShape(n *Node) error {
	dtype := F32
	if t := n.AttrTensor("value"); t != nil {
		dtype = t.DType
	}
	elems, rank, ok := in.shapeArg(n, 0)
	if !ok {
		if rank >= 0 {
			in.set(n, 0, dtype, unknownShape(rank))
		} else {
			in.set(n, 0, dtype, nil)
		}
		return nil
	}
	out, err := shapeDims(elems)
	if err != nil {
		return err
	}
	in.set(n, 0, dtype, out)
	return nil
}

// rangeCount returns the number of elements of Range(start, limit, delta).
func rangeCount(start, limit, delta float64) (int64, error) {
	if delta == 0 || math.IsNaN(delta) {
		return 0, errors.New("Range delta is 0")
	}
	c := math.Ceil((limit - start) / delta)
	switch {
	case math.IsNaN(c):
		return 0, errors.New("Range bounds are not numbers")
	case c <= 0:
		return 0, nil
	case c > 1<<53:
		return 0, fmt.Errorf("Range of %g elements is too large", c)
	}
	return int64(c), nil
}

func (in *inferer) rangeRule(n *Node, x *ValueInfo) error {
	var vals [3]float64
	for i := range vals {
		c, ok := in.consts[argName(n, i)]
		if !ok || len(c.Shape) > 1 || len(c.Shape) == 1 && c.Shape[0] != 1 {
			in.set(n, 0, x.DType, unknownShape(1))
			return nil
		}
		t, err := decodeTensor(c)
		if err != nil || len(t.f)+len(t.i) != 1 {
			in.set(n, 0, x.DType, unknownShape(1))
			return nil
		}
		vals[i] = t.float(0)
	}
	count, err := rangeCount(vals[0], vals[1], vals[2])
	if err != nil {
		return err
	}
	in.set(n, 0, x.DType, []Dim{fixed(count)})
	return nil
}

func argName(n *Node, i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

func (in *inferer) reshape(n *Node, x *ValueInfo) error {
	var elems []symElem
	rank := -1
	ok := false
	if s, has := n.AttrInts("shape"); has && len(n.Inputs) < 2 { // opset < 5
		for _, v := range s {
			elems = append(elems, symElem{val: v, known: true})
		}
		rank, ok = len(s), true
	} else {
		elems, rank, ok = in.shapeArg(n, 1)
	}
	if !ok {
		if rank >= 0 {
			in.set(n, 0, x.DType, unknownShape(rank))
		} else {
			in.set(n, 0, x.DType, nil)
		}
		return nil
	}
	allowZero := n.AttrInt("allowzero", 0) != 0
	out := make([]Dim, len(elems))
	neg := -1
	for i, e := range elems {
		switch {
		case !e.known:
			out[i] = Dim{Value: -1, Param: e.param}
		case e.val == -1:
			if neg >= 0 {
				return fmt.Errorf("shape %s has two -1 dims", formatElems(elems))
			}
			neg = i
		case e.val < -1:
			return fmt.Errorf("shape %s has a negative size", formatElems(elems))
		case e.val == 0 && !allowZero:
			switch {
			case x.Shape == nil:
				out[i] = unknownDim
			case i >= len(x.Shape):
				return fmt.Errorf("shape %s copies dim %d (0) of input %s, which has no such dim", formatElems(elems), i, formatShape(x.Shape))
			default:
				out[i] = x.Shape[i]
			}
		default:
			out[i] = fixed(e.val)
		}
	}
	if neg >= 0 {
		d, err := minusOneDim(x.Shape, out, neg)
		if err != nil {
			return err
		}
		out[neg] = d
	} else if a, ok := staticNumel(x.Shape); ok {
		if b, ok := staticNumel(out); ok && a != b {
			return fmt.Errorf("cannot reshape %s (%d elements) to %s (%d elements)", formatShape(x.Shape), a, formatShape(out), b)
		}
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func formatElems(elems []symElem) string {
	parts := make([]string, len(elems))
	for i, e := range elems {
		switch {
		case e.known:
			parts[i] = strconv.FormatInt(e.val, 10)
		case e.param != "":
			parts[i] = e.param
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// minusOneDim works out the -1 dim (index neg) of a Reshape from input shape in to
// out. Symbolic dims that appear on both sides cancel: reshaping [batch,32,64] to
// [-1,32,4,16] gives batch.
func minusOneDim(in, out []Dim, neg int) (Dim, error) {
	if in == nil {
		return unknownDim, nil
	}
	params := make(map[string]int)
	inStatic := int64(1)
	for _, d := range in {
		switch {
		case d.static():
			if d.Value != 0 && inStatic > math.MaxInt64/d.Value {
				return unknownDim, nil
			}
			inStatic *= d.Value
		case d.Param != "":
			params[d.Param]++
		default:
			return unknownDim, nil
		}
	}
	outStatic := int64(1)
	for i, d := range out {
		switch {
		case i == neg:
		case d.static():
			if d.Value != 0 && outStatic > math.MaxInt64/d.Value {
				return unknownDim, nil
			}
			outStatic *= d.Value
		case d.Param != "" && params[d.Param] > 0:
			params[d.Param]--
		default:
			return unknownDim, nil
		}
	}
	var left []string
	for p, c := range params {
		for range c {
			left = append(left, p)
		}
	}
	if outStatic == 0 {
		if inStatic == 0 && len(left) == 0 {
			return unknownDim, nil // ambiguous; ONNX does not define it
		}
		return unknownDim, fmt.Errorf("cannot reshape %s to %s: the other dims hold no elements", formatShape(in), formatShape(out))
	}
	if inStatic%outStatic != 0 {
		if len(left) == 0 {
			return unknownDim, fmt.Errorf("cannot reshape %s (%d elements) to %s", formatShape(in), inStatic, formatShape(out))
		}
		return unknownDim, nil
	}
	ratio := inStatic / outStatic
	switch {
	case len(left) == 0:
		return fixed(ratio), nil
	case len(left) == 1 && ratio == 1:
		return Dim{Value: -1, Param: left[0]}, nil
	case ratio == 0:
		return fixed(0), nil
	}
	return unknownDim, nil
}

func (in *inferer) expand(n *Node, x *ValueInfo) error {
	elems, rank, ok := in.shapeArg(n, 1)
	var shape []Dim
	switch {
	case ok:
		var err error
		if shape, err = shapeDims(elems); err != nil {
			return err
		}
	case rank >= 0:
		shape = unknownShape(rank)
	}
	out, err := broadcast(x.Shape, shape)
	if err != nil {
		return err
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func (in *inferer) tile(n *Node, x *ValueInfo) error {
	reps, ok := in.constInts(n, 1)
	if x.Shape == nil {
		in.set(n, 0, x.DType, nil)
		return nil
	}
	if !ok {
		in.set(n, 0, x.DType, unknownShape(len(x.Shape)))
		return nil
	}
	if len(reps) != len(x.Shape) {
		return fmt.Errorf("repeats %v do not match input %s", reps, formatShape(x.Shape))
	}
	out := make([]Dim, len(reps))
	for i, r := range reps {
		if r < 0 {
			return fmt.Errorf("repeats %v hold a negative count", reps)
		}
		out[i] = mulDims([]Dim{x.Shape[i], fixed(r)})
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func (in *inferer) transpose(n *Node, x *ValueInfo) error {
	perm, ok := n.AttrInts("perm")
	if x.Shape == nil {
		if ok {
			in.set(n, 0, x.DType, unknownShape(len(perm)))
		} else {
			in.set(n, 0, x.DType, nil)
		}
		return nil
	}
	r := len(x.Shape)
	if !ok {
		perm = make([]int64, r)
		for i := range perm {
			perm[i] = int64(r - 1 - i)
		}
	}
	if len(perm) != r {
		return fmt.Errorf("perm %v does not match input %s", perm, formatShape(x.Shape))
	}
	seen := make([]bool, r)
	out := make([]Dim, r)
	for i, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return fmt.Errorf("perm %v is not a permutation of [0, %d)", perm, r)
		}
		seen[p] = true
		out[i] = x.Shape[p]
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func (in *inferer) gather(n *Node, x *ValueInfo) error {
	idx, _ := in.arg(n, 1)
	if x.Shape == nil || idx.Shape == nil {
		in.set(n, 0, x.DType, nil)
		return nil
	}
	axis, err := normAxis(n.AttrInt("axis", 0), len(x.Shape))
	if err != nil {
		return err
	}
	if d := x.Shape[axis]; d.static() {
		if c, ok := in.consts[n.Inputs[1]]; ok {
			if vs, ok := constToInts(c); ok {
				for _, v := range vs {
					if v < -d.Value || v >= d.Value {
						return fmt.Errorf("index %d is out of range for axis %d of size %d", v, axis, d.Value)
					}
				}
			}
		}
	}
	out := append(cloneDims(x.Shape[:axis]), idx.Shape...)
	out = append(out, x.Shape[axis+1:]...)
	in.set(n, 0, x.DType, out)
	return nil
}

// axesArg returns the axes of Squeeze, Unsqueeze and Split-like ops: the attribute
// (opset < 13) or input i (opset >= 13). present is false when there are none; ok is
// false when they exist but are not known.
func (in *inferer) axesArg(n *Node, i int) (axes []int64, present, ok bool) {
	if a, has := n.AttrInts("axes"); has {
		return a, true, true
	}
	if _, has := in.arg(n, i); !has {
		return nil, false, true
	}
	axes, ok = in.constInts(n, i)
	return axes, true, ok
}

func (in *inferer) unsqueeze(n *Node, x *ValueInfo) error {
	axes, present, ok := in.axesArg(n, 1)
	if !present {
		return errors.New("no axes")
	}
	if x.Shape == nil || !ok {
		in.set(n, 0, x.DType, nil)
		return nil
	}
	r := len(x.Shape) + len(axes)
	list, err := normAxes(axes, r)
	if err != nil {
		return err
	}
	insert := make([]bool, r)
	for _, a := range list {
		insert[a] = true
	}
	out := make([]Dim, 0, r)
	j := 0
	for i := range r {
		if insert[i] {
			out = append(out, fixed(1))
		} else {
			out = append(out, x.Shape[j])
			j++
		}
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func (in *inferer) squeeze(n *Node, x *ValueInfo) error {
	axes, present, ok := in.axesArg(n, 1)
	if x.Shape == nil || !ok {
		in.set(n, 0, x.DType, nil)
		return nil
	}
	var list []int
	if !present || len(axes) == 0 {
		for i, d := range x.Shape {
			if !d.static() {
				in.set(n, 0, x.DType, nil) // a symbolic dim may be 1
				return nil
			}
			if d.Value == 1 {
				list = append(list, i)
			}
		}
	} else {
		var err error
		if list, err = normAxes(axes, len(x.Shape)); err != nil {
			return err
		}
		for _, a := range list {
			if d := x.Shape[a]; d.static() && d.Value != 1 {
				return fmt.Errorf("cannot squeeze axis %d of %s, of size %d", a, formatShape(x.Shape), d.Value)
			}
		}
	}
	in.set(n, 0, x.DType, reduceShape(x.Shape, list, false))
	return nil
}

func (in *inferer) concat(n *Node) error {
	a, ok := n.Attrs["axis"]
	if !ok || a.Type != AttrInt {
		return errors.New("no axis attribute")
	}
	var out []Dim
	dtype := DTypeInvalid
	axis := -1
	var sum []Dim
	for i := range n.Inputs {
		v, present := in.arg(n, i)
		if !present {
			continue
		}
		if dtype == DTypeInvalid {
			dtype = v.DType
		}
		if v.Shape == nil {
			sum = append(sum, unknownDim)
			continue
		}
		if out == nil {
			ax, err := normAxis(a.I, len(v.Shape))
			if err != nil {
				return err
			}
			axis = ax
			out = cloneDims(v.Shape)
		} else if len(v.Shape) != len(out) {
			return fmt.Errorf("inputs have ranks %d and %d", len(out), len(v.Shape))
		}
		for j, d := range v.Shape {
			if j == axis {
				continue
			}
			m, ok := unifyDim(out[j], d)
			if !ok {
				return fmt.Errorf("input %d has shape %s, which does not match dim %d (%s) of the other inputs", i, formatShape(v.Shape), j, out[j])
			}
			out[j] = m
		}
		sum = append(sum, v.Shape[axis])
	}
	if out != nil {
		out[axis] = addDims(sum)
	}
	in.set(n, 0, dtype, out)
	return nil
}

// addDims returns the sum of dims: fixed when they all are, the one non-fixed dim
// when the others are 0, unknown otherwise.
func addDims(dims []Dim) Dim {
	var s int64
	var sym *Dim
	for i, d := range dims {
		switch {
		case d.Value == 0:
		case d.static():
			if s > math.MaxInt64-d.Value {
				return unknownDim
			}
			s += d.Value
		case sym == nil:
			sym = &dims[i]
		default:
			return unknownDim
		}
	}
	if sym != nil {
		if s == 0 {
			return *sym
		}
		return unknownDim
	}
	return fixed(s)
}

func (in *inferer) split(n *Node, x *ValueInfo) error {
	k := len(n.Outputs)
	if x.Shape == nil {
		for i := range k {
			in.set(n, i, x.DType, nil)
		}
		return nil
	}
	axis, err := normAxis(n.AttrInt("axis", 0), len(x.Shape))
	if err != nil {
		return err
	}
	sizes, has := n.AttrInts("split")
	known := true
	if !has {
		if _, present := in.arg(n, 1); present {
			sizes, known = in.constInts(n, 1)
			has = true
		}
	}
	d := x.Shape[axis]
	dims := make([]Dim, k)
	switch {
	case has && known:
		if len(sizes) != k {
			return fmt.Errorf("split %v has %d sizes for %d outputs", sizes, len(sizes), k)
		}
		var sum int64
		for i, s := range sizes {
			if s < 0 || sum > math.MaxInt64-s {
				return fmt.Errorf("split %v holds a negative size", sizes)
			}
			sum += s
			dims[i] = fixed(s)
		}
		if d.static() && sum != d.Value {
			return fmt.Errorf("split %v adds up to %d, but axis %d of %s has size %d", sizes, sum, axis, formatShape(x.Shape), d.Value)
		}
	case has:
		for i := range dims {
			dims[i] = unknownDim
		}
	default:
		if num := n.AttrInt("num_outputs", 0); num != 0 && num != int64(k) {
			return fmt.Errorf("num_outputs is %d, but the node has %d outputs", num, k)
		}
		_, uneven := n.Attrs["num_outputs"]
		for i := range dims {
			dims[i] = unknownDim
		}
		if d.static() && k > 0 {
			chunk := d.Value / int64(k)
			if d.Value%int64(k) != 0 {
				if !uneven {
					return fmt.Errorf("axis %d of %s, of size %d, cannot be split in %d equal parts", axis, formatShape(x.Shape), d.Value, k)
				}
				chunk++
			}
			left := d.Value
			for i := range dims {
				dims[i] = fixed(min(chunk, max(left, 0)))
				left -= chunk
			}
		}
	}
	for i := range k {
		out := cloneDims(x.Shape)
		out[axis] = dims[i]
		in.set(n, i, x.DType, out)
	}
	return nil
}

// sliceArgs returns Slice's starts, ends, axes and steps (nil axes and steps: the
// defaults); ok is false when some are not known.
func (in *inferer) sliceArgs(n *Node) (starts, ends, axes, steps []int64, ok bool) {
	if len(n.Inputs) < 3 { // opset < 10: attributes
		starts, ok1 := n.AttrInts("starts")
		ends, ok2 := n.AttrInts("ends")
		axes, _ := n.AttrInts("axes")
		return starts, ends, axes, nil, ok1 && ok2
	}
	var ok1, ok2, ok3, ok4 bool
	starts, ok1 = in.constInts(n, 1)
	ends, ok2 = in.constInts(n, 2)
	ok3, ok4 = true, true
	if _, present := in.arg(n, 3); present {
		axes, ok3 = in.constInts(n, 3)
	}
	if _, present := in.arg(n, 4); present {
		steps, ok4 = in.constInts(n, 4)
	}
	return starts, ends, axes, steps, ok1 && ok2 && ok3 && ok4
}

// sliceRange returns the start, step and element count that slicing a dim of size d
// with start, end and step selects, following the ONNX clamping rules.
func sliceRange(d, start, end, step int64) (int64, int64) {
	if start < 0 {
		start += d
	}
	if end < 0 {
		end += d
	}
	if step > 0 {
		start = min(max(start, 0), d)
		end = min(max(end, 0), d)
		if end <= start {
			return start, 0
		}
		return start, (end-start-1)/step + 1 // ceil((end - start) / step) without overflow
	}
	start = min(max(start, 0), d-1)
	end = min(max(end, -1), d-1)
	if end >= start {
		return start, 0
	}
	if step == math.MinInt64 {
		return start, 1
	}
	return start, (start-end-1)/(-step) + 1
}

// checkSlice validates Slice's arguments for rank r and returns the normalized axes
// and steps.
func checkSlice(starts, ends, axes, steps []int64, r int) ([]int, []int64, error) {
	if len(starts) != len(ends) {
		return nil, nil, fmt.Errorf("starts %v and ends %v differ in length", starts, ends)
	}
	if axes == nil {
		axes = make([]int64, len(starts))
		for i := range axes {
			axes[i] = int64(i)
		}
	}
	if steps == nil {
		steps = make([]int64, len(starts))
		for i := range steps {
			steps[i] = 1
		}
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, nil, fmt.Errorf("starts %v, axes %v and steps %v differ in length", starts, axes, steps)
	}
	list, err := normAxes(axes, r)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range steps {
		if s == 0 {
			return nil, nil, errors.New("slice step is 0")
		}
	}
	return list, steps, nil
}

func (in *inferer) slice(n *Node, x *ValueInfo) error {
	if x.Shape == nil {
		in.set(n, 0, x.DType, nil)
		return nil
	}
	starts, ends, axes, steps, ok := in.sliceArgs(n)
	if !ok {
		out := cloneDims(x.Shape)
		if axes != nil {
			if list, err := normAxes(axes, len(out)); err == nil {
				for _, a := range list {
					out[a] = unknownDim
				}
				in.set(n, 0, x.DType, out)
				return nil
			}
		}
		in.set(n, 0, x.DType, unknownShape(len(out)))
		return nil
	}
	list, steps, err := checkSlice(starts, ends, axes, steps, len(x.Shape))
	if err != nil {
		return err
	}
	out := cloneDims(x.Shape)
	for i, a := range list {
		d := x.Shape[a]
		switch {
		case d.static():
			_, count := sliceRange(d.Value, starts[i], ends[i], steps[i])
			out[a] = fixed(count)
		case starts[i] == 0 && steps[i] == 1 && ends[i] >= math.MaxInt32:
			// The whole dim: keep it.
		default:
			out[a] = unknownDim
		}
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func (in *inferer) matmul(n *Node, a *ValueInfo) error {
	b, _ := in.arg(n, 1)
	dtype := a.DType
	if dtype == DTypeInvalid {
		dtype = b.DType
	}
	if a.Shape == nil || b.Shape == nil {
		in.set(n, 0, dtype, nil)
		return nil
	}
	if len(a.Shape) == 0 || len(b.Shape) == 0 {
		return fmt.Errorf("cannot multiply %s by %s: scalars are not matrices", formatShape(a.Shape), formatShape(b.Shape))
	}
	as, bs := a.Shape, b.Shape
	if len(as) == 1 {
		as = []Dim{fixed(1), as[0]}
	}
	if len(bs) == 1 {
		bs = []Dim{bs[0], fixed(1)}
	}
	k1, k2 := as[len(as)-1], bs[len(bs)-2]
	if _, ok := unifyDim(k1, k2); !ok {
		return fmt.Errorf("inner dimensions %d and %d do not match: %s x %s", k1.Value, k2.Value, formatShape(a.Shape), formatShape(b.Shape))
	}
	batch, err := broadcast(as[:len(as)-2], bs[:len(bs)-2])
	if err != nil {
		return fmt.Errorf("batch dims: %w", err)
	}
	out := batch
	if len(a.Shape) > 1 {
		out = append(out, as[len(as)-2])
	}
	if len(b.Shape) > 1 {
		out = append(out, bs[len(bs)-1])
	}
	in.set(n, 0, dtype, out)
	return nil
}

func (in *inferer) gemm(n *Node, a *ValueInfo) error {
	b, _ := in.arg(n, 1)
	if a.Shape == nil || b.Shape == nil {
		in.set(n, 0, a.DType, unknownShape(2))
		return nil
	}
	if len(a.Shape) != 2 || len(b.Shape) != 2 {
		return fmt.Errorf("inputs %s and %s are not matrices", formatShape(a.Shape), formatShape(b.Shape))
	}
	m, k1 := a.Shape[0], a.Shape[1]
	if n.AttrInt("transA", 0) != 0 {
		m, k1 = k1, m
	}
	k2, nn := b.Shape[0], b.Shape[1]
	if n.AttrInt("transB", 0) != 0 {
		k2, nn = nn, k2
	}
	if _, ok := unifyDim(k1, k2); !ok {
		return fmt.Errorf("inner dimensions %d and %d do not match: %s x %s (transA %d, transB %d)",
			k1.Value, k2.Value, formatShape(a.Shape), formatShape(b.Shape), n.AttrInt("transA", 0), n.AttrInt("transB", 0))
	}
	out := []Dim{m, nn}
	if c, ok := in.arg(n, 2); ok && c.Shape != nil {
		if len(c.Shape) > 2 {
			return fmt.Errorf("C %s has rank %d, more than 2", formatShape(c.Shape), len(c.Shape))
		}
		bc, err := broadcast(out, c.Shape)
		if err != nil {
			return fmt.Errorf("C: %w", err)
		}
		for i := range out {
			// C broadcasts to [M, N], not the other way: take what it tells.
			if !out[i].static() && bc[i].static() && bc[i].Value != 1 {
				out[i] = bc[i]
			}
		}
	}
	in.set(n, 0, a.DType, out)
	return nil
}

// windowAttrs are the attributes of Conv and the pools.
type windowAttrs struct {
	kernel, strides, dilations, pads []int64
	autoPad                          string
	ceil                             bool
}

// window reads the window attributes of n for spatial rank k. kernel is the
// kernel_shape attribute or, when n has none, def.
func window(n *Node, k int, def []int64) (*windowAttrs, error) {
	w := &windowAttrs{autoPad: n.AttrString("auto_pad", "NOTSET"), ceil: n.AttrInt("ceil_mode", 0) != 0}
	ones := func() []int64 {
		s := make([]int64, k)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	var ok bool
	if w.kernel, ok = n.AttrInts("kernel_shape"); !ok {
		w.kernel = def
	}
	if w.strides, ok = n.AttrInts("strides"); !ok {
		w.strides = ones()
	}
	if w.dilations, ok = n.AttrInts("dilations"); !ok {
		w.dilations = ones()
	}
	if w.pads, ok = n.AttrInts("pads"); !ok {
		w.pads = make([]int64, 2*k)
	}
	switch {
	case w.kernel == nil:
		return nil, errors.New("no kernel_shape")
	case len(w.kernel) != k:
		return nil, fmt.Errorf("kernel_shape %v does not have %d spatial dims", w.kernel, k)
	case len(w.strides) != k:
		return nil, fmt.Errorf("strides %v do not have %d spatial dims", w.strides, k)
	case len(w.dilations) != k:
		return nil, fmt.Errorf("dilations %v do not have %d spatial dims", w.dilations, k)
	case len(w.pads) != 2*k:
		return nil, fmt.Errorf("pads %v do not have %d values", w.pads, 2*k)
	}
	for i := range k {
		if w.strides[i] < 1 || w.dilations[i] < 1 || (w.kernel[i] < 1 && w.kernel[i] != -1) || w.pads[i] < 0 || w.pads[i+k] < 0 {
			return nil, fmt.Errorf("invalid window: kernel_shape %v, strides %v, dilations %v, pads %v", w.kernel, w.strides, w.dilations, w.pads)
		}
		if w.kernel[i] > 1<<40 || w.strides[i] > 1<<40 || w.dilations[i] > 1<<20 || w.pads[i] > 1<<40 || w.pads[i+k] > 1<<40 {
			return nil, fmt.Errorf("window too large: kernel_shape %v, strides %v, dilations %v, pads %v", w.kernel, w.strides, w.dilations, w.pads)
		}
	}
	switch w.autoPad {
	case "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER":
	default:
		return nil, fmt.Errorf("unknown auto_pad %s", quote(w.autoPad))
	}
	return w, nil
}

// spatial returns the output size of spatial dim i of size d.
func (w *windowAttrs) spatial(i int, d Dim) (Dim, error) {
	k := len(w.kernel)
	if !d.static() || w.kernel[i] < 0 || d.Value > 1<<50 {
		return unknownDim, nil
	}
	s := w.strides[i]
	eff := w.dilations[i]*(w.kernel[i]-1) + 1 // the window's extent
	switch w.autoPad {
	case "SAME_UPPER", "SAME_LOWER":
		return fixed((d.Value + s - 1) / s), nil
	case "VALID":
		if d.Value < eff {
			return unknownDim, fmt.Errorf("input size %d is smaller than the window (%d)", d.Value, eff)
		}
		return fixed((d.Value-eff)/s + 1), nil
	}
	num := d.Value + w.pads[i] + w.pads[i+k] - eff
	if num < 0 {
		return unknownDim, fmt.Errorf("padded input size %d is smaller than the window (%d)", d.Value+w.pads[i]+w.pads[i+k], eff)
	}
	if w.ceil {
		out := (num+s-1)/s + 1
		if (out-1)*s >= d.Value+w.pads[i] {
			out-- // the last window would start in the end padding
		}
		return fixed(out), nil
	}
	return fixed(num/s + 1), nil
}

func (in *inferer) conv(n *Node, x *ValueInfo) error {
	wv, _ := in.arg(n, 1)
	k := -1
	switch {
	case x.Shape != nil:
		k = len(x.Shape) - 2
	case wv.Shape != nil:
		k = len(wv.Shape) - 2
	}
	if k < 0 {
		if x.Shape != nil || wv.Shape != nil {
			return fmt.Errorf("input %s or weight %s has rank below 3", formatShape(x.Shape), formatShape(wv.Shape))
		}
		in.set(n, 0, x.DType, nil)
		return nil
	}
	if wv.Shape != nil && len(wv.Shape) != k+2 {
		return fmt.Errorf("weight %s does not match input %s", formatShape(wv.Shape), formatShape(x.Shape))
	}
	var def []int64
	if wv.Shape != nil {
		def = make([]int64, k)
		for i := range def {
			def[i] = wv.Shape[i+2].Value // -1 when not fixed
		}
	} else {
		def = make([]int64, k)
		for i := range def {
			def[i] = -1
		}
	}
	w, err := window(n, k, def)
	if err != nil {
		return err
	}
	group := n.AttrInt("group", 1)
	if group < 1 {
		return fmt.Errorf("group %d is not positive", group)
	}
	m := unknownDim
	if wv.Shape != nil {
		m = wv.Shape[0]
		if m.static() && m.Value%group != 0 {
			return fmt.Errorf("weight %s: %d output channels is not a multiple of group %d", formatShape(wv.Shape), m.Value, group)
		}
		if x.Shape != nil {
			c, wc := x.Shape[1], wv.Shape[1]
			if c.static() && wc.static() && (wc.Value > math.MaxInt64/group || c.Value != wc.Value*group) {
				return fmt.Errorf("input %s has %d channels, weight %s with group %d expects %d", formatShape(x.Shape), c.Value, formatShape(wv.Shape), group, wc.Value*group)
			}
		}
	}
	if b, ok := in.arg(n, 2); ok && b.Shape != nil {
		if len(b.Shape) != 1 {
			return fmt.Errorf("bias %s is not 1-D", formatShape(b.Shape))
		}
		mm, ok := unifyDim(m, b.Shape[0])
		if !ok {
			return fmt.Errorf("bias %s does not match %d output channels", formatShape(b.Shape), m.Value)
		}
		m = mm
	}
	out := make([]Dim, k+2)
	out[0], out[1] = unknownDim, m
	if x.Shape != nil {
		out[0] = x.Shape[0]
	}
	for i := range k {
		d := unknownDim
		if x.Shape != nil {
			d = x.Shape[i+2]
		}
		if out[i+2], err = w.spatial(i, d); err != nil {
			return err
		}
	}
	in.set(n, 0, x.DType, out)
	return nil
}

func (in *inferer) pool(n *Node, x *ValueInfo) error {
	kernel, ok := n.AttrInts("kernel_shape")
	if !ok {
		return errors.New("no kernel_shape")
	}
	if x.Shape == nil {
		in.set(n, 0, x.DType, unknownShape(len(kernel)+2))
		in.set(n, 1, I64, unknownShape(len(kernel)+2))
		return nil
	}
	k := len(x.Shape) - 2
	if k < 1 {
		return fmt.Errorf("input %s has rank below 3", formatShape(x.Shape))
	}
	w, err := window(n, k, nil)
	if err != nil {
		return err
	}
	out := cloneDims(x.Shape)
	for i := range k {
		if out[i+2], err = w.spatial(i, x.Shape[i+2]); err != nil {
			return err
		}
	}
	in.set(n, 0, x.DType, out)
	in.set(n, 1, I64, cloneDims(out))
	return nil
}

// symRule tracks the content of n's output when it is a small int64 tensor built
// from shapes.
func (in *inferer) symRule(n *Node) {
	if n.Domain != "" || len(n.Outputs) == 0 || n.Outputs[0] == "" || len(n.Inputs) == 0 {
		return
	}
	out := n.Outputs[0]
	if v := in.values[out]; v == nil || v.DType != I64 {
		return
	}
	var s symValue
	var ok bool
	switch n.Op {
	case "Shape":
		x := in.info(n.Inputs[0])
		if x.Shape == nil {
			return
		}
		start, end := shapeRange(n, len(x.Shape))
		if end-start > maxSymLen {
			return
		}
		for _, d := range x.Shape[start:end] {
			s.elems = append(s.elems, dimElem(d))
		}
		ok = true
	case "Size":
		if c, known := staticNumel(in.info(n.Inputs[0]).Shape); known {
			s, ok = symValue{elems: []symElem{{val: c, known: true}}, scalar: true}, true
		}
	case "Identity", "Cast":
		s, ok = in.symOf(n.Inputs[0])
	case "Gather":
		s, ok = in.symGather(n)
	case "Unsqueeze":
		if x, has := in.symOf(n.Inputs[0]); has && x.scalar {
			if axes, present, known := in.axesArg(n, 1); present && known && len(axes) == 1 && (axes[0] == 0 || axes[0] == -1) {
				s, ok = symValue{elems: x.elems}, true
			}
		}
	case "Squeeze":
		if x, has := in.symOf(n.Inputs[0]); has && !x.scalar && len(x.elems) == 1 {
			if axes, _, known := in.axesArg(n, 1); known && (len(axes) == 0 || len(axes) == 1 && (axes[0] == 0 || axes[0] == -1)) {
				s, ok = symValue{elems: x.elems, scalar: true}, true
			}
		}
	case "Concat":
		ok = true
		for _, name := range n.Inputs {
			x, has := in.symOf(name)
			if !has || x.scalar || len(s.elems)+len(x.elems) > maxSymLen {
				return
			}
			s.elems = append(s.elems, x.elems...)
		}
	case "Slice":
		x, has := in.symOf(n.Inputs[0])
		if !has || x.scalar {
			return
		}
		starts, ends, axes, steps, known := in.sliceArgs(n)
		if !known {
			return
		}
		list, steps, err := checkSlice(starts, ends, axes, steps, 1)
		if err != nil || len(list) > 1 {
			return
		}
		s.elems = x.elems
		if len(list) == 1 {
			start, count := sliceRange(int64(len(x.elems)), starts[0], ends[0], steps[0])
			s.elems = nil
			for i := range count {
				s.elems = append(s.elems, x.elems[start+i*steps[0]])
			}
		}
		ok = true
	case "Add", "Sub", "Mul", "Div":
		s, ok = in.symArith(n)
	}
	if ok {
		in.syms[out] = s
	}
}

func (in *inferer) symGather(n *Node) (symValue, bool) {
	x, ok := in.symOf(n.Inputs[0])
	if !ok || x.scalar || n.AttrInt("axis", 0) != 0 && n.AttrInt("axis", 0) != -1 || len(n.Inputs) < 2 {
		return symValue{}, false
	}
	c, ok := in.consts[n.Inputs[1]]
	if !ok || len(c.Shape) > 1 {
		return symValue{}, false
	}
	idx, ok := constToInts(c)
	if !ok {
		return symValue{}, false
	}
	s := symValue{scalar: len(c.Shape) == 0}
	for _, i := range idx {
		if i < 0 {
			i += int64(len(x.elems))
		}
		if i < 0 || i >= int64(len(x.elems)) {
			return symValue{}, false
		}
		s.elems = append(s.elems, x.elems[i])
	}
	return s, true
}

// symArith computes Add, Sub, Mul and Div on tracked values whose elements are all
// known, and the cases where a symbolic element is multiplied or divided by 1 or
// has 0 added.
func (in *inferer) symArith(n *Node) (symValue, bool) {
	if len(n.Inputs) != 2 {
		return symValue{}, false
	}
	a, ok1 := in.symOf(n.Inputs[0])
	b, ok2 := in.symOf(n.Inputs[1])
	if !ok1 || !ok2 {
		return symValue{}, false
	}
	la, lb := len(a.elems), len(b.elems)
	if la == 0 || lb == 0 || la != lb && la != 1 && lb != 1 {
		return symValue{}, false
	}
	s := symValue{scalar: a.scalar && b.scalar}
	for i := range max(la, lb) {
		x, y := a.elems[min(i, la-1)], b.elems[min(i, lb-1)]
		var e symElem
		switch {
		case x.known && y.known:
			e.known = true
			switch n.Op {
			case "Add":
				e.val = x.val + y.val
			case "Sub":
				e.val = x.val - y.val
			case "Mul":
				e.val = x.val * y.val
			case "Div":
				if y.val == 0 {
					return symValue{}, false
				}
				e.val = x.val / y.val
			}
		case y.known && (y.val == 1 && (n.Op == "Mul" || n.Op == "Div") || y.val == 0 && (n.Op == "Add" || n.Op == "Sub")):
			e = x
		case x.known && (x.val == 1 && n.Op == "Mul" || x.val == 0 && n.Op == "Add"):
			e = y
		}
		s.elems = append(s.elems, e)
	}
	return s, true
}
