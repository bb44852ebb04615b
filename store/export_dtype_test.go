package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// halfModel has float tensors of the three types (normal values, values past
// f16's range, subnormals, NaN, Inf, one inline), and an integer tensor.
func halfModel() *memModel {
	r := rand.New(rand.NewPCG(9, 9))
	f32 := make([]byte, 4*3001)
	for i := 0; i < 3001; i++ {
		v := float32(r.NormFloat64())
		switch i % 500 {
		case 1:
			v = 70000 // past f16's largest
		case 2:
			v = 1e-6 // an f16 subnormal
		case 3:
			v = float32(math.NaN())
		case 4:
			v = float32(math.Inf(-1))
		}
		binary.LittleEndian.PutUint32(f32[4*i:], math.Float32bits(v))
	}
	m := &memModel{}
	m.add("a", graph.F32, []int64{3001}, f32)
	m.add("h", graph.F16, []int64{100}, randBytes(r, 200))
	m.add("b", graph.BF16, []int64{5, 10}, randBytes(r, 100))
	m.add("small", graph.F32, []int64{10}, f32[:40])
	m.add("i", graph.I64, []int64{4}, randBytes(r, 32))
	return m
}

// asFloats decodes little-endian elements of a float type.
func asFloats(dt graph.DType, b []byte) []float32 {
	t, _ := floatTarget(dt)
	out := make([]float32, len(b)/t.Size())
	t.Decode(out, b)
	return out
}

func sameFloat(a, b float32) bool { return a == b || a != a && b != b }

func TestExportDType(t *testing.T) {
	s := openTest(t)
	m := halfModel()
	mustImport(t, s, m, "half")
	dir := t.TempDir()
	for _, to := range []graph.DType{graph.F32, graph.F16, graph.BF16} {
		out := filepath.Join(dir, to.String()+".safetensors")
		if err := s.Export("half", out, ExportOptions{DType: to}); err != nil {
			t.Fatalf("export as %s: %v", to, err)
		}
		src, err := graph.OpenFile(out)
		if err != nil {
			t.Fatal(err)
		}
		for i, ti := range src.Tensors {
			r, err := src.Open(i)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			orig := m.tensors[i]
			if orig.DType == graph.I64 {
				if ti.DType != graph.I64 || !bytes.Equal(got, m.data[i]) {
					t.Errorf("%s as %s: the integer tensor changed", ti.Name, to)
				}
				continue
			}
			if ti.DType != to || ti.Size != int64(len(got)) {
				t.Fatalf("%s as %s: header says %s, %d bytes", ti.Name, to, ti.DType, ti.Size)
			}
			want, have := asFloats(orig.DType, m.data[i]), asFloats(to, got)
			if len(want) != len(have) {
				t.Fatalf("%s as %s: %d elements, want %d", ti.Name, to, len(have), len(want))
			}
			for k := range want {
				tt, _ := floatTarget(to)
				if w := tt.Round(want[k]); !sameFloat(have[k], w) {
					t.Fatalf("%s as %s: element %d = %v, want %v (from %v)", ti.Name, to, k, have[k], w, want[k])
				}
			}
		}
		src.Close()
	}
	// a type the option does not take: an error and no file
	bad := filepath.Join(dir, "bad.safetensors")
	if err := s.Export("half", bad, ExportOptions{DType: graph.I8}); err == nil || !strings.Contains(err.Error(), "only F32, F16 and BF16") {
		t.Errorf("export as I8: %v", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("a refused export left %s", bad)
	}
}

// An ONNX output keeps its graph's types, so a --dtype that would change a
// tensor is refused; one that changes nothing is not.
func TestExportDTypeONNX(t *testing.T) {
	s := openTest(t)
	src, err := graph.OpenFile("../testdata/family/digits-mlp-base.onnx")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Import(context.Background(), src, ImportOptions{Ref: "mlp"})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "mlp.onnx")
	if err := s.Export("mlp", out, ExportOptions{DType: graph.F16}); err == nil || !strings.Contains(err.Error(), "ONNX graph") {
		t.Fatalf("export .onnx as F16: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused export left %s", out)
	}
	if err := s.Export("mlp", out, ExportOptions{DType: graph.F32}); err != nil {
		t.Fatalf("export .onnx as F32 (no change): %v", err)
	}
	if err := s.Export("mlp", filepath.Join(dir, "mlp.safetensors"), ExportOptions{DType: graph.F16}); err != nil {
		t.Fatalf("export .safetensors as F16: %v", err)
	}
}

// Writes that end inside an element give the same bytes as one write.
func TestConvertWriterChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	src := randBytes(r, 4*1000)
	var whole bytes.Buffer
	cw := &convertWriter{w: &whole, from: quant.TargetF32, to: quant.TargetBF16}
	cw.Write(src)
	if err := cw.close(); err != nil {
		t.Fatal(err)
	}
	var parts bytes.Buffer
	cw = &convertWriter{w: &parts, from: quant.TargetF32, to: quant.TargetBF16}
	for p := src; len(p) > 0; {
		k := min(len(p), r.IntN(7))
		if n, err := cw.Write(p[:k]); n != k || err != nil {
			t.Fatalf("Write: %d, %v", n, err)
		}
		p = p[k:]
	}
	if err := cw.close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole.Bytes(), parts.Bytes()) || whole.Len() != 2000 {
		t.Fatalf("chunked writes differ (%d vs %d bytes)", parts.Len(), whole.Len())
	}
	cw = &convertWriter{w: io.Discard, from: quant.TargetF32, to: quant.TargetF16}
	cw.Write(src[:6])
	if err := cw.close(); err == nil {
		t.Error("a stream ending inside an element: no error")
	}
}
