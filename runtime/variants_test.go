package runtime

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// rowsOf returns samples [s0, s1) of x as a new tensor.
func rowsOf(x *Tensor, s0, s1 int) *Tensor {
	v := rowSlice(x, s0, s1, x.Shape[0])
	c := &Tensor{DType: v.DType, Shape: v.Shape}
	if v.F32 != nil {
		c.F32 = append([]float32(nil), v.F32...)
	}
	if v.I64 != nil {
		c.I64 = append([]int64(nil), v.I64...)
	}
	return c
}

// A cross-model run over fine-tunes of one base gives each part the outputs
// that model gives alone, for every family, in compressed mode (base product
// shared, deltas per part) and in f32 mode (steps with differing weights run
// per part).
func TestRunPartsMatchesSeparateRuns(t *testing.T) {
	saved := splitMinBaseBytes
	splitMinBaseBytes = 0 // the small families' weights take the split too
	defer func() { splitMinBaseBytes = saved }()
	for _, fam := range []string{"digits-mlp", "digits-cnn", "text-tiny"} {
		s := openStore(t)
		importFile(t, s, filepath.Join(familyDir, fam+"-base.onnx"), "base", 1e-3, "")
		for _, ft := range []string{"ft1", "ft2", "ft3"} {
			importFile(t, s, filepath.Join(familyDir, fam+"-"+ft+".onnx"), ft, 1e-3, "base")
		}
		x := readNpy(t, filepath.Join(familyDir, "ref", fam+"-ft1.input.npy"))
		x = concatRows([]*Tensor{x, x, x, x, x, x})
		n := x.Shape[0]
		if n < 4 {
			t.Fatalf("%s: reference input has %d rows", fam, n)
		}
		for _, mode := range []Mode{ModeCompressed, ModeF32} {
			cache, err := NewBaseCache(64 << 20)
			if err != nil {
				t.Fatal(err)
			}
			models := map[string]*Model{}
			for _, ref := range []string{"base", "ft1", "ft2", "ft3"} {
				if models[ref], err = Load(s, ref, Options{Mode: mode, Cache: cache}); err != nil {
					t.Fatal(err)
				}
			}
			if mode == ModeCompressed && fam != "digits-cnn" {
				if err := models["ft1"].Joinable(models["ft2"]); err != nil {
					t.Fatal(err)
				}
				if k := models["ft1"].JoinKey(); k == "" || k != models["ft2"].JoinKey() || k != models["base"].JoinKey() {
					t.Fatalf("%s: join keys %q, %q, %q", fam, k, models["ft2"].JoinKey(), models["base"].JoinKey())
				}
				packedDiffers := false
				for _, p := range models["ft1"].packed {
					packedDiffers = packedDiffers || models["ft1"].join(models["ft2"]).diff[p.slot]
				}
				if !packedDiffers {
					t.Fatalf("%s: no packed weight differs between fine-tunes", fam)
				}
			}
			// one sample per part, a model twice, the primary not first (the
			// base product shared); parts of 1 to 3 samples and two parts of
			// many rows (each part's rows through its own base + delta)
			type share struct {
				ref  string
				rows int
			}
			for _, plan := range [][]share{
				{{"ft2", 1}, {"ft1", 1}, {"base", 1}, {"ft3", 1}, {"ft2", 1}},
				{{"ft2", 2}, {"ft1", 1}, {"base", 3}, {"ft3", 1}, {"ft2", 1}},
				{{"ft3", 11}, {"base", 9}},
			} {
				var parts []Part
				var pieces []*Tensor
				at := 0
				for _, p := range plan {
					s0 := at % (n - p.rows + 1)
					pieces = append(pieces, rowsOf(x, s0, s0+p.rows))
					parts = append(parts, Part{Model: models[p.ref], Rows: p.rows})
					at += p.rows
				}
				joint := concatRows(pieces)
				primary := models["ft1"]
				out, err := primary.NewSession().RunParts(context.Background(), map[string]*Tensor{primary.Inputs()[0].Name: joint}, parts)
				if err != nil {
					t.Fatalf("%s %s: %v", fam, mode, err)
				}
				y := out[primary.Outputs()[0].Name]
				s0 := 0
				worst := 0.0
				for i, p := range parts {
					want := runOne(t, p.Model, pieces[i])
					got := rowsOf(y, s0, s0+p.Rows)
					if e := relL2(got.F32, want.F32); !(e <= 1e-5) {
						t.Errorf("%s %s: part %d (%s, %d rows): relative L2 %.3g against its own run", fam, mode, i, plan[i].ref, p.Rows, e)
					} else {
						worst = max(worst, e)
					}
					s0 += p.Rows
				}
				t.Logf("%s %s: %d parts, worst relative L2 against separate runs %.3g", fam, mode, len(parts), worst)
			}
			cache.Close()
		}
	}
}

func concatRows(ts []*Tensor) *Tensor {
	out := &Tensor{DType: ts[0].DType, Shape: append([]int{0}, ts[0].Shape[1:]...)}
	for _, t := range ts {
		out.Shape[0] += t.Shape[0]
		out.F32 = append(out.F32, t.F32...)
		out.I64 = append(out.I64, t.I64...)
	}
	return out
}

// Models of different families, or loaded in different modes, do not join.
func TestJoinableRefuses(t *testing.T) {
	s := openStore(t)
	importFile(t, s, filepath.Join(familyDir, "digits-mlp-base.onnx"), "mlp", 1e-3, "")
	importFile(t, s, filepath.Join(familyDir, "digits-cnn-base.onnx"), "cnn", 1e-3, "")
	cache, err := NewBaseCache(16 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	load := func(ref string, mode Mode) *Model {
		md, err := Load(s, ref, Options{Mode: mode, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		return md
	}
	mlp, cnn, mlpF32 := load("mlp", ModeCompressed), load("cnn", ModeCompressed), load("mlp", ModeF32)
	for _, o := range []*Model{cnn, mlpF32} {
		if err := mlp.Joinable(o); !errors.Is(err, ErrNotJoinable) {
			t.Errorf("Joinable(%s %s, %s %s) = %v, want ErrNotJoinable", mlp.Ref, mlp.Mode, o.Ref, o.Mode, err)
		}
	}
	if mlp.JoinKey() == cnn.JoinKey() || mlpF32.JoinKey() != "" {
		t.Errorf("join keys: mlp %q, cnn %q, mlp f32 %q", mlp.JoinKey(), cnn.JoinKey(), mlpF32.JoinKey())
	}
	if err := mlp.Joinable(load("mlp", ModeCompressed)); err != nil {
		t.Errorf("a second load of the same model does not join: %v", err)
	}
	x := readNpy(t, filepath.Join(familyDir, "ref", "digits-mlp-base.input.npy"))
	_, err = mlp.NewSession().RunParts(context.Background(), map[string]*Tensor{mlp.Inputs()[0].Name: x},
		[]Part{{Model: mlp, Rows: 1}, {Model: cnn, Rows: x.Shape[0] - 1}})
	if !errors.Is(err, ErrNotJoinable) {
		t.Errorf("RunParts over two families: %v, want ErrNotJoinable", err)
	}
	_, err = mlp.NewSession().RunParts(context.Background(), map[string]*Tensor{mlp.Inputs()[0].Name: x},
		[]Part{{Model: mlp, Rows: x.Shape[0] + 1}})
	if err == nil {
		t.Error("RunParts with more rows than the input has: no error")
	}
}
