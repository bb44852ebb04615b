package quant

// Cell classes: the codes of a matrix cost less when codes of similar spread are
// entropy coded together, each class with its own tables. The spread of a code
// depends on its row (a token the fine-tune's data uses moves more) and on its
// column (a feature of larger scale gets larger updates: an output head's deltas
// by the final norm's feature, text-tiny ft1 at tau 1e-3: 16% smaller). So rows
// are sorted into octiles of their mean code, columns too, and each of the 8 x 8
// cells they form belongs to one of up to 16 classes; rows alone or columns alone
// are the cases where the other side has one group.
//
// A cells blob (codec 3; part of the format, do not change) is a planes blob
// (codec 1) with the classes between the escapes and the payload:
//
//	+----------------+----------------+-----------------+-----------------+------------+
//	| first uvarint  | rowLen uvarint | rowGroups u8    | colGroups u8    | classes u8 |
//	+----------------+----------------+-----------------+-----------------+------------+
//	| rowGroups > 1: group of each row, a stream (entropy.go) of one byte a row       |
//	| colGroups > 1: group of each column, a stream of rowLen bytes                    |
//	| class of each cell: rowGroups x colGroups bytes, row group major                 |
//	+----------------------------------------------------------------------------------+
//	| for each class with codes: ceil(width/8) plane streams of the codes of the       |
//	| class in element order (plane k = byte k of every zig-zagged code)               |
//	+----------------------------------------------------------------------------------+
//
// The codes are cut into rows of rowLen codes, the first one only first long
// (1..rowLen: a chunk of a tensor may start inside a row, at column rowLen-first)
// and the last one cut short by the count. rowGroups and colGroups are 1 to
// cellSide, classes 2 to maxClasses.
//
// Codec 2 (rows.go), rows alone in up to 8 groups, is still read; EncodeRows
// writes codec 3, which covers it.

import (
	"encoding/binary"
	"math"
	"slices"
)

