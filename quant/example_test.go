package quant_test

import (
	"fmt"

	"github.com/neurstore/neurstore/quant"
)

// A base and a fine-tune on the grid of tau 1e-3: the delta is integer codes,
// and base + delta rebuilds the fine-tune within tau.
func ExampleDelta() {
	base, _ := quant.Quantize([]float32{0.5, -0.25, 0.1, 0}, 1e-3)
	ft, _ := quant.Quantize([]float32{0.504, -0.25, 0.097, 0.01}, 1e-3)
	d, _ := quant.Delta(ft, base)
	fmt.Println("delta codes:", d.Q)
	back, _ := d.AddBase(base)
	w := make([]float32, 4)
	back.Dequantize(w)
	fmt.Println("rebuilt:", w)
	// Output:
	// delta codes: [2 0 -1 5]
	// rebuilt: [0.504 -0.25 0.098 0.01]
}

// A delta that is an outer product (a merged rank-1 adapter) is predicted
// exactly by integer factors, so only a residual of zeros is left to code.
func ExampleFit() {
	const rows, cols = 64, 40
	d := make([]int64, rows*cols)
	for i := range rows {
		for j := range cols {
			d[i*cols+j] = int64((i%7 - 3) * (j%5 - 2))
		}
	}
	fit := quant.Fit([][]int64{d}, rows, cols)
	lr := fit.Choose([][]int64{d}, []int{8, 10, 12})
	pred := make([]int64, len(d))
	lr.AddTo(pred, 0)
	var left int
	for i := range d {
		if d[i] != pred[i] {
			left++
		}
	}
	fmt.Printf("rank %d, %d of %d codes not predicted\n", lr.Rank, left, len(d))
	// Output:
	// rank 1, 0 of 2560 codes not predicted
}
