package graph

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// Builders of protobuf fields. Test models are built by hand: onnx_test.go must not
// depend on generated ONNX code.

func onnxVarint(num protowire.Number, v uint64) []byte {
	b := protowire.AppendTag(nil, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func onnxBytes(num protowire.Number, parts ...[]byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, bytes.Join(parts, nil))
}

func onnxString(num protowire.Number, s string) []byte {
	return onnxBytes(num, []byte(s))
}

func onnxFixed32(num protowire.Number, v uint32) []byte {
	b := protowire.AppendTag(nil, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(b, v)
}

func onnxCat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// onnxPackedVarints is a packed repeated varint field.
func onnxPackedVarints(num protowire.Number, vs ...int64) []byte {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendVarint(p, uint64(v))
	}
	return onnxBytes(num, p)
}

// onnxPackedFloats is a packed repeated float field.
func onnxPackedFloats(num protowire.Number, vs ...float32) []byte {
	var p []byte
	for _, v := range vs {
		p = protowire.AppendFixed32(p, math.Float32bits(v))
	}
	return onnxBytes(num, p)
}

// onnxHead is the usual start of a TensorProto: dims, data_type and name.
func onnxHead(name string, dataType uint64, dims ...int64) []byte {
	var b []byte
	for _, d := range dims {
		b = append(b, onnxVarint(tensorDims, uint64(d))...)
	}
	b = append(b, onnxVarint(tensorDataType, dataType)...)
	return append(b, onnxString(tensorName, name)...)
}

func onnxEntry(key, value string) []byte {
	return onnxBytes(tensorExternalData, onnxString(entryKey, key), onnxString(entryValue, value))
}

func f32Bytes(vs ...float32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// onnxInit is a test initializer: head+data+tail in the file, head+tail in the stub.
type onnxInit struct {
	head, data, tail []byte
	tensor           *TensorInfo // nil when it stays whole in the architecture
	bytes            []byte      // the tensor's bytes
}

func (in *onnxInit) full() []byte { return onnxBytes(graphInitializer, in.head, in.data, in.tail) }
func (in *onnxInit) stub() []byte { return onnxBytes(graphInitializer, in.head, in.tail) }

// onnxModel is a test model. Graph parts are []byte (copied as they are) or *onnxInit.
type onnxModel struct {
	before, after []byte
	graph         []any
}

func (m *onnxModel) build(stubs bool) []byte {
	var g []byte
	for _, p := range m.graph {
		switch p := p.(type) {
		case []byte:
			g = append(g, p...)
		case *onnxInit:
			if stubs && p.tensor != nil {
				g = append(g, p.stub()...)
			} else {
				g = append(g, p.full()...)
			}
		}
	}
	return onnxCat(m.before, onnxBytes(modelGraph, g), m.after)
}

// bytes returns the model file; arch returns the architecture ParseONNX should give.
func (m *onnxModel) bytes() []byte { return m.build(false) }
func (m *onnxModel) arch() []byte  { return m.build(true) }

func (m *onnxModel) tensors() (tensors []TensorInfo, data [][]byte) {
	for _, p := range m.graph {
		if in, ok := p.(*onnxInit); ok && in.tensor != nil {
			tensors = append(tensors, *in.tensor)
			data = append(data, in.bytes)
		}
	}
	return tensors, data
}

// Nodes and other graph parts of the test model, kept to look for them verbatim.
var (
	onnxGemmNode = onnxBytes(1, // GraphProto.node
		onnxString(1, "x"), onnxString(1, "w"), onnxString(1, "b"), // input
		onnxString(2, "y"),    // output
		onnxString(3, "gemm"), // name
		onnxString(4, "Gemm"), // op_type
		onnxBytes(5, onnxString(1, "transB"), onnxVarint(3, 1), onnxVarint(20, 2)), // attribute i=1, type INT
	)
	onnxConstantNode = onnxBytes(1,
		onnxString(2, "c"),
		onnxString(4, "Constant"),
		onnxBytes(5, onnxString(1, "value"), // attribute t: an embedded tensor
			onnxBytes(5, onnxHead("c_value", 1, 2), onnxPackedFloats(tensorFloatData, 1, 2)),
			onnxVarint(20, 4)),
	)
	onnxIfNode = onnxBytes(1,
		onnxString(1, "cond"),
		onnxString(2, "z"),
		onnxString(4, "If"),
		onnxBytes(5, onnxString(1, "then_branch"), // attribute g: a subgraph with an initializer
			onnxBytes(6,
				onnxBytes(graphInitializer, onnxHead("inner", 1, 1), onnxBytes(tensorRawData, f32Bytes(9))),
				onnxBytes(12, onnxString(1, "inner"))),
			onnxVarint(20, 5)),
	)
	onnxSparse = onnxBytes(15, // GraphProto.sparse_initializer
		onnxBytes(1, onnxHead("sp_values", 1, 1), onnxBytes(tensorRawData, f32Bytes(4))),
		onnxBytes(2, onnxHead("sp_indices", 7, 1), onnxBytes(tensorRawData, make([]byte, 8))),
		onnxVarint(3, 10))
	onnxStrings = &onnxInit{
		head: onnxHead("names", 8, 2),
		data: onnxCat(onnxString(tensorStringData, "a"), onnxString(tensorStringData, "bc")),
	}
)

// onnxExternalFile is the external-data file of onnxTestModel: 8 bytes of padding,
// the 16 bytes of tensor "ext", 4 more bytes.
var onnxExternalFile = onnxCat([]byte("padding!"), f32Bytes(10, 20, 30, 40), []byte("tail"))

func onnxTensor(name string, dtype DType, shape ...int64) *TensorInfo {
	if shape == nil {
		shape = []int64{}
	}
	size, err := ByteSize(dtype, shape)
	if err != nil {
		panic(err)
	}
	return &TensorInfo{Name: name, DType: dtype, Shape: shape, Size: size}
}

// onnxTestModel returns a model with every kind of initializer and unknown fields in
// ModelProto, GraphProto and TensorProto. Tensor "ext" lives in weights.bin
// (onnxExternalFile).
func onnxTestModel() *onnxModel {
	int32s := func(vs ...int64) []byte { return onnxPackedVarints(tensorInt32Data, vs...) }
	return &onnxModel{
		before: onnxCat(
			onnxVarint(1, 8),                   // ir_version
			onnxString(2, "neurstore-test"),    // producer_name
			onnxBytes(8, onnxVarint(2, 17)),    // opset_import {version: 17}
			onnxVarint(99, 1),                  // unknown
			onnxString(6, "a model for tests"), // doc_string
		),
		after: onnxCat(
			onnxBytes(14, onnxString(1, "k"), onnxString(2, "v")), // metadata_props
			onnxString(1000, "future field"),                      // unknown
		),
		graph: []any{
			onnxGemmNode,
			onnxConstantNode,
			onnxString(2, "g"), // name
			&onnxInit{
				head:   onnxHead("w", 1, 2, 3),
				data:   onnxBytes(tensorRawData, f32Bytes(1, 2, 3, 4, 5, 6)),
				tail:   onnxCat(onnxString(12, "weights"), onnxVarint(50, 7)), // doc_string, unknown
				tensor: onnxTensor("w", F32, 2, 3),
				bytes:  f32Bytes(1, 2, 3, 4, 5, 6),
			},
			onnxBytes(11, onnxString(1, "x")), // input
			&onnxInit{ // packed float_data, dims packed too
				head:   onnxCat(onnxPackedVarints(tensorDims, 3), onnxVarint(tensorDataType, 1), onnxString(tensorName, "b")),
				data:   onnxPackedFloats(tensorFloatData, 0.5, -1, 2),
				tensor: onnxTensor("b", F32, 3),
				bytes:  f32Bytes(0.5, -1, 2),
			},
			&onnxInit{ // unpacked float_data between name and an unknown field
				head:   onnxHead("u", 1, 2),
				data:   onnxCat(onnxFixed32(tensorFloatData, math.Float32bits(3.25)), onnxFixed32(tensorFloatData, math.Float32bits(-7))),
				tail:   onnxBytes(51, []byte{1, 2, 3}),
				tensor: onnxTensor("u", F32, 2),
				bytes:  f32Bytes(3.25, -7),
			},
			onnxIfNode,
			&onnxInit{
				head:   onnxHead("i64", 7, 3),
				data:   onnxPackedVarints(tensorInt64Data, -1, 1<<40, 7),
				tensor: onnxTensor("i64", I64, 3),
				bytes: onnxCat(binary.LittleEndian.AppendUint64(nil, math.MaxUint64),
					binary.LittleEndian.AppendUint64(nil, 1<<40), binary.LittleEndian.AppendUint64(nil, 7)),
			},
			&onnxInit{ // unpacked int32_data, negative values
				head:   onnxHead("i8", 3, 4),
				data:   onnxCat(onnxVarint(tensorInt32Data, math.MaxUint64), onnxVarint(tensorInt32Data, 2), onnxVarint(tensorInt32Data, 127), onnxVarint(tensorInt32Data, math.MaxUint64-127)), // -1, 2, 127, -128,
				tensor: onnxTensor("i8", I8, 4),
				bytes:  []byte{0xff, 2, 0x7f, 0x80},
			},
			&onnxInit{
				head:   onnxHead("mask", 9, 3),
				data:   int32s(0, 1, 1),
				tensor: onnxTensor("mask", Bool, 3),
				bytes:  []byte{0, 1, 1},
			},
			&onnxInit{
				head:   onnxHead("h", 10, 2),
				data:   int32s(0x3c00, 0xc000),
				tensor: onnxTensor("h", F16, 2),
				bytes:  []byte{0x00, 0x3c, 0x00, 0xc0},
			},
			&onnxInit{
				head:   onnxHead("bf", 16, 1),
				data:   int32s(0x3f80),
				tensor: onnxTensor("bf", BF16, 1),
				bytes:  []byte{0x80, 0x3f},
			},
			&onnxInit{
				head:   onnxHead("d", 11, 2),
				data:   onnxBytes(tensorDoubleData, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.5)), math.Float64bits(-2))),
				tensor: onnxTensor("d", F64, 2),
				bytes:  binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, math.Float64bits(1.5)), math.Float64bits(-2)),
			},
			&onnxInit{
				head:   onnxHead("u32", 12, 2),
				data:   onnxPackedVarints(tensorUint64Data, 1, math.MaxUint32),
				tensor: onnxTensor("u32", U32, 2),
				bytes:  []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
			},
			onnxStrings,
			&onnxInit{
				head: onnxHead("ext", 1, 4),
				data: onnxCat(onnxEntry("location", "weights.bin"), onnxEntry("offset", "8"),
					onnxEntry("length", "16"), onnxVarint(tensorDataLocation, locationExternal)),
				tensor: onnxTensor("ext", F32, 4),
				bytes:  f32Bytes(10, 20, 30, 40),
			},
			&onnxInit{ // a scalar: no dims
				head:   onnxHead("s", 7),
				data:   onnxBytes(tensorRawData, binary.LittleEndian.AppendUint64(nil, 42)),
				tensor: onnxTensor("s", I64),
				bytes:  binary.LittleEndian.AppendUint64(nil, 42),
			},
			&onnxInit{ // no elements, no data
				head:   onnxHead("empty", 1, 0, 5),
				tensor: onnxTensor("empty", F32, 0, 5),
				bytes:  []byte{},
			},
			onnxBytes(12, onnxString(1, "y")), // output
			onnxString(77, "unknown graph field"),
			onnxSparse,
		},
	}
}