const (
	codecCells = 3
	cellSide   = 8  // row octiles and column octiles
	maxClasses = 16 // classes of cells

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
// codes, the first one only first long (1 <= first <= rowLen). Where the rows or
// columns differ enough in spread that coding the codes in classes (see above)
// is estimated to save more than 0.5%, it builds the cells blob, and the plain
// one only if the cells blob misses the estimate's plain size: the estimate errs
// on the side of the plain form (text-medium at tau 1e-4 and 1e-3: in all 52
// matrices it chose classes for, the cells blob came out 0.1-3% further under the
// plain blob than estimated), so the plain blob is seldom built for nothing.
func EncodeRows(c *Codes, first, rowLen int) ([]byte, error) {
	if err := checkTau(c.Tau); err != nil {
		return nil, err
	}
	width, planeWidth := widths(c)
	n := len(c.Q)
	if first < 1 || first > rowLen || rowLen < minRowLen || n < minGroupedElems || planeWidth == 0 {
		return encodeWidths(c, width, planeWidth)
	}
	starts := rowStarts(n, first, rowLen)
	if len(starts) < minGroupRows {
		return encodeWidths(c, width, planeWidth)
	}
	cl, plainEst := chooseClasses(c, starts, first, rowLen, planeWidth)
	if cl == nil {
		return encodeWidths(c, width, planeWidth)
	}
	cells, err := encodeCells(c, starts, first, rowLen, planeWidth, cl)
	if err != nil {
		return nil, err
	}
	if float64(len(cells)) <= plainEst {
		return cells, nil
	}
	plain, err := encodeWidths(c, width, planeWidth)
	if err != nil || len(plain) <= len(cells) {
		return plain, err
	}
	return cells, nil
}

// classing is a cells blob's layout: the group of each row and column, and the
// class of each cell.
type classing struct {
	rowGroups, colGroups, classes int
	row                           []uint8 // group of each row (nil: one group)
	col                           []uint8 // group of each column (nil: one group)
	cell                          []uint8 // class of cell (rg, cg) at rg*colGroups+cg
}

// rowClasses returns the classes of the cells of row r, by column group.
func (cl *classing) rowClasses(r int) []uint8 {
	rg := 0
	if cl.row != nil {
		rg = int(cl.row[r])
	}
	return cl.cell[rg*cl.colGroups : (rg+1)*cl.colGroups]
}

// classOf returns the class of each of the n codes, and how many codes each
// class has.
func (cl *classing) classOf(starts []int, first, rowLen, n int) ([]uint8, []int) {
	class := make([]uint8, n)
	counts := make([]int, cl.classes)
	for r, s := range starts {
		cls := cl.rowClasses(r)
		end := rowEnd(starts, r, n)
		if cl.col == nil {
			k := cls[0]
			for i := s; i < end; i++ {
				class[i] = k
			}
			counts[k] += end - s
			continue
		}
		col := cl.col[s-rowOffset(starts, r, first, rowLen):]
		for i := s; i < end; i++ {
			k := cls[col[i-s]]
			class[i] = k
			counts[k]++
		}
	}
	return class, counts
}

// octiles returns the octile (0..cellSide-1) of each of the non-negative values
// v by rank, ties kept in index order.
func octiles(v []float64) []uint8 {
	// sort (value as float32, index) pairs packed in one word: float32 keeps
	// the order of non-negative values as its bits do
	keys := make([]uint64, len(v))
	for i, x := range v {
		keys[i] = uint64(math.Float32bits(float32(x)))<<32 | uint64(i)
	}
	slices.Sort(keys)
	oct := make([]uint8, len(v))
	for rank, k := range keys {
		oct[uint32(k)] = uint8(rank * cellSide / len(v))
	}
	return oct
}

// sampleStride returns the distance between the codes an estimate samples: about
// 1 in n/16384, and prime to rowLen, so that the samples fall on every column
// (a stride that divides rowLen would see the same columns in every row).
func sampleStride(n, rowLen int) int {
	s := 1 + n/(1<<14)
	for gcd(s, rowLen) != 1 {
		s++
	}
	return s
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// firstSample returns the first index at or after s that is phase modulo stride.
func firstSample(s, stride, phase int) int { return (s-phase+stride-1)/stride*stride + phase }

// rowOffset returns the offset of row r: code i of the row is in column i-off.
func rowOffset(starts []int, r, first, rowLen int) int {
	if r == 0 {
		return -(rowLen - first)
	}
	return starts[r]
}

// chooseClasses estimates, from the byte planes' order-0 entropies of sampled
// codes in each cell, the coded size of the codes in 2, 4 or 8 groups of rows, in
// 2, 4 or 8 groups of columns, and in 2 to 16 classes of cells sorted by their
// mean code, and returns the cheapest layout, or nil when none is estimated to
// save 0.5% over one class, and the estimated size of the plain blob. Long inputs
// are estimated on every stride-th code, which keeps the estimate's cost at a few
// percent of an import.
func chooseClasses(c *Codes, starts []int, first, rowLen, planeWidth int) (*classing, float64) {
	n, nrows := len(c.Q), len(starts)
	stride := sampleStride(n, rowLen)
	mask := widthMask(planeWidth)
	rowMean := make([]float64, nrows)
	colMean := make([]float64, rowLen)
	colCnt := make([]float64, rowLen)
	for r, s := range starts {
		off := rowOffset(starts, r, first, rowLen)
		var sum, cnt float64
		for i := firstSample(s, stride, 0); i < rowEnd(starts, r, n); i += stride {
			u := float64(min(zigzag(c.Q[i]), 1<<20))
			sum += u
			cnt++
			colMean[i-off] += u
			colCnt[i-off]++
		}
		rowMean[r] = sum / max(cnt, 1)
	}
	for j := range colMean {
		colMean[j] /= max(colCnt[j], 1)
	}
	all := &classing{rowGroups: cellSide, colGroups: cellSide, row: octiles(rowMean), col: octiles(colMean)}

	// Each cell's code sum, on the same samples, orders the cells into classes;
	// the histograms of their planes that price the classings are taken on
	// other samples (half a stride on), so that classes fitted to one sample's
	// noise do not look cheaper than they are.
	const cells = cellSide * cellSide
	var sum, cnt [cells]float64
	planes := (planeWidth + 7) / 8
	hist := make([][256]int32, cells*planes)
	top := make([]int, planes) // largest byte seen in each plane
	for r, s := range starts {
		rg := int(all.row[r]) * cellSide
		off := rowOffset(starts, r, first, rowLen)
		for i := firstSample(s, stride, 0); i < rowEnd(starts, r, n); i += stride {
			k := rg + int(all.col[i-off])
			sum[k] += float64(min(zigzag(c.Q[i]), 1<<20))
			cnt[k]++
		}
		for i := firstSample(s, stride, stride/2); i < rowEnd(starts, r, n); i += stride {
			u := slotValue(c.Q[i], mask)
			h := hist[(rg+int(all.col[i-off]))*planes:]
			for p := range planes {
				b := byte(u >> (8 * p))
				h[p][b]++
				top[p] = max(top[p], int(b))
			}
		}
	}

	// The candidates: a class for each cell.
	type candidate struct {
		rows, cols bool
		classes    int
		cell       [cells]uint8
	}
	var cands []candidate
	for g := 2; g <= cellSide; g *= 2 {
		r, cl := candidate{rows: true, classes: g}, candidate{cols: true, classes: g}
		for k := range cells {
			r.cell[k] = uint8(k / cellSide * g / cellSide)
			cl.cell[k] = uint8(k % cellSide * g / cellSide)
		}
		cands = append(cands, r, cl)
	}
	order := make([]int, cells)
	for i := range order {
		order[i] = i
	}
	mean := func(k int) float64 { return sum[k] / max(cnt[k], 1) }
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case mean(a) < mean(b):
			return -1
		case mean(a) > mean(b):
			return 1
		}
		return 0
	})
	var total float64
	for _, v := range cnt {
		total += v
	}
	for k := 2; k <= maxClasses; k *= 2 {
		cand := candidate{rows: true, cols: true, classes: k}
		var acc float64
		for _, cell := range order {
			cand.cell[cell] = uint8(min(int(acc*float64(k)/total), k-1))
			acc += cnt[cell]
		}
		cands = append(cands, cand)
	}

	// The histograms of each row octile and of each column octile, summed
	// once: a classing of rows alone or columns alone merges 8 of them, not 64.
	rowHist, colHist := make([][256]int32, cellSide*planes), make([][256]int32, cellSide*planes)
	for k := range cells {
		r, cg := rowHist[k/cellSide*planes:], colHist[k%cellSide*planes:]
		for p := range planes {
			for v, cnt := range hist[k*planes+p][:top[p]+1] {
				r[p][v] += cnt
				cg[p][v] += cnt
			}
		}
	}
	// cost in bytes of the codes in classes, unit u (a row octile, a column
	// octile or a cell, whose histograms are units) in class classOf(u)
	cost := func(classes int, units [][256]int32, classOf func(u int) int) float64 {
		var bytes float64
		merged := make([][256]int32, classes*planes)
		for u := range len(units) / planes {
			m := merged[classOf(u)*planes:]
			for p := range planes {
				for v, cnt := range units[u*planes+p][:top[p]+1] {
					m[p][v] += cnt
				}
			}
		}
		counts := make([]int, 256)
		for j := range merged {
			t := top[j%planes]
			for v, cnt := range merged[j][:t+1] {
				counts[v] = int(cnt)
			}
			if b, used := entropyBits(counts[:t+1]); used > 0 {
				bytes += b*float64(stride)/8 + streamOverhead
			}
		}
		return bytes
	}
	plain := cost(1, rowHist, func(int) int { return 0 })
	best, bestCost := -1, plain*0.995
	for i := range cands {
		cd := &cands[i]
		var cc float64
		switch {
		case cd.rows && cd.cols:
			cc = cost(cd.classes, hist, func(u int) int { return int(cd.cell[u]) })
		case cd.rows:
			cc = cost(cd.classes, rowHist, func(u int) int { return int(cd.cell[u*cellSide]) })
		default:
			cc = cost(cd.classes, colHist, func(u int) int { return int(cd.cell[u]) })
		}
		if cd.rows {
			cc += float64(nrows)*3/8 + streamOverhead
		}
		if cd.cols {
			cc += float64(rowLen)*3/8 + streamOverhead
		}
		if cd.rows && cd.cols {
			cc += cells
		}
		if cc < bestCost {
			best, bestCost = i, cc
		}
	}
	if best < 0 {
		return nil, plain
	}
	cd := &cands[best]
	cl := &classing{rowGroups: 1, colGroups: 1, classes: cd.classes}
	if cd.rows {
		cl.rowGroups, cl.row = cellSide, all.row
	}
	if cd.cols {
		cl.colGroups, cl.col = cellSide, all.col
	}
	cl.cell = make([]uint8, cl.rowGroups*cl.colGroups)
	for rg := range cl.rowGroups {
		for cg := range cl.colGroups {
			// a side with one group reads its cells at group 0
			cl.cell[rg*cl.colGroups+cg] = cd.cell[rg*cellSide+cg]
		}
	}
	return cl, plain
}

