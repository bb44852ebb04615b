package quant

// Low-rank prediction of a matrix of delta codes. A variant made by merging a LoRA
// adapter into its base (W = B + A1 A2, rank 8 or 16) has a delta that is nearly
// low rank: coded element by element it costs as much as a full fine-tune's (8.3
// bits per element at tau 1e-4 on text-small's merged variants), while the part a
// rank-8 product does not explain costs 2.4. Fit finds such a product, kept as
// integer factors so that the encoder and every decoder compute the same
// prediction bit for bit; the store then keeps only the codes minus the
// prediction, and adds it back when it decodes.
//
// Element (i, j) of the rows x cols matrix is predicted as
//
//	P(i, j) = (sum over k < rank of A[i*rank+k] * Bt[j*rank+k] + 2^(shift-1)) >> shift
//
// in int64 arithmetic (>> rounds toward minus infinity), with |A|, |Bt| < 2^15.
//
// A LowRank blob (part of the format; do not change):
//
//	+---------+------------+----------+----------------+----------------+
//	| version | rank u8    | shift u8 | rows uvarint   | cols uvarint   |
//	| 1 byte  | 1..64      | 1..62    |                |                |
//	+---------+------------+----------+----------------+----------------+
//	| A: rows*rank zig-zagged values, low byte plane then high byte plane,  |
//	|    each a stream (entropy.go)                                         |
//	| Bt: cols*rank values, the same way                                    |
//	+-----------------------------------------------------------------------+

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

const (
	lowRankVersion = 1
	maxRank        = 64
	// maxFactorBits bounds a factor's magnitude to 2^maxFactorBits (it is kept
	// in 16 bits).
	maxFactorBits = 14
	// minLowRankSide: matrices with fewer columns (or fewer rows than
	// fitSampleRows) are not tried.
	minLowRankSide = 32
	// fitSampleRows is how many rows Fit's first, cheap look examines: half to
	// find directions, half to test them on (so ranks up to 16 are seen).
	fitSampleRows = 64
)

// LowRank is an integer low-rank prediction of a rows x cols matrix of codes.
type LowRank struct {
	Rows, Cols, Rank, Shift int
	A                       []int32 // rows x rank, row-major
	Bt                      []int32 // cols x rank, row-major (the second factor, transposed)
}

// AddTo adds the prediction of elements lo .. lo+len(dst)-1 (row-major) to dst.
func (lr *LowRank) AddTo(dst []int64, lo int) {
	r := lr.Rank
	half := int64(1) << (lr.Shift - 1)
	for x := 0; x < len(dst); {
		e := lo + x
		i, j := e/lr.Cols, e%lr.Cols
		a := lr.A[i*r : i*r+r]
		end := min(len(dst)-x, lr.Cols-j)
		for t := range end {
			b := lr.Bt[(j+t)*r : (j+t)*r+r]
			dst[x+t] += (dot(a, b) + half) >> lr.Shift
		}
		x += end
	}
}

// dot returns the exact integer dot product of a and b (len(b) >= len(a)).
func dot(a, b []int32) int64 {
	var s0, s1, s2, s3 int64
	k := 0
	for ; k+4 <= len(a); k += 4 {
		s0 += int64(a[k]) * int64(b[k])
		s1 += int64(a[k+1]) * int64(b[k+1])
		s2 += int64(a[k+2]) * int64(b[k+2])
		s3 += int64(a[k+3]) * int64(b[k+3])
	}
	for ; k < len(a); k++ {
		s0 += int64(a[k]) * int64(b[k])
	}
	return s0 + s1 + s2 + s3
}

// Encode returns the blob of lr.
func (lr *LowRank) Encode() []byte {
	out := []byte{lowRankVersion, byte(lr.Rank), byte(lr.Shift)}
	out = binary.AppendUvarint(out, uint64(lr.Rows))
	out = binary.AppendUvarint(out, uint64(lr.Cols))
	for _, f := range [][]int32{lr.A, lr.Bt} {
		lo, hi := make([]byte, len(f)), make([]byte, len(f))
		for i, v := range f {
			u := zigzag(int64(v))
			lo[i], hi[i] = byte(u), byte(u>>8)
		}
		out = appendStream(appendStream(out, lo, false), hi, false)
	}
	return out
}

