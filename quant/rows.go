package quant

// Row groups: the codes of a matrix whose rows differ in spread cost less when rows
// of similar spread are entropy coded together, each group with its own tables.
// Token embeddings and output heads are such matrices: in a fine-tune the rows of
// tokens its data uses move far more than the rest (text-medium at tau 1e-3: 14%
// smaller token-embedding deltas, 6% smaller head deltas).
//
// A grouped blob (codec 2; part of the format, do not change) is a planes blob
// (codec 1) with the rows' groups between the escapes and the payload:
//
//	+----------------+-----------------+-----------+------------------------------+
//	| first uvarint  | rowLen uvarint  | groups u8 | group of each row: a stream  |
//	+----------------+-----------------+-----------+------------------------------+
//	| for each group g with rows: ceil(width/8) plane streams of the codes of    |
//	| g's rows in order (plane k = byte k of every zig-zagged code)               |
//	+------------------------------------------------------------------------------+
//
// The codes are cut into rows of rowLen codes, the first one only first long
// (1..rowLen: a chunk of a tensor may start inside a row) and the last one cut
// short by the count. Streams are those of entropy.go. groups is 2 to
// maxGroups.

import (
	"encoding/binary"
	"math"
	"slices"
)

const (
	codecGrouped = 2
	maxGroups    = 8

	// Smaller inputs are not worth a second encoding (tables and the groups
	// of the rows would eat the gain).
	minGroupedElems = 4096
	minGroupRows    = 16
	minRowLen       = 16 // shorter rows (the 3 x 3 of a convolution) say little
	// streamOverhead estimates the bytes a plane stream costs beyond its
	// entropy (kind, length, Huffman or FSE table).
	streamOverhead = 60
)

// EncodeRows is Encode for the codes of a matrix kept row by row: rows of rowLen
// codes, the first one only first long (1 <= first <= rowLen). Where the rows
// differ enough in spread that coding them in groups is estimated to save more
// than 0.5%, it also builds the grouped blob and keeps the smaller of the two.
func EncodeRows(c *Codes, first, rowLen int) ([]byte, error) {
	plain, planeWidth, err := encode(c)
	n := len(c.Q)
	if err != nil || first < 1 || first > rowLen || rowLen < minRowLen || n < minGroupedElems || planeWidth == 0 {
		return plain, err
	}
	starts := rowStarts(n, first, rowLen)
	if len(starts) < minGroupRows {
		return plain, nil
	}
	groups, row := chooseGroups(c, starts, planeWidth)
	if groups < 2 {
		return plain, nil
	}
	grouped, err := encodeGrouped(c, starts, row, groups, first, rowLen, planeWidth)
	if err != nil {
		return nil, err
	}
	if len(grouped) < len(plain) {
		return grouped, nil
	}
	return plain, nil
}

// rowStarts returns the index of each row's first code.
func rowStarts(n, first, rowLen int) []int {
	if n == 0 {
		return nil
	}
	starts := []int{0}
	for s := first; s < n; s += rowLen {
		starts = append(starts, s)
	}
	return starts
}

// rowEnd returns the end of row r.
func rowEnd(starts []int, r, n int) int {
	if r+1 < len(starts) {
		return starts[r+1]
	}
	return n
}

// planesWidth is the width of the byte-plane form: only outliers rarer than 1 in
// 4096 escaped, rounded up to whole bytes.
func planesWidth(hist [65]int, n int) int {
	w, over := 64, 0
	for l := 64; l > 0; l-- {
		if over+hist[l] > n/4096 {
			break
		}
		over += hist[l]
		w = l - 1
	}
	return (w + 7) / 8 * 8
}

