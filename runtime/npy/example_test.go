package npy_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime/npy"
)

func Example() {
	// A 2x2 float32 array, little-endian C order.
	data := make([]byte, 0, 16)
	for _, v := range []float32{1, 2, 3, 4} {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
	}
	var buf bytes.Buffer
	if err := npy.Write(&buf, &npy.Array{DType: graph.F32, Shape: []int{2, 2}, Data: data}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d-byte header: %q\n", 128-16, bytes.TrimRight(buf.Bytes()[10:128], " \n"))

	a, err := npy.Read(&buf)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.DType, a.Shape, a.Len(), math.Float32frombits(binary.LittleEndian.Uint32(a.Data[12:])))
	// Output:
	// 112-byte header: "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
	// F32 [2 2] 4 4
}

func ExampleRead_fortranOrder() {
	h := "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n"
	file := append([]byte("\x93NUMPY\x01\x00"), byte(len(h)), 0)
	file = append(append(file, h...), make([]byte, 24)...)
	_, err := npy.Read(bytes.NewReader(file))
	fmt.Println(err)
	// Output:
	// npy: Fortran-order arrays are not supported; save with np.ascontiguousarray (shape (2, 3))
}
