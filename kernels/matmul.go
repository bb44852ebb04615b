package kernels

import (
	"sync"
)

// Dense matrix products: MatMul and MatMulT.
//
// Products with m > gemvMaxM rows run as a cache-blocked GEMM: the output is cut
// into tasks of at most gemmMC rows × gemmNC columns (several tasks run in
// parallel); a task walks the reduction dimension in steps of gemmKC, packing
// the step's slice of b into panels of nr columns (packB: kc×nr floats each,
// kc-major, the panels together about 256-512 KB, for L2) and of a into panels
// of mr rows (packA: kc×mr floats each), then calls the level's micro-kernel,
// which keeps an mr×nr tile of c in registers, once per tile. Edge tiles narrower
// than nr go through a small buffer. Products with 1..gemvMaxM rows stream the
// weight once through the GEMV kernels: MatMulT's rows of w are dot products
// with the activations (opDot), MatMul's rows of b are added to the outputs
// scaled by an activation each (opAxpy).
//
// The kernels come in levels (matLevel): pure Go, always there, and the
// assembly ones the CPU runs (matmul_amd64.go). useLevel is the one the
// exported functions use; the tests switch it to check every level.

const (
	gemvMaxM = 8   // products with at most this many rows run as GEMV
	gemmKC   = 256 // reduction steps per packed panel
	gemmMC   = 256 // rows of a task, at most (rounded down to the level's mr)
	gemmNC   = 512 // columns of a task, at most (a multiple of every nr)

	// parallelFlops is the work (2*m*k*n) under which a product stays on the
	// caller's goroutine.
	parallelFlops = 1 << 20
)

// GEMV operations.
const (
	opDot  = iota // c[i][r] = sum_p a[i][p] * W[r][p]: one output per weight row
	opAxpy        // c[i][:] += a[i][r] * W[r][:]: one activation per weight row
)

// matLevel is one implementation of the matrix kernels.
type matLevel struct {
	name   string
	mr, nr int // GEMM micro-tile

	// micro computes the mr×nr tile at c (rows ldc apart): c = a·b, or c += a·b
	// with acc, over kc steps of the packed panels a (lv.mr floats a step, the
	// first mr used) and b (lv.nr floats a step). mr <= lv.mr.
	micro func(mr, kc int, a, b, c []float32, ldc int, acc bool)

	// transpose8, if not nil, writes dst[(8b+q)*ldd+r] = src[r*ld+8b+q] for r, q
	// < 8 and b < n (both slices long enough).
	transpose8 func(dst, src []float32, ld, ldd, n int)

	// gemv runs opDot or opAxpy for m (1..gemvMaxM) activation rows over rows
	// rows of rowLen floats of w, ldw apart (see gemvGo).
	gemv func(op, m, rows, rowLen int, a []float32, lda int, c []float32, ldc int, w []float32, ldw int)

	// The packed kernels (packed.go); nil for the pure-Go level.
	vl        int // lanes: packed runs start at multiples of vl, rows are multiples of it
	loadBytes int // bytes one delta load reads from the vector's first byte
	// gemvPacked is gemv for the packed weight's run of rows rows of rowLen
	// elements from flat element f0; see packedFast for what it requires.
	gemvPacked func(op, m, rows, rowLen int, a []float32, lda int, c []float32, ldc int, w *Packed, f0 int)
	// decode writes elements [f0, f0+len(dst)) of w without its exceptions;
	// f0 and len(dst) are multiples of vl and the run has no group boundary
	// inside a vector.
	decode func(dst []float32, w *Packed, f0 int)
	// prefetch, if not nil, asks for the memory of elements [f0, f0+n) of w.
	prefetch func(w *Packed, f0, n int)
}

// goLevel is the pure-Go level: the fallback, and the baseline the tests compare
// the assembly levels with.
var goLevel = &matLevel{
	name: "go", mr: 4, nr: 4,
	micro: microGo,
	gemv:  gemvGo,
}

// matLevels lists the levels this build and CPU can run, slowest first; useLevel
// is the one the kernels use: the fastest.
var (
	matLevels = append([]*matLevel{goLevel}, matSIMDLevels()...)
	useLevel  = matLevels[len(matLevels)-1]
)

// matMul computes c = a·B for B = b [k×n] or, with trans, B = bᵀ for b [n×k].
func matMul(c, a, b []float32, m, k, n int, trans bool) {
	if m == 0 || n == 0 {
		return
	}
	c, a, b = c[:m*n], a[:m*k], b[:k*n]
	switch {
	case k == 0:
		clear(c)
	case m <= gemvMaxM:
		gemvDense(useLevel, c, a, b, m, k, n, trans)
	default:
		gemm(useLevel, c, a, bSource{b: b, trans: trans, k: k, n: n}, m)
	}
}

