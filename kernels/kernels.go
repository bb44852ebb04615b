package kernels

// The exported kernels. For now each calls its reference; the SIMD and parallel
// versions replace these bodies without changing the signatures.

// MatMul computes c[m×n] = a[m×k] · b[k×n] (row-major, contiguous), overwriting c.
func MatMul(c, a, b []float32, m, k, n int) { matMul(c, a, b, m, k, n, false) }

// MatMulT computes c[m×n] = a[m×k] · w[n×k]ᵀ, overwriting c.
func MatMulT(c, a, w []float32, m, k, n int) { matMul(c, a, w, m, k, n, true) }

// MatMulPacked computes c = a · W for the packed matrix W: with transposed false W is
// [k×n] (k = w.Rows, n = w.Cols) and c[m×n] = a[m×k]·W; with transposed true W is
// [n×k] and c[m×n] = a[m×k]·Wᵀ. It never builds the dense W.
func MatMulPacked(c, a []float32, m int, w *Packed, transposed bool) {
	matMulPacked(c, a, m, w, transposed)
}

// Dense writes the w.Rows*w.Cols elements of w to dst.
func Dense(dst []float32, w *Packed) { dense(dst, w) }

// Conv2D computes dst[N,M,OH,OW] = conv(x[N,C,H,W], w[M,C/Group,KH,KW]) + bias[M];
// bias may be nil.
func Conv2D(dst, x, w, bias []float32, p ConvParams) { conv2D(dst, x, w, bias, p) }

// Softmax replaces each of the rows of x (cols wide) by its softmax.
func Softmax(x []float32, rows, cols int) { softmax(x, rows, cols) }

// LayerNorm normalizes each row of x (cols wide) to zero mean and unit variance,
// then scales by scale and adds bias (nil: none), writing dst (may alias x).
func LayerNorm(dst, x, scale, bias []float32, rows, cols int, eps float32) {
	layerNorm(dst, x, scale, bias, rows, cols, eps)
}

// Gelu writes x * (1 + erf(x/√2)) / 2 to dst (may alias x).
func Gelu(dst, x []float32) { gelu(dst, x) }

// Erf writes erf(x) to dst (may alias x).
func Erf(dst, x []float32) { erf(dst, x) }

// ParallelFor calls fn on disjoint ranges [lo, hi) that cover [0, n), each at
// least grain long, over at most Threads() goroutines (the caller's included),
// sharing the kernels' helper budget: nested and concurrent calls never run
// more than Threads() goroutines between them. A panic in fn is re-raised in
// the caller.
func ParallelFor(n, grain int, fn func(lo, hi int)) { parallelFor(n, grain, fn) }

// SetThreads sets how many goroutines the kernels use; n <= 0 means GOMAXPROCS.
func SetThreads(n int) { setThreads(n) }
