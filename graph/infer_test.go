package graph

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
)

// testGraph builds a Graph by hand for tests.
type testGraph struct {
	g *Graph
}

func newTestGraph(opset int64) *testGraph {
	return &testGraph{g: &Graph{Opset: opset, Constants: make(map[string]*Const)}}
}

// dims turns sizes (int: fixed, string: symbolic, "?": unknown) into a shape.
func dims(ds ...any) []Dim {
	s := []Dim{}
	for _, d := range ds {
		switch d := d.(type) {
		case int:
			s = append(s, Dim{Value: int64(d)})
		case string:
			if d == "?" {
				s = append(s, Dim{Value: -1})
			} else {
				s = append(s, Dim{Value: -1, Param: d})
			}
		}
	}
	return s
}

// input adds a graph input; a nil shape is an unknown rank.
func (b *testGraph) input(name string, dtype DType, shape []Dim) *testGraph {
	b.g.Inputs = append(b.g.Inputs, ValueInfo{Name: name, DType: dtype, Shape: shape})
	return b
}

// stub adds an initializer without data.
func (b *testGraph) stub(name string, dtype DType, shape ...int64) *testGraph {
	b.g.Initializers = append(b.g.Initializers, &Const{Name: name, DType: dtype, Shape: append([]int64{}, shape...)})
	return b
}

// ints adds an int64 constant.
func (b *testGraph) ints(name string, shape []int64, vs ...int64) *testGraph {
	b.g.Constants[name] = i64Const(name, shape, vs...)
	return b
}

// floats adds a float32 constant.
func (b *testGraph) floats(name string, shape []int64, vs ...float32) *testGraph {
	b.g.Constants[name] = f32Const(name, shape, vs...)
	return b
}

func i64Const(name string, shape []int64, vs ...int64) *Const {
	c := &Const{Name: name, DType: I64, Shape: append([]int64{}, shape...), Data: []byte{}}
	for _, v := range vs {
		c.Data = binary.LittleEndian.AppendUint64(c.Data, uint64(v))
	}
	return c
}

func f32Const(name string, shape []int64, vs ...float32) *Const {
	c := &Const{Name: name, DType: F32, Shape: append([]int64{}, shape...), Data: []byte{}}
	for _, v := range vs {
		c.Data = binary.LittleEndian.AppendUint32(c.Data, math.Float32bits(v))
	}
	return c
}

// node adds a node; attrs alternate names and values (Attr, int, []int64, string,
// float32).
func (b *testGraph) node(op string, inputs, outputs []string, attrs ...any) *testGraph {
	n := &Node{Name: op + "_" + strings.Join(outputs, "_"), Op: op, Inputs: inputs, Outputs: outputs, Attrs: make(map[string]Attr)}
	for i := 0; i+1 < len(attrs); i += 2 {
		name := attrs[i].(string)
		switch v := attrs[i+1].(type) {
		case Attr:
			n.Attrs[name] = v
		case int:
			n.Attrs[name] = Attr{Type: AttrInt, I: int64(v)}
		case []int64:
			n.Attrs[name] = Attr{Type: AttrInts, Ints: v}
		case string:
			n.Attrs[name] = Attr{Type: AttrString, S: v}
		case float32:
			n.Attrs[name] = Attr{Type: AttrFloat, F: v}
		case *Const:
			n.Attrs[name] = Attr{Type: AttrTensor, T: v}
		}
	}
	b.g.Nodes = append(b.g.Nodes, n)
	return b
}

func (b *testGraph) output(names ...string) *testGraph {
	for _, name := range names {
		b.g.Outputs = append(b.g.Outputs, ValueInfo{Name: name})
	}
	return b
}

func in(names ...string) []string { return names }

// checkShape checks the inferred shape and dtype of value name.
func checkShape(t *testing.T, g *Graph, name string, dtype DType, want []Dim) {
	t.Helper()
	v := g.Values[name]
	if v == nil {
		t.Fatalf("no value %s", name)
	}
	if got, w := formatShape(v.Shape), formatShape(want); got != w {
		t.Errorf("%s: shape %s, want %s", name, got, w)
	}
	if v.DType != dtype {
		t.Errorf("%s: dtype %s, want %s", name, v.DType, dtype)
	}
}

func inferOK(t *testing.T, b *testGraph) *Graph {
	t.Helper()
	if err := b.g.Infer(); err != nil {
		t.Fatalf("Infer: %v", err)
	}
	return b.g
}

