package runtime

import (
	"math"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
)

// Neural-network ops: convolution, pooling, normalization and softmax.

// window is the geometry of a convolution or pooling window over one or two
// spatial dims, always as 2-D: a 1-D op has h = kh = sh = dh = 1 and no top or
// bottom padding.
type window struct {
	h, w           int // input
	kh, kw         int // kernel
	sh, sw         int // strides
	dh, dw         int // dilations
	pt, pl, pb, pr int // padding: top, left, bottom, right
	oh, ow         int // output
}

// windowOf reads strides, dilations, pads and auto_pad for a window of shape
// kernel over the spatial dims in, and computes the output size (rounding up
// with ceil, as pooling's ceil_mode does).
func windowOf(n *graph.Node, in, kernel []int, ceil bool) (window, error) {
	sp := len(in)
	ones, zeros := make([]int64, sp), make([]int64, 2*sp)
	for i := range ones {
		ones[i] = 1
	}
	strides := attrInts(n, "strides", ones)
	dils := attrInts(n, "dilations", ones)
	pads := attrInts(n, "pads", zeros)
	if len(strides) != sp || len(dils) != sp || len(pads) != 2*sp || len(kernel) != sp {
		return window{}, opErr(n, "strides %v, dilations %v, pads %v or kernel %v do not fit %d spatial dims", strides, dils, pads, kernel, sp)
	}
	autoPad := attrString(n, "auto_pad", "NOTSET")
	var out, begin, end [2]int
	for i := range sp {
		s, d, k := int(strides[i]), int(dils[i]), kernel[i]
		if s < 1 || d < 1 || k < 1 || pads[i] < 0 || pads[i+sp] < 0 {
			return window{}, opErr(n, "invalid strides %v, dilations %v, pads %v or kernel %v", strides, dils, pads, kernel)
		}
		eff := (k-1)*d + 1
		pb, pe := int(pads[i]), int(pads[i+sp])
		switch autoPad {
		case "NOTSET", "":
		case "VALID":
			pb, pe = 0, 0
		case "SAME_UPPER", "SAME_LOWER":
			o := (in[i] + s - 1) / s
			total := max(0, (o-1)*s+eff-in[i])
			pb = total / 2
			if autoPad == "SAME_LOWER" {
				pb = total - total/2
			}
			pe = total - pb
		default:
			return window{}, unsupported(n, "auto_pad %q is not supported", autoPad)
		}
		num := in[i] + pb + pe - eff
		if num < 0 {
			return window{}, opErr(n, "window of %d over %d elements padded by %d and %d leaves no output", eff, in[i], pb, pe)
		}
		o := num/s + 1
		if ceil && num%s != 0 {
			o++
			if (o-1)*s >= in[i]+pb { // the last window would start in the end padding
				o--
			}
		}
		out[i], begin[i], end[i] = o, pb, pe
	}
	g := window{h: 1, kh: 1, sh: 1, dh: 1, oh: 1}
	j := 0
	if sp == 2 {
		g.h, g.kh, g.sh, g.dh, g.pt, g.pb, g.oh = in[0], kernel[0], int(strides[0]), int(dils[0]), begin[0], end[0], out[0]
		j = 1
	}
	g.w, g.kw, g.sw, g.dw, g.pl, g.pr, g.ow = in[j], kernel[j], int(strides[j]), int(dils[j]), begin[j], end[j], out[j]
	return g, nil
}

// outShape is the output shape [N, C, (oh,) ow] of a windowed op on x.
func (g window) outShape(x []int, c int) []int {
	if len(x) == 3 {
		return []int{x[0], c, g.ow}
	}
	return []int{x[0], c, g.oh, g.ow}
}

// spatialInput checks that x is [N, C, W] or [N, C, H, W].
func spatialInput(n *graph.Node, x *Tensor) error {
	if r := len(x.Shape); r != 3 && r != 4 {
		return unsupported(n, "input of shape %v: only 1-D and 2-D %s is supported", x.Shape, n.Op)
	}
	return nil
}

