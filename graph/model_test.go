package graph

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Builders of ONNX messages for the IR tests (the field builders onnxVarint,
// onnxBytes, ... are in onnx_test.go).

// pbModel is a ModelProto with the given opset for the default domain (none when
// opset is 0) and a graph made of parts.
func pbModel(opset uint64, parts ...[]byte) []byte {
	m := onnxVarint(1, 8) // ir_version
	if opset != 0 {
		m = append(m, onnxBytes(modelOpsetImport, onnxVarint(opsetVersion, opset))...)
	}
	return append(m, onnxBytes(modelGraph, parts...)...)
}

// pbNode is a GraphProto.node field.
func pbNode(op string, inputs, outputs []string, attrs ...[]byte) []byte {
	var b []byte
	for _, s := range inputs {
		b = append(b, onnxString(nodeInput, s)...)
	}
	for _, s := range outputs {
		b = append(b, onnxString(nodeOutput, s)...)
	}
	b = append(b, onnxString(nodeOpType, op)...)
	for _, a := range attrs {
		b = append(b, onnxBytes(nodeAttribute, a)...)
	}
	return onnxBytes(graphNode, b)
}

// pbValue is a ValueInfoProto field (graphInput or graphOutput) of a tensor; dims
// are ints (dim_value) and strings (dim_param); noShape leaves the shape out.
func pbValue(field protowire.Number, name string, elem uint64, noShape bool, ds ...any) []byte {
	var shape []byte
	for _, d := range ds {
		switch d := d.(type) {
		case int:
			shape = append(shape, onnxBytes(shapeDim, onnxVarint(dimValue, uint64(d)))...)
		case string:
			shape = append(shape, onnxBytes(shapeDim, onnxString(dimParam, d))...)
		}
	}
	tensor := onnxVarint(tensorElemType, elem)
	if !noShape {
		tensor = append(tensor, onnxBytes(tensorShape, shape)...)
	}
	return onnxBytes(field, onnxString(valueName, name), onnxBytes(valueType, onnxBytes(typeTensor, tensor)))
}

func pbAttr(name string, typ AttrType, fields ...[]byte) []byte {
	b := onnxString(attrName, name)
	for _, f := range fields {
		b = append(b, f...)
	}
	if typ != 0 {
		b = append(b, onnxVarint(attrType, uint64(typ))...)
	}
	return b
}

func i64Bytes(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

func TestParseModel(t *testing.T) {
	model := onnxCat(
		onnxVarint(1, 8),
		onnxBytes(modelOpsetImport, onnxString(opsetDomain, "com.microsoft"), onnxVarint(opsetVersion, 1)),
		onnxBytes(modelOpsetImport, onnxString(opsetDomain, "ai.onnx"), onnxVarint(opsetVersion, 13)),
		onnxBytes(modelGraph,
			// Relu comes before the MatMul that computes its input.
			pbNode("Relu", in("y"), in("z")),
			pbNode("MatMul", in("x", "w"), in("y"),
				pbAttr("packed", AttrInts, onnxPackedVarints(attrInts, 1, -2, 3)),
				pbAttr("unpacked", AttrInts, onnxVarint(attrInts, 4), onnxVarint(attrInts, 5)),
				pbAttr("floats", AttrFloats, onnxPackedFloats(attrFloats, 0.5), onnxFixed32(attrFloats, math.Float32bits(2))),
				pbAttr("f", AttrFloat, onnxFixed32(attrF, math.Float32bits(1.25))),
				pbAttr("s", AttrString, onnxString(attrS, "SAME_UPPER")),
				pbAttr("untyped", 0, onnxVarint(attrI, 7)),
				pbAttr("strings", AttrStrings, onnxString(attrStrings, "a"), onnxString(attrStrings, "b")),
				pbAttr("t", AttrTensor, onnxBytes(attrT, onnxHead("", 7, 2), onnxPackedVarints(tensorInt64Data, 3, 4))),
			),
			pbNode("Constant", nil, in("c_t"), pbAttr("value", AttrTensor,
				onnxBytes(attrT, onnxHead("c_value", 1, 2), onnxBytes(tensorRawData, f32Bytes(1, 2))))),
			pbNode("Constant", nil, in("c_f"), pbAttr("value_float", AttrFloat, onnxFixed32(attrF, math.Float32bits(0.5)))),
			pbNode("Constant", nil, in("c_fs"), pbAttr("value_floats", AttrFloats, onnxPackedFloats(attrFloats, 1, 2, 3))),
			pbNode("Constant", nil, in("c_i"), pbAttr("value_int", AttrInt, onnxVarint(attrI, math.MaxUint64))),
			pbNode("Constant", nil, in("c_is"), pbAttr("value_ints", AttrInts, onnxVarint(attrInts, 9), onnxVarint(attrInts, 8))),
			onnxBytes(graphNode, onnxString(nodeInput, "z"), onnxString(nodeInput, ""), onnxString(nodeOutput, "o"),
				onnxString(nodeName, "custom"), onnxString(nodeOpType, "Foo"), onnxString(nodeDomain, "ai.onnx")),
			onnxBytes(graphNode, onnxString(nodeInput, "c_t"), onnxString(nodeOutput, "o2"),
				onnxString(nodeOpType, "Bar"), onnxString(nodeDomain, "com.microsoft")),
			onnxInitializer(onnxHead("w", 1, 4, 3), onnxBytes(tensorRawData, make([]byte, 48))),
			onnxInitializer(onnxHead("b", 1, 3)), // a stub
			pbValue(graphInput, "x", 1, false, "batch", 4),
			pbValue(graphInput, "w", 1, false, 4, 3), // also an initializer
			pbValue(graphInput, "u", 7, true),
			pbValue(graphInput, "s", 9, false),
			pbValue(graphOutput, "o", 1, false, "batch", 3),
			pbValue(graphOutput, "o2", 0, true),
			pbValue(graphValueInfo, "y", 1, false, "batch", 3),
		))
	g, err := ParseModel(model)
	if err != nil {
		t.Fatal(err)
	}
	if g.Opset != 13 {
		t.Errorf("Opset %d, want 13", g.Opset)
	}
	wantInputs := []ValueInfo{
		{Name: "x", DType: F32, Shape: dims("batch", 4)},
		{Name: "u", DType: I64},
		{Name: "s", DType: Bool, Shape: []Dim{}},
	}
	if !reflect.DeepEqual(g.Inputs, wantInputs) {
		t.Errorf("Inputs %+v, want %+v", g.Inputs, wantInputs)
	}
	wantOutputs := []ValueInfo{{Name: "o", DType: F32, Shape: dims("batch", 3)}, {Name: "o2"}}
	if !reflect.DeepEqual(g.Outputs, wantOutputs) {
		t.Errorf("Outputs %+v, want %+v", g.Outputs, wantOutputs)
	}
	var ops []string
	for _, n := range g.Nodes {
		ops = append(ops, n.Domain+":"+n.Op)
	}
	if want := []string{":MatMul", ":Relu", ":Foo", "com.microsoft:Bar"}; !reflect.DeepEqual(ops, want) {
		t.Errorf("nodes %v, want %v (sorted, Constants left out)", ops, want)
	}
	mm := g.Nodes[0]
	wantAttrs := map[string]Attr{
		"packed":   {Type: AttrInts, Ints: []int64{1, -2, 3}},
		"unpacked": {Type: AttrInts, Ints: []int64{4, 5}},
		"floats":   {Type: AttrFloats, Floats: []float32{0.5, 2}},
		"f":        {Type: AttrFloat, F: 1.25},
		"s":        {Type: AttrString, S: "SAME_UPPER"},
		"untyped":  {Type: AttrInt, I: 7},
		"strings":  {Type: AttrStrings, Strings: []string{"a", "b"}},
		"t":        {Type: AttrTensor, T: &Const{DType: I64, Shape: []int64{2}, Data: i64Bytes(3, 4)}},
	}
	if !reflect.DeepEqual(mm.Attrs, wantAttrs) {
		t.Errorf("attributes %+v, want %+v", mm.Attrs, wantAttrs)
	}
	if g.Nodes[2].Name != "custom" || !reflect.DeepEqual(g.Nodes[2].Inputs, []string{"z", ""}) {
		t.Errorf("node 2: %+v", g.Nodes[2])
	}
	wantConsts := map[string]*Const{
		"c_t":  {Name: "c_t", DType: F32, Shape: []int64{2}, Data: f32Bytes(1, 2)},
		"c_f":  {Name: "c_f", DType: F32, Shape: []int64{}, Data: f32Bytes(0.5)},
		"c_fs": {Name: "c_fs", DType: F32, Shape: []int64{3}, Data: f32Bytes(1, 2, 3)},
		"c_i":  {Name: "c_i", DType: I64, Shape: []int64{}, Data: i64Bytes(-1)},
		"c_is": {Name: "c_is", DType: I64, Shape: []int64{2}, Data: i64Bytes(9, 8)},
	}
	if !reflect.DeepEqual(g.Constants, wantConsts) {
		t.Errorf("Constants %+v, want %+v", g.Constants, wantConsts)
	}
	wantInits := []*Const{
		{Name: "w", DType: F32, Shape: []int64{4, 3}, Data: make([]byte, 48)},
		{Name: "b", DType: F32, Shape: []int64{3}},
	}
	if !reflect.DeepEqual(g.Initializers, wantInits) {
		t.Errorf("Initializers %+v, want %+v", g.Initializers, wantInits)
	}
	err = g.Check()
	if err == nil || err.Error() != "graph: unsupported ops: Foo, com.microsoft.Bar" {
		t.Errorf("Check: %v", err)
	}
	if err := g.Infer(); err != nil {
		t.Fatal(err)
	}
	checkShape(t, g, "z", F32, dims("batch", 3))
	checkShape(t, g, "o", F32, dims("batch", 3)) // declared
}

func TestParseModelErrors(t *testing.T) {
	relu := pbNode("Relu", in("x"), in("y"))
	x := pbValue(graphInput, "x", 1, false, 2)
	y := pbValue(graphOutput, "y", 1, false, 2)
	full := pbModel(13, relu, x, y)
	cases := []struct {
		name  string
		model []byte
		want  string
	}{
		{"empty", nil, "no graph"},
		{"no opset", pbModel(0, relu, x, y), "no opset_import for the default domain"},
		{"truncated", full[:len(full)-3], "unexpected EOF"},
		{"bad tag", []byte{0x80}, "bad field tag"},
		{"group", []byte{0x0b}, "group"},
		{"two graphs", onnxCat(full, onnxBytes(modelGraph)), "second graph"},
		{"undefined input", pbModel(13, pbNode("Relu", in("nope"), in("y")), x, y),
			`node with output "y" uses value "nope", which is not a graph input, initializer, Constant output or node output`},
		{"cycle", pbModel(13, pbNode("Add", in("x", "b"), in("a")), pbNode("Relu", in("a"), in("b")), x,
			pbValue(graphOutput, "b", 1, false)), "nodes form a cycle"},
		{"self loop", pbModel(13, pbNode("Add", in("x", "a"), in("a")), x, pbValue(graphOutput, "a", 1, false)), "cycle"},
		{"duplicate output", pbModel(13, relu, pbNode("Relu", in("x"), in("y")), x, y), `output "y" is already defined`},
		{"output over input", pbModel(13, pbNode("Relu", in("x"), in("x")), x), `output "x" is already defined (graph input)`},
		{"undefined graph output", pbModel(13, relu, x, pbValue(graphOutput, "q", 1, false)), `graph output "q" is not defined`},
		{"no op_type", pbModel(13, onnxBytes(graphNode, onnxString(nodeOutput, "y")), x), "has no op_type"},
		{"node field type", pbModel(13, onnxBytes(graphNode, onnxVarint(nodeInput, 1)), x), "field input has wire type 0"},
		{"constant string", pbModel(13, pbNode("Constant", nil, in("c"), pbAttr("value_string", AttrString, onnxString(attrS, "a")))),
			`Constant attribute "value_string" of type 3 is not supported`},
		{"constant sparse", pbModel(13, pbNode("Constant", nil, in("c"), pbAttr("sparse_value", AttrSparseTensor))), "not supported"},
		{"attribute twice", pbModel(13, pbNode("Relu", in("x"), in("y"), pbAttr("a", AttrInt, onnxVarint(attrI, 1)), pbAttr("a", AttrInt)), x, y),
			`attribute "a" appears twice`},
		{"attribute no name", pbModel(13, pbNode("Relu", in("x"), in("y"), onnxVarint(attrI, 1)), x, y), "attribute has no name"},
		{"attribute no type", pbModel(13, pbNode("Relu", in("x"), in("y"), onnxString(attrName, "a")), x, y), "no type and no value"},
		{"tensor attribute without data", pbModel(13, pbNode("Constant", nil, in("c"), pbAttr("value", AttrTensor, onnxBytes(attrT, onnxHead("v", 1, 2))))),
			`tensor "v": has no data`},
		{"string initializer", pbModel(13, onnxInitializer(onnxHead("s", 8, 1), onnxString(tensorStringData, "a"))), "data_type STRING is not supported"},
		{"initializer size", pbModel(13, onnxInitializer(onnxHead("w", 1, 3), onnxBytes(tensorRawData, f32Bytes(1)))), "raw_data has 4 bytes, dims [3] of F32 need 12"},
		{"initializer no name", pbModel(13, onnxInitializer(onnxVarint(tensorDataType, 1))), "initializer 0 has no name"},
		{"same initializers", pbModel(13, onnxInitializer(onnxHead("w", 1)), onnxInitializer(onnxHead("w", 1))), `two initializers are named "w"`},
		{"string input", pbModel(13, pbValue(graphInput, "s", 8, true)), "element type STRING is not supported"},
		{"sequence input", pbModel(13, onnxBytes(graphInput, onnxString(valueName, "q"), onnxBytes(valueType, onnxBytes(4)))), "not a tensor"},
		{"zero opset", onnxCat(onnxBytes(modelOpsetImport, onnxVarint(opsetVersion, 0)), onnxBytes(modelGraph)), "opset_import version 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseModel(tc.model)
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "graph: model: ") || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q, want one line starting with \"graph: model: \" holding %q", msg, tc.want)
			}
		})
	}
}