// writeONNXFiles writes the model and weights.bin to a new folder and returns the
// model's path.
func writeONNXFiles(t testing.TB, model []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), onnxExternalFile, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readONNXTensors returns the bytes of every tensor of src.
func readONNXTensors(t testing.TB, src *Source) [][]byte {
	t.Helper()
	var data [][]byte
	for i, ti := range src.Tensors {
		r, err := src.Open(i)
		if err != nil {
			t.Fatalf("Open(%d): %v", i, err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading tensor %d: %v", i, err)
		}
		if int64(len(b)) != ti.Size {
			t.Fatalf("tensor %d %q: read %d bytes, Size is %d", i, ti.Name, len(b), ti.Size)
		}
		data = append(data, b)
	}
	return data
}

func onnxTensorData(data [][]byte) TensorData {
	return func(i int, w io.Writer) error {
		_, err := w.Write(data[i])
		return err
	}
}

func checkONNXTensors(t *testing.T, got []TensorInfo, gotData [][]byte, want []TensorInfo, wantData [][]byte) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tensors:\n got %+v\nwant %+v", got, want)
	}
	for i := range want {
		if !bytes.Equal(gotData[i], wantData[i]) {
			t.Errorf("tensor %d %q: bytes %x, want %x", i, want[i].Name, gotData[i], wantData[i])
		}
	}
}