// chooseGroups sorts the rows into maxGroups classes by their mean zig-zagged
// code (classes of equal row counts), estimates the coded size with 1, 2, 4 and 8
// groups from the byte planes' order-0 entropies, and returns the best number of
// groups with each row's group. It returns 1 when grouping is not estimated to
// save 0.5%. Long inputs are estimated on every stride-th code, which keeps the
// estimate's cost at a few percent of an import.
func chooseGroups(c *Codes, starts []int, planeWidth int) (int, []uint8) {
	n, nrows := len(c.Q), len(starts)
	stride := 1 + n/(1<<16)
	mask := widthMask(planeWidth)
	mean := make([]float64, nrows)
	for r, s := range starts {
		e := rowEnd(starts, r, n)
		var sum, cnt uint64
		for i := s; i < e; i += stride {
			sum += min(zigzag(c.Q[i]), 1<<20)
			cnt++
		}
		mean[r] = float64(sum) / float64(cnt)
	}
	order := make([]int, nrows)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case mean[a] < mean[b]:
			return -1
		case mean[a] > mean[b]:
			return 1
		}
		return 0
	})
	// octile of each row; coarser groupings merge neighbouring octiles
	oct := make([]uint8, nrows)
	for rank, r := range order {
		oct[r] = uint8(rank * maxGroups / nrows)
	}
	planes := (planeWidth + 7) / 8
	hist := make([][256]int, maxGroups*planes)
	for r, s := range starts {
		h := hist[int(oct[r])*planes:]
		e := rowEnd(starts, r, n)
		for i := s; i < e; i += stride {
			u := slotValue(c.Q[i], mask)
			for k := range planes {
				h[k][byte(u>>(8*k))]++
			}
		}
	}
	best, bestCost := 1, 0.0
	for groups := 1; groups <= maxGroups; groups *= 2 {
		per := maxGroups / groups
		cost := 0.0
		for g := range groups {
			for k := range planes {
				var merged [256]int
				for o := g * per; o < (g+1)*per; o++ {
					for v, cnt := range hist[o*planes+k] {
						merged[v] += cnt
					}
				}
				if b, m := entropyBits(merged[:]); m > 0 {
					cost += b*float64(stride)/8 + streamOverhead
				}
			}
		}
		if groups > 1 {
			cost += float64(nrows)*math.Log2(float64(groups))/8 + streamOverhead
		}
		if groups == 1 {
			bestCost = cost
			continue
		}
		if cost < bestCost*0.995 {
			best, bestCost = groups, cost
		}
	}
	if best == 1 {
		return 1, nil
	}
	row := make([]uint8, nrows)
	for r, o := range oct {
		row[r] = o / uint8(maxGroups/best)
	}
	return best, row
}

// entropyBits returns the order-0 entropy in bits of the symbols counted in h,
// with the Miller-Madow correction ((used symbols - 1) / 2 nats), and their
// number. Without the correction a histogram of few samples looks cheaper than
// it is, and splitting rows into groups always looks like a gain.
func entropyBits(h []int) (float64, int) {
	m, used := 0, 0
	for _, c := range h {
		m += c
		if c > 0 {
			used++
		}
	}
	if m == 0 {
		return 0, 0
	}
	bits := float64(used-1) / (2 * math.Ln2)
	for _, c := range h {
		if c > 0 {
			bits -= float64(c) * math.Log2(float64(c)/float64(m))
		}
	}
	return bits, m
}

// encodeGrouped writes the grouped blob of c: row r in group row[r].
func encodeGrouped(c *Codes, starts []int, row []uint8, groups, first, rowLen, width int) ([]byte, error) {
	out, err := appendHeader(c, codecGrouped, width)
	if err != nil {
		return nil, err
	}
	out = binary.AppendUvarint(out, uint64(first))
	out = binary.AppendUvarint(out, uint64(rowLen))
	out = append(out, byte(groups))
	out = appendStream(out, row)
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
				out = appendStream(out, plane)
			}
		}
	}
	return out, nil
}

// decodeGrouped reads the grouped payload p (everything after the escapes) of
// len(q) codes of width bits into q.
func decodeGrouped(q []int64, p []byte, width int) error {
	n := len(q)
	first, err := uvarint(&p)
	if err != nil {
		return err
	}
	rowLen, err := uvarint(&p)
	if err != nil || first < 1 || first > rowLen || rowLen > uint64(max(n, 1)) || len(p) < 1 {
		return errCorrupt
	}
	groups := int(p[0])
	p = p[1:]
	if groups < 2 || groups > maxGroups {
		return errCorrupt
	}
	starts := rowStarts(n, int(first), int(rowLen))
	var row []byte
	if row, p, err = readStream(p, len(starts)); err != nil {
		return err
	}
	row = row[:len(starts)]
	counts := make([]int, groups)
	for r, g := range row {
		if int(g) >= groups {
			return errCorrupt
		}
		counts[g] += rowEnd(starts, r, n) - starts[r]
	}
	clear(q)
	for g := range groups {
		if counts[g] == 0 {
			continue
		}
		for k := 0; k < (width+7)/8; k++ {
			var plane []byte
			if plane, p, err = readStream(p, counts[g]); err != nil {
				return err
			}
			plane = plane[:counts[g]]
			sh, i := 8*k, 0
			for r, s := range starts {
				if int(row[r]) != g {
					continue
				}
				dst := q[s:rowEnd(starts, r, n)]
				for j, v := range plane[i : i+len(dst)] {
					dst[j] |= int64(v) << sh
				}
				i += len(dst)
			}
		}
	}
	if len(p) != 0 {
		return errCorrupt
	}
	for i, u := range q {
		q[i] = unzigzag(uint64(u))
	}
	return nil
}