// TestParseModelArchitecture parses the architecture blob the store keeps: the same
// graph, with stub initializers.
func TestParseModelArchitecture(t *testing.T) {
	path := filepath.Join("..", "testdata", "family", "text-tiny-base.onnx")
	src, err := OpenONNX(path)
	if err != nil {
		t.Skip(err)
	}
	defer src.Close()
	arch, err := ParseModel(src.Graph)
	if err != nil {
		t.Fatal(err)
	}
	full, err := OpenModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(arch.Nodes) != len(full.Nodes) || len(arch.Initializers) != len(src.Tensors) || len(arch.Constants) != len(full.Constants) {
		t.Fatalf("architecture: %d nodes, %d initializers, %d constants; file: %d, %d, %d",
			len(arch.Nodes), len(arch.Initializers), len(arch.Constants), len(full.Nodes), len(full.Initializers), len(full.Constants))
	}
	for i, c := range arch.Initializers {
		f := full.Initializers[i]
		if c.Data != nil || f.Data == nil || c.Name != src.Tensors[i].Name || c.DType != f.DType || !reflect.DeepEqual(c.Shape, f.Shape) {
			t.Errorf("initializer %d: stub %s %s %v (data %v), file %s %s %v", i, c.Name, c.DType, c.Shape, c.Data != nil, f.Name, f.DType, f.Shape)
		}
	}
	if _, err := arch.Fold(); err != nil {
		t.Fatal(err)
	}
	if err := arch.Infer(); err != nil {
		t.Fatal(err)
	}
	checkShape(t, arch, "logits", F32, dims("batch", 32, 256))
}

