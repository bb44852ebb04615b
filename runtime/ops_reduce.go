package runtime

import (
	"math"

	"github.com/neurstore/neurstore/graph"
)

// Reductions and ArgMax/ArgMin.

type reduceKind uint8

const (
	redSum reduceKind = iota
	redSumSquare
	redL1
	redL2
	redProd
	redMax
	redMin
	redMean
	redLogSum
	redLogSumExp
)

// reduceOp returns the Reduce* op of kind. Axes come from the second input from
// opset 13 (ReduceSum) or 18 (the others), from the axes attribute before. No
// axes means all of them, or none with noop_with_empty_axes: then each output is
// the reduction of one element (ReduceSumSquare squares, ReduceL1 takes |x|).
func reduceOp(kind reduceKind) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if err := need(n, in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if !supported(x.DType) || x.DType == graph.Bool {
			return nil, errType(n, x.DType)
		}
		since := int64(18)
		if kind == redSum {
			since = 13
		}
		axes, ok, err := axesArg(c, n, in, 1, since)
		if err != nil {
			return nil, err
		}
		keep := attrInt(n, "keepdims", 1) != 0
		noop := attrInt(n, "noop_with_empty_axes", 0) != 0
		r := len(x.Shape)
		red := make([]bool, r)
		if ok && len(axes) > 0 {
			ax, err := normAxes(n, axes, r)
			if err != nil {
				return nil, err
			}
			for _, a := range ax {
				red[a] = true
			}
		} else if !noop {
			for i := range red {
				red[i] = true
			}
		}
		var shape []int
		kept := make([]int, r) // the output shape with keepdims
		count := 1             // elements per output
		for i, d := range x.Shape {
			kept[i] = d
			if red[i] {
				kept[i] = 1
				count *= d
				if !keep {
					continue
				}
			}
			shape = append(shape, kept[i])
		}
		ost := stridesOf(kept)
		for i := range red {
			if red[i] {
				ost[i] = 0
			}
		}
		dims, st := collapse(x.Shape, [][]int{stridesOf(x.Shape), ost})
		out := c.alloc.New(x.DType, shape)
		exactInt := !isFloat(x.DType) && kind != redL2 && kind != redLogSum && kind != redLogSumExp
		if exactInt {
			reduceInts(out.I64, x.I64, kind, dims, st, count)
			return one(finish(out))
		}
		acc := make([]float64, out.Len())
		switch storageOf(x.DType) {
		case storeF32:
			reduceFloats(acc, x.Floats(), kind, dims, st, count)
			for i, v := range acc {
				out.F32[i] = float32(v)
			}
		case storeF64:
			reduceFloats(acc, x.F64, kind, dims, st, count)
			copy(out.F64, acc)
		default:
			reduceFloats(acc, x.I64, kind, dims, st, count)
			for i, v := range acc {
				out.I64[i] = f2i(v)
			}
		}
		return one(finish(out))
	}
}

// reduceWalk folds each element of x into acc at its output position with f.
// dims and st (input, output strides) are a collapsed iteration space.
func reduceWalk[A, T num](acc []A, x []T, dims []int, st [][]int, f func(a, v A) A) {
	inner, os := dims[len(dims)-1], st[1][len(dims)-1]
	eachRow(dims, st, func(_ int, off []int) {
		xs := x[off[0] : off[0]+inner]
		if os == 0 {
			a := acc[off[1]]
			for _, v := range xs {
				a = f(a, A(v))
			}
			acc[off[1]] = a
			return
		}
		as := acc[off[1] : off[1]+inner]
		for i, v := range xs {
			as[i] = f(as[i], A(v))
		}
	})
}

func fill[T any](s []T, v T) {
	for i := range s {
		s[i] = v
	}
}

