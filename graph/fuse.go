package graph

import (
	"math"
	"slices"
)

// Fuse rewrites the decomposed forms of two ops that torch's ONNX exporter
// emits for opsets without them into the single ops, which the runtime runs as
// one kernel each instead of a chain of elementwise passes:
//
//	LayerNormalization (opset 17): ReduceMean(x) over the last axis, Sub, Pow 2,
//	  ReduceMean, Add eps, Sqrt, Div, then Mul by a 1-D scale and (optionally)
//	  Add of a 1-D bias
//	Gelu (opset 20): x * (Erf(x / √2) + 1) * 0.5 (Div by √2 or Mul by 1/√2)
//
// A chain is fused only when its intermediate values are read by nothing else
// and are no graph outputs, its constants have the values above, and the
// scale and bias are constants or initializers of the last axis's size; the
// fused node computes what the chain does up to float rounding. It needs
// g.Values (call Infer first) and clears it: call Infer again. It returns the
// number of chains fused.
func (g *Graph) Fuse() int {
	f := newFuser(g)
	fused := 0
	for _, n := range g.Nodes {
		if f.removed[n] {
			continue
		}
		switch n.Op {
		case "Div":
			if f.layerNorm(n) {
				fused++
			}
		case "Erf":
			if f.gelu(n) {
				fused++
			}
		}
	}
	if fused == 0 {
		return 0
	}
	kept := g.Nodes[:0]
	for _, n := range g.Nodes {
		if r, ok := f.replace[n]; ok {
			kept = append(kept, r)
		} else if !f.removed[n] {
			kept = append(kept, n)
		}
	}
	g.Nodes = kept
	g.Values = nil
	return fused
}

// fuser holds the graph's producers and use counts while Fuse matches chains.
type fuser struct {
	g        *Graph
	producer map[string]*Node
	uses     map[string]int // node inputs reading the value, plus 1 for a graph output
	readers  map[string][]*Node
	init     map[string]*Const
	removed  map[*Node]bool
	replace  map[*Node]*Node // the chain's last node -> the fused node
}

func newFuser(g *Graph) *fuser {
	f := &fuser{g: g, producer: map[string]*Node{}, uses: map[string]int{}, readers: map[string][]*Node{},
		init: map[string]*Const{}, removed: map[*Node]bool{}, replace: map[*Node]*Node{}}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			f.producer[o] = n
		}
		for _, in := range n.Inputs {
			f.uses[in]++
			f.readers[in] = append(f.readers[in], n)
		}
	}
	for _, o := range g.Outputs {
		f.uses[o.Name]++
	}
	for _, c := range g.Initializers {
		f.init[c.Name] = c
	}
	return f
}

// from returns the node of op that produces v as its only output and whose
// output nothing but the chain reads (uses readers), or nil.
func (f *fuser) from(v, op string, uses int) *Node {
	n := f.producer[v]
	if n == nil || n.Op != op || n.Domain != "" || len(n.Outputs) != 1 || f.removed[n] || f.uses[v] != uses {
		return nil
	}
	return n
}

// soleReader returns the node that reads v, when it is the only reader, v is
// no graph output and the node is op; else nil.
func (f *fuser) soleReader(v, op string) *Node {
	if f.uses[v] != 1 || len(f.readers[v]) != 1 {
		return nil
	}
	n := f.readers[v][0]
	if n.Op != op || n.Domain != "" || len(n.Outputs) != 1 || f.removed[n] {
		return nil
	}
	return n
}

// scalar returns the value of a one-element float constant.
func (f *fuser) scalar(v string) (float64, bool) {
	c := f.constant(v)
	if c == nil || c.Data == nil || !isFloat(c.DType) && c.DType != F16 && c.DType != BF16 {
		return 0, false
	}
	t, err := decodeTensor(c)
	if err != nil || t.len() != 1 {
		return 0, false
	}
	return t.float(0), true
}

// other returns the input of binary node n that is not v ("" when neither or
// both are).
func other(n *Node, v string) string {
	if len(n.Inputs) != 2 || n.Inputs[0] == n.Inputs[1] {
		return ""
	}
	switch v {
	case n.Inputs[0]:
		return n.Inputs[1]
	case n.Inputs[1]:
		return n.Inputs[0]
	}
	return ""
}

// lastAxisOnly reports whether Reduce node n reads v and its output has v's
// shape with the last dimension 1: a mean over the last axis, kept. The
// inferred shapes say it whatever form the axes take (attribute or input); a
// mean over other axes too only matches where those are of size 1, where it
// changes nothing.
func (f *fuser) lastAxisOnly(n *Node, v string) bool {
	in, out := f.g.Values[v], f.g.Values[n.Outputs[0]]
	if len(n.Inputs) == 0 || n.Inputs[0] != v || in == nil || out == nil || len(in.Shape) == 0 ||
		len(out.Shape) != len(in.Shape) {
		return false
	}
	r := len(in.Shape)
	return slices.Equal(in.Shape[:r-1], out.Shape[:r-1]) && out.Shape[r-1] == fixed(1)
}

// constant returns the constant or initializer named v, or nil.
func (f *fuser) constant(v string) *Const {
	if c := f.g.Constants[v]; c != nil {
		return c
	}
	return f.init[v]
}

