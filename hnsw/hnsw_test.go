package hnsw

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func normal(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

func perturb(r *rand.Rand, base []float32, std float64) []float32 {
	v := slices.Clone(base)
	for i := range v {
		v[i] += float32(r.NormFloat64() * std)
	}
	return v
}

// build inserts vecs under ids 1000+i.
func build(t testing.TB, dim int, p Params, vecs [][]float32) *Index {
	t.Helper()
	x, err := New(dim, p)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vecs {
		ch, err := x.Insert(ID(1000+i), v)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(ch, ID(1000+i)) {
			t.Fatalf("insert %d: changed %v lacks the new node", i, ch)
		}
	}
	return x
}

func records(t testing.TB, x *Index) [][]byte {
	t.Helper()
	var out [][]byte
	for _, n := range x.nodes {
		b, err := x.MarshalNode(n.id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func seqOf(recs [][]byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for _, r := range recs {
			if !yield(r) {
				return
			}
		}
	}
}

func TestDotU8(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 7, 8, 9, 63, 1000} {
		a, b := make([]uint8, n), make([]uint8, n)
		var want uint64
		for i := range a {
			a[i], b[i] = uint8(r.IntN(256)), uint8(r.IntN(256))
			want += uint64(a[i]) * uint64(b[i])
		}
		if got := dotU8(a, b); got != want {
			t.Errorf("n=%d: %d, want %d", n, got, want)
		}
	}
}

// TestCompactDistance checks the expanded formula against the direct distance of
// the dequantized vectors.
func TestCompactDistance(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 5, 100, 4096} {
		a := quantize(normal(r, n, 0.02), nil)
		b := quantize(normal(r, n, 1), nil)
		var want float64
		for i := range n {
			da := float64(a.scale)*float64(a.code[i]) + float64(a.min)
			db := float64(b.scale)*float64(b.code[i]) + float64(b.min)
			want += (da - db) * (da - db)
		}
		if got := dist(&a, &b, 1); math.Abs(got-want) > 1e-9*max(1, want) {
			t.Errorf("n=%d: %g, want %g", n, got, want)
		}
		if d := dist(&a, &a, 1); d > 1e-12 {
			t.Errorf("n=%d: self distance %g", n, d)
		}
	}
	c := quantize(make([]float32, 10), nil) // constant vector
	if c.scale != 0 || c.sumQ != 0 {
		t.Errorf("constant vector: %+v", c)
	}
}

func TestDefaultParams(t *testing.T) {
	for _, c := range []struct{ dim, m, ef int }{
		{1, 24, 64}, {512, 24, 64}, {16384, 16, 44}, {65536, 13, 36}, {1 << 20, 6, 21},
		{2_400_000, 4, 16}, {1 << 30, 4, 16},
	} {
		p := DefaultParams(c.dim)
		if p.M != c.m || p.Mmax0 != 2*c.m || p.EfConstruction != c.ef || p.EfSearch != c.ef {
			t.Errorf("dim %d: %+v, want M %d ef %d", c.dim, p, c.m, c.ef)
		}
	}
}

func TestDeterminism(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const dim = 256
	var vecs [][]float32
	for range 300 {
		vecs = append(vecs, normal(r, dim, 0.02))
	}
	a := build(t, dim, DefaultParams(dim), vecs)
	b := build(t, dim, DefaultParams(dim), vecs)
	ra, rb := records(t, a), records(t, b)
	for i := range ra {
		if !bytes.Equal(ra[i], rb[i]) {
			t.Fatalf("node %d: records differ", i)
		}
	}
	if a.maxLevel == 0 {
		t.Errorf("300 nodes but a single layer")
	}
}

// family makes nb random bases and queries: fine-tunes of random bases and
// unrelated vectors.
func family(seed uint64, dim, nb, nq int) (bases, queries [][]float32, parent []int) {
	r := rand.New(rand.NewPCG(seed, 7))
	for range nb {
		bases = append(bases, normal(r, dim, 0.02))
	}
	for i := range nq {
		if i%5 == 4 {
			queries = append(queries, normal(r, dim, 0.02))
			parent = append(parent, -1)
			continue
		}
		p := r.IntN(nb)
		std := []float64{0.001, 0.002, 0.005}[i%3]
		queries = append(queries, perturb(r, bases[p], std))
		parent = append(parent, p)
	}
	return
}

func bruteNearest(q []float32, vecs [][]float32) int {
	best, bd := -1, math.Inf(1)
	for i, v := range vecs {
		if d := sqL2(q, v); d < bd {
			best, bd = i, d
		}
	}
	return best
}

// TestRecallSynthetic checks recall@1 after an exact re-rank of the top hits, over
// queries that have a usable base: one closer to them than zero is (a delta
// against it is smaller than the tensor). Queries unrelated to every base (one in
// five here) have all bases at nearly the same distance; a sketch cannot order such
// near-ties and need not, since no answer would be used. For them the test checks
// that the answer is indeed no usable base.
func TestRecallSynthetic(t *testing.T) {
	dim, nb, nq := 16384, 200, 100
	if raceEnabled || testing.Short() {
		dim, nb, nq = 2048, 60, 30
	}
	bases, queries, parent := family(11, dim, nb, nq)
	x := build(t, dim, DefaultParams(dim), bases)
	exact := func(id ID) ([]float32, error) { return bases[id-1000], nil }
	hits, usable, ftHits, fts := 0, 0, 0, 0
	for i, q := range queries {
		res, err := x.Search(q, 8)
		if err != nil {
			t.Fatal(err)
		}
		res, err = Rerank(q, res, exact)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteNearest(q, bases)
		var energy float64
		for _, v := range q {
			energy += float64(v) * float64(v)
		}
		if sqL2(q, bases[want]) >= energy {
			if res[0].Dist < energy {
				t.Errorf("query %d: no base is usable, but the index returned one at %g < %g", i, res[0].Dist, energy)
			}
			continue
		}
		usable++
		if int(res[0].ID-1000) == want {
			hits++
		}
		if parent[i] >= 0 {
			fts++
			if int(res[0].ID-1000) == parent[i] {
				ftHits++
			}
		}
	}
	recall := float64(hits) / float64(usable)
	t.Logf("dim %d, %d bases, %d queries (%d with a usable base): recall@1 %.3f, fine-tunes to own base %d/%d", dim, nb, nq, usable, recall, ftHits, fts)
	if recall < 0.99 {
		t.Errorf("recall@1 %.3f < 0.99", recall)
	}
	if ftHits != fts || usable < nq/2 {
		t.Errorf("fine-tunes found their base %d/%d (%d usable queries)", ftHits, fts, usable)
	}
}

func TestSketch(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("large vectors")
	}
	dim := 1<<16 + 12345
	bases, queries, parent := family(12, dim, 8, 10)
	x := build(t, dim, DefaultParams(dim), bases)
	if len(x.nodes[0].vec.code) != SketchSize(dim) {
		t.Fatalf("node keeps %d codes, want sketch of %d", len(x.nodes[0].vec.code), SketchSize(dim))
	}
	for i, q := range queries {
		res, err := x.Search(q, 1)
		if err != nil {
			t.Fatal(err)
		}
		want := bruteNearest(q, bases)
		if parent[i] >= 0 && int(res[0].ID-1000) != want {
			t.Errorf("query %d (parent %d): got %d, want %d", i, parent[i], res[0].ID-1000, want)
		}
		// the sketch distance estimates the full one: a sum of n sampled squared
		// differences has a relative standard deviation of about sqrt(2/n) for
		// Gaussian differences; allow four of them
		tol := 4 * math.Sqrt(2/float64(SketchSize(dim)))
		if e := sqL2(q, bases[res[0].ID-1000]); math.Abs(res[0].Dist-e) > tol*e {
			t.Errorf("query %d: sketch distance %g, exact %g", i, res[0].Dist, e)
		}
	}
}

