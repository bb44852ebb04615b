package kernels

import (
	"fmt"
	"sync"
)

// Conv2D as matrix products. For image n and group g, with K = C/G*KH*KW input
// rows and P = OH*OW output positions,
//
//	out[n, g's M/G channels] (M/G × P) = W[g's M/G filters] (M/G × K) · cols (K × P)
//
// where cols row (c, ky, kx) holds the input pixel each output position sees through
// that filter tap (im2col), zero where it falls in the padding. A 1×1 convolution
// with stride 1 and no padding needs no cols: the input channels are the matrix.
// Depthwise convolution (G = C = M) is computed directly instead (its products
// would be a single row, too thin for a matrix product): each filter tap is one
// SIMD multiply-add over the block of outputs it reaches (vecKernels.tapAdd).

// convWorkGrain is the least work, in multiply-adds, worth a goroutine.
const convWorkGrain = 1 << 17

// conv2D is Conv2D.
func conv2D(dst, x, w, bias []float32, p ConvParams) {
	checkConv(dst, x, w, bias, p)
	oh, ow := p.OutH(), p.OutW()
	if p.N == 0 || p.M == 0 || oh <= 0 || ow <= 0 {
		return
	}
	if p.Group == p.C && p.Group == p.M {
		convDepthwise(dst, x, w, bias, p)
		return
	}
	cg, mg := p.C/p.Group, p.M/p.Group
	k, np := cg*p.KH*p.KW, oh*ow
	direct := p.KH == 1 && p.KW == 1 && p.StrideH == 1 && p.StrideW == 1 &&
		p.PadT == 0 && p.PadL == 0 && p.PadB == 0 && p.PadR == 0
	tasks := p.N * p.Group
	taskWork := max(mg*k*np, 1)

	// Many products, or little work: one (image, group) product per task.
	if tasks >= Threads() || tasks*taskWork < 2*convWorkGrain {
		grain := max(1, convWorkGrain/taskWork)
		if parallelChunks(tasks, grain) <= 1 {
			convGroups(dst, x, w, bias, p, direct, 0, tasks)
			return
		}
		parallelFor(tasks, grain, func(lo, hi int) { convGroups(dst, x, w, bias, p, direct, lo, hi) })
		return
	}

	// Few large products: one at a time, each spread over the threads.
	var cols *[]float32
	if !direct {
		cols = getScratch(k * np)
		defer putScratch(cols)
	}
	for t := range tasks {
		convGroup(dst, x, w, bias, p, t/p.Group, t%p.Group, cols, parallelFor)
	}
}

// convGroups computes tasks [lo, hi) (task = image*Group + group) of conv2D, one
// after the other, with one im2col scratch.
func convGroups(dst, x, w, bias []float32, p ConvParams, direct bool, lo, hi int) {
	var cols *[]float32
	if !direct {
		cols = getScratch(p.C / p.Group * p.KH * p.KW * p.OutH() * p.OutW())
		defer putScratch(cols)
	}
	for t := lo; t < hi; t++ {
		convGroup(dst, x, w, bias, p, t/p.Group, t%p.Group, cols, nil)
	}
}

// convGroup computes image n, group g of conv2D with the matrix product (cols is
// the im2col scratch, nil for a direct 1×1 convolution). With a non-nil par it
// spreads the im2col over the cols rows and the product over the output channels.
func convGroup(dst, x, w, bias []float32, p ConvParams, n, g int, cols *[]float32, par func(n, grain int, fn func(lo, hi int))) {
	if par == nil {
		par = func(n, _ int, fn func(lo, hi int)) { fn(0, n) }
	}
	oh, ow := p.OutH(), p.OutW()
	cg, mg := p.C/p.Group, p.M/p.Group
	k, np := cg*p.KH*p.KW, oh*ow
	in := x[(n*p.C+g*cg)*p.H*p.W : (n*p.C+(g+1)*cg)*p.H*p.W]
	b := in
	if cols != nil {
		b = (*cols)[:k*np]
		par(k, max(1, convWorkGrain/(4*np)), func(lo, hi int) { im2col(b, in, p, lo, hi) })
	}
	out := dst[(n*p.M+g*mg)*np : (n*p.M+(g+1)*mg)*np]
	wg := w[g*mg*k : (g+1)*mg*k]
	par(mg, max(1, convWorkGrain/max(k*np, 1)), func(lo, hi int) {
		if k > 0 {
			MatMul(out[lo*np:hi*np], wg[lo*k:hi*k], b, hi-lo, k, np)
		} else {
			clear(out[lo*np : hi*np]) // no input channels: the bias alone
		}
		if bias != nil {
			for m := lo; m < hi; m++ {
				addConst(out[m*np:(m+1)*np], bias[g*mg+m])
			}
		}
	})
}

