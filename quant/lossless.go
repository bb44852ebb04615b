package quant

// Lossless codec (tau = 0): bit-exact for any bytes.
//
// The values (little-endian elements of elemSize bytes), or their XOR with a base of
// the same length, or the zig-zagged wrapping difference of their bit patterns from
// the base's, are split into elemSize byte planes (plane k = byte k of every
// element: for float32, plane 3 holds sign and high exponent bits, which compress
// well; the XOR against a close base zeroes most high bytes). Each plane is an
// entropy stream (entropy.go). Bytes past the last whole element go raw at the end.
//
// Blob (part of the format; do not change):
//
//	+------+----------+-------+-----------------+
//	| 0x4C | elemSize | mode  | nbytes uvarint  |   mode 0 alone, 1 XOR with a base,
//	|      |          |       |                 |   2 difference from a base
//	+------+----------+-------+-----------------+
//	| elemSize streams of nbytes/elemSize bytes |
//	+-------------------------------------------+
//	| nbytes % elemSize raw tail bytes          |
//	+-------------------------------------------+

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const losslessMagic = 0x4C

// Lossless modes (the third header byte).
const (
	modeAlone = 0 // the values themselves
	modeXOR   = 1 // value XOR base
	modeSub   = 2 // zig-zagged wrapping difference of each element's bit pattern
)

// LosslessEncode encodes w (elements of elemSize bytes: 1, 2 or 4) alone (base nil)
// or as the XOR against base, which must have the same length.
func LosslessEncode(w, base []byte, elemSize int) ([]byte, error) {
	return losslessEncode(w, base, elemSize, modeXOR)
}

// LosslessEncodeDiff encodes w against base (same length) as the difference of each
// element's bit pattern, read as an unsigned little-endian integer, wrapping, and
// zig-zagged so that small steps either way give small codes. For floats close to
// their base this is a little smaller than the XOR (about 3% on fine-tunes). Bytes
// past the last whole element are XORed.
func LosslessEncodeDiff(w, base []byte, elemSize int) ([]byte, error) {
	if base == nil {
		return nil, errors.New("quant: a difference needs a base")
	}
	return losslessEncode(w, base, elemSize, modeSub)
}

// elemDiff returns zigzag(w - b) of one element of size es, or its inverse.
func elemDiff(w, b []byte, es int, out []byte) {
	switch es {
	case 1:
		d := int8(w[0] - b[0])
		out[0] = byte(d<<1) ^ byte(d>>7)
	case 2:
		d := int16(binary.LittleEndian.Uint16(w) - binary.LittleEndian.Uint16(b))
		binary.LittleEndian.PutUint16(out, uint16(d<<1)^uint16(d>>15))
	case 4:
		d := int32(binary.LittleEndian.Uint32(w) - binary.LittleEndian.Uint32(b))
		binary.LittleEndian.PutUint32(out, uint32(d<<1)^uint32(d>>31))
	}
}

// elemUndiff writes b + unzigzag(z) into out.
func elemUndiff(z, b []byte, es int, out []byte) {
	switch es {
	case 1:
		u := z[0]
		out[0] = b[0] + (u>>1 ^ -(u & 1))
	case 2:
		u := binary.LittleEndian.Uint16(z)
		binary.LittleEndian.PutUint16(out, binary.LittleEndian.Uint16(b)+(u>>1^-(u&1)))
	case 4:
		u := binary.LittleEndian.Uint32(z)
		binary.LittleEndian.PutUint32(out, binary.LittleEndian.Uint32(b)+(u>>1^-(u&1)))
	}
}

func losslessEncode(w, base []byte, elemSize int, mode byte) ([]byte, error) {
	if elemSize != 1 && elemSize != 2 && elemSize != 4 {
		return nil, fmt.Errorf("quant: element size %d not 1, 2 or 4", elemSize)
	}
	if base != nil && len(base) != len(w) {
		return nil, errors.New("quant: lossless base length differs")
	}
	if base == nil {
		mode = modeAlone
	}
	out := make([]byte, 3, len(w)+len(w)/64+64)
	out[0], out[1], out[2] = losslessMagic, byte(elemSize), mode
	out = binary.AppendUvarint(out, uint64(len(w)))
	n := len(w) / elemSize
	whole := n * elemSize
	// src holds what the planes are cut from
	src := w
	switch mode {
	case modeXOR:
		src = make([]byte, len(w))
		for j := range src {
			src[j] = w[j] ^ base[j]
		}
	case modeSub:
		src = make([]byte, len(w))
		for i := 0; i < whole; i += elemSize {
			elemDiff(w[i:], base[i:], elemSize, src[i:])
		}
		for j := whole; j < len(w); j++ {
			src[j] = w[j] ^ base[j]
		}
	}
	plane := make([]byte, n)
	for k := 0; k < elemSize; k++ {
		for i := range plane {
			plane[i] = src[i*elemSize+k]
		}
		out = appendStream(out, plane)
	}
	return append(out, src[whole:]...), nil
}

// LosslessDecode reverses LosslessEncode; base must be the one used to encode (nil
// if none). It refuses outputs above maxBytes.
func LosslessDecode(b, base []byte, maxBytes int) ([]byte, error) {
	if len(b) < 3 || b[0] != losslessMagic || b[2] > modeSub {
		return nil, errCorrupt
	}
	elemSize := int(b[1])
	if elemSize != 1 && elemSize != 2 && elemSize != 4 {
		return nil, errCorrupt
	}
	mode := b[2]
	p := b[3:]
	cnt, err := uvarint(&p)
	if err != nil || cnt > uint64(max(maxBytes, 0)) {
		return nil, errCorrupt
	}
	// each plane stream expands at most chunkSize per 2 input bytes (zstd is held
	// to the same output size by its cap)
	if cnt > uint64(len(p))*chunkSize {
		return nil, errCorrupt
	}
	total := int(cnt)
	if mode != modeAlone && len(base) != total {
		return nil, errors.New("quant: lossless base length differs")
	}
	n := total / elemSize
	out := make([]byte, total)
	for k := 0; k < elemSize; k++ {
		var plane []byte
		if plane, p, err = readStream(p, n); err != nil {
			return nil, err
		}
		for i, v := range plane {
			out[i*elemSize+k] = v
		}
	}
	if len(p) != total-n*elemSize {
		return nil, errCorrupt
	}
	copy(out[n*elemSize:], p)
	switch mode {
	case modeXOR:
		for i := range out {
			out[i] ^= base[i]
		}
	case modeSub:
		whole := n * elemSize
		for i := 0; i < whole; i += elemSize {
			elemUndiff(out[i:], base[i:], elemSize, out[i:])
		}
		for j := whole; j < total; j++ {
			out[j] ^= base[j]
		}
	}
	return out, nil
}