// TestFamilyModels parses the torch exports of testdata/family: every op is
// supported, and after Fold and Infer the logits have their shape with a symbolic
// batch.
func TestFamilyModels(t *testing.T) {
	models := []struct {
		file   string
		logits []Dim
	}{
		{"digits-mlp-base.onnx", dims("batch", 10)},
		{"digits-cnn-base.onnx", dims("batch", 10)},
		{"digits-cnn-base-ext.onnx", dims("batch", 10)},
		{"text-tiny-base.onnx", dims("batch", 32, 256)},
	}
	for _, m := range models {
		t.Run(m.file, func(t *testing.T) {
			path := filepath.Join("..", "testdata", "family", m.file)
			if _, err := os.Stat(path); err != nil {
				t.Skip(err)
			}
			g, err := OpenModel(path)
			if err != nil {
				t.Fatal(err)
			}
			hist := make(map[string]int)
			for _, n := range g.Nodes {
				hist[n.Op]++
			}
			if len(hist) == 0 {
				t.Fatal("no nodes")
			}
			var ops []string
			for op, c := range hist {
				ops = append(ops, op+":"+strconv.Itoa(c))
			}
			sort.Strings(ops)
			t.Logf("opset %d, %d nodes, %d constants, %d initializers: %s", g.Opset, len(g.Nodes), len(g.Constants), len(g.Initializers), strings.Join(ops, " "))
			if err := g.Check(); err != nil {
				t.Fatal(err)
			}
			for _, c := range g.Initializers {
				if size, _ := ByteSize(c.DType, c.Shape); int64(len(c.Data)) != size || c.Data == nil {
					t.Fatalf("initializer %s: %d bytes of data, want %d", c.Name, len(c.Data), size)
				}
			}
			before := len(g.Nodes)
			removed, err := g.Fold()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("Fold removed %d of %d nodes (%d left, %d constants)", removed, before, len(g.Nodes), len(g.Constants))
			if err := g.Infer(); err != nil {
				t.Fatal(err)
			}
			checkShape(t, g, "logits", F32, m.logits)
			for _, n := range g.Nodes {
				for _, out := range n.Outputs {
					if v := g.Values[out]; v == nil || v.Shape == nil || v.DType == DTypeInvalid {
						t.Errorf("%s: output %s has no inferred type", n.describe(), out)
					}
				}
			}
		})
	}

	// The external-data export holds the same weights as the inline one.
	ext, err1 := OpenModel(filepath.Join("..", "testdata", "family", "digits-cnn-base-ext.onnx"))
	inline, err2 := OpenModel(filepath.Join("..", "testdata", "family", "digits-cnn-base.onnx"))
	if err1 == nil && err2 == nil && !reflect.DeepEqual(ext.Initializers, inline.Initializers) {
		t.Errorf("digits-cnn-base-ext.onnx and digits-cnn-base.onnx have different initializers")
	}
}

