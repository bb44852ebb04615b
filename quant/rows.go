package quant

// Row groups, and the row helpers cells.go shares. Stores written before codec 3
// hold matrices whose rows of similar spread were coded together (text-medium at
// tau 1e-3: 14% smaller token-embedding deltas, 6% smaller head deltas); codec 3
// (cells.go) does that and more, so this codec is only read now.
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

import "math"

const (
	codecGrouped = 2
	maxGroups    = 8
)

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

// entropyBits returns the order-0 entropy in bits of the symbols counted in h,
// with the Miller-Madow correction ((used symbols - 1) / 2 nats), and their
// number. Without the correction a histogram of few samples looks cheaper than
// it is, and splitting rows into groups always looks like a gain.
func entropyBits(h []int) (float64, int) {
	m, used := 0, 0
	var sum float64 // of c log2 c
	for _, c := range h {
		if c > 0 {
			m += c
			used++
			sum += xlog2x(c)
		}
	}
	if m == 0 {
		return 0, 0
	}
	// -sum c log2(c/m) = m log2 m - sum c log2 c
	return xlog2x(m) - sum + float64(used-1)/(2*math.Ln2), m
}

// xlog2xTable holds x log2 x for x below its length: the counts of a sampled
// histogram mostly are, and chooseClasses prices thousands of them per matrix.
var xlog2xTable = func() []float64 {
	t := make([]float64, 4096)
	for x := 2; x < len(t); x++ {
		t[x] = float64(x) * math.Log2(float64(x))
	}
	return t
}()

func xlog2x(x int) float64 {
	if x < len(xlog2xTable) {
		return xlog2xTable[x]
	}
	return float64(x) * math.Log2(float64(x))
}

// readRows reads a grouped or cells payload's first and rowLen (each a uvarint)
// from *p, for n codes.
func readRows(p *[]byte, n int) (first, rowLen int, err error) {
	f, err := uvarint(p)
	if err != nil {
		return 0, 0, err
	}
	l, err := uvarint(p)
	if err != nil || f < 1 || f > l || l > uint64(max(n, 1)) {
		return 0, 0, errCorrupt
	}
	return int(f), int(l), nil
}

// decodeGrouped reads the grouped payload p (everything after the escapes) of
// len(q) codes of width bits into q.
func decodeGrouped(q []int64, p []byte, width int) error {
	n := len(q)
	first, rowLen, err := readRows(&p, n)
	if err != nil || len(p) < 1 {
		return errCorrupt
	}
	groups := int(p[0])
	p = p[1:]
	if groups < 2 || groups > maxGroups {
		return errCorrupt
	}
	starts := rowStarts(n, first, rowLen)
	row, err := readGroups(&p, len(starts), groups)
	if err != nil {
		return err
	}
	// row groups are cells of one column group, a class each
	cl := &classing{rowGroups: groups, colGroups: 1, classes: groups, row: row, cell: make([]uint8, groups)}
	for g := range cl.cell {
		cl.cell[g] = uint8(g)
	}
	return decodeClasses(q, p, width, starts, first, rowLen, cl)
}
