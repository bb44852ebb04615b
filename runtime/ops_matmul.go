package runtime

import (
	"fmt"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
)

// MatMul and Gemm. Float32 products run on the kernels (a packed weight B is
// multiplied in its packed form); float64 and integer products use plain loops.
// The output has A's element type; B and C may be another float type of the same
// storage (a packed weight is F32 whatever the model's activations are).

// sameStorage checks that the present inputs share the first one's storage kind.
func sameStorage(n *graph.Node, in []*Tensor) error {
	for _, t := range in[1:] {
		if t != nil && storageOf(t.DType) != storageOf(in[0].DType) {
			return opErr(n, "input types %s and %s differ", in[0].DType, t.DType)
		}
	}
	return nil
}

func opMatMul(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	if err := sameStorage(n, in[:2]); err != nil {
		return nil, err
	}
	if err := checkData(n, in[:2]...); err != nil {
		return nil, err
	}
	a, b := in[0], in[1]
	if !supported(a.DType) || a.DType == graph.Bool {
		return nil, errType(n, a.DType)
	}
	ra, rb := len(a.Shape), len(b.Shape)
	if ra == 0 || rb == 0 {
		return nil, opErr(n, "cannot multiply shapes %v and %v", a.Shape, b.Shape)
	}
	as, bs := a.Shape, b.Shape
	if ra == 1 {
		as = []int{1, as[0]}
	}
	if rb == 1 {
		bs = []int{bs[0], 1}
	}
	m, k := as[len(as)-2], as[len(as)-1]
	k2, nn := bs[len(bs)-2], bs[len(bs)-1]
	if k != k2 {
		return nil, opErr(n, "inner dimensions %d and %d differ (shapes %v and %v)", k, k2, a.Shape, b.Shape)
	}
	batchA, batchB := as[:len(as)-2], bs[:len(bs)-2]
	batch, err := broadcastShape(n, batchA, batchB)
	if err != nil {
		return nil, err
	}
	shape := append([]int(nil), batch...)
	if ra > 1 {
		shape = append(shape, m)
	}
	if rb > 1 {
		shape = append(shape, nn)
	}
	if b.Packed != nil && rb == 2 && storageOf(a.DType) == storeF32 {
		if b.Packed.Rows != k || b.Packed.Cols != nn {
			return nil, opErr(n, "packed weight is %dx%d, shape %v", b.Packed.Rows, b.Packed.Cols, b.Shape)
		}
		out := c.alloc.New(a.DType, shape)
		if rows := numel(batch) * m; rows > 0 && nn > 0 {
			if err := packedProduct(c, out.F32, a.Floats(), rows, b, false); err != nil {
				return nil, err
			}
		}
		return one(finish(out))
	}
	if b.joint != nil {
		return nil, fmt.Errorf("%w: %s multiplies %s by a fine-tuned packed weight", ErrNotJoinable, n.Name, a.DType)
	}
	out := c.alloc.New(a.DType, shape)
	switch storageOf(a.DType) {
	case storeF32:
		matMulBatched(out.F32, a.Floats(), b.Floats(), batchA, batchB, batch, m, k, nn, kernels.MatMul)
	case storeF64:
		matMulBatched(out.F64, a.F64, b.F64, batchA, batchB, batch, m, k, nn, matMulLoop[float64])
	default:
		matMulBatched(out.I64, a.I64, b.I64, batchA, batchB, batch, m, k, nn, matMulLoop[int64])
	}
	return one(finish(out))
}

// matMulBatched computes the broadcast batch of products c = a·b of m×k and k×n
// matrices with mm. When b is a single matrix, the batch of a is one tall product.
func matMulBatched[T num](c, a, b []T, batchA, batchB, batch []int, m, k, n int, mm func(c, a, b []T, m, k, n int)) {
	if len(c) == 0 {
		return
	}
	if k == 0 {
		clear(c)
		return
	}
	if numel(batchB) == 1 {
		mm(c, a, b, numel(batch)*m, k, n)
		return
	}
	dims, st := collapse(batch, [][]int{broadcastStrides(batchA, batch), broadcastStrides(batchB, batch)})
	inner := dims[len(dims)-1]
	sa, sb := st[0][len(dims)-1], st[1][len(dims)-1]
	eachRow(dims, st, func(row int, off []int) {
		for i := range inner {
			o, ia, ib := row*inner+i, off[0]+i*sa, off[1]+i*sb
			mm(c[o*m*n:(o+1)*m*n], a[ia*m*k:(ia+1)*m*k], b[ib*k*n:(ib+1)*k*n], m, k, n)
		}
	})
}

// matMulLoop is c[m×n] = a[m×k]·b[k×n] in plain loops.
func matMulLoop[T num](c, a, b []T, m, k, n int) {
	for i := range m {
		row := c[i*n : (i+1)*n]
		clear(row)
		for p := range k {
			av, br := a[i*k+p], b[p*n:(p+1)*n]
			for j := range row {
				row[j] += av * br[j]
			}
		}
	}
}