// lastDimParam reports whether p is a 1-D constant or initializer as long as
// x's (fixed) last dimension.
func (f *fuser) lastDimParam(p, x string) bool {
	c := f.constant(p)
	vi := f.g.Values[x]
	if c == nil || vi == nil || len(vi.Shape) == 0 || len(c.Shape) != 1 {
		return false
	}
	last := vi.Shape[len(vi.Shape)-1].Value
	return last > 1 && c.Shape[0] == last && c.DType == vi.DType
}

// layerNorm matches the decomposed LayerNormalization whose Div is div.
func (f *fuser) layerNorm(div *Node) bool {
	if len(div.Inputs) != 2 || len(div.Outputs) != 1 {
		return false
	}
	d, s := div.Inputs[0], div.Inputs[1]
	sqrt := f.from(s, "Sqrt", 1)
	if sqrt == nil {
		return false
	}
	add := f.from(sqrt.Inputs[0], "Add", 1)
	if add == nil || len(add.Inputs) != 2 {
		return false
	}
	var mean2 *Node
	var eps float64
	for i, in := range add.Inputs {
		if e, ok := f.scalar(add.Inputs[1-i]); ok {
			mean2, eps = f.from(in, "ReduceMean", 1), e
			break
		}
	}
	if mean2 == nil || len(mean2.Inputs) == 0 || !(eps > 0) {
		return false
	}
	pow := f.from(mean2.Inputs[0], "Pow", 1)
	if pow == nil || len(pow.Inputs) != 2 || pow.Inputs[0] != d || !f.lastAxisOnly(mean2, pow.Outputs[0]) {
		return false
	}
	if e, ok := f.scalar(pow.Inputs[1]); !ok || e != 2 {
		return false
	}
	sub := f.from(d, "Sub", 2) // read by Pow and Div
	if sub == nil || len(sub.Inputs) != 2 {
		return false
	}
	x := sub.Inputs[0]
	mean := f.from(sub.Inputs[1], "ReduceMean", 1)
	if mean == nil || !f.lastAxisOnly(mean, x) {
		return false
	}
	if vi := f.g.Values[x]; vi == nil || !isFloat(vi.DType) {
		return false
	}
	// the scale, and the bias if there is one
	mul := f.soleReader(div.Outputs[0], "Mul")
	if mul == nil {
		return false
	}
	scale := other(mul, div.Outputs[0])
	if !f.lastDimParam(scale, x) {
		return false
	}
	chain := []*Node{mean, sub, pow, mean2, add, sqrt, div, mul}
	inputs := []string{x, scale}
	last := mul
	if ba := f.soleReader(mul.Outputs[0], "Add"); ba != nil {
		if bias := other(ba, mul.Outputs[0]); f.lastDimParam(bias, x) {
			chain = append(chain, ba)
			inputs = append(inputs, bias)
			last = ba
		}
	}
	f.fuse(chain, last, &Node{
		Name: last.Name + "/fused", Op: "LayerNormalization", Inputs: inputs, Outputs: last.Outputs,
		Attrs: map[string]Attr{
			"axis":    {Type: AttrInt, I: -1},
			"epsilon": {Type: AttrFloat, F: float32(eps)},
		},
	})
	return true
}

// gelu matches x * (Erf(x / √2) + 1) * 0.5 around its Erf node erf.
func (f *fuser) gelu(erf *Node) bool {
	if len(erf.Inputs) != 1 || len(erf.Outputs) != 1 {
		return false
	}
	scaled := f.producer[erf.Inputs[0]]
	if scaled == nil || f.uses[erf.Inputs[0]] != 1 || len(scaled.Inputs) != 2 || f.removed[scaled] {
		return false
	}
	x := scaled.Inputs[0]
	c, ok := f.scalar(scaled.Inputs[1])
	switch {
	case !ok:
		return false
	case scaled.Op == "Div" && math.Abs(c-math.Sqrt2) < 1e-6:
	case scaled.Op == "Mul" && math.Abs(c-1/math.Sqrt2) < 1e-6:
	default:
		return false
	}
	if vi := f.g.Values[x]; vi == nil || !isFloat(vi.DType) {
		return false
	}
	add := f.soleReader(erf.Outputs[0], "Add")
	if add == nil {
		return false
	}
	if one, ok := f.scalar(other(add, erf.Outputs[0])); !ok || one != 1 {
		return false
	}
	mul := f.soleReader(add.Outputs[0], "Mul")
	if mul == nil || other(mul, add.Outputs[0]) != x {
		return false
	}
	half := f.soleReader(mul.Outputs[0], "Mul")
	if half == nil {
		return false
	}
	if h, ok := f.scalar(other(half, mul.Outputs[0])); !ok || h != 0.5 {
		return false
	}
	f.fuse([]*Node{scaled, erf, add, mul, half}, half, &Node{
		Name: half.Name + "/fused", Op: "Gelu", Inputs: []string{x}, Outputs: half.Outputs,
	})
	return true
}

// fuse marks chain removed and puts node in the place of its last node.
func (f *fuser) fuse(chain []*Node, last, node *Node) {
	for _, n := range chain {
		f.removed[n] = true
	}
	f.replace[last] = node
}
