package graph

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Ops lists every op_type of the default ONNX domain that the runtime implements,
// sorted. Infer has a shape rule for each of them.
var Ops = []string{
	"Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization",
	"Cast", "CastLike", "Ceil", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
	"Cos", "Div", "Dropout", "Elu", "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor",
	"Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater",
	"GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "LayerNormalization",
	"LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool",
	"Mean", "Min", "Mod", "Mul", "Neg", "Not", "Or", "Pow", "Range", "Reciprocal",
	"ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
	"ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Round", "Shape", "Sigmoid",
	"Sign", "Sin", "Size", "Slice", "Softmax", "Softplus", "Split", "Sqrt", "Squeeze",
	"Sub", "Sum", "Tanh", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where", "Xor",
}

// supported reports whether the runtime implements op in the default domain.
func supported(op string) bool {
	_, ok := slices.BinarySearch(Ops, op)
	return ok
}

// Check returns an error naming every unsupported op of g, with its domain when it
// is not the default one, and how many nodes use it when more than one:
// "graph: unsupported ops: Foo (2 nodes), com.microsoft.Bar". Nodes with subgraph
// attributes (If, Loop, Scan, ...) are unsupported too, whatever their op. Check
// returns nil when the runtime implements every node.
func (g *Graph) Check() error {
	counts := make(map[string]int)
	for _, n := range g.Nodes {
		name := n.Op
		if n.Domain != "" {
			name = n.Domain + "." + n.Op
		}
		switch {
		case n.Domain != "" || !supported(n.Op):
		case hasSubgraph(n):
			name += " with a subgraph attribute"
		default:
			continue
		}
		counts[name]++
	}
	if len(counts) == 0 {
		return nil
	}
	names := make([]string, 0, len(counts))
	for name := range counts {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		if c := counts[name]; c > 1 {
			names[i] = fmt.Sprintf("%s (%d nodes)", name, c)
		}
	}
	return fmt.Errorf("graph: unsupported ops: %s", strings.Join(names, ", "))
}

// hasSubgraph reports whether n has a graph-valued attribute.
func hasSubgraph(n *Node) bool {
	for _, a := range n.Attrs {
		if a.Type == AttrGraph || a.Type == AttrGraphs {
			return true
		}
	}
	return false
}

// AttrInt returns the int attribute name of n, or def when n has none.
func (n *Node) AttrInt(name string, def int64) int64 {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrInt {
		return a.I
	}
	return def
}

// AttrFloat returns the float attribute name of n, or def when n has none.
func (n *Node) AttrFloat(name string, def float32) float32 {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrFloat {
		return a.F
	}
	return def
}

// AttrString returns the string attribute name of n, or def when n has none.
func (n *Node) AttrString(name string, def string) string {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrString {
		return a.S
	}
	return def
}

// AttrInts returns the ints attribute name of n and whether n has it.
func (n *Node) AttrInts(name string) ([]int64, bool) {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrInts {
		return a.Ints, true
	}
	return nil, false
}

// AttrFloats returns the floats attribute name of n and whether n has it.
func (n *Node) AttrFloats(name string) ([]float32, bool) {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrFloats {
		return a.Floats, true
	}
	return nil, false
}

// AttrTensor returns the tensor attribute name of n, or nil when n has none.
func (n *Node) AttrTensor(name string) *Const {
	if a, ok := n.Attrs[name]; ok && a.Type == AttrTensor {
		return a.T
	}
	return nil
}