// gemvDense is matMul for m <= gemvMaxM: it splits the weight's rows over the
// threads for large products (for MatMul, whose rows of b are summed, each part
// into its own buffer).
func gemvDense(lv *matLevel, c, a, b []float32, m, k, n int, trans bool) {
	if trans {
		// c[i][j] = a[i]·w[j]: w's rows are outputs
		parts := min(matParts(2*m*k*n), n)
		if parts <= 1 {
			lv.gemv(opDot, m, n, k, a, k, c, n, b, k)
			return
		}
		matParallel(parts, func(lo, hi int) {
			j0, j1 := lo*n/parts, hi*n/parts
			lv.gemv(opDot, m, j1-j0, k, a, k, c[j0:], n, b[j0*k:], k)
		})
		return
	}
	// c[i] = sum_p a[i][p]*b[p]: split b's rows, summing the parts
	parts := min(matParts(2*m*k*n), k)
	if parts <= 1 { // here, so that the closure below is made only when needed
		clear(c)
		lv.gemv(opAxpy, m, k, n, a, k, c, n, b, n)
		return
	}
	axpyParts(c, m, n, k, parts, func(out []float32, r0, r1 int) {
		lv.gemv(opAxpy, m, r1-r0, n, a[r0:], k, out, n, b[r0*n:], n)
	})
}

// axpyParts runs an opAxpy product over rows weight rows split into parts (> 1): it
// clears c (m×n), calls fn(out, r0, r1) for each part's rows [r0, r1) with out c
// for the first part and a buffer of its own (cleared) for the others, each part
// on its own goroutine, and adds the buffers to c. Each part streams a contiguous
// piece of the weight.
func axpyParts(c []float32, m, n, rows, parts int, fn func(out []float32, r0, r1 int)) {
	clear(c)
	buf := getMatScratch((parts - 1) * m * n)
	partial := *buf
	clear(partial)
	matParallel(parts, func(lo, hi int) {
		out := c
		if lo > 0 {
			out = partial[(lo-1)*m*n : lo*m*n]
		}
		fn(out, lo*rows/parts, hi*rows/parts)
	})
	for t := range parts - 1 {
		p := partial[t*m*n : (t+1)*m*n]
		for i, v := range p {
			c[i] += v
		}
	}
	putMatScratch(buf)
}

// gemvGo is the pure-Go GEMV (matLevel.gemv): opDot computes c[i*ldc+r] =
// sum_p a[i*lda+p]*w[r*ldw+p], opAxpy c[i*ldc+j] += sum_r a[i*lda+r]*w[r*ldw+j],
// for i < m, r < rows and p, j < rowLen.
func gemvGo(op, m, rows, rowLen int, a []float32, lda int, c []float32, ldc int, w []float32, ldw int) {
	for r := range rows {
		wr := w[r*ldw : r*ldw+rowLen]
		for i := range m {
			if op == opDot {
				ar := a[i*lda : i*lda+rowLen]
				var s0, s1, s2, s3 float32
				p := 0
				for ; p+4 <= len(wr); p += 4 {
					s0 += ar[p] * wr[p]
					s1 += ar[p+1] * wr[p+1]
					s2 += ar[p+2] * wr[p+2]
					s3 += ar[p+3] * wr[p+3]
				}
				for ; p < len(wr); p++ {
					s0 += ar[p] * wr[p]
				}
				c[i*ldc+r] = (s0 + s1) + (s2 + s3)
				continue
			}
			s := a[i*lda+r]
			cr := c[i*ldc : i*ldc+rowLen]
			for j, v := range wr {
				cr[j] += s * v
			}
		}
	}
}

// bSource is the right-hand matrix B [k×n] of a GEMM: b [k×n] or, with trans, the
// transpose of b [n×k]; or the packed w (W [k×n], or W [n×k] with trans).
type bSource struct {
	b     []float32
	w     *Packed
	trans bool
	k, n  int
}

// gemmJob is one GEMM c[m×n] = a[m×k]·B cut into rowBlocks×colBlocks tasks of
// mc×nc.
type gemmJob struct {
	lv                   *matLevel
	c, a                 []float32
	src                  bSource
	m                    int
	mc, nc               int
	rowBlocks, colBlocks int
}

