package serve

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
)

// The JSON objects of the Open Inference Protocol (KServe v2) REST API.

type serverMetadata struct {
	Name       string   `json:"name"`
	Version    string   `json:"version"`
	Extensions []string `json:"extensions"`
}

type tensorMetadata struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"` // -1 for a variable-size dimension
}

type modelMetadata struct {
	Name     string           `json:"name"`
	Versions []string         `json:"versions,omitempty"`
	Platform string           `json:"platform"`
	Inputs   []tensorMetadata `json:"inputs"`
	Outputs  []tensorMetadata `json:"outputs"`
}

type modelReady struct {
	Name  string `json:"name"`
	Ready bool   `json:"ready"`
}

type inferRequest struct {
	ID         string          `json:"id,omitempty"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Inputs     []requestInput  `json:"inputs"`
	Outputs    []requestOutput `json:"outputs,omitempty"`
}

type requestInput struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters map[string]any  `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

type requestOutput struct {
	Name       string         `json:"name"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

type inferResponse struct {
	ModelName    string           `json:"model_name"`
	ModelVersion string           `json:"model_version,omitempty"`
	ID           string           `json:"id,omitempty"`
	Outputs      []responseOutput `json:"outputs"`
}

type responseOutput struct {
	Name     string          `json:"name"`
	Shape    []int           `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data"`
}

// datatypes maps the protocol's tensor data types to the store's element types.
// BYTES (variable-length strings) has no counterpart.
var datatypes = map[string]graph.DType{
	"BOOL":   graph.Bool,
	"UINT8":  graph.U8,
	"UINT16": graph.U16,
	"UINT32": graph.U32,
	"UINT64": graph.U64,
	"INT8":   graph.I8,
	"INT16":  graph.I16,
	"INT32":  graph.I32,
	"INT64":  graph.I64,
	"FP16":   graph.F16,
	"FP32":   graph.F32,
	"FP64":   graph.F64,
	"BF16":   graph.BF16,
}

// datatypeName is the protocol name of element type d ("FP32"), or d's own name
// for the types the protocol lacks.
func datatypeName(d graph.DType) string {
	for name, dt := range datatypes {
		if dt == d {
			return name
		}
	}
	return d.String()
}

// parseDatatype checks a request's datatype.
func parseDatatype(s string) (graph.DType, error) {
	if dt, ok := datatypes[s]; ok {
		return dt, nil
	}
	if s == "BYTES" {
		return 0, errorf(http.StatusBadRequest, "datatype BYTES is not supported")
	}
	return 0, errorf(http.StatusBadRequest, "unknown datatype %q (want BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 or BF16)", s)
}

// metadataShape turns a graph shape into the protocol's: -1 for symbolic dims.
func metadataShape(s []graph.Dim) []int64 {
	out := make([]int64, len(s))
	for i, d := range s {
		out[i] = d.Value
		if d.Value < 0 {
			out[i] = -1
		}
	}
	return out
}

func tensorsMetadata(vs []graph.ValueInfo) []tensorMetadata {
	out := make([]tensorMetadata, 0, len(vs))
	for _, v := range vs {
		out = append(out, tensorMetadata{Name: v.Name, Datatype: datatypeName(v.DType), Shape: metadataShape(v.Shape)})
	}
	return out
}

// Storage kinds of a runtime.Tensor (see runtime.Tensor).
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

// maxElements bounds the element count of one request tensor.
const maxElements = 1 << 31

// decodeTensor builds the tensor of one request input: the shape is checked, the
// data (flat or nested JSON arrays, row-major) must hold exactly the shape's
// element count of values that fit dt.
func decodeTensor(in *requestInput, dt graph.DType) (*runtime.Tensor, error) {
	shape := make([]int, len(in.Shape))
	n := int64(1)
	for i, d := range in.Shape {
		if d < 0 {
			return nil, errorf(http.StatusBadRequest, "input %q: negative dimension in shape %v", in.Name, in.Shape)
		}
		if d > 0 && n > maxElements/d {
			return nil, errorf(http.StatusBadRequest, "input %q: shape %v is too large", in.Name, in.Shape)
		}
		n *= d
		shape[i] = int(d)
	}
	if len(in.Data) == 0 {
		return nil, errorf(http.StatusBadRequest, "input %q has no data", in.Name)
	}
	// room for the values the shape says, but no more than the JSON can hold (a
	// value takes two bytes at least, with its comma)
	room := int(min(n, int64(len(in.Data)/2+1)))
	t := &runtime.Tensor{DType: dt, Shape: shape}
	var err error
	switch storageOf(dt) {
	case storeF32:
		t.F32 = make([]float32, 0, room)
		err = scanData(in.Data, func(tok []byte) error {
			f, err := parseFloat(tok)
			t.F32 = append(t.F32, float32(f))
			return err
		})
	case storeF64:
		t.F64 = make([]float64, 0, room)
		err = scanData(in.Data, func(tok []byte) error {
			f, err := parseFloat(tok)
			t.F64 = append(t.F64, f)
			return err
		})
	default:
		t.I64 = make([]int64, 0, room)
		lo, hi := intRange(dt)
		err = scanData(in.Data, func(tok []byte) error {
			v, err := parseInt(tok, dt, lo, hi)
			t.I64 = append(t.I64, v)
			return err
		})
	}
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "input %q: %v", in.Name, err)
	}
	if got := len(t.F32) + len(t.F64) + len(t.I64); int64(got) != n {
		return nil, errorf(http.StatusBadRequest, "input %q: %d values for shape %v (%d elements)", in.Name, got, in.Shape, n)
	}
	if dt == graph.F16 || dt == graph.BF16 {
		// round to the type, as a cast does
		t.DType = graph.F32
		if t, err = runtime.ConvertInput(t, dt); err != nil {
			return nil, errorf(http.StatusBadRequest, "input %q: %v", in.Name, err)
		}
	}
	return t, nil
}