// encodeCells writes the cells blob of c laid out by cl.
func encodeCells(c *Codes, starts []int, first, rowLen, width int, cl *classing) ([]byte, error) {
	out, err := appendHeader(c, codecCells, width)
	if err != nil {
		return nil, err
	}
	out = binary.AppendUvarint(out, uint64(first))
	out = binary.AppendUvarint(out, uint64(rowLen))
	out = append(out, byte(cl.rowGroups), byte(cl.colGroups), byte(cl.classes))
	if cl.row != nil {
		out = appendStream(out, cl.row, false)
	}
	if cl.col != nil {
		out = appendStream(out, cl.col, false)
	}
	out = append(out, cl.cell...)

	// sort the slot values by class (a counting sort, stable)
	n := len(c.Q)
	mask := widthMask(width)
	class, counts := cl.classOf(starts, first, rowLen, n)
	offs := make([]int, cl.classes+1)
	for k, cnt := range counts {
		offs[k+1] = offs[k] + cnt
	}
	sorted := make([]uint64, n)
	next := slices.Clone(offs[:cl.classes])
	for i, k := range class {
		sorted[next[k]] = slotValue(c.Q[i], mask)
		next[k]++
	}
	plane := make([]byte, 0, n)
	for k := range cl.classes {
		vals := sorted[offs[k]:offs[k+1]]
		if len(vals) == 0 {
			continue
		}
		for p := 0; p < (width+7)/8; p++ {
			plane = plane[:0]
			for _, u := range vals {
				plane = append(plane, byte(u>>(8*p)))
			}
			out = appendStream(out, plane, false)
		}
	}
	return out, nil
}

