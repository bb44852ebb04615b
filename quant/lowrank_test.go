package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// loraCodes returns the delta codes of a merged LoRA adapter: round(A B / step)
// for random A (rows x rank) and B (rank x cols), plus noise of +-noise codes.
func loraCodes(r *rand.Rand, rows, cols, rank int, scale float64, noise int) []int64 {
	a := make([]float64, rows*rank)
	b := make([]float64, rank*cols)
	for i := range a {
		a[i] = r.NormFloat64()
	}
	for i := range b {
		b[i] = r.NormFloat64()
	}
	d := make([]int64, rows*cols)
	for i := range rows {
		for j := range cols {
			var s float64
			for k := range rank {
				s += a[i*rank+k] * b[k*cols+j]
			}
			d[i*cols+j] = int64(math.Round(s*scale)) + int64(r.IntN(2*noise+1)-noise)
		}
	}
	return d
}

// mustFit returns Fit's factors for the rows x cols codes d, which must have some.
func mustFit(t *testing.T, d []int64, rows, cols int) *LowRankFit {
	t.Helper()
	fit := Fit([][]int64{d}, rows, cols)
	if fit == nil {
		t.Fatalf("%d x %d: no low-rank prediction found", rows, cols)
	}
	return fit
}

func encodedSize(t *testing.T, q []int64, cols int) int {
	t.Helper()
	b, err := EncodeRows(&Codes{Tau: 1e-3, Q: q}, cols, cols)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

func TestFitFindsLowRank(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 1))
	for _, tc := range []struct{ rows, cols, rank, noise int }{
		{256, 320, 8, 1}, {300, 64, 4, 0}, {128, 512, 16, 1},
	} {
		d := loraCodes(r, tc.rows, tc.cols, tc.rank, 10, tc.noise)
		lr := mustFit(t, d, tc.rows, tc.cols).Round(12)
		if lr.Rank < tc.rank {
			t.Errorf("%+v: rank %d, want at least %d", tc, lr.Rank, tc.rank)
		}
		res := slices.Clone(d)
		pred := make([]int64, len(d))
		lr.AddTo(pred, 0)
		for i := range res {
			res[i] -= pred[i]
		}
		before, after := encodedSize(t, d, tc.cols), encodedSize(t, res, tc.cols)+len(lr.Encode())
		if after*10 > before*6 {
			t.Errorf("%+v: residual and factors %d bytes, codes %d: want under 60%%", tc, after, before)
		}
	}
}

func TestFitDeclinesFullRank(t *testing.T) {
	r := rand.New(rand.NewPCG(32, 1))
	for _, shape := range [][2]int{{256, 256}, {64, 1000}, {63, 500}, {500, 20}} {
		d := make([]int64, shape[0]*shape[1])
		for i := range d {
			d[i] = int64(r.NormFloat64() * 6)
		}
		if lr := Fit([][]int64{d}, shape[0], shape[1]); lr != nil {
			t.Errorf("%v: found rank %d in noise", shape, lr.Rank())
		}
	}
	if Fit([][]int64{make([]int64, 64*64)}, 64, 64) != nil {
		t.Error("fitted a zero matrix")
	}
	if Fit([][]int64{make([]int64, 10)}, 64, 64) != nil {
		t.Error("fitted codes of the wrong length")
	}
}

// AddTo over any split of the elements (chunks that start inside a row) adds
// the same prediction as over the whole matrix.
func TestLowRankAddToChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 1))
	const rows, cols = 128, 96
	lr := mustFit(t, loraCodes(r, rows, cols, 6, 20, 0), rows, cols).Round(10)
	whole := make([]int64, rows*cols)
	lr.AddTo(whole, 0)
	for _, step := range []int{1, 7, 96, 1000, 4095} {
		got := make([]int64, rows*cols)
		for lo := 0; lo < len(got); lo += step {
			lr.AddTo(got[lo:min(lo+step, len(got))], lo)
		}
		if !slices.Equal(got, whole) {
			t.Fatalf("chunks of %d: prediction differs", step)
		}
	}
}

