package main

import (
	"bytes"
	"io"
	"math"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// maxError reads tensors a block at a time and reports the largest error and the
// first unmatched NaN or Inf by their place in the whole tensor, past the first
// block too.
func TestMaxErrorAcrossBlocks(t *testing.T) {
	const n = 2*compareBlock + 12345
	a, b := make([]float32, n), make([]float32, n)
	for i := range a {
		a[i] = float32(i%1000) / 1000
		b[i] = a[i]
	}
	b[compareBlock+7] += 0.01
	a[n-3], b[n-3] = float32(math.Inf(1)), float32(math.Inf(1)) // matching: fine
	source := func(v []float32) *graph.Source {
		buf := make([]byte, 4*len(v))
		quant.EncodeF32(buf, v)
		ts := []graph.TensorInfo{{Name: "w", DType: graph.F32, Shape: []int64{n}, Size: int64(len(buf))}}
		return graph.NewSource(graph.FormatSafetensors, ts, nil, func(int) (io.Reader, error) { return bytes.NewReader(buf), nil })
	}
	worst, bad, err := maxError(source(a), 0, source(b), 0)
	if err != nil || bad != -1 || math.Abs(worst-0.01) > 1e-6 {
		t.Fatalf("maxError = %v, %d, %v; want 0.01, -1", worst, bad, err)
	}
	b[2*compareBlock+5] = float32(math.NaN())
	if _, bad, err := maxError(source(a), 0, source(b), 0); err != nil || bad != 2*compareBlock+5 {
		t.Fatalf("unmatched NaN at %d, %v; want %d", bad, err, 2*compareBlock+5)
	}
}
