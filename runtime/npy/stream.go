package npy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/neurstore/neurstore/graph"
)

// Streaming: a Reader reads an array's rows (its slices along the first
// dimension) a few at a time, and a Writer writes an array whose shape is known
// up front a few rows at a time, so that neither holds the whole array.

// Reader reads the rows of one .npy array in chunks. Its header is read and
// checked when it is made; the data is read only as ReadRows asks for it.
type Reader struct {
	r        io.Reader
	closer   io.Closer // the file OpenReader opened; nil for NewReader
	path     string    // named in errors when set
	dtype    graph.DType
	shape    []int
	swap     bool
	rowBytes uint64 // bytes per row
	next     int    // rows read so far
	err      error  // the first read error, returned again by later calls
}

// NewReader reads the header of a .npy array from r and returns a Reader for
// its rows. It reads from r exactly the header and, later, the rows asked for.
//
// NewReader returns the errors of Read for a bad header (Fortran-order arrays
// included), and an error for a scalar (shape ()), which has no rows.
func NewReader(r io.Reader) (*Reader, error) {
	dt, swap, shape, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	if len(shape) == 0 {
		return nil, errors.New("npy: the array is a scalar (shape ()): it has no rows to read")
	}
	if _, err := byteSize(dt, shape); err != nil {
		return nil, err
	}
	rowBytes, err := rowSize(dt, shape)
	if err != nil {
		return nil, err
	}
	return &Reader{r: r, dtype: dt, shape: shape, swap: swap, rowBytes: rowBytes}, nil
}

// OpenReader opens the .npy file at path and reads its header (see NewReader).
// Errors name the file. The caller must Close the Reader.
func OpenReader(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	rd, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	rd.closer, rd.path = f, path
	return rd, nil
}

// DType returns the array's element type.
func (rd *Reader) DType() graph.DType { return rd.dtype }

// Shape returns the whole array's shape (a copy); its first dimension is the
// number of rows.
func (rd *Reader) Shape() []int { return slices.Clone(rd.shape) }

// RowShape returns the shape of one row: the array's shape without its first
// dimension (a copy).
func (rd *Reader) RowShape() []int { return slices.Clone(rd.shape[1:]) }

// Rows returns the number of rows of the array.
func (rd *Reader) Rows() int { return rd.shape[0] }

// Remaining returns the number of rows ReadRows has not returned yet.
func (rd *Reader) Remaining() int { return rd.shape[0] - rd.next }

// ReadRows reads the next n rows, or all that remain when fewer do, and returns
// them as an array of shape (k, RowShape()...) with little-endian data. Once
// every row is read it returns io.EOF. Data shorter than the header promises
// is an error wrapping io.ErrUnexpectedEOF; after an error every later call
// returns it again.
func (rd *Reader) ReadRows(n int) (*Array, error) {
	if rd.err != nil {
		return nil, rd.err
	}
	if n <= 0 {
		return nil, fmt.Errorf("npy: ReadRows of %d rows", n)
	}
	k := min(n, rd.Remaining())
	if k == 0 {
		return nil, io.EOF
	}
	// k*rowBytes fits: the whole array's byte size was checked.
	want := uint64(k) * rd.rowBytes
	data, err := readN(rd.r, want)
	if err != nil {
		rd.err = fmt.Errorf("npy: data of %s%s: rows %d to %d: got %d of %d bytes: %w",
			rd.dtype, shapeRepr(rd.shape), rd.next, rd.next+k-1, len(data), want, err)
		if rd.path != "" {
			rd.err = fmt.Errorf("%w (%s)", rd.err, rd.path)
		}
		return nil, rd.err
	}
	if rd.swap {
		swapBytes(data, rd.dtype.Size())
	}
	rd.next += k
	shape := append([]int{k}, rd.shape[1:]...)
	return &Array{DType: rd.dtype, Shape: shape, Data: data}, nil
}

// Close closes the file OpenReader opened; for a Reader from NewReader it does
// nothing.
func (rd *Reader) Close() error {
	if rd.closer == nil {
		return nil
	}
	c := rd.closer
	rd.closer = nil
	return c.Close()
}

// rowSize is the size in bytes of one row of an array of dt and shape. An
// array of no rows may have rows too large to address, as Read allows: their
// size is then 0, never used.
func rowSize(dt graph.DType, shape []int) (uint64, error) {
	n, err := byteSize(dt, shape[1:])
	if err != nil && shape[0] == 0 {
		return 0, nil
	}
	return n, err
}

// Writer writes one .npy array whose shape is known before its data: the
// header goes out when the Writer is made, then the rows in order, in chunks
// of any size.
type Writer struct {
	w        io.Writer
	dtype    graph.DType
	shape    []int
	rowBytes uint64
	written  int   // rows written so far
	err      error // the first write error, returned again by later calls
}

// NewWriter writes to w the header of an array of element type dt and shape,
// as Write writes it, and returns a Writer for the array's rows: the bytes w
// receives in all are those Write would write for the whole array.
//
// NewWriter returns an error for what Write refuses (an element type NumPy
// does not have, a negative dimension, too many dimensions) and for a scalar
// shape, which has no rows.
func NewWriter(w io.Writer, dt graph.DType, shape []int) (*Writer, error) {
	if len(shape) == 0 {
		return nil, errors.New("npy: a scalar (shape ()) has no rows to write")
	}
	h, _, err := headerFor(dt, shape)
	if err != nil {
		return nil, err
	}
	rowBytes, err := rowSize(dt, shape)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(h); err != nil {
		return nil, fmt.Errorf("npy: writing header: %w", err)
	}
	return &Writer{w: w, dtype: dt, shape: slices.Clone(shape), rowBytes: rowBytes}, nil
}

// WriteRows writes the rows of a: a must have the Writer's element type and
// row shape, and no more rows than remain to be written. A chunk that does not
// fit is refused without writing anything; an error of the underlying writer
// is returned by every later call and by Close.
func (wr *Writer) WriteRows(a *Array) error {
	if wr.err != nil {
		return wr.err
	}
	if a == nil {
		return errors.New("npy: WriteRows of a nil array")
	}
	if a.DType != wr.dtype || len(a.Shape) != len(wr.shape) || !slices.Equal(a.Shape[1:], wr.shape[1:]) {
		return fmt.Errorf("npy: rows of %s%s do not fit an array of %s%s", a.DType, shapeRepr(a.Shape), wr.dtype, shapeRepr(wr.shape))
	}
	k := a.Shape[0]
	if k < 0 || k > wr.shape[0]-wr.written {
		return fmt.Errorf("npy: %d more rows for an array of %d rows, %d of them written", k, wr.shape[0], wr.written)
	}
	if want := uint64(k) * wr.rowBytes; uint64(len(a.Data)) != want {
		return fmt.Errorf("npy: %d data bytes for %s%s (want %d)", len(a.Data), a.DType, shapeRepr(a.Shape), want)
	}
	if _, err := wr.w.Write(a.Data); err != nil {
		wr.err = fmt.Errorf("npy: writing data: %w", err)
		return wr.err
	}
	wr.written += k
	return nil
}

// Written returns the number of rows written so far.
func (wr *Writer) Written() int { return wr.written }

// Close checks that every row of the array was written, and returns the first
// write error if there was one. It does not close the underlying writer.
func (wr *Writer) Close() error {
	if wr.err != nil {
		return wr.err
	}
	if wr.written != wr.shape[0] {
		return fmt.Errorf("npy: %d of the %d rows of %s%s written", wr.written, wr.shape[0], wr.dtype, shapeRepr(wr.shape))
	}
	return nil
}
