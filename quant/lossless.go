package quant

// Lossless codec (tau = 0): bit-exact for any bytes.
//
// The values (little-endian elements of elemSize bytes), or their XOR with a base of
// the same length, are split into elemSize byte planes (plane k = byte k of every
// element: for float32, plane 3 holds sign and high exponent bits, which compress
// well; the XOR against a close base zeroes most high bytes). Each plane is an
// entropy stream (entropy.go). Bytes past the last whole element go raw at the end.
//
// Blob (part of the format; do not change):
//
//	+------+----------+-------+-----------------+
//	| 0x4C | elemSize | xor   | nbytes uvarint  |   xor = 1 when coded against a base
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

// LosslessEncode encodes w (elements of elemSize bytes: 1, 2 or 4) alone (base nil)
// or as the XOR against base, which must have the same length.
func LosslessEncode(w, base []byte, elemSize int) ([]byte, error) {
	if elemSize != 1 && elemSize != 2 && elemSize != 4 {
		return nil, fmt.Errorf("quant: element size %d not 1, 2 or 4", elemSize)
	}
	if base != nil && len(base) != len(w) {
		return nil, errors.New("quant: lossless base length differs")
	}
	out := []byte{losslessMagic, byte(elemSize), 0}
	if base != nil {
		out[2] = 1
	}
	out = binary.AppendUvarint(out, uint64(len(w)))
	n := len(w) / elemSize
	plane := make([]byte, n)
	for k := 0; k < elemSize; k++ {
		if base == nil {
			for i := range plane {
				plane[i] = w[i*elemSize+k]
			}
		} else {
			for i := range plane {
				j := i*elemSize + k
				plane[i] = w[j] ^ base[j]
			}
		}
		out = appendStream(out, plane)
	}
	for j := n * elemSize; j < len(w); j++ {
		if base == nil {
			out = append(out, w[j])
		} else {
			out = append(out, w[j]^base[j])
		}
	}
	return out, nil
}

// LosslessDecode reverses LosslessEncode; base must be the one used to encode (nil
// if none). It refuses outputs above maxBytes.
func LosslessDecode(b, base []byte, maxBytes int) ([]byte, error) {
	if len(b) < 3 || b[0] != losslessMagic || b[2] > 1 {
		return nil, errCorrupt
	}
	elemSize := int(b[1])
	if elemSize != 1 && elemSize != 2 && elemSize != 4 {
		return nil, errCorrupt
	}
	xor := b[2] == 1
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
	if xor && len(base) != total {
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
	if xor {
		for i := range out {
			out[i] ^= base[i]
		}
	}
	return out, nil
}