func TestOpenONNX(t *testing.T) {
	m := onnxTestModel()
	path := writeONNXFiles(t, m.bytes())
	for _, open := range []func(string) (*Source, error){OpenONNX, OpenFile} {
		src, err := open(path)
		if err != nil {
			t.Fatal(err)
		}
		if src.Format != FormatONNX || src.Metadata != nil || src.Sharded {
			t.Errorf("Format %q, Metadata %v, Sharded %v", src.Format, src.Metadata, src.Sharded)
		}
		wantFiles := []string{path, filepath.Join(filepath.Dir(path), "weights.bin")}
		if !reflect.DeepEqual(src.Files, wantFiles) {
			t.Errorf("Files = %q, want %q", src.Files, wantFiles)
		}
		tensors, data := m.tensors()
		checkONNXTensors(t, src.Tensors, readONNXTensors(t, src), tensors, data)
		if !bytes.Equal(src.Graph, m.arch()) {
			t.Errorf("architecture differs from the expected stubs:\n got %x\nwant %x", src.Graph, m.arch())
		}
		if err := src.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestONNXArchitectureKeepsFields(t *testing.T) {
	m := onnxTestModel()
	src, err := ParseONNX(bytes.NewReader(m.bytes()), int64(len(m.bytes())), filepath.Dir(writeONNXFiles(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for name, part := range map[string][]byte{
		"model fields before graph": m.before,
		"model fields after graph":  m.after,
		"Gemm node":                 onnxGemmNode,
		"Constant node":             onnxConstantNode,
		"If node and its subgraph":  onnxIfNode,
		"sparse_initializer":        onnxSparse,
		"STRING initializer":        onnxStrings.full(),
	} {
		if !bytes.Contains(src.Graph, part) {
			t.Errorf("architecture lost the %s", name)
		}
	}
}

func TestWriteONNXRoundTrip(t *testing.T) {
	m := onnxTestModel()
	path := writeONNXFiles(t, m.bytes())
	src, err := OpenONNX(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	data := readONNXTensors(t, src)

	var out bytes.Buffer
	if err := WriteONNX(&out, src.Graph, src.Tensors, onnxTensorData(data)); err != nil {
		t.Fatal(err)
	}
	model := out.Bytes()
	for name, part := range map[string][]byte{
		"model fields before graph": m.before,
		"model fields after graph":  m.after,
		"Gemm node":                 onnxGemmNode,
		"If node":                   onnxIfNode,
		"STRING initializer":        onnxStrings.full(),
	} {
		if !bytes.Contains(model, part) {
			t.Errorf("written model lost the %s", name)
		}
	}

	// No folder: the written model must not need external data.
	back, err := ParseONNX(bytes.NewReader(model), int64(len(model)), "")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	checkONNXTensors(t, back.Tensors, readONNXTensors(t, back), src.Tensors, data)
	if !bytes.Equal(back.Graph, src.Graph) {
		t.Errorf("architecture changed in the round trip")
	}
	if back.Files != nil {
		t.Errorf("Files = %q, want none", back.Files)
	}

	// Writing again gives the same bytes.
	var again bytes.Buffer
	if err := WriteONNX(&again, back.Graph, back.Tensors, onnxTensorData(data)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), model) {
		t.Errorf("second write differs from the first")
	}
}

func TestWriteONNXStreams(t *testing.T) {
	// Tensor bytes written in small pieces go straight to w.
	m := onnxTestModel()
	tensors, data := m.tensors()
	var out bytes.Buffer
	err := WriteONNX(&out, m.arch(), tensors, func(i int, w io.Writer) error {
		for _, b := range data[i] {
			if _, err := w.Write([]byte{b}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseONNX(bytes.NewReader(out.Bytes()), int64(out.Len()), "")
	if err != nil {
		t.Fatal(err)
	}
	checkONNXTensors(t, back.Tensors, readONNXTensors(t, back), tensors, data)
}

// onnxSmall builds a model whose graph holds the given parts.
func onnxSmall(parts ...[]byte) []byte {
	return onnxCat(onnxVarint(1, 8), onnxBytes(modelGraph, parts...))
}

// onnxInitializer is an initializer field made of the given TensorProto fields.
func onnxInitializer(fields ...[]byte) []byte {
	return onnxBytes(graphInitializer, fields...)
}

func onnxExternal(location, offset, length string) []byte {
	var b []byte
	if location != "" {
		b = append(b, onnxEntry("location", location)...)
	}
	if offset != "" {
		b = append(b, onnxEntry("offset", offset)...)
	}
	if length != "" {
		b = append(b, onnxEntry("length", length)...)
	}
	return append(b, onnxVarint(tensorDataLocation, locationExternal)...)
}

var onnxErrorCases = []struct {
	name  string
	model []byte
	want  string
}{
	{"empty", nil, "model has no graph"},
	{"no graph", onnxCat(onnxVarint(1, 8), onnxString(2, "p")), "model has no graph"},
	{"two graphs", onnxCat(onnxBytes(modelGraph), onnxBytes(modelGraph)), "second graph"},
	{"graph not bytes", onnxVarint(modelGraph, 1), "graph has wire type 0"},
	{"truncated", onnxSmall(onnxGemmNode)[:20], "past the end of its message"},
	{"truncated tag", []byte{0x80}, "unexpected EOF"},
	{"bad varint", onnxCat([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01}), "overflow"},
	{"field number 0", []byte{0x00, 0x01}, "invalid field number"},
	{"field number too large", protowire.AppendVarint(nil, uint64(protowire.MaxValidNumber+1)<<3), "out of range"},
	{"group", onnxCat(onnxVarint(1, 8), []byte{0x0b, 0x0c}), "group"},
	{"end group", []byte{0x0c}, "group"},
	{"invalid wire type", []byte{0x0e}, "invalid wire type"},
	{"length past end", onnxCat(onnxVarint(1, 8), []byte{0x12, 0x05, 'a'}), "past the end of its message"},
	{"length past graph", onnxSmall(onnxInitializer(onnxVarint(tensorDataType, 1), []byte{0x42, 0x10, 'w'})), "past the end of its message"},
	{"initializer not bytes", onnxSmall(onnxVarint(graphInitializer, 1)), "initializer has wire type 0"},
	{"no name", onnxSmall(onnxInitializer(onnxVarint(tensorDataType, 1), onnxBytes(tensorRawData, f32Bytes(1)))), "initializer 0 has no name"},
	{"no name, string", onnxSmall(onnxInitializer(onnxVarint(tensorDataType, 8))), "initializer 0 has no name"},
	{"negative dim", onnxSmall(onnxInitializer(onnxHead("w", 1, 2, -1))), `initializer 0 "w": dims [2 -1] hold a negative`},
	{"many dims", onnxSmall(onnxInitializer(onnxHead("w", 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -1))), "dims [1 2 3 4 ... 8 9 10 -1] (11 dims) hold a negative"},
	{"long name", onnxSmall(onnxInitializer(onnxHead(strings.Repeat("n", 100), 1, 2))), `"` + strings.Repeat("n", 64) + `"...: has no data`},
	{"dims too large", onnxSmall(onnxInitializer(onnxHead("w", 1, 1<<40, 1<<40))), "too large"},
	{"raw size", onnxSmall(onnxInitializer(onnxHead("w", 1, 3), onnxBytes(tensorRawData, f32Bytes(1, 2)))), "raw_data has 8 bytes, dims [3] of F32 need 12"},
	{"typed size", onnxSmall(onnxInitializer(onnxHead("w", 1, 3), onnxPackedFloats(tensorFloatData, 1, 2))), "float_data holds 8 bytes, dims [3] of F32 need 12"},
	{"typed too much", onnxSmall(onnxInitializer(onnxHead("w", 6, 1), onnxPackedVarints(tensorInt32Data, 1, 2))), "int32_data holds 8 bytes, dims [1] of I32 need 4"},
	{"no data", onnxSmall(onnxInitializer(onnxHead("w", 1, 3))), "has no data, dims [3] of F32 need 12 bytes"},
	{"same name", onnxSmall(
		onnxInitializer(onnxHead("w", 1), onnxBytes(tensorRawData, f32Bytes(1))),
		onnxInitializer(onnxHead("w", 8), onnxString(tensorStringData, "s"))), `initializers 0 and 1 are both named "w"`},
	{"raw and typed", onnxSmall(onnxInitializer(onnxHead("w", 1, 1), onnxBytes(tensorRawData, f32Bytes(1)), onnxPackedFloats(tensorFloatData, 1))), "both raw_data and float_data"},
	{"wrong typed field", onnxSmall(onnxInitializer(onnxHead("w", 1, 1), onnxPackedVarints(tensorInt64Data, 1))), "has int64_data, but F32 values belong in float_data"},
	{"string_data on a number", onnxSmall(onnxInitializer(onnxHead("w", 6, 1), onnxString(tensorStringData, "1"))), "has string_data"},
	{"packed floats cut", onnxSmall(onnxInitializer(onnxHead("w", 1, 1), onnxBytes(tensorFloatData, []byte{1, 2, 3}))), "not a multiple of 4"},
	{"packed varint cut", onnxSmall(onnxInitializer(onnxHead("w", 6, 1), onnxBytes(tensorInt32Data, []byte{0x80}))), "unexpected EOF"},
	{"typed wire type", onnxSmall(onnxInitializer(onnxHead("w", 1, 1), onnxVarint(tensorFloatData, 1))), "float_data has wire type 0"},
	{"data_type wire type", onnxSmall(onnxInitializer(onnxString(tensorDataType, "x"))), "data_type has wire type 2"},
	{"name wire type", onnxSmall(onnxInitializer(onnxVarint(tensorName, 1))), "name has wire type 0"},
	{"dims wire type", onnxSmall(onnxInitializer(onnxFixed32(tensorDims, 1))), "dims has wire type 5"},
	{"unknown data_location", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxVarint(tensorDataLocation, 2))), "unknown data_location 2"},
	{"external_data not external", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxEntry("location", "weights.bin"), onnxBytes(tensorRawData, f32Bytes(1)))), "data_location is not EXTERNAL"},
	{"external and raw", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxBytes(tensorRawData, f32Bytes(1)), onnxExternal("weights.bin", "", ""))), "both external data and inline data"},
	{"external no location", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("", "0", ""))), "external data has no location"},
	{"external absolute", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("/etc/passwd", "", ""))), `location "/etc/passwd" is absolute or leaves the model's folder`},
	{"external parent", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("../weights.bin", "", ""))), "leaves the model's folder"},
	{"external parent after clean", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("a/../../weights.bin", "", ""))), "leaves the model's folder"},
	{"external missing", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("missing.bin", "", ""))), "no such file"},
	{"external newline", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("a\nb", "", ""))), `external data "a\nb": no such file`},
	{"external folder", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("sub", "", ""))), "not a regular file"},
	{"external past end", onnxSmall(onnxInitializer(onnxHead("w", 1, 4), onnxExternal("weights.bin", "20", ""))), "runs past the end"},
	{"external length", onnxSmall(onnxInitializer(onnxHead("w", 1, 4), onnxExternal("weights.bin", "0", "8"))), "external data length is 8 bytes, dims need 16"},
	{"external bad offset", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("weights.bin", "-1", ""))), `offset "-1" is not a non-negative integer`},
	{"external bad length", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("weights.bin", "", "4x"))), `length "4x" is not a non-negative integer`},
	{"external entry wire type", onnxSmall(onnxInitializer(onnxHead("w", 1), onnxBytes(tensorExternalData, onnxVarint(entryKey, 1)))), "entry field 1 has wire type 0"},
}

