package quant

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"
)

// The difference mode round-trips any bytes for every element size and length
// (including a tail that is not a whole element), and beats XOR on close floats.
func TestLosslessDiffRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, es := range []int{1, 2, 4} {
		for _, n := range []int{0, 1, 3, 4, 5, 17, 1000, 70001} {
			w, b := make([]byte, n), make([]byte, n)
			for i := range w {
				w[i], b[i] = byte(r.Uint32()), byte(r.Uint32())
			}
			if n > 8 { // some equal elements and wrap-arounds
				copy(b[:4], w[:4])
				w[4], b[4] = 0xff, 0x00
			}
			enc, err := LosslessEncodeDiff(w, b, es)
			if err != nil {
				t.Fatal(err)
			}
			got, err := LosslessDecode(enc, b, n)
			if err != nil || !bytes.Equal(got, w) {
				t.Fatalf("es %d n %d: round trip failed (%v)", es, n, err)
			}
		}
	}
	if _, err := LosslessEncodeDiff([]byte{1}, nil, 1); err == nil {
		t.Fatal("a difference without a base was accepted")
	}
	// close floats: a base and a fine-tune
	n := 1 << 16
	w, b := make([]byte, 4*n), make([]byte, 4*n)
	for i := 0; i < n; i++ {
		x := r.NormFloat64() * 0.02
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x)))
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(float32(x+r.NormFloat64()*2e-4)))
	}
	d, _ := LosslessEncodeDiff(w, b, 4)
	x, _ := LosslessEncode(w, b, 4)
	t.Logf("difference %d bytes, XOR %d bytes, raw %d", len(d), len(x), len(w))
	if len(d) >= len(x) {
		t.Errorf("difference (%d bytes) is not smaller than XOR (%d)", len(d), len(x))
	}
}
