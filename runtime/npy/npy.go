// Package npy reads and writes NumPy .npy files: one n-dimensional array of a
// plain numeric or boolean element type, in C order. It is how tensors cross the
// boundary between NeurStore and NumPy: inputs and outputs of `neurrun run`, the
// reference inputs and outputs of the test model families (testdata/family/ref).
//
// The format (numpy.lib.format, versions 1.0, 2.0 and 3.0):
//
//	"\x93NUMPY" major minor   magic string and format version (1.0, 2.0 or 3.0)
//	HEADER_LEN                uint16 little-endian (1.0) or uint32 (2.0, 3.0)
//	HEADER                    a Python dict literal, padded with spaces and ending
//	                          in '\n': {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
//	DATA                      the elements, C order, byte order as 'descr' says
//
// Read accepts the element types of [graph.DType] that NumPy has, in either byte
// order, and returns little-endian data; Write writes what numpy.save writes for
// the same array, byte for byte.
//
// This package must never execute, evaluate or unpickle anything from a file:
// the header is parsed as data by a small literal parser that knows dicts,
// tuples, lists, strings, integers and True/False/None, and object arrays
// (pickles) are rejected, never decoded. Nor may a file make it allocate more
// than the file holds: header lengths are capped at [MaxHeaderLen], and array
// data is read in growing chunks, so a header that claims a huge shape fails on
// the missing bytes instead of allocating them.
package npy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/neurstore/neurstore/graph"
)

// Array is an n-dimensional array as stored in a .npy file, data little-endian C order.
type Array struct {
	DType graph.DType
	Shape []int  // empty for a scalar
	Data  []byte // Len() * DType.Size() bytes
}

// Len returns the number of elements of a: the product of its shape, 1 for a
// scalar.
func (a *Array) Len() int {
	n := 1
	for _, d := range a.Shape {
		n *= d
	}
	return n
}

const (
	// MaxHeaderLen is the largest header Read accepts and Write writes, in bytes.
	// numpy's own headers are a few hundred bytes.
	MaxHeaderLen = 1 << 20

	// MaxDims is the most dimensions Read accepts and Write writes (NumPy allows
	// 32, or 64 since NumPy 2). It keeps every header Write produces under
	// MaxHeaderLen.
	MaxDims = 1 << 15
)

const (
	magic      = "\x93NUMPY"
	arrayAlign = 64 // numpy's ARRAY_ALIGN: data starts at a multiple of 64
	// numpy leaves room after the header dict so that the first (growth) axis can
	// grow in place: 21 - len(repr(shape[0])) spaces.
	growthAxisMaxDigits = 21
	maxNesting          = 32 // of tuples/lists/dicts in a header
	readChunk           = 1 << 24
)

// descrs maps each element type NumPy has to the descr numpy.save writes.
var descrs = map[graph.DType]string{
	graph.F16: "<f2", graph.F32: "<f4", graph.F64: "<f8",
	graph.I8: "|i1", graph.I16: "<i2", graph.I32: "<i4", graph.I64: "<i8",
	graph.U8: "|u1", graph.U16: "<u2", graph.U32: "<u4", graph.U64: "<u8",
	graph.Bool: "|b1",
}

var kinds = map[string]graph.DType{
	"f2": graph.F16, "f4": graph.F32, "f8": graph.F64,
	"i1": graph.I8, "i2": graph.I16, "i4": graph.I32, "i8": graph.I64,
	"u1": graph.U8, "u2": graph.U16, "u4": graph.U32, "u8": graph.U64,
	"b1": graph.Bool, "?": graph.Bool,
}