// gemm computes c = a·B with lv's micro-kernel, in parallel for large products.
func gemm(lv *matLevel, c, a []float32, src bSource, m int) {
	k, n := src.k, src.n
	g := gemmJob{lv: lv, c: c, a: a, src: src, m: m}
	g.mc = min(gemmMC/lv.mr*lv.mr, roundUp(m, lv.mr))
	g.nc = min(gemmNC, roundUp(n, lv.nr))
	want := matParts(2 * m * k * n)
	for {
		g.rowBlocks, g.colBlocks = ceilDiv(m, g.mc), ceilDiv(n, g.nc)
		if g.rowBlocks*g.colBlocks >= want {
			break
		}
		// more tasks: halve the longer side that can still be halved
		if g.nc >= 2*lv.nr && (g.nc >= g.mc || g.mc < 2*lv.mr) {
			g.nc = roundUp(g.nc/2, lv.nr)
		} else if g.mc >= 2*lv.mr {
			g.mc = roundUp(g.mc/2, lv.mr)
		} else {
			break
		}
	}
	tasks := g.rowBlocks * g.colBlocks
	parts := min(want, tasks)
	if parts <= 1 {
		g.run(0, tasks)
		return
	}
	shared := &gemmJob{}
	*shared = g // only here on the heap
	matParallel(parts, func(lo, hi int) {
		shared.run(lo*tasks/parts, hi*tasks/parts)
	})
}

// run runs tasks [lo, hi) with one scratch buffer.
func (g *gemmJob) run(lo, hi int) {
	lv := g.lv
	kc := min(gemmKC, g.src.k)
	bLen := kc * roundUp(g.nc, lv.nr)
	aLen := kc * roundUp(g.mc, lv.mr)
	rowLen := max(g.nc, kc*lv.nr) // packB's decode buffer
	buf := getMatScratch(bLen + aLen + rowLen + lv.mr*lv.nr)
	s := *buf
	bp, s := s[:bLen], s[bLen:]
	ap, s := s[:aLen], s[aLen:]
	row, tile := s[:rowLen], s[rowLen:rowLen+lv.mr*lv.nr]
	for t := lo; t < hi; t++ {
		g.task(t, bp, ap, row, tile)
	}
	putMatScratch(buf)
}

// task computes task t: c's rows of row block t/colBlocks and columns of column
// block t%colBlocks.
func (g *gemmJob) task(t int, bp, ap, row, tile []float32) {
	lv := g.lv
	k, n := g.src.k, g.src.n
	i0, j0 := t/g.colBlocks*g.mc, t%g.colBlocks*g.nc
	mc, nc := min(g.mc, g.m-i0), min(g.nc, n-j0)
	for pc := 0; pc < k; pc += gemmKC {
		kc := min(gemmKC, k-pc)
		g.src.pack(lv, bp, row, pc, kc, j0, nc)
		packA(lv, ap, g.a[i0*k:], k, mc, pc, kc)
		acc := pc > 0
		for ir := 0; ir < mc; ir += lv.mr {
			mr := min(lv.mr, mc-ir)
			a := ap[ir*kc:]
			for jr := 0; jr < nc; jr += lv.nr {
				b := bp[jr*kc:]
				c := g.c[(i0+ir)*n+j0+jr:]
				nr := nc - jr
				if nr >= lv.nr {
					lv.micro(mr, kc, a, b, c, n, acc)
					continue
				}
				// a narrow edge: through the tile buffer
				lv.micro(mr, kc, a, b, tile, lv.nr, false)
				for i := range mr {
					ci, ti := c[i*n:i*n+nr], tile[i*lv.nr:i*lv.nr+nr]
					if acc {
						for j, v := range ti {
							ci[j] += v
						}
					} else {
						copy(ci, ti)
					}
				}
			}
		}
	}
}

// packA writes the mc rows of a (rows lda apart) at columns [pc, pc+kc) as
// ceil(mc/mr) panels of kc×mr: dst[(ir/mr)*kc*mr + p*mr + i] = a[(ir+i)*lda+pc+p].
// The rows past mc in the last panel are left as they are: the micro-kernel
// for fewer rows does not read them.
func packA(lv *matLevel, dst, a []float32, lda, mc, pc, kc int) {
	mr := lv.mr
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		d := dst[ir*kc : ir*kc+kc*mr]
		src := a[ir*lda+pc:]
		done := 0
		if rows == 8 && mr == 8 && lv.transpose8 != nil && kc >= 8 {
			lv.transpose8(d, src, lda, 8, kc/8)
			done = kc / 8 * 8
		}
		for i := range rows {
			s := src[i*lda+done : i*lda+kc]
			for p, v := range s {
				d[(done+p)*mr+i] = v
			}
		}
	}
}