// DecodeLowRank parses a LowRank blob for a rows x cols matrix. It returns an
// error for a blob of another shape or a corrupt one.
func DecodeLowRank(b []byte, rows, cols int) (*LowRank, error) {
	if len(b) < 3 || b[0] != lowRankVersion {
		return nil, errCorrupt
	}
	lr := &LowRank{Rank: int(b[1]), Shift: int(b[2])}
	p := b[3:]
	r, err := uvarint(&p)
	if err != nil {
		return nil, err
	}
	c, err := uvarint(&p)
	if err != nil {
		return nil, err
	}
	if lr.Rank < 1 || lr.Rank > maxRank || lr.Shift < 1 || lr.Shift > 62 ||
		r != uint64(rows) || c != uint64(cols) || rows < 1 || cols < 1 {
		return nil, errCorrupt
	}
	lr.Rows, lr.Cols = rows, cols
	// the factors are far smaller than the matrix; a blob claiming more is corrupt
	if uint64(rows+cols)*uint64(lr.Rank) > uint64(len(p))*chunkSize {
		return nil, errCorrupt
	}
	for _, f := range []*[]int32{&lr.A, &lr.Bt} {
		n := lr.Rank * rows
		if f == &lr.Bt {
			n = lr.Rank * cols
		}
		var lo, hi []byte
		if lo, p, err = readStream(p, n); err != nil {
			return nil, err
		}
		if hi, p, err = readStream(p, n); err != nil {
			return nil, err
		}
		*f = make([]int32, n)
		for i := range *f {
			(*f)[i] = int32(unzigzag(uint64(lo[i]) | uint64(hi[i])<<8))
		}
	}
	if len(p) != 0 {
		return nil, errCorrupt
	}
	return lr, nil
}

// matrix is a rows x cols matrix of codes held in consecutive parts, all but the
// last of one length (the chunks a tensor is coded in).
type matrix struct {
	parts      [][]int64
	partLen    int
	rows, cols int
}

// sampleRow sets dst[k] to element (i, col[k]) for each k; col is increasing.
func (m *matrix) sampleRow(dst []float64, i int, col []int) {
	k := 0
	m.row(i, func(j0 int, seg []int64) {
		for ; k < len(col) && col[k] < j0+len(seg); k++ {
			dst[k] = float64(seg[col[k]-j0])
		}
	})
}

// row calls fn with the pieces of row i in order: seg holds its columns j0 on.
func (m *matrix) row(i int, fn func(j0 int, seg []int64)) {
	e, j := i*m.cols, 0
	for j < m.cols {
		p, off := e/m.partLen, e%m.partLen
		seg := m.parts[p][off:min(off+m.cols-j, len(m.parts[p]))]
		fn(j, seg)
		j += len(seg)
		e += len(seg)
	}
}

