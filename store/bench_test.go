package store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
)

// benchModel is a model of n tensors of size bytes each.
func benchModel(n, size int) *memModel {
	r := rand.New(rand.NewPCG(7, 7))
	m := &memModel{}
	for i := 0; i < n; i++ {
		m.add(fmt.Sprintf("t%d", i), 9 /* U8 */, []int64{int64(size)}, randBytes(r, size))
	}
	return m
}

// BenchmarkImport measures import throughput of new tensors, one pass (small
// tensors) and two passes (large ones).
func BenchmarkImport(b *testing.B) {
	for _, size := range []int{4 << 20, 64 << 20} {
		b.Run(fmt.Sprintf("tensor=%dMiB", size>>20), func(b *testing.B) {
			m := benchModel(4, size)
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(4 * size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ref := fmt.Sprintf("m%d", i)
				if _, err := s.Import(context.Background(), m.source(), ImportOptions{Ref: ref}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Remove(ref); err != nil { // so the next import stores again
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkReadTensor measures reading a stored tensor back (the export path).
func BenchmarkReadTensor(b *testing.B) {
	const size = 64 << 20
	m := benchModel(1, size)
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	res, err := s.Import(context.Background(), m.source(), ImportOptions{Ref: "m"})
	if err != nil {
		b.Fatal(err)
	}
	id := res.Manifest.Tensors[0].ID
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.ReadTensor(id, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}

// fineTunePair returns a base of n float32 matrices of rows x cols (N(0, 0.02)) and a
// fine-tune of it (each element moved by N(0, 0.002), a relative L2 distance of 0.1).
func fineTunePair(n, rows, cols int) (base, ft *memModel) {
	r := rand.New(rand.NewPCG(3, 4))
	base, ft = &memModel{}, &memModel{}
	for i := 0; i < n; i++ {
		b := make([]float32, rows*cols)
		f := make([]float32, rows*cols)
		for j := range b {
			b[j] = float32(r.NormFloat64() * 0.02)
			f[j] = b[j] + float32(r.NormFloat64()*0.002)
		}
		name := fmt.Sprintf("layer%d.weight", i)
		base.add(name, graph.F32, []int64{int64(rows), int64(cols)}, f32bytes(b))
		ft.add(name, graph.F32, []int64{int64(rows), int64(cols)}, f32bytes(f))
	}
	return base, ft
}

// transformerPair returns a base and a fine-tune laid out like text-medium (d_model
// 192, 4 layers, FFN 768, vocab 256, context 64: 54 tensors, 7.6 MB, 35 of them
// one-dimensional), the shapes of the held-out family: many small tensors,
// where per-tensor costs show. Weights are N(0, 0.02) (norm gains about 1); the
// fine-tune moves each by N(0, 0.004), about what 300 Adam steps at lr 3e-4 do.
func transformerPair() (base, ft *memModel) {
	r := rand.New(rand.NewPCG(8, 9))
	base, ft = &memModel{}, &memModel{}
	add := func(name string, shape []int64, mean, sd float64) {
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		b, f := make([]float32, n), make([]float32, n)
		for i := range b {
			b[i] = float32(mean + r.NormFloat64()*sd)
			f[i] = b[i] + float32(r.NormFloat64()*0.004)
		}
		base.add(name, graph.F32, shape, f32bytes(b))
		ft.add(name, graph.F32, shape, f32bytes(f))
	}
	const d, ffn, vocab, ctx = 192, 768, 256, 64
	add("tok.weight", []int64{vocab, d}, 0, 0.02)
	add("pos.weight", []int64{ctx, d}, 0, 0.02)
	for l := range 4 {
		p := fmt.Sprintf("blocks.%d.", l)
		add(p+"ln1.weight", []int64{d}, 1, 0.02)
		add(p+"ln1.bias", []int64{d}, 0, 0.02)
		add(p+"qkv.weight", []int64{3 * d, d}, 0, 0.02)
		add(p+"qkv.bias", []int64{3 * d}, 0, 0.02)
		add(p+"proj.weight", []int64{d, d}, 0, 0.02)
		add(p+"proj.bias", []int64{d}, 0, 0.02)
		add(p+"ln2.weight", []int64{d}, 1, 0.02)
		add(p+"ln2.bias", []int64{d}, 0, 0.02)
		add(p+"fc1.weight", []int64{ffn, d}, 0, 0.02)
		add(p+"fc1.bias", []int64{ffn}, 0, 0.02)
		add(p+"fc2.weight", []int64{d, ffn}, 0, 0.02)
		add(p+"fc2.bias", []int64{d}, 0, 0.02)
	}
	add("ln.weight", []int64{d}, 1, 0.02)
	add("ln.bias", []int64{d}, 0, 0.02)
	add("head.weight", []int64{vocab, d}, 0, 0.02)
	return base, ft
}

// BenchmarkImportTransformer measures importing a transformer-shaped fine-tune
// (transformerPair) against its stored base, in one process: the figure "neurrun
// import" reaches from its second file on. Run with -cpu 1 for the per-core figure.
func BenchmarkImportTransformer(b *testing.B) {
	base, ft := transformerPair()
	for _, tau := range []float64{1e-4, 1e-3} {
		b.Run(fmt.Sprintf("tau=%g", tau), func(b *testing.B) {
			benchFineTune(b, base, ft, ImportOptions{Tau: tau, Base: "base"}, 0)
		})
	}
}

// BenchmarkImportFamilyFineTune measures importing a real fine-tune against its
// stored base, in one process, the figure bench/REPORT.md gives for text-medium:
// NEURSTORE_FAMILY names a folder made by bench/family/text_small.py and its
// family (say /tmp/text-medium:text-medium); the base is imported at each tau
// and ft1 imported again and again. It is skipped without NEURSTORE_FAMILY. Run
// with -cpu 1 for the per-core figure.
func BenchmarkImportFamilyFineTune(b *testing.B) {
	dir, fam, ok := strings.Cut(os.Getenv("NEURSTORE_FAMILY"), ":")
	if !ok {
		b.Skip("NEURSTORE_FAMILY (DIR:FAMILY) not set")
	}
	load := func(role string) *memModel { return loadModel(b, filepath.Join(dir, fam+"-"+role+".safetensors")) }
	base, ft := load("base"), load("ft1")
	for _, tau := range []float64{0, 1e-4, 1e-3} {
		b.Run(fmt.Sprintf("tau=%g", tau), func(b *testing.B) {
			benchFineTune(b, base, ft, ImportOptions{Tau: tau, Base: "base"}, 0)
		})
	}
}

// BenchmarkImportFineTune measures importing a fine-tune whose base is stored: the
// dedup path (index lookup, exact rerank, encoding against the base) at tau 0 and
// tau > 0. Run with -cpu 1 for the per-core figure.
func BenchmarkImportFineTune(b *testing.B) {
	base, ft := fineTunePair(8, 1024, 1024)
	for _, tau := range []float64{0, 1e-4, 1e-3} {
		b.Run(fmt.Sprintf("tau=%g", tau), func(b *testing.B) {
			benchFineTune(b, base, ft, ImportOptions{Tau: tau}, 8)
		})
	}
}

// benchFineTune stores base as "base", then imports ft as "ft" (with opts) and
// removes it again, timing the imports; wantDeltas > 0 checks how many of ft's
// tensors became deltas. It reports the fine-tune's compression ratio.
func benchFineTune(b *testing.B, base, ft *memModel, opts ImportOptions, wantDeltas int) {
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Import(context.Background(), base.source(), ImportOptions{Ref: "base", Tau: opts.Tau}); err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, t := range ft.tensors {
		size += t.Size
	}
	b.SetBytes(size)
	opts.Ref = "ft"
	var stored int64
	for b.Loop() {
		res, err := s.Import(context.Background(), ft.source(), opts)
		if err != nil {
			b.Fatal(err)
		}
		if wantDeltas > 0 && res.DeltaTensors != wantDeltas {
			b.Fatalf("%d deltas, want %d", res.DeltaTensors, wantDeltas)
		}
		stored = res.StoredBytes
		b.StopTimer()
		if err := s.Remove("ft"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(size)/float64(stored), "ratio")
}
