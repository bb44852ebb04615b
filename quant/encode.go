package quant

// Encoded Codes: a self-describing blob (part of the format; do not change).
//
//	+---------+-------+-------+-------+
//	| version | codec | width | flags |   4 bytes: version 1, codec 0..3, width 0..64, 0
//	+---------+-------+-------+-------+
//	| count  uvarint                  |   number of elements
//	+---------------------------------+
//	| tau    float64 little-endian    |   8 bytes
//	+---------------------------------+
//	| nexc   uvarint                  |   exceptions, indices strictly increasing:
//	| nexc x (gap uvarint, bits u32le)|   index = previous index + 1 + gap (first: gap)
//	+---------------------------------+
//	| nesc   uvarint                  |   escapes: zig-zagged codes wider than width,
//	| nesc x (gap uvarint, val uvarint)   same index coding; their slot in the payload is 0
//	+---------------------------------+
//	| payload                         |   codec 0: PackBits of the zig-zagged codes at
//	|                                 |            width bits, ceil(count*width/8) bytes
//	|                                 |   codec 1: ceil(width/8) byte planes (plane k =
//	|                                 |            byte k of every zig-zagged code), each
//	|                                 |            an entropy stream (entropy.go)
//	|                                 |   codec 2: the rows' groups, then codec 1's
//	|                                 |            planes group by group (rows.go;
//	|                                 |            read only)
//	|                                 |   codec 3: the rows' and columns' groups and
//	|                                 |            the class of each cell, then
//	|                                 |            codec 1's planes class by class
//	|                                 |            (cells.go)
//	+---------------------------------+
//
// Codes are zig-zagged (0,-1,1,-2.. -> 0,1,2,3..) so deltas near 0 stay small.
// Exception slots carry any code (the encoder writes 0); the exception wins.
// The encoder builds the byte-plane form (width rounded up to whole bytes, only
// outliers rarer than 1 in 4096 escaped) and the packed form at the width that
// minimizes packed bits plus escapes, and keeps the smaller.

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
)

const (
	formatVersion = 1
	codecPacked   = 0
	codecPlanes   = 1
)

// Encode returns the smallest encoding of c it finds.
func Encode(c *Codes) ([]byte, error) {
	b, _, err := encode(c)
	return b, err
}

// encode is Encode that also returns the width of c's byte-plane form (which
// EncodeRows codes its groups at).
func encode(c *Codes) (blob []byte, planeWidth int, err error) {
	if err := checkTau(c.Tau); err != nil {
		return nil, 0, err
	}
	width, planeWidth := widths(c)
	blob, err = encodeWidths(c, width, planeWidth)
	return blob, planeWidth, err
}

// widths returns the width of c's packed form (the cheapest with its escapes)
// and of its byte-plane form, in one pass over the codes.
func widths(c *Codes) (width, planeWidth int) {
	n := len(c.Q)
	var hist [65]int
	for _, q := range c.Q {
		hist[bits.Len64(zigzag(q))]++
	}
	// width minimizing n*width + the escapes' bits (a gap of about 2 bytes and
	// the value as a uvarint)
	width = 64
	bestCost := uint64(math.MaxUint64)
	var escCost uint64 // bits of escaping every element longer than w
	for l := 1; l <= 64; l++ {
		escCost += uint64(hist[l]) * uint64(8*(2+(l+6)/7))
	}
	for w := 0; w <= 64; w++ {
		if w > 0 {
			escCost -= uint64(hist[w]) * uint64(8*(2+(w+6)/7))
		}
		if cost := uint64(n)*uint64(w) + escCost; cost < bestCost {
			width, bestCost = w, cost
		}
	}
	// For entropy-coded byte planes the width only sets the number of planes:
	// escape just the rare outliers (at most 1 in 4096) and round up to whole bytes.
	return width, planesWidth(hist, n)
}

