package store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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

// BenchmarkImportFineTune measures importing a fine-tune whose base is stored: the
// dedup path (index lookup, exact rerank, encoding against the base) at tau 0 and
// tau > 0. Run with -cpu 1 for the per-core figure.
func BenchmarkImportFineTune(b *testing.B) {
	base, ft := fineTunePair(8, 1024, 1024)
	for _, tau := range []float64{0, 1e-4, 1e-3} {
		b.Run(fmt.Sprintf("tau=%g", tau), func(b *testing.B) {
			s, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.Import(context.Background(), base.source(), ImportOptions{Ref: "base", Tau: tau}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(8 << 22)
			var stored int64
			for i := 0; b.Loop(); i++ {
				res, err := s.Import(context.Background(), ft.source(), ImportOptions{Ref: "ft", Tau: tau})
				if err != nil {
					b.Fatal(err)
				}
				if res.DeltaTensors != 8 {
					b.Fatalf("%d deltas", res.DeltaTensors)
				}
				stored = res.StoredBytes
				b.StopTimer()
				if err := s.Remove("ft"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(8<<22)/float64(stored), "ratio")
		})
	}
}