func inferFails(t *testing.T, b *testGraph, want string) {
	t.Helper()
	err := b.g.Infer()
	if err == nil {
		t.Fatalf("Infer succeeded, want an error with %q", want)
	}
	if !strings.HasPrefix(err.Error(), "graph: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("Infer: %v, want an error starting with \"graph: \" holding %q", err, want)
	}
}

func TestInferBroadcast(t *testing.T) {
	g := inferOK(t, newTestGraph(17).
		input("a", F32, dims("batch", 1, 4)).
		input("b", F32, dims(3, 1)).
		input("c", F32, dims("batch", "seq", 1)).
		input("d", F32, dims("?", 5, 4)).
		input("u", F32, nil).
		input("s", F32, dims()).
		node("Add", in("a", "b"), in("ab")).
		node("Mul", in("a", "c"), in("ac")).
		node("Sub", in("c", "d"), in("cd")).
		node("Less", in("a", "b"), in("lt")).
		node("Div", in("a", "u"), in("au")).
		node("Pow", in("s", "a"), in("sa")).
		node("Where", in("lt", "a", "b"), in("w")).
		node("Max", in("a", "b", "s"), in("max")))
	checkShape(t, g, "ab", F32, dims("batch", 3, 4))
	checkShape(t, g, "ac", F32, dims("batch", "seq", 4))
	checkShape(t, g, "cd", F32, dims("?", 5, 4)) // batch with an unknown size: either may be 1
	checkShape(t, g, "lt", Bool, dims("batch", 3, 4))
	checkShape(t, g, "au", F32, nil)
	checkShape(t, g, "sa", F32, dims("batch", 1, 4))
	checkShape(t, g, "w", F32, dims("batch", 3, 4))
	checkShape(t, g, "max", F32, dims("batch", 3, 4))

	inferFails(t, newTestGraph(17).input("a", F32, dims(2, 3)).input("b", F32, dims(4)).
		node("Add", in("a", "b"), in("c")), `node "Add_c" (Add): shapes [2,3] and [4] cannot be broadcast`)
}

func TestInferMatMul(t *testing.T) {
	g := inferOK(t, newTestGraph(17).
		input("a", F32, dims("batch", 4, 32, 16)).
		input("b", F32, dims("batch", 4, 16, 32)).
		input("w", F32, dims(16, 8)).
		input("v", F32, dims(16)).
		input("x", F32, dims(3, 1, 5, 16)).
		input("y", F32, dims(7, 16, 2)).
		node("MatMul", in("a", "b"), in("ab")).
		node("MatMul", in("a", "w"), in("aw")).
		node("MatMul", in("a", "v"), in("av")).
		node("MatMul", in("v", "w"), in("vw")).
		node("MatMul", in("v", "v"), in("vv")).
		node("MatMul", in("x", "y"), in("xy")))
	checkShape(t, g, "ab", F32, dims("batch", 4, 32, 32))
	checkShape(t, g, "aw", F32, dims("batch", 4, 32, 8))
	checkShape(t, g, "av", F32, dims("batch", 4, 32))
	checkShape(t, g, "vw", F32, dims(8))
	checkShape(t, g, "vv", F32, dims())
	checkShape(t, g, "xy", F32, dims(3, 7, 5, 2))

	inferFails(t, newTestGraph(17).input("a", F32, dims(2, 3)).input("b", F32, dims(4, 5)).
		node("MatMul", in("a", "b"), in("c")), "inner dimensions 3 and 4 do not match")
	inferFails(t, newTestGraph(17).input("a", F32, dims(2, 2, 3)).input("b", F32, dims(5, 3, 5)).
		node("MatMul", in("a", "b"), in("c")), "batch dims")
}

func TestInferGemm(t *testing.T) {
	g := inferOK(t, newTestGraph(13).
		input("x", F32, dims("batch", 64)).
		stub("w", F32, 128, 64).stub("b", F32, 128).
		node("Gemm", in("x", "w", "b"), in("y"), "transB", 1))
	checkShape(t, g, "y", F32, dims("batch", 128))
	inferFails(t, newTestGraph(13).input("x", F32, dims("batch", 64)).stub("w", F32, 128, 64).
		node("Gemm", in("x", "w"), in("y")), "inner dimensions 64 and 128")
}

