package runtime

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime/npy"
	"github.com/neurstore/neurstore/store"
)

const familyDir = "../testdata/family"

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func importFile(t *testing.T, s *store.Store, path, ref string, tau float64, base string) {
	t.Helper()
	src, err := graph.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := s.Import(context.Background(), src, store.ImportOptions{Ref: ref, Tau: tau, Base: base}); err != nil {
		t.Fatal(err)
	}
}

func readNpy(t *testing.T, path string) *Tensor {
	t.Helper()
	a, err := npy.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x, err := FromBytes(a.DType, a.Shape, a.Data)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// relL2 is ||a - b|| / ||b||.
func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

func runOne(t *testing.T, md *Model, x *Tensor) *Tensor {
	t.Helper()
	out, err := md.NewSession().Run(context.Background(), map[string]*Tensor{md.Inputs()[0].Name: x})
	if err != nil {
		t.Fatal(err)
	}
	return out[md.Outputs()[0].Name]
}

// Every family model with an ONNX file, imported losslessly and run in f32 mode,
// gives torch's reference outputs within 1e-4 relative L2.
func TestFamilyF32MatchesTorch(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(familyDir, "*.onnx"))
	if len(files) == 0 {
		t.Fatal("no family ONNX files")
	}
	s := openStore(t)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".onnx")
		in := filepath.Join(familyDir, "ref", strings.TrimSuffix(name, "-ext")+".input.npy")
		if _, err := os.Stat(in); err != nil {
			continue
		}
		importFile(t, s, f, name, 0, "")
		md, err := Load(s, name, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if md.Mode != ModeF32 {
			t.Fatalf("%s: default mode %s for a lossless model", name, md.Mode)
		}
		got := runOne(t, md, readNpy(t, in))
		want := readNpy(t, strings.Replace(in, ".input.", ".output.", 1))
		if e := relL2(got.F32, want.F32); !(e <= 1e-4) {
			t.Errorf("%s: relative L2 error %.3g against torch", name, e)
		} else {
			t.Logf("%s: relative L2 error %.3g against torch", name, e)
		}
	}
}

// A fine-tune imported at tau > 0 against its base computes, in compressed mode,
// what the f32 run of the same stored weights computes, within 1e-5 relative L2;
// its fine-tunes share their bases through the cache. It runs twice: with the
// small weights' decoded copies (the default) and with every weight multiplied
// packed, as the large models' are.
func TestFamilyCompressedMatchesF32(t *testing.T) {
	for _, limit := range []int{denseWeightElements, 0} {
		t.Run(fmt.Sprintf("dense-up-to-%d", limit), func(t *testing.T) {
			saved := denseWeightElements
			denseWeightElements = limit
			defer func() { denseWeightElements = saved }()
			testFamilyCompressed(t)
		})
	}
}