// Fit looks for an integer low-rank prediction of the rows x cols matrix d
// (row-major codes, held in consecutive parts of one length but the last, as a
// tensor's chunks are) that would make it cheaper to code. It first looks at a
// sample: the directions that best explain 32 rows (on at most 256 columns) are
// asked to explain 32 other rows. In a low-rank matrix they do; in a full
// fine-tune's delta they explain about rank/256 of it, so that look settles
// most matrices at a small cost. Where the estimated saving of some rank, net of
// what its factors cost, passes 5%, the factors of that rank are computed from
// the whole matrix. It returns nil where no rank pays; the caller rounds the
// factors (LowRankFit.Round) and compares the coded sizes with and without the
// prediction.
func Fit(parts [][]int64, rows, cols int) *LowRankFit {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if rows < fitSampleRows || cols < minLowRankSide || n != rows*cols {
		return nil
	}
	for k, p := range parts {
		if k < len(parts)-1 && len(p) != len(parts[0]) || len(p) == 0 || len(p) > len(parts[0]) {
			return nil
		}
	}
	d := &matrix{parts: parts, partLen: len(parts[0]), rows: rows, cols: cols}
	// sampled rows, spread evenly, on at most 256 columns: the even ones find
	// directions, kept as an nc x ns matrix (a sampled row is a column); the
	// odd ones are held out to test them, kept as ns rows of nc
	const ns = fitSampleRows / 2
	nc := min(cols, 256)
	col := make([]int, nc)
	for c := range col {
		col[c] = c * cols / nc
	}
	fit, held := make([]float64, nc*ns), make([]float64, ns*nc)
	var total, heldTotal float64
	row := make([]float64, nc)
	for s := range fitSampleRows {
		d.sampleRow(row, s*rows/fitSampleRows, col)
		var rowSum float64
		for _, v := range row {
			rowSum += v * v
		}
		if s%2 == 1 {
			copy(held[s/2*nc:], row)
			heldTotal += rowSum
			continue
		}
		for c, v := range row {
			fit[c*ns+s/2] = v
		}
		total += rowSum
	}
	if total == 0 || heldTotal == 0 {
		return nil
	}
	eig, vec := symEigen(gramCols(fit, nc, ns), ns)
	// Bits per element of Gaussian codes of variance v (rounding adds 1/12).
	bits := func(v float64) float64 { return 0.5 * math.Log2(2*math.Pi*math.E*(v+1.0/12)) }
	elems := float64(n)
	perElem := heldTotal / float64(ns*nc)
	before := elems * bits(perElem)
	bestRank, bestGain := 0, 0.05*before
	// The fitted rows themselves first: the share of their energy that the top
	// r directions hold is what those directions explain of the held-out rows
	// at best (fitted to the sample, they flatter it). Where even that gains too
	// little, as in a small full fine-tune's delta, the held-out test is skipped.
	promising, inSample := false, 0.0
	for r := 1; r <= ns/2 && eig[r-1] > 1e-9*total; r++ {
		inSample += eig[r-1]
		res := max(total-inSample, 0) / float64(ns*nc)
		fitBefore := elems * bits(total/float64(ns*nc))
		if fitBefore-elems*bits(res)-float64(r*(rows+cols))*12 > 0.05*fitBefore {
			promising = true
			break
		}
	}
	if !promising {
		return nil
	}
	var explained float64
	dir := make([]float64, nc)
	for r := 1; r <= ns/2; r++ {
		if eig[r-1] <= 1e-9*total {
			break
		}
		// the r-th right singular direction of the fitted rows, and how much
		// of each held-out row lies along it
		colTimes(dir, 1, 0, fit, nc, ns, vec, r-1, 1/math.Sqrt(eig[r-1]))
		for s := range ns {
			var dot float64
			for c, v := range held[s*nc : (s+1)*nc] {
				dot += v * dir[c]
			}
			explained += dot * dot
		}
		res := max(heldTotal-explained, 0) / float64(ns*nc)
		gain := before - elems*bits(res) - float64(r*(rows+cols))*12 // ~12 bits a factor
		if gain > bestGain {
			bestRank, bestGain = r, gain
		}
	}
	if bestRank == 0 {
		return nil
	}
	return fitRank(d, bestRank)
}

// fitRank computes rank-r factors of d by randomized subspace iteration (two
// passes of the power method).
func fitRank(d *matrix, r int) *LowRankFit {
	rows, cols := d.rows, d.cols
	p := min(r+8, rows, cols) // oversampled subspace
	rng := rand.New(rand.NewPCG(uint64(rows), uint64(cols)))
	omega := make([]float64, cols*p) // cols x p
	for i := range omega {
		omega[i] = rng.NormFloat64()
	}
	y := mulD(d, omega, p, false) // rows x p
	for range 2 {
		orthonormalize(y, rows, p)
		z := mulD(d, y, p, true) // cols x p
		orthonormalize(z, cols, p)
		y = mulD(d, z, p, false)
	}
	orthonormalize(y, rows, p)
	// small = Q^T D (p x cols), kept transposed as cols x p
	small := mulD(d, y, p, true)
	// eigen-decompose the p x p Gram S S^T of S = Q^T D
	eig, vec := symEigen(gramCols(small, cols, p), p)
	// S = U Sigma V^T with U = vec: D ~ Q U_r Sigma_r V_r^T. A = Q U_r Sigma_r^(1/2),
	// B^T = V_r Sigma_r^(1/2) = S^T U_r Sigma_r^(-1/2).
	a := make([]float64, rows*r)
	bt := make([]float64, cols*r)
	for k := range r {
		if eig[k] <= 0 {
			return nil
		}
		f := math.Sqrt(math.Sqrt(eig[k]))
		colTimes(a, r, k, y, rows, p, vec, k, f)
		colTimes(bt, r, k, small, cols, p, vec, k, 1/f)
	}
	return &LowRankFit{rows: rows, cols: cols, rank: r, a: a, bt: bt}
}