// checkONNXError checks that err is one line starting with prefix and holding want.
func checkONNXError(t *testing.T, err error, prefix, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Fatalf("error %q, want one line starting with %q and holding %q", msg, prefix, want)
	}
}

// onnxErrorDir returns a folder with weights.bin and a sub-folder "sub".
func onnxErrorDir(t testing.TB) string {
	dir := filepath.Dir(writeONNXFiles(t, nil))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestParseONNXErrors(t *testing.T) {
	dir := onnxErrorDir(t)
	for _, tc := range onnxErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			src, err := ParseONNX(bytes.NewReader(tc.model), int64(len(tc.model)), dir)
			if err == nil {
				src.Close()
			}
			checkONNXError(t, err, "graph: onnx <reader>: ", tc.want)
			if tc.name == "external missing" && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("error %v is not os.ErrNotExist", err)
			}
		})
	}
}

func TestOpenONNXErrors(t *testing.T) {
	dir := onnxErrorDir(t)
	bad := filepath.Join(dir, "bad.onnx")
	if err := os.WriteFile(bad, onnxErrorCases[0].model, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenONNX(bad)
	checkONNXError(t, err, "graph: onnx "+bad+": ", "no graph")

	missing := filepath.Join(dir, "missing.onnx")
	_, err = OpenONNX(missing)
	checkONNXError(t, err, "graph: onnx "+missing+": ", "no such file")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v is not os.ErrNotExist", err)
	}

	_, err = OpenONNX(filepath.Join(dir, "sub"))
	checkONNXError(t, err, "graph: onnx ", "is a folder")
}

