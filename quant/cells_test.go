package quant

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// spreadRows returns codes of a rows x rowLen matrix (the first row only first
// long) whose rows have Laplace-like codes of widely different spreads, as the
// deltas of a fine-tune's token embedding do, or all one spread when same.
func spreadRows(r *rand.Rand, first, rowLen, rows int, same bool) []int64 {
	return spreadCells(r, first, rowLen, rows, func(row, col int, rowScale, colScale float64) float64 {
		if same {
			return 8
		}
		return rowScale
	})
}

// spreadCells returns codes of a rows x rowLen matrix (the first row only first
// long, at the end of its row) whose element (row, col) is Laplace-like with the
// spread scale(row, col, rowScale, colScale); each row and each column draws a
// scale between 0.3 and 40, most of them small.
func spreadCells(r *rand.Rand, first, rowLen, rows int, scale func(row, col int, rowScale, colScale float64) float64) []int64 {
	draw := func() float64 { return 0.3 + 40*r.Float64()*r.Float64()*r.Float64() }
	cols := make([]float64, rowLen)
	for j := range cols {
		cols[j] = draw()
	}
	var q []int64
	for i := range rows {
		rs := draw()
		j := 0
		if i == 0 {
			j = rowLen - first
		}
		for ; j < rowLen; j++ {
			s := scale(i, j, rs, cols[j])
			q = append(q, int64(r.ExpFloat64()*s)*int64(1-2*r.IntN(2)))
		}
	}
	return q
}

// cellsLayout returns a cells blob's row groups, column groups and classes.
func cellsLayout(t *testing.T, b []byte, n int) (rowGroups, colGroups, classes int) {
	t.Helper()
	if b[1] != codecCells {
		t.Fatalf("codec %d, want cells", b[1])
	}
	c, err := Decode(b, n)
	if err != nil {
		t.Fatal(err)
	}
	// the layout follows the header, the exceptions, the escapes, first and rowLen
	head, err := appendHeader(c, codecCells, int(b[2]))
	if err != nil {
		t.Fatal(err)
	}
	p := b[len(head):]
	for range 2 {
		if _, err := uvarint(&p); err != nil {
			t.Fatal(err)
		}
	}
	return int(p[0]), int(p[1]), int(p[2])
}

func TestEncodeRowsClassesCodes(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 1))
	for _, tc := range []struct {
		name                string
		first, rowLen, rows int
		rowsUsed, colsUsed  bool
		scale               func(row, col int, rs, cs float64) float64
	}{
		{"rows", 192, 192, 256, true, false, func(_, _ int, rs, _ float64) float64 { return rs }},
		{"rows, first inside a row", 77, 192, 300, true, false, func(_, _ int, rs, _ float64) float64 { return rs }},
		{"rows, long rows", 1, 1000, 40, true, false, func(_, _ int, rs, _ float64) float64 { return rs }},
		{"columns", 256, 256, 64, false, true, func(_, _ int, _, cs float64) float64 { return cs }},
		{"columns, first inside a row", 100, 300, 60, false, true, func(_, _ int, _, cs float64) float64 { return cs }},
		{"both", 192, 192, 256, true, true, func(_, _ int, rs, cs float64) float64 { return math.Sqrt(rs * cs) }},
		{"both, first inside a row", 5, 128, 200, true, true, func(_, _ int, rs, cs float64) float64 { return math.Sqrt(rs * cs) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := spreadCells(r, tc.first, tc.rowLen, tc.rows, tc.scale)
			q[3] = 1 << 40 // an escape
			c := &Codes{Tau: 1e-3, Q: q, Exceptions: []Exception{{5, 0x7fc00000}, {uint32(len(q) - 1), 0x7f800000}}}
			c.Q[5], c.Q[len(q)-1] = 0, 0
			plain, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			b, err := EncodeRows(c, tc.first, tc.rowLen)
			if err != nil {
				t.Fatal(err)
			}
			rg, cg, classes := cellsLayout(t, b, len(q))
			if (rg > 1) != tc.rowsUsed || (cg > 1) != tc.colsUsed || classes < 2 {
				t.Errorf("row groups %d, column groups %d, classes %d; want rows used %v, columns used %v",
					rg, cg, classes, tc.rowsUsed, tc.colsUsed)
			}
			if len(b) >= len(plain)*97/100 {
				t.Errorf("cells %d bytes, plain %d: want at least 3%% smaller", len(b), len(plain))
			}
			d, err := Decode(b, len(q))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(d.Q, c.Q) || !slices.Equal(d.Exceptions, c.Exceptions) || d.Tau != c.Tau {
				t.Fatal("round trip differs")
			}
			if BlobWidth(b) < 8 || BlobWidth(b)%8 != 0 {
				t.Errorf("width %d, want whole byte planes", BlobWidth(b))
			}
		})
	}
}