func opGemm(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	if err := sameStorage(n, in); err != nil {
		return nil, err
	}
	if err := checkData(n, in...); err != nil {
		return nil, err
	}
	a, b, cIn := in[0], in[1], optIn(in, 2)
	if !supported(a.DType) || a.DType == graph.Bool {
		return nil, errType(n, a.DType)
	}
	if len(a.Shape) != 2 || len(b.Shape) != 2 {
		return nil, opErr(n, "A and B must be matrices, got shapes %v and %v", a.Shape, b.Shape)
	}
	transA, transB := attrInt(n, "transA", 0) != 0, attrInt(n, "transB", 0) != 0
	alpha, beta := float64(attrFloat(n, "alpha", 1)), float64(attrFloat(n, "beta", 1))
	m, k := a.Shape[0], a.Shape[1]
	if transA {
		m, k = k, m
	}
	kb, nn := b.Shape[0], b.Shape[1]
	if transB {
		kb, nn = nn, kb
	}
	if k != kb {
		return nil, opErr(n, "inner dimensions %d and %d differ (shapes %v and %v)", k, kb, a.Shape, b.Shape)
	}
	shape := []int{m, nn}
	var cs []int
	if cIn != nil {
		if len(cIn.Shape) > 2 {
			return nil, opErr(n, "C of shape %v does not broadcast to %v", cIn.Shape, shape)
		}
		for i, d := range cIn.Shape {
			if o := shape[2-len(cIn.Shape)+i]; d != o && d != 1 {
				return nil, opErr(n, "C of shape %v does not broadcast to %v", cIn.Shape, shape)
			}
		}
		cs = broadcastStrides(cIn.Shape, shape)
	}
	if b.Packed != nil && (b.Packed.Rows != b.Shape[0] || b.Packed.Cols != b.Shape[1]) {
		return nil, opErr(n, "packed weight is %dx%d, shape %v", b.Packed.Rows, b.Packed.Cols, b.Shape)
	}
	if b.joint != nil && (transA || storageOf(a.DType) != storeF32) {
		return nil, fmt.Errorf("%w: %s multiplies a transposed or %s A by a fine-tuned packed weight", ErrNotJoinable, n.Name, a.DType)
	}
	out := c.alloc.New(a.DType, shape)
	switch storageOf(a.DType) {
	case storeF32:
		av := a.Floats()
		if transA {
			av = make([]float32, m*k)
			transpose2(av, a.Floats(), k, m)
		}
		switch {
		case m == 0 || nn == 0:
		case k == 0:
			clear(out.F32)
		case b.Packed != nil:
			if err := packedProduct(c, out.F32, av, m, b, transB); err != nil {
				return nil, err
			}
		case transB:
			kernels.MatMulT(out.F32, av, b.Floats(), m, k, nn)
		default:
			kernels.MatMul(out.F32, av, b.Floats(), m, k, nn)
		}
		var cv []float32
		if cIn != nil {
			cv = cIn.Floats()
		}
		gemmFinish(out.F32, cv, cs, m, nn, alpha, beta)
	case storeF64:
		gemmLoop(out.F64, a.F64, b.F64, m, k, nn, transA, transB)
		var cv []float64
		if cIn != nil {
			cv = cIn.F64
		}
		gemmFinish(out.F64, cv, cs, m, nn, alpha, beta)
	default:
		gemmLoop(out.I64, a.I64, b.I64, m, k, nn, transA, transB)
		var cv []int64
		if cIn != nil {
			cv = cIn.I64
		}
		gemmFinish(out.I64, cv, cs, m, nn, alpha, beta)
	}
	return one(finish(out))
}

// transpose2 writes the transpose of the rows×cols matrix src to dst.
func transpose2[T num](dst, src []T, rows, cols int) {
	for i := range rows {
		for j := range cols {
			dst[j*rows+i] = src[i*cols+j]
		}
	}
}

// gemmLoop is y = op(a)·op(b) in plain loops.
func gemmLoop[T num](y, a, b []T, m, k, n int, transA, transB bool) {
	for i := range m {
		for j := range n {
			var s T
			for p := range k {
				av, bv := a[i*k+p], b[p*n+j]
				if transA {
					av = a[p*m+i]
				}
				if transB {
					bv = b[j*k+p]
				}
				s += av * bv
			}
			y[i*n+j] = s
		}
	}
}

// gemmFinish sets y = alpha*y + beta*C, C read with strides cs (nil: no C).
func gemmFinish[T num](y, cv []T, cs []int, m, n int, alpha, beta float64) {
	if cv == nil && alpha == 1 {
		return
	}
	exact := alpha == 1 && beta == 1
	for i := range m {
		for j := range n {
			v := y[i*n+j]
			var cc T
			if cv != nil {
				cc = cv[i*cs[0]+j*cs[1]]
			}
			if exact {
				y[i*n+j] = v + cc
			} else {
				y[i*n+j] = T(alpha*float64(v) + beta*float64(cc))
			}
		}
	}
}