func opConv(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x, w, b := in[0], in[1], optIn(in, 2)
	if !isFloat(x.DType) {
		return nil, errType(n, x.DType)
	}
	if err := sameStorage(n, in); err != nil {
		return nil, err
	}
	if err := checkData(n, in...); err != nil {
		return nil, err
	}
	if err := spatialInput(n, x); err != nil {
		return nil, err
	}
	if len(w.Shape) != len(x.Shape) {
		return nil, opErr(n, "weight of shape %v for input of shape %v", w.Shape, x.Shape)
	}
	group := int(attrInt(n, "group", 1))
	nb, ch, m := x.Shape[0], x.Shape[1], w.Shape[0]
	if group < 1 || w.Shape[1]*group != ch || m%group != 0 {
		return nil, opErr(n, "weight of shape %v does not fit %d input channels in %d groups", w.Shape, ch, group)
	}
	kernel := w.Shape[2:]
	if ks := attrInts(n, "kernel_shape", nil); ks != nil {
		for i, k := range ks {
			if i >= len(kernel) || int(k) != kernel[i] || len(ks) != len(kernel) {
				return nil, opErr(n, "kernel_shape %v differs from the weight's %v", ks, kernel)
			}
		}
	}
	g, err := windowOf(n, x.Shape[2:], kernel, false)
	if err != nil {
		return nil, err
	}
	if b != nil && b.Len() != m {
		return nil, opErr(n, "bias of shape %v for %d output channels", b.Shape, m)
	}
	p := kernels.ConvParams{
		N: nb, C: ch, H: g.h, W: g.w, M: m, KH: g.kh, KW: g.kw,
		StrideH: g.sh, StrideW: g.sw, PadT: g.pt, PadL: g.pl, PadB: g.pb, PadR: g.pr,
		DilH: g.dh, DilW: g.dw, Group: group,
	}
	out := c.alloc.New(x.DType, g.outShape(x.Shape, m))
	if storageOf(x.DType) == storeF32 {
		var bias []float32
		if b != nil {
			bias = b.Floats()
		}
		kernels.Conv2D(out.F32, x.Floats(), w.Floats(), bias, p)
		return one(finish(out))
	}
	var bias []float64
	if b != nil {
		bias = b.F64
	}
	convLoop(out.F64, x.F64, w.F64, bias, p)
	return one(out)
}

// convLoop is Conv2D in plain loops.
func convLoop[T floating](dst, x, w, bias []T, p kernels.ConvParams) {
	oh, ow := p.OutH(), p.OutW()
	cg, mg := p.C/p.Group, p.M/p.Group
	o := 0
	for n := range p.N {
		for m := range p.M {
			g := m / mg
			for y := range oh {
				for xo := range ow {
					var s T
					if bias != nil {
						s = bias[m]
					}
					for c := range cg {
						plane := x[(n*p.C+g*cg+c)*p.H*p.W:]
						filt := w[(m*cg+c)*p.KH*p.KW:]
						for ky := range p.KH {
							iy := y*p.StrideH - p.PadT + ky*p.DilH
							if iy < 0 || iy >= p.H {
								continue
							}
							for kx := range p.KW {
								ix := xo*p.StrideW - p.PadL + kx*p.DilW
								if ix >= 0 && ix < p.W {
									s += plane[iy*p.W+ix] * filt[ky*p.KW+kx]
								}
							}
						}
					}
					dst[o] = s
					o++
				}
			}
		}
	}
}

// poolInput reads the input and window of MaxPool and AveragePool.
func poolInput(n *graph.Node, in []*Tensor) (*Tensor, window, error) {
	if err := need(n, in, 1); err != nil {
		return nil, window{}, err
	}
	x := in[0]
	if !supported(x.DType) || x.DType == graph.Bool {
		return nil, window{}, errType(n, x.DType)
	}
	if err := spatialInput(n, x); err != nil {
		return nil, window{}, err
	}
	ks := attrInts(n, "kernel_shape", nil)
	if len(ks) != len(x.Shape)-2 {
		return nil, window{}, opErr(n, "kernel_shape %v for input of shape %v", ks, x.Shape)
	}
	kernel := make([]int, len(ks))
	for i, k := range ks {
		if k < 1 {
			return nil, window{}, opErr(n, "invalid kernel_shape %v", ks)
		}
		kernel[i] = int(k)
	}
	g, err := windowOf(n, x.Shape[2:], kernel, attrInt(n, "ceil_mode", 0) != 0)
	return x, g, err
}

