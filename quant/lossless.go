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
//	|      |          |       |                 |   2 difference from a base,
//	|      |          |       |                 |   3 difference in base classes
//	+------+----------+-------+-----------------+
//	| elemSize streams of nbytes/elemSize bytes |
//	+-------------------------------------------+
//	| nbytes % elemSize raw tail bytes          |
//	+-------------------------------------------+
//
// Mode 3 (elements of 2 or 4 bytes) is mode 2 with the elements sorted into
// classes by their base's high byte without its sign bit (for floats, the top of
// the exponent: the step one unit of the difference makes) and coded class by
// class: for each class with elements, in increasing order of the high byte and
// the merged class last, elemSize streams of its elements' planes. Classes of
// fewer than 1/32 of the elements are merged into one. The decoder has the base,
// so the classes cost nothing to send.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

const losslessMagic = 0x4C

// Lossless modes (the third header byte).
const (
	modeAlone = 0 // the values themselves
	modeXOR   = 1 // value XOR base
	modeSub   = 2 // zig-zagged wrapping difference of each element's bit pattern
	modeClass = 3 // modeSub coded in classes of the base's high byte

	// minClassElems: below it classes cost more in tables than they save.
	minClassElems = 1 << 14
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
// past the last whole element are XORed. Inputs of 2- or 4-byte elements and at
// least minClassElems elements are coded in classes of the base's exponent (mode
// 3): a unit of the difference is worth more where the base is larger, so each
// class has its own distribution (1.3% smaller on text-medium's fine-tunes).
func LosslessEncodeDiff(w, base []byte, elemSize int) ([]byte, error) {
	if base == nil {
		return nil, errors.New("quant: a difference needs a base")
	}
	if elemSize >= 2 && len(w)/elemSize >= minClassElems {
		return losslessEncode(w, base, elemSize, modeClass)
	}
	return losslessEncode(w, base, elemSize, modeSub)
}

// LosslessPlaneBytes estimates what LosslessEncode of w alone (no base) costs, in
// bytes: the order-0 entropy of each byte plane, without headers or tables. Long
// inputs are estimated on every 4th element. It is a cheap stand-in for encoding
// w to learn its size; the encoded size comes within a few percent of it (zstd
// finds a little more in some exponent planes; Huffman tables cost a little).
func LosslessPlaneBytes(w []byte, elemSize int) float64 {
	if elemSize < 1 || elemSize > 8 {
		return float64(len(w))
	}
	n := len(w) / elemSize
	stride := 1
	if n >= 1<<15 {
		stride = 4
	}
	var hist [8][256]uint32
	samples := 0
	for i := 0; i < n; i += stride {
		e := w[i*elemSize : (i+1)*elemSize]
		for k, b := range e {
			hist[k][b]++
		}
		samples++
	}
	var bits float64
	for k := range elemSize {
		b, _ := histBits(&hist[k], samples)
		bits += b
	}
	return bits/8*float64(n)/float64(max(samples, 1)) + float64(len(w)-n*elemSize)
}

// baseClasses sorts the n elements of base (elements of es bytes) into classes by
// their high byte without its sign bit: the values held by at least n/32 elements
// in increasing order, then one class for the rest. It returns the element
// indices class by class, each class in element order, and where each class
// starts in them (len(offs) = classes + 1).
func baseClasses(base []byte, n, es int) (order []int32, offs []int) {
	var count [128]int
	for i := range n {
		count[base[i*es+es-1]&0x7f]++
	}
	var id [128]int
	classes := 0
	for v, c := range count {
		if c > 0 && c >= n/32 {
			id[v] = classes
			classes++
		}
	}
	rest := classes
	for v, c := range count {
		if c > 0 && c < n/32 {
			id[v] = rest
			classes = rest + 1
		}
	}
	offs = make([]int, classes+1)
	for v, c := range count {
		if c > 0 {
			offs[id[v]+1] += c
		}
	}
	for c := range classes {
		offs[c+1] += offs[c]
	}
	next := slices.Clone(offs[:classes])
	order = make([]int32, n)
	for i := range n {
		c := id[base[i*es+es-1]&0x7f]
		order[next[c]] = int32(i)
		next[c]++
	}
	return order, offs
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
	case modeSub, modeClass:
		src = make([]byte, len(w))
		for i := 0; i < whole; i += elemSize {
			elemDiff(w[i:], base[i:], elemSize, src[i:])
		}
		for j := whole; j < len(w); j++ {
			src[j] = w[j] ^ base[j]
		}
	}
	pb := takePlanes(whole)
	defer planeBufs.Put(pb)
	if mode != modeClass {
		out = appendPlanes(out, src[:whole], elemSize, nil, (*pb)[:whole])
		return append(out, src[whole:]...), nil
	}
	order, offs := baseClasses(base, n, elemSize)
	for c := 0; c+1 < len(offs); c++ {
		idx := order[offs[c]:offs[c+1]]
		out = appendPlanes(out, src[:whole], elemSize, idx, (*pb)[:len(idx)*elemSize])
	}
	return append(out, src[whole:]...), nil
}