func TestOpenModelExternalData(t *testing.T) {
	dir := t.TempDir()
	weights := append([]byte("pad!"), f32Bytes(1, 2, 3)...)
	if err := os.WriteFile(filepath.Join(dir, "w.bin"), weights, 0o644); err != nil {
		t.Fatal(err)
	}
	write := func(name string, model []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, model, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := write("ok.onnx", pbModel(13, onnxInitializer(onnxHead("w", 1, 3), onnxExternal("w.bin", "4", "12"))))
	g, err := OpenModel(ok)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.Initializers[0].Data, f32Bytes(1, 2, 3)) {
		t.Errorf("external data %v", g.Initializers[0].Data)
	}
	// ParseModel cannot read it: the initializer stays a stub.
	b, _ := os.ReadFile(ok)
	if g, err := ParseModel(b); err != nil || g.Initializers[0].Data != nil {
		t.Errorf("ParseModel: %v, data %v; want a stub", err, g)
	}

	for _, tc := range []struct{ name, model, want string }{
		{"missing.onnx", "", "no such file"},
		{"nofile.onnx", string(pbModel(13, onnxInitializer(onnxHead("w", 1, 3), onnxExternal("gone.bin", "", "")))), `external data "gone.bin": no such file`},
		{"escape.onnx", string(pbModel(13, onnxInitializer(onnxHead("w", 1, 3), onnxExternal("../w.bin", "", "")))), "leaves the model's folder"},
		{"short.onnx", string(pbModel(13, onnxInitializer(onnxHead("w", 1, 3), onnxExternal("w.bin", "8", "")))), "runs past the end"},
	} {
		p := filepath.Join(dir, tc.name)
		if tc.model != "" {
			p = write(tc.name, []byte(tc.model))
		}
		_, err := OpenModel(p)
		if err == nil || !strings.HasPrefix(err.Error(), "graph: model "+p) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error holding %q", tc.name, err, tc.want)
		}
	}
}

