package graph

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file builds the IR (ir.go) from ONNX protobuf bytes held in memory. It parses
// the wire format by field number; there is no generated protobuf code.

// Attribute types beyond those ir.go names (AttributeProto.AttributeType numbers).
// Attrs of these types carry no value in Attr: the runtime supports none of them.
const (
	AttrTensors       AttrType = 9
	AttrGraphs        AttrType = 10
	AttrSparseTensor  AttrType = 11
	AttrSparseTensors AttrType = 12
	AttrTypeProto     AttrType = 13
	AttrTypeProtos    AttrType = 14
)

// Field numbers from onnx.proto3 that onnx.go does not name.
const (
	modelOpsetImport = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphNode      = 1
	graphInput     = 11
	graphOutput    = 12
	graphValueInfo = 13

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName          = 1
	attrF             = 2
	attrI             = 3
	attrS             = 4
	attrT             = 5
	attrG             = 6
	attrFloats        = 7
	attrInts          = 8
	attrStrings       = 9
	attrTensors       = 10
	attrGraphs        = 11
	attrTP            = 14
	attrTypeProtos    = 15
	attrType          = 20
	attrSparseTensor  = 22
	attrSparseTensors = 23

	valueName = 1
	valueType = 2

	typeTensor     = 1
	tensorElemType = 1
	tensorShape    = 2
	shapeDim       = 1
	dimValue       = 1
	dimParam       = 2
)

// ParseModel builds the IR from ModelProto bytes: a whole .onnx file, or the store's
// architecture blob in which initializers are stubs (no data fields; Const.Data nil).
// Initializers whose data is external (data_location EXTERNAL) are left as stubs
// too, since ParseModel has no folder to read them from; OpenModel reads them.
//
// Nodes come out in a topological order (the file's order when it is one). Constant
// nodes become entries of Constants and are not kept in Nodes. Graph inputs that are
// also initializers are left out of Inputs. Errors start with "graph: model: ".
func ParseModel(b []byte) (*Graph, error) {
	p := &modelParser{}
	g, err := p.model(b)
	if err != nil {
		return nil, fmt.Errorf("graph: model: %w", err)
	}
	return g, nil
}

// OpenModel reads and parses the .onnx file at path, like ParseModel. The data of
// initializers stored as external data (data_location EXTERNAL) is read from the
// files their location names, relative to path's folder; a location that is
// absolute or leaves that folder is refused. Errors start with
// "graph: model <path>: ".
func OpenModel(path string) (*Graph, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("graph: model %s: %w", path, err)
	}
	p := &modelParser{dir: filepath.Dir(path), external: true, files: make(map[string]*os.File)}
	g, err := p.model(b)
	for _, f := range p.files {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("graph: model %s: %w", path, err)
	}
	return g, nil
}

// ParseTensorProto decodes one serialized TensorProto (the input_0.pb / output_0.pb
// files of ONNX test cases) into a Const with Data set: little-endian C order,
// len(Data) = element count * DType.Size(). Typed fields are converted to that
// layout: float_data (F32), int32_data (BOOL, U8, I8, U16, I16, I32, F16, BF16 and
// float8, F16/BF16 as their bit patterns), int64_data (I64), double_data (F64),
// uint64_data (U32, U64). BOOL elements are one byte each. External data is
// refused. Errors start with "graph: tensor: ".
func ParseTensorProto(b []byte) (*Const, error) {
	p := &modelParser{}
	c, err := p.tensor(b, true)
	if err != nil {
		return nil, fmt.Errorf("graph: tensor: %w", err)
	}
	return c, nil
}

// modelParser holds the state of one parse.
type modelParser struct {
	dir      string // folder of the model file, for external data
	external bool   // read external data (OpenModel); otherwise initializers stay stubs
	files    map[string]*os.File
}

// pbField is one field of a protobuf message held in memory.
type pbField struct {
	num protowire.Number
	typ protowire.Type
	val uint64 // the value of a varint, fixed32 or fixed64 field
	b   []byte // the value of a bytes field
}

