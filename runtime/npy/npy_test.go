package npy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
)

// npyDTypes are the element types a .npy file can hold.
var npyDTypes = []graph.DType{graph.F16, graph.F32, graph.F64, graph.I8, graph.I16, graph.I32,
	graph.I64, graph.U8, graph.U16, graph.U32, graph.U64, graph.Bool}

func equal(a, b *Array) bool {
	return a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data)
}

func encode(t testing.TB, a *Array) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, a); err != nil {
		t.Fatalf("Write(%s%v): %v", a.DType, a.Shape, err)
	}
	return buf.Bytes()
}

func randomArray(r *rand.Rand, dt graph.DType, shape []int) *Array {
	a := &Array{DType: dt, Shape: shape}
	a.Data = make([]byte, a.Len()*dt.Size())
	for i := range a.Data {
		a.Data[i] = byte(r.IntN(256))
	}
	if dt == graph.Bool {
		for i := range a.Data {
			a.Data[i] &= 1
		}
	}
	return a
}

// checkLayout checks what Write promises about its output: version, header
// length field, padding with spaces and a final newline, data at a multiple of 64.
func checkLayout(t *testing.T, b []byte, a *Array, wantMajor byte) {
	t.Helper()
	if string(b[:6]) != magic || b[6] != wantMajor || b[7] != 0 {
		t.Fatalf("prefix % x, want magic and version %d.0", b[:8], wantMajor)
	}
	var hlen, start int
	if wantMajor == 1 {
		hlen, start = int(binary.LittleEndian.Uint16(b[8:])), 10
	} else {
		hlen, start = int(binary.LittleEndian.Uint32(b[8:])), 12
	}
	data := start + hlen
	if data%64 != 0 {
		t.Errorf("data starts at byte %d, not a multiple of 64", data)
	}
	if b[data-1] != '\n' || b[data-2] != ' ' {
		t.Errorf("header does not end in spaces and a newline: %q", b[data-8:data])
	}
	if len(b)-data != len(a.Data) {
		t.Errorf("%d bytes after the header, want %d", len(b)-data, len(a.Data))
	}
}

func TestRoundTripAllDTypes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][]int{{}, {0}, {0, 3}, {3, 0}, {1}, {7}, {2, 3}, {2, 1, 3, 1}, {4, 5, 6}}
	for _, dt := range npyDTypes {
		for _, shape := range shapes {
			t.Run(fmt.Sprintf("%s%v", dt, shape), func(t *testing.T) {
				a := randomArray(r, dt, shape)
				b := encode(t, a)
				checkLayout(t, b, a, 1)
				got, err := Read(bytes.NewReader(b))
				if err != nil {
					t.Fatal(err)
				}
				if !equal(got, a) {
					t.Fatalf("round trip: got %s%v % x, want %s%v % x", got.DType, got.Shape, got.Data, a.DType, a.Shape, a.Data)
				}
				if got.Shape == nil || got.Data == nil {
					t.Errorf("Read returned nil Shape or Data (%v, %v)", got.Shape == nil, got.Data == nil)
				}
				if got.Len() != a.Len() {
					t.Errorf("Len %d, want %d", got.Len(), a.Len())
				}
			})
		}
	}
}

func TestScalarHeader(t *testing.T) {
	a := &Array{DType: graph.F64, Shape: []int{}, Data: make([]byte, 8)}
	b := encode(t, a)
	want := "{'descr': '<f8', 'fortran_order': False, 'shape': (), }"
	if !bytes.HasPrefix(b[10:], []byte(want+" ")) {
		t.Fatalf("header %q, want %q + padding", b[10:], want)
	}
	if a.Len() != 1 {
		t.Errorf("scalar Len %d, want 1", a.Len())
	}
}

type manifestEntry struct {
	File      string `json:"file"`
	DType     string `json:"dtype"`
	Shape     []int  `json:"shape"`
	Data      string `json:"data"`
	Identical bool   `json:"identical"`
	Error     string `json:"error"`
	Note      string `json:"note"`
}