func TestLoadRoundTrip(t *testing.T) {
	const dim = 512
	bases, queries, _ := family(13, dim, 300, 50)
	x := build(t, dim, DefaultParams(dim), bases[:250])
	recs := records(t, x)
	slices.Reverse(recs) // any order
	y, err := Load(dim, DefaultParams(dim), seqOf(recs))
	if err != nil {
		t.Fatal(err)
	}
	if y.Len() != x.Len() || y.entry != x.entry || y.maxLevel != x.maxLevel {
		t.Fatalf("loaded len %d entry %d level %d, want %d %d %d", y.Len(), y.entry, y.maxLevel, x.Len(), x.entry, x.maxLevel)
	}
	for _, q := range queries {
		a, _ := x.Search(q, 5)
		b, _ := y.Search(q, 5)
		if !slices.Equal(a, b) {
			t.Fatalf("search differs: %v vs %v", a, b)
		}
	}
	// later inserts build the same graph in both
	for i, v := range bases[250:] {
		ca, err1 := x.Insert(ID(5000+i), v)
		cb, err2 := y.Insert(ID(5000+i), v)
		if err1 != nil || err2 != nil || !slices.Equal(ca, cb) {
			t.Fatalf("insert after load: %v %v %v %v", ca, cb, err1, err2)
		}
	}
	ra, rb := records(t, x), records(t, y)
	for i := range ra {
		if !bytes.Equal(ra[i], rb[i]) {
			t.Fatalf("node %d differs after inserts", i)
		}
	}
}