// encodeWidths is encode given widths' results.
func encodeWidths(c *Codes, width, planeWidth int) (blob []byte, err error) {
	// Nothing to code but escapes (below 1 in 4096): the packed form at width 0
	// is the escapes alone. Where the packed cost model picks width 0 for more
	// escapes than that (a delta mostly 0, moved elsewhere), the planes may
	// still be smaller, so both are built.
	if planeWidth == 0 {
		return encodeAs(c, codecPacked, 0, math.MaxInt)
	}
	planes, err := encodeAs(c, codecPlanes, planeWidth, math.MaxInt)
	if err != nil {
		return nil, err
	}
	// the packed form is only built when it would be smaller
	if packed, err := encodeAs(c, codecPacked, width, len(planes)); err != nil || packed != nil {
		return packed, err
	}
	return planes, nil
}

// PlaneBytes estimates what Encode's byte-plane form of c costs, in bytes: the
// order-0 entropy of each byte plane of the zig-zagged codes, without headers,
// escapes or exceptions. It is a cheap stand-in for encoding c to learn its
// size (one pass, no allocation). Encode comes within a few percent over it
// (Huffman's whole bits, tables, planes near 8 bits kept raw); row groups
// (EncodeRows) a few percent under it on matrices whose rows differ in spread.
func PlaneBytes(c *Codes) float64 {
	// Long inputs are estimated on every 4th code: with 8,192 samples or more
	// the bias of the estimate is under 0.03 bit a plane.
	stride := 1
	if len(c.Q) >= 1<<15 {
		stride = 4
	}
	var hist [8][256]uint32
	samples := 0
	for i := 0; i < len(c.Q); i += stride {
		u := zigzag(c.Q[i])
		samples++
		hist[0][byte(u)]++
		for k := 1; u>>8 != 0 && k < 8; k++ {
			u >>= 8
			hist[k][byte(u)]++
		}
	}
	n := float64(samples)
	var bits float64
	for k := range hist {
		// codes that ended before plane k have a 0 byte there
		var seen uint32
		for _, m := range hist[k] {
			seen += m
		}
		if seen == 0 {
			break
		}
		hist[k][0] += uint32(samples) - seen
		b, _ := histBits(&hist[k], samples)
		bits += b
	}
	return bits / 8 * float64(len(c.Q)) / max(n, 1)
}

// widthMask is the mask of the low width bits.
func widthMask(width int) uint64 {
	if width >= 64 {
		return math.MaxUint64
	}
	return 1<<width - 1
}

// slotValue is what a code's slot holds in a payload of width bits: the
// zig-zagged code, or 0 where the code is escaped.
func slotValue(q int64, mask uint64) uint64 {
	if u := zigzag(q); u&^mask == 0 {
		return u
	}
	return 0
}

// encodeAs writes the blob of codec and width for c. For the packed codec it
// returns nil if the blob would not be smaller than limit bytes.
func encodeAs(c *Codes, codec byte, width int, limit int) ([]byte, error) {
	n := len(c.Q)
	mask := widthMask(width)
	if codec == codecPacked {
		out, err := appendHeader(c, codec, width)
		if err != nil {
			return nil, err
		}
		if len(out)+PackedLen(n, width) >= limit {
			return nil, nil
		}
		// PackBits keeps only the low width bits; escaped slots must read as 0
		zz := make([]uint64, n)
		for i, q := range c.Q {
			zz[i] = slotValue(q, mask)
		}
		return append(out, PackBits(zz, width)...), nil
	}
	// one pass over the codes fills every plane and finds the escapes
	np := (width + 7) / 8
	pb := takePlanes(np * n)
	defer planeBufs.Put(pb)
	planes := (*pb)[:np*n]
	var escIdx []int
	switch np {
	case 1:
		for i, q := range c.Q {
			u := zigzag(q)
			if u&^mask != 0 {
				escIdx, u = append(escIdx, i), 0
			}
			planes[i] = byte(u)
		}
	case 2:
		p0, p1 := planes[:n], planes[n:2*n]
		for i, q := range c.Q {
			u := zigzag(q)
			if u&^mask != 0 {
				escIdx, u = append(escIdx, i), 0
			}
			p0[i], p1[i] = byte(u), byte(u>>8)
		}
	default:
		for i, q := range c.Q {
			u := zigzag(q)
			if u&^mask != 0 {
				escIdx, u = append(escIdx, i), 0
			}
			for k := range np {
				planes[k*n+i] = byte(u >> (8 * k))
			}
		}
	}
	out, err := appendHeaderEscapes(c, codec, width, escIdx)
	if err != nil {
		return nil, err
	}
	for k := range np {
		out = appendStream(out, planes[k*n:(k+1)*n], false)
	}
	return out, nil
}