func TestInferConvPool(t *testing.T) {
	g := inferOK(t, newTestGraph(13).
		input("x", F32, dims("batch", 3, 32, 31)).
		stub("w", F32, 16, 3, 3, 3).
		stub("dw", F32, 16, 1, 3, 3).
		stub("bias", F32, 16).
		node("Conv", in("x", "w", "bias"), in("c1"), "pads", []int64{1, 1, 1, 1}).
		node("Conv", in("x", "w"), in("c2"), "strides", []int64{2, 2}).
		node("Conv", in("x", "w"), in("c3"), "strides", []int64{2, 2}, "auto_pad", "SAME_UPPER").
		node("Conv", in("x", "w"), in("c4"), "dilations", []int64{2, 2}, "auto_pad", "VALID").
		node("Conv", in("c1", "dw"), in("c5"), "group", 16, "pads", []int64{0, 1, 2, 1}, "strides", []int64{1, 2}).
		node("MaxPool", in("x"), in("p1", "idx"), "kernel_shape", []int64{2, 2}, "strides", []int64{2, 2}).
		node("MaxPool", in("x"), in("p2"), "kernel_shape", []int64{3, 3}, "strides", []int64{2, 2}, "ceil_mode", 1).
		node("AveragePool", in("x"), in("p3"), "kernel_shape", []int64{3, 3}, "strides", []int64{2, 2}, "pads", []int64{1, 1, 1, 1}).
		node("AveragePool", in("x"), in("p4"), "kernel_shape", []int64{2, 2}, "auto_pad", "SAME_LOWER", "strides", []int64{3, 3}).
		input("small", F32, dims(1, 1, 4, 5)).
		node("MaxPool", in("small"), in("p5"), "kernel_shape", []int64{2, 2}, "strides", []int64{2, 2}, "pads", []int64{0, 0, 1, 1}, "ceil_mode", 1).
		node("GlobalAveragePool", in("c1"), in("gap")).
		node("Flatten", in("gap"), in("flat")))
	checkShape(t, g, "c1", F32, dims("batch", 16, 32, 31))
	checkShape(t, g, "c2", F32, dims("batch", 16, 15, 15))
	checkShape(t, g, "c3", F32, dims("batch", 16, 16, 16))
	checkShape(t, g, "c4", F32, dims("batch", 16, 28, 27))
	checkShape(t, g, "c5", F32, dims("batch", 16, 32, 16)) // H: 32+0+2-3+1; W: (31+2-3)/2+1
	checkShape(t, g, "p1", F32, dims("batch", 3, 16, 15))
	checkShape(t, g, "idx", I64, dims("batch", 3, 16, 15))
	checkShape(t, g, "p2", F32, dims("batch", 3, 16, 15)) // ceil((32-3)/2)+1, ceil((31-3)/2)+1
	checkShape(t, g, "p3", F32, dims("batch", 3, 16, 16))
	checkShape(t, g, "p4", F32, dims("batch", 3, 11, 11))
	checkShape(t, g, "p5", F32, dims(1, 1, 2, 3)) // H: a third window would start in the padding
	checkShape(t, g, "gap", F32, dims("batch", 16, 1, 1))
	checkShape(t, g, "flat", F32, dims("batch", 16))

	inferFails(t, newTestGraph(13).input("x", F32, dims(1, 4, 8, 8)).stub("w", F32, 16, 3, 3, 3).
		node("Conv", in("x", "w"), in("y")), "input [1,4,8,8] has 4 channels")
	inferFails(t, newTestGraph(13).input("x", F32, dims(1, 3, 2, 2)).stub("w", F32, 16, 3, 3, 3).
		node("Conv", in("x", "w"), in("y")), "smaller than the window")
	inferFails(t, newTestGraph(13).input("x", F32, dims(1, 3, 8, 8)).
		node("MaxPool", in("x"), in("y"), "kernel_shape", []int64{2}), "kernel_shape [2] does not have 2 spatial dims")
}

