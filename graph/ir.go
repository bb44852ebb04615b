package graph

// The model IR: what the runtime executes. ParseModel builds it from an ONNX
// ModelProto (a whole .onnx file, or the architecture blob the store keeps, whose
// initializers are stubs without data); Infer fills in Values; Fold replaces
// constant subgraphs (shape arithmetic) by constants.

// Graph is one model's operator graph.
type Graph struct {
	// Opset is the opset version of the default ONNX domain ("" / "ai.onnx").
	Opset int64
	// Inputs are the graph inputs that are not initializers, in declaration order.
	Inputs []ValueInfo
	// Outputs are the graph outputs, in declaration order.
	Outputs []ValueInfo
	// Nodes are the operators in a topological order.
	Nodes []*Node
	// Initializers are the graph's weights, in graph.initializer order. Data is nil for
	// a stub (the store keeps the bytes; Name matches the model's tensor name).
	Initializers []*Const
	// Constants are values known at load time other than initializers: outputs of
	// Constant nodes and of folded subgraphs, by value name.
	Constants map[string]*Const
	// Values holds the inferred element type and shape of every value (inputs,
	// initializers, node outputs) by name. Filled by Infer.
	Values map[string]*ValueInfo
}

// Dim is one dimension of a shape: a fixed size (Value >= 0) or a symbolic one
// (Value < 0, Param names it, for example "batch"; "" for an unknown size).
type Dim struct {
	Value int64
	Param string
}

// ValueInfo is the type of a value: element type and shape. Shape is nil when the
// rank is unknown.
type ValueInfo struct {
	Name  string
	DType DType
	Shape []Dim
}

// Node is one operator application.
type Node struct {
	Name   string
	Op     string // op_type, for example "MatMul"
	Domain string // "" for the default ONNX domain
	// Inputs and Outputs are value names; "" marks an omitted optional input/output.
	Inputs  []string
	Outputs []string
	Attrs   map[string]Attr
}

// AttrType is the kind of an attribute (the AttributeProto.AttributeType numbers).
type AttrType uint8

const (
	AttrFloat   AttrType = 1
	AttrInt     AttrType = 2
	AttrString  AttrType = 3
	AttrTensor  AttrType = 4
	AttrGraph   AttrType = 5
	AttrFloats  AttrType = 6
	AttrInts    AttrType = 7
	AttrStrings AttrType = 8
)

// Attr is one attribute value; the field that Type names is set.
type Attr struct {
	Type    AttrType
	F       float32
	I       int64
	S       string
	T       *Const
	Floats  []float32
	Ints    []int64
	Strings []string
}

// Const is a tensor value known without running the model: an initializer, a
// Constant node's value, a folded result, or a tensor read from a .pb file.
type Const struct {
	Name  string
	DType DType
	Shape []int64
	// Data is the little-endian C-order bytes (len = element count * DType.Size()),
	// nil for a stub initializer whose bytes live elsewhere.
	Data []byte
}