// planeBufs holds byte-plane buffers (*[]byte) for encoding and decoding: planes
// are cut, coded and dropped (or decoded, read and dropped), chunk after chunk.
var planeBufs sync.Pool

// takePlanes returns a buffer of at least n bytes (contents undefined) for
// planeBufs.Put once done.
func takePlanes(n int) *[]byte {
	if b, ok := planeBufs.Get().(*[]byte); ok && cap(*b) >= n {
		return b
	}
	b := make([]byte, n)
	return &b
}

// appendHeader returns the blob's fields before the payload: version, codec,
// width, count, tau, exceptions, and the escapes of the codes wider than width.
func appendHeader(c *Codes, codec byte, width int) ([]byte, error) {
	var escIdx []int
	if width < 64 {
		for i, q := range c.Q {
			if zigzag(q)>>width != 0 {
				escIdx = append(escIdx, i)
			}
		}
	}
	return appendHeaderEscapes(c, codec, width, escIdx)
}

// appendHeaderEscapes is appendHeader given the indices of the codes wider than
// width, in order.
func appendHeaderEscapes(c *Codes, codec byte, width int, escIdx []int) ([]byte, error) {
	n := len(c.Q)
	out := []byte{formatVersion, codec, byte(width), 0}
	out = binary.AppendUvarint(out, uint64(n))
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(c.Tau))
	out = binary.AppendUvarint(out, uint64(len(c.Exceptions)))
	prev := -1
	for _, e := range c.Exceptions {
		if int(e.Index) <= prev || int(e.Index) >= n {
			return nil, fmt.Errorf("quant: exceptions not sorted or out of range at %d", e.Index)
		}
		out = binary.AppendUvarint(out, uint64(int(e.Index)-prev-1))
		out = binary.LittleEndian.AppendUint32(out, e.Bits)
		prev = int(e.Index)
	}
	out = binary.AppendUvarint(out, uint64(len(escIdx)))
	prev = -1
	for _, i := range escIdx {
		out = binary.AppendUvarint(out, uint64(i-prev-1))
		out = binary.AppendUvarint(out, zigzag(c.Q[i]))
		prev = i
	}
	return out, nil
}

// Decode parses a blob written by Encode. It refuses blobs of more than maxElems
// elements and never allocates much more than maxElems codes or len(b) bytes.
func Decode(b []byte, maxElems int) (*Codes, error) { return decode(b, maxElems, takeCodes()) }