func TestInferReshape(t *testing.T) {
	g := inferOK(t, newTestGraph(14).
		input("x", F32, dims("batch", 32, 64)).
		input("dyn", I64, dims(3)).
		ints("s1", []int64{4}, -1, 32, 4, 16).
		ints("s2", []int64{3}, 0, 0, -1).
		ints("s3", []int64{2}, 0, -1).
		ints("s4", []int64{2}, -1, 64).
		ints("s5", []int64{2}, 32, -1).
		node("Reshape", in("x", "s1"), in("r1")).
		node("Reshape", in("x", "s2"), in("r2")).
		node("Reshape", in("x", "s3"), in("r3")).
		node("Reshape", in("x", "s4"), in("r4")).
		node("Reshape", in("x", "s5"), in("r5")).
		node("Reshape", in("x", "dyn"), in("r6")).
		node("Transpose", in("r1"), in("t1"), "perm", []int64{0, 2, 1, 3}).
		node("Transpose", in("x"), in("t2")))
	checkShape(t, g, "r1", F32, dims("batch", 32, 4, 16))
	checkShape(t, g, "r2", F32, dims("batch", 32, 64))
	checkShape(t, g, "r3", F32, dims("batch", 2048))
	checkShape(t, g, "r4", F32, dims("?", 64))
	checkShape(t, g, "r5", F32, dims(32, "?"))
	checkShape(t, g, "r6", F32, dims("?", "?", "?"))
	checkShape(t, g, "t1", F32, dims("batch", 4, 32, 16))
	checkShape(t, g, "t2", F32, dims(64, 32, "batch"))

	inferFails(t, newTestGraph(14).input("x", F32, dims(2, 3)).ints("s", []int64{2}, 4, 2).
		node("Reshape", in("x", "s"), in("y")), "cannot reshape [2,3] (6 elements) to [4,2]")
	inferFails(t, newTestGraph(14).input("x", F32, dims(2, 3)).ints("s", []int64{2}, 4, -1).
		node("Reshape", in("x", "s"), in("y")), "cannot reshape [2,3] (6 elements)")
	inferFails(t, newTestGraph(14).input("x", F32, dims(2, 3)).
		node("Transpose", in("x"), in("y"), "perm", []int64{0, 0}), "not a permutation")
}

func TestInferGatherSliceConcatSplit(t *testing.T) {
	g := inferOK(t, newTestGraph(13).
		input("tokens", I64, dims("batch", 32)).
		input("x", F32, dims("batch", 10, 20)).
		input("x2", F32, dims("?", 10, 10)).
		stub("emb", F32, 256, 64).
		ints("i0", nil, 2).
		ints("i1", []int64{2, 2}, 0, 1, 2, 3).
		ints("starts", []int64{2}, -3, 100).
		ints("ends", []int64{2}, math.MaxInt64, -100).
		ints("axes", []int64{2}, 1, 2).
		ints("steps", []int64{2}, 1, -2).
		ints("st2", []int64{1}, 0).
		ints("en2", []int64{1}, math.MaxInt64).
		ints("ax0", []int64{1}, 0).
		ints("sp", []int64{3}, 2, 3, 5).
		node("Gather", in("emb", "tokens"), in("g0")).
		node("Gather", in("x", "i0"), in("g1"), "axis", 1).
		node("Gather", in("x", "i1"), in("g2"), "axis", -1).
		node("Slice", in("x", "starts", "ends", "axes", "steps"), in("s1")).
		node("Slice", in("x", "st2", "en2", "ax0"), in("s2")).
		node("Slice", in("x", "starts", "ends"), in("s3")).
		node("Concat", in("x", "x", "x2"), in("c1"), "axis", 2).
		node("Concat", in("x", "x"), in("c2"), "axis", 0).
		node("Split", in("x", "sp"), in("p1", "p2", "p3"), "axis", 1).
		node("Split", in("x"), in("q1", "q2"), "axis", -1).
		node("Split", in("x"), in("r1", "r2", "r3"), "axis", 2, "num_outputs", 3))
	checkShape(t, g, "g0", F32, dims("batch", 32, 64))
	checkShape(t, g, "g1", F32, dims("batch", 20))
	checkShape(t, g, "g2", F32, dims("batch", 10, 2, 2))
	checkShape(t, g, "s1", F32, dims("batch", 3, 10)) // rows 7..9; cols 19, 17, ..., 1
	checkShape(t, g, "s2", F32, dims("batch", 10, 20))
	checkShape(t, g, "s3", F32, dims("?", 0, 20))
	checkShape(t, g, "c1", F32, dims("batch", 10, 50))
	checkShape(t, g, "c2", F32, dims("?", 10, 20))
	checkShape(t, g, "p2", F32, dims("batch", 3, 20))
	checkShape(t, g, "p3", F32, dims("batch", 5, 20))
	checkShape(t, g, "q1", F32, dims("batch", 10, 10))
	checkShape(t, g, "r1", F32, dims("batch", 10, 7))
	checkShape(t, g, "r3", F32, dims("batch", 10, 6))

	inferFails(t, newTestGraph(13).input("x", F32, dims(4, 5)).ints("i", nil, 5).
		node("Gather", in("x", "i"), in("y")), "index 5 is out of range for axis 0 of size 4")
	inferFails(t, newTestGraph(13).input("x", F32, dims(4, 5)).input("y", F32, dims(3, 6)).
		node("Concat", in("x", "y"), in("z"), "axis", 0), "does not match dim 1")
	inferFails(t, newTestGraph(13).input("x", F32, dims(4, 5)).ints("sp", []int64{2}, 1, 2).
		node("Split", in("x", "sp"), in("a", "b"), "axis", 1), "split [1 2] adds up to 3")
	inferFails(t, newTestGraph(13).input("x", F32, dims(4, 5)).
		node("Split", in("x"), in("a", "b"), "axis", 1), "cannot be split in 2 equal parts")
}

