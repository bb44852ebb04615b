package runtime

import (
	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
)

// Tensor is a value while a graph runs. Its elements live in exactly one of three
// slices, chosen by DType's storage kind:
//
//	F32:  graph.F32, graph.F16, graph.BF16 (half types are kept widened to float32,
//	      rounded to their type whenever an op produces them)
//	F64:  graph.F64
//	I64:  every integer type and graph.Bool (0 or 1), kept widened to int64
//
// Shape is in C order; a scalar has an empty shape and one element.
type Tensor struct {
	DType graph.DType
	Shape []int
	F32   []float32
	F64   []float64
	I64   []int64
	// Packed, when set, is a float weight kept in compressed form (base + quantized
	// delta) and F32 is nil until Floats expands it. Only weights are packed; MatMul,
	// Gemm and Conv compute on Packed directly, other ops call Floats.
	Packed *kernels.Packed
	// joint, set only inside a cross-model run (RunParts), is a packed weight
	// whose base product is shared by every row and whose deltas differ by part.
	joint *jointWeight
}

// Floats returns the float32 elements of an F32-kind tensor, expanding a packed
// weight once (the dense copy is kept).
func (t *Tensor) Floats() []float32 {
	if t.F32 == nil && t.Packed != nil {
		t.F32 = make([]float32, t.Packed.Rows*t.Packed.Cols)
		kernels.Dense(t.F32, t.Packed)
	}
	return t.F32
}

// Storage kinds of a DType.
type storage uint8

const (
	storeF32 storage = iota
	storeF64
	storeI64
)

func storageOf(d graph.DType) storage {
	switch d {
	case graph.F32, graph.F16, graph.BF16:
		return storeF32
	case graph.F64:
		return storeF64
	}
	return storeI64
}

// Len returns the number of elements Shape describes.
func (t *Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Alloc hands out output tensors for ops. The session's arena implements it: the
// returned tensor's data slice has exactly the shape's element count and arbitrary
// contents; ops must write every element.
type Alloc interface {
	New(dt graph.DType, shape []int) *Tensor
}

// heapAlloc is an Alloc that allocates every tensor on the Go heap (tests, folding).
type heapAlloc struct{}

func (heapAlloc) New(dt graph.DType, shape []int) *Tensor {
	t := &Tensor{DType: dt, Shape: append([]int(nil), shape...)}
	switch n := t.Len(); storageOf(dt) {
	case storeF32:
		t.F32 = make([]float32, n)
	case storeF64:
		t.F64 = make([]float64, n)
	default:
		t.I64 = make([]int64, n)
	}
	return t
}
