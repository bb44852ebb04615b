package quant

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func fuzzSeedsDecode() [][]byte {
	var seeds [][]byte
	for _, q := range [][]int64{{}, {0, 1, -1, 2, -2}, {1 << 40, 3, -7, 0, 0, 0, 0}, make([]int64, 300)} {
		c := &Codes{Tau: 1e-3, Q: q}
		if len(q) > 2 {
			c.Exceptions = []Exception{{1, 0x7fc00001}}
			c.Q[1] = 0
		}
		for i := range q {
			if len(q) == 300 {
				q[i] = int64(i%7) - 3
			}
		}
		b, _ := Encode(c)
		seeds = append(seeds, b)
	}
	// a grouped blob (codec 2, no longer written): 64 rows of 100 codes, every other row all zero
	g := &Codes{Tau: 1e-3, Q: make([]int64, 6400)}
	for i := range g.Q {
		if i/100%2 == 1 {
			g.Q[i] = int64(i*7919%41) - 20
		}
	}
	seeds = append(seeds, groupedBlob(g, 100, 100))
	// a cells blob: 64 rows of 100 codes whose spread depends on the column
	r := rand.New(rand.NewPCG(1, 2))
	c := &Codes{Tau: 1e-3, Q: spreadCells(r, 100, 100, 64, func(_, _ int, rs, cs float64) float64 { return cs })}
	b, _ := EncodeRows(c, 100, 100)
	return append(seeds, b)
}

func fuzzSeedsLossless() [][]byte {
	w := make([]byte, 4*500)
	for i := 0; i < len(w); i += 4 {
		binary.LittleEndian.PutUint32(w[i:], math.Float32bits(float32(i%13)*0.01))
	}
	a, _ := LosslessEncode(w, nil, 4)
	b, _ := LosslessEncode(w[:7], nil, 2)
	c, _ := LosslessEncode(nil, nil, 1)
	return [][]byte{a, b, c}
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeedsDecode() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b, 1<<16)
		if err != nil {
			return
		}
		// whatever decodes must encode and decode to the same codes
		again, err := Encode(c)
		if err != nil {
			return // e.g. an exception list the encoder refuses; decoding is what matters
		}
		d, err := Decode(again, 1<<16)
		if err != nil || !slices.Equal(d.Q, c.Q) || !slices.Equal(d.Exceptions, c.Exceptions) {
			t.Fatalf("re-encode differs: %v", err)
		}
		dst := make([]float32, len(c.Q))
		c.Dequantize(dst)
		// decoding into an array given back dirty gives the same codes
		q := slices.Clone(c.Q)
		dirty(c)
		dirty(d)
		if e, err := Decode(b, 1<<16); err != nil || !slices.Equal(e.Q, q) {
			t.Fatalf("decoded again into a released array: %v", err)
		}
	})
}

func FuzzLosslessDecode(f *testing.F) {
	for _, s := range fuzzSeedsLossless() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := LosslessDecode(b, nil, 1<<18)
		if err != nil {
			return
		}
		es := int(b[1])
		again, err := LosslessEncode(out, nil, es)
		if err != nil {
			t.Fatal(err)
		}
		back, err := LosslessDecode(again, nil, 1<<18)
		if err != nil || !bytes.Equal(back, out) {
			t.Fatalf("re-encode differs: %v", err)
		}
	})
}

// TestWriteFuzzSeeds writes the committed seed corpus when QUANT_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("QUANT_WRITE_SEEDS") != "1" {
		t.Skip("set QUANT_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	for name, seeds := range map[string][][]byte{"FuzzDecode": fuzzSeedsDecode(), "FuzzLosslessDecode": fuzzSeedsLossless()} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed%d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