// decodeCells reads the cells payload p (everything after the escapes) of len(q)
// codes of width bits into q.
func decodeCells(q []int64, p []byte, width int) error {
	n := len(q)
	first, rowLen, err := readRows(&p, n)
	if err != nil || len(p) < 3 {
		return errCorrupt
	}
	cl := &classing{rowGroups: int(p[0]), colGroups: int(p[1]), classes: int(p[2])}
	p = p[3:]
	if cl.rowGroups < 1 || cl.rowGroups > cellSide || cl.colGroups < 1 || cl.colGroups > cellSide ||
		cl.classes < 2 || cl.classes > maxClasses {
		return errCorrupt
	}
	starts := rowStarts(n, first, rowLen)
	if cl.rowGroups > 1 {
		if cl.row, err = readGroups(&p, len(starts), cl.rowGroups); err != nil {
			return err
		}
	}
	if cl.colGroups > 1 {
		if cl.col, err = readGroups(&p, rowLen, cl.colGroups); err != nil {
			return err
		}
	}
	if len(p) < cl.rowGroups*cl.colGroups {
		return errCorrupt
	}
	cl.cell, p = p[:cl.rowGroups*cl.colGroups], p[cl.rowGroups*cl.colGroups:]
	for _, k := range cl.cell {
		if int(k) >= cl.classes {
			return errCorrupt
		}
	}

	return decodeClasses(q, p, width, starts, first, rowLen, cl)
}

// readGroups reads a stream of count groups, each below limit, from *p.
func readGroups(p *[]byte, count, limit int) ([]uint8, error) {
	g, rest, err := readStream(*p, count)
	if err != nil {
		return nil, err
	}
	*p = rest
	g = g[:count]
	for _, v := range g {
		if int(v) >= limit {
			return nil, errCorrupt
		}
	}
	return g, nil
}

// decodeClasses reads, for each class of cl that has codes, ceil(width/8) plane
// streams of its codes in element order from p (which they must fill exactly),
// and puts the codes in their places in q.
func decodeClasses(q []int64, p []byte, width int, starts []int, first, rowLen int, cl *classing) error {
	n := len(q)
	class, counts := cl.classOf(starts, first, rowLen, n)
	planes := (width + 7) / 8
	streams := make([][]byte, cl.classes*planes)
	pb := takePlanes(n * planes) // room for every stream, one after another
	defer planeBufs.Put(pb)
	room := (*pb)[:n*planes]
	for k, cnt := range counts {
		if cnt == 0 {
			continue
		}
		for pl := range planes {
			s, rest, err := readStreamInto(p, cnt, room[:cnt:cnt])
			room = room[cnt:]
			if err != nil {
				return err
			}
			streams[k*planes+pl], p = s[:cnt], rest
		}
	}
	if len(p) != 0 {
		return errCorrupt
	}
	next := make([]int, cl.classes)
	if planes == 1 {
		for i, k := range class {
			q[i] = unzigzag(uint64(streams[k][next[k]]))
			next[k]++
		}
		return nil
	}
	for i, k := range class {
		j := next[k]
		next[k]++
		var u uint64
		for pl, s := range streams[int(k)*planes : int(k+1)*planes] {
			u |= uint64(s[j]) << (8 * pl)
		}
		q[i] = unzigzag(u)
	}
	return nil
}
