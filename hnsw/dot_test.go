package hnsw

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// dotVariant is one implementation of dotU8 (dotVariants, in dot_amd64_test.go and
// dot_other_test.go, lists those of this build).
type dotVariant struct {
	name string
	fn   func(a, b []uint8) uint64
	ok   bool // whether this CPU can run it
}

// dotLengths are the lengths TestDotU8Variants checks: every length up to 300 and a
// few large ones around the SIMD block size.
func dotLengths() []int {
	var ns []int
	for n := 0; n <= 300; n++ {
		ns = append(ns, n)
	}
	return append(ns, 1000, 4095, 65535, 65536, 65537, 65536+13, 3*65536+127,
		1<<20+5)
}

// TestDotU8Variants checks every SIMD version of dotU8 this CPU can run (and the
// dispatching dotU8) against dotU8Generic on random codes, on all-255 codes (the
// largest sums, where a lane would overflow) and on unaligned slices.
func TestDotU8Variants(t *testing.T) {
	vs := append([]dotVariant{{"dispatch", dotU8, true}}, dotVariants...)
	r := rand.New(rand.NewPCG(31, 32))
	big := 1<<20 + 5 + 64
	bufA, bufB := make([]uint8, big), make([]uint8, big)
	for i := range bufA {
		bufA[i], bufB[i] = uint8(r.IntN(256)), uint8(r.IntN(256))
	}
	max := make([]uint8, big)
	for i := range max {
		max[i] = 255
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			if !v.ok {
				t.Skipf("%s: this CPU lacks the instructions", v.name)
			}
			for _, n := range dotLengths() {
				// random codes at offsets that move the slices off any alignment
				for _, off := range []int{0, 1, 37} {
					if n > 100_000 && off != 0 {
						continue
					}
					a, b := bufA[off:off+n], bufB[off*2%64:off*2%64+n]
					if got, want := v.fn(a, b), dotU8Generic(a, b); got != want {
						t.Errorf("n=%d off=%d: %d, want %d", n, off, got, want)
					}
				}
				// extremes: 255*255 everywhere, and 255 against 0 (the biased
				// VNNI form sees -128 there)
				if got, want := v.fn(max[:n], max[:n]), uint64(n)*255*255; got != want {
					t.Errorf("n=%d all 255: %d, want %d", n, got, want)
				}
				zero := make([]uint8, n)
				if got := v.fn(max[:n], zero); got != 0 {
					t.Errorf("n=%d 255 x 0: %d, want 0", n, got)
				}
				if got := v.fn(zero, max[:n]); got != 0 {
					t.Errorf("n=%d 0 x 255: %d, want 0", n, got)
				}
			}
		})
	}
}

// TestDotU8ShortB checks that dotU8 panics, like dotU8Generic, when b is shorter
// than a (the assembly must never read past b).
func TestDotU8ShortB(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	dotU8(make([]uint8, 100), make([]uint8, 99))
}

// BenchmarkDotU8 compares the reference dotU8Generic with the SIMD versions this CPU
// runs on 65536 codes (the bytes count both inputs).
func BenchmarkDotU8(b *testing.B) {
	const n = 65536
	r := rand.New(rand.NewPCG(23, 1))
	x, y := make([]uint8, n), make([]uint8, n)
	for i := range x {
		x[i], y[i] = uint8(r.IntN(256)), uint8(r.IntN(256))
	}
	vs := append([]dotVariant{{"ref", dotU8Generic, true}}, dotVariants...)
	for _, v := range vs {
		b.Run(fmt.Sprintf("%s/%d", v.name, n), func(b *testing.B) {
			if !v.ok {
				b.Skipf("%s: this CPU lacks the instructions", v.name)
			}
			b.SetBytes(2 * n)
			var s uint64
			for b.Loop() {
				s += v.fn(x, y)
			}
			_ = s
		})
	}
}