func TestInferAxesOpsetChanges(t *testing.T) {
	// Opset 11: axes are attributes; opset 13: inputs (ReduceMean's from 18).
	g := inferOK(t, newTestGraph(11).
		input("x", F32, dims("batch", 1, 8)).
		node("Squeeze", in("x"), in("sq"), "axes", []int64{1}).
		node("Unsqueeze", in("sq"), in("us"), "axes", []int64{0, -1}).
		node("ReduceSum", in("x"), in("rs"), "axes", []int64{-1}, "keepdims", 0).
		node("ReduceMean", in("x"), in("rm"), "axes", []int64{2}).
		node("Split", in("x"), in("a", "b"), "axis", 2, "split", []int64{3, 5}).
		node("Slice", in("x"), in("sl"), "starts", []int64{1}, "ends", []int64{-1}, "axes", []int64{2}))
	checkShape(t, g, "sq", F32, dims("batch", 8))
	checkShape(t, g, "us", F32, dims(1, "batch", 8, 1))
	checkShape(t, g, "rs", F32, dims("batch", 1))
	checkShape(t, g, "rm", F32, dims("batch", 1, 1))
	checkShape(t, g, "b", F32, dims("batch", 1, 5))
	checkShape(t, g, "sl", F32, dims("batch", 1, 6))

	g = inferOK(t, newTestGraph(18).
		input("x", F32, dims("batch", 1, 8)).
		input("dynaxes", I64, dims(1)).
		ints("a1", []int64{1}, 1).
		node("Squeeze", in("x", "a1"), in("sq")).
		node("Unsqueeze", in("sq", "a1"), in("us")).
		node("ReduceMean", in("x", "a1"), in("rm"), "keepdims", 0).
		node("ReduceMax", in("x"), in("all")).
		node("ReduceSum", in("x", "dynaxes"), in("dk")).
		node("ReduceSum", in("x", "dynaxes"), in("dn"), "keepdims", 0).
		node("ArgMax", in("x"), in("am"), "axis", -1, "keepdims", 0))
	checkShape(t, g, "sq", F32, dims("batch", 8))
	checkShape(t, g, "us", F32, dims("batch", 1, 8))
	checkShape(t, g, "rm", F32, dims("batch", 8))
	checkShape(t, g, "all", F32, dims(1, 1, 1))
	checkShape(t, g, "dk", F32, dims("?", "?", "?"))
	checkShape(t, g, "dn", F32, dims("?", "?"))
	checkShape(t, g, "am", I64, dims("batch", 1))

	inferFails(t, newTestGraph(13).input("x", F32, dims(2, 3)).ints("a", []int64{1}, 1).
		node("Squeeze", in("x", "a"), in("y")), "cannot squeeze axis 1 of [2,3], of size 3")
	inferFails(t, newTestGraph(13).input("x", F32, dims(2, 3)).
		node("Softmax", in("x"), in("y"), "axis", 2), "axis 2 is out of range for rank 2")
}

