package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// Fine-tunes imported one after another against one base: from the third on, the
// base's codes (or bytes, lossless) come from the cache, and nothing the store
// keeps depends on it.
func TestBaseCodesKeptAcrossImports(t *testing.T) {
	for _, tau := range []float64{1e-3, 0} {
		t.Run(fmt.Sprintf("tau=%g", tau), func(t *testing.T) { baseCodesKept(t, tau) })
	}
}

func baseCodesKept(t *testing.T, tau float64) {
	base, _ := transformerPair()
	cached, fresh := openTest(t), openTest(t)
	importOpts(t, cached, base, ImportOptions{Ref: "base", Tau: tau})
	importOpts(t, fresh, base, ImportOptions{Ref: "base", Tau: tau})
	fts := map[string]*memModel{}
	for i, ref := range []string{"ft1", "ft2", "ft3", "ft4"} {
		ft := moved(base, uint64(i))
		fts[ref] = ft
		before := cached.baseCodes.hits
		got := importOpts(t, cached, ft, ImportOptions{Ref: ref, Tau: tau, Base: "base"})
		// a store that has never kept codes imports the same fine-tune the same way
		want := importOpts(t, fresh, ft, ImportOptions{Ref: "ft", Tau: tau, Base: "base", Force: true})
		if got.StoredBytes != want.StoredBytes || got.DeltaTensors != want.DeltaTensors {
			t.Fatalf("%s: %d bytes in %d deltas, a fresh store %d in %d", ref, got.StoredBytes, got.DeltaTensors, want.StoredBytes, want.DeltaTensors)
		}
		if err := fresh.Remove("ft"); err != nil {
			t.Fatal(err)
		}
		fresh.baseCodes = codeCache{}
		// every delta's base from the third on (a tensor may have two
		// candidates, and a base serve several tensors of one model)
		if hits := cached.baseCodes.hits - before; i >= 2 && (hits < got.DeltaTensors || got.DeltaTensors < 40) {
			t.Fatalf("%s: %d cache hits for %d deltas", ref, hits, got.DeltaTensors)
		}
	}
	for ref, ft := range fts {
		checkWithin(t, cached, ref, ft, tau)
	}
	// what is kept is still the base: decoding it again gives the same
	man := mustModel(t, cached, "base")
	checked := 0
	for _, mt := range man.Tensors {
		if mt.Inline() {
			continue
		}
		rec := mustRecord(t, cached, mt.ID)
		k := codeKey{id: mt.ID, blob: rec.Blob, tau: tau}
		if rec.Encoding.Lossy() {
			kept := cached.baseCodes.get(k).codes
			if kept == nil {
				continue
			}
			cs, err := gridCodesOf(cached.be, mt.ID, rec, tau, nil)
			if err != nil {
				t.Fatal(err)
			}
			for j := range cs {
				if !slices.Equal(quant.NarrowOf(cs[j]).Q, kept[j].Q) {
					t.Fatalf("%s: kept codes changed", mt.Name)
				}
			}
			checked++
			continue
		}
		k.tau = 0
		kept := cached.baseCodes.get(k).raw
		if kept == nil {
			continue
		}
		b, err := wholeTensor(cached.be, mt.ID, rec)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, kept) {
			t.Fatalf("%s: kept bytes changed", mt.Name)
		}
		checked++
	}
	if checked < 40 {
		t.Fatalf("%d tensors kept", checked)
	}

	// Removing every model deletes the base's records, and what was kept goes too.
	for _, ref := range []string{"ft1", "ft2", "ft3", "ft4", "base"} {
		if err := cached.Remove(ref); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(cached.baseCodes.kept); n != 0 || cached.baseCodes.bytes != 0 {
		t.Fatalf("%d kept tensors (%d bytes) after their records went", n, cached.baseCodes.bytes)
	}
}