// appendPlanes appends the elemSize plane streams of the elements of src (all of
// them, or those at idx, in that order) to out, cutting the planes into buf (one
// plane after another, elemSize times the elements' count).
func appendPlanes(out, src []byte, elemSize int, idx []int32, buf []byte) []byte {
	m := len(src) / elemSize
	if idx != nil {
		m = len(idx)
	}
	switch {
	case elemSize == 4 && idx == nil:
		p0, p1, p2, p3 := buf[:m], buf[m:2*m], buf[2*m:3*m], buf[3*m:4*m]
		for i := range m {
			e := src[4*i : 4*i+4]
			p0[i], p1[i], p2[i], p3[i] = e[0], e[1], e[2], e[3]
		}
	case elemSize == 4:
		p0, p1, p2, p3 := buf[:m], buf[m:2*m], buf[2*m:3*m], buf[3*m:4*m]
		for j, i := range idx {
			e := src[4*int(i) : 4*int(i)+4]
			p0[j], p1[j], p2[j], p3[j] = e[0], e[1], e[2], e[3]
		}
	default:
		for k := range elemSize {
			plane := buf[k*m : (k+1)*m]
			if idx == nil {
				for i := range m {
					plane[i] = src[i*elemSize+k]
				}
				continue
			}
			for j, i := range idx {
				plane[j] = src[int(i)*elemSize+k]
			}
		}
	}
	for k := range elemSize {
		out = appendStream(out, buf[k*m:(k+1)*m], true)
	}
	return out
}

// LosslessDecode reverses LosslessEncode; base must be the one used to encode (nil
// if none). It refuses outputs above maxBytes.
func LosslessDecode(b, base []byte, maxBytes int) ([]byte, error) {
	if len(b) < 3 || b[0] != losslessMagic || b[2] > modeClass {
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
	if mode == modeClass {
		if elemSize < 2 {
			return nil, errCorrupt
		}
		if err := readClasses(out, &p, base, n, elemSize); err != nil {
			return nil, err
		}
	} else {
		for k := 0; k < elemSize; k++ {
			var plane []byte
			if plane, p, err = readStream(p, n); err != nil {
				return nil, err
			}
			for i, v := range plane[:n] {
				out[i*elemSize+k] = v
			}
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
	case modeSub, modeClass:
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

// readClasses reads mode 3's class-by-class planes from *p into out (n elements
// of es bytes) and advances *p past them.
func readClasses(out []byte, p *[]byte, base []byte, n, es int) error {
	order, offs := baseClasses(base, n, es)
	for c := 0; c+1 < len(offs); c++ {
		idx := order[offs[c]:offs[c+1]]
		for k := 0; k < es; k++ {
			plane, rest, err := readStream(*p, len(idx))
			if err != nil {
				return err
			}
			*p = rest
			for j, i := range idx {
				out[int(i)*es+k] = plane[j]
			}
		}
	}
	return nil
}
