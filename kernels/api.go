package kernels

import (
	"errors"
	"fmt"

	"github.com/neurstore/neurstore/quant"
)

// Packed is a weight matrix as the store keeps it for compressed computation: a base
// plus an optional quantized delta, never expanded to dense float32 in memory.
// The matrix has Rows x Cols elements in row-major order (element i = r*Cols + c,
// the order of the tensor's flat data). Exactly one base form is set:
//
//	BaseF32: w[i] = BaseF32[i] + float32(u[i] + Zero[g]) * Delta.Scale
//	BaseI16: w[i] = float32(int32(BaseI16[i]) + u[i] + Zero[g]) * Delta.Scale
//	BaseI8:  the same with int8 codes
//
// where u[i] and Zero[g] (g = i / Delta.Group) come from the quant.GroupPacked
// layout. The integer bases are grid codes on the delta's grid (step Delta.Scale),
// so base + delta is integer addition. Delta.Exceptions override their elements
// with the float32 they hold. With Delta nil the matrix is BaseF32 itself (a dense
// weight; the integer bases need a delta for their scale). With no base at all
// the matrix is the delta alone, w[i] = float32(u[i] + Zero[g]) * Delta.Scale:
// the part of a fine-tune's product that is added to a base product shared with
// other fine-tunes (see runtime's cross-model runs).
type Packed struct {
	Rows, Cols int
	BaseF32    []float32
	BaseI16    []int16
	BaseI8     []int8
	Delta      *quant.GroupPacked
}

// Validate checks that p's parts agree with each other.
func (p *Packed) Validate() error {
	n := p.Rows * p.Cols
	if p.Rows < 0 || p.Cols < 0 {
		return fmt.Errorf("kernels: packed matrix %dx%d", p.Rows, p.Cols)
	}
	set := 0
	for _, l := range []int{len(p.BaseF32), len(p.BaseI16), len(p.BaseI8)} {
		if l > 0 {
			set++
			if l != n {
				return fmt.Errorf("kernels: base of %d elements for a %dx%d matrix", l, p.Rows, p.Cols)
			}
		}
	}
	if set > 1 || set == 0 && p.Delta == nil && n > 0 {
		return errors.New("kernels: packed matrix needs one base, or none with a delta")
	}
	if p.Delta == nil {
		if p.BaseF32 == nil && n > 0 {
			return errors.New("kernels: an integer base needs a delta for its scale")
		}
		return nil
	}
	if p.Delta.N != n {
		return fmt.Errorf("kernels: delta of %d elements for a %dx%d matrix", p.Delta.N, p.Rows, p.Cols)
	}
	if p.Delta.Bits > 8 {
		return fmt.Errorf("kernels: delta width %d bits; the kernels take 1 to 8", p.Delta.Bits)
	}
	return p.Delta.Validate()
}

// Bytes is the memory p's arrays hold.
func (p *Packed) Bytes() int64 {
	b := int64(len(p.BaseF32))*4 + int64(len(p.BaseI16))*2 + int64(len(p.BaseI8))
	if d := p.Delta; d != nil {
		b += int64(len(d.Data)) + int64(len(d.Zero))*4 + int64(len(d.Exceptions))*8
	}
	return b
}

// ConvParams describes a 2-D convolution over NCHW input with OIHW weights
// (O = M output channels, I = C/Group input channels per group).
type ConvParams struct {
	N, C, H, W             int // input
	M                      int // output channels
	KH, KW                 int // kernel
	StrideH, StrideW       int
	PadT, PadL, PadB, PadR int
	DilH, DilW             int
	Group                  int
}

// OutH and OutW are the output's spatial size.
func (p ConvParams) OutH() int { return (p.H+p.PadT+p.PadB-p.DilH*(p.KH-1)-1)/p.StrideH + 1 }
func (p ConvParams) OutW() int { return (p.W+p.PadL+p.PadR-p.DilW*(p.KW-1)-1)/p.StrideW + 1 }
