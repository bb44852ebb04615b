package serve

import (
	"encoding/json"
	"math"
	"slices"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
	"github.com/neurstore/neurstore/runtime"
)

func TestDatatypes(t *testing.T) {
	for name, dt := range datatypes {
		if got := datatypeName(dt); got != name {
			t.Errorf("datatypeName(%s) = %s, want %s", dt, got, name)
		}
		if got, err := parseDatatype(name); err != nil || got != dt {
			t.Errorf("parseDatatype(%s) = %v, %v", name, got, err)
		}
	}
	for _, bad := range []string{"BYTES", "fp32", "FLOAT", ""} {
		if _, err := parseDatatype(bad); statusOf(err) != 400 {
			t.Errorf("parseDatatype(%q): %v", bad, err)
		}
	}
}

func decodeOne(t *testing.T, datatype string, shape []int64, data string) (*runtime.Tensor, error) {
	t.Helper()
	dt, err := parseDatatype(datatype)
	if err != nil {
		t.Fatal(err)
	}
	return decodeTensor(&requestInput{Name: "x", Shape: shape, Datatype: datatype, Data: json.RawMessage(data)}, dt)
}

func TestDecodeEncode(t *testing.T) {
	cases := []struct {
		datatype string
		shape    []int64
		data     string
		encoded  string // "" means data itself
	}{
		{"FP32", []int64{2, 2}, `[[0.1,-2.5],[1e-8,3]]`, `[0.1,-2.5,1e-08,3]`},
		{"FP32", []int64{4}, `["NaN","Inf","-Inf",1]`, ``},
		{"FP32", []int64{2}, `["Infinity","-Infinity"]`, `["Inf","-Inf"]`},
		{"FP64", []int64{1, 3}, `[[0.1,1e300,-7]]`, `[0.1,1e+300,-7]`},
		{"FP16", []int64{2}, `[0.1,65504]`, `[0.099975586,65504]`},
		{"BF16", []int64{2}, `[0.1,3]`, `[0.100097656,3]`},
		{"INT8", []int64{3}, `[-128,0,127]`, ``},
		{"UINT8", []int64{2}, `[0,255]`, ``},
		{"INT16", []int64{2}, `[-32768,1e3]`, `[-32768,1000]`},
		{"UINT16", []int64{1}, `[65535]`, ``},
		{"INT32", []int64{2}, `[-2147483648,2147483647]`, ``},
		{"UINT32", []int64{1}, `[4294967295]`, ``},
		{"INT64", []int64{2}, `[-9223372036854775808,9223372036854775807]`, ``},
		{"UINT64", []int64{2}, `[0,18446744073709551615]`, ``},
		{"BOOL", []int64{2, 2}, `[[true,false],[1,0]]`, `[true,false,true,false]`},
		{"FP32", []int64{}, `[5]`, ``},
		{"FP32", []int64{0, 3}, `[]`, ``},
		{"FP32", []int64{3}, ` [ [1] ,[ 2, 3 ] ] `, `[1,2,3]`},
		{"FP32", []int64{1}, `["\u004eaN"]`, `["NaN"]`},
	}
	for _, c := range cases {
		x, err := decodeOne(t, c.datatype, c.shape, c.data)
		if err != nil {
			t.Errorf("%s %s: %v", c.datatype, c.data, err)
			continue
		}
		if dt, _ := parseDatatype(c.datatype); x.DType != dt || len(x.Shape) != len(c.shape) {
			t.Errorf("%s %s: tensor %s %v", c.datatype, c.data, x.DType, x.Shape)
		}
		want := c.encoded
		if want == "" {
			want = c.data
		}
		if got := string(encodeData(x)); got != want {
			t.Errorf("%s %s: encoded %s, want %s", c.datatype, c.data, got, want)
		}
	}
	// half types are rounded to their type
	x, _ := decodeOne(t, "FP16", []int64{1}, `[0.1]`)
	if x.F32[0] != quant.F16ToF32(quant.F32ToF16(0.1)) {
		t.Errorf("FP16 0.1 = %v", x.F32[0])
	}
	x, _ = decodeOne(t, "FP32", []int64{1}, `["NaN"]`)
	if !math.IsNaN(float64(x.F32[0])) {
		t.Errorf("NaN = %v", x.F32[0])
	}
	x, _ = decodeOne(t, "UINT64", []int64{1}, `[18446744073709551615]`)
	if !slices.Equal(x.I64, []int64{-1}) {
		t.Errorf("UINT64 max = %v", x.I64)
	}
	if x.DType != graph.U64 {
		t.Errorf("dtype %s", x.DType)
	}
}

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		datatype string
		shape    []int64
		data     string
	}{
		{"UINT8", []int64{1}, `[256]`},
		{"UINT8", []int64{1}, `[-1]`},
		{"INT8", []int64{1}, `[-129]`},
		{"INT32", []int64{1}, `[-2147483649]`},
		{"UINT32", []int64{1}, `[4294967296]`},
		{"INT64", []int64{1}, `[9223372036854775808]`},
		{"UINT64", []int64{1}, `[18446744073709551616]`},
		{"INT64", []int64{1}, `[1.5]`},
		{"INT64", []int64{1}, `[true]`},
		{"INT64", []int64{1}, `["1"]`},
		{"BOOL", []int64{1}, `[2]`},
		{"FP32", []int64{1}, `[true]`},
		{"FP32", []int64{1}, `["one"]`},
		{"FP32", []int64{2}, `["N\\"aN", 1]`},
		{"FP32", []int64{1}, `[[{"a": 1}]]`},
		{"FP32", []int64{1}, `[null]`},
		{"FP32", []int64{1}, `{"a": 1}`},
		{"FP32", []int64{1}, `1`},
		{"FP32", []int64{1}, `null`},
		{"FP32", []int64{2}, `[1]`},
		{"FP32", []int64{1}, `[1, 2]`},
		{"FP32", []int64{-2}, `[1]`},
		{"FP32", []int64{1 << 40, 1 << 40}, `[1]`},
	}
	for _, c := range cases {
		if _, err := decodeOne(t, c.datatype, c.shape, c.data); statusOf(err) != 400 {
			t.Errorf("%s %v %s: %v, want a 400 error", c.datatype, c.shape, c.data, err)
		}
	}
}