// TestLoadOldSketch loads an index written with the sketch size used before
// 2026-12-04 (dim/64 codes): it keeps that size, searches as the original and
// takes new inserts at it; records of two sizes in one index are refused.
func TestLoadOldSketch(t *testing.T) {
	const dim = 64 * 300
	old := sketchSize(dim, oldSketchDiv)
	if old == SketchSize(dim) {
		t.Fatalf("dim %d: old and new sketch sizes agree (%d)", dim, old)
	}
	bases, queries, _ := family(15, dim, 60, 20)
	x, err := newIndex(dim, DefaultParams(dim), old)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range bases[:50] {
		if _, err := x.Insert(ID(1000+i), v); err != nil {
			t.Fatal(err)
		}
	}
	y, err := Load(dim, DefaultParams(dim), seqOf(records(t, x)))
	if err != nil {
		t.Fatal(err)
	}
	if y.codeLen() != old {
		t.Fatalf("loaded index keeps %d codes, want %d", y.codeLen(), old)
	}
	for _, q := range queries {
		a, _ := x.Search(q, 3)
		b, _ := y.Search(q, 3)
		if !slices.Equal(a, b) {
			t.Fatalf("search differs: %v vs %v", a, b)
		}
	}
	if _, err := y.Insert(ID(9000), bases[50]); err != nil {
		t.Fatal(err)
	}
	if n := len(y.nodes[y.byID[9000]].vec.code); n != old {
		t.Fatalf("insert after load keeps %d codes, want %d", n, old)
	}
	z, _ := New(dim, DefaultParams(dim))
	if _, err := z.Insert(ID(7777), bases[55]); err != nil {
		t.Fatal(err)
	}
	mixed := append(records(t, x), records(t, z)...)
	if _, err := Load(dim, DefaultParams(dim), seqOf(mixed)); !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), "codes") {
		t.Fatalf("records of two sketch sizes: err %v, want corrupt code count", err)
	}
}

// TestChangedComplete checks that persisting only the changed nodes after each
// insert keeps a record set that loads into the same index.
func TestChangedComplete(t *testing.T) {
	const dim = 64
	r := rand.New(rand.NewPCG(14, 1))
	p := Params{M: 4, Mmax0: 8, EfConstruction: 16, EfSearch: 16, Seed: 1}
	x, _ := New(dim, p)
	saved := map[ID][]byte{}
	for i := range 200 {
		ch, err := x.Insert(ID(i), normal(r, dim, 1))
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ch {
			saved[id], _ = x.MarshalNode(id)
		}
	}
	for _, n := range x.nodes {
		b, _ := x.MarshalNode(n.id)
		if !bytes.Equal(b, saved[n.id]) {
			t.Fatalf("node %d changed without being reported", n.id)
		}
	}
}

