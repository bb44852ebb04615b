package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/fse"
	"github.com/klauspost/compress/huff0"
)

// fineTunePair returns base ~ N(0, 0.02) and fine-tune = base + N(0, 0.002).
func fineTunePair(n int, seed uint64) (base, ft []float32) {
	r := rand.New(rand.NewPCG(seed, seed+1))
	base = make([]float32, n)
	ft = make([]float32, n)
	for i := range base {
		base[i] = float32(r.NormFloat64() * 0.02)
		ft[i] = base[i] + float32(r.NormFloat64()*0.002)
	}
	return base, ft
}

func f32Bytes(w []float32) []byte {
	b := make([]byte, 4*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// TestCompressionSanity reports bytes per element on a realistic fine-tune and
// checks that grid + entropy coding beats the paper's rule.
func TestCompressionSanity(t *testing.T) {
	n := 1 << 20
	if testing.Short() {
		n = 1 << 16
	}
	base, ft := fineTunePair(n, 42)
	per := func(b []byte) float64 { return float64(len(b)) / float64(n) }
	t.Logf("%-8s %-28s %10s %10s", "tau", "encoding", "bytes/el", "max err/tau")
	for _, tau := range []float64{1e-4, 1e-3} {
		cb, err := Quantize(base, tau)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := Quantize(ft, tau)
		d, _ := Delta(cf, cb)
		baseBlob, _ := Encode(cb)
		deltaBlob, _ := Encode(d)
		dd, err := Decode(deltaBlob, n)
		if err != nil {
			t.Fatal(err)
		}
		rec, _ := dd.AddBase(cb)
		checkBound(t, ft, rec, tau)
		got := make([]float32, n)
		rec.Dequantize(got)
		ourErr := maxErr(got, ft)

		paperBase, _ := PaperEncode(base, nil, tau)
		paperDelta, _ := PaperEncode(ft, base, tau)
		pgot, err := PaperDecode(paperDelta, base, n)
		if err != nil {
			t.Fatal(err)
		}
		pbgot, _ := PaperDecode(paperBase, nil, n)
		t.Logf("%-8g %-28s %10.3f %10.2f", tau, "ours: base alone", per(baseBlob), maxErr(mustDeq(cb, n), base)/tau)
		t.Logf("%-8g %-28s %10.3f %10.2f", tau, "paper: base (8-bit + delta)", per(paperBase), maxErr(pbgot, base)/tau)
		t.Logf("%-8g %-28s %10.3f %10.2f", tau, "ours: fine-tune delta", per(deltaBlob), ourErr/tau)
		t.Logf("%-8g %-28s %10.3f %10.2f", tau, "paper: fine-tune delta", per(paperDelta), maxErr(pgot, ft)/tau)
		t.Logf("%-8g exceptions: base %d, fine-tune %d", tau, len(cb.Exceptions), len(cf.Exceptions))
		if float64(len(deltaBlob)) > 0.85*float64(len(paperDelta)) {
			t.Errorf("tau %g: our delta %d bytes is not clearly below the paper's %d", tau, len(deltaBlob), len(paperDelta))
		}
	}
	bb, fb := f32Bytes(base), f32Bytes(ft)
	plain, _ := LosslessEncode(fb, nil, 4)
	xor, _ := LosslessEncode(fb, bb, 4)
	t.Logf("%-8s %-28s %10.3f", "0", "lossless planes", per(plain))
	t.Logf("%-8s %-28s %10.3f", "0", "lossless XOR + planes", per(xor))
}

func mustDeq(c *Codes, n int) []float32 {
	out := make([]float32, n)
	c.Dequantize(out)
	return out
}

func maxErr(a, b []float32) float64 {
	m := 0.0
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

const benchN = 4 << 20

func BenchmarkQuantize(b *testing.B) {
	_, ft := fineTunePair(benchN, 1)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		if _, err := Quantize(ft, 1e-4); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDelta(b *testing.B, tau float64) (*Codes, *Codes) {
	base, ft := fineTunePair(benchN, 1)
	cb, _ := Quantize(base, tau)
	cf, _ := Quantize(ft, tau)
	d, _ := Delta(cf, cb)
	return d, cb
}

func BenchmarkEncode(b *testing.B) {
	for _, tau := range []float64{1e-4, 1e-3} {
		b.Run(tauName(tau), func(b *testing.B) {
			d, _ := benchDelta(b, tau)
			b.SetBytes(4 * benchN)
			for b.Loop() {
				if _, err := Encode(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, tau := range []float64{1e-4, 1e-3} {
		b.Run(tauName(tau), func(b *testing.B) {
			d, _ := benchDelta(b, tau)
			blob, _ := Encode(d)
			b.SetBytes(4 * benchN)
			for b.Loop() {
				if _, err := Decode(blob, benchN); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkImport is the whole tau > 0 path for a fine-tune tensor: quantize,
// delta against the base's codes, encode.
func BenchmarkImport(b *testing.B) {
	base, ft := fineTunePair(benchN, 1)
	cb, _ := Quantize(base, 1e-4)
	b.SetBytes(4 * benchN)
	for b.Loop() {
		cf, _ := Quantize(ft, 1e-4)
		d, _ := Delta(cf, cb)
		if _, err := Encode(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLosslessEncode(b *testing.B) {
	base, ft := fineTunePair(benchN, 1)
	bb, fb := f32Bytes(base), f32Bytes(ft)
	b.Run("plain", func(b *testing.B) {
		b.SetBytes(int64(len(fb)))
		for b.Loop() {
			LosslessEncode(fb, nil, 4)
		}
	})
	b.Run("xor", func(b *testing.B) {
		b.SetBytes(int64(len(fb)))
		for b.Loop() {
			LosslessEncode(fb, bb, 4)
		}
	})
}

func BenchmarkLosslessDecode(b *testing.B) {
	_, ft := fineTunePair(benchN, 1)
	fb := f32Bytes(ft)
	blob, _ := LosslessEncode(fb, nil, 4)
	b.SetBytes(int64(len(fb)))
	for b.Loop() {
		if _, err := LosslessDecode(blob, nil, len(fb)); err != nil {
			b.Fatal(err)
		}
	}
}

func tauName(tau float64) string {
	if tau == 1e-4 {
		return "tau=1e-4"
	}
	return "tau=1e-3"
}

// BenchmarkChunkDecode decodes one 128 KiB chunk of grid codes of about 6 bits
// per byte (a base at tau 1e-3) coded by huff0 and by FSE: the evidence for
// keeping Huffman above 5 bits per byte in encodeChunks.
func BenchmarkChunkDecode(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	c := make([]byte, chunkSize)
	for i := range c {
		c[i] = byte(zigzag(int64(math.Round(r.NormFloat64() * 10))))
	}
	h, _, err := huff0.Compress4X(c, nil)
	if err != nil {
		b.Fatal(err)
	}
	f, err := fse.Compress(c, &fse.Scratch{TableLog: fseTableLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("huff0", func(b *testing.B) {
		b.SetBytes(chunkSize)
		for b.Loop() {
			s, rem, err := huff0.ReadTable(h, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Decompress4X(rem, chunkSize); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(h)), "coded-bytes")
	})
	b.Run("fse", func(b *testing.B) {
		b.SetBytes(chunkSize)
		var s fse.Scratch
		for b.Loop() {
			if _, err := fse.Decompress(f, &s); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(f)), "coded-bytes")
	})
}

// order0 is the order-0 entropy of its input in bits per byte.
func TestOrder0(t *testing.T) {
	for _, c := range []struct {
		in   []byte
		h    float64
		used int
	}{
		{nil, 0, 0},
		{[]byte{7, 7, 7, 7}, 0, 1},
		{[]byte{1, 2, 1, 2}, 1, 2},
		{[]byte{0, 1, 2, 3, 0, 1, 2, 3}, 2, 4},
		{[]byte{5, 5, 5, 9}, 0.8112781244591328, 2},
	} {
		h, used := order0(c.in)
		if math.Abs(h-c.h) > 1e-9 || used != c.used {
			t.Errorf("order0(%v) = %v, %d; want %v, %d", c.in, h, used, c.h, c.used)
		}
	}
	// counts past xlog2x's table
	big := make([]byte, 100000)
	for i := range big {
		big[i] = byte(i % 2)
	}
	if h, _ := order0(big); math.Abs(h-1) > 1e-9 {
		t.Errorf("two symbols, 50000 each: %v bits", h)
	}
}
