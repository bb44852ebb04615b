package quant

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// spreadRows returns codes of a rows x rowLen matrix (the first row only first
// long) whose rows have Laplace-like codes of widely different spreads, as the
// deltas of a fine-tune's token embedding do, or all one spread when same.
func spreadRows(r *rand.Rand, first, rowLen, rows int, same bool) []int64 {
	var q []int64
	for i := range rows {
		n := rowLen
		if i == 0 {
			n = first
		}
		scale := 0.3 + 40*r.Float64()*r.Float64()*r.Float64()
		if same {
			scale = 8
		}
		for range n {
			q = append(q, int64(r.ExpFloat64()*scale)*int64(1-2*r.IntN(2)))
		}
	}
	return q
}

func TestEncodeRowsGroupsUnevenRows(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 1))
	for _, tc := range []struct {
		first, rowLen, rows int
	}{{192, 192, 256}, {77, 192, 300}, {1, 1000, 40}, {500, 500, 17}} {
		q := spreadRows(r, tc.first, tc.rowLen, tc.rows, false)
		q[3] = 1 << 40 // an escape
		c := &Codes{Tau: 1e-3, Q: q, Exceptions: []Exception{{5, 0x7fc00000}, {uint32(len(q) - 1), 0x7f800000}}}
		plain, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		b, err := EncodeRows(c, tc.first, tc.rowLen)
		if err != nil {
			t.Fatal(err)
		}
		if b[1] != codecGrouped {
			t.Fatalf("%+v: codec %d, want grouped", tc, b[1])
		}
		if len(b) >= len(plain)*97/100 {
			t.Errorf("%+v: grouped %d bytes, plain %d: want at least 3%% smaller", tc, len(b), len(plain))
		}
		d, err := Decode(b, len(q))
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if !slices.Equal(d.Q, c.Q) || !slices.Equal(d.Exceptions, c.Exceptions) || d.Tau != c.Tau {
			t.Fatalf("%+v: round trip differs", tc)
		}
		if BlobWidth(b) < 8 || BlobWidth(b)%8 != 0 {
			t.Errorf("%+v: width %d, want whole byte planes", tc, BlobWidth(b))
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
			t.Errorf("first %d rowLen %d: err %v, grouped=%v; want the plain blob", args[0], args[1], err, b[1] == codecGrouped)
		}
	}
	// too few rows or codes for a second encoding
	small := &Codes{Tau: 1e-3, Q: spreadRows(r, 4000, 4000, 1, false)}
	if b, _ := EncodeRows(small, 100, 4000); b[1] == codecGrouped {
		t.Error("grouped a matrix of one row")
	}
	short := &Codes{Tau: 1e-3, Q: spreadRows(r, 9, 9, 2000, false)}
	if b, _ := EncodeRows(short, 9, 9); b[1] == codecGrouped {
		t.Error("grouped rows of 9 codes")
	}
}

func TestDecodeGroupedRejectsCorrupt(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 1))
	q := spreadRows(r, 192, 192, 64, false)
	b, err := EncodeRows(&Codes{Tau: 1e-3, Q: q}, 192, 192)
	if err != nil || b[1] != codecGrouped {
		t.Fatalf("setup: %v", err)
	}
	for cut := 0; cut < len(b); cut += 1 + cut/8 {
		if _, err := Decode(b[:cut], len(q)); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded", cut, len(b))
		}
	}
	if _, err := Decode(append(slices.Clone(b), 0), len(q)); err == nil {
		t.Error("a trailing byte was accepted")
	}
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

func TestFuzzSeedsHoldAGroupedBlob(t *testing.T) {
	seeds := fuzzSeedsDecode()
	if b := seeds[len(seeds)-1]; b[1] != codecGrouped {
		t.Fatalf("last seed has codec %d, want grouped", b[1])
	}
}

// BenchmarkDecodeRows compares decoding a grouped blob with decoding the plain
// blob of the same codes (a 1024 x 256 matrix of uneven rows).
func BenchmarkDecodeRows(b *testing.B) {
	r := rand.New(rand.NewPCG(10, 1))
	c := &Codes{Tau: 1e-3, Q: spreadRows(r, 256, 256, 1024, false)}
	plain, _ := Encode(c)
	grouped, _ := EncodeRows(c, 256, 256)
	if grouped[1] != codecGrouped {
		b.Fatal("not grouped")
	}
	for _, bc := range []struct {
		name string
		blob []byte
	}{{"plain", plain}, {"grouped", grouped}} {
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
