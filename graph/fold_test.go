package graph

import (
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"
)

// foldGraph folds b's graph, in which node "Use" consumes the values to check, and
// returns the number of nodes removed.
func foldGraph(t *testing.T, b *testGraph, uses ...string) int {
	t.Helper()
	b.node("Use", uses, in("out")).output("out")
	removed, err := b.g.Fold()
	if err != nil {
		t.Fatalf("Fold: %v", err)
	}
	return removed
}

// constValues returns the elements of constant name as float64s, and its shape.
func constValues(t *testing.T, g *Graph, name string) ([]float64, []int64, DType) {
	t.Helper()
	c, ok := g.Constants[name]
	if !ok {
		t.Fatalf("%s was not folded into a constant", name)
	}
	if c.Name != name {
		t.Errorf("constant %s is named %s", name, c.Name)
	}
	v, err := decodeTensor(c)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	vals := make([]float64, v.len())
	for i := range vals {
		vals[i] = v.float(i)
	}
	return vals, c.Shape, c.DType
}

func checkConst(t *testing.T, g *Graph, name string, dtype DType, shape []int64, want ...float64) {
	t.Helper()
	got, gotShape, gotType := constValues(t, g, name)
	if gotType != dtype || !reflect.DeepEqual(gotShape, shape) {
		t.Errorf("%s: %s %v, want %s %v", name, gotType, gotShape, dtype, shape)
	}
	if len(want) == 0 {
		want = []float64{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func TestFoldValues(t *testing.T) {
	b := newTestGraph(13).
		input("x", F32, dims("batch", 3, 3)).
		input("s", F32, dims(2, 5)).
		ints("zero", nil, 0).ints("one", nil, 1).ints("two", nil, 2).ints("ax", []int64{1}, 0).
		ints("m", []int64{2, 3}, 1, 2, 3, 4, 5, 6).
		floats("f", []int64{3}, 1.5, -2.5, 4).
		ints("idx", []int64{2}, -1, 0).
		ints("starts", []int64{1}, -1).ints("ends", []int64{1}, math.MinInt64).ints("steps", []int64{1}, -2).
		ints("axis1", []int64{1}, 1).
		node("Shape", in("s"), in("shape_s")).
		node("Size", in("s"), in("size_s")).
		node("Shape", in("x"), in("shape_x")).
		node("Gather", in("shape_x", "one"), in("dim1")).
		node("Gather", in("m", "idx"), in("rows")).
		node("Gather", in("m", "idx"), in("cols"), "axis", 1).
		node("Unsqueeze", in("dim1", "ax"), in("dim1v")).
		node("Concat", in("dim1v", "shape_s"), in("cat"), "axis", 0).
		node("Concat", in("m", "m"), in("cat2"), "axis", 1).
		node("Slice", in("m", "starts", "ends", "axis1", "steps"), in("sl")).
		node("Cast", in("f"), in("fi"), "to", 7).
		node("Cast", in("m"), in("mf"), "to", 1).
		node("Cast", in("f"), in("fb"), "to", 9).
		node("Range", in("zero", "dim1", "one"), in("rg")).
		node("ConstantOfShape", in("shape_s"), in("cos"), "value", i64Const("v", []int64{1}, 7)).
		node("Identity", in("f"), in("id")).
		node("Add", in("m", "dim1"), in("add")).
		node("Sub", in("f", "f"), in("sub")).
		node("Mul", in("rows", "m"), in("mul")).
		node("Div", in("m", "two"), in("div")).
		node("Div", in("f", "f"), in("fdiv")).
		node("Equal", in("m", "two"), in("eq")).
		node("Less", in("f", "id"), in("lt")).
		node("Greater", in("m", "two"), in("gt")).
		node("Not", in("gt"), in("not")).
		node("Where", in("gt", "m", "zero"), in("where")).
		node("Expand", in("dim1v", "shape_s"), in("ex")).
		node("Neg", in("f"), in("neg")).
		node("Abs", in("f"), in("abs")).
		node("ReduceSum", in("m", "axis1"), in("rsum")).
		node("ReduceSum", in("m"), in("rall"), "keepdims", 0).
		node("ReduceProd", in("m"), in("rprod"), "axes", []int64{0}, "keepdims", 0).
		node("Mul", in("x", "f"), in("notconst"))
	uses := []string{"shape_s", "size_s", "dim1", "rows", "cols", "cat", "cat2", "sl", "fi", "mf", "fb", "rg", "cos", "id", "add", "sub", "mul", "div", "fdiv", "eq", "lt", "gt", "not", "where", "ex", "neg", "abs",
		"rsum", "rall", "rprod", "notconst"}
	removed := foldGraph(t, b, uses...)
	g := b.g
	if removed != 32 || len(g.Nodes) != 2 {
		t.Errorf("Fold removed %d nodes, left %d; want 32 removed, Mul and Use left", removed, len(g.Nodes))
	}
	checkConst(t, g, "shape_s", I64, []int64{2}, 2, 5)
	checkConst(t, g, "size_s", I64, []int64{}, 10)
	checkConst(t, g, "dim1", I64, []int64{}, 3)
	checkConst(t, g, "rows", I64, []int64{2, 3}, 4, 5, 6, 1, 2, 3)
	checkConst(t, g, "cols", I64, []int64{2, 2}, 3, 1, 6, 4)
	checkConst(t, g, "cat", I64, []int64{3}, 3, 2, 5)
	checkConst(t, g, "cat2", I64, []int64{2, 6}, 1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6)
	checkConst(t, g, "sl", I64, []int64{2, 2}, 3, 1, 6, 4)
	checkConst(t, g, "fi", I64, []int64{3}, 1, -2, 4)
	checkConst(t, g, "mf", F32, []int64{2, 3}, 1, 2, 3, 4, 5, 6)
	checkConst(t, g, "fb", Bool, []int64{3}, 1, 1, 1)
	checkConst(t, g, "rg", I64, []int64{3}, 0, 1, 2)
	checkConst(t, g, "cos", I64, []int64{2, 5}, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7)
	checkConst(t, g, "id", F32, []int64{3}, 1.5, -2.5, 4)
	checkConst(t, g, "add", I64, []int64{2, 3}, 4, 5, 6, 7, 8, 9)
	checkConst(t, g, "sub", F32, []int64{3}, 0, 0, 0)
	checkConst(t, g, "div", I64, []int64{2, 3}, 0, 1, 1, 2, 2, 3)
	checkConst(t, g, "fdiv", F32, []int64{3}, 1, 1, 1)
	checkConst(t, g, "eq", Bool, []int64{2, 3}, 0, 1, 0, 0, 0, 0)
	checkConst(t, g, "lt", Bool, []int64{3}, 0, 0, 0)
	checkConst(t, g, "gt", Bool, []int64{2, 3}, 0, 0, 1, 1, 1, 1)
	checkConst(t, g, "not", Bool, []int64{2, 3}, 1, 1, 0, 0, 0, 0)
	checkConst(t, g, "where", I64, []int64{2, 3}, 0, 0, 3, 4, 5, 6)
	checkConst(t, g, "mul", I64, []int64{2, 3}, 4, 10, 18, 4, 10, 18)
	checkConst(t, g, "ex", I64, []int64{2, 5}, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3)
	checkConst(t, g, "neg", F32, []int64{3}, -1.5, 2.5, -4)
	checkConst(t, g, "abs", F32, []int64{3}, 1.5, 2.5, 4)
	checkConst(t, g, "rsum", I64, []int64{2, 1}, 6, 15)
	checkConst(t, g, "rall", I64, []int64{}, 21)
	checkConst(t, g, "rprod", I64, []int64{3}, 4, 10, 18)
	if _, ok := g.Constants["notconst"]; ok {
		t.Errorf("Mul of a graph input was folded")
	}
	// Constants that only folded nodes used are gone.
	for _, name := range []string{"zero", "one", "ax", "starts", "idx"} {
		if _, ok := g.Constants[name]; ok {
			t.Errorf("unused constant %s was kept", name)
		}
	}
	if g.Values != nil {
		t.Errorf("Fold left Values set")
	}
	if err := g.Infer(); err != nil {
		t.Fatal(err)
	}
}

func TestFoldReshapeMul(t *testing.T) {
	// Mul of an int64 with -1 broadcast, Reshape of a constant, Squeeze.
	b := newTestGraph(13).
		ints("m", []int64{2, 3}, 1, 2, 3, 4, 5, 6).
		ints("shape", []int64{3}, 3, 1, -1).
		ints("ax", []int64{1}, 1).
		node("Reshape", in("m", "shape"), in("rs")).
		node("Squeeze", in("rs", "ax"), in("sq"))
	foldGraph(t, b, "rs", "sq")
	checkConst(t, b.g, "rs", I64, []int64{3, 1, 2}, 1, 2, 3, 4, 5, 6)
	checkConst(t, b.g, "sq", I64, []int64{3, 2}, 1, 2, 3, 4, 5, 6)
}

func TestFoldTypes(t *testing.T) {
	i32 := &Const{Name: "i32", DType: I32, Shape: []int64{3}}
	for _, v := range []int32{math.MaxInt32, -7, 2} {
		i32.Data = binary.LittleEndian.AppendUint32(i32.Data, uint32(v))
	}
	f64 := &Const{Name: "f64", DType: F64, Shape: []int64{2}}
	for _, v := range []float64{0.1, -3} {
		f64.Data = binary.LittleEndian.AppendUint64(f64.Data, math.Float64bits(v))
	}
	h := &Const{Name: "h", DType: F16, Shape: []int64{1}, Data: []byte{0, 0x3c}}
	b := newTestGraph(13)
	b.g.Constants["i32"] = i32
	b.g.Constants["f64"] = f64
	b.g.Constants["h"] = h
	b.node("Add", in("i32", "i32"), in("wrap")).
		node("Cast", in("f64"), in("f32"), "to", 1).
		node("Cast", in("i32"), in("c64"), "to", 11).
		node("Mul", in("f64", "f64"), in("sq")).
		node("Neg", in("h"), in("hneg")).
		ints("z", nil, 0).
		node("Cast", in("z"), in("zero"), "to", 6).
		node("Div", in("i32", "zero"), in("divzero"))
	foldGraph(t, b, "wrap", "f32", "c64", "sq", "hneg", "divzero")
	g := b.g
	checkConst(t, g, "wrap", I32, []int64{3}, -2, -14, 4)
	checkConst(t, g, "f32", F32, []int64{2}, float64(float32(0.1)), -3)
	checkConst(t, g, "c64", F64, []int64{3}, math.MaxInt32, -7, 2)
	tenth := 0.1
	checkConst(t, g, "sq", F64, []int64{2}, tenth*tenth, 9)
	for _, name := range []string{"hneg", "divzero"} {
		if _, ok := g.Constants[name]; ok {
			t.Errorf("%s was folded", name)
		}
	}
}

func TestFoldKeepsOutputsAndRemovesDead(t *testing.T) {
	b := newTestGraph(13).
		input("x", F32, dims(2, 3)).
		stub("w", F32, 3, 3).
		ints("a", []int64{1}, 5).
		node("Identity", in("a"), in("y")).         // a graph output: kept
		node("Relu", in("x"), in("dead")).          // unused: removed
		node("MatMul", in("x", "w"), in("unused")). // unused: removed
		node("Relu", in("x"), in("z")).
		output("y", "z")
	removed, err := b.g.Fold()
	if err != nil {
		t.Fatal(err)
	}
	if removed != 2 || len(b.g.Nodes) != 2 {
		t.Errorf("removed %d, left %d nodes; want 2 and 2", removed, len(b.g.Nodes))
	}
	if _, ok := b.g.Constants["a"]; !ok {
		t.Errorf("constant a, used by a kept node, was removed")
	}
	if len(b.g.Initializers) != 1 {
		t.Errorf("initializers changed")
	}
}

func TestFoldErrors(t *testing.T) {
	b := newTestGraph(13).
		ints("m", []int64{3}, 1, 2, 3).
		ints("i", nil, 3).
		node("Gather", in("m", "i"), in("g")).
		node("Use", in("g"), in("out")).output("out")
	_, err := b.g.Fold()
	if err == nil || !strings.Contains(err.Error(), "index 3 is out of range") || !strings.HasPrefix(err.Error(), "graph: ") {
		t.Fatalf("Fold: %v, want index out of range", err)
	}
	if len(b.g.Nodes) != 2 || len(b.g.Constants) != 2 {
		t.Errorf("a failed Fold changed the graph")
	}
}

func TestFoldLargeOutputNotFolded(t *testing.T) {
	b := newTestGraph(13).
		ints("shape", []int64{2}, 1024, 1024).
		node("ConstantOfShape", in("shape"), in("big")).
		node("Range", in("zero", "lim", "one"), in("rg")).
		ints("zero", nil, 0).ints("lim", nil, 1<<20).ints("one", nil, 1)
	removed := foldGraph(t, b, "big", "rg")
	if removed != 0 {
		t.Errorf("Fold removed %d nodes, want 0", removed)
	}
}

// TestFoldDynamicReshape folds a torch export with a dynamic batch and view(B, T,
// ...) reshapes: the Gathers of the fixed dims and what follows them fold, the
// batch dim stays symbolic. testdata/dynamic-reshape.onnx comes from:
//
//	class M(nn.Module):
//	    def __init__(self):
//	        super().__init__()
//	        self.lin = nn.Linear(8, 8)
//	    def forward(self, x):  # x [B, T, 8]
//	        B, T, C = x.shape
//	        y = self.lin(x).view(B, T, 2, C // 2).transpose(1, 2)
//	        return y.reshape(B, -1).softmax(-1).view(B, 2, T, C // 2)
//	torch.onnx.export(M().eval(), torch.randn(3, 6, 8), "dynamic-reshape.onnx",
//	    input_names=["x"], output_names=["y"],
//	    dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=13)
func TestFoldDynamicReshape(t *testing.T) {
	g, err := OpenModel("testdata/dynamic-reshape.onnx")
	if err != nil {
		t.Fatal(err)
	}
	before := len(g.Nodes)
	removed, err := g.Fold()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dynamic-reshape: Fold removed %d of %d nodes, %d left", removed, before, len(g.Nodes))
	if removed < 8 {
		t.Errorf("Fold removed %d nodes, want at least 8", removed)
	}
	if err := g.Infer(); err != nil {
		t.Fatal(err)
	}
	checkShape(t, g, "y", F32, dims("batch", 2, 6, 4))
	checkShape(t, g, "/Reshape_1_output_0", F32, dims("batch", 48))
	if err := g.Check(); err != nil {
		t.Error(err)
	}
}