func TestParseONNXNoFolder(t *testing.T) {
	model := onnxSmall(onnxInitializer(onnxHead("w", 1), onnxExternal("weights.bin", "", "")))
	_, err := ParseONNX(bytes.NewReader(model), int64(len(model)), "")
	checkONNXError(t, err, "graph: onnx <reader>: ", "needs the model's folder")
}

func TestONNXExternalData(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "w.bin"), f32Bytes(1, 2, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	model := onnxSmall(
		onnxInitializer(onnxHead("a", 1, 2), onnxExternal("data/w.bin", "", "")),        // offset and length default
		onnxInitializer(onnxHead("b", 1), onnxExternal("data/../data/w.bin", "8", "4")), // same file, cleaned path
	)
	path := filepath.Join(dir, "m.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenONNX(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if want := []string{path, filepath.Join(dir, "data", "w.bin")}; !reflect.DeepEqual(src.Files, want) {
		t.Errorf("Files = %q, want %q", src.Files, want)
	}
	checkONNXTensors(t, src.Tensors, readONNXTensors(t, src),
		[]TensorInfo{*onnxTensor("a", F32, 2), *onnxTensor("b", F32)},
		[][]byte{f32Bytes(1, 2), f32Bytes(3)})

	// A symbolic link in the folder that leads out of it is refused.
	outside := filepath.Join(t.TempDir(), "outside.bin")
	if err := os.WriteFile(outside, f32Bytes(1), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link.bin")); err != nil {
		t.Skip("no symbolic links:", err)
	}
	model = onnxSmall(onnxInitializer(onnxHead("a", 1), onnxExternal("link.bin", "", "")))
	_, err = ParseONNX(bytes.NewReader(model), int64(len(model)), dir)
	checkONNXError(t, err, "graph: onnx <reader>: ", `external data "link.bin": `)
}