// pbWalk calls fn for each field of the message b, in order. It fails on malformed
// data: a bad tag or varint, a length past the end of b, groups, invalid wire types.
func pbWalk(b []byte, fn func(f pbField) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad field tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := pbField{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.val, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.val = uint64(v)
		case protowire.Fixed64Type:
			f.val, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		case protowire.StartGroupType, protowire.EndGroupType:
			return fmt.Errorf("field %d is a group, which is not supported", num)
		default:
			return fmt.Errorf("field %d has invalid wire type %d", num, typ)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// wireType fails unless f has wire type t.
func (f pbField) wireType(t protowire.Type, what string) error {
	if f.typ != t {
		return fmt.Errorf("field %s has wire type %d, want %d", what, f.typ, t)
	}
	return nil
}

func (f pbField) str(what string) (string, error) {
	if err := f.wireType(protowire.BytesType, what); err != nil {
		return "", err
	}
	return string(f.b), nil
}

func (f pbField) varint(what string) (uint64, error) {
	if err := f.wireType(protowire.VarintType, what); err != nil {
		return 0, err
	}
	return f.val, nil
}

// appendVarints appends the values of a repeated varint field, packed or not.
func (f pbField) appendVarints(dst []int64, what string) ([]int64, error) {
	switch f.typ {
	case protowire.VarintType:
		return append(dst, int64(f.val)), nil
	case protowire.BytesType:
		for b := f.b; len(b) > 0; {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, fmt.Errorf("packed %s: %v", what, protowire.ParseError(n))
			}
			dst = append(dst, int64(v))
			b = b[n:]
		}
		return dst, nil
	}
	return nil, fmt.Errorf("field %s has wire type %d", what, f.typ)
}

// appendFloats appends the values of a repeated float field, packed or not.
func (f pbField) appendFloats(dst []float32, what string) ([]float32, error) {
	switch f.typ {
	case protowire.Fixed32Type:
		return append(dst, math.Float32frombits(uint32(f.val))), nil
	case protowire.BytesType:
		if len(f.b)%4 != 0 {
			return nil, fmt.Errorf("packed %s is %d bytes long, not a multiple of 4", what, len(f.b))
		}
		for i := 0; i < len(f.b); i += 4 {
			dst = append(dst, math.Float32frombits(binary.LittleEndian.Uint32(f.b[i:])))
		}
		return dst, nil
	}
	return nil, fmt.Errorf("field %s has wire type %d", what, f.typ)
}

// model parses a ModelProto.
func (p *modelParser) model(b []byte) (*Graph, error) {
	var graphBytes []byte
	seen := false
	opset := int64(-1)
	err := pbWalk(b, func(f pbField) error {
		switch f.num {
		case modelGraph:
			if err := f.wireType(protowire.BytesType, "graph"); err != nil {
				return err
			}
			if seen {
				return errors.New("second graph field")
			}
			seen, graphBytes = true, f.b
		case modelOpsetImport:
			if err := f.wireType(protowire.BytesType, "opset_import"); err != nil {
				return err
			}
			domain, version, err := parseOpset(f.b)
			if err != nil {
				return err
			}
			if domain == "" || domain == "ai.onnx" {
				opset = version
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !seen {
		return nil, errors.New("no graph")
	}
	if opset < 0 {
		return nil, errors.New(`no opset_import for the default domain ("" or "ai.onnx")`)
	}
	if opset < 1 {
		return nil, fmt.Errorf("opset_import version %d for the default domain", opset)
	}
	g := &Graph{Opset: opset, Constants: make(map[string]*Const)}
	if err := p.graph(g, graphBytes); err != nil {
		return nil, err
	}
	return g, nil
}

// parseOpset parses an OperatorSetIdProto.
func parseOpset(b []byte) (string, int64, error) {
	var domain string
	var version int64
	err := pbWalk(b, func(f pbField) error {
		var err error
		switch f.num {
		case opsetDomain:
			domain, err = f.str("opset_import.domain")
		case opsetVersion:
			var v uint64
			v, err = f.varint("opset_import.version")
			version = int64(v)
		}
		return err
	})
	return domain, version, err
}

// graph parses the GraphProto b into g.
func (p *modelParser) graph(g *Graph, b []byte) error {
	var nodes, inits, inputs, outputs [][]byte
	err := pbWalk(b, func(f pbField) error {
		var dst *[][]byte
		var what string
		switch f.num {
		case graphNode:
			dst, what = &nodes, "node"
		case graphInitializer:
			dst, what = &inits, "initializer"
		case graphInput:
			dst, what = &inputs, "input"
		case graphOutput:
			dst, what = &outputs, "output"
		default:
			return nil
		}
		if err := f.wireType(protowire.BytesType, what); err != nil {
			return err
		}
		*dst = append(*dst, f.b)
		return nil
	})
	if err != nil {
		return err
	}

	// defined says what defines each value name: "graph input", "initializer", ...
	defined := make(map[string]string)
	for i, b := range inits {
		c, err := p.tensor(b, false)
		if err != nil {
			return fmt.Errorf("initializer %d: %w", i, err)
		}
		if c.Name == "" {
			return fmt.Errorf("initializer %d has no name", i)
		}
		if _, dup := defined[c.Name]; dup {
			return fmt.Errorf("initializer %d: two initializers are named %s", i, quote(c.Name))
		}
		defined[c.Name] = "initializer"
		g.Initializers = append(g.Initializers, c)
	}
	for i, b := range inputs {
		v, err := parseValueInfo(b)
		if err != nil {
			return fmt.Errorf("input %d: %w", i, err)
		}
		switch defined[v.Name] {
		case "initializer":
			continue // old exporters list initializers as inputs too
		case "graph input":
			return fmt.Errorf("input %d: two graph inputs are named %s", i, quote(v.Name))
		}
		if v.Name == "" {
			return fmt.Errorf("input %d has no name", i)
		}
		defined[v.Name] = "graph input"
		g.Inputs = append(g.Inputs, *v)
	}
	for i, b := range outputs {
		v, err := parseValueInfo(b)
		if err != nil {
			return fmt.Errorf("output %d: %w", i, err)
		}
		g.Outputs = append(g.Outputs, *v)
	}

	// Nodes: Constant nodes become constants, the others are ordered.
	var list []*Node
	for i, b := range nodes {
		n, err := p.node(b)
		if err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if n.Op == "Constant" && n.Domain == "" {
			c, err := constantValue(n)
			if err != nil {
				return fmt.Errorf("%s: %w", n.describe(), err)
			}
			if what, dup := defined[c.Name]; dup {
				return fmt.Errorf("%s: value %s is already defined (%s)", n.describe(), quote(c.Name), what)
			}
			defined[c.Name] = "Constant node"
			g.Constants[c.Name] = c
			continue
		}
		list = append(list, n)
	}
	producer := make(map[string]int)
	for i, n := range list {
		for _, out := range n.Outputs {
			if out == "" {
				continue
			}
			if what, dup := defined[out]; dup {
				return fmt.Errorf("%s: output %s is already defined (%s)", n.describe(), quote(out), what)
			}
			if _, dup := producer[out]; dup {
				return fmt.Errorf("%s: output %s is already defined (another node's output)", n.describe(), quote(out))
			}
			producer[out] = i
		}
	}
	g.Nodes, err = topoSort(list, defined, producer)
	if err != nil {
		return err
	}
	for _, out := range g.Outputs {
		if _, ok := defined[out.Name]; ok {
			continue
		}
		if _, ok := producer[out.Name]; !ok {
			return fmt.Errorf("graph output %s is not defined by any node, input or initializer", quote(out.Name))
		}
	}
	return nil
}

// topoSort returns nodes in a topological order: their own order when it is one,
// else an order found by Kahn's algorithm that keeps nodes as early as the file has
// them. defined holds the values defined before any node; producer maps each node
// output to its node's index.
func topoSort(nodes []*Node, defined map[string]string, producer map[string]int) ([]*Node, error) {
	sorted := true
	for i, n := range nodes {
		for _, in := range n.Inputs {
			if in == "" {
				continue
			}
			if _, ok := defined[in]; ok {
				continue
			}
			j, ok := producer[in]
			if !ok {
				return nil, fmt.Errorf("%s uses value %s, which is not a graph input, initializer, Constant output or node output", n.describe(), quote(in))
			}
			if j >= i {
				sorted = false
			}
		}
	}
	if sorted {
		return nodes, nil
	}
	indegree := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, in := range n.Inputs {
			if j, ok := producer[in]; ok && in != "" {
				if _, isDefined := defined[in]; !isDefined {
					indegree[i]++
					users[j] = append(users[j], i)
				}
			}
		}
	}
	ready := &intHeap{}
	for i, d := range indegree {
		if d == 0 {
			heap.Push(ready, i)
		}
	}
	out := make([]*Node, 0, len(nodes))
	for ready.Len() > 0 {
		i := heap.Pop(ready).(int)
		out = append(out, nodes[i])
		for _, u := range users[i] {
			indegree[u]--
			if indegree[u] == 0 {
				heap.Push(ready, u)
			}
		}
	}
	if len(out) < len(nodes) {
		for i, d := range indegree {
			if d > 0 {
				return nil, fmt.Errorf("nodes form a cycle: %s depends on its own output", nodes[i].describe())
			}
		}
	}
	return out, nil
}

// intHeap is a min-heap of ints (container/heap).
type intHeap []int

func (h intHeap) Len() int           { return len(h) }
func (h intHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h intHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *intHeap) Push(x any)        { *h = append(*h, x.(int)) }
func (h *intHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// describe names n for an error message: its name, or else its first output, and
// its op.
func (n *Node) describe() string {
	if n.Name != "" {
		return fmt.Sprintf("node %s (%s)", quote(n.Name), n.Op)
	}
	for _, out := range n.Outputs {
		if out != "" {
			return fmt.Sprintf("%s node with output %s", n.Op, quote(out))
		}
	}
	return fmt.Sprintf("unnamed %s node", n.Op)
}

// node parses a NodeProto.
func (p *modelParser) node(b []byte) (*Node, error) {
	n := &Node{Attrs: make(map[string]Attr)}
	err := pbWalk(b, func(f pbField) error {
		var err error
		var s string
		switch f.num {
		case nodeInput:
			s, err = f.str("input")
			n.Inputs = append(n.Inputs, s)
		case nodeOutput:
			s, err = f.str("output")
			n.Outputs = append(n.Outputs, s)
		case nodeName:
			n.Name, err = f.str("name")
		case nodeOpType:
			n.Op, err = f.str("op_type")
		case nodeDomain:
			n.Domain, err = f.str("domain")
		case nodeAttribute:
			if err := f.wireType(protowire.BytesType, "attribute"); err != nil {
				return err
			}
			name, a, err := p.attribute(f.b)
			if err != nil {
				return fmt.Errorf("attribute %s: %w", quote(name), err)
			}
			if _, dup := n.Attrs[name]; dup {
				return fmt.Errorf("attribute %s appears twice", quote(name))
			}
			n.Attrs[name] = a
		}
		return err
	})
	if err != nil {
		if n.Name != "" {
			return nil, fmt.Errorf("%s: %w", quote(n.Name), err)
		}
		return nil, err
	}
	if n.Op == "" {
		return nil, fmt.Errorf("%s has no op_type", n.describe())
	}
	if n.Domain == "ai.onnx" {
		n.Domain = ""
	}
	return n, nil
}

// attribute parses an AttributeProto and returns its name and value.
func (p *modelParser) attribute(b []byte) (string, Attr, error) {
	var name string
	var a Attr
	var typ uint64
	var hasF, hasI, hasS, hasT, hasG bool
	var others AttrType // a set field of a kind Attr does not hold
	err := pbWalk(b, func(f pbField) error {
		var err error
		switch f.num {
		case attrName:
			name, err = f.str("name")
		case attrF:
			if err = f.wireType(protowire.Fixed32Type, "f"); err == nil {
				a.F, hasF = math.Float32frombits(uint32(f.val)), true
			}
		case attrI:
			var v uint64
			v, err = f.varint("i")
			a.I, hasI = int64(v), true
		case attrS:
			a.S, err = f.str("s")
			hasS = true
		case attrT:
			if err = f.wireType(protowire.BytesType, "t"); err == nil {
				a.T, err = p.tensor(f.b, true)
				hasT = true
			}
		case attrG:
			err = f.wireType(protowire.BytesType, "g")
			hasG = true
		case attrFloats:
			a.Floats, err = f.appendFloats(a.Floats, "floats")
		case attrInts:
			a.Ints, err = f.appendVarints(a.Ints, "ints")
		case attrStrings:
			var s string
			s, err = f.str("strings")
			a.Strings = append(a.Strings, s)
		case attrTensors:
			others = AttrTensors
		case attrGraphs:
			others = AttrGraphs
		case attrSparseTensor:
			others = AttrSparseTensor
		case attrSparseTensors:
			others = AttrSparseTensors
		case attrTP:
			others = AttrTypeProto
		case attrTypeProtos:
			others = AttrTypeProtos
		case attrType:
			typ, err = f.varint("type")
		}
		return err
	})
	if err != nil {
		return name, a, err
	}
	if name == "" {
		return name, a, errors.New("attribute has no name")
	}
	if typ == 0 {
		// Old models leave type out: guess it from the field that is set.
		switch {
		case hasT:
			typ = uint64(AttrTensor)
		case hasG:
			typ = uint64(AttrGraph)
		case others != 0:
			typ = uint64(others)
		case len(a.Floats) > 0:
			typ = uint64(AttrFloats)
		case len(a.Ints) > 0:
			typ = uint64(AttrInts)
		case len(a.Strings) > 0:
			typ = uint64(AttrStrings)
		case hasS:
			typ = uint64(AttrString)
		case hasI:
			typ = uint64(AttrInt)
		case hasF:
			typ = uint64(AttrFloat)
		default:
			return name, a, errors.New("attribute has no type and no value")
		}
	}
	if typ > uint64(AttrTypeProtos) {
		return name, a, fmt.Errorf("unknown attribute type %d", typ)
	}
	a.Type = AttrType(typ)
	if a.Type == AttrTensor && a.T == nil {
		return name, a, errors.New("tensor attribute has no tensor")
	}
	return name, a, nil
}

// constantValue returns the value of a Constant node.
func constantValue(n *Node) (*Const, error) {
	if len(n.Outputs) != 1 || n.Outputs[0] == "" {
		return nil, fmt.Errorf("Constant node has %d outputs, want 1", len(n.Outputs))
	}
	if len(n.Inputs) != 0 {
		return nil, fmt.Errorf("Constant node has %d inputs, want none", len(n.Inputs))
	}
	if len(n.Attrs) != 1 {
		return nil, fmt.Errorf("Constant node has %d attributes, want 1", len(n.Attrs))
	}
	c := &Const{Name: n.Outputs[0]}
	for name, a := range n.Attrs {
		switch {
		case name == "value" && a.Type == AttrTensor:
			c.DType, c.Shape, c.Data = a.T.DType, a.T.Shape, a.T.Data
		case name == "value_float" && a.Type == AttrFloat:
			c.DType, c.Shape = F32, []int64{}
			c.Data = binary.LittleEndian.AppendUint32(nil, math.Float32bits(a.F))
		case name == "value_floats" && a.Type == AttrFloats:
			c.DType, c.Shape = F32, []int64{int64(len(a.Floats))}
			c.Data = make([]byte, 0, 4*len(a.Floats))
			for _, v := range a.Floats {
				c.Data = binary.LittleEndian.AppendUint32(c.Data, math.Float32bits(v))
			}
		case name == "value_int" && a.Type == AttrInt:
			c.DType, c.Shape = I64, []int64{}
			c.Data = binary.LittleEndian.AppendUint64(nil, uint64(a.I))
		case name == "value_ints" && a.Type == AttrInts:
			c.DType, c.Shape = I64, []int64{int64(len(a.Ints))}
			c.Data = make([]byte, 0, 8*len(a.Ints))
			for _, v := range a.Ints {
				c.Data = binary.LittleEndian.AppendUint64(c.Data, uint64(v))
			}
		default:
			return nil, fmt.Errorf("Constant attribute %s of type %d is not supported", quote(name), a.Type)
		}
	}
	return c, nil
}

// parseValueInfo parses a ValueInfoProto. A value without a type gets DTypeInvalid
// and an unknown shape; only tensor types are supported.
func parseValueInfo(b []byte) (*ValueInfo, error) {
	v := &ValueInfo{}
	var typ []byte
	err := pbWalk(b, func(f pbField) error {
		var err error
		switch f.num {
		case valueName:
			v.Name, err = f.str("name")
		case valueType:
			if err = f.wireType(protowire.BytesType, "type"); err == nil {
				typ = f.b
			}
		}
		return err
	})
	if err != nil || typ == nil {
		return v, err
	}
	var tensor []byte
	other := false
	err = pbWalk(typ, func(f pbField) error {
		switch f.num {
		case typeTensor:
			if err := f.wireType(protowire.BytesType, "tensor_type"); err != nil {
				return err
			}
			tensor = f.b
		case 4, 5, 8, 9: // sequence_type, map_type, sparse_tensor_type, optional_type
			other = true
		}
		return nil
	})
	if err != nil {
		return v, fmt.Errorf("%s: %w", quote(v.Name), err)
	}
	if other || tensor == nil {
		if other {
			return v, fmt.Errorf("%s is not a tensor; only tensor values are supported", quote(v.Name))
		}
		return v, nil
	}
	err = pbWalk(tensor, func(f pbField) error {
		switch f.num {
		case tensorElemType:
			t, err := f.varint("elem_type")
			if err != nil {
				return err
			}
			if t == 0 {
				return nil
			}
			ot, ok := onnxTypes[t]
			if !ok {
				return fmt.Errorf("element type %s is not supported", onnxTypeName(t))
			}
			v.DType = ot.dtype
		case tensorShape:
			if err := f.wireType(protowire.BytesType, "shape"); err != nil {
				return err
			}
			shape, err := parseShape(f.b)
			if err != nil {
				return err
			}
			v.Shape = shape
		}
		return nil
	})
	if err != nil {
		return v, fmt.Errorf("%s: %w", quote(v.Name), err)
	}
	return v, nil
}

// parseShape parses a TensorShapeProto. The result is never nil: a shape field
// without dims is a scalar.
func parseShape(b []byte) ([]Dim, error) {
	shape := []Dim{}
	err := pbWalk(b, func(f pbField) error {
		if f.num != shapeDim {
			return nil
		}
		if err := f.wireType(protowire.BytesType, "dim"); err != nil {
			return err
		}
		d := Dim{Value: -1}
		err := pbWalk(f.b, func(f pbField) error {
			switch f.num {
			case dimValue:
				v, err := f.varint("dim_value")
				if err != nil {
					return err
				}
				if int64(v) >= 0 {
					d = Dim{Value: int64(v)}
				}
			case dimParam:
				s, err := f.str("dim_param")
				if err != nil {
					return err
				}
				if s != "" {
					d = Dim{Value: -1, Param: s}
				}
			}
			return nil
		})
		shape = append(shape, d)
		return err
	})
	return shape, err
}

// onnxTypeNames names the TensorProto.DataType values for error messages.
var onnxTypeNames = map[uint64]string{
	1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
	8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE", 12: "UINT32", 13: "UINT64",
	14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16", 17: "FLOAT8E4M3FN",
	18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ", 21: "UINT4", 22: "INT4",
}

func onnxTypeName(t uint64) string {
	if s, ok := onnxTypeNames[t]; ok {
		return s
	}
	return strconv.FormatUint(t, 10)
}

// tensorParts is what a TensorProto holds.
type tensorParts struct {
	name     string
	dataType uint64
	dims     []int64
	location uint64
	raw      []byte
	hasRaw   bool
	typed    []pbField // the typed data fields, in order
	external [][2]string
}

// parseTensorParts splits a TensorProto into its fields.
func parseTensorParts(b []byte) (*tensorParts, error) {
	t := &tensorParts{}
	err := pbWalk(b, func(f pbField) error {
		var err error
		switch f.num {
		case tensorDims:
			t.dims, err = f.appendVarints(t.dims, "dims")
		case tensorDataType:
			t.dataType, err = f.varint("data_type")
		case tensorName:
			t.name, err = f.str("name")
		case tensorRawData:
			if err = f.wireType(protowire.BytesType, "raw_data"); err == nil {
				t.raw, t.hasRaw = f.b, true
			}
		case tensorDataLocation:
			t.location, err = f.varint("data_location")
		case tensorExternalData:
			if err = f.wireType(protowire.BytesType, "external_data"); err == nil {
				var kv [2]string
				kv, err = parseEntry(f.b)
				t.external = append(t.external, kv)
			}
		case tensorFloatData, tensorInt32Data, tensorStringData, tensorInt64Data, tensorDoubleData, tensorUint64Data:
			t.typed = append(t.typed, f)
		}
		return err
	})
	return t, err
}

// parseEntry parses a StringStringEntryProto.
func parseEntry(b []byte) ([2]string, error) {
	var kv [2]string
	err := pbWalk(b, func(f pbField) error {
		if f.num != entryKey && f.num != entryValue {
			return nil
		}
		s, err := f.str("external_data entry")
		kv[f.num-1] = s
		return err
	})
	return kv, err
}

// tensor parses a TensorProto into a Const. With needData, the tensor must hold its
// data (inline, or external data when p reads it); otherwise a tensor without data
// fields, or with external data that p does not read, is a stub (Data nil).
func (p *modelParser) tensor(b []byte, needData bool) (*Const, error) {
	t, err := parseTensorParts(b)
	if err != nil {
		return nil, err
	}
	fail := func(format string, args ...any) error {
		if t.name == "" {
			return fmt.Errorf(format, args...)
		}
		return fmt.Errorf("tensor %s: "+format, append([]any{quote(t.name)}, args...)...)
	}
	typ, ok := onnxTypes[t.dataType]
	if !ok {
		return nil, fail("data_type %s is not supported", onnxTypeName(t.dataType))
	}
	for _, d := range t.dims {
		if d < 0 {
			return nil, fail("dims %s hold a negative dimension", dimsString(t.dims))
		}
	}
	size, err := ByteSize(typ.dtype, t.dims)
	if err != nil {
		return nil, fail("dims %s are too large", dimsString(t.dims))
	}
	c := &Const{Name: t.name, DType: typ.dtype, Shape: append([]int64{}, t.dims...)}
	if t.location != locationDefault && t.location != locationExternal {
		return nil, fail("unknown data_location %d", t.location)
	}
	external := t.location == locationExternal
	if len(t.external) > 0 && !external {
		return nil, fail("has external_data entries but data_location is not EXTERNAL")
	}
	if t.hasRaw && len(t.typed) > 0 {
		return nil, fail("has both raw_data and %s", tensorDataFields[t.typed[0].num])
	}
	if external && (t.hasRaw || len(t.typed) > 0) {
		return nil, fail("has both external data and inline data")
	}
	for _, f := range t.typed {
		if f.num != typ.field {
			return nil, fail("has %s, but %s values belong in %s", tensorDataFields[f.num], typ.dtype, tensorDataFields[typ.field])
		}
	}
	switch {
	case external:
		if !p.external {
			if needData {
				return nil, fail("has external data, which cannot be read here")
			}
			return c, nil // a stub: the data lives elsewhere
		}
		c.Data, err = p.readExternal(t.external, size)
		if err != nil {
			return nil, fail("%w", err)
		}
	case t.hasRaw:
		if int64(len(t.raw)) != size {
			return nil, fail("raw_data has %d bytes, dims %s of %s need %d", len(t.raw), dimsString(t.dims), typ.dtype, size)
		}
		c.Data = append([]byte{}, t.raw...)
	case len(t.typed) > 0:
		c.Data, err = typedData(t.typed, typ, size)
		if err != nil {
			return nil, fail("%w", err)
		}
	case size == 0:
		c.Data = []byte{}
	case needData:
		return nil, fail("has no data, dims %s of %s need %d bytes", dimsString(t.dims), typ.dtype, size)
	}
	return c, nil
}

// typedData converts typed data fields (float_data, int32_data, ...) to the
// little-endian layout of typ, size bytes in all.
func typedData(fields []pbField, typ onnxType, size int64) ([]byte, error) {
	esize := int64(typ.dtype.Size())
	want := size / esize
	var most int64 // at least the number of values the fields hold
	for _, f := range fields {
		most += int64(max(len(f.b), 1))
	}
	var count int64
	var buf []byte
	store := func(v uint64) {
		if count < want {
			if buf == nil {
				buf = make([]byte, 0, min(want, most)*esize)
			}
			if typ.dtype == Bool && v != 0 {
				v = 1
			}
			buf = appendLE(buf, v, int(esize))
		}
		count++
	}
	name := tensorDataFields[typ.field]
	for _, f := range fields {
		switch typ.field {
		case tensorFloatData:
			vs, err := f.appendFloats(nil, name)
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				store(uint64(math.Float32bits(v)))
			}
		case tensorDoubleData:
			switch f.typ {
			case protowire.Fixed64Type:
				store(f.val)
			case protowire.BytesType:
				if len(f.b)%8 != 0 {
					return nil, fmt.Errorf("packed %s is %d bytes long, not a multiple of 8", name, len(f.b))
				}
				for i := 0; i < len(f.b); i += 8 {
					store(binary.LittleEndian.Uint64(f.b[i:]))
				}
			default:
				return nil, fmt.Errorf("field %s has wire type %d", name, f.typ)
			}
		default:
			vs, err := f.appendVarints(nil, name)
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				store(uint64(v))
			}
		}
	}
	if count != want {
		return nil, fmt.Errorf("%s holds %d values, dims of %s need %d", name, count, typ.dtype, want)
	}
	if buf == nil {
		buf = []byte{}
	}
	return buf, nil
}

// readExternal reads the size bytes of a tensor stored as external data, from the
// file that its location entry names in p.dir.
func (p *modelParser) readExternal(entries [][2]string, size int64) ([]byte, error) {
	var location string
	var offset int64
	length := size
	for _, kv := range entries {
		var err error
		switch kv[0] {
		case "location":
			location = kv[1]
		case "offset":
			offset, err = strconv.ParseInt(kv[1], 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv[1], 10, 64)
		default:
			continue
		}
		if err != nil || offset < 0 || length < 0 {
			return nil, fmt.Errorf("external data %s %s is not a non-negative integer", kv[0], quote(kv[1]))
		}
	}
	if location == "" {
		return nil, errors.New("external data has no location")
	}
	rel := filepath.FromSlash(location)
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("external data location %s is absolute or leaves the model's folder", quote(location))
	}
	if length != size {
		return nil, fmt.Errorf("external data length is %d bytes, dims need %d", length, size)
	}
	f, ok := p.files[rel]
	if !ok {
		var err error
		f, err = os.OpenInRoot(p.dir, rel)
		if err != nil {
			return nil, fmt.Errorf("external data %s: %w", quote(location), pathless(err))
		}
		p.files[rel] = f
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		return nil, fmt.Errorf("external data %s: %w", quote(location), pathless(err))
	}
	if offset > fi.Size()-length {
		return nil, fmt.Errorf("external data at offset %d, %d bytes long, runs past the end of %s (%d bytes)", offset, length, quote(location), fi.Size())
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, offset); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		return nil, fmt.Errorf("external data %s: %w", quote(location), pathless(err))
	}
	return buf, nil
}
