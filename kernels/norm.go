package kernels

import "math"

// layerNorm is LayerNorm: per row, two passes in float64 (the mean, then the sum
// of squared deviations from it), then the normalization rounded exactly as
// layerNormRef rounds it, so results differ from the reference only through the
// order of the float64 sums.
func layerNorm(dst, x, scale, bias []float32, rows, cols int, eps float32) {
	if rows <= 0 || cols <= 0 {
		return
	}
	x, dst, scale = x[:rows*cols], dst[:rows*cols], scale[:cols]
	if bias != nil {
		bias = bias[:cols]
	}
	k, grain := vk, max(1, rowGrain/cols)
	if parallelChunks(rows, grain) <= 1 {
		layerNormRows(k, dst, x, scale, bias, cols, eps, 0, rows)
		return
	}
	parallelFor(rows, grain, func(lo, hi int) {
		layerNormRows(k, dst, x, scale, bias, cols, eps, lo, hi)
	})
}

// layerNormRows runs layerNorm on rows [lo, hi).
func layerNormRows(k *vecKernels, dst, x, scale, bias []float32, cols int, eps float32, lo, hi int) {
	for r := lo; r < hi; r++ {
		row := x[r*cols : (r+1)*cols]
		mean := k.sum(row) / float64(cols)
		v := k.sumSqDev(row, mean) / float64(cols)
		inv := 1 / math.Sqrt(v+float64(eps))
		k.normalize(dst[r*cols:(r+1)*cols], row, scale, bias, mean, inv)
	}
}

// The generic level of the LayerNorm primitives; four partial sums keep the
// additions from waiting on each other.

func sumGeneric(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += float64(x[i])
		s1 += float64(x[i+1])
		s2 += float64(x[i+2])
		s3 += float64(x[i+3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i])
	}
	return (s0 + s1) + (s2 + s3)
}

func sumSqDevGeneric(x []float32, mean float64) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		d0 := float64(x[i]) - mean
		d1 := float64(x[i+1]) - mean
		d2 := float64(x[i+2]) - mean
		d3 := float64(x[i+3]) - mean
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(x); i++ {
		d := float64(x[i]) - mean
		s0 += d * d
	}
	return (s0 + s1) + (s2 + s3)
}

func normalizeGeneric(dst, x, scale, bias []float32, mean, inv float64) {
	dst, scale = dst[:len(x)], scale[:len(x)]
	if len(bias) == 0 {
		for i, e := range x {
			dst[i] = float32((float64(e)-mean)*inv) * scale[i]
		}
		return
	}
	bias = bias[:len(x)]
	for i, e := range x {
		dst[i] = float32(float32((float64(e)-mean)*inv)*scale[i]) + bias[i] // no fused multiply-add
	}
}