var nativeLittle = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Read reads one .npy array from r and leaves r just after its data. Data comes
// back little-endian whatever the file's byte order.
//
// Read returns an error, starting "npy:", for: a stream that is not .npy (bad
// magic, a format version other than 1.0, 2.0, 3.0), a header longer than
// MaxHeaderLen or not a dict of exactly 'descr', 'fortran_order' and 'shape', an
// element type NumPy has but NeurStore does not (object, string, structured,
// complex, datetime, void such as a bfloat16 saved as '<V2', float128) naming
// the descr, Fortran-order arrays, a negative dimension or more than MaxDims, a
// shape whose byte size overflows, and data shorter than the shape needs
// (wrapping io.ErrUnexpectedEOF).
func Read(r io.Reader) (*Array, error) {
	dt, swap, shape, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	n, err := byteSize(dt, shape)
	if err != nil {
		return nil, err
	}
	data, err := readN(r, n)
	if err != nil {
		return nil, fmt.Errorf("npy: data of %s%s: got %d of %d bytes: %w", dt, shapeRepr(shape), len(data), n, err)
	}
	if swap {
		swapBytes(data, dt.Size())
	}
	return &Array{DType: dt, Shape: shape, Data: data}, nil
}

// readHeader reads everything before the data of a .npy array: magic, version,
// header length and header. It returns the element type, whether the data must
// be byte-swapped to little-endian, and the shape.
func readHeader(r io.Reader) (graph.DType, bool, []int, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return 0, false, nil, fmt.Errorf("npy: reading magic: %w", eofUnexpected(err))
	}
	if string(pre[:6]) != magic {
		return 0, false, nil, errors.New("npy: not a .npy file (bad magic)")
	}
	major, minor := pre[6], pre[7]
	var hlen uint64
	switch {
	case major == 1 && minor == 0:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, false, nil, fmt.Errorf("npy: reading header length: %w", eofUnexpected(err))
		}
		hlen = uint64(binary.LittleEndian.Uint16(b[:]))
	case (major == 2 || major == 3) && minor == 0:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, false, nil, fmt.Errorf("npy: reading header length: %w", eofUnexpected(err))
		}
		hlen = uint64(binary.LittleEndian.Uint32(b[:]))
	default:
		return 0, false, nil, fmt.Errorf("npy: unsupported format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if hlen > MaxHeaderLen {
		return 0, false, nil, fmt.Errorf("npy: header of %d bytes (at most %d accepted)", hlen, MaxHeaderLen)
	}
	header := make([]byte, hlen)
	if _, err := io.ReadFull(r, header); err != nil {
		return 0, false, nil, fmt.Errorf("npy: reading %d-byte header: %w", hlen, eofUnexpected(err))
	}
	return parseHeader(header)
}

// ReadFile reads the .npy file at path (see Read). Bytes after the array's data
// are ignored, as numpy.load ignores them.
func ReadFile(path string) (*Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npy: %w", err)
	}
	defer f.Close()
	a, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return a, nil
}

// Write writes a to w as numpy.save writes the same array: format version 1.0
// (2.0 when the header is longer than 65535 bytes), a little-endian descr,
// fortran_order False, the header padded with spaces so that the data starts at
// a multiple of 64 bytes.
//
// Write returns an error for a nil array, an element type NumPy does not have
// (BF16, F8E4M3, F8E5M2), a negative dimension or more than MaxDims, or Data
// whose length is not Len() * DType.Size(); errors of w come back wrapped.
func Write(w io.Writer, a *Array) error {
	h, err := encodeHeader(a)
	if err != nil {
		return err
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("npy: writing header: %w", err)
	}
	if _, err := w.Write(a.Data); err != nil {
		return fmt.Errorf("npy: writing data: %w", err)
	}
	return nil
}

// WriteFile writes a to path (see Write) through a temporary file in the same
// folder, renamed over path once complete and synced: on any error path is left
// as it was and the temporary file is removed.
func WriteFile(path string, a *Array) (err error) {
	h, err := encodeHeader(a)
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(h); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	if _, err = f.Write(a.Data); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("npy: %w", err)
	}
	return nil
}

// encodeHeader checks a and returns what precedes its data in the file: magic,
// version, header length and the padded header.
func encodeHeader(a *Array) ([]byte, error) {
	if a == nil {
		return nil, errors.New("npy: nil array")
	}
	h, n, err := headerFor(a.DType, a.Shape)
	if err != nil {
		return nil, err
	}
	if uint64(len(a.Data)) != n {
		return nil, fmt.Errorf("npy: %d data bytes for %s%s (want %d)", len(a.Data), a.DType, shapeRepr(a.Shape), n)
	}
	return h, nil
}

