package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/neurstore/neurstore/graph"
)

// TensorID identifies a stored tensor value: the SHA-256 of its dtype, shape and
// bytes (see hashHeader).
type TensorID [32]byte

// String returns the id in hex.
func (id TensorID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 12 hex digits of the id.
func (id TensorID) Short() string { return id.String()[:12] }

// ParseTensorID parses a 64-digit hex tensor id.
func ParseTensorID(s string) (TensorID, error) {
	var id TensorID
	if len(s) != 64 {
		return id, fmt.Errorf("store: tensor id %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("store: tensor id %q: %v", s, err)
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler (hex).
func (id TensorID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (hex).
func (id *TensorID) UnmarshalText(b []byte) error {
	v, err := ParseTensorID(string(b))
	*id = v
	return err
}

// Encoding says how a record's payload represents the tensor. The values are part
// of the format; do not change or reuse them.
type Encoding uint8

const (
	// EncInline is not a record encoding: Storage reports it for a tiny tensor kept
	// in its manifest (ManifestTensor.Data).
	EncInline Encoding = 0
	// EncRaw: the payload is the tensor's bytes, as imported.
	EncRaw Encoding = 1
	// EncPlanes: lossless; the bytes split into byte planes, each entropy coded
	// (a chunk container, see codec.go).
	EncPlanes Encoding = 2
	// EncXOR: lossless delta against the record named in Base (same dtype and
	// shape): the difference of each element's bit pattern from the base's (or
	// their XOR; the chunk blob says which), as byte planes.
	EncXOR Encoding = 3
	// EncGrid: lossy base; codes on the grid of step 2 tau, entropy coded. Every
	// element reconstructs within tau. Params holds tau (see gridParams).
	EncGrid Encoding = 4
	// EncGridDelta: lossy delta; the codes minus the codes of the record named in
	// Base on the same grid. Reconstructs exactly as EncGrid would.
	EncGridDelta Encoding = 5
)

func (e Encoding) String() string {
	switch e {
	case EncInline:
		return "inline"
	case EncRaw:
		return "raw"
	case EncPlanes:
		return "planes"
	case EncXOR:
		return "bit-delta"
	case EncGrid:
		return "grid"
	case EncGridDelta:
		return "grid-delta"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// isDelta reports whether records of encoding e need their base to decode.
func (e Encoding) isDelta() bool { return e == EncXOR || e == EncGridDelta }

// IsDelta reports whether records of encoding e are deltas against a base record.
func (e Encoding) IsDelta() bool { return e.isDelta() }

// Lossy reports whether records of encoding e reconstruct within tau rather than
// bit for bit.
func (e Encoding) Lossy() bool { return e == EncGrid || e == EncGridDelta }

// recordVersion is the tensor record format version.
//
// Record layout (part of the format; do not change):
//
//	+---------+----------+-------+-------+-----------------+---------+---------+
//	| version | encoding | codec | dtype | ndims (uvarint) | dims... | size    |
//	| 1 byte  | 1 byte   | 1     | 1     |                 | uvarint | uvarint |
//	+---------+----------+-------+-------+-----------------+---------+---------+
//	| stored  | blob     | page size | pages   | refs    | base len | base     |
//	| uvarint | uvarint  | uvarint   | uvarint | uvarint | uvarint  | bytes    |
//	+---------+----------+-----------+---------+---------+----------+----------+
//	| params len (uvarint) | params (codec specific) |
//	+----------------------+-------------------------+
//
// size is the tensor's logical byte size; stored is the payload size across pages.
// Version 1 is the first.
const recordVersion = 1

// Record describes one stored tensor value.
type Record struct {
	Encoding Encoding
	Codec    uint8 // 0: none
	DType    graph.DType
	Shape    []int64
	Size     int64  // logical bytes
	Stored   int64  // payload bytes across pages
	Blob     uint64 // page namespace
	PageSize int64
	Pages    int64
	Refs     int64
	Base     []byte // id of the record this one is a delta against; empty for none
	Params   []byte // codec parameters
}

func (r *Record) encode() []byte {
	b := make([]byte, 0, 64+len(r.Shape)*4+len(r.Base)+len(r.Params))
	b = append(b, recordVersion, byte(r.Encoding), r.Codec, byte(r.DType))
	b = binary.AppendUvarint(b, uint64(len(r.Shape)))
	for _, d := range r.Shape {
		b = binary.AppendUvarint(b, uint64(d))
	}
	for _, v := range []uint64{uint64(r.Size), uint64(r.Stored), r.Blob, uint64(r.PageSize), uint64(r.Pages), uint64(r.Refs)} {
		b = binary.AppendUvarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Base)))
	b = append(b, r.Base...)
	b = binary.AppendUvarint(b, uint64(len(r.Params)))
	b = append(b, r.Params...)
	return b
}

// decodeRecord parses an encoded record. Errors wrap ErrCorruption.
func decodeRecord(b []byte) (*Record, error) {
	d := decoder{b: b}
	if len(b) < 4 {
		return nil, corruptf("tensor record of %d bytes is too short", len(b))
	}
	if b[0] != recordVersion {
		return nil, corruptf("tensor record version %d is not supported (want %d)", b[0], recordVersion)
	}
	r := &Record{Encoding: Encoding(b[1]), Codec: b[2], DType: graph.DType(b[3])}
	d.b = b[4:]
	nd := d.uvarint()
	if nd > 64 {
		return nil, corruptf("tensor record with %d dimensions", nd)
	}
	r.Shape = make([]int64, nd)
	for i := range r.Shape {
		r.Shape[i] = d.int()
	}
	r.Size, r.Stored = d.int(), d.int()
	r.Blob = d.uvarint()
	r.PageSize, r.Pages, r.Refs = d.int(), d.int(), d.int()
	r.Base = d.bytes()
	r.Params = d.bytes()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, corruptf("tensor record has %d trailing bytes", len(d.b))
	}
	if r.Encoding < EncRaw || r.Encoding > EncGridDelta {
		return nil, corruptf("tensor record with unknown encoding %d", uint8(r.Encoding))
	}
	if r.Encoding.isDelta() != (len(r.Base) == len(TensorID{})) || !r.Encoding.isDelta() && len(r.Base) != 0 {
		return nil, corruptf("tensor record: %s with a base of %d bytes", r.Encoding, len(r.Base))
	}
	if !r.DType.Valid() {
		return nil, corruptf("tensor record with invalid dtype %d", uint8(r.DType))
	}
	if r.PageSize <= 0 || r.Pages != (r.Stored+r.PageSize-1)/r.PageSize {
		return nil, corruptf("tensor record: %d pages of %d bytes cannot hold %d bytes", r.Pages, r.PageSize, r.Stored)
	}
	return r, nil
}

// decoder reads uvarints and length-prefixed bytes, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = corruptf("tensor record: bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	v := d.uvarint()
	if v > 1<<62 {
		d.err = corruptf("tensor record: value %d out of range", v)
		return 0
	}
	return int64(v)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = corruptf("tensor record: field of %d bytes runs past the end", n)
		return nil
	}
	out := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	if len(out) == 0 {
		return nil
	}
	return out
}
