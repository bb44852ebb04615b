package store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
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