// pack writes B's rows [pc, pc+kc) and columns [j0, j0+nc) as ceil(nc/nr)
// panels of kc×nr: dst[(jr/nr)*kc*nr + p*nr + j] = B[pc+p][j0+jr+j], with zeros
// past column nc. row is scratch of max(nc, kc*nr) floats.
func (s *bSource) pack(lv *matLevel, dst, row []float32, pc, kc, j0, nc int) {
	nr := lv.nr
	if !s.trans {
		// B's rows are rows of b (or W): copy their pieces into the panels
		for p := range kc {
			var r []float32
			f := (pc+p)*s.n + j0
			if s.w != nil {
				if lv.prefetch != nil && p+2 < kc {
					lv.prefetch(s.w, f+2*s.n, nc)
				}
				r = row[:nc]
				decodeRun(lv, r, s.w, f)
			} else {
				r = s.b[f : f+nc]
			}
			for jr := 0; jr < nc; jr += nr {
				d := dst[jr*kc+p*nr : jr*kc+p*nr+nr]
				w := copy(d, r[jr:min(jr+nr, nc)])
				clear(d[w:])
			}
		}
		return
	}
	// B's columns are rows of b (or W), kc long from pc: transpose them in
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		d := dst[jr*kc : jr*kc+kc*nr]
		var src []float32
		ld := s.k
		if s.w != nil {
			ld = kc
			src = row[:cols*kc]
			for j := range cols {
				f := (j0+jr+j)*s.k + pc
				if lv.prefetch != nil && j+2 < nc-jr {
					lv.prefetch(s.w, f+2*s.k, kc)
				}
				decodeRun(lv, src[j*kc:(j+1)*kc], s.w, f)
			}
		} else {
			src = s.b[(j0+jr)*s.k+pc:]
		}
		transposeInto(lv, d, src, ld, nr, cols, kc)
	}
}

// transposeInto writes d[p*ldd+j] = src[j*ld+p] for j < cols, p < kc, and zeros
// for cols <= j < ldd.
func transposeInto(lv *matLevel, d, src []float32, ld, ldd, cols, kc int) {
	done := 0
	if lv.transpose8 != nil && kc >= 8 {
		done = kc / 8 * 8
		j := 0
		for ; j+8 <= cols; j += 8 {
			lv.transpose8(d[j:], src[j*ld:], ld, ldd, kc/8)
		}
		for ; j < cols; j++ {
			s := src[j*ld : j*ld+done]
			for p, v := range s {
				d[p*ldd+j] = v
			}
		}
	}
	for j := range cols {
		s := src[j*ld+done : j*ld+kc]
		for p, v := range s {
			d[(done+p)*ldd+j] = v
		}
	}
	if cols < ldd {
		for p := range kc {
			clear(d[p*ldd+cols : p*ldd+ldd])
		}
	}
}

// microGo is the pure-Go micro-kernel (matLevel.micro) for a 4×4 tile.
func microGo(mr, kc int, a, b, c []float32, ldc int, acc bool) {
	const nr = 4
	a, b = a[:kc*4], b[:kc*nr]
	var t [4][nr]float32
	for i := range mr {
		var s0, s1, s2, s3 float32
		for p := range kc {
			ap := a[p*4+i]
			bp := b[p*nr : p*nr+nr]
			s0 += ap * bp[0]
			s1 += ap * bp[1]
			s2 += ap * bp[2]
			s3 += ap * bp[3]
		}
		t[i] = [nr]float32{s0, s1, s2, s3}
	}
	for i := range mr {
		ci := c[i*ldc : i*ldc+nr]
		for j := range ci {
			if acc {
				ci[j] += t[i][j]
			} else {
				ci[j] = t[i][j]
			}
		}
	}
}

// matParts is how many parts to split a product of the given work (flops) into:
// 1 under parallelFlops, else up to Threads() of at least parallelFlops/2 each.
func matParts(flops int) int {
	if flops < parallelFlops {
		return 1
	}
	return max(1, min(Threads(), flops/(parallelFlops/2)))
}

// matParallel calls fn on contiguous ranges that split [0, n) into min(n,
// Threads()) parts, one goroutine a part (the caller's for the first), and
// returns when all have returned. A panic in fn is re-raised in the caller once
// all parts are done.
func matParallel(n int, fn func(lo, hi int)) {
	parts := min(n, Threads())
	if parts <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failed   bool
		panicked any
	)
	part := func(i int) {
		defer func() {
			if p := recover(); p != nil {
				mu.Lock()
				if !failed {
					failed, panicked = true, p
				}
				mu.Unlock()
			}
		}()
		fn(i*n/parts, (i+1)*n/parts)
	}
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		go func() {
			defer wg.Done()
			part(i)
		}()
	}
	part(0)
	wg.Wait()
	if failed {
		panic(panicked)
	}
}

// matScratch recycles the scratch buffers (*[]float32) of the matrix kernels.
var matScratch sync.Pool

// getMatScratch returns a buffer of n floats (not cleared).
func getMatScratch(n int) *[]float32 {
	if p, ok := matScratch.Get().(*[]float32); ok {
		if cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	s := make([]float32, n)
	return &s
}

func putMatScratch(p *[]float32) { matScratch.Put(p) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }
