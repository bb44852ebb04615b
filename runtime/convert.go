package runtime

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
)

// Conversions between run-time tensors and little-endian C-order bytes (ONNX
// constants, .npy arrays, stored weights).

// FromBytes builds a tensor of element type dt and shape from its little-endian
// C-order bytes.
func FromBytes(dt graph.DType, shape []int, data []byte) (*Tensor, error) {
	t := &Tensor{DType: dt, Shape: append([]int(nil), shape...)}
	n := t.Len()
	if dt.Size() == 0 {
		return nil, fmt.Errorf("runtime: element type %s is not supported", dt)
	}
	if len(data) != n*dt.Size() {
		return nil, fmt.Errorf("runtime: %d bytes for %d elements of %s", len(data), n, dt)
	}
	le := binary.LittleEndian
	switch dt {
	case graph.F32:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(le.Uint32(data[4*i:]))
		}
	case graph.F16, graph.BF16:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			h := le.Uint16(data[2*i:])
			if dt == graph.F16 {
				t.F32[i] = quant.F16ToF32(h)
			} else {
				t.F32[i] = quant.BF16ToF32(h)
			}
		}
	case graph.F64:
		t.F64 = make([]float64, n)
		for i := range t.F64 {
			t.F64[i] = math.Float64frombits(le.Uint64(data[8*i:]))
		}
	case graph.I8, graph.U8, graph.Bool, graph.I16, graph.U16, graph.I32, graph.U32, graph.I64, graph.U64:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = intAt(dt, data, i)
		}
		if dt == graph.Bool {
			for i, v := range t.I64 {
				if v != 0 {
					t.I64[i] = 1
				}
			}
		}
	default:
		return nil, fmt.Errorf("runtime: element type %s is not supported", dt)
	}
	return t, nil
}

func intAt(dt graph.DType, b []byte, i int) int64 {
	le := binary.LittleEndian
	switch dt {
	case graph.I8:
		return int64(int8(b[i]))
	case graph.U8, graph.Bool:
		return int64(b[i])
	case graph.I16:
		return int64(int16(le.Uint16(b[2*i:])))
	case graph.U16:
		return int64(le.Uint16(b[2*i:]))
	case graph.I32:
		return int64(int32(le.Uint32(b[4*i:])))
	case graph.U32:
		return int64(le.Uint32(b[4*i:]))
	}
	return int64(le.Uint64(b[8*i:]))
}

// Bytes returns t's elements as little-endian C-order bytes of its element type
// (integers wrap to their type's width, as a cast does).
func (t *Tensor) Bytes() []byte {
	n := t.Len()
	sz := t.DType.Size()
	out := make([]byte, n*sz)
	le := binary.LittleEndian
	f := t.Floats()
	for i := range n {
		o := out[i*sz:]
		switch t.DType {
		case graph.F32:
			le.PutUint32(o, math.Float32bits(f[i]))
		case graph.F16:
			le.PutUint16(o, quant.F32ToF16(f[i]))
		case graph.BF16:
			le.PutUint16(o, quant.F32ToBF16(f[i]))
		case graph.F64:
			le.PutUint64(o, math.Float64bits(t.F64[i]))
		case graph.I8, graph.U8, graph.Bool:
			o[0] = byte(t.I64[i])
		case graph.I16, graph.U16:
			le.PutUint16(o, uint16(t.I64[i]))
		case graph.I32, graph.U32:
			le.PutUint32(o, uint32(t.I64[i]))
		default:
			le.PutUint64(o, uint64(t.I64[i]))
		}
	}
	return out
}

// constTensor turns a constant with data into a run-time tensor.
func constTensor(c *graph.Const) (*Tensor, error) {
	shape := make([]int, len(c.Shape))
	for i, d := range c.Shape {
		if d < 0 || d > math.MaxInt32 {
			return nil, fmt.Errorf("runtime: constant %s has dimension %d", c.Name, d)
		}
		shape[i] = int(d)
	}
	t, err := FromBytes(c.DType, shape, c.Data)
	if err != nil {
		return nil, fmt.Errorf("runtime: constant %s: %w", c.Name, err)
	}
	return t, nil
}

// ConvertInput converts t to element type want for feeding a graph input: floats
// to a float type, integers and booleans to an integer type; it refuses a float
// for an integer input rather than truncate it. want invalid leaves t as it is.
func ConvertInput(t *Tensor, want graph.DType) (*Tensor, error) {
	if !want.Valid() || t.DType == want {
		return t, nil
	}
	from, to := storageOf(t.DType), storageOf(want)
	out := &Tensor{DType: want, Shape: t.Shape}
	switch {
	case to == storeI64 && from == storeI64:
		out.I64 = t.I64
		if want == graph.Bool {
			out.I64 = make([]int64, len(t.I64))
			for i, v := range t.I64 {
				if v != 0 {
					out.I64[i] = 1
				}
			}
		}
	case to == storeI64:
		return nil, fmt.Errorf("got %s values, the model takes %s: convert them yourself", t.DType, want)
	case to == storeF32:
		out.F32 = make([]float32, t.Len())
		for i := range out.F32 {
			switch from {
			case storeF32:
				out.F32[i] = t.F32[i]
			case storeF64:
				out.F32[i] = float32(t.F64[i])
			default:
				out.F32[i] = float32(t.I64[i])
			}
			switch want {
			case graph.F16:
				out.F32[i] = quant.F16ToF32(quant.F32ToF16(out.F32[i]))
			case graph.BF16:
				out.F32[i] = quant.BF16ToF32(quant.F32ToBF16(out.F32[i]))
			}
		}
	default:
		out.F64 = make([]float64, t.Len())
		for i := range out.F64 {
			if from == storeF32 {
				out.F64[i] = float64(t.F32[i])
			} else {
				out.F64[i] = float64(t.I64[i])
			}
		}
	}
	return out, nil
}