// gramCols returns the p x p Gram matrix of the columns of m (n x p, row-major).
func gramCols(m []float64, n, p int) []float64 {
	g := make([]float64, p*p)
	// row by row (each sum still runs over i in order), upper triangle
	for i := range n {
		row := m[i*p : (i+1)*p]
		for a, x := range row {
			ga := g[a*p : (a+1)*p]
			for b := a; b < p; b++ {
				ga[b] += x * row[b]
			}
		}
	}
	for a := range p {
		for b := a + 1; b < p; b++ {
			g[b*p+a] = g[a*p+b]
		}
	}
	return g
}

// colTimes sets column k of dst (n x stride) to f times m (n x p) times column c
// of vec (p x p): dst[i*stride+k] = f * sum_j m[i*p+j] * vec[j*p+c].
func colTimes(dst []float64, stride, k int, m []float64, n, p int, vec []float64, c int, f float64) {
	v := make([]float64, p) // column c, contiguous
	for j := range v {
		v[j] = vec[j*p+c]
	}
	for i := range n {
		var s float64
		for j, x := range m[i*p : (i+1)*p] {
			s += x * v[j]
		}
		dst[i*stride+k] = s * f
	}
}

// LowRankFit holds the real-valued factors Fit found.
type LowRankFit struct {
	rows, cols, rank int
	a, bt            []float64 // rows x rank and cols x rank
}

// Rank returns the rank of the factors.
func (f *LowRankFit) Rank() int { return f.rank }

// Round returns the integer prediction of the factors kept to bits bits (each
// factor scaled by a power of two to just under 2^bits, 4 <= bits <= 14), or nil
// when the scales leave no shift of 1 to 62. Fewer bits cost less to keep and
// predict less exactly: which pays depends on tau (see the store's use).
func (f *LowRankFit) Round(bits int) *LowRank {
	if bits < 4 || bits > maxFactorBits {
		return nil
	}
	scale := func(v []float64) (int, bool) {
		var m float64
		for _, x := range v {
			m = max(m, math.Abs(x))
		}
		if m == 0 || math.IsNaN(m) || math.IsInf(m, 0) {
			return 0, false
		}
		return int(math.Floor(float64(bits) - math.Log2(m))), true
	}
	sa, ok1 := scale(f.a)
	sb, ok2 := scale(f.bt)
	if !ok1 || !ok2 || sa+sb < 1 || sa+sb > 62 || sa < -62 || sb < -62 {
		return nil
	}
	lr := &LowRank{Rows: f.rows, Cols: f.cols, Rank: f.rank, Shift: sa + sb, A: make([]int32, len(f.a)), Bt: make([]int32, len(f.bt))}
	for i, x := range f.a {
		lr.A[i] = int32(math.Round(math.Ldexp(x, sa)))
	}
	for i, x := range f.bt {
		lr.Bt[i] = int32(math.Round(math.Ldexp(x, sb)))
	}
	return lr
}

// Choose returns the rounding of f to one of bits (see Round) whose factors plus
// residual codes are estimated to cost least, or nil if none rounds. The residual
// is priced by its order-0 entropy on about 32768 codes of rows spread over the
// matrix, parts as for Fit.
func (f *LowRankFit) Choose(parts [][]int64, bits []int) *LowRank {
	d := &matrix{parts: parts, partLen: len(parts[0]), rows: f.rows, cols: f.cols}
	ns := min(f.rows, max(1, 32768/f.cols))
	var best *LowRank
	bestCost := math.Inf(1)
	sample := make([]int64, 0, ns*f.cols)
	for _, b := range bits {
		lr := f.Round(b)
		if lr == nil {
			continue
		}
		sample = sample[:ns*f.cols]
		clear(sample)
		for s := range ns {
			i := s * f.rows / ns
			row := sample[s*f.cols : (s+1)*f.cols]
			lr.AddTo(row, i*f.cols)
			d.row(i, func(j0 int, seg []int64) {
				for t, v := range seg {
					row[j0+t] = v - row[j0+t]
				}
			})
		}
		cost := entropy(sample)*float64(f.rows)*float64(f.cols)/float64(len(sample))/8 + float64(len(lr.Encode()))
		if cost < bestCost {
			best, bestCost = lr, cost
		}
	}
	return best
}