// decode is Decode writing the codes into buf's array when it holds enough.
func decode(b []byte, maxElems int, buf []int64) (*Codes, error) {
	if len(b) < 4 || b[0] != formatVersion || b[1] > codecCells || b[2] > 64 || b[3] != 0 {
		return nil, errCorrupt
	}
	codec, width := b[1], int(b[2])
	p := b[4:]
	cnt, err := uvarint(&p)
	if err != nil || cnt > uint64(max(maxElems, 0)) || cnt > math.MaxUint32 {
		return nil, errCorrupt
	}
	n := int(cnt)
	if len(p) < 8 {
		return nil, errCorrupt
	}
	tau := math.Float64frombits(binary.LittleEndian.Uint64(p))
	p = p[8:]
	if checkTau(tau) != nil {
		return nil, errCorrupt
	}
	// Enough input must back the output: a packed payload is n*width/8 bytes and a
	// plane stream expands a chunk of >= 2 bytes to at most 128 KiB (zstd frames
	// are held to the same ratio bound below).
	if codec == codecPacked && uint64(len(p)) < uint64(PackedLen(n, width)) {
		return nil, errCorrupt
	}
	if codec != codecPacked && uint64(n) > uint64(len(p))*chunkSize {
		return nil, errCorrupt
	}
	if (codec == codecGrouped || codec == codecCells) && width == 0 {
		return nil, errCorrupt
	}
	c := &Codes{Tau: tau}

	nexc, err := uvarint(&p)
	if err != nil || nexc > uint64(n) || nexc > uint64(len(p))/5 {
		return nil, errCorrupt
	}
	c.Exceptions = make([]Exception, nexc)
	prev := -1
	for i := range c.Exceptions {
		gap, err := uvarint(&p)
		if err != nil || gap >= uint64(n-prev-1) || len(p) < 4 {
			return nil, errCorrupt
		}
		prev += int(gap) + 1
		c.Exceptions[i] = Exception{uint32(prev), binary.LittleEndian.Uint32(p)}
		p = p[4:]
	}
	nesc, err := uvarint(&p)
	if err != nil || nesc > uint64(n) || nesc > uint64(len(p))/2 {
		return nil, errCorrupt
	}
	escIdx := make([]int, nesc)
	escVal := make([]uint64, nesc)
	prev = -1
	for i := range escIdx {
		gap, err := uvarint(&p)
		if err != nil || gap >= uint64(n-prev-1) {
			return nil, errCorrupt
		}
		prev += int(gap) + 1
		escIdx[i] = prev
		if escVal[i], err = uvarint(&p); err != nil {
			return nil, errCorrupt
		}
	}

	if cap(buf) >= n {
		c.Q = buf[:n]
	} else {
		c.Q = make([]int64, n)
	}
	switch codec {
	case codecPacked:
		if len(p) != PackedLen(n, width) {
			return nil, errCorrupt
		}
		unpackZigzag(c.Q, p, width)
	case codecPlanes:
		// c.Q holds the zig-zagged codes until the last plane
		planes := (width + 7) / 8
		if planes == 0 {
			clear(c.Q)
		}
		pb := takePlanes(n)
		defer planeBufs.Put(pb)
		for k := 0; k < planes; k++ {
			var plane []byte
			if plane, p, err = readStreamInto(p, n, *pb); err != nil {
				return nil, err
			}
			plane = plane[:n]
			sh := 8 * k
			switch {
			case k == 0 && planes == 1:
				for i, v := range plane {
					c.Q[i] = unzigzag(uint64(v))
				}
			case k == 0:
				for i, v := range plane {
					c.Q[i] = int64(v)
				}
			case k == planes-1:
				for i, v := range plane {
					c.Q[i] = unzigzag(uint64(c.Q[i]) | uint64(v)<<sh)
				}
			default:
				for i, v := range plane {
					c.Q[i] |= int64(v) << sh
				}
			}
		}
		if len(p) != 0 {
			return nil, errCorrupt
		}
	case codecGrouped:
		if err := decodeGrouped(c.Q, p, width); err != nil {
			return nil, err
		}
	case codecCells:
		if err := decodeCells(c.Q, p, width); err != nil {
			return nil, err
		}
	}
	for i, idx := range escIdx {
		c.Q[idx] = unzigzag(escVal[i])
	}
	return c, nil
}

// unpackZigzag reads len(dst) values of width bits in the PackBits layout from b
// (at least PackedLen(len(dst), width) bytes) and stores them unzig-zagged.
func unpackZigzag(dst []int64, b []byte, width int) {
	if width == 0 {
		clear(dst)
		return
	}
	if width > 56 {
		r := &bitReader{in: b}
		for i := range dst {
			lo := r.get(32)
			dst[i] = unzigzag(lo | r.get(width-32)<<32)
		}
		return
	}
	// a value starts at bit offset <= 7 of its first byte, so one 8-byte load
	// holds it whole; the last few values read the bytes one at a time
	mask := uint64(1)<<width - 1
	i, bit := 0, uint64(0)
	for ; i < len(dst) && bit/8+8 <= uint64(len(b)); i, bit = i+1, bit+uint64(width) {
		dst[i] = unzigzag(binary.LittleEndian.Uint64(b[bit/8:]) >> (bit % 8) & mask)
	}
	for ; i < len(dst); i, bit = i+1, bit+uint64(width) {
		var win uint64
		for k, o := uint64(0), bit/8; k < 8 && o+k < uint64(len(b)); k++ {
			win |= uint64(b[o+k]) << (8 * k)
		}
		dst[i] = unzigzag(win >> (bit % 8) & mask)
	}
}

func uvarint(p *[]byte) (uint64, error) {
	v, k := binary.Uvarint(*p)
	if k <= 0 {
		return 0, errCorrupt
	}
	*p = (*p)[k:]
	return v, nil
}