// im2col writes rows [lo, hi) of the cols matrix of one image and group: row
// (c, ky, kx) = (r / (KH*KW), r / KW % KH, r % KW) holds, for each output position
// (oy, ox), the input pixel at (oy*StrideH - PadT + ky*DilH, ox*StrideW - PadL +
// kx*DilW) of channel c, or 0 outside the input.
func im2col(cols, in []float32, p ConvParams, lo, hi int) {
	oh, ow := p.OutH(), p.OutW()
	np := oh * ow
	for r := lo; r < hi; r++ {
		c, ky, kx := r/(p.KH*p.KW), r/p.KW%p.KH, r%p.KW
		plane := in[c*p.H*p.W : (c+1)*p.H*p.W]
		row := cols[r*np : (r+1)*np]
		off := kx*p.DilW - p.PadL
		x0, x1 := validRange(off, p.StrideW, p.W, ow)
		for oy := range oh {
			d := row[oy*ow : (oy+1)*ow]
			iy := oy*p.StrideH - p.PadT + ky*p.DilH
			if iy < 0 || iy >= p.H {
				clear(d)
				continue
			}
			src := plane[iy*p.W : (iy+1)*p.W]
			clear(d[:x0])
			clear(d[x1:])
			if p.StrideW == 1 {
				copy(d[x0:x1], src[x0+off:x1+off])
			} else {
				for ox := x0; ox < x1; ox++ {
					d[ox] = src[ox*p.StrideW+off]
				}
			}
		}
	}
}

// validRange returns the output positions [lo, hi) of a row of n outputs whose
// input index o*stride + off lies in [0, size).
func validRange(off, stride, size, n int) (lo, hi int) {
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	if last := size - 1 - off; last >= 0 {
		hi = min(n, last/stride+1)
	}
	return min(lo, hi), hi
}

// addConst adds v to every element of x.
func addConst(x []float32, v float32) {
	for i := range x {
		x[i] += v
	}
}

// convDepthwise computes conv2D for G = C = M directly, one (image, channel)
// plane at a time: each output starts at the bias and accumulates the filter taps
// in the reference's order (fused multiply-adds at the SIMD levels).
func convDepthwise(dst, x, w, bias []float32, p ConvParams) {
	planes := p.N * p.C
	grain := max(1, convWorkGrain/max(p.OutH()*p.OutW()*p.KH*p.KW, 1))
	k := vk
	if parallelChunks(planes, grain) <= 1 {
		depthwisePlanes(k, dst, x, w, bias, p, 0, planes)
		return
	}
	parallelFor(planes, grain, func(lo, hi int) { depthwisePlanes(k, dst, x, w, bias, p, lo, hi) })
}