// Whether or not the plain blob is built too, EncodeRows keeps a blob no larger
// than the plain one but for the estimate's error, from rows all alike to rows
// of very different spreads.
func TestEncodeRowsNeverMuchLarger(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	for _, alpha := range []float64{0, 0.05, 0.1, 0.2, 0.3, 0.5, 1} {
		for _, rowLen := range []int{64, 192, 768} {
			q := spreadCells(r, rowLen, rowLen, 150000/rowLen, func(_, _ int, rs, cs float64) float64 {
				return 6 * math.Pow(rs*cs/100, alpha)
			})
			c := &Codes{Tau: 1e-3, Q: q}
			plain, err := Encode(c)
			if err != nil {
				t.Fatal(err)
			}
			b, err := EncodeRows(c, rowLen, rowLen)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > len(plain)+len(plain)/200 {
				t.Errorf("alpha %g, rows of %d: %d bytes, the plain blob %d", alpha, rowLen, len(b), len(plain))
			}
			d, err := Decode(b, len(q))
			if err != nil || !slices.Equal(d.Q, q) {
				t.Fatalf("alpha %g, rows of %d: round trip differs (%v)", alpha, rowLen, err)
			}
		}
	}
}

func TestEncodeRowsKeepsPlainWhenRowsAlike(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	c := &Codes{Tau: 1e-3, Q: spreadRows(r, 256, 256, 64, true)}
	plain, _ := Encode(c)
	for _, args := range [][2]int{{256, 256}, {0, 256}, {300, 256}, {1, 0}} {
		b, err := EncodeRows(c, args[0], args[1])
		if err != nil || !slices.Equal(b, plain) {
			t.Errorf("first %d rowLen %d: err %v, cells=%v; want the plain blob", args[0], args[1], err, b[1] == codecCells)
		}
	}
	// too few rows or codes for a second encoding
	small := &Codes{Tau: 1e-3, Q: spreadRows(r, 4000, 4000, 1, false)}
	if b, _ := EncodeRows(small, 100, 4000); b[1] == codecCells {
		t.Error("classed a matrix of one row")
	}
	short := &Codes{Tau: 1e-3, Q: spreadRows(r, 9, 9, 2000, false)}
	if b, _ := EncodeRows(short, 9, 9); b[1] == codecCells {
		t.Error("classed rows of 9 codes")
	}
}

func TestDecodeCellsRejectsCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	q := spreadCells(r, 192, 192, 256, func(_, _ int, rs, cs float64) float64 { return math.Sqrt(rs * cs) })
	b, err := EncodeRows(&Codes{Tau: 1e-3, Q: q}, 192, 192)
	if err != nil {
		t.Fatal(err)
	}
	if rg, cg, _ := cellsLayout(t, b, len(q)); rg == 1 || cg == 1 {
		t.Fatalf("setup: row groups %d, column groups %d, want both", rg, cg)
	}
	rejectsCutAndTrailing(t, b, len(q))
	// the cells fields follow the empty exception and escape lists: 4 header
	// bytes, the count (2-byte uvarint), tau (8), two zero counts, then first and
	// rowLen (192: 2-byte uvarints), the group counts and the class count
	head := 4 + 2 + 8 + 2
	for name, mut := range map[string]func([]byte){
		"first 0":             func(b []byte) { b[head], b[head+1] = 0x80, 0 },
		"first > rowLen":      func(b []byte) { b[head] = 0xc1 },
		"no row groups":       func(b []byte) { b[head+4] = 0 },
		"9 row groups":        func(b []byte) { b[head+4] = cellSide + 1 },
		"no column groups":    func(b []byte) { b[head+5] = 0 },
		"9 column groups":     func(b []byte) { b[head+5] = cellSide + 1 },
		"one class":           func(b []byte) { b[head+6] = 1 },
		"17 classes":          func(b []byte) { b[head+6] = maxClasses + 1 },
		"a cell out of range": func(b []byte) { cellOf(t, b, len(q))[0] = maxClasses },
		"width 0":             func(b []byte) { b[2] = 0 },
	} {
		m := slices.Clone(b)
		mut(m)
		if _, err := Decode(m, len(q)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// cellOf returns the class map of the cells blob b (of n codes, both groups used).
func cellOf(t *testing.T, b []byte, n int) []byte {
	rg, cg, _ := cellsLayout(t, b, n)
	c, _ := Decode(b, n)
	head, _ := appendHeader(c, codecCells, int(b[2]))
	p := b[len(head):]
	uvarint(&p)
	uvarint(&p)
	p = p[3:]
	starts := rowStarts(n, 192, 192)
	_, p, _ = readStream(p, len(starts))
	_, p, _ = readStream(p, 192)
	return p[:rg*cg]
}

func TestFuzzSeedsHoldACellsBlob(t *testing.T) {
	seeds := fuzzSeedsDecode()
	if b := seeds[len(seeds)-1]; b[1] != codecCells {
		t.Fatalf("last seed has codec %d, want cells", b[1])
	}
	if b := seeds[len(seeds)-2]; b[1] != codecGrouped {
		t.Fatalf("last but one seed has codec %d, want grouped", b[1])
	}
}

// BenchmarkDecodeRows compares decoding a cells blob with decoding the plain
// blob of the same codes (a 1024 x 256 matrix of uneven rows and columns).
func BenchmarkDecodeRows(b *testing.B) {
	r := rand.New(rand.NewPCG(10, 1))
	c := &Codes{Tau: 1e-3, Q: spreadCells(r, 256, 256, 1024, func(_, _ int, rs, cs float64) float64 { return math.Sqrt(rs * cs) })}
	plain, _ := Encode(c)
	cells, _ := EncodeRows(c, 256, 256)
	if cells[1] != codecCells {
		b.Fatal("not classed")
	}
	for _, bc := range []struct {
		name string
		blob []byte
	}{{"plain", plain}, {"cells", cells}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(c.Q)))
			for b.Loop() {
				if _, err := Decode(bc.blob, len(c.Q)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(bc.blob)), "blob-bytes")
		})
	}
}

// BenchmarkEncodeRows is the cost of EncodeRows (the estimate and, where it
// pays, the second encoding) against Encode alone, on a 1024 x 256 matrix whose
// codes are all of one spread (the estimate declines: its cost alone) and one
// whose spread depends on row and column (both blobs are built).
func BenchmarkEncodeRows(b *testing.B) {
	r := rand.New(rand.NewPCG(11, 1))
	alike := &Codes{Tau: 1e-3, Q: spreadRows(r, 256, 256, 1024, true)}
	uneven := &Codes{Tau: 1e-3, Q: spreadCells(r, 256, 256, 1024, func(_, _ int, rs, cs float64) float64 { return math.Sqrt(rs * cs) })}
	for _, bc := range []struct {
		name string
		c    *Codes
		rows bool
	}{{"alike/plain", alike, false}, {"alike/rows", alike, true}, {"uneven/plain", uneven, false}, {"uneven/rows", uneven, true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(4 * len(bc.c.Q)))
			for b.Loop() {
				if bc.rows {
					EncodeRows(bc.c, 256, 256)
				} else {
					Encode(bc.c)
				}
			}
		})
	}
}

// rejectsCutAndTrailing checks that blob b of n codes no longer decodes when cut
// short anywhere or given a trailing byte.
func rejectsCutAndTrailing(t *testing.T, b []byte, n int) {
	t.Helper()
	for cut := 0; cut < len(b); cut += 1 + cut/8 {
		if _, err := Decode(b[:cut], n); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded", cut, len(b))
		}
	}
	if _, err := Decode(append(slices.Clone(b), 0), n); err == nil {
		t.Error("a trailing byte was accepted")
	}
}
