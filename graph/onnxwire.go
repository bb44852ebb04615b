package graph

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file walks protobuf wire data held in an io.ReaderAt. It reads field headers
// through a small cache and hands out the offsets of field values, so a caller can
// skip a large value (an ONNX tensor's raw_data) without reading it.

// wireCacheSize is how many bytes wireReader reads at a time.
const wireCacheSize = 64 << 10

// maxVarintLen is the length of the longest varint.
const maxVarintLen = 10

// maxHeaderLen is the length of the longest field header: a tag and a length.
const maxHeaderLen = 2 * maxVarintLen

// wireReader reads protobuf wire data from the first size bytes of r.
type wireReader struct {
	r    io.ReaderAt
	size int64

	cache   []byte // bytes of r starting at offset cacheAt
	cacheAt int64
}

// wireField is one field of a message: its tag and where its value lies.
type wireField struct {
	num   protowire.Number
	typ   protowire.Type
	start int64  // offset of the tag
	data  int64  // offset of the value; for a bytes field, the offset past its length
	end   int64  // offset past the field
	val   uint64 // the value of a varint, fixed32 or fixed64 field
}

// peek returns the bytes at [off, min(off+n, end)). The slice is valid until the next
// call. Callers make sure that end <= w.size.
func (w *wireReader) peek(off, end int64, n int) ([]byte, error) {
	want := min(int64(n), end-off)
	if off >= w.cacheAt && off+want <= w.cacheAt+int64(len(w.cache)) {
		i := off - w.cacheAt
		return w.cache[i : i+want], nil
	}
	fill := max(min(wireCacheSize, w.size-off), want)
	if int64(cap(w.cache)) < fill {
		w.cache = make([]byte, fill)
	}
	w.cache = w.cache[:fill]
	m, err := w.r.ReadAt(w.cache, off)
	if int64(m) < want {
		w.cache = w.cache[:0]
		return nil, readError(off, err)
	}
	w.cache, w.cacheAt = w.cache[:m], off
	return w.cache[:want], nil
}

// appendRange appends the bytes at [start, end) to b.
func (w *wireReader) appendRange(b []byte, start, end int64) ([]byte, error) {
	n := int(end - start)
	if start >= w.cacheAt && end <= w.cacheAt+int64(len(w.cache)) {
		i := start - w.cacheAt
		return append(b, w.cache[i:i+int64(n)]...), nil
	}
	b = slices.Grow(b, n)
	m, err := w.r.ReadAt(b[len(b):len(b)+n], start)
	if m < n {
		return b, readError(start+int64(m), err)
	}
	return b[:len(b)+n], nil
}

// readString returns the bytes at [start, end) as a string.
func (w *wireReader) readString(start, end int64) (string, error) {
	b, err := w.appendRange(nil, start, end)
	return string(b), err
}

func readError(off int64, err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading at offset %d: %w", off, err)
}

// next returns the field that starts at pos in a message that ends at end. It fails
// on malformed data: a bad varint, a bytes field longer than what is left of the
// message, a group (wire types 3 and 4), an invalid wire type or field number.
func (w *wireReader) next(pos, end int64) (wireField, error) {
	b, err := w.peek(pos, end, maxHeaderLen)
	if err != nil {
		return wireField{}, err
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return wireField{}, fmt.Errorf("offset %d: bad field tag: %v", pos, protowire.ParseError(n))
	}
	if !num.IsValid() {
		return wireField{}, fmt.Errorf("offset %d: field number %d out of range", pos, num)
	}
	f := wireField{num: num, typ: typ, start: pos, data: pos + int64(n)}
	b = b[n:]
	var m int
	switch typ {
	case protowire.VarintType:
		f.val, m = protowire.ConsumeVarint(b)
	case protowire.Fixed32Type:
		f.val, m = consumeFixed32(b)
	case protowire.Fixed64Type:
		f.val, m = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		var length uint64
		length, m = protowire.ConsumeVarint(b)
		if m < 0 {
			break
		}
		f.data += int64(m)
		if length > uint64(end-f.data) {
			return wireField{}, fmt.Errorf("offset %d: field %d has length %d, past the end of its message (%d bytes left)", pos, num, length, end-f.data)
		}
		f.end = f.data + int64(length)
		return f, nil
	case protowire.StartGroupType, protowire.EndGroupType:
		return wireField{}, fmt.Errorf("offset %d: field %d is a group (wire type %d), which is not supported", pos, num, typ)
	default:
		return wireField{}, fmt.Errorf("offset %d: field %d has invalid wire type %d", pos, num, typ)
	}
	if m < 0 {
		return wireField{}, fmt.Errorf("offset %d: field %d: %v", pos, num, protowire.ParseError(m))
	}
	f.end = f.data + int64(m)
	return f, nil
}

// walk calls fn for each field of the message at [start, end), in order.
func (w *wireReader) walk(start, end int64, fn func(f wireField) error) error {
	for pos := start; pos < end; {
		f, err := w.next(pos, end)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		pos = f.end
	}
	return nil
}

// values calls fn for each value of a packed repeated field whose encoded values lie
// at [start, end). consume decodes one value (protowire.ConsumeVarint, consumeFixed32
// or protowire.ConsumeFixed64).
func (w *wireReader) values(start, end int64, consume func([]byte) (uint64, int), fn func(v uint64)) error {
	for off := start; off < end; {
		b, err := w.peek(off, end, maxVarintLen)
		if err != nil {
			return err
		}
		v, n := consume(b)
		if n < 0 {
			return fmt.Errorf("offset %d: packed value: %v", off, protowire.ParseError(n))
		}
		fn(v)
		off += int64(n)
	}
	return nil
}

func consumeFixed32(b []byte) (uint64, int) {
	v, n := protowire.ConsumeFixed32(b)
	return uint64(v), n
}