func TestParseTensorProto(t *testing.T) {
	cases := []struct {
		name  string
		proto []byte
		want  *Const
	}{
		{"float raw_data", onnxCat(onnxHead("x", 1, 2, 2), onnxBytes(tensorRawData, f32Bytes(1, 2, 3, 4))),
			&Const{Name: "x", DType: F32, Shape: []int64{2, 2}, Data: f32Bytes(1, 2, 3, 4)}},
		{"float_data unpacked", onnxCat(onnxHead("x", 1, 2), onnxFixed32(tensorFloatData, math.Float32bits(-1)), onnxFixed32(tensorFloatData, math.Float32bits(0.5))),
			&Const{Name: "x", DType: F32, Shape: []int64{2}, Data: f32Bytes(-1, 0.5)}},
		{"int64_data packed", onnxCat(onnxHead("i", 7, 3), onnxPackedVarints(tensorInt64Data, -1, 1<<40, 7)),
			&Const{Name: "i", DType: I64, Shape: []int64{3}, Data: i64Bytes(-1, 1<<40, 7)}},
		{"int64_data unpacked", onnxCat(onnxHead("i", 7, 2), onnxVarint(tensorInt64Data, 5), onnxVarint(tensorInt64Data, math.MaxUint64)),
			&Const{Name: "i", DType: I64, Shape: []int64{2}, Data: i64Bytes(5, -1)}},
		{"float16 in int32_data", onnxCat(onnxHead("h", 10, 3), onnxPackedVarints(tensorInt32Data, 0x3c00, 0xc000, 0x7bff)),
			&Const{Name: "h", DType: F16, Shape: []int64{3}, Data: []byte{0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b}}},
		{"bfloat16 in int32_data", onnxCat(onnxHead("b", 16, 1), onnxVarint(tensorInt32Data, 0x3f80)),
			&Const{Name: "b", DType: BF16, Shape: []int64{1}, Data: []byte{0x80, 0x3f}}},
		{"bool int32_data", onnxCat(onnxHead("m", 9, 4), onnxPackedVarints(tensorInt32Data, 1, 0, 0, 1)),
			&Const{Name: "m", DType: Bool, Shape: []int64{4}, Data: []byte{1, 0, 0, 1}}},
		{"bool raw_data", onnxCat(onnxHead("m", 9, 2), onnxBytes(tensorRawData, []byte{0, 1})),
			&Const{Name: "m", DType: Bool, Shape: []int64{2}, Data: []byte{0, 1}}},
		{"int8 negative", onnxCat(onnxHead("q", 3, 2), onnxPackedVarints(tensorInt32Data, -128, 127)),
			&Const{Name: "q", DType: I8, Shape: []int64{2}, Data: []byte{0x80, 0x7f}}},
		{"double_data", onnxCat(onnxHead("d", 11), onnxBytes(tensorDoubleData, binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5)))),
			&Const{Name: "d", DType: F64, Shape: []int64{}, Data: binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5))}},
		{"uint64_data", onnxCat(onnxHead("u", 12, 1), onnxVarint(tensorUint64Data, math.MaxUint32)),
			&Const{Name: "u", DType: U32, Shape: []int64{1}, Data: []byte{0xff, 0xff, 0xff, 0xff}}},
		{"empty", onnxHead("e", 1, 0, 3),
			&Const{Name: "e", DType: F32, Shape: []int64{0, 3}, Data: []byte{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseTensorProto(tc.proto)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Errorf("got %+v, want %+v", c, tc.want)
			}
		})
	}

	errs := []struct {
		name  string
		proto []byte
		want  string
	}{
		{"no data", onnxHead("x", 1, 2), `tensor "x": has no data, dims [2] of F32 need 8 bytes`},
		{"short", onnxCat(onnxHead("x", 1, 2), onnxPackedFloats(tensorFloatData, 1)), "float_data holds 1 values, dims of F32 need 2"},
		{"long", onnxCat(onnxHead("x", 6, 1), onnxPackedVarints(tensorInt32Data, 1, 2)), "int32_data holds 2 values"},
		{"wrong field", onnxCat(onnxHead("x", 1, 1), onnxPackedVarints(tensorInt64Data, 1)), "has int64_data, but F32 values belong in float_data"},
		{"raw and typed", onnxCat(onnxHead("x", 1, 1), onnxBytes(tensorRawData, f32Bytes(1)), onnxPackedFloats(tensorFloatData, 1)), "both raw_data and float_data"},
		{"external", onnxCat(onnxHead("x", 1, 1), onnxExternal("w.bin", "", "")), "has external data, which cannot be read here"},
		{"string", onnxCat(onnxHead("x", 8, 1), onnxString(tensorStringData, "a")), "data_type STRING is not supported"},
		{"negative dim", onnxHead("x", 1, -1), "negative dimension"},
		{"huge", onnxHead("x", 1, 1<<40, 1<<40), "too large"},
		{"truncated", onnxCat(onnxHead("x", 1, 2), onnxBytes(tensorRawData, f32Bytes(1, 2)))[:10], "unexpected EOF"},
		{"packed floats cut", onnxCat(onnxHead("x", 1, 1), onnxBytes(tensorFloatData, []byte{1, 2, 3})), "not a multiple of 4"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTensorProto(tc.proto)
			if err == nil || !strings.HasPrefix(err.Error(), "graph: tensor: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one starting with \"graph: tensor: \" holding %q", err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	b := newTestGraph(13).
		node("Relu", in("x"), in("a")).
		node("Foo", in("a"), in("b")).
		node("Foo", in("b"), in("c")).
		node("If", in("c"), in("d"), "then_branch", Attr{Type: AttrGraph}).
		node("Relu", in("d"), in("e"), "weird", Attr{Type: AttrGraph})
	b.g.Nodes = append(b.g.Nodes, &Node{Op: "Bar", Domain: "com.microsoft", Inputs: in("e"), Outputs: in("f")})
	err := b.g.Check()
	want := "graph: unsupported ops: Foo (2 nodes), If, Relu with a subgraph attribute, com.microsoft.Bar"
	if err == nil || err.Error() != want {
		t.Errorf("Check: %v, want %q", err, want)
	}
	if err := newTestGraph(13).node("Relu", in("x"), in("y")).g.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	if !sort.StringsAreSorted(Ops) {
		t.Errorf("Ops is not sorted")
	}
	// Every op has a shape rule: Infer gives each a type on a plain input.
	for _, op := range Ops {
		if !unaryOps[op] && !arithOps[op] && !compareOps[op] && !variadicOps[op] && !reduceOps[op] && !strings.Contains(ruleOps, " "+op+" ") {
			t.Errorf("op %s has no shape rule", op)
		}
	}
}

// ruleOps are the ops that rule handles one by one.
const ruleOps = " Not Dropout Softmax LogSoftmax Cast CastLike Constant Shape Size ConstantOfShape Range Reshape Flatten Expand Tile Transpose Gather Unsqueeze Squeeze Concat Split Slice MatMul Gemm Conv MaxPool AveragePool GlobalAveragePool GlobalMaxPool BatchNormalization LayerNormalization ArgMax ArgMin Where "