func TestWriteONNXErrors(t *testing.T) {
	m := onnxTestModel()
	arch := m.arch()
	tensors, data := m.tensors()
	with := func(k int, edit func(t *TensorInfo)) []TensorInfo {
		ts := append([]TensorInfo(nil), tensors...)
		ts[k].Shape = append([]int64(nil), ts[k].Shape...)
		edit(&ts[k])
		return ts
	}
	wrote := func(extra int) TensorData {
		return func(i int, w io.Writer) error {
			b := data[i]
			if i == 0 {
				b = append(append([]byte(nil), b...), make([]byte, max(extra, 0))...)
				b = b[:len(b)+min(extra, 0)]
			}
			_, err := w.Write(b)
			return err
		}
	}
	// A stub of a 3 GiB tensor.
	huge := onnxSmall(onnxInitializer(onnxHead("big", 2, 3<<30)))
	cases := []struct {
		name    string
		arch    []byte
		tensors []TensorInfo
		data    TensorData
		want    string
	}{
		{"fewer tensors", arch, tensors[:3], onnxTensorData(data), "architecture has 13 stubs for 3 tensors"},
		{"more tensors", arch, append(tensors, tensors[0]), onnxTensorData(data), "architecture has 13 stubs for 14 tensors"},
		{"name", arch, with(1, func(t *TensorInfo) { t.Name = "bias" }), onnxTensorData(data), `stub 1 is named "b", tensor 1 "bias"`},
		{"dtype", arch, with(1, func(t *TensorInfo) { t.DType = I32 }), onnxTensorData(data), `stub 1 "b" has dtype F32, tensor has I32`},
		{"dims", arch, with(0, func(t *TensorInfo) { t.Shape = []int64{3, 2} }), onnxTensorData(data), `stub 0 "w" has dims [2 3], tensor has shape [3 2]`},
		{"size", arch, with(0, func(t *TensorInfo) { t.Size = 4 }), onnxTensorData(data), `tensor 0 "w" has Size 4, which does not match`},
		{"short data", arch, tensors, wrote(-1), `tensor 0 "w": data wrote 23 bytes, want 24`},
		{"long data", arch, tensors, wrote(1), "more bytes than the tensor's Size"},
		{"data error", arch, tensors, func(int, io.Writer) error { return errors.New("disk on fire") }, "disk on fire"},
		{"no data func", arch, tensors, nil, "no TensorData"},
		{"no graph", onnxVarint(1, 8), nil, nil, "architecture has no graph"},
		{"malformed", arch[:len(arch)-1], tensors, onnxTensorData(data), "past the end of its message"},
		{"not a stub", m.bytes(), tensors, onnxTensorData(data), `initializer 0 "w" holds data`},
		{"too large", huge, []TensorInfo{*onnxTensor("big", U8, 3<<30)}, onnxTensorData(nil), "over protobuf's 2 GiB limit (writing tensors as ONNX external data is not supported yet)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteONNX(io.Discard, tc.arch, tc.tensors, tc.data)
			checkONNXError(t, err, "graph: onnx write: ", tc.want)
		})
	}
}