// reduceFloats reduces x into acc in float64.
func reduceFloats[T num](acc []float64, x []T, kind reduceKind, dims []int, st [][]int, count int) {
	var f func(a, v float64) float64
	switch kind {
	case redSum, redMean, redLogSum:
		f = func(a, v float64) float64 { return a + v }
	case redSumSquare, redL2:
		f = func(a, v float64) float64 { return a + v*v }
	case redL1:
		f = func(a, v float64) float64 { return a + math.Abs(v) }
	case redProd:
		fill(acc, 1)
		f = func(a, v float64) float64 { return a * v }
	case redMax, redLogSumExp:
		fill(acc, math.Inf(-1))
		f = func(a, v float64) float64 { return max(a, v) }
	case redMin:
		fill(acc, math.Inf(1))
		f = func(a, v float64) float64 { return min(a, v) }
	}
	reduceWalk(acc, x, dims, st, f)
	switch kind {
	case redMean:
		for i := range acc {
			acc[i] /= float64(count)
		}
	case redL2:
		for i := range acc {
			acc[i] = math.Sqrt(acc[i])
		}
	case redLogSum:
		for i := range acc {
			acc[i] = math.Log(acc[i])
		}
	case redLogSumExp:
		// log Σ exp(x - m) + m with m the maximum (0 where it is infinite)
		shift := acc
		for i, m := range shift {
			if math.IsInf(m, 0) {
				shift[i] = 0
			}
		}
		sum := make([]float64, len(acc))
		inner, os := dims[len(dims)-1], st[1][len(dims)-1]
		eachRow(dims, st, func(_ int, off []int) {
			for i, v := range x[off[0] : off[0]+inner] {
				o := off[1] + i*os
				sum[o] += math.Exp(float64(v) - shift[o])
			}
		})
		for i, s := range sum {
			acc[i] = math.Log(s) + shift[i]
		}
	}
}

// reduceInts reduces integer x into acc exactly (sums wrap).
func reduceInts(acc, x []int64, kind reduceKind, dims []int, st [][]int, count int) {
	var f func(a, v int64) int64
	switch kind {
	case redSum, redMean:
		clear(acc)
		f = func(a, v int64) int64 { return a + v }
	case redSumSquare:
		clear(acc)
		f = func(a, v int64) int64 { return a + v*v }
	case redL1:
		clear(acc)
		f = func(a, v int64) int64 {
			if v < 0 {
				return a - v
			}
			return a + v
		}
	case redProd:
		fill(acc, 1)
		f = func(a, v int64) int64 { return a * v }
	case redMax:
		fill(acc, math.MinInt64)
		f = func(a, v int64) int64 { return max(a, v) }
	case redMin:
		fill(acc, math.MaxInt64)
		f = func(a, v int64) int64 { return min(a, v) }
	}
	reduceWalk(acc, x, dims, st, f)
	if kind == redMean && count > 0 {
		for i := range acc {
			acc[i] /= int64(count)
		}
	}
}

// argOp returns ArgMax (isMax) or ArgMin.
func argOp(isMax bool) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if err := need(n, in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if !supported(x.DType) {
			return nil, errType(n, x.DType)
		}
		axis, err := normAxis(n, attrInt(n, "axis", 0), len(x.Shape))
		if err != nil {
			return nil, err
		}
		keep := attrInt(n, "keepdims", 1) != 0
		last := attrInt(n, "select_last_index", 0) != 0
		d := x.Shape[axis]
		outer, inner := numel(x.Shape[:axis]), numel(x.Shape[axis+1:])
		shape := append([]int(nil), x.Shape[:axis]...)
		if keep {
			shape = append(shape, 1)
		}
		shape = append(shape, x.Shape[axis+1:]...)
		if d == 0 && outer*inner > 0 {
			return nil, opErr(n, "axis %d of shape %v is empty", axis, x.Shape)
		}
		out := c.alloc.New(graph.I64, shape)
		switch storageOf(x.DType) {
		case storeF32:
			argLoop(out.I64, x.Floats(), outer, d, inner, isMax, last)
		case storeF64:
			argLoop(out.I64, x.F64, outer, d, inner, isMax, last)
		default:
			argLoop(out.I64, x.I64, outer, d, inner, isMax, last)
		}
		return one(out)
	}
}

// argLoop writes the index along d of the largest (isMax) or smallest element of
// x laid out [outer, d, inner]: the first one, or the last with last. NaN counts
// as the extreme, as in numpy.
func argLoop[T num](dst []int64, x []T, outer, d, inner int, isMax, last bool) {
	for o := range outer {
		for i := range inner {
			base := o*d*inner + i
			best, at := x[base], 0
			for k := 1; k < d; k++ {
				v := x[base+k*inner]
				var better bool
				switch {
				case best != best: // NaN
					better = last && v != v
				case v != v:
					better = true
				case isMax:
					better = v > best || last && v == best
				default:
					better = v < best || last && v == best
				}
				if better {
					best, at = v, k
				}
			}
			dst[o*inner+i] = int64(at)
		}
	}
}
