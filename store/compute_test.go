package store

import (
	"bytes"
	"math"
	"testing"

	"github.com/neurstore/neurstore/quant"
)

// GridDelta and GridCodes give, for every grid delta of a fine-tune, codes whose
// sum reconstructs exactly what ReadModelTensor reads, whether the base was stored
// at the same tau or losslessly.
func TestGridDeltaReconstructs(t *testing.T) {
	for _, baseTau := range []float64{1e-3, 0} {
		s := openTest(t)
		importOpts(t, s, familyModel(t, "digits-mlp-base.safetensors"), ImportOptions{Ref: "base", Tau: baseTau})
		importOpts(t, s, familyModel(t, "digits-mlp-ft1.safetensors"), ImportOptions{Ref: "ft", Tau: 1e-3, Base: "base"})
		man := mustModel(t, s, "ft")
		deltas := 0
		for i, mt := range man.Tensors {
			if mt.Inline() {
				continue
			}
			gd, ok, err := s.GridDelta(mt.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				continue
			}
			deltas++
			got := gridDeltaValues(t, s, gd)
			var buf bytes.Buffer
			if err := s.ReadModelTensor(man, i, &buf); err != nil {
				t.Fatal(err)
			}
			want := make([]float32, len(got))
			toFloat32(want, buf.Bytes(), mt.DType)
			for j := range got {
				if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
					t.Fatalf("base tau %g: %s[%d] = %v from codes, %v read", baseTau, mt.Name, j, got[j], want[j])
				}
			}
		}
		if deltas == 0 {
			t.Fatalf("base tau %g: no grid deltas in the fine-tune", baseTau)
		}
		// A non-delta tensor says so; a delta is refused as a base.
		if _, ok, err := s.GridDelta(mustModel(t, s, "base").Tensors[0].ID); ok || err != nil {
			t.Errorf("GridDelta of a base tensor: ok %v, err %v", ok, err)
		}
		// GridBase finds the base's grid records and their tau, and no delta.
		bases := 0
		for _, mt := range mustModel(t, s, "base").Tensors {
			if mt.Inline() {
				continue
			}
			tau, ok, err := s.GridBase(mt.ID)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				bases++
				if tau != baseTau {
					t.Errorf("GridBase of %s: tau %g, imported at %g", mt.Name, tau, baseTau)
				}
			}
		}
		if (bases > 0) != (baseTau > 0) {
			t.Errorf("base tau %g: GridBase finds %d grid bases", baseTau, bases)
		}
		for _, mt := range man.Tensors {
			if _, ok, _ := s.GridBase(mt.ID); ok && !mt.Inline() {
				if _, ok, _ := s.GridDelta(mt.ID); ok {
					t.Errorf("%s: GridBase and GridDelta both say yes", mt.Name)
				}
			}
		}
		for _, mt := range man.Tensors {
			if gd, ok, _ := s.GridDelta(mt.ID); ok {
				if _, err := s.GridCodes(mt.ID, gd.Tau); err == nil {
					t.Error("GridCodes of a delta: no error")
				}
				break
			}
		}
	}
}

func TestWholeCodes(t *testing.T) {
	a := &quant.Codes{Tau: 1, Q: []int64{1, 2, 0}, Exceptions: []quant.Exception{{Index: 2, Bits: 7}}}
	b := &quant.Codes{Tau: 1, Q: []int64{0, 5}, Exceptions: []quant.Exception{{Index: 0, Bits: 9}}}
	chunks := func(fn func(*quant.Codes) error) error {
		for _, c := range []*quant.Codes{a, b} {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
	c, err := wholeCodes(5, 1, chunks)
	if err != nil || len(c.Q) != 5 || c.Q[4] != 5 || len(c.Exceptions) != 2 || c.Exceptions[1].Index != 3 || c.Exceptions[1].Bits != 9 {
		t.Fatalf("joined %+v, %v", c, err)
	}
	for _, n := range []int64{4, 6} {
		if _, err := wholeCodes(n, 1, chunks); !IsCorruption(err) {
			t.Errorf("5 codes for %d elements: %v, want corruption", n, err)
		}
	}
}

// gridDeltaValues returns what the runtime's compressed mode computes with: the
// delta's codes added to its base's, dequantized.
func gridDeltaValues(t *testing.T, s *Store, gd *GridDelta) []float32 {
	t.Helper()
	base, err := s.GridCodes(gd.Base, gd.Tau)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := gd.Delta.AddBase(base)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(sum.Q))
	sum.Dequantize(got)
	return got
}