func TestLowRankBlob(t *testing.T) {
	r := rand.New(rand.NewPCG(34, 1))
	const rows, cols = 100, 70
	lr := mustFit(t, loraCodes(r, rows, cols, 3, 50, 1), rows, cols).Round(12)
	b := lr.Encode()
	got, err := DecodeLowRank(b, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rank != lr.Rank || got.Shift != lr.Shift || !slices.Equal(got.A, lr.A) || !slices.Equal(got.Bt, lr.Bt) {
		t.Fatal("round trip differs")
	}
	if _, err := DecodeLowRank(b, rows, cols+1); err == nil {
		t.Error("decoded for another shape")
	}
	for cut := 0; cut < len(b); cut += 1 + cut/8 {
		if _, err := DecodeLowRank(b[:cut], rows, cols); err == nil {
			t.Fatalf("truncated to %d of %d bytes: decoded", cut, len(b))
		}
	}
	if _, err := DecodeLowRank(append(slices.Clone(b), 0), rows, cols); err == nil {
		t.Error("a trailing byte was accepted")
	}
	for name, mut := range map[string]func([]byte){
		"version":  func(b []byte) { b[0] = 2 },
		"rank 0":   func(b []byte) { b[1] = 0 },
		"rank 65":  func(b []byte) { b[1] = maxRank + 1 },
		"shift 0":  func(b []byte) { b[2] = 0 },
		"shift 63": func(b []byte) { b[2] = 63 },
	} {
		m := slices.Clone(b)
		mut(m)
		if _, err := DecodeLowRank(m, rows, cols); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestSymEigen(t *testing.T) {
	// V diag(eig) V^T must rebuild the matrix, V be orthonormal and eig decrease:
	// random symmetric, Gram (as Fit makes), diagonal, zero and repeated-eigenvalue
	// matrices of several sizes
	r := rand.New(rand.NewPCG(35, 1))
	type tc struct {
		name string
		n    int
		g    []float64
	}
	var cases []tc
	for _, n := range []int{1, 2, 3, 12, 32, 40} {
		g := make([]float64, n*n)
		for i := range n {
			for j := i; j < n; j++ {
				g[i*n+j] = r.NormFloat64()
				g[j*n+i] = g[i*n+j]
			}
		}
		cases = append(cases, tc{fmt.Sprint("random ", n), n, g})
		m := make([]float64, 3*n*n)
		for i := range m {
			m[i] = math.Round(r.NormFloat64() * 3)
		}
		cases = append(cases, tc{fmt.Sprint("gram ", n), n, gramCols(m, 3*n, n)})
	}
	diag := make([]float64, 25)
	for i := range 5 {
		diag[i*5+i] = float64(5 - 2*i)
	}
	cases = append(cases, tc{"diagonal", 5, diag}, tc{"zero", 6, make([]float64, 36)})
	// I + u u^T: eigenvalue 1 repeated n-1 times
	rep := make([]float64, 64)
	for i := range 8 {
		for j := range 8 {
			rep[i*8+j] = float64((i+1)*(j+1)) / 64
		}
		rep[i*8+i]++
	}
	cases = append(cases, tc{"repeated", 8, rep})

	for _, c := range cases {
		n := c.n
		orig := slices.Clone(c.g)
		eig, vec := symEigen(c.g, n)
		for i := 1; i < n; i++ {
			if eig[i] > eig[i-1] {
				t.Fatalf("%s: eigenvalues not decreasing: %v", c.name, eig)
			}
		}
		var scale float64
		for _, x := range orig {
			scale = max(scale, math.Abs(x))
		}
		for i := range n {
			for j := range n {
				var s, dot float64
				for k := range n {
					s += vec[i*n+k] * eig[k] * vec[j*n+k]
					dot += vec[k*n+i] * vec[k*n+j]
				}
				if math.Abs(s-orig[i*n+j]) > 1e-9*max(scale, 1) {
					t.Fatalf("%s (%d,%d): rebuilt %v, want %v", c.name, i, j, s, orig[i*n+j])
				}
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(dot-want) > 1e-9 {
					t.Fatalf("%s: columns %d and %d: dot %v, want %v", c.name, i, j, dot, want)
				}
			}
		}
	}
}

func FuzzDecodeLowRank(f *testing.F) {
	r := rand.New(rand.NewPCG(36, 1))
	lr := Fit([][]int64{loraCodes(r, 64, 33, 2, 30, 0)}, 64, 33).Round(10)
	f.Add(lr.Encode(), uint8(64), uint8(33))
	f.Fuzz(func(t *testing.T, b []byte, rows, cols uint8) {
		lr, err := DecodeLowRank(b, int(rows), int(cols))
		if err != nil {
			return
		}
		again, err := DecodeLowRank(lr.Encode(), int(rows), int(cols))
		if err != nil || !slices.Equal(again.A, lr.A) || !slices.Equal(again.Bt, lr.Bt) {
			t.Fatalf("re-encode differs: %v", err)
		}
		lr.AddTo(make([]int64, int(rows)*int(cols)), 0)
	})
}

// Fit over a matrix held in parts that cut rows finds the same factors as over
// the whole matrix.
func TestFitParts(t *testing.T) {
	r := rand.New(rand.NewPCG(37, 1))
	const rows, cols = 200, 130
	d := loraCodes(r, rows, cols, 5, 15, 1)
	whole := Fit([][]int64{d}, rows, cols).Round(12)
	var parts [][]int64
	for lo := 0; lo < len(d); lo += 4099 {
		parts = append(parts, d[lo:min(lo+4099, len(d))])
	}
	cf := Fit(parts, rows, cols)
	if whole == nil || cf == nil {
		t.Fatal("no fit")
	}
	if cut := cf.Round(12); !slices.Equal(whole.A, cut.A) || !slices.Equal(whole.Bt, cut.Bt) {
		t.Fatal("fit over parts differs from the fit over the whole matrix")
	}
	if Fit([][]int64{d[:100], d[100:]}, rows, cols) != nil {
		t.Error("fitted parts of unequal lengths")
	}
}

// Fewer bits make smaller factors and a coarser prediction; bits out of range
// give none.
func TestLowRankRoundBits(t *testing.T) {
	r := rand.New(rand.NewPCG(38, 1))
	const rows, cols = 256, 200
	d := loraCodes(r, rows, cols, 8, 30, 0)
	fit := Fit([][]int64{d}, rows, cols)
	if fit == nil || fit.Rank() < 8 {
		t.Fatal("no rank-8 fit")
	}
	prevBlob, prevErr := 1<<30, -1.0
	for _, bits := range []int{14, 12, 10, 8, 6} {
		lr := fit.Round(bits)
		pred := make([]int64, len(d))
		lr.AddTo(pred, 0)
		var e float64
		for i := range d {
			e += math.Abs(float64(d[i] - pred[i]))
		}
		blob := len(lr.Encode())
		if blob >= prevBlob || e < prevErr {
			t.Errorf("%d bits: factors %d bytes, error %.0f; at 2 bits more %d, %.0f", bits, blob, e, prevBlob, prevErr)
		}
		prevBlob, prevErr = blob, e
	}
	for _, bits := range []int{3, 15} {
		if fit.Round(bits) != nil {
			t.Errorf("rounded to %d bits", bits)
		}
	}
}

// BenchmarkFit measures the sample test on a full fine-tune's delta (no low-rank
// structure, so Fit returns nil): what every matrix of an import pays.
func BenchmarkFit(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	rows, cols := 768, 192
	q := make([]int64, rows*cols)
	for i := range q {
		q[i] = int64(math.Round(r.NormFloat64() * 3))
	}
	b.SetBytes(int64(len(q)) * 4)
	for b.Loop() {
		if Fit([][]int64{q}, rows, cols) != nil {
			b.Fatal("a full-rank delta was fitted")
		}
	}
}

// entropy counts narrow values in an array and sorts wide ones: both give the
// order-0 entropy in bits.
func TestEntropy(t *testing.T) {
	for _, c := range []struct {
		v    []int64
		want float64
	}{
		{nil, 0},
		{[]int64{7, 7, 7}, 0},
		{[]int64{0, 0, 1, 1}, 4},
		{[]int64{-3, 5, 5, -3}, 4},
		{[]int64{0, 1 << 40, 0, 1 << 40}, 4},
		{[]int64{-1 << 50, 1 << 50, 2, 3}, 8},
		{[]int64{1, 2, 2, 3, 3, 3, 3, 1}, 12},
	} {
		if got := entropy(slices.Clone(c.v)); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("entropy(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}