// scanData calls f with the token of each scalar of raw, a JSON array (nested
// arrays are flattened in row-major order), without allocating per value. raw is
// valid JSON (encoding/json checked it).
func scanData(raw []byte, f func(tok []byte) error) error {
	i := 0
	for i < len(raw) && isSpace(raw[i]) {
		i++
	}
	if i == len(raw) || raw[i] != '[' {
		return fmt.Errorf("data must be a JSON array")
	}
	for i < len(raw) {
		c := raw[i]
		switch {
		case c == '[' || c == ']' || c == ',' || isSpace(c):
			i++
			continue
		case c == '{':
			return fmt.Errorf("data holds an object")
		}
		j := i + 1
		if c == '"' {
			for j < len(raw) && raw[j] != '"' {
				if raw[j] == '\\' {
					j++
				}
				j++
			}
			j++ // the closing quote
		} else {
			for j < len(raw) && raw[j] != ',' && raw[j] != ']' && !isSpace(raw[j]) {
				j++
			}
		}
		if err := f(raw[i:min(j, len(raw))]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// parseFloat reads a float token: a number, or one of the strings "NaN", "Inf",
// "-Inf" ("Infinity", "-Infinity" too) for non-finite values.
func parseFloat(tok []byte) (float64, error) {
	switch tok[0] {
	case '"':
		var s string
		if json.Unmarshal(tok, &s) == nil {
			if f, ok := specialFloats[s]; ok {
				return f, nil
			}
		}
		return 0, fmt.Errorf("value %s is not a number", tok)
	case 't', 'f', 'n':
		return 0, fmt.Errorf("value %s is not a number", tok)
	}
	f, err := strconv.ParseFloat(string(tok), 64)
	if err != nil {
		return 0, fmt.Errorf("value %s is not a number", tok)
	}
	return f, nil
}

var specialFloats = map[string]float64{
	"NaN": math.NaN(), "Inf": math.Inf(1), "+Inf": math.Inf(1), "-Inf": math.Inf(-1),
	"Infinity": math.Inf(1), "-Infinity": math.Inf(-1),
}

// intRange is the range of each integer element type.
func intRange(dt graph.DType) (lo int64, hi uint64) {
	switch dt {
	case graph.Bool:
		return 0, 1
	case graph.I8:
		return math.MinInt8, math.MaxInt8
	case graph.U8:
		return 0, math.MaxUint8
	case graph.I16:
		return math.MinInt16, math.MaxInt16
	case graph.U16:
		return 0, math.MaxUint16
	case graph.I32:
		return math.MinInt32, math.MaxInt32
	case graph.U32:
		return 0, math.MaxUint32
	case graph.U64:
		return 0, math.MaxUint64
	}
	return math.MinInt64, math.MaxInt64
}

// parseInt reads an integer token within [lo, hi]: a JSON integer (or a number
// with an integral value), or true/false for BOOL. UINT64 values above MaxInt64
// are kept as their bit pattern, as runtime.Tensor does.
func parseInt(tok []byte, dt graph.DType, lo int64, hi uint64) (int64, error) {
	switch tok[0] {
	case 't', 'f':
		if dt == graph.Bool {
			if tok[0] == 't' {
				return 1, nil
			}
			return 0, nil
		}
		return 0, fmt.Errorf("value %s is not an integer", tok)
	case '"', 'n':
		return 0, fmt.Errorf("value %s is not an integer", tok)
	}
	s := string(tok)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		if i < lo || i >= 0 && uint64(i) > hi {
			return 0, fmt.Errorf("value %d is out of range for %s", i, datatypeName(dt))
		}
		return i, nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil && dt == graph.U64 {
		return int64(u), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) {
		return 0, fmt.Errorf("value %s is not an integer", tok)
	}
	if f < float64(lo) || f > float64(hi) || f >= 1<<63 {
		return 0, fmt.Errorf("value %s is out of range for %s", tok, datatypeName(dt))
	}
	return int64(f), nil
}

// encodeData writes t's elements as a flat JSON array. Float values are written
// with the fewest digits that read back to the same value of their type;
// non-finite ones as "NaN", "Inf" or "-Inf".
func encodeData(t *runtime.Tensor) json.RawMessage {
	b := make([]byte, 0, 2+t.Len()*8)
	b = append(b, '[')
	appendFloat := func(v float64, bits int) {
		switch {
		case math.IsNaN(v):
			b = append(b, `"NaN"`...)
		case math.IsInf(v, 1):
			b = append(b, `"Inf"`...)
		case math.IsInf(v, -1):
			b = append(b, `"-Inf"`...)
		default:
			b = strconv.AppendFloat(b, v, 'g', -1, bits)
		}
	}
	switch storageOf(t.DType) {
	case storeF32:
		for i, v := range t.Floats() {
			if i > 0 {
				b = append(b, ',')
			}
			appendFloat(float64(v), 32)
		}
	case storeF64:
		for i, v := range t.F64 {
			if i > 0 {
				b = append(b, ',')
			}
			appendFloat(v, 64)
		}
	default:
		for i, v := range t.I64 {
			if i > 0 {
				b = append(b, ',')
			}
			switch t.DType {
			case graph.Bool:
				b = strconv.AppendBool(b, v != 0)
			case graph.U64:
				b = strconv.AppendUint(b, uint64(v), 10)
			default:
				b = strconv.AppendInt(b, v, 10)
			}
		}
	}
	return append(b, ']')
}
