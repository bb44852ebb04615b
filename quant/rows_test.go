package quant

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// encodeGrouped writes the grouped blob (codec 2, which stores written before
// codec 3 hold) of c: row r in group row[r]. Only tests write it now.
func encodeGrouped(c *Codes, starts []int, row []uint8, groups, first, rowLen, width int) ([]byte, error) {
	out, err := appendHeader(c, codecGrouped, width)
	if err != nil {
		return nil, err
	}
	out = binary.AppendUvarint(out, uint64(first))
	out = binary.AppendUvarint(out, uint64(rowLen))
	out = append(out, byte(groups))
	out = appendStream(out, row, false)
	n := len(c.Q)
	mask := widthMask(width)
	plane := make([]byte, 0, n)
	for g := range groups {
		for k := 0; k < (width+7)/8; k++ {
			plane = plane[:0]
			for r, s := range starts {
				if int(row[r]) != g {
					continue
				}
				for _, q := range c.Q[s:rowEnd(starts, r, n)] {
					plane = append(plane, byte(slotValue(q, mask)>>(8*k)))
				}
			}
			if len(plane) > 0 {
				out = appendStream(out, plane, false)
			}
		}
	}
	return out, nil
}

// groupedBlob returns a codec 2 blob of q (rows of rowLen, the first one first
// long), odd rows in group 1, and the blob's width.
func groupedBlob(c *Codes, first, rowLen int) []byte {
	starts := rowStarts(len(c.Q), first, rowLen)
	row := make([]uint8, len(starts))
	for r := range row {
		row[r] = uint8(r % 2)
	}
	var hist [65]int
	for _, q := range c.Q {
		hist[len64(zigzag(q))]++
	}
	b, err := encodeGrouped(c, starts, row, 2, first, rowLen, max(planesWidth(hist, len(c.Q)), 8))
	if err != nil {
		panic(err)
	}
	return b
}

func len64(u uint64) int {
	n := 0
	for ; u != 0; u >>= 1 {
		n++
	}
	return n
}

// TestDecodeGroupedLegacy: codec 2 blobs, which EncodeRows no longer writes, still
// decode, and corrupt ones are refused.
func TestDecodeGroupedLegacy(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	for _, tc := range [][3]int{{192, 192, 64}, {77, 192, 40}, {1, 100, 30}} {
		q := spreadRows(r, tc[0], tc[1], tc[2], false)
		q[3] = 1 << 40 // an escape
		c := &Codes{Tau: 1e-3, Q: q, Exceptions: []Exception{{5, 0x7fc00000}}}
		c.Q[5] = 0
		b := groupedBlob(c, tc[0], tc[1])
		d, err := Decode(b, len(q))
		if err != nil {
			t.Fatalf("%v: %v", tc, err)
		}
		if !slices.Equal(d.Q, c.Q) || !slices.Equal(d.Exceptions, c.Exceptions) {
			t.Fatalf("%v: round trip differs", tc)
		}
	}
	q := spreadRows(r, 192, 192, 64, false)
	b := groupedBlob(&Codes{Tau: 1e-3, Q: q}, 192, 192)
	rejectsCutAndTrailing(t, b, len(q))
	// the grouped fields follow the empty exception and escape lists: 4 header
	// bytes, the count (2-byte uvarint), tau (8), two zero counts, then first and
	// rowLen (192: 2-byte uvarints) and the group count
	head := 4 + 2 + 8 + 2
	for name, mut := range map[string]func([]byte){
		"first 0":        func(b []byte) { b[head], b[head+1] = 0x80, 0 },
		"first > rowLen": func(b []byte) { b[head] = 0xc1 },
		"one group":      func(b []byte) { b[head+4] = 1 },
		"too many":       func(b []byte) { b[head+4] = maxGroups + 1 },
		"width 0":        func(b []byte) { b[2] = 0 },
	} {
		m := slices.Clone(b)
		mut(m)
		if _, err := Decode(m, len(q)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
