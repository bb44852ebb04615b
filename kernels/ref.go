package kernels

import (
	"math"
)

// Pure-Go references. They define what every kernel computes; the exported kernels
// must match them within float32 rounding (the tests say how close).

// matMulRef: c[m×n] = a[m×k] · b[k×n].
func matMulRef(c, a, b []float32, m, k, n int) {
	for i := range m {
		for j := range n {
			var s float32
			for p := range k {
				s += a[i*k+p] * b[p*n+j]
			}
			c[i*n+j] = s
		}
	}
}

// matMulTRef: c[m×n] = a[m×k] · w[n×k]ᵀ.
func matMulTRef(c, a, w []float32, m, k, n int) {
	for i := range m {
		for j := range n {
			var s float32
			for p := range k {
				s += a[i*k+p] * w[j*k+p]
			}
			c[i*n+j] = s
		}
	}
}

// denseRef writes the Rows*Cols elements of p to dst.
func denseRef(dst []float32, p *Packed) {
	n := p.Rows * p.Cols
	d := p.Delta
	if d == nil {
		copy(dst[:n], p.BaseF32)
		return
	}
	mask := uint32(1)<<d.Bits - 1
	for i := range n {
		bit := uint64(i) * uint64(d.Bits)
		var win uint32
		for k := uint64(0); k < 2 && bit/8+k < uint64(len(d.Data)); k++ {
			win |= uint32(d.Data[bit/8+k]) << (8 * k)
		}
		q := int32(win>>(bit%8)&mask) + d.Zero[i/d.Group]
		switch {
		case p.BaseF32 != nil:
			dst[i] = p.BaseF32[i] + float32(q)*d.Scale
		case p.BaseI16 != nil:
			dst[i] = float32(int32(p.BaseI16[i])+q) * d.Scale
		case p.BaseI8 != nil:
			dst[i] = float32(int32(p.BaseI8[i])+q) * d.Scale
		default:
			dst[i] = float32(q) * d.Scale
		}
	}
	for _, e := range d.Exceptions {
		dst[e.Index] = math.Float32frombits(e.Bits)
	}
}

// matMulPackedRef: c = a[m×Rows]·W when !transposed (W is [k×n]), a[m×Cols]·Wᵀ when
// transposed (W is [n×k]).
func matMulPackedRef(c, a []float32, m int, w *Packed, transposed bool) {
	d := make([]float32, w.Rows*w.Cols)
	denseRef(d, w)
	if transposed {
		matMulTRef(c, a, d, m, w.Cols, w.Rows)
	} else {
		matMulRef(c, a, d, m, w.Rows, w.Cols)
	}
}

// conv2DRef: dst[N,M,OH,OW] = conv(x[N,C,H,W], w[M,C/G,KH,KW]) + bias[M] (bias may be nil).
func conv2DRef(dst, x, w, bias []float32, p ConvParams) {
	oh, ow := p.OutH(), p.OutW()
	cg, mg := p.C/p.Group, p.M/p.Group
	for n := range p.N {
		for m := range p.M {
			g := m / mg
			for y := range oh {
				for xo := range ow {
					var s float32
					if bias != nil {
						s = bias[m]
					}
					for c := range cg {
						ci := g*cg + c
						for ky := range p.KH {
							iy := y*p.StrideH - p.PadT + ky*p.DilH
							if iy < 0 || iy >= p.H {
								continue
							}
							for kx := range p.KW {
								ix := xo*p.StrideW - p.PadL + kx*p.DilW
								if ix < 0 || ix >= p.W {
									continue
								}
								s += x[((n*p.C+ci)*p.H+iy)*p.W+ix] * w[((m*cg+c)*p.KH+ky)*p.KW+kx]
							}
						}
					}
					dst[((n*p.M+m)*oh+y)*ow+xo] = s
				}
			}
		}
	}
}

// softmaxRef: each of the rows of x (cols wide) becomes its softmax, in place.
func softmaxRef(x []float32, rows, cols int) {
	for r := range rows {
		row := x[r*cols : (r+1)*cols]
		mx := float32(math.Inf(-1))
		for _, v := range row {
			mx = max(mx, v)
		}
		var s float64
		for i, v := range row {
			e := math.Exp(float64(v - mx))
			row[i] = float32(e)
			s += e
		}
		for i := range row {
			row[i] = float32(float64(row[i]) / s)
		}
	}
}

// layerNormRef: dst row = (x row - mean) / sqrt(var + eps) * scale + bias (bias may be nil).
func layerNormRef(dst, x, scale, bias []float32, rows, cols int, eps float32) {
	for r := range rows {
		row := x[r*cols : (r+1)*cols]
		var mean, v float64
		for _, e := range row {
			mean += float64(e)
		}
		mean /= float64(cols)
		for _, e := range row {
			v += (float64(e) - mean) * (float64(e) - mean)
		}
		inv := 1 / math.Sqrt(v/float64(cols)+float64(eps))
		for i, e := range row {
			y := float32((float64(e)-mean)*inv) * scale[i]
			if bias != nil {
				y += bias[i]
			}
			dst[r*cols+i] = y
		}
	}
}

// geluRef: dst = x * (1 + erf(x / sqrt 2)) / 2.
func geluRef(dst, x []float32) {
	for i, v := range x {
		dst[i] = float32(0.5 * float64(v) * (1 + math.Erf(float64(v)/math.Sqrt2)))
	}
}

// erfRef: dst = erf(x).
func erfRef(dst, x []float32) {
	for i, v := range x {
		dst[i] = float32(math.Erf(float64(v)))
	}
}