// headerFor returns what precedes the data of an array of dt and shape in the
// file (magic, version, header length and the padded header) and the size of
// that data in bytes.
func headerFor(dt graph.DType, shape []int) ([]byte, uint64, error) {
	descr, ok := descrs[dt]
	if !ok {
		return nil, 0, fmt.Errorf("npy: element type %s has no NumPy dtype", dt)
	}
	n, err := byteSize(dt, shape)
	if err != nil {
		return nil, 0, err
	}
	// numpy: "{" + "'key': repr(value), " for each key in sorted order + "}",
	// then the growth-axis spaces.
	var b strings.Builder
	b.WriteString("{'descr': '")
	b.WriteString(descr)
	b.WriteString("', 'fortran_order': False, 'shape': ")
	b.WriteString(shapeRepr(shape))
	b.WriteString(", }")
	if len(shape) > 0 {
		b.WriteString(strings.Repeat(" ", growthAxisMaxDigits-len(strconv.Itoa(shape[0]))))
	}
	dict := b.String()
	// magic + version + length field + dict + padding + '\n', a multiple of 64.
	for _, v := range []struct {
		major, field int
		max          uint64
	}{{1, 2, math.MaxUint16}, {2, 4, math.MaxUint32}} {
		hlen := len(dict) + 1
		pad := arrayAlign - (len(magic)+2+v.field+hlen)%arrayAlign
		total := hlen + pad
		if uint64(total) > v.max {
			continue
		}
		if total > MaxHeaderLen {
			break
		}
		out := make([]byte, 0, len(magic)+2+v.field+total)
		out = append(out, magic...)
		out = append(out, byte(v.major), 0)
		if v.field == 2 {
			out = binary.LittleEndian.AppendUint16(out, uint16(total))
		} else {
			out = binary.LittleEndian.AppendUint32(out, uint32(total))
		}
		out = append(out, dict...)
		for range pad {
			out = append(out, ' ')
		}
		return append(out, '\n'), n, nil
	}
	return nil, 0, fmt.Errorf("npy: header of %d bytes for %d dimensions (at most %d)", len(dict), len(shape), MaxHeaderLen)
}

// shapeRepr is Python's repr of the shape tuple: (), (5,), (2, 3).
func shapeRepr(shape []int) string {
	switch len(shape) {
	case 0:
		return "()"
	case 1:
		return "(" + strconv.Itoa(shape[0]) + ",)"
	}
	var b strings.Builder
	b.WriteByte('(')
	for i, d := range shape {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(d))
	}
	b.WriteByte(')')
	return b.String()
}

// byteSize is the size of the data of an array of dt and shape, checked for
// negative dimensions and overflow of int.
func byteSize(dt graph.DType, shape []int) (uint64, error) {
	if len(shape) > MaxDims {
		return 0, fmt.Errorf("npy: %d dimensions (at most %d)", len(shape), MaxDims)
	}
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("npy: negative dimension in shape %s", shapeRepr(shape))
		}
	}
	if slices.Contains(shape, 0) {
		return 0, nil
	}
	n := uint64(dt.Size())
	for _, d := range shape {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt {
			return 0, fmt.Errorf("npy: shape %s of %s is too large", shapeRepr(shape), dt)
		}
		n = lo
	}
	return n, nil
}

// readN reads exactly n bytes, growing its buffer as data arrives, so that a
// header claiming more data than the stream has costs no more memory than the
// stream holds. It returns what it read and io.ErrUnexpectedEOF when short.
func readN(r io.Reader, n uint64) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for uint64(len(buf)) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(uint64(cap(buf)), n-uint64(len(buf)))))
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil && uint64(len(buf)) < n {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func swapBytes(b []byte, size int) {
	switch size {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			b[i], b[i+1] = b[i+1], b[i]
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.BigEndian.Uint64(b[i:]))
		}
	}
}