func readManifest(t testing.TB) []manifestEntry {
	raw, err := os.ReadFile(filepath.Join("testdata", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Files []manifestEntry `json:"files"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) == 0 {
		t.Fatal("empty manifest")
	}
	return m.Files
}

// TestNumpyFixtures reads the files numpy wrote (testdata/gen.py) and writes
// them again: byte-identical to numpy.save's output where the manifest says so.
func TestNumpyFixtures(t *testing.T) {
	identical := 0
	for _, e := range readManifest(t) {
		t.Run(e.File, func(t *testing.T) {
			path := filepath.Join("testdata", e.File)
			a, err := ReadFile(path)
			if e.Error != "" {
				if err == nil {
					t.Fatalf("ReadFile succeeded (%s%v), want an error containing %q", a.DType, a.Shape, e.Error)
				}
				if !strings.Contains(err.Error(), e.Error) {
					t.Fatalf("error %q does not contain %q", err, e.Error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dt, err := graph.ParseDType(e.DType)
			if err != nil {
				t.Fatal(err)
			}
			data, err := hex.DecodeString(e.Data)
			if err != nil {
				t.Fatal(err)
			}
			want := &Array{DType: dt, Shape: e.Shape, Data: data}
			if want.Shape == nil {
				want.Shape = []int{}
			}
			if !equal(a, want) {
				t.Fatalf("got %s%v % x, want %s%v % x", a.DType, a.Shape, a.Data, want.DType, want.Shape, want.Data)
			}
			b := encode(t, a)
			if e.Identical {
				file, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, file) {
					t.Fatalf("Write differs from numpy.save:\n got %q\nwant %q", b, file)
				}
				identical++
			}
			again, err := Read(bytes.NewReader(b))
			if err != nil || !equal(again, a) {
				t.Fatalf("read after Write: %v", err)
			}
		})
	}
	if identical < 15 {
		t.Errorf("only %d fixtures compared byte for byte", identical)
	}
}

// header builds a version 1.0 file with the given header text and data.
func header(h string, data []byte) []byte {
	b := []byte(magic + "\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	return append(append(b, h...), data...)
}

func TestBigEndian(t *testing.T) {
	cases := []struct {
		descr string
		dt    graph.DType
		be    []byte
		le    []byte
	}{
		{">f4", graph.F32, []byte{0x3f, 0x80, 0, 0, 0xc0, 0, 0, 0}, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		{">i2", graph.I16, []byte{0x01, 0x02, 0xff, 0xfe}, []byte{0x02, 0x01, 0xfe, 0xff}},
		{">u8", graph.U64, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{8, 7, 6, 5, 4, 3, 2, 1}},
		{">f2", graph.F16, []byte{0x3c, 0x00}, []byte{0x00, 0x3c}},
		{">i1", graph.I8, []byte{0x80}, []byte{0x80}},
		{">b1", graph.Bool, []byte{1}, []byte{1}},
		{"<i4", graph.I32, []byte{1, 2, 3, 4}, []byte{1, 2, 3, 4}},
		{"=i4", graph.I32, []byte{1, 2, 3, 4}, nativeToLE([]byte{1, 2, 3, 4}, 4)},
		{"|i2", graph.I16, []byte{1, 2}, nativeToLE([]byte{1, 2}, 2)},
		{"i2", graph.I16, []byte{1, 2}, nativeToLE([]byte{1, 2}, 2)},
		{"|?", graph.Bool, []byte{1}, []byte{1}},
	}
	for _, c := range cases {
		n := len(c.be) / c.dt.Size()
		h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }\n", c.descr, n)
		a, err := Read(bytes.NewReader(header(h, c.be)))
		if err != nil {
			t.Fatalf("%s: %v", c.descr, err)
		}
		want := &Array{DType: c.dt, Shape: []int{n}, Data: c.le}
		if !equal(a, want) {
			t.Errorf("%s: got %s%v % x, want %s%v % x", c.descr, a.DType, a.Shape, a.Data, want.DType, want.Shape, want.Data)
		}
	}
}

func nativeToLE(b []byte, size int) []byte {
	out := slices.Clone(b)
	if !nativeLittle {
		swapBytes(out, size)
	}
	return out
}

func TestFortranOrder(t *testing.T) {
	h := "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n"
	_, err := Read(bytes.NewReader(header(h, make([]byte, 24))))
	want := "Fortran-order arrays are not supported; save with np.ascontiguousarray"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}

func TestVersion2Header(t *testing.T) {
	// 30000 dimensions of 1: the header is about 90 KB, too long for 1.0.
	shape := make([]int, 30000)
	for i := range shape {
		shape[i] = 1
	}
	a := &Array{DType: graph.I32, Shape: shape, Data: []byte{1, 2, 3, 4}}
	b := encode(t, a)
	checkLayout(t, b, a, 2)
	got, err := Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !equal(got, a) {
		t.Fatal("version 2.0 round trip differs")
	}
	// the largest header that still fits version 1.0 stays 1.0: find the
	// number of dimensions where Write switches to 2.0.
	version := func(n int) byte {
		return encode(t, &Array{DType: graph.U8, Shape: shape[:n], Data: []byte{7}})[6]
	}
	lo, hi := 20000, 25000 // version(lo) == 1, version(hi) == 2
	if version(lo) != 1 || version(hi) != 2 {
		t.Fatalf("versions %d at %d dimensions, %d at %d", version(lo), lo, version(hi), hi)
	}
	for hi-lo > 1 {
		if mid := (lo + hi) / 2; version(mid) == 1 {
			lo = mid
		} else {
			hi = mid
		}
	}
	last := encode(t, &Array{DType: graph.U8, Shape: shape[:lo], Data: []byte{7}})
	checkLayout(t, last, &Array{Data: []byte{7}}, 1)
	if hl := binary.LittleEndian.Uint16(last[8:]); hl < 65535-64 {
		t.Errorf("last 1.0 header is %d bytes, want close to 65535", hl)
	}
	first := encode(t, &Array{DType: graph.U8, Shape: shape[:hi], Data: []byte{7}})
	checkLayout(t, first, &Array{Data: []byte{7}}, 2)
}

func TestReadErrors(t *testing.T) {
	ok := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n"
	many := "{'descr': '<f4', 'fortran_order': False, 'shape': (" + strings.Repeat("1,", MaxDims+1) + ")}\n"
	v2 := func(hlen uint32, rest string) []byte {
		b := binary.LittleEndian.AppendUint32([]byte(magic+"\x02\x00"), hlen)
		return append(b, rest...)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "reading magic"},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x00\x00"), "bad magic"},
		{"zip", []byte("PK\x03\x04 not an npy file"), "bad magic"},
		{"version 4.0", []byte(magic + "\x04\x00\x10\x00"), "unsupported format version 4.0"},
		{"version 1.1", []byte(magic + "\x01\x01\x10\x00"), "unsupported format version 1.1"},
		{"short length", []byte(magic + "\x01\x00\x10"), "header length"},
		{"short header", header(ok, nil)[:30], "reading 58-byte header"},
		{"header too long", v2(MaxHeaderLen+1, ""), "header of 1048577 bytes"},
		{"truncated data", header(ok, make([]byte, 7)), "got 7 of 8 bytes"},
		{"no data", header(ok, nil), "got 0 of 8 bytes"},
		{"not a dict", header("('<f4', False, (2,))\n", nil), "not a dict"},
		{"missing key", header("{'descr': '<f4', 'shape': (2,)}\n", nil), "lacks"},
		{"extra key", header("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}\n", nil), "unexpected key 'x'"},
		{"duplicate key", header("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}\n", nil), "twice"},
		{"shape int", header("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}\n", nil), "shape 2 is not a tuple"},
		{"shape list", header("{'descr': '<f4', 'fortran_order': False, 'shape': [2]}\n", nil), "not a tuple"},
		{"negative dim", header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1)}\n", nil), "dimension -1 is not a size"},
		{"string dim", header("{'descr': '<f4', 'fortran_order': False, 'shape': ('2',)}\n", nil), "is not a size"},
		{"huge dim", header("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}\n", nil), "out of range"},
		{"overflow", header("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}\n", nil), "too large"},
		{"fortran None", header("{'descr': '<f4', 'fortran_order': None, 'shape': (2,)}\n", nil), "not True or False"},
		{"fortran 0", header("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}\n", nil), "not True or False"},
		{"descr int", header("{'descr': 4, 'fortran_order': False, 'shape': (2,)}\n", nil), "descr 4 is not a dtype string"},
		{"descr V2", header("{'descr': '<V2', 'fortran_order': False, 'shape': (2,)}\n", nil), "descr '<V2': raw bytes"},
		{"bfloat16 name", header("{'descr': 'bfloat16', 'fortran_order': False, 'shape': (2,)}\n", nil), "descr 'bfloat16'"},
		{"descr f3", header("{'descr': '<f3', 'fortran_order': False, 'shape': (2,)}\n", nil), "only float16, float32 and float64"},
		{"descr empty", header("{'descr': '', 'fortran_order': False, 'shape': (2,)}\n", nil), "descr '': unsupported"},
		{"object", header("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}\n", nil), "object arrays (descr '|O')"},
		{"structured", header("{'descr': [('x', '<f4')], 'fortran_order': False, 'shape': (2,)}\n", nil), "structured dtype (descr [('x', '<f4')])"},
		{"text after", header(ok[:len(ok)-1]+" x\n", nil), "text after the dict"},
		{"unterminated", header("{'descr': '<f4\n", nil), "newline in string"},
		{"bad name", header("{'descr': __import__, 'fortran_order': False, 'shape': (2,)}\n", nil), "unexpected name \"__import__\""},
		{"call", header("{'descr': '<f4', 'fortran_order': False, 'shape': tuple([2])}\n", nil), "unexpected name \"tuple\""},
		{"deep", header("{'descr': "+strings.Repeat("[", 100)+strings.Repeat("]", 100)+"}\n", nil), "nested more than"},
		{"missing comma", header("{'descr': '<f4' 'fortran_order': False}\n", nil), "expected ','"},
		{"key not string", header("{1: 2}\n", nil), "dict key is not a string"},
		{"lone sign", header("{'descr': '<f4', 'fortran_order': False, 'shape': (-,)}\n", nil), "sign without digits"},
		{"too many dims", v2(uint32(len(many)), many), "dimensions (at most 32768)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := Read(bytes.NewReader(c.in))
			if err == nil {
				t.Fatalf("Read succeeded (%s%v), want an error containing %q", a.DType, a.Shape, c.want)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "npy: ") {
				t.Fatalf("error %q, want one starting \"npy: \" and containing %q", err, c.want)
			}
		})
	}
	_, err := Read(bytes.NewReader(header(ok, make([]byte, 5))))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated data: %v does not wrap io.ErrUnexpectedEOF", err)
	}
}

func TestLenientHeaders(t *testing.T) {
	// what numpy reads, Read reads too: other spacing and quotes, key order,
	// Python 2 long suffixes, no trailing newline.
	for _, h := range []string{
		"{'shape': (2,), 'fortran_order': False, 'descr': '<f4'}",
		"{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,)}\n",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }          \n",
		"{ 'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 2 , ) }\t\r\n",
	} {
		a, err := Read(bytes.NewReader(header(h, make([]byte, 8))))
		if err != nil {
			t.Errorf("%q: %v", h, err)
			continue
		}
		if a.DType != graph.F32 || !slices.Equal(a.Shape, []int{2}) {
			t.Errorf("%q: got %s%v", h, a.DType, a.Shape)
		}
	}
}

// A header may claim any shape; Read must fail on the missing data without
// allocating what the shape claims.
func TestHugeShapeDoesNotAllocate(t *testing.T) {
	h := "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }\n"
	in := header(h, make([]byte, 1000))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Read(bytes.NewReader(in))
	runtime.ReadMemStats(&after)
	if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want a truncation error", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("Read allocated %d bytes for a 1 KB stream", got)
	}
}

func TestReadLeavesStreamAfterData(t *testing.T) {
	a := &Array{DType: graph.U16, Shape: []int{3}, Data: []byte{1, 0, 2, 0, 3, 0}}
	b := &Array{DType: graph.Bool, Shape: []int{}, Data: []byte{1}}
	stream := io.MultiReader(bytes.NewReader(encode(t, a)), bytes.NewReader(encode(t, b)), strings.NewReader("tail"))
	for _, want := range []*Array{a, b} {
		got, err := Read(stream)
		if err != nil || !equal(got, want) {
			t.Fatalf("got %v, %v", got, err)
		}
	}
	rest, _ := io.ReadAll(stream)
	if string(rest) != "tail" {
		t.Errorf("left %q after the arrays, want \"tail\"", rest)
	}
}

func TestWriteErrors(t *testing.T) {
	cases := []struct {
		name string
		a    *Array
		want string
	}{
		{"nil", nil, "nil array"},
		{"bf16", &Array{DType: graph.BF16, Shape: []int{1}, Data: make([]byte, 2)}, "BF16 has no NumPy dtype"},
		{"f8e4m3", &Array{DType: graph.F8E4M3, Shape: []int{1}, Data: make([]byte, 1)}, "no NumPy dtype"},
		{"invalid", &Array{DType: graph.DTypeInvalid, Shape: []int{1}, Data: make([]byte, 1)}, "no NumPy dtype"},
		{"short data", &Array{DType: graph.F32, Shape: []int{2, 2}, Data: make([]byte, 15)}, "15 data bytes for F32(2, 2) (want 16)"},
		{"long data", &Array{DType: graph.U8, Shape: []int{}, Data: make([]byte, 2)}, "want 1"},
		{"negative", &Array{DType: graph.U8, Shape: []int{-1}, Data: nil}, "negative dimension"},
		{"too many dims", &Array{DType: graph.U8, Shape: make([]int, MaxDims+1), Data: nil}, "at most 32768"},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		err := Write(&buf, c.a)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", c.name, buf.Len())
		}
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errors.New("disk full")
	}
	w.after--
	return len(p), nil
}

func TestWriteWriterError(t *testing.T) {
	a := &Array{DType: graph.I64, Shape: []int{2}, Data: make([]byte, 16)}
	for after, want := range []string{"writing header: disk full", "writing data: disk full"} {
		err := Write(&failWriter{after: after}, a)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.npy")
	a := &Array{DType: graph.F32, Shape: []int{2, 2}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}
	if err := WriteFile(path, a); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil || !equal(got, a) {
		t.Fatalf("ReadFile after WriteFile: %v, %v", got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v (%v), want 0644", fi.Mode(), err)
	}
	old, _ := os.ReadFile(path)

	// A failed write leaves the old file as it was and no temporary file.
	bad := &Array{DType: graph.F32, Shape: []int{3}, Data: make([]byte, 4)}
	if err := WriteFile(path, bad); err == nil {
		t.Fatal("WriteFile of a bad array succeeded")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		t.Error("failed WriteFile changed the file")
	}
	// The rename fails when path is a non-empty directory.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(sub, a); err == nil {
		t.Error("WriteFile over a non-empty directory succeeded")
	}
	if err := WriteFile(filepath.Join(dir, "missing", "y.npy"), a); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"sub", "x.npy"}) {
		t.Errorf("directory holds %v, want [sub x.npy]", names)
	}
	if _, err := ReadFile(filepath.Join(dir, "nope.npy")); err == nil || !strings.HasPrefix(err.Error(), "npy: ") {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.npy"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(header("{'descr': '>i2', 'fortran_order': False, 'shape': (1, 2), }\n", []byte{1, 2, 3, 4}))
	f.Add(header("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (), }\n", nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := Read(bytes.NewReader(in))
		checkReader(t, in, a, err)
		if err != nil {
			if a != nil {
				t.Fatal("Read returned an array and an error")
			}
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, a); err != nil {
			t.Fatalf("Write of what Read accepted (%s%v): %v", a.DType, a.Shape, err)
		}
		enc := slices.Clone(buf.Bytes())
		b, err := Read(&buf)
		if err != nil {
			t.Fatalf("Read of Write's output: %v", err)
		}
		if !equal(a, b) {
			t.Fatalf("round trip: %s%v -> %s%v", a.DType, a.Shape, b.DType, b.Shape)
		}
		if again := encode(t, b); !bytes.Equal(again, enc) {
			t.Fatal("Write is not deterministic")
		}
	})
}

// checkReader reads in through a Reader, in chunks of a size taken from in,
// and checks that it agrees with Read, which returned a and err: the same rows
// when Read succeeds (a scalar has none), an error when Read fails, from
// NewReader when the header is bad, and the same error for a bad header.
func checkReader(t *testing.T, in []byte, a *Array, err error) {
	t.Helper()
	rd, rerr := NewReader(bytes.NewReader(in))
	if rerr != nil {
		if rd != nil {
			t.Fatal("NewReader returned a Reader and an error")
		}
		switch {
		case err == nil && len(a.Shape) > 0:
			t.Fatalf("NewReader failed where Read succeeded: %v", rerr)
		case err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && rerr.Error() != err.Error():
			t.Fatalf("NewReader error %q, Read error %q", rerr, err)
		}
		return
	}
	if err == nil && len(a.Shape) == 0 {
		t.Fatal("NewReader accepted a scalar")
	}
	got, rowsErr := readAllRows(t, rd, 1+len(in)%5)
	switch {
	case err == nil && rowsErr != nil:
		t.Fatalf("ReadRows failed where Read succeeded: %v", rowsErr)
	case err != nil && rowsErr == nil:
		t.Fatalf("Reader read %s%v where Read failed: %v", got.DType, got.Shape, err)
	case err == nil && !equal(got, a):
		t.Fatalf("Reader read %s%v, Read %s%v", got.DType, got.Shape, a.DType, a.Shape)
	}
}

func BenchmarkRead(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20, 1 << 24} {
		for _, order := range []string{"<", ">"} {
			data := make([]byte, n)
			h := fmt.Sprintf("{'descr': '%sf4', 'fortran_order': False, 'shape': (%d,), }\n", order, n/4)
			in := header(h, data)
			b.Run(fmt.Sprintf("%s/%s", order, size(n)), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					if _, err := Read(bytes.NewReader(in)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20, 1 << 24} {
		a := &Array{DType: graph.F32, Shape: []int{n / 4}, Data: make([]byte, n)}
		b.Run(size(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if err := Write(io.Discard, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func size(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// A header near MaxHeaderLen parses in linear time, whatever it holds.
func TestLargeHeader(t *testing.T) {
	var h strings.Builder
	h.WriteString("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), ")
	for i := 0; h.Len() < MaxHeaderLen-100; i++ {
		fmt.Fprintf(&h, "'k%d': [(%d, 'x')], ", i, i)
	}
	h.WriteString("}\n")
	b := binary.LittleEndian.AppendUint32([]byte(magic+"\x03\x00"), uint32(h.Len()))
	b = append(b, h.String()...)
	_, err := Read(bytes.NewReader(b))
	if err == nil || !strings.Contains(err.Error(), "unexpected key 'k0'") {
		t.Fatalf("error %v, want unexpected key 'k0'", err)
	}
}
