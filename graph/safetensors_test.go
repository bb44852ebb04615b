package graph

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// stFileBytes returns a safetensors file: the length of header, header, then data.
func stFileBytes(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// writeTemp writes b to a new file named name in a temporary folder and returns its path.
func writeTemp(t *testing.T, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkOneLine fails t unless err is a one-line error starting with prefix and
// containing want.
func checkOneLine(t *testing.T, err error, prefix, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) {
		t.Errorf("error %q does not start with %q", msg, prefix)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q spans several lines", msg)
	}
}

// entry returns the JSON of one tensor entry.
func entry(dtype string, shape []int64, begin, end int64) string {
	s, _ := json.Marshal(shape)
	if shape == nil {
		s = []byte("[]")
	}
	return fmt.Sprintf(`{"dtype":%q,"shape":%s,"data_offsets":[%d,%d]}`, dtype, s, begin, end)
}

// headerTests are headers that ParseSafetensorsHeader and OpenSafetensors refuse.
var headerTests = []struct {
	name, header string
	dataSize     int
	want         string
}{
	{"invalid JSON", `{"a":`, 0, "not valid JSON"},
	{"bad JSON syntax", `{"a" 1}`, 0, "not valid JSON"},
	{"not an object", `[1,2]`, 0, "header is not a JSON object"},
	{"string header", `"x"`, 0, "header is not a JSON object"},
	{"leading space", ` {}`, 0, "it must start with '{'"},
	{"huge dtype size", `{"a":` + entry("F64", []int64{1 << 60}, 0, 0) + `}`, 0, `tensor "a": shape [1152921504606846976] is too large`},
	{"trailing data", `{} {}`, 0, "data after its JSON object"},
	{"invalid UTF-8", "{\"a\xff\":" + entry("U8", []int64{1}, 0, 1) + "}", 1, "not valid UTF-8"},
	{"entry not an object", `{"a":1}`, 0, `tensor "a": entry is not a JSON object`},
	{"missing dtype", `{"a":{"shape":[1],"data_offsets":[0,1]}}`, 1, `tensor "a": missing field "dtype"`},
	{"missing shape", `{"a":{"dtype":"U8","data_offsets":[0,1]}}`, 1, `tensor "a": missing field "shape"`},
	{"missing offsets", `{"a":{"dtype":"U8","shape":[1]}}`, 1, `tensor "a": missing field "data_offsets"`},
	{"dtype not a string", `{"a":{"dtype":4,"shape":[1],"data_offsets":[0,1]}}`, 1, `tensor "a": dtype is not a string`},
	{"shape not an array", `{"a":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}`, 1, `tensor "a": shape is not an array of integers`},
	{"shape of strings", `{"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}`, 1, `tensor "a": shape is not an array of integers`},
	{"fractional dim", `{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`, 1, "1.5 is not a 64-bit integer"},
	{"huge offset", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,99999999999999999999]}}`, 1, "is not a 64-bit integer"},
	{"three offsets", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}}`, 1, "data_offsets has 3 numbers, want 2"},
	{"null offsets", `{"a":{"dtype":"U8","shape":[1],"data_offsets":null}}`, 1, "data_offsets is not an array of integers"},
	{"unknown field", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":0}}`, 1, `tensor "a": unknown field "extra"`},
	{"metadata value not a string", `{"__metadata__":{"k":1}}`, 0, `__metadata__ value for "k" is not a string`},
	{"metadata not an object", `{"__metadata__":"k"}`, 0, "__metadata__ is not a JSON object"},
	{"duplicate tensor", `{"a":` + entry("U8", []int64{1}, 0, 1) + `,"a":` + entry("U8", []int64{1}, 1, 2) + `}`, 2, `duplicate key "a"`},
	{"duplicate metadata", `{"__metadata__":{},"__metadata__":{}}`, 0, `duplicate key "__metadata__"`},
	{"duplicate metadata key", `{"__metadata__":{"k":"1","k":"2"}}`, 0, `duplicate key "k" in __metadata__`},
	{"duplicate field", `{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1, `tensor "a": duplicate field "dtype"`},
	{"empty name", `{"":` + entry("U8", []int64{1}, 0, 1) + `}`, 1, "tensor with an empty name"},
	{"unknown dtype", `{"a":` + entry("F31", []int64{1}, 0, 4) + `}`, 4, `tensor "a": unknown dtype "F31"`},
	{"negative dim", `{"a":` + entry("U8", []int64{2, -1}, 0, 0) + `}`, 0, `tensor "a": negative dimension -1`},
	{"huge shape", `{"a":` + entry("U8", []int64{1 << 40, 1 << 40}, 0, 0) + `}`, 0, `tensor "a": shape [1099511627776 1099511627776] is too large`},
	{"size mismatch", `{"a":` + entry("F32", []int64{3}, 0, 8) + `}`, 8, `tensor "a": data_offsets [0, 8] hold 8 bytes but shape [3] of F32 needs 12 bytes`},
	{"negative offset", `{"a":` + entry("U8", []int64{1}, -1, 0) + `}`, 0, `tensor "a": negative data_offsets`},
	{"begin after end", `{"a":` + entry("U8", []int64{4}, 8, 4) + `}`, 8, `tensor "a": data_offsets begin 8 is after end 4`},
	{"end past data", `{"a":` + entry("U8", []int64{4}, 0, 4) + `}`, 3, `tensor "a": data_offsets end 4 runs past the data section (3 bytes)`},
	{"overlap", `{"a":` + entry("U8", []int64{8}, 0, 8) + `,"b":` + entry("U8", []int64{8}, 4, 12) + `}`, 12, `tensors "a" [0, 8) and "b" [4, 12) overlap`},
	{"empty tensor inside another", `{"a":` + entry("U8", []int64{8}, 0, 8) + `,"b":` + entry("U8", []int64{0}, 4, 4) + `}`, 8, `tensors "a" [0, 8) and "b" [4, 4) overlap`},
	{"gap", `{"a":` + entry("U8", []int64{4}, 0, 4) + `,"b":` + entry("U8", []int64{4}, 8, 12) + `}`, 12, `data bytes [4, 8) before tensor "b" belong to no tensor`},
	{"leading gap", `{"a":` + entry("U8", []int64{4}, 4, 8) + `}`, 8, `data bytes [0, 4) before tensor "a" belong to no tensor`},
	{"trailing bytes", `{"a":` + entry("U8", []int64{4}, 0, 4) + `}`, 6, `data bytes [4, 6) at the end of the data section belong to no tensor`},
	{"data without tensors", `{}`, 3, `data bytes [0, 3) at the end`},
}

func TestParseSafetensorsHeaderErrors(t *testing.T) {
	for _, tt := range headerTests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := ParseSafetensorsHeader([]byte(tt.header), int64(tt.dataSize))
			checkOneLine(t, err, "graph: safetensors: ", tt.want)
		})
	}
	_, _, _, err := ParseSafetensorsHeader([]byte(`{}`), -1)
	checkOneLine(t, err, "graph: safetensors: ", "negative data section size -1")
}

func TestOpenSafetensorsErrors(t *testing.T) {
	for _, tt := range headerTests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, "bad.safetensors", stFileBytes(tt.header, make([]byte, tt.dataSize)))
			src, err := OpenSafetensors(path)
			if err == nil {
				src.Close()
			}
			checkOneLine(t, err, "graph: safetensors "+path+": ", tt.want)
		})
	}
}

func TestOpenSafetensorsFileErrors(t *testing.T) {
	lenOnly := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "file of 0 bytes is shorter than the 8-byte header length"},
		{"short file", []byte("{}{}"), "file of 4 bytes is shorter than the 8-byte header length"},
		{"zero header length", lenOnly(0, "{}"), "header length is 0"},
		{"header too large", lenOnly(MaxSafetensorsHeader+1, ""), fmt.Sprintf("header of %d bytes exceeds the 100 MiB limit", MaxSafetensorsHeader+1)},
		{"header length overflows", lenOnly(1<<63, ""), "exceeds the 100 MiB limit"},
		{"header past end", lenOnly(100, "{}"), "header length 100 runs past the end of the file (size 10)"},
		{"header one past end", lenOnly(3, "{}"), "header length 3 runs past the end of the file (size 10)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTemp(t, "bad.safetensors", tt.file)
			src, err := OpenSafetensors(path)
			if err == nil {
				src.Close()
			}
			checkOneLine(t, err, "graph: safetensors "+path+": ", tt.want)
		})
	}

	missing := filepath.Join(t.TempDir(), "missing.safetensors")
	_, err := OpenSafetensors(missing)
	checkOneLine(t, err, "graph: safetensors "+missing+": ", "no such file")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v is not os.ErrNotExist", err)
	}
	dir := t.TempDir()
	_, err = OpenSafetensors(dir)
	checkOneLine(t, err, "graph: safetensors "+dir+": ", "not a regular file")
}

func TestOpenSafetensorsHugeHeaderLength(t *testing.T) {
	// An 8-byte file claiming a 200 MB header must be refused from the length alone.
	path := writeTemp(t, "huge.safetensors", binary.LittleEndian.AppendUint64(nil, 200_000_000))
	_, err := OpenSafetensors(path)
	checkOneLine(t, err, "graph: safetensors "+path+": ", "header of 200000000 bytes exceeds the 100 MiB limit")
}

func TestParseSafetensorsHeaderValid(t *testing.T) {
	// Entries out of data order, a zero-size tensor sharing an offset, padding, metadata.
	header := `{"b":` + entry("F32", []int64{1, 2}, 4, 12) +
		`,"__metadata__":{"format":"pt"}` +
		`,"a":` + entry("U8", []int64{4}, 0, 4) +
		`,"empty":` + entry("F16", []int64{0, 3}, 4, 4) +
		`,"scalar":` + entry("I32", nil, 12, 16) + "}    "
	tensors, offsets, meta, err := ParseSafetensorsHeader([]byte(header), 16)
	if err != nil {
		t.Fatal(err)
	}
	want := []TensorInfo{
		{Name: "a", DType: U8, Shape: []int64{4}, Size: 4},
		{Name: "empty", DType: F16, Shape: []int64{0, 3}, Size: 0},
		{Name: "b", DType: F32, Shape: []int64{1, 2}, Size: 8},
		{Name: "scalar", DType: I32, Shape: []int64{}, Size: 4},
	}
	if !reflect.DeepEqual(tensors, want) {
		t.Errorf("tensors = %+v, want %+v", tensors, want)
	}
	if want := []int64{0, 4, 4, 12}; !reflect.DeepEqual(offsets, want) {
		t.Errorf("offsets = %v, want %v", offsets, want)
	}
	if want := map[string]string{"format": "pt"}; !reflect.DeepEqual(meta, want) {
		t.Errorf("meta = %v, want %v", meta, want)
	}

	tensors, offsets, meta, err = ParseSafetensorsHeader([]byte("{}"), 0)
	if err != nil || len(tensors) != 0 || len(offsets) != 0 || meta != nil {
		t.Errorf("empty header: got %v %v %v %v, want nothing", tensors, offsets, meta, err)
	}
}

// roundTripTensors are tensors of many dtypes, with a zero-size tensor and a scalar.
func roundTripTensors() ([]TensorInfo, [][]byte) {
	tensors := []TensorInfo{
		{Name: "model.embed.weight", DType: F32, Shape: []int64{2, 3}},
		{Name: "model.norm.weight", DType: BF16, Shape: []int64{4}},
		{Name: "step", DType: I64, Shape: []int64{}},
		{Name: "empty", DType: U8, Shape: []int64{0, 5}},
		{Name: "mask", DType: Bool, Shape: []int64{3}},
		{Name: "fp8", DType: F8E4M3, Shape: []int64{2, 2}},
		{Name: "wide", DType: F64, Shape: []int64{1}},
		{Name: "héllo <&>", DType: U16, Shape: []int64{1, 1, 1}},
	}
	data := make([][]byte, len(tensors))
	for i := range tensors {
		tensors[i].Size, _ = ByteSize(tensors[i].DType, tensors[i].Shape)
		data[i] = make([]byte, tensors[i].Size)
		for j := range data[i] {
			data[i][j] = byte(i*31 + j)
		}
	}
	return tensors, data
}

func bytesOf(data [][]byte) TensorData {
	return func(i int, w io.Writer) error {
		_, err := w.Write(data[i])
		return err
	}
}

// checkSource checks that src holds tensors with the given bytes.
func checkSource(t *testing.T, src *Source, tensors []TensorInfo, data [][]byte) {
	t.Helper()
	if src.Format != FormatSafetensors {
		t.Errorf("Format = %q", src.Format)
	}
	if len(src.Tensors) != len(tensors) {
		t.Fatalf("got %d tensors, want %d", len(src.Tensors), len(tensors))
	}
	for i, want := range tensors {
		got := src.Tensors[i]
		if got.Name != want.Name || got.DType != want.DType || got.Size != want.Size ||
			got.Shard != want.Shard || len(got.Shape) != len(want.Shape) ||
			(len(want.Shape) > 0 && !reflect.DeepEqual(got.Shape, want.Shape)) {
			t.Errorf("tensor %d = %+v, want %+v", i, got, want)
		}
		r, err := src.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data[i]) {
			t.Errorf("tensor %q bytes = %x, want %x", want.Name, b, data[i])
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	tensors, data := roundTripTensors()
	meta := map[string]string{"format": "pt", "note": "round trip"}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, meta, tensors, bytesOf(data)); err != nil {
		t.Fatal(err)
	}
	file := buf.Bytes()
	n := binary.LittleEndian.Uint64(file)
	if n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	header := string(file[8 : 8+n])
	if !strings.HasPrefix(header, `{"__metadata__":`) {
		t.Errorf("header does not start with __metadata__: %s", header)
	}
	if trimmed := strings.TrimRight(header, " "); !strings.HasSuffix(trimmed, "}") || len(header)-len(trimmed) >= 8 {
		t.Errorf("header is not padded with fewer than 8 spaces: %q", header)
	}

	path := writeTemp(t, "model.safetensors", file)
	for _, open := range []func(string) (*Source, error){OpenSafetensors, OpenFile} {
		src, err := open(path)
		if err != nil {
			t.Fatal(err)
		}
		checkSource(t, src, tensors, data)
		if !reflect.DeepEqual(src.Metadata, meta) {
			t.Errorf("Metadata = %v, want %v", src.Metadata, meta)
		}
		if !reflect.DeepEqual(src.Files, []string{path}) || src.Sharded {
			t.Errorf("Files = %v, Sharded = %v", src.Files, src.Sharded)
		}
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}

	// Without metadata, the header holds no __metadata__ and Metadata is nil.
	buf.Reset()
	if err := WriteSafetensors(&buf, nil, tensors, bytesOf(data)); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte(metadataKey)) {
		t.Error("header without metadata mentions __metadata__")
	}
	src, err := OpenSafetensors(writeTemp(t, "plain.safetensors", buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	checkSource(t, src, tensors, data)
	if src.Metadata != nil {
		t.Errorf("Metadata = %v, want nil", src.Metadata)
	}
}

func TestWriteSafetensorsErrors(t *testing.T) {
	ok := TensorInfo{Name: "a", DType: F32, Shape: []int64{2}, Size: 8}
	write := func(w io.Writer, n int) error { _, err := w.Write(make([]byte, n)); return err }
	tests := []struct {
		name    string
		tensors []TensorInfo
		data    TensorData
		want    string
	}{
		{"short data", []TensorInfo{ok}, func(i int, w io.Writer) error { return write(w, 7) }, `tensor "a": data wrote 7 bytes, want 8`},
		{"long data", []TensorInfo{ok}, func(i int, w io.Writer) error { return write(w, 9) }, `tensor "a": data wrote more than 8 bytes`},
		{"long data ignoring error", []TensorInfo{ok}, func(i int, w io.Writer) error { write(w, 9); return nil }, `tensor "a": data wrote more than 8 bytes`},
		{"data fails", []TensorInfo{ok}, func(i int, w io.Writer) error { return errors.New("boom") }, `tensor "a": boom`},
		{"size mismatch", []TensorInfo{{Name: "a", DType: F32, Shape: []int64{2}, Size: 4}}, nil, `tensor "a": Size is 4 bytes but shape [2] of F32 needs 8 bytes`},
		{"invalid dtype", []TensorInfo{{Name: "a", Shape: []int64{2}}}, nil, `tensor "a": invalid dtype 0`},
		{"negative dim", []TensorInfo{{Name: "a", DType: U8, Shape: []int64{-2}}}, nil, `tensor "a": negative dimension -2`},
		{"empty name", []TensorInfo{{DType: U8, Shape: []int64{0}}}, nil, "tensor with an empty name"},
		{"reserved name", []TensorInfo{{Name: metadataKey, DType: U8, Shape: []int64{0}}}, nil, `tensor name "__metadata__" is reserved`},
		{"duplicate name", []TensorInfo{ok, ok}, nil, `duplicate tensor name "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteSafetensors(io.Discard, nil, tt.tensors, tt.data)
			checkOneLine(t, err, "graph: safetensors: ", tt.want)
		})
	}
}