// The cache keeps nothing past its budget, and a second decode is what it keeps.
func TestCodeCacheBudget(t *testing.T) {
	cc := codeCache{budget: 800}
	big := func(n int) []*quant.Codes { return []*quant.Codes{{Tau: 1, Q: make([]int64, n)}} }
	k1, k2, k3 := codeKey{blob: 1, tau: 1}, codeKey{blob: 2, tau: 1}, codeKey{blob: 3, tau: 1}
	if cc.offer(k1, big(10)); cc.get(k1).codes != nil {
		t.Fatal("kept on first decode")
	}
	if cc.offer(k1, big(10)); cc.get(k1).codes == nil {
		t.Fatal("not kept on second decode")
	}
	cc.offer(k2, big(400))
	if cc.offer(k2, big(400)); cc.get(k2).codes != nil {
		t.Fatal("kept past the budget")
	}
	wide := big(10)
	wide[0].Q[3] = 1 << 20
	cc.offer(k3, wide)
	if cc.offer(k3, wide); cc.get(k3).codes != nil {
		t.Fatal("kept codes wider than 16 bits")
	}
	k4 := codeKey{blob: 4}
	if cc.offerRaw(k4, make([]byte, 100)); cc.get(k4).raw != nil {
		t.Fatal("bytes kept on first decode")
	}
	if cc.offerRaw(k4, make([]byte, 100)); cc.get(k4).raw == nil {
		t.Fatal("bytes not kept on second decode")
	}
	cc.drop(1)
	cc.drop(4)
	if cc.get(k1).codes != nil || cc.get(k4).raw != nil || cc.bytes != 0 {
		t.Fatalf("dropped codes still kept (%d bytes)", cc.bytes)
	}
}

// moved returns m with each element of its float32 tensors moved by N(0, 0.004),
// drawn from seed: a fine-tune of m.
func moved(m *memModel, seed uint64) *memModel {
	r := rand.New(rand.NewPCG(seed, 17))
	out := &memModel{}
	for i, ti := range m.tensors {
		v := make([]float32, len(m.data[i])/4)
		quant.DecodeF32(v, m.data[i])
		for j := range v {
			v[j] += float32(r.NormFloat64() * 0.004)
		}
		out.add(ti.Name, ti.DType, ti.Shape, f32bytes(v))
	}
	return out
}

// A failed import leaves nothing of its new bases in the cache.
func TestFailedImportDropsKeptBases(t *testing.T) {
	for _, tau := range []float64{1e-3, 0} {
		s := openTest(t)
		r := rand.New(rand.NewPCG(2, 3))
		a := make([]float32, 256*128)
		for i := range a {
			a[i] = float32(r.NormFloat64() * 0.02)
		}
		m := &memModel{}
		m.add("a", graph.F32, []int64{256, 128}, f32bytes(a))
		for _, name := range []string{"b", "c", "d"} { // each a delta against a
			v := slices.Clone(a)
			for i := range v {
				v[i] += float32(r.NormFloat64() * 0.002)
			}
			m.add(name, graph.F32, []int64{256, 128}, f32bytes(v))
		}
		ctx, cancel := context.WithCancel(context.Background())
		src := m.source()
		open := src.Open
		n := 0
		src = graph.NewSource(src.Format, src.Tensors, nil, func(i int) (io.Reader, error) {
			if n++; n == len(m.tensors) {
				cancel()
			}
			return open(i)
		})
		if _, err := s.Import(ctx, src, ImportOptions{Ref: "m", Tau: tau}); err == nil {
			t.Fatal("cancelled import succeeded")
		}
		if k := len(s.baseCodes.kept); k != 0 || s.baseCodes.bytes != 0 {
			t.Fatalf("tau %g: %d tensors (%d bytes) of a failed import kept", tau, k, s.baseCodes.bytes)
		}
		// and the same import, whole, keeps a's decode from its second use on
		res := importOpts(t, s, m, ImportOptions{Ref: "m", Tau: tau})
		if res.DeltaTensors != 3 || len(s.baseCodes.kept) != 1 {
			t.Fatalf("tau %g: %d deltas, %d tensors kept; want 3 and a", tau, res.DeltaTensors, len(s.baseCodes.kept))
		}
	}
}