func opMaxPool(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	x, g, err := poolInput(n, in)
	if err != nil {
		return nil, err
	}
	order := attrInt(n, "storage_order", 0)
	shape := g.outShape(x.Shape, x.Shape[1])
	out := c.alloc.New(x.DType, shape)
	var idx []int64
	outs := []*Tensor{out}
	if wantOut(n, 1) {
		it := c.alloc.New(graph.I64, shape)
		idx = it.I64
		outs = append(outs, it)
	}
	planes := x.Shape[0] * x.Shape[1]
	switch storageOf(x.DType) {
	case storeF32:
		maxPoolLoop(out.F32, idx, x.Floats(), planes, g, order, float32(math.Inf(-1)))
	case storeF64:
		maxPoolLoop(out.F64, idx, x.F64, planes, g, order, math.Inf(-1))
	default:
		maxPoolLoop(out.I64, idx, x.I64, planes, g, order, math.MinInt64)
	}
	return outs, nil
}

// maxPoolLoop writes each window's maximum to dst and, when idx is not nil, its
// flat input index (row-major, or column-major per plane when order is 1).
func maxPoolLoop[T num](dst []T, idx []int64, x []T, planes int, g window, order int64, lowest T) {
	o := 0
	for p := range planes {
		plane := x[p*g.h*g.w : (p+1)*g.h*g.w]
		for oy := range g.oh {
			for ox := range g.ow {
				best, at := lowest, -1
				for ky := range g.kh {
					iy := oy*g.sh - g.pt + ky*g.dh
					if iy < 0 || iy >= g.h {
						continue
					}
					for kx := range g.kw {
						ix := ox*g.sw - g.pl + kx*g.dw
						if ix < 0 || ix >= g.w {
							continue
						}
						if v := plane[iy*g.w+ix]; at < 0 || v > best {
							best, at = v, iy*g.w+ix
						}
					}
				}
				dst[o] = best
				if idx != nil {
					i := max(at, 0)
					if order == 1 {
						i = i%g.w*g.h + i/g.w
					}
					idx[o] = int64(p*g.h*g.w + i)
				}
				o++
			}
		}
	}
}

func opAveragePool(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	x, g, err := poolInput(n, in)
	if err != nil {
		return nil, err
	}
	if !isFloat(x.DType) {
		return nil, errType(n, x.DType)
	}
	withPad := attrInt(n, "count_include_pad", 0) != 0
	out := c.alloc.New(x.DType, g.outShape(x.Shape, x.Shape[1]))
	planes := x.Shape[0] * x.Shape[1]
	if storageOf(x.DType) == storeF32 {
		avgPoolLoop(out.F32, x.Floats(), planes, g, withPad)
		return one(finish(out))
	}
	avgPoolLoop(out.F64, x.F64, planes, g, withPad)
	return one(out)
}

// avgPoolLoop writes each window's mean to dst. The divisor counts the taps
// inside the input, plus with withPad those in the explicit padding (never the
// ones past it that ceil_mode adds).
func avgPoolLoop[T floating](dst, x []T, planes int, g window, withPad bool) {
	o := 0
	for p := range planes {
		plane := x[p*g.h*g.w : (p+1)*g.h*g.w]
		for oy := range g.oh {
			for ox := range g.ow {
				var s float64
				var count, padded int
				for ky := range g.kh {
					iy := oy*g.sh - g.pt + ky*g.dh
					if iy >= g.h+g.pb {
						break
					}
					for kx := range g.kw {
						ix := ox*g.sw - g.pl + kx*g.dw
						if ix >= g.w+g.pr {
							break
						}
						padded++
						if iy >= 0 && iy < g.h && ix >= 0 && ix < g.w {
							s += float64(plane[iy*g.w+ix])
							count++
						}
					}
				}
				if withPad {
					count = padded
				}
				dst[o] = T(s / float64(count))
				o++
			}
		}
	}
}

// globalPool returns GlobalMaxPool (max) or GlobalAveragePool.
func globalPool(isMax bool) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if err := need(n, in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if !isFloat(x.DType) {
			return nil, errType(n, x.DType)
		}
		if len(x.Shape) < 2 {
			return nil, opErr(n, "input of shape %v has no channels", x.Shape)
		}
		shape := []int{x.Shape[0], x.Shape[1]}
		for range x.Shape[2:] {
			shape = append(shape, 1)
		}
		out := c.alloc.New(x.DType, shape)
		size := numel(x.Shape[2:])
		if storageOf(x.DType) == storeF32 {
			globalPoolLoop(out.F32, x.Floats(), size, isMax)
			return one(finish(out))
		}
		globalPoolLoop(out.F64, x.F64, size, isMax)
		return one(out)
	}
}