func testFamilyCompressed(t *testing.T) {
	for _, fam := range []string{"digits-mlp", "digits-cnn", "text-tiny"} {
		s := openStore(t)
		importFile(t, s, filepath.Join(familyDir, fam+"-base.onnx"), "base", 1e-3, "")
		cache, err := NewBaseCache(64 << 20)
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		for _, ft := range []string{"ft1", "ft2"} {
			importFile(t, s, filepath.Join(familyDir, fam+"-"+ft+".onnx"), ft, 1e-3, "base")
			if fam == "text-tiny" {
				// its output head's delta is kept with a low-rank prediction,
				// which the compressed mode's delta codes include
				if n := lowRankTensors(t, s, ft); n == 0 {
					t.Errorf("%s %s: no tensor has a low-rank prediction", fam, ft)
				}
			}
			f32, err := Load(s, ft, Options{Mode: ModeF32})
			if err != nil {
				t.Fatal(err)
			}
			cmp, err := Load(s, ft, Options{Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			if cmp.Mode != ModeCompressed {
				t.Fatalf("%s %s: default mode %s at tau > 0", fam, ft, cmp.Mode)
			}
			if fam != "digits-cnn" && len(cmp.packed) == 0 {
				t.Fatalf("%s %s: no weight stayed packed", fam, ft)
			}
			x := readNpy(t, filepath.Join(familyDir, "ref", fam+"-"+ft+".input.npy"))
			a, b := runOne(t, f32, x), runOne(t, cmp, x)
			if e := relL2(b.F32, a.F32); !(e <= 1e-5) {
				t.Errorf("%s %s: compressed vs f32 relative L2 %.3g", fam, ft, e)
			} else {
				t.Logf("%s %s: %d packed weights, compressed vs f32 relative L2 %.3g", fam, ft, len(cmp.packed), e)
			}
			want := readNpy(t, filepath.Join(familyDir, "ref", fam+"-"+ft+".output.npy"))
			t.Logf("%s %s: stored (tau 1e-3) vs torch relative L2 %.3g", fam, ft, relL2(a.F32, want.F32))
		}
		if st := cache.Stats(); fam != "digits-cnn" && st.Hits == 0 {
			t.Errorf("%s: the second fine-tune never hit the base cache: %+v", fam, st)
		}
	}
}

// int8 mode runs the bases alone, as int8 codes: close to the base model's outputs
// (not the fine-tune's), and the weights stay packed.
func TestInt8RunsTheBase(t *testing.T) {
	s := openStore(t)
	importFile(t, s, filepath.Join(familyDir, "digits-mlp-base.onnx"), "base", 1e-4, "")
	importFile(t, s, filepath.Join(familyDir, "digits-mlp-ft3.onnx"), "ft", 1e-4, "base")
	i8, err := Load(s, "ft", Options{Mode: ModeInt8})
	if err != nil {
		t.Fatal(err)
	}
	if len(i8.packed) == 0 {
		t.Fatal("no weight stayed packed in int8 mode")
	}
	base, err := Load(s, "base", Options{Mode: ModeF32})
	if err != nil {
		t.Fatal(err)
	}
	ft, err := Load(s, "ft", Options{Mode: ModeF32})
	if err != nil {
		t.Fatal(err)
	}
	x := readNpy(t, filepath.Join(familyDir, "ref", "digits-mlp-ft3.input.npy"))
	a, b, c := runOne(t, i8, x), runOne(t, base, x), runOne(t, ft, x)
	toBase, toFt := relL2(a.F32, b.F32), relL2(a.F32, c.F32)
	t.Logf("int8 vs base %.3g, vs fine-tune %.3g", toBase, toFt)
	if !(toBase < 0.1) || !(toBase < toFt/2) {
		t.Errorf("int8 run: %.3g from the base, %.3g from the fine-tune", toBase, toFt)
	}
}

// BenchmarkFamily runs a bench family's first fine-tune, imported at tau 1e-4
// against its base, in f32 and compressed mode on batches of its reference
// input's rows: the small models of bench infer, whose many small ops show the
// runtime's own overhead beside the kernels'.
func BenchmarkFamily(b *testing.B) {
	for _, fam := range []string{"digits-mlp", "text-tiny"} {
		s, err := store.Open(filepath.Join(b.TempDir(), "store"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for _, m := range []struct{ file, ref, base string }{{fam + "-base", "base", ""}, {fam + "-ft1", "ft1", "base"}} {
			src, err := graph.OpenFile(filepath.Join(familyDir, m.file+".onnx"))
			if err != nil {
				b.Fatal(err)
			}
			_, err = s.Import(context.Background(), src, store.ImportOptions{Ref: m.ref, Tau: 1e-4, Base: m.base})
			src.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		a, err := npy.ReadFile(filepath.Join(familyDir, "ref", fam+"-ft1.input.npy"))
		if err != nil {
			b.Fatal(err)
		}
		ref, err := FromBytes(a.DType, a.Shape, a.Data)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []Mode{ModeF32, ModeCompressed} {
			md, err := Load(s, "ft1", Options{Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range []int{1, 8, 64} {
				in := map[string]*Tensor{md.Inputs()[0].Name: repeatRows(ref, batch)}
				sess := md.NewSession()
				b.Run(fmt.Sprintf("%s/%s/batch%d", fam, mode, batch), func(b *testing.B) {
					for b.Loop() {
						if _, err := sess.Run(context.Background(), in); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "samples/s")
				})
			}
		}
	}
}

// repeatRows returns a batch of n rows of t's, cycling through them.
func repeatRows(t *Tensor, n int) *Tensor {
	rowLen := t.Len() / t.Shape[0]
	out := &Tensor{DType: t.DType, Shape: append([]int{n}, t.Shape[1:]...)}
	for i := range n {
		r := i % t.Shape[0]
		if t.I64 != nil {
			out.I64 = append(out.I64, t.I64[r*rowLen:(r+1)*rowLen]...)
		} else {
			out.F32 = append(out.F32, t.F32[r*rowLen:(r+1)*rowLen]...)
		}
	}
	return out
}

// lowRankTensors counts the tensors of model ref stored with a low-rank
// prediction.
func lowRankTensors(t *testing.T, s *store.Store, ref string) int {
	t.Helper()
	m, err := s.Model(ref)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tt := range m.Tensors {
		if tt.Inline() {
			continue
		}
		st, err := s.Storage(tt.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Rank > 0 {
			n++
		}
	}
	return n
}