func TestInferMisc(t *testing.T) {
	g := inferOK(t, newTestGraph(17).
		input("x", F32, dims("batch", 3, 4)).
		input("m", Bool, dims(4)).
		ints("shape", []int64{3}, 2, 1, 4).
		ints("reps", []int64{3}, 1, 2, 3).
		ints("start", nil, 0).ints("limit", nil, 10).ints("delta", nil, 3).
		node("Cast", in("x"), in("c"), "to", 7).
		node("CastLike", in("x", "m"), in("cl")).
		node("Shape", in("x"), in("sh")).
		node("Shape", in("x"), in("sh2"), "start", 1).
		node("Size", in("x"), in("sz")).
		node("Not", in("m"), in("nm")).
		node("Expand", in("x", "shape"), in("ex")).
		node("Tile", in("x", "reps"), in("ti")).
		node("Range", in("start", "limit", "delta"), in("rg")).
		node("ConstantOfShape", in("shape"), in("cos"), "value", i64Const("v", []int64{1}, 7)).
		node("ConstantOfShape", in("sh"), in("cos2")).
		node("LayerNormalization", in("x", "m"), in("ln", "mean", "inv"), "axis", -1).
		node("Dropout", in("x"), in("dr", "mask")).
		node("Clip", in("x", "", "start"), in("cp")).
		node("BatchNormalization", in("x", "a", "b", "c", "d"), in("bn")).
		node("Relu", in("x"), in("r")))
	checkShape(t, g, "c", I64, dims("batch", 3, 4))
	checkShape(t, g, "cl", Bool, dims("batch", 3, 4))
	checkShape(t, g, "sh", I64, dims(3))
	checkShape(t, g, "sh2", I64, dims(2))
	checkShape(t, g, "sz", I64, dims())
	checkShape(t, g, "nm", Bool, dims(4))
	checkShape(t, g, "ex", F32, dims(2, 3, 4)) // batch broadcast with 2: 2
	checkShape(t, g, "ti", F32, dims("batch", 6, 12))
	checkShape(t, g, "rg", I64, dims(4))
	checkShape(t, g, "cos", I64, dims(2, 1, 4))
	checkShape(t, g, "cos2", F32, dims("batch", 3, 4)) // from the shape of x, tracked through Shape
	checkShape(t, g, "ln", F32, dims("batch", 3, 4))
	checkShape(t, g, "mean", F32, dims("batch", 3, 1))
	checkShape(t, g, "dr", F32, dims("batch", 3, 4))
	checkShape(t, g, "mask", Bool, dims("batch", 3, 4))
	checkShape(t, g, "cp", F32, dims("batch", 3, 4))
	checkShape(t, g, "bn", F32, dims("batch", 3, 4))
	checkShape(t, g, "r", F32, dims("batch", 3, 4))
}

// TestInferShapeTracking checks that Reshape gets symbolic dims from a shape computed
// at run time (Shape -> Gather -> Unsqueeze -> Concat), as exporters write it.
func TestInferShapeTracking(t *testing.T) {
	g := inferOK(t, newTestGraph(13).
		input("x", F32, dims("batch", "seq", 64)).
		ints("zero", nil, 0).ints("one", nil, 1).ints("ax", []int64{1}, 0).
		ints("rest", []int64{2}, 4, 16).
		node("Shape", in("x"), in("shape")).
		node("Gather", in("shape", "zero"), in("b")).
		node("Gather", in("shape", "one"), in("s")).
		node("Unsqueeze", in("b", "ax"), in("b1")).
		node("Unsqueeze", in("s", "ax"), in("s1")).
		node("Concat", in("b1", "s1", "rest"), in("newshape"), "axis", 0).
		node("Reshape", in("x", "newshape"), in("y")).
		node("Mul", in("b", "s"), in("bs")).
		node("Unsqueeze", in("bs", "ax"), in("bs1")).
		node("Concat", in("bs1", "rest"), in("flat"), "axis", 0).
		node("Reshape", in("x", "flat"), in("z")).
		node("Slice", in("shape", "ax", "one"), in("first")).
		node("ConstantOfShape", in("first"), in("zeros")))
	checkShape(t, g, "y", F32, dims("batch", "seq", 4, 16))
	checkShape(t, g, "z", F32, dims("?", 4, 16))
	checkShape(t, g, "zeros", F32, dims("batch"))
}

func TestInferOutputsDeclared(t *testing.T) {
	b := newTestGraph(13).
		input("x", F32, nil).
		node("Relu", in("x"), in("y"))
	b.g.Outputs = []ValueInfo{{Name: "y", DType: F32, Shape: dims("batch", 10)}}
	g := inferOK(t, b)
	checkShape(t, g, "y", F32, dims("batch", 10))

	b = newTestGraph(13).input("x", F32, dims(2, 3)).node("Relu", in("x"), in("y"))
	b.g.Outputs = []ValueInfo{{Name: "y", DType: F32, Shape: dims(2, 4)}}
	inferFails(t, b, `output "y": inferred shape [2,3], the model declares [2,4]`)
}

func TestInferUnsupportedOp(t *testing.T) {
	g := inferOK(t, newTestGraph(13).
		input("x", F32, dims(2)).
		node("FancyOp", in("x"), in("y")).
		node("Relu", in("y"), in("z")))
	checkShape(t, g, "y", DTypeInvalid, nil)
	checkShape(t, g, "z", DTypeInvalid, nil)
}