// writeShardedFixture writes a valid two-shard folder and returns it with its contents.
func writeShardedFixture(t *testing.T) (string, []TensorInfo, [][]byte) {
	t.Helper()
	tensors, data := roundTripTensors()
	for i := range tensors {
		tensors[i].Shard = fmt.Sprintf("model-%05d-of-00002.safetensors", 1+i%2)
	}
	dir := filepath.Join(t.TempDir(), "model")
	if err := WriteShardedSafetensors(dir, map[string]string{"format": "pt"}, tensors, bytesOf(data)); err != nil {
		t.Fatal(err)
	}
	return dir, tensors, data
}

func TestShardedSafetensorsRoundTrip(t *testing.T) {
	dir, tensors, data := writeShardedFixture(t)
	shard1, shard2 := "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"

	// The index lists every tensor and the total size.
	b, err := os.ReadFile(filepath.Join(dir, SafetensorsIndexName))
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Metadata  map[string]int64
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, ti := range tensors {
		total += ti.Size
		if index.WeightMap[ti.Name] != ti.Shard {
			t.Errorf("weight_map[%q] = %q, want %q", ti.Name, index.WeightMap[ti.Name], ti.Shard)
		}
	}
	if index.Metadata["total_size"] != total || len(index.WeightMap) != len(tensors) {
		t.Errorf("index = %s", b)
	}

	// Each shard is a valid file of its own.
	one, err := OpenSafetensors(filepath.Join(dir, shard2))
	if err != nil {
		t.Fatal(err)
	}
	one.Close()

	// Opened, tensors come shard by shard.
	var want []TensorInfo
	var wantData [][]byte
	for _, shard := range []string{shard1, shard2} {
		for i, ti := range tensors {
			if ti.Shard == shard {
				want = append(want, ti)
				wantData = append(wantData, data[i])
			}
		}
	}
	opens := []func() (*Source, error){
		func() (*Source, error) { return OpenShardedSafetensors(dir) },
		func() (*Source, error) { return OpenFile(dir) },
		func() (*Source, error) { return OpenFile(filepath.Join(dir, SafetensorsIndexName)) },
	}
	for _, open := range opens {
		src, err := open()
		if err != nil {
			t.Fatal(err)
		}
		checkSource(t, src, want, wantData)
		wantFiles := []string{filepath.Join(dir, SafetensorsIndexName), filepath.Join(dir, shard1), filepath.Join(dir, shard2)}
		if !reflect.DeepEqual(src.Files, wantFiles) {
			t.Errorf("Files = %v, want %v", src.Files, wantFiles)
		}
		if !src.Sharded || !reflect.DeepEqual(src.Metadata, map[string]string{"format": "pt"}) {
			t.Errorf("Sharded = %v, Metadata = %v", src.Sharded, src.Metadata)
		}
		if err := src.Close(); err != nil {
			t.Error(err)
		}
	}
}