// depthwisePlanes computes planes [lo, hi) (plane = n*C + c) of convDepthwise:
// with stride 1 along the rows each tap is one block multiply-add (tapAdd) over
// the outputs it reaches.
func depthwisePlanes(k *vecKernels, dst, x, w, bias []float32, p ConvParams, lo, hi int) {
	oh, ow := p.OutH(), p.OutW()
	for pl := lo; pl < hi; pl++ {
		c := pl % p.C
		in := x[pl*p.H*p.W : (pl+1)*p.H*p.W]
		out := dst[pl*oh*ow : (pl+1)*oh*ow]
		var b float32
		if bias != nil {
			b = bias[c]
		}
		for i := range out {
			out[i] = b
		}
		for ky := range p.KH {
			offY := ky*p.DilH - p.PadT
			y0, y1 := validRange(offY, p.StrideH, p.H, oh)
			for kx := range p.KW {
				offX := kx*p.DilW - p.PadL
				x0, x1 := validRange(offX, p.StrideW, p.W, ow)
				if y0 == y1 || x0 == x1 {
					continue
				}
				wv := w[(c*p.KH+ky)*p.KW+kx]
				if p.StrideW == 1 {
					o := out[y0*ow+x0:]
					s := in[(y0*p.StrideH+offY)*p.W+x0+offX:]
					checkTap(o, s, y1-y0, x1-x0, ow, p.StrideH*p.W)
					k.tapAdd(o, s, wv, y1-y0, x1-x0, ow, p.StrideH*p.W)
					continue
				}
				for oy := y0; oy < y1; oy++ {
					o := out[oy*ow+x0 : oy*ow+x1]
					src := in[(oy*p.StrideH+offY)*p.W:]
					for i := range o {
						o[i] += wv * src[(x0+i)*p.StrideW+offX]
					}
				}
			}
		}
	}
}

// checkTap panics unless out and in hold the rows×cols blocks of a tapAdd (the
// assembly does not check).
func checkTap(out, in []float32, rows, cols, outStride, inStride int) {
	if rows > 0 && cols > 0 {
		_ = out[(rows-1)*outStride+cols-1]
		_ = in[(rows-1)*inStride+cols-1]
	}
}

// tapAddGeneric is the generic level of vecKernels.tapAdd.
func tapAddGeneric(out, in []float32, w float32, rows, cols, outStride, inStride int) {
	for r := range rows {
		o := out[r*outStride : r*outStride+cols]
		s := in[r*inStride : r*inStride+cols]
		s = s[:len(o)] // lets the compiler drop the bounds checks
		for i := range o {
			o[i] += w * s[i]
		}
	}
}

// checkConv panics unless p is a valid convolution and the slices hold it (the
// products run in assembly, which would not catch a short slice).
func checkConv(dst, x, w, bias []float32, p ConvParams) {
	bad := func(format string, a ...any) {
		panic(fmt.Sprintf("kernels: Conv2D: "+format, a...))
	}
	switch {
	case p.N < 0 || p.C < 0 || p.H < 0 || p.W < 0 || p.M < 0 || p.KH < 1 || p.KW < 1:
		bad("bad sizes %+v", p)
	case p.StrideH < 1 || p.StrideW < 1 || p.DilH < 1 || p.DilW < 1:
		bad("strides and dilations must be >= 1: %+v", p)
	case p.PadT < 0 || p.PadL < 0 || p.PadB < 0 || p.PadR < 0:
		bad("negative padding: %+v", p)
	case p.Group < 1 || p.C%p.Group != 0 || p.M%p.Group != 0:
		bad("%d groups for %d input and %d output channels", p.Group, p.C, p.M)
	}
	oh, ow := max(p.OutH(), 0), max(p.OutW(), 0)
	switch {
	case len(x) < p.N*p.C*p.H*p.W:
		bad("input of %d elements, want %d", len(x), p.N*p.C*p.H*p.W)
	case len(w) < p.M*(p.C/p.Group)*p.KH*p.KW:
		bad("weights of %d elements, want %d", len(w), p.M*(p.C/p.Group)*p.KH*p.KW)
	case len(dst) < p.N*p.M*oh*ow:
		bad("output of %d elements, want %d", len(dst), p.N*p.M*oh*ow)
	case bias != nil && len(bias) < p.M:
		bad("bias of %d elements for %d channels", len(bias), p.M)
	}
}

// scratchPool holds float32 buffers for im2col, reused across calls.
var scratchPool sync.Pool

// getScratch returns a pooled buffer of at least n elements.
func getScratch(n int) *[]float32 {
	if s, ok := scratchPool.Get().(*[]float32); ok && cap(*s) >= n {
		return s
	}
	s := make([]float32, n)
	return &s
}

// putScratch returns s to the pool.
func putScratch(s *[]float32) { scratchPool.Put(s) }