func globalPoolLoop[T floating](dst, x []T, size int, isMax bool) {
	for p := range dst {
		plane := x[p*size : (p+1)*size]
		if isMax {
			best := T(math.Inf(-1))
			for _, v := range plane {
				best = max(best, v)
			}
			dst[p] = best
			continue
		}
		var s float64
		for _, v := range plane {
			s += float64(v)
		}
		dst[p] = T(s / float64(size))
	}
}

func opBatchNorm(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 5); err != nil {
		return nil, err
	}
	if attrInt(n, "training_mode", 0) != 0 {
		return nil, unsupported(n, "training mode is not supported")
	}
	for i := 1; i < 5; i++ {
		if wantOut(n, i) {
			return nil, unsupported(n, "output %d (training statistics) is not supported", i)
		}
	}
	x := in[0]
	for _, t := range in[:5] {
		if !isFloat(t.DType) {
			return nil, errType(n, t.DType)
		}
	}
	if len(x.Shape) < 2 {
		return nil, opErr(n, "input of shape %v has no channels", x.Shape)
	}
	ch := x.Shape[1]
	params := make([][]float64, 4)
	for i, t := range in[1:5] {
		if t.Len() != ch {
			return nil, opErr(n, "input %d of shape %v for %d channels", i+1, t.Shape, ch)
		}
		params[i] = floatsF64(t)
	}
	eps := float64(attrFloat(n, "epsilon", 1e-5))
	scale, shift := make([]float64, ch), make([]float64, ch)
	for i := range ch {
		scale[i] = params[0][i] / math.Sqrt(params[3][i]+eps)
		shift[i] = params[1][i] - params[2][i]*scale[i]
	}
	out := c.alloc.New(x.DType, x.Shape)
	inner := numel(x.Shape[2:])
	if storageOf(x.DType) == storeF32 {
		affineLoop(out.F32, x.Floats(), scale, shift, inner)
		return one(finish(out))
	}
	affineLoop(out.F64, x.F64, scale, shift, inner)
	return one(out)
}

// affineLoop sets dst = x*scale[c] + shift[c] for x laid out [N, C, inner].
func affineLoop[T floating](dst, x []T, scale, shift []float64, inner int) {
	ch := len(scale)
	for i := 0; i < len(x); i += inner {
		c := i / inner % ch
		a, b := scale[c], shift[c]
		for j, v := range x[i : i+inner] {
			dst[i+j] = T(float64(v)*a + b)
		}
	}
}

func opLayerNorm(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x, scale, bias := in[0], in[1], optIn(in, 2)
	if !isFloat(x.DType) {
		return nil, errType(n, x.DType)
	}
	if err := sameStorage(n, in); err != nil {
		return nil, err
	}
	r := len(x.Shape)
	axis, err := normAxis(n, attrInt(n, "axis", -1), r)
	if err != nil {
		return nil, err
	}
	eps := attrFloat(n, "epsilon", 1e-5)
	norm := x.Shape[axis:]
	rows, cols := numel(x.Shape[:axis]), numel(norm)
	stats := append([]int(nil), x.Shape[:axis]...)
	for range norm {
		stats = append(stats, 1)
	}
	statType := graph.F32
	if x.DType == graph.F64 {
		statType = graph.F64
	}
	out := c.alloc.New(x.DType, x.Shape)
	outs := []*Tensor{out, nil, nil}
	var mean, inv []float64
	if wantOut(n, 1) || wantOut(n, 2) {
		mean, inv = make([]float64, rows), make([]float64, rows)
		if wantOut(n, 1) {
			outs[1] = c.alloc.New(statType, stats)
		}
		if wantOut(n, 2) {
			outs[2] = c.alloc.New(statType, stats)
		}
	}
	if storageOf(x.DType) == storeF32 {
		s, err := fullParam[float32](n, scale, norm)
		if err != nil {
			return nil, err
		}
		var b []float32
		if bias != nil {
			if b, err = fullParam[float32](n, bias, norm); err != nil {
				return nil, err
			}
		}
		xv := x.Floats()
		if rows > 0 && cols > 0 {
			kernels.LayerNorm(out.F32, xv, s, b, rows, cols, eps)
		}
		finish(out)
		if mean != nil {
			rowStats(mean, inv, xv, cols, float64(eps))
		}
	} else {
		s, err := fullParam[float64](n, scale, norm)
		if err != nil {
			return nil, err
		}
		var b []float64
		if bias != nil {
			if b, err = fullParam[float64](n, bias, norm); err != nil {
				return nil, err
			}
		}
		if mean == nil {
			mean, inv = make([]float64, rows), make([]float64, rows)
		}
		rowStats(mean, inv, x.F64, cols, float64(eps))
		for i := range rows {
			for j := range cols {
				y := (x.F64[i*cols+j] - mean[i]) * inv[i] * s[j]
				if b != nil {
					y += b[j]
				}
				out.F64[i*cols+j] = y
			}
		}
	}
	for k, st := range [][]float64{mean, inv} {
		t := outs[k+1]
		if t == nil {
			continue
		}
		for i, v := range st {
			if t.F64 != nil {
				t.F64[i] = v
			} else {
				t.F32[i] = float32(v)
			}
		}
	}
	return outs, nil
}