func TestErrors(t *testing.T) {
	if _, err := New(0, DefaultParams(1)); err == nil {
		t.Error("dim 0 accepted")
	}
	if _, err := New(8, Params{M: 1, Mmax0: 2, EfConstruction: 1, EfSearch: 1}); err == nil {
		t.Error("M 1 accepted")
	}
	x, _ := New(8, DefaultParams(8))
	if _, err := x.Insert(1, make([]float32, 7)); err == nil {
		t.Error("wrong dim accepted")
	}
	v := make([]float32, 8)
	v[3] = float32(math.NaN())
	if _, err := x.Insert(1, v); err == nil {
		t.Error("NaN accepted")
	}
	v[3] = float32(math.Inf(-1))
	if _, err := x.Search(v, 1); err == nil {
		t.Error("Inf query accepted")
	}
	if _, err := x.Insert(1, make([]float32, 8)); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Insert(1, make([]float32, 8)); err == nil {
		t.Error("duplicate id accepted")
	}
	if _, err := x.Search(make([]float32, 9), 1); err == nil {
		t.Error("wrong query dim accepted")
	}
	if _, err := x.MarshalNode(2); err == nil {
		t.Error("missing node marshalled")
	}
	if _, err := Rerank(make([]float32, 8), []Result{{1, 0}}, func(ID) ([]float32, error) { return nil, errors.New("gone") }); err == nil {
		t.Error("rerank error lost")
	}
	if res, err := x.Search(make([]float32, 8), 3); err != nil || len(res) != 1 || res[0].Dist != 0 {
		t.Errorf("search: %v %v", res, err)
	}
}

func TestCorruptRecords(t *testing.T) {
	const dim = 32
	bases, _, _ := family(15, dim, 40, 0)
	x := build(t, dim, DefaultParams(dim), bases)
	recs := records(t, x)
	if _, err := Load(dim, DefaultParams(dim), seqOf(recs)); err != nil {
		t.Fatal(err)
	}
	try := func(name string, mod func([][]byte) [][]byte) {
		t.Helper()
		c := make([][]byte, len(recs))
		for i := range recs {
			c[i] = slices.Clone(recs[i])
		}
		if _, err := Load(dim, DefaultParams(dim), seqOf(mod(c))); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	for n := 0; n < len(recs[5]); n += 7 {
		try("truncate", func(c [][]byte) [][]byte { c[5] = c[5][:n]; return c })
	}
	for i := range len(recs[5]) {
		try("flip", func(c [][]byte) [][]byte { c[5][i] ^= 0x10; return c })
	}
	try("missing neighbour", func(c [][]byte) [][]byte { return c[1:] })
	try("duplicate", func(c [][]byte) [][]byte { return append(c, c[3]) })
	try("wrong dim", func(c [][]byte) [][]byte {
		y, _ := New(dim+1, DefaultParams(dim))
		y.Insert(1, make([]float32, dim+1))
		b, _ := y.MarshalNode(1)
		return append(c, b)
	})
}

func TestConcurrentSearch(t *testing.T) {
	const dim = 128
	bases, queries, _ := family(16, dim, 200, 40)
	x := build(t, dim, DefaultParams(dim), bases[:20])
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := x.Search(queries[(g+i)%len(queries)], 3); err != nil {
					t.Error(err)
					return
				}
				if _, err := x.MarshalNode(1000 + ID(i%20)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i, v := range bases[20:] {
		if _, err := x.Insert(ID(1020+i), v); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if x.Len() != 200 {
		t.Errorf("len %d", x.Len())
	}
}
