package npy

import (
	"bytes"
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

// readAllRows reads every row of rd, n at a time, checks each chunk's shape,
// and returns the rows joined into one array. Rows of no bytes are read all at
// once, however many there are.
func readAllRows(t testing.TB, rd *Reader, n int) (*Array, error) {
	t.Helper()
	if slices.Contains(rd.RowShape(), 0) {
		n = max(n, rd.Rows())
	}
	out := &Array{DType: rd.DType(), Shape: rd.Shape(), Data: []byte{}}
	for {
		before := rd.Remaining()
		a, err := rd.ReadRows(n)
		if err == io.EOF {
			if before != 0 {
				t.Fatalf("io.EOF with %d rows left", before)
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		want := append([]int{min(n, before)}, rd.RowShape()...)
		if a.DType != rd.DType() || !slices.Equal(a.Shape, want) || len(a.Data) != a.Len()*a.DType.Size() {
			t.Fatalf("chunk %s%v with %d bytes, want %s%v", a.DType, a.Shape, len(a.Data), rd.DType(), want)
		}
		out.Data = append(out.Data, a.Data...)
	}
}

func TestReaderRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	shapes := [][]int{{0}, {0, 3}, {3, 0}, {1}, {7}, {2, 3}, {5, 1, 3, 1}, {9, 5, 6}}
	for _, dt := range npyDTypes {
		for _, shape := range shapes {
			a := randomArray(r, dt, shape)
			b := encode(t, a)
			for _, n := range []int{1, 2, 4, 100} {
				t.Run(fmt.Sprintf("%s%v/%d", dt, shape, n), func(t *testing.T) {
					rd, err := NewReader(bytes.NewReader(b))
					if err != nil {
						t.Fatal(err)
					}
					if rd.DType() != dt || !slices.Equal(rd.Shape(), shape) || rd.Rows() != shape[0] || !slices.Equal(rd.RowShape(), shape[1:]) {
						t.Fatalf("header %s%v (%d rows of %v), want %s%v", rd.DType(), rd.Shape(), rd.Rows(), rd.RowShape(), dt, shape)
					}
					got, err := readAllRows(t, rd, n)
					if err != nil {
						t.Fatal(err)
					}
					if !equal(got, a) {
						t.Fatalf("rows joined: got % x, want % x", got.Data, a.Data)
					}
					if _, err := rd.ReadRows(n); err != io.EOF {
						t.Errorf("ReadRows after the end: %v, want io.EOF", err)
					}
					if err := rd.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
			}
		}
	}
}

// TestReaderFixtures reads the files numpy wrote row by row: the same data as
// ReadFile, big-endian files included, and the same errors for files it
// refuses.
func TestReaderFixtures(t *testing.T) {
	for _, e := range readManifest(t) {
		t.Run(e.File, func(t *testing.T) {
			path := filepath.Join("testdata", e.File)
			rd, err := OpenReader(path)
			if e.Error != "" {
				if err == nil {
					rd.Close()
					t.Fatalf("OpenReader succeeded, want an error containing %q", e.Error)
				}
				if !strings.Contains(err.Error(), e.Error) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q does not contain %q and the path", err, e.Error)
				}
				return
			}
			if len(e.Shape) == 0 {
				if err == nil || !strings.Contains(err.Error(), "scalar") {
					t.Fatalf("scalar: OpenReader error %v, want one about a scalar", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			want, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAllRows(t, rd, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(got, want) {
				t.Fatalf("got %s%v % x, want %s%v % x", got.DType, got.Shape, got.Data, want.DType, want.Shape, want.Data)
			}
		})
	}
}

func TestReaderBigEndianRows(t *testing.T) {
	// Two rows of two >i4 values: each chunk comes back little-endian.
	h := "{'descr': '>i4', 'fortran_order': False, 'shape': (2, 2), }\n"
	in := header(h, []byte{0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4})
	rd, err := NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{{1, 0, 0, 0, 2, 0, 0, 0}, {3, 0, 0, 0, 4, 0, 0, 0}} {
		a, err := rd.ReadRows(1)
		if err != nil {
			t.Fatal(err)
		}
		if a.DType != graph.I32 || !bytes.Equal(a.Data, want) {
			t.Errorf("row %d: %s % x, want I32 % x", i, a.DType, a.Data, want)
		}
	}
}

func TestReaderErrors(t *testing.T) {
	ok := "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n"
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "reading magic"},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x00\x00"), "bad magic"},
		{"short header", header(ok, nil)[:30], "reading 58-byte header"},
		{"fortran", header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }\n", make([]byte, 24)), "Fortran-order arrays are not supported"},
		{"scalar", header("{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", make([]byte, 4)), "scalar"},
		{"object", header("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}\n", nil), "object arrays"},
		{"overflow", header("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296)}\n", nil), "too large"},
	}
	for _, c := range cases {
		rd, err := NewReader(bytes.NewReader(c.in))
		if err == nil {
			t.Errorf("%s: NewReader succeeded (%s%v), want an error containing %q", c.name, rd.DType(), rd.Shape(), c.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "npy: ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want one starting \"npy: \" and containing %q", c.name, err, c.want)
		}
	}
	// No rows of a size too large to address: an empty array, as Read says.
	rd, err := NewReader(bytes.NewReader(header("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296)}\n", nil)))
	if err != nil {
		t.Fatalf("no rows of a huge size: %v", err)
	}
	if _, err := rd.ReadRows(1); err != io.EOF {
		t.Fatalf("no rows of a huge size: ReadRows: %v, want io.EOF", err)
	}
	rd, err = NewReader(bytes.NewReader(header(ok, make([]byte, 8))))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1} {
		if _, err := rd.ReadRows(n); err == nil {
			t.Errorf("ReadRows(%d) succeeded", n)
		}
	}
	if _, err := OpenReader(filepath.Join(t.TempDir(), "missing.npy")); err == nil || !strings.HasPrefix(err.Error(), "npy: ") {
		t.Errorf("OpenReader of a missing file: %v", err)
	}
}

func TestReaderTruncated(t *testing.T) {
	h := "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), }\n"
	in := header(h, make([]byte, 20)) // 2.5 of 4 rows
	path := filepath.Join(t.TempDir(), "short.npy")
	if err := os.WriteFile(path, in, 0o644); err != nil {
		t.Fatal(err)
	}
	rd, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if a, err := rd.ReadRows(2); err != nil || a.Shape[0] != 2 {
		t.Fatalf("first two rows: %v, %v", a, err)
	}
	_, err = rd.ReadRows(2)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want one wrapping io.ErrUnexpectedEOF", err)
	}
	for _, want := range []string{"npy: ", "rows 2 to 3", "got 4 of 16 bytes", path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, again := rd.ReadRows(1); again != err {
		t.Errorf("after the error ReadRows returned %v, want the same error", again)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += k
	return k, err
}

// The Reader reads no more than it is asked for: after the last row the stream
// is just after the array, as Read leaves it.
func TestReaderReadsOnlyWhatItIsAskedFor(t *testing.T) {
	a := &Array{DType: graph.U16, Shape: []int{3, 2}, Data: []byte{1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0}}
	next := &Array{DType: graph.Bool, Shape: []int{}, Data: []byte{1}}
	first := encode(t, a)
	cr := &countingReader{r: io.MultiReader(bytes.NewReader(first), bytes.NewReader(encode(t, next)))}
	rd, err := NewReader(cr)
	if err != nil {
		t.Fatal(err)
	}
	hlen := len(first) - len(a.Data)
	if cr.n != hlen {
		t.Fatalf("NewReader read %d bytes, the header is %d", cr.n, hlen)
	}
	if _, err := rd.ReadRows(1); err != nil || cr.n != hlen+4 {
		t.Fatalf("one row: %v, read %d bytes, want %d", err, cr.n, hlen+4)
	}
	if _, err := rd.ReadRows(5); err != nil || cr.n != len(first) {
		t.Fatalf("the rest: %v, read %d bytes, want %d", err, cr.n, len(first))
	}
	got, err := Read(cr)
	if err != nil || !equal(got, next) {
		t.Fatalf("the array after: %v, %v", got, err)
	}
}

// A header may claim any number of rows; asking for them all must fail on the
// missing data without allocating what the header claims.
func TestReaderHugeShapeDoesNotAllocate(t *testing.T) {
	h := "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }\n"
	rd, err := NewReader(bytes.NewReader(header(h, make([]byte, 1000))))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = rd.ReadRows(rd.Rows())
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v, want a truncation error", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
		t.Errorf("ReadRows allocated %d bytes for a 1 KB stream", got)
	}
}

// writeInChunks writes a through a Writer in chunks of n rows and returns the
// bytes written.
func writeInChunks(t *testing.T, a *Array, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	wr, err := NewWriter(&buf, a.DType, a.Shape)
	if err != nil {
		t.Fatal(err)
	}
	rowBytes := a.Len() * a.DType.Size()
	if a.Shape[0] > 0 {
		rowBytes /= a.Shape[0]
	}
	for i := 0; i < a.Shape[0]; i += n {
		k := min(n, a.Shape[0]-i)
		chunk := &Array{DType: a.DType, Shape: append([]int{k}, a.Shape[1:]...), Data: a.Data[i*rowBytes : (i+k)*rowBytes]}
		if err := wr.WriteRows(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if wr.Written() != a.Shape[0] {
		t.Fatalf("Written %d, want %d", wr.Written(), a.Shape[0])
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The Writer writes exactly what Write writes for the whole array.
func TestWriterMatchesWrite(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	shapes := [][]int{{0}, {0, 3}, {3, 0}, {1}, {7}, {2, 3}, {5, 1, 3, 1}, {9, 5, 6}, {123456, 0}, {0, 1 << 40, 1 << 40}}
	for _, dt := range npyDTypes {
		for _, shape := range shapes {
			a := randomArray(r, dt, shape)
			want := encode(t, a)
			for _, n := range []int{1, 4, 1 << 30} {
				if got := writeInChunks(t, a, n); !bytes.Equal(got, want) {
					t.Fatalf("%s%v in chunks of %d: differs from Write", dt, shape, n)
				}
			}
		}
	}
	// An empty chunk is fine anywhere.
	var buf bytes.Buffer
	wr, err := NewWriter(&buf, graph.F32, []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*Array{{DType: graph.F32, Shape: []int{0, 2}}, {DType: graph.F32, Shape: []int{1, 2}, Data: make([]byte, 8)}} {
		if err := wr.WriteRows(a); err != nil {
			t.Fatal(err)
		}
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWriterErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		dt    graph.DType
		shape []int
		want  string
	}{
		{"scalar", graph.F32, []int{}, "scalar"},
		{"bf16", graph.BF16, []int{2}, "BF16 has no NumPy dtype"},
		{"negative", graph.F32, []int{2, -1}, "negative dimension"},
		{"too large", graph.F64, []int{1 << 40, 1 << 40}, "too large"},
	} {
		var buf bytes.Buffer
		if _, err := NewWriter(&buf, c.dt, c.shape); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", c.name, buf.Len())
		}
	}

	var buf bytes.Buffer
	wr, err := NewWriter(&buf, graph.F32, []int{3, 2})
	if err != nil {
		t.Fatal(err)
	}
	hlen := buf.Len()
	for _, c := range []struct {
		name string
		a    *Array
		want string
	}{
		{"nil", nil, "nil array"},
		{"dtype", &Array{DType: graph.F64, Shape: []int{1, 2}, Data: make([]byte, 16)}, "rows of F64(1, 2) do not fit an array of F32(3, 2)"},
		{"row shape", &Array{DType: graph.F32, Shape: []int{1, 3}, Data: make([]byte, 12)}, "do not fit"},
		{"rank", &Array{DType: graph.F32, Shape: []int{2}, Data: make([]byte, 8)}, "do not fit"},
		{"too many rows", &Array{DType: graph.F32, Shape: []int{4, 2}, Data: make([]byte, 32)}, "4 more rows for an array of 3 rows"},
		{"short data", &Array{DType: graph.F32, Shape: []int{1, 2}, Data: make([]byte, 7)}, "7 data bytes"},
	} {
		if err := wr.WriteRows(c.a); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	if buf.Len() != hlen {
		t.Errorf("refused chunks wrote %d bytes", buf.Len()-hlen)
	}
	// The refused chunks left the Writer usable.
	if err := wr.WriteRows(&Array{DType: graph.F32, Shape: []int{2, 2}, Data: make([]byte, 16)}); err != nil {
		t.Fatal(err)
	}
	if err := wr.Close(); err == nil || !strings.Contains(err.Error(), "2 of the 3 rows of F32(3, 2) written") {
		t.Errorf("Close with a row missing: %v", err)
	}

	// Errors of the underlying writer: in the header, then in the data (kept).
	if _, err := NewWriter(&failWriter{}, graph.F32, []int{1}); err == nil || !strings.Contains(err.Error(), "writing header: disk full") {
		t.Errorf("header write error: %v", err)
	}
	wr, err = NewWriter(&failWriter{after: 1}, graph.F32, []int{2})
	if err != nil {
		t.Fatal(err)
	}
	one := &Array{DType: graph.F32, Shape: []int{1}, Data: make([]byte, 4)}
	err = wr.WriteRows(one)
	if err == nil || !strings.Contains(err.Error(), "writing data: disk full") {
		t.Fatalf("data write error: %v", err)
	}
	if again := wr.WriteRows(one); again != err {
		t.Errorf("WriteRows after an error: %v, want the same error", again)
	}
	if cerr := wr.Close(); cerr != err {
		t.Errorf("Close after an error: %v, want the same error", cerr)
	}
}

// Rows written by a Writer read back through a Reader, chunk sizes unrelated.
func TestWriterReaderRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	a := randomArray(r, graph.F16, []int{150, 8, 8})
	b := writeInChunks(t, a, 64)
	rd, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAllRows(t, rd, 37)
	if err != nil || !equal(got, a) {
		t.Fatalf("round trip: %v", err)
	}
}
