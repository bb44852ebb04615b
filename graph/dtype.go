package graph

import "fmt"

// DType is the element type of a tensor. The numeric values are part of the store's
// on-disk format (tensor records keep them); do not change or reuse them.
type DType uint8

// The element types NeurStore stores. Names follow safetensors.
const (
	DTypeInvalid DType = 0
	F32          DType = 1
	F16          DType = 2
	BF16         DType = 3
	F64          DType = 4
	I8           DType = 5
	I16          DType = 6
	I32          DType = 7
	I64          DType = 8
	U8           DType = 9
	U16          DType = 10
	U32          DType = 11
	U64          DType = 12
	Bool         DType = 13
	F8E4M3       DType = 14
	F8E5M2       DType = 15
)

var dtypeInfo = [...]struct {
	name string
	size int
}{
	DTypeInvalid: {"INVALID", 0},
	F32:          {"F32", 4},
	F16:          {"F16", 2},
	BF16:         {"BF16", 2},
	F64:          {"F64", 8},
	I8:           {"I8", 1},
	I16:          {"I16", 2},
	I32:          {"I32", 4},
	I64:          {"I64", 8},
	U8:           {"U8", 1},
	U16:          {"U16", 2},
	U32:          {"U32", 4},
	U64:          {"U64", 8},
	Bool:         {"BOOL", 1},
	F8E4M3:       {"F8_E4M3", 1},
	F8E5M2:       {"F8_E5M2", 1},
}

// Valid reports whether d is a known element type.
func (d DType) Valid() bool { return d != DTypeInvalid && int(d) < len(dtypeInfo) }

// Size returns the size of one element in bytes, or 0 for an invalid type.
func (d DType) Size() int {
	if !d.Valid() {
		return 0
	}
	return dtypeInfo[d].size
}

// String returns the safetensors name of d ("F32", "BF16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// ParseDType returns the DType named s (safetensors spelling, for example "F32" or
// "BOOL"). It returns an error naming s when s is not a known type.
func ParseDType(s string) (DType, error) {
	for d := F32; int(d) < len(dtypeInfo); d++ {
		if dtypeInfo[d].name == s {
			return d, nil
		}
	}
	return DTypeInvalid, fmt.Errorf("graph: unknown dtype %q", s)
}

// NumElements returns the number of elements of a tensor of the given shape, or an
// error when a dimension is negative or the count overflows int64.
func NumElements(shape []int64) (int64, error) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("graph: negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("graph: shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// ByteSize returns the number of bytes of a tensor of type d and the given shape.
func ByteSize(d DType, shape []int64) (int64, error) {
	if !d.Valid() {
		return 0, fmt.Errorf("graph: invalid dtype %d", uint8(d))
	}
	n, err := NumElements(shape)
	if err != nil {
		return 0, err
	}
	if n > (1<<62)/int64(d.Size()) {
		return 0, fmt.Errorf("graph: shape %v is too large", shape)
	}
	return n * int64(d.Size()), nil
}

// MarshalText implements encoding.TextMarshaler: the safetensors name.
func (d DType) MarshalText() ([]byte, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("graph: invalid dtype %d", uint8(d))
	}
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	*d = v
	return err
}
