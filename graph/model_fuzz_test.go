package graph

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lowers the fuzzer's default minimization time (60 s per new interesting
// input) to 2 s, unless -fuzzminimizetime is given: minimizing a model of a few KB
// runs the target a quadratic number of times, so a 30 s fuzzing run would spend
// all its time minimizing instead of mutating.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", "2s"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// maxFuzzSeed is the size of the largest seed: mutating the raw_data of a 400 KB
// model finds nothing that its architecture blob (a few KB) does not.
const maxFuzzSeed = 32 << 10

// fuzzSeedModels returns the ONNX files of testdata/family and graph/testdata that
// are small, and the architecture blobs (the same models with stub initializers) of
// them all.
func fuzzSeedModels(f *testing.F) [][]byte {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "family", "*.onnx"))
	more, _ := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	var seeds [][]byte
	seen := make(map[string]bool) // fine-tunes share their base's architecture
	add := func(b []byte) {
		if !seen[string(b)] {
			seen[string(b)] = true
			seeds = append(seeds, b)
		}
	}
	for _, p := range append(paths, more...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= maxFuzzSeed {
			add(b)
		}
		if src, err := OpenONNX(p); err == nil {
			if len(src.Graph) <= maxFuzzSeed {
				add(src.Graph)
			}
			src.Close()
		}
	}
	return seeds
}

// FuzzParseModel parses arbitrary bytes as a model: ParseModel must fail cleanly or
// give a graph that Check, Fold, Infer and Fuse handle without panicking, and a
// graph that inferred before Fuse must infer after it.
func FuzzParseModel(f *testing.F) {
	for _, b := range fuzzSeedModels(f) {
		f.Add(b)
	}
	relu := pbNode("Relu", in("x"), in("y"))
	x := pbValue(graphInput, "x", 1, false, "batch", 2)
	f.Add(pbModel(13, relu, x, pbValue(graphOutput, "y", 1, false)))
	f.Add(pbModel(13, pbNode("Relu", in("y"), in("z")), relu, x, pbValue(graphOutput, "z", 1, false)))
	f.Add(pbModel(13,
		pbNode("Constant", nil, in("s"), pbAttr("value_ints", AttrInts, onnxPackedVarints(attrInts, -1, 2))),
		pbNode("Shape", in("x"), in("sh")),
		pbNode("Reshape", in("x", "s"), in("r")),
		pbNode("Concat", in("sh", "s"), in("c"), pbAttr("axis", AttrInt, onnxVarint(attrI, 0))),
		x, pbValue(graphOutput, "r", 1, false), pbValue(graphOutput, "c", 7, false)))
	f.Fuzz(func(t *testing.T, model []byte) {
		g, err := ParseModel(model)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "graph: model: ") {
				t.Fatalf("error %q does not start with \"graph: model: \"", err)
			}
			return
		}
		_ = g.Check()
		if err := g.Infer(); err != nil && !strings.HasPrefix(err.Error(), "graph: ") {
			t.Fatalf("Infer error %q does not start with \"graph: \"", err)
		}
		if _, err := g.Fold(); err != nil {
			if !strings.HasPrefix(err.Error(), "graph: ") {
				t.Fatalf("Fold error %q does not start with \"graph: \"", err)
			}
			return
		}
		if g.Infer() == nil && g.Fuse() > 0 {
			if err := g.Infer(); err != nil {
				t.Fatalf("Infer after Fuse: %v (the fused graph must infer as the chains did)", err)
			}
		}
	})
}

// FuzzParseTensorProto decodes arbitrary bytes as a TensorProto: it fails cleanly or
// gives data of the size its shape and type need.
func FuzzParseTensorProto(f *testing.F) {
	f.Add(onnxCat(onnxHead("x", 1, 2, 2), onnxBytes(tensorRawData, f32Bytes(1, 2, 3, 4))))
	f.Add(onnxCat(onnxHead("i", 7, 3), onnxPackedVarints(tensorInt64Data, -1, 1<<40, 7)))
	f.Add(onnxCat(onnxHead("h", 10, 2), onnxPackedVarints(tensorInt32Data, 0x3c00, 0xc000)))
	f.Add(onnxCat(onnxHead("m", 9, 3), onnxVarint(tensorInt32Data, 1), onnxVarint(tensorInt32Data, 0), onnxVarint(tensorInt32Data, 2)))
	f.Add(onnxCat(onnxHead("d", 11, 1), onnxBytes(tensorDoubleData, make([]byte, 8))))
	f.Add(onnxCat(onnxHead("u", 13, 1), onnxVarint(tensorUint64Data, 1<<63)))
	f.Add(onnxCat(onnxHead("f", 1, 1), onnxFixed32(tensorFloatData, 0x3f800000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseTensorProto(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "graph: tensor: ") {
				t.Fatalf("error %q does not start with \"graph: tensor: \"", err)
			}
			return
		}
		size, err := ByteSize(c.DType, c.Shape)
		if err != nil || c.Data == nil || int64(len(c.Data)) != size {
			t.Fatalf("tensor %s %v with %d bytes of data (%v)", c.DType, c.Shape, len(c.Data), err)
		}
	})
}