func TestWriteShardedSafetensorsErrors(t *testing.T) {
	tensor := func(name, shard string) TensorInfo {
		return TensorInfo{Name: name, DType: U8, Shape: []int64{1}, Size: 1, Shard: shard}
	}
	tests := []struct {
		name    string
		tensors []TensorInfo
		want    string
	}{
		{"no tensors", nil, "no tensors to write"},
		{"empty shard", []TensorInfo{tensor("a", "s.safetensors"), tensor("b", "")}, `tensor "b" has no shard`},
		{"shard with slash", []TensorInfo{tensor("a", "sub/s.safetensors")}, "contains a path separator"},
		{"shard with backslash", []TensorInfo{tensor("a", `sub\s.safetensors`)}, "contains a path separator"},
		{"shard with dots", []TensorInfo{tensor("a", "..")}, `contains ".."`},
		{"shard named like the index", []TensorInfo{tensor("a", SafetensorsIndexName)}, "is the index's"},
		{"duplicate across shards", []TensorInfo{tensor("a", "1.safetensors"), tensor("a", "2.safetensors")}, `duplicate tensor name "a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteShardedSafetensors(dir, nil, tt.tensors, func(i int, w io.Writer) error {
				_, err := w.Write([]byte{1})
				return err
			})
			checkOneLine(t, err, "graph: safetensors "+dir+": ", tt.want)
		})
	}
}

// openFDs returns the number of open file descriptors, or -1 where unknown.
func openFDs() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

func TestOpenShardedSafetensorsErrors(t *testing.T) {
	const shard1, shard2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
	// setIndex replaces the folder's index.
	setIndex := func(t *testing.T, dir, index string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, SafetensorsIndexName), []byte(index), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// editWeights rewrites the index after edit changes its weight_map.
	editWeights := func(edit func(map[string]string)) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(dir, SafetensorsIndexName))
			if err != nil {
				t.Fatal(err)
			}
			var index struct {
				WeightMap map[string]string `json:"weight_map"`
			}
			if err := json.Unmarshal(b, &index); err != nil {
				t.Fatal(err)
			}
			edit(index.WeightMap)
			b, _ = json.Marshal(index)
			setIndex(t, dir, string(b))
		}
	}
	tests := []struct {
		name string
		edit func(t *testing.T, dir string)
		file string // the file the error names
		want string
	}{
		{"missing index", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, SafetensorsIndexName))
		}, SafetensorsIndexName, "cannot read index: no such file"},
		{"invalid index", func(t *testing.T, dir string) { setIndex(t, dir, `{"weight_map":`) }, SafetensorsIndexName, "not valid JSON"},
		{"index not an object", func(t *testing.T, dir string) { setIndex(t, dir, `[]`) }, SafetensorsIndexName, "index is not a JSON object"},
		{"no weight_map", func(t *testing.T, dir string) { setIndex(t, dir, `{"metadata":{"total_size":1}}`) }, SafetensorsIndexName, "index has no weight_map"},
		{"empty weight_map", func(t *testing.T, dir string) { setIndex(t, dir, `{"metadata":{},"weight_map":{}}`) }, SafetensorsIndexName, "index weight_map is empty"},
		{"weight_map not strings", func(t *testing.T, dir string) { setIndex(t, dir, `{"weight_map":{"a":1}}`) }, SafetensorsIndexName, `weight_map value for "a" is not a string`},
		{"duplicate in weight_map", func(t *testing.T, dir string) {
			setIndex(t, dir, `{"weight_map":{"a":"`+shard1+`","a":"`+shard2+`"}}`)
		}, SafetensorsIndexName, `duplicate key "a" in weight_map`},
		{"shard with separator", editWeights(func(m map[string]string) { m["step"] = "sub/" + shard1 }), SafetensorsIndexName, "contains a path separator"},
		{"shard escaping folder", editWeights(func(m map[string]string) { m["step"] = "..\\" + shard1 }), SafetensorsIndexName, "contains a path separator"},
		{"shard with dots", editWeights(func(m map[string]string) { m["step"] = ".." }), SafetensorsIndexName, `contains ".."`},
		{"missing shard", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, shard2)) }, shard2, "no such file"},
		{"invalid shard", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, shard2), stFileBytes("{}", []byte{1}), 0o644)
		}, shard2, "belong to no tensor"},
		{"tensor absent from shard", editWeights(func(m map[string]string) { m["ghost"] = shard2 }), shard2, `tensor "ghost" listed in the weight_map is not in this shard`},
		{"tensor not listed", editWeights(func(m map[string]string) { delete(m, "mask") }), shard1, `tensor "mask" is not listed in the weight_map`},
		{"tensor listed for another shard", editWeights(func(m map[string]string) { m["mask"] = shard2 }), shard1, `tensor "mask" is listed in the weight_map for shard ` + shard2},
		{"tensor in two shards", func(t *testing.T, dir string) {
			var buf bytes.Buffer
			tensors := []TensorInfo{{Name: "step", DType: U8, Shape: []int64{1}, Size: 1}}
			if err := WriteSafetensors(&buf, nil, tensors, bytesOf([][]byte{{7}})); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dir, "zzz.safetensors"), buf.Bytes(), 0o644)
			editWeights(func(m map[string]string) { m["zzz"] = "zzz.safetensors" })(t, dir)
		}, "zzz.safetensors", `tensor "step" is also in shard ` + shard1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, _, _ := writeShardedFixture(t)
			tt.edit(t, dir)
			before := openFDs()
			src, err := OpenShardedSafetensors(dir)
			if err == nil {
				src.Close()
			}
			checkOneLine(t, err, "graph: safetensors "+filepath.Join(dir, tt.file)+": ", tt.want)
			if after := openFDs(); after != before {
				t.Errorf("%d files open before, %d after a failed open", before, after)
			}
		})
	}
}

// FuzzSafetensorsHeader checks that ParseSafetensorsHeader and OpenSafetensors never
// panic and that whatever they accept is consistent.
func FuzzSafetensorsHeader(f *testing.F) {
	f.Add([]byte(`{"a":`+entry("F32", []int64{2}, 0, 8)+`}`), int64(8))
	dir := f.TempDir() // inputs run one at a time in each process
	f.Fuzz(func(t *testing.T, header []byte, dataSize int64) {
		tensors, offsets, _, err := ParseSafetensorsHeader(header, dataSize)
		if err == nil {
			checkLayoutInvariants(t, tensors, offsets, dataSize)
		}
		if dataSize < 0 || dataSize > 1<<16 {
			dataSize = int64(len(header) % 64)
		}
		data := make([]byte, dataSize)
		for i := range data {
			data[i] = byte(i * 7)
		}
		// The fuzzed header with a correct length in front, then the data.
		checkFuzzFile(t, filepath.Join(dir, "a.safetensors"), stFileBytes(string(header), data), data)
		// The fuzzed bytes as a whole file.
		checkFuzzFile(t, filepath.Join(dir, "b.safetensors"), header, nil)
	})
}

// checkFuzzFile writes file to path, opens it and checks whatever it holds. When
// data is non-nil, it is the file's data section.
func checkFuzzFile(t *testing.T, path string, file, data []byte) {
	// Removing first is much faster than truncating on some file systems.
	os.Remove(path)
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := OpenSafetensors(path)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "graph: safetensors "+path+": ") {
			t.Fatalf("error %q does not name the file", err)
		}
		return
	}
	defer src.Close()
	n := binary.LittleEndian.Uint64(file)
	dataSize := int64(len(file)) - 8 - int64(n)
	offsets := make([]int64, len(src.Tensors))
	var off int64
	for i, ti := range src.Tensors {
		offsets[i] = off
		off += ti.Size
		r, err := src.Open(i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil || int64(len(b)) != ti.Size {
			t.Fatalf("tensor %q: read %d bytes (%v), want %d", ti.Name, len(b), err, ti.Size)
		}
		if data != nil && !bytes.Equal(b, data[offsets[i]:offsets[i]+ti.Size]) {
			t.Fatalf("tensor %q: wrong bytes", ti.Name)
		}
	}
	checkLayoutInvariants(t, src.Tensors, offsets, dataSize)
}

// checkLayoutInvariants checks that tensors tile a data section of dataSize bytes in
// order and that their sizes match their dtypes and shapes.
func checkLayoutInvariants(t *testing.T, tensors []TensorInfo, offsets []int64, dataSize int64) {
	t.Helper()
	if len(offsets) != len(tensors) {
		t.Fatalf("%d tensors but %d offsets", len(tensors), len(offsets))
	}
	var pos int64
	for i, ti := range tensors {
		if offsets[i] != pos {
			t.Fatalf("tensor %q at offset %d, want %d", ti.Name, offsets[i], pos)
		}
		size, err := ByteSize(ti.DType, ti.Shape)
		if err != nil || size != ti.Size {
			t.Fatalf("tensor %q: Size %d, want %d (%v)", ti.Name, ti.Size, size, err)
		}
		if ti.Name == "" || ti.Shard != "" {
			t.Fatalf("tensor %+v: bad name or shard", ti)
		}
		pos += ti.Size
	}
	if pos != dataSize {
		t.Fatalf("tensors cover %d bytes of %d", pos, dataSize)
	}
}

func ExampleWriteSafetensors() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	tensors := []TensorInfo{
		{Name: "bias", DType: U8, Shape: []int64{3}, Size: 3},
		{Name: "weight", DType: I16, Shape: []int64{2, 2}, Size: 8},
	}
	data := func(i int, w io.Writer) error {
		b := make([]byte, tensors[i].Size)
		for j := range b {
			b[j] = byte(10*i + j)
		}
		_, err := w.Write(b)
		return err
	}
	path := filepath.Join(dir, "model.safetensors")
	f, err := os.Create(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	err = WriteSafetensors(f, map[string]string{"format": "pt"}, tensors, data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		fmt.Println(err)
		return
	}

	src, err := OpenSafetensors(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	fmt.Println("metadata:", src.Metadata)
	for i, t := range src.Tensors {
		r, _ := src.Open(i)
		b, _ := io.ReadAll(r)
		fmt.Println(t.Name, t.DType, t.Shape, t.Size, b)
	}
	// Output:
	// metadata: map[format:pt]
	// bias U8 [3] 3 [0 1 2]
	// weight I16 [2 2] 8 [10 11 12 13 14 15 16 17]
}