// FuzzONNX parses arbitrary bytes. Parsing must not panic or allocate much more than
// the input's size; a model that parses must write and parse back unchanged.
func FuzzONNX(f *testing.F) {
	dir := filepath.Dir(writeONNXFiles(f, nil))
	f.Add(onnxTestModel().bytes())
	for _, tc := range onnxErrorCases {
		f.Add(tc.model)
	}
	f.Fuzz(func(t *testing.T, model []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		src, err := ParseONNX(bytes.NewReader(model), int64(len(model)), dir)
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20+256*uint64(len(model)) {
			t.Errorf("parsing %d bytes allocated %d bytes", len(model), n)
		}
		if err != nil {
			checkONNXError(t, err, "graph: onnx <reader>: ", "")
			return
		}
		defer src.Close()
		data := readONNXTensors(t, src)
		var out bytes.Buffer
		if err := WriteONNX(&out, src.Graph, src.Tensors, onnxTensorData(data)); err != nil {
			t.Fatalf("WriteONNX of a parsed model: %v", err)
		}
		back, err := ParseONNX(bytes.NewReader(out.Bytes()), int64(out.Len()), "")
		if err != nil {
			t.Fatalf("parsing the written model: %v", err)
		}
		defer back.Close()
		checkONNXTensors(t, back.Tensors, readONNXTensors(t, back), src.Tensors, data)
		if !bytes.Equal(back.Graph, src.Graph) {
			t.Fatalf("architecture changed:\n got %x\nwant %x", back.Graph, src.Graph)
		}
	})
}