// fullParam returns the elements of a LayerNormalization scale or bias p
// broadcast to shape norm (p itself when it already has every element).
func fullParam[T floating](n *graph.Node, p *Tensor, norm []int) ([]T, error) {
	if len(p.Shape) > len(norm) {
		return nil, opErr(n, "scale or bias of shape %v does not broadcast to %v", p.Shape, norm)
	}
	for i, d := range p.Shape {
		if d != norm[len(norm)-len(p.Shape)+i] && d != 1 {
			return nil, opErr(n, "scale or bias of shape %v does not broadcast to %v", p.Shape, norm)
		}
	}
	var src []T
	switch v := any(&src).(type) {
	case *[]float32:
		*v = p.Floats()
	case *[]float64:
		*v = p.F64
	}
	if p.Len() == numel(norm) {
		return src, nil
	}
	full := make([]T, numel(norm))
	stridedCopy(full, src, norm, 0, broadcastStrides(p.Shape, norm))
	return full, nil
}

// rowStats computes each row's mean and 1/sqrt(variance + eps).
func rowStats[T floating](mean, inv []float64, x []T, cols int, eps float64) {
	for i := range mean {
		row := x[i*cols : (i+1)*cols]
		var s, q float64
		for _, v := range row {
			s += float64(v)
		}
		m := s / float64(cols)
		for _, v := range row {
			d := float64(v) - m
			q += d * d
		}
		mean[i], inv[i] = m, 1/math.Sqrt(q/float64(cols)+eps)
	}
}

// softmaxOp returns Softmax, or LogSoftmax with log.
func softmaxOp(log bool) opFunc {
	return func(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
		if err := need(n, in, 1); err != nil {
			return nil, err
		}
		x := in[0]
		if !isFloat(x.DType) {
			return nil, errType(n, x.DType)
		}
		r := len(x.Shape)
		var outer, d, inner int
		if c.opset < 13 {
			// coerced to 2-D at axis: rows of everything from axis on
			a := attrInt(n, "axis", 1)
			if a < -int64(r) || a > int64(r) {
				return nil, opErr(n, "axis %d is out of range for rank %d", a, r)
			}
			if a < 0 {
				a += int64(r)
			}
			outer, d, inner = numel(x.Shape[:a]), numel(x.Shape[a:]), 1
		} else {
			a, err := normAxis(n, attrInt(n, "axis", -1), r)
			if err != nil {
				return nil, err
			}
			outer, d, inner = numel(x.Shape[:a]), x.Shape[a], numel(x.Shape[a+1:])
		}
		out := c.alloc.New(x.DType, x.Shape)
		if out.Len() == 0 {
			return one(out)
		}
		if storageOf(x.DType) == storeF32 {
			if inner == 1 && !log {
				copy(out.F32, x.Floats())
				kernels.Softmax(out.F32, outer, d)
			} else {
				softmaxLoop(out.F32, x.Floats(), outer, d, inner, log)
			}
			return one(finish(out))
		}
		softmaxLoop(out.F64, x.F64, outer, d, inner, log)
		return one(out)
	}
}

// softmaxLoop computes the (log-)softmax of x laid out [outer, d, inner] along d.
func softmaxLoop[T floating](dst, x []T, outer, d, inner int, log bool) {
	for o := range outer {
		for i := range inner {
			base := o*d*inner + i
			mx := math.Inf(-1)
			for k := range d {
				mx = max(mx, float64(x[base+k*inner]))
			}
			var s float64
			for k := range d {
				s += math.Exp(float64(x[base+k*inner]) - mx)
			}
			ls := math.Log(s)
			for k := range d {
				v := float64(x[base+k*inner]) - mx
				if log {
					dst[base+k*inner] = T(v - ls)
				} else {
					dst[base+k*inner] = T(math.Exp(v) / s)
				}
			}
		}
	}
}