// entropy returns the order-0 entropy of v in bits. Values within a span of
// 2^16 are counted in an array; wider ones are sorted (v is reordered then).
func entropy(v []int64) float64 {
	if len(v) == 0 {
		return 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	n := float64(len(v))
	var h float64
	add := func(count int) {
		p := float64(count) / n
		h -= float64(count) * math.Log2(p)
	}
	if uint64(hi-lo) < 1<<16 {
		counts := make([]int, hi-lo+1)
		for _, x := range v {
			counts[x-lo]++
		}
		for _, c := range counts {
			if c > 0 {
				add(c)
			}
		}
		return h
	}
	slices.Sort(v)
	for i := 0; i < len(v); {
		j := i + 1
		for j < len(v) && v[j] == v[i] {
			j++
		}
		add(j - i)
		i = j
	}
	return h
}

// mulBlocks is how many row blocks mulD splits d into, run concurrently. It is
// fixed, not the number of cores, so that the sums (and the factors) come out the
// same on every machine.
const mulBlocks = 4

// mulD returns d (rows x cols) times m (cols x p), rows x p, or with transposed
// d^T times m (rows x p), cols x p.
func mulD(d *matrix, m []float64, p int, transposed bool) []float64 {
	n := d.rows
	if transposed {
		n = d.cols
	}
	outs := make([][]float64, mulBlocks)
	var wg sync.WaitGroup
	for blk := range mulBlocks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]float64, n*p)
			for i := blk * d.rows / mulBlocks; i < (blk+1)*d.rows/mulBlocks; i++ {
				d.row(i, func(j0 int, seg []int64) {
					for t, v := range seg {
						if v == 0 {
							continue
						}
						a, b := j0+t, i // out row b += d(i, j) * m row a
						if transposed {
							a, b = b, a
						}
						src, dst := m[a*p:a*p+p], out[b*p:b*p+p]
						x := float64(v)
						for c := range dst {
							dst[c] += x * src[c]
						}
					}
				})
			}
			outs[blk] = out
		}()
	}
	wg.Wait()
	// the blocks' sums, added in block order (each row of a plain product comes
	// from one block; the other blocks add zeros to it)
	out := outs[0]
	for _, o := range outs[1:] {
		for k, v := range o {
			out[k] += v
		}
	}
	return out
}

// orthonormalize makes the p columns of m (n x p, row-major) orthonormal by
// modified Gram-Schmidt, run twice for accuracy; a column that vanishes is left 0.
func orthonormalize(m []float64, n, p int) {
	for range 2 {
		for c := range p {
			for prev := range c {
				var dot float64
				for i := range n {
					dot += m[i*p+c] * m[i*p+prev]
				}
				for i := range n {
					m[i*p+c] -= dot * m[i*p+prev]
				}
			}
			var norm float64
			for i := range n {
				norm += m[i*p+c] * m[i*p+c]
			}
			norm = math.Sqrt(norm)
			for i := range n {
				if norm > 0 {
					m[i*p+c] /= norm
				} else {
					m[i*p+c] = 0
				}
			}
		}
	}
}

// symEigen returns the eigenvalues of the symmetric n x n matrix g (row-major;
// overwritten) in decreasing order and their eigenvectors as the columns of an
// n x n matrix. It reduces g to tridiagonal form with Householder reflections,
// then diagonalizes that with implicit QR steps (Wilkinson shifts), keeping the
// product of every transformation as the eigenvectors: on Fit's 32 x 32 Gram
// matrices a tenth of the work of cyclic Jacobi rotations.
func symEigen(g []float64, n int) ([]float64, []float64) {
	z := make([]float64, n*n) // the transformations' product: eigenvectors in the end
	for i := range n {
		z[i*n+i] = 1
	}
	d, e := tridiagonalize(g, z, n)
	diagonalize(d, e, z, n)

	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case d[a] > d[b]:
			return -1
		case d[a] < d[b]:
			return 1
		}
		return 0
	})
	eig := make([]float64, n)
	vec := make([]float64, n*n)
	for c, o := range order {
		eig[c] = d[o]
		for k := range n {
			vec[k*n+c] = z[k*n+o]
		}
	}
	return eig, vec
}