func ExampleWriteONNX() {
	// An architecture: a ModelProto whose graph holds the stub of a FLOAT tensor "w"
	// of shape [2], which is its TensorProto without data.
	stub := protowire.AppendTag(nil, 1, protowire.VarintType) // dims
	stub = protowire.AppendVarint(stub, 2)
	stub = protowire.AppendTag(stub, 2, protowire.VarintType) // data_type: FLOAT
	stub = protowire.AppendVarint(stub, 1)
	stub = protowire.AppendTag(stub, 8, protowire.BytesType) // name
	stub = protowire.AppendString(stub, "w")
	g := protowire.AppendTag(nil, 5, protowire.BytesType) // initializer
	g = protowire.AppendBytes(g, stub)
	arch := protowire.AppendTag(nil, 1, protowire.VarintType) // ir_version
	arch = protowire.AppendVarint(arch, 8)
	arch = protowire.AppendTag(arch, 7, protowire.BytesType) // graph
	arch = protowire.AppendBytes(arch, g)

	tensors := []TensorInfo{{Name: "w", DType: F32, Shape: []int64{2}, Size: 8}}
	var model bytes.Buffer
	err := WriteONNX(&model, arch, tensors, func(i int, w io.Writer) error {
		return binary.Write(w, binary.LittleEndian, []float32{1.5, -2})
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	src, err := ParseONNX(bytes.NewReader(model.Bytes()), int64(model.Len()), "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	for i, t := range src.Tensors {
		r, _ := src.Open(i)
		values := make([]float32, t.Size/4)
		binary.Read(r, binary.LittleEndian, values)
		fmt.Println(t.Name, t.DType, t.Shape, values)
	}
	fmt.Println("same architecture:", bytes.Equal(src.Graph, arch))
	// Output:
	// w F32 [2] [1.5 -2]
	// same architecture: true
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

func TestONNXLargeModel(t *testing.T) {
	// Fields larger than the read cache, raw_data that must not be read, and typed
	// values that cross cache boundaries.
	raw := make([]byte, 4<<20)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	var unpacked []byte
	floats := make([]float32, 30000)
	for i := range floats {
		floats[i] = float32(i) / 3
		unpacked = append(unpacked, onnxFixed32(tensorFloatData, math.Float32bits(floats[i]))...)
	}
	ints := make([]int64, 50000)
	var intBytes []byte
	for i := range ints {
		ints[i] = int64(i) * -99991
		intBytes = binary.LittleEndian.AppendUint64(intBytes, uint64(ints[i]))
	}
	bigNode := onnxBytes(1, onnxString(4, "Identity"), onnxString(3, strings.Repeat("n", 100000)))
	m := &onnxModel{
		before: onnxVarint(1, 8),
		graph: []any{
			bigNode,
			&onnxInit{
				head:   onnxHead("raw", 2, int64(len(raw))),
				data:   onnxBytes(tensorRawData, raw),
				tail:   onnxString(12, strings.Repeat("d", 70000)),
				tensor: onnxTensor("raw", U8, int64(len(raw))),
				bytes:  raw,
			},
			&onnxInit{
				head:   onnxHead("floats", 1, int64(len(floats))),
				data:   unpacked,
				tensor: onnxTensor("floats", F32, int64(len(floats))),
				bytes:  f32Bytes(floats...),
			},
			&onnxInit{
				head:   onnxHead("ints", 7, int64(len(ints))),
				data:   onnxPackedVarints(tensorInt64Data, ints...),
				tensor: onnxTensor("ints", I64, int64(len(ints))),
				bytes:  intBytes,
			},
		},
	}
	model := m.bytes()
	r := &countingReaderAt{r: bytes.NewReader(model)}
	src, err := ParseONNX(r, int64(len(model)), "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if r.n > int64(len(model)-len(raw))*3 {
		t.Errorf("parsing read %d bytes of a %d-byte model with %d bytes of raw_data", r.n, len(model), len(raw))
	}
	tensors, data := m.tensors()
	checkONNXTensors(t, src.Tensors, readONNXTensors(t, src), tensors, data)
	if !bytes.Equal(src.Graph, m.arch()) {
		t.Fatal("architecture differs")
	}
	var out bytes.Buffer
	if err := WriteONNX(&out, src.Graph, src.Tensors, onnxTensorData(data)); err != nil {
		t.Fatal(err)
	}
	back, err := ParseONNX(bytes.NewReader(out.Bytes()), int64(out.Len()), "")
	if err != nil {
		t.Fatal(err)
	}
	checkONNXTensors(t, back.Tensors, readONNXTensors(t, back), tensors, data)
	if !bytes.Equal(back.Graph, src.Graph) {
		t.Fatal("architecture changed in the round trip")
	}

	// A reader shorter than the size it is said to have.
	for _, n := range []int{10, len(model) / 2, len(model) - 1} {
		_, err := ParseONNX(bytes.NewReader(model[:n]), int64(len(model)), "")
		checkONNXError(t, err, "graph: onnx <reader>: ", "unexpected EOF")
	}
}

// TestONNXFamilyModels reads the torch exports in testdata/family (when present):
// writing one back gives the same file, since torch puts raw_data last in each
// initializer, and the external-data export gives the same model as the inline one.
func TestONNXFamilyModels(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "family", "*.onnx"))
	if len(paths) == 0 {
		t.Skip("no models in testdata/family")
	}
	written := make(map[string][]byte)
	for _, path := range paths {
		src, err := OpenONNX(path)
		if err != nil {
			t.Fatal(err)
		}
		data := readONNXTensors(t, src)
		var out bytes.Buffer
		if err := WriteONNX(&out, src.Graph, src.Tensors, onnxTensorData(data)); err != nil {
			t.Fatal(err)
		}
		src.Close()
		written[filepath.Base(path)] = out.Bytes()
		if len(src.Files) > 1 {
			continue
		}
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), orig) {
			t.Errorf("%s: written model differs from the file", path)
		}
	}
	ext, inline := written["digits-cnn-base-ext.onnx"], written["digits-cnn-base.onnx"]
	if ext != nil && inline != nil && !bytes.Equal(ext, inline) {
		t.Errorf("digits-cnn-base-ext.onnx written back differs from digits-cnn-base.onnx")
	}
}
