package infer

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/quant"
)

// measureGEMV times batch-1 products with a 4096 x 4096 weight: fused int16 base
// + 4-bit delta (group 64), dense f32, and a parallel copy of a buffer far
// larger than the caches, all in this one run.
func measureGEMV(threads int) GEMV {
	const rows, cols, group = 4096, 4096, 64
	n := rows * cols
	rng := rand.New(rand.NewPCG(7, 7))
	base := make([]int16, n)
	for i := range base {
		base[i] = int16(rng.IntN(4001) - 2000)
	}
	d := &quant.GroupPacked{Bits: 4, Group: group, N: n, Data: make([]byte, quant.PackedLen(n, 4)),
		Zero: make([]int32, (n+group-1)/group), Scale64: 2e-4}
	d.Scale = float32(d.Scale64)
	for i := range d.Data {
		d.Data[i] = byte(rng.Uint32())
	}
	for i := range d.Zero {
		d.Zero[i] = int32(rng.IntN(9) - 8)
	}
	w := &kernels.Packed{Rows: rows, Cols: cols, BaseI16: base, Delta: d}
	x := make([]float32, cols)
	for i := range x {
		x[i] = rng.Float32()
	}
	y := make([]float32, rows)
	g := GEMV{Rows: rows, Cols: cols, BytesPerWeight: float64(w.Bytes()) / float64(n)}
	g.FusedGBs = rate(float64(w.Bytes()), func() { kernels.MatMulPacked(y, x, 1, w, true) })

	dense := make([]float32, n)
	kernels.Dense(dense, w)
	g.DenseGBs = rate(float64(4*n), func() { kernels.MatMulT(y, x, dense, 1, cols, rows) })

	src, dst := make([]float32, 64<<20), make([]float32, 64<<20) // 256 MiB each
	for i := range src {
		src[i] = float32(i & 1023)
		dst[i] = 1
	}
	// bytes read plus bytes written, as copy bandwidth is usually counted
	g.MemGBs = rate(float64(8*len(src)), func() { parallelCopy(dst, src, threads) })
	return g
}

// rate runs fn for about half a second after a warm-up and returns bytes/s in GB/s.
func rate(bytes float64, fn func()) float64 {
	fn()
	var runs int
	t0 := time.Now()
	for time.Since(t0) < 500*time.Millisecond || runs < 3 {
		fn()
		runs++
	}
	return bytes * float64(runs) / time.Since(t0).Seconds() / 1e9
}

// parallelCopy copies src to dst split over threads goroutines: the runtime's
// memmove is SIMD, so this reaches what memory can do (a scalar Go loop would not).
func parallelCopy(dst, src []float32, threads int) {
	var wg sync.WaitGroup
	chunk := (len(src) + threads - 1) / threads
	for t := range threads {
		lo, hi := min(t*chunk, len(src)), min((t+1)*chunk, len(src))
		wg.Add(1)
		go func() {
			defer wg.Done()
			copy(dst[lo:hi], src[lo:hi])
		}()
	}
	wg.Wait()
}