// tridiagonalize reduces the symmetric n x n matrix a (overwritten) to a
// tridiagonal one, H a H with H = I - 2 v v^T for column after column, and
// multiplies z by each H on the right. It returns the diagonal d and the
// off-diagonal e (e[i] joins i and i+1).
func tridiagonalize(a, z []float64, n int) (d, e []float64) {
	v, p := make([]float64, n), make([]float64, n)
	for k := 0; k+2 < n; k++ {
		// x = a[k+1:, k] is to become alpha e_0 (|alpha| = |x|)
		m := n - k - 1
		x := v[:m]
		var norm float64
		for i := range m {
			x[i] = a[(k+1+i)*n+k]
			norm += x[i] * x[i]
		}
		if norm == 0 {
			continue
		}
		alpha := -math.Copysign(math.Sqrt(norm), x[0])
		x[0] -= alpha
		var vn float64
		for _, xi := range x {
			vn += xi * xi
		}
		if vn == 0 {
			continue
		}
		vn = math.Sqrt(vn)
		for i := range x {
			x[i] /= vn
		}
		// with p = A v and w = p - (v.p) v on the trailing block,
		// H A H = A - 2 v w^T - 2 w v^T
		var vp float64
		for i := range m {
			row := a[(k+1+i)*n+k+1 : (k+2+i)*n]
			var s float64
			for j, vj := range x {
				s += row[j] * vj
			}
			p[i] = s
			vp += x[i] * s
		}
		for i := range m {
			p[i] -= vp * x[i]
		}
		for i := range m {
			row := a[(k+1+i)*n+k+1 : (k+2+i)*n]
			for j := range m {
				row[j] -= 2 * (x[i]*p[j] + p[i]*x[j])
			}
		}
		a[(k+1)*n+k], a[k*n+k+1] = alpha, alpha
		for i := 1; i < m; i++ {
			a[(k+1+i)*n+k], a[k*n+k+1+i] = 0, 0
		}
		for r := range n {
			row := z[r*n+k+1 : (r+1)*n]
			var t float64
			for i, vi := range x {
				t += row[i] * vi
			}
			for i, vi := range x {
				row[i] -= 2 * t * vi
			}
		}
	}
	d, e = make([]float64, n), make([]float64, n)
	for i := range n {
		d[i] = a[i*n+i]
		if i+1 < n {
			e[i] = a[i*n+i+1]
		}
	}
	return d, e
}

// diagonalize brings the symmetric tridiagonal matrix (d, e) to diagonal form d
// by implicit QR steps with Wilkinson shifts, each a chase of Givens rotations,
// and multiplies z by every rotation on the right.
func diagonalize(d, e, z []float64, n int) {
	const eps = 0x1p-52
	negligible := func(i int) bool { return math.Abs(e[i]) <= eps*(math.Abs(d[i])+math.Abs(d[i+1])) }
	for m, steps := n-1, 0; m > 0 && steps < 64*n; {
		if negligible(m - 1) {
			e[m-1] = 0
			m--
			continue
		}
		l := m - 1 // the unreduced block is l..m
		for l > 0 && !negligible(l-1) {
			l--
		}
		steps++
		// the shift: the eigenvalue of the trailing 2 x 2 closer to d[m]
		delta, b := (d[m-1]-d[m])/2, e[m-1]
		mu := d[m] - b*b/(delta+math.Copysign(math.Hypot(delta, b), delta))
		x, y := d[l]-mu, e[l]
		for k := l; k < m; k++ {
			// G = [c s; -s c] on k, k+1 with G^T (x, y) = (r, 0)
			r := math.Hypot(x, y)
			c, s := 1.0, 0.0
			if r != 0 {
				c, s = x/r, -y/r
			}
			if k > l {
				e[k-1] = r
			}
			a, bk, cc := d[k], e[k], d[k+1]
			d[k] = c*c*a - 2*c*s*bk + s*s*cc
			d[k+1] = s*s*a + 2*c*s*bk + c*c*cc
			e[k] = c*s*(a-cc) + (c*c-s*s)*bk
			if k+1 < m {
				y = -s * e[k+1] // the bulge at (k, k+2)
				e[k+1] *= c
				x = e[k]
			}
			for i := range n {
				zi := z[i*n : (i+1)*n]
				zk, zk1 := zi[k], zi[k+1]
				zi[k], zi[k+1] = c*zk-s*zk1, s*zk+c*zk1
			}
		}
	}
}
