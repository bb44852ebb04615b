package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/hnsw"
	"github.com/neurstore/neurstore/quant"
)

const familyDir = "../testdata/family"

// familyModel loads a safetensors file of the test families into memory.
func familyModel(t *testing.T, file string) *memModel {
	t.Helper()
	return loadModel(t, filepath.Join(familyDir, file))
}

// loadModel loads a model file (any format graph.OpenFile reads) into memory.
func loadModel(tb testing.TB, path string) *memModel {
	tb.Helper()
	src, err := graph.OpenFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	m := &memModel{}
	for i, ti := range src.Tensors {
		r, err := src.Open(i)
		if err != nil {
			tb.Fatal(err)
		}
		b := make([]byte, ti.Size)
		if _, err := io.ReadFull(r, b); err != nil {
			tb.Fatal(err)
		}
		m.add(ti.Name, ti.DType, ti.Shape, b)
	}
	return m
}

func importOpts(t *testing.T, s *Store, m *memModel, opts ImportOptions) *ImportResult {
	t.Helper()
	res, err := s.Import(context.Background(), m.source(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkWithin checks that every tensor of ref reads back within tau of m (exactly
// for non-float and one-dimensional tensors), and returns the largest error.
func checkWithin(t *testing.T, s *Store, ref string, m *memModel, tau float64) float64 {
	t.Helper()
	man := mustModel(t, s, ref)
	worst := 0.0
	for i, mt := range man.Tensors {
		var buf bytes.Buffer
		if err := s.ReadModelTensor(man, i, &buf); err != nil {
			t.Fatal(err)
		}
		got, want := buf.Bytes(), m.data[i]
		if len(got) != len(want) {
			t.Fatalf("%s: %s: %d bytes, want %d", ref, mt.Name, len(got), len(want))
		}
		_, isFloat := floatTarget(mt.DType)
		if !isFloat || len(mt.Shape) < 2 || tau == 0 {
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: %s: not bit-exact", ref, mt.Name)
			}
			continue
		}
		n := len(got) / mt.DType.Size()
		g, w := make([]float32, n), make([]float32, n)
		toFloat32(g, got, mt.DType)
		toFloat32(w, want, mt.DType)
		for j := range g {
			if math.IsNaN(float64(w[j])) || math.IsInf(float64(w[j]), 0) {
				if math.Float32bits(g[j]) != math.Float32bits(w[j]) {
					t.Fatalf("%s: %s[%d] = %v, want %v bit for bit", ref, mt.Name, j, g[j], w[j])
				}
				continue
			}
			e := math.Abs(float64(g[j]) - float64(w[j]))
			if !(e <= tau) {
				t.Fatalf("%s: %s[%d] = %v, want %v within %v (error %v)", ref, mt.Name, j, g[j], w[j], tau, e)
			}
			worst = max(worst, e)
		}
	}
	return worst
}

var mlpFamily = []string{"base", "ft1", "ft2", "ft3", "other"}

func TestLosslessDeltasOnFamily(t *testing.T) {
	s := openTest(t)
	var logical int64
	for _, role := range mlpFamily {
		m := familyModel(t, "digits-mlp-"+role+".safetensors")
		res := importOpts(t, s, m, ImportOptions{Ref: "mlp-" + role})
		t.Logf("%s: %d new (%d deltas), %d stored bytes of %d", role, res.NewTensors, res.DeltaTensors, res.StoredBytes, res.NewBytes)
		switch role {
		case "base", "other":
			// An unrelated model may only use a delta where it is smaller, which
			// happens for LayerNorm weights (all near 1); never for a matrix.
			for _, mt := range mustModel(t, s, "mlp-"+role).Tensors {
				if rec, _ := s.Record(mt.ID); !mt.Inline() && rec.Encoding.IsDelta() && len(mt.Shape) > 1 {
					t.Errorf("%s: %s stored as a delta against an unrelated tensor", role, mt.Name)
				}
			}
		default:
			if res.DeltaTensors < 3 {
				t.Errorf("%s: only %d deltas; a fine-tune should be stored against its base", role, res.DeltaTensors)
			}
		}
		checkModel(t, s, "mlp-"+role, m)
		for _, d := range m.data {
			logical += int64(len(d))
		}
	}
	mustVerify(t, s)
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.LogicalBytes != logical || st.Deltas == 0 || st.IndexBytes == 0 || st.KeptBytes >= logical {
		t.Fatalf("stats %+v: want %d logical bytes, deltas, index bytes and a ratio above 1", st, logical)
	}
	checkBreakdown(t, st, "bit-delta", "planes", "inline")

	// The index survives a reopen: a fine-tune imported later still finds its base.
	dir := t.TempDir()
	s2 := openDir(t, dir)
	importOpts(t, s2, familyModel(t, "digits-mlp-base.safetensors"), ImportOptions{Ref: "base"})
	s2.Close()
	s2 = openDir(t, dir)
	defer s2.Close()
	res := importOpts(t, s2, familyModel(t, "digits-mlp-ft1.safetensors"), ImportOptions{Ref: "ft1"})
	if res.DeltaTensors < 3 {
		t.Fatalf("after a reopen: %d deltas", res.DeltaTensors)
	}
	mustVerify(t, s2)
}

func TestLossyWithinTau(t *testing.T) {
	for _, tau := range []float64{1e-4, 1e-3, 1e-2} {
		s := openTest(t)
		prev := int64(math.MaxInt64)
		for _, role := range mlpFamily {
			m := familyModel(t, "digits-mlp-"+role+".safetensors")
			ref := "mlp-" + role
			res := importOpts(t, s, m, ImportOptions{Ref: ref, Tau: tau})
			worst := checkWithin(t, s, ref, m, tau)
			t.Logf("tau %g %s: %d deltas, %d stored bytes, worst error %.3g", tau, role, res.DeltaTensors, res.StoredBytes, worst)
			if role != "base" && role != "other" && res.StoredBytes >= prev {
				t.Errorf("tau %g: fine-tune %s takes %d bytes, not less than the base's %d", tau, role, res.StoredBytes, prev)
			}
			if role == "base" {
				prev = res.StoredBytes
			}
		}
		// Importing the same model at the same tau stores nothing new.
		res := importOpts(t, s, familyModel(t, "digits-mlp-ft2.safetensors"), ImportOptions{Ref: "again", Tau: tau})
		if res.NewTensors != 0 {
			t.Errorf("tau %g: a re-import stored %d new tensors", tau, res.NewTensors)
		}
		mustVerify(t, s)
		man := mustModel(t, s, "mlp-ft1")
		if man.Params.Mode != "lossy" || man.Params.Tau != tau {
			t.Errorf("params %+v", man.Params)
		}
	}
}

func TestLossyHalfPrecision(t *testing.T) {
	s := openTest(t)
	for _, f := range []string{"digits-mlp-base-f16.safetensors", "digits-mlp-base-bf16.safetensors"} {
		m := familyModel(t, f)
		for _, tau := range []float64{1e-4, 3e-3} {
			ref := "h" + f[len(f)-16:len(f)-12] + "-" + string(rune('a'+int(tau*1e4)%26))
			importOpts(t, s, m, ImportOptions{Ref: ref, Tau: tau})
			checkWithin(t, s, ref, m, tau)
		}
	}
	mustVerify(t, s)
}

// The reconstruction at tau > 0 does not depend on the base a delta is stored
// against: the same fine-tune reads back the same bytes with or without its base.
func TestLossyReconstructionIndependentOfBase(t *testing.T) {
	ft := familyModel(t, "digits-mlp-ft1.safetensors")
	read := func(withBase bool) [][]byte {
		s := openTest(t)
		if withBase {
			importOpts(t, s, familyModel(t, "digits-mlp-base.safetensors"), ImportOptions{Ref: "base", Tau: 1e-3})
		}
		res := importOpts(t, s, ft, ImportOptions{Ref: "ft", Tau: 1e-3})
		if withBase != (res.DeltaTensors > 0) {
			t.Fatalf("with base %v: %d deltas", withBase, res.DeltaTensors)
		}
		var out [][]byte
		man := mustModel(t, s, "ft")
		for i := range man.Tensors {
			var buf bytes.Buffer
			if err := s.ReadModelTensor(man, i, &buf); err != nil {
				t.Fatal(err)
			}
			out = append(out, buf.Bytes())
		}
		return out
	}
	a, b := read(false), read(true)
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("tensor %d differs with and without the base", i)
		}
	}
}

// A lossy import against a base stored losslessly, and a lossless import against a
// lossy base, both work and stay within their bounds.
func TestMixedModes(t *testing.T) {
	s := openTest(t)
	base := familyModel(t, "digits-mlp-base.safetensors")
	ft1 := familyModel(t, "digits-mlp-ft1.safetensors")
	ft2 := familyModel(t, "digits-mlp-ft2.safetensors")
	importOpts(t, s, base, ImportOptions{Ref: "base"})
	if res := importOpts(t, s, ft1, ImportOptions{Ref: "ft1", Tau: 1e-3}); res.DeltaTensors == 0 {
		t.Error("a lossy fine-tune found no lossless base")
	}
	checkWithin(t, s, "ft1", ft1, 1e-3)
	importOpts(t, s, ft2, ImportOptions{Ref: "ft2"})
	checkModel(t, s, "ft2", ft2)
	mustVerify(t, s)
}

func TestRemoveKeepsBasesOfLiveDeltas(t *testing.T) {
	for _, tau := range []float64{0, 1e-3} {
		s := openTest(t)
		base := familyModel(t, "digits-mlp-base.safetensors")
		ft1 := familyModel(t, "digits-mlp-ft1.safetensors")
		importOpts(t, s, base, ImportOptions{Ref: "base", Tau: tau})
		importOpts(t, s, ft1, ImportOptions{Ref: "ft1", Tau: tau})
		if err := s.Remove("base"); err != nil {
			t.Fatal(err)
		}
		checkWithin(t, s, "ft1", ft1, tau)
		mustVerify(t, s)
		if tau > 0 {
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			checkBreakdown(t, st, "grid-delta", "inline")
		}
		if err := s.Remove("ft1"); err != nil {
			t.Fatal(err)
		}
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Tensors != 0 || st.StoredBytes != 0 {
			t.Fatalf("tau %g: after removing every model: %+v", tau, st)
		}
		mustVerify(t, s)
		// Removed bases stay in the graph but are never offered again.
		res := importOpts(t, s, ft1, ImportOptions{Ref: "ft1", Tau: tau})
		if res.DeltaTensors != 0 {
			t.Fatalf("tau %g: %d deltas against removed bases", tau, res.DeltaTensors)
		}
		checkWithin(t, s, "ft1", ft1, tau)
		mustVerify(t, s)
	}
}

// Tensors of one model dedup against each other: a tensor close to an earlier
// tensor of the same import is stored as a delta.
func TestDedupInsideOneModel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	a := make([]float32, 128*64)
	for i := range a {
		a[i] = float32(r.NormFloat64() * 0.05)
	}
	b := make([]float32, len(a))
	for i := range b {
		b[i] = a[i] + float32(r.NormFloat64()*1e-4)
	}
	m := &memModel{}
	m.add("a", graph.F32, []int64{128, 64}, f32bytes(a))
	m.add("b", graph.F32, []int64{128, 64}, f32bytes(b))
	for _, tau := range []float64{0, 1e-4} {
		s := openTest(t)
		res := importOpts(t, s, m, ImportOptions{Ref: "m", Tau: tau})
		if res.DeltaTensors != 1 {
			t.Errorf("tau %g: %d deltas, want 1", tau, res.DeltaTensors)
		}
		checkWithin(t, s, "m", m, tau)
		mustVerify(t, s)
	}
}

func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	quant.EncodeF32(b, v)
	return b
}

// matrixModel is a model of one F32 matrix "w" of rows x cols values.
func matrixModel(rows, cols int, vals []float32) *memModel {
	m := &memModel{}
	m.add("w", graph.F32, []int64{int64(rows), int64(cols)}, f32bytes(vals))
	return m
}

// NaN, Inf and extreme values come back bit for bit at tau > 0.
func TestLossySpecialValues(t *testing.T) {
	v := make([]float32, 32*32)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	v[3] = float32(math.NaN())
	v[5] = float32(math.Inf(1))
	v[7] = float32(math.Inf(-1))
	v[9] = math.MaxFloat32
	v[11] = math.SmallestNonzeroFloat32
	m := &memModel{}
	m.add("w", graph.F32, []int64{32, 32}, f32bytes(v))
	s := openTest(t)
	importOpts(t, s, m, ImportOptions{Ref: "m", Tau: 1e-2})
	checkWithin(t, s, "m", m, 1e-2)
	mustVerify(t, s)
}

func TestImportBadDedupInput(t *testing.T) {
	s := openTest(t)
	m := familyModel(t, "digits-mlp-base.safetensors")
	importOpts(t, s, m, ImportOptions{Ref: "base"})
	before := snapshotKeys(t, s)
	for _, opts := range []ImportOptions{
		{Ref: "x", Tau: -1e-3},
		{Ref: "x", Tau: math.NaN()},
		{Ref: "x", Tau: math.Inf(1)},
		{Ref: "x", Base: "missing"},
		{Ref: "x", Base: "bad/name"},
	} {
		_, err := s.Import(context.Background(), m.source(), opts)
		if err == nil {
			t.Errorf("import %+v succeeded", opts)
			continue
		}
		t.Logf("%+v: %v", opts, err)
		if opts.Base == "missing" && !errors.Is(err, ErrNotFound) {
			t.Errorf("missing base: %v, want ErrNotFound", err)
		}
	}
	if after := snapshotKeys(t, s); after != before {
		t.Fatal("a failed import changed the store")
	}
}

// --base offers the named model's tensors as bases.
func TestImportWithBaseModel(t *testing.T) {
	s := openTest(t)
	importOpts(t, s, familyModel(t, "digits-mlp-base.safetensors"), ImportOptions{Ref: "base", Tau: 1e-3})
	ft := familyModel(t, "digits-mlp-ft3.safetensors")
	res := importOpts(t, s, ft, ImportOptions{Ref: "ft3", Tau: 1e-3, Base: "base"})
	if res.DeltaTensors == 0 {
		t.Fatal("no deltas against the --base model")
	}
	if got := mustModel(t, s, "ft3").Lineage.Base; got != "base:latest" {
		t.Fatalf("lineage base %q", got)
	}
	checkWithin(t, s, "ft3", ft, 1e-3)
}

// A failed import after new bases entered the in-memory index leaves no trace: the
// next import and verify see the store as it was.
func TestFailedImportForgetsIndexChanges(t *testing.T) {
	s := openTest(t)
	m := familyModel(t, "digits-mlp-base.safetensors")
	before := snapshotKeys(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	src := m.source()
	open := src.Open
	src = graph.NewSource(src.Format, src.Tensors, nil, func(i int) (io.Reader, error) {
		if n++; n == len(m.tensors) {
			cancel()
		}
		return open(i)
	})
	if _, err := s.Import(ctx, src, ImportOptions{Ref: "base"}); err == nil {
		t.Fatal("cancelled import succeeded")
	}
	if s.GC(); snapshotKeys(t, s) != before {
		t.Fatal("the failed import left keys behind")
	}
	res := importOpts(t, s, familyModel(t, "digits-mlp-ft1.safetensors"), ImportOptions{Ref: "ft1"})
	if res.DeltaTensors != 0 {
		t.Fatalf("%d deltas against bases of a failed import", res.DeltaTensors)
	}
	mustVerify(t, s)
}

// recordingBackend remembers the keys of the last batch applied.
type recordingBackend struct {
	Backend
	last []string
}

func (r *recordingBackend) Apply(b *Batch, sync bool) error {
	r.last = r.last[:0]
	for _, op := range b.ops {
		if op.kind == opSet {
			r.last = append(r.last, string(op.key))
		}
	}
	return r.Backend.Apply(b, sync)
}

// Adding a base to a large index writes only the nodes that changed.
func TestIndexWritesOnlyChangedNodes(t *testing.T) {
	be, err := OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rb := &recordingBackend{Backend: be}
	s, err := New(rb)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(9, 9))
	randModel := func(n int) *memModel {
		m := &memModel{}
		for i := 0; i < n; i++ {
			v := make([]float32, 256)
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
			m.add(fmt.Sprintf("w%d", i), graph.F32, []int64{16, 16}, f32bytes(v))
		}
		return m
	}
	res := importOpts(t, s, randModel(300), ImportOptions{Ref: "a", Tau: 1e-2})
	bases := res.NewTensors - res.DeltaTensors
	countIndex := func(keys []string) int {
		n := 0
		for _, k := range keys {
			if k[0] == prefixIndex {
				n++
			}
		}
		return n
	}
	if n := countIndex(rb.last); n != bases || bases < 250 {
		t.Fatalf("first import wrote %d index nodes for %d bases", n, bases)
	}
	importOpts(t, s, randModel(1), ImportOptions{Ref: "b", Tau: 1e-2})
	n := countIndex(rb.last)
	p := hnsw.DefaultParams(256)
	if n < 1 || n > 1+p.Mmax0+p.M*4 {
		t.Fatalf("adding one base wrote %d index nodes of %d", n, bases+1)
	}
	t.Logf("adding one base to %d wrote %d nodes", bases, n)
	mustVerify(t, s)
}

func TestGridTau(t *testing.T) {
	for _, c := range []struct {
		tau  float64
		dt   graph.DType
		want float64
	}{
		{1e-3, graph.F32, 1e-3},
		{1e-3, graph.F16, 1.0 / 1024},
		{1e-4, graph.BF16, 1.0 / 16384},
		{0.5, graph.F16, 0.5},
		{0.75, graph.BF16, 0.5},
	} {
		if got := gridTau(c.tau, c.dt); got != c.want || got > c.tau {
			t.Errorf("gridTau(%g, %s) = %g, want %g", c.tau, c.dt, got, c.want)
		}
	}
}

// A tensor whose nearest base has another dtype: lossless imports fall back to a
// base of their own (a bit-pattern delta needs equal element sizes); lossy ones
// put the base on their grid and stay within tau.
func TestCrossDTypeBases(t *testing.T) {
	s := openTest(t)
	base := familyModel(t, "digits-mlp-base.safetensors")
	half := familyModel(t, "digits-mlp-base-bf16.safetensors")
	importOpts(t, s, base, ImportOptions{Ref: "f32"})
	res := importOpts(t, s, half, ImportOptions{Ref: "bf16"})
	if res.DeltaTensors != 0 {
		t.Errorf("lossless bf16 import made %d deltas against f32 bases", res.DeltaTensors)
	}
	checkModel(t, s, "bf16", half)
	mustVerify(t, s)

	s = openTest(t)
	importOpts(t, s, base, ImportOptions{Ref: "f32", Tau: 1e-2})
	res = importOpts(t, s, half, ImportOptions{Ref: "bf16", Tau: 1e-2})
	if res.DeltaTensors == 0 {
		t.Error("lossy bf16 import made no delta against the f32 copy of its weights")
	}
	checkWithin(t, s, "bf16", half, 1e-2)
	mustVerify(t, s)
}

// Matrices whose rows (a token embedding) or columns (an output head, by the
// scale of its input features) differ in spread are stored with their codes in
// classes (quant's cells codec), on the real import path: a new base and a
// fine-tune that moves only some rows or columns, over two chunks of which the
// second starts inside a row. Both read back within tau and verify.
func TestLossyCodesInClasses(t *testing.T) {
	const rows, cols, tau = 1500, 300, 1e-3
	for _, byCol := range []bool{false, true} {
		r := rand.New(rand.NewPCG(21, 1))
		spread, move := make([]float64, max(rows, cols)), make([]float64, max(rows, cols))
		for i := range spread {
			spread[i] = 0.002 + 0.05*math.Pow(r.Float64(), 3)
			if i%5 == 0 {
				move[i] = 0.01
			}
		}
		base := make([]float32, rows*cols)
		ft := make([]float32, rows*cols)
		for i := range rows {
			for j := range cols {
				k := i
				if byCol {
					k = j
				}
				base[i*cols+j] = float32(r.NormFloat64() * spread[k])
				ft[i*cols+j] = base[i*cols+j] + float32(r.NormFloat64()*move[k])
			}
		}
		s := openTest(t)
		for _, m := range []struct {
			ref  string
			vals []float32
			enc  Encoding
		}{{"base", base, EncGrid}, {"ft", ft, EncGridDelta}} {
			mm := matrixModel(rows, cols, m.vals)
			importOpts(t, s, mm, ImportOptions{Ref: m.ref, Tau: tau})
			checkWithin(t, s, m.ref, mm, tau)
			enc, codecs := chunkHeaderBytes(t, s, mustModel(t, s, m.ref).Tensors[0].ID, 1)
			if enc != m.enc {
				t.Fatalf("by column %v, %s: encoding %s, want %s", byCol, m.ref, enc, m.enc)
			}
			if len(codecs) != 2 || codecs[0] != 3 || codecs[1] != 3 {
				t.Errorf("by column %v, %s: chunk codecs %v, want two cells (3) chunks", byCol, m.ref, codecs)
			}
		}
		mustVerify(t, s)
	}
}

// A lossless fine-tune of a large enough matrix is stored as a difference coded
// in classes of its base's exponent (quant's mode 3), in f32 and in bf16, and
// reads back bit for bit; verify checks it.
func TestLosslessDeltaInBaseClasses(t *testing.T) {
	const rows, cols = 256, 300 // 76,800 elements: one chunk
	r := rand.New(rand.NewPCG(22, 1))
	base := make([]float32, rows*cols)
	ft := make([]float32, rows*cols)
	for i := range base {
		base[i] = float32(r.NormFloat64() * 0.03)
		ft[i] = base[i] + float32(r.NormFloat64()*0.001)
	}
	s := openTest(t)
	for _, dt := range []graph.DType{graph.F32, graph.BF16} {
		for _, m := range []struct {
			ref  string
			vals []float32
		}{{"base", base}, {"ft", ft}} {
			ref := m.ref + "-" + dt.String()
			mm := &memModel{}
			b := make([]byte, dt.Size()*len(m.vals))
			fromFloat32(b, m.vals, dt)
			mm.add("w", dt, []int64{rows, cols}, b)
			importOpts(t, s, mm, ImportOptions{Ref: ref})
			checkModel(t, s, ref, mm)
			if m.ref != "ft" {
				continue
			}
			enc, modes := chunkHeaderBytes(t, s, mustModel(t, s, ref).Tensors[0].ID, 2)
			if enc != EncXOR {
				t.Fatalf("%s: encoding %s, want a lossless delta", ref, enc)
			}
			if len(modes) != 1 || modes[0] != 3 {
				t.Errorf("%s: chunk modes %v, want one in base classes (3)", ref, modes)
			}
		}
	}
	mustVerify(t, s)
}

// chunkHeaderBytes returns tensor id's encoding and byte k of each of its chunk
// blobs (a quant blob's codec or a lossless blob's mode).
func chunkHeaderBytes(t *testing.T, s *Store, id TensorID, k int) (Encoding, []byte) {
	t.Helper()
	rec, err := getRecord(s.be, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	if err := chunks(s.be, id, rec, func(i int, lo, hi int64, blob []byte) error {
		out = append(out, blob[k])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return rec.Encoding, out
}

// A fine-tune made by merging a rank-8 LoRA adapter into its base is stored as a
// grid delta with a low-rank prediction, on the real import path (two chunks, the
// second starting inside a row): it reads back within tau, GridDelta (what the
// runtime's compressed mode reads) gives its whole delta codes, verify passes,
// and it costs less than half of a full-rank delta of the same spread.
func TestLossyLowRankDelta(t *testing.T) {
	const rows, cols, rank, tau = 1024, 384, 8, 1e-4
	r := rand.New(rand.NewPCG(23, 1))
	base := make([]float32, rows*cols)
	for i := range base {
		base[i] = float32(r.NormFloat64() * 0.02)
	}
	a, b := make([]float64, rows*rank), make([]float64, rank*cols)
	for i := range a {
		a[i] = r.NormFloat64() * 0.03
	}
	for i := range b {
		b[i] = r.NormFloat64() * 0.03
	}
	lora, full := make([]float32, rows*cols), make([]float32, rows*cols)
	for i := range rows {
		for j := range cols {
			var d float64
			for k := range rank {
				d += a[i*rank+k] * b[k*cols+j]
			}
			lora[i*cols+j] = base[i*cols+j] + float32(d)
			full[i*cols+j] = base[i*cols+j] + float32(r.NormFloat64()*0.03*0.03*math.Sqrt(rank))
		}
	}
	s := openTest(t)
	cost := map[string]int64{}
	for _, m := range []struct {
		ref  string
		vals []float32
	}{{"base", base}, {"lora", lora}, {"full", full}} {
		mm := matrixModel(rows, cols, m.vals)
		importOpts(t, s, mm, ImportOptions{Ref: m.ref, Tau: tau})
		checkWithin(t, s, m.ref, mm, tau)
		id := mustModel(t, s, m.ref).Tensors[0].ID
		st, err := s.Storage(id)
		if err != nil {
			t.Fatal(err)
		}
		cost[m.ref] = st.Stored + st.FactorBytes
		if m.ref == "base" {
			continue
		}
		if st.Encoding != EncGridDelta {
			t.Fatalf("%s: encoding %s, want grid-delta", m.ref, st.Encoding)
		}
		if (st.Rank > 0) != (m.ref == "lora") || m.ref == "lora" && st.Rank < rank {
			t.Errorf("%s: low rank %d", m.ref, st.Rank)
		}
		// the delta codes the runtime reads, added to the base's, give the tensor
		gd, ok, err := s.GridDelta(id)
		if err != nil || !ok {
			t.Fatalf("%s: GridDelta: ok %v, %v", m.ref, ok, err)
		}
		for i, v := range gridDeltaValues(t, s, gd) {
			if math.Abs(float64(v)-float64(m.vals[i])) > tau {
				t.Fatalf("%s: element %d: %v from GridDelta, want within %v of %v", m.ref, i, v, tau, m.vals[i])
			}
		}
	}
	if cost["lora"]*2 > cost["full"] {
		t.Errorf("LoRA delta %d bytes, full-rank delta %d: want under half", cost["lora"], cost["full"])
	}
	t.Logf("bytes: base %d, LoRA delta %d, full-rank delta %d", cost["base"], cost["lora"], cost["full"])
	mustVerify(t, s)

	// Factors cut short or of another rank are corruption, found by verify and
	// by every read, never a panic or a wrong tensor.
	id := mustModel(t, s, "lora").Tensors[0].ID
	good, err := s.Record(id)
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(p []byte) []byte{
		"cut":      func(p []byte) []byte { return p[:len(p)-3] },
		"rank 0":   func(p []byte) []byte { p[gridParamsLen+1] = 0; return p },
		"trailing": func(p []byte) []byte { return append(p, 1) },
	} {
		rec := *good
		rec.Params = mut(slices.Clone(good.Params))
		var b Batch
		b.Set(recordKey(id), rec.encode())
		if err := s.be.Apply(&b, true); err != nil {
			t.Fatal(err)
		}
		if rep, err := s.Verify(nil); err != nil || rep.OK() {
			t.Errorf("%s: verify: %v, %v; want a fault", name, rep, err)
		}
		if err := s.ReadTensor(id, io.Discard); !IsCorruption(err) {
			t.Errorf("%s: read: %v, want ErrCorruption", name, err)
		}
		if _, _, err := s.GridDelta(id); !IsCorruption(err) {
			t.Errorf("%s: GridDelta: %v, want ErrCorruption", name, err)
		}
	}
}

// A run's checkpoints, each imported with --base the one before it, are kept as
// a chain of grid deltas (each against the checkpoint before), smaller than
// deltas against the first; every one reads back within tau, GridDelta gives
// the codes against the chain's root, verify passes, removing a checkpoint in
// the middle leaves the later ones readable, and no chain grows past maxChain.
func TestLossyDeltaChain(t *testing.T) {
	const rows, cols, tau, n = 1024, 300, 1e-3, 11
	r := rand.New(rand.NewPCG(24, 1))
	ckpt := make([][]float32, n)
	ckpt[0] = make([]float32, rows*cols)
	for i := range ckpt[0] {
		ckpt[0][i] = float32(r.NormFloat64() * 0.05)
	}
	for k := 1; k < n; k++ {
		ckpt[k] = slices.Clone(ckpt[k-1])
		for i := range ckpt[k] {
			ckpt[k][i] += float32(r.NormFloat64() * 0.004)
		}
	}
	models := make([]*memModel, n)
	for k := range models {
		models[k] = matrixModel(rows, cols, ckpt[k])
	}
	ref := func(k int) string { return fmt.Sprintf("c%d", k) }
	chained, star := openTest(t), openTest(t)
	var chainBytes, starBytes int64
	for k, m := range models {
		opts := ImportOptions{Ref: ref(k), Tau: tau}
		if k > 0 {
			opts.Base = ref(k - 1)
		}
		cb := importOpts(t, chained, m, opts).StoredBytes
		if k > 0 {
			opts.Base = ref(0)
		}
		sb := importOpts(t, star, m, opts).StoredBytes
		if k > 0 { // the deltas
			chainBytes, starBytes = chainBytes+cb, starBytes+sb
		}
		checkWithin(t, chained, ref(k), m, tau)
	}
	if chainBytes*10 > starBytes*8 {
		t.Errorf("later checkpoints as a chain %d bytes, against the first %d: want at least 20%% less", chainBytes, starBytes)
	}
	t.Logf("later checkpoints' bytes: as a chain %d, against the first %d", chainBytes, starBytes)
	id := func(k int) TensorID { return mustModel(t, chained, ref(k)).Tensors[0].ID }
	for k := 1; k < n; k++ {
		rec, err := chained.Record(id(k))
		if err != nil {
			t.Fatal(err)
		}
		root, _, d, err := chainRoot(recordGetter(chained.be), id(k), rec)
		if err != nil || d < 1 || d > maxChain || root != id(0) {
			t.Fatalf("c%d: chain depth %d to %s, %v; want 1..%d to c0", k, d, root.Short(), err, maxChain)
		}
		if prev := id(k - 1); k <= maxChain && (rec.Encoding != EncGridDelta || !bytes.Equal(rec.Base, prev[:])) {
			t.Errorf("c%d: %s against %x, want a grid delta against c%d", k, rec.Encoding, rec.Base[:6], k-1)
		}
	}
	// what the runtime reads: the codes against the chain's root
	gd, ok, err := chained.GridDelta(id(3))
	if err != nil || !ok || gd.Base != id(0) {
		t.Fatalf("GridDelta: ok %v, base %s, %v; want c0's %s", ok, gd.Base.Short(), err, id(0).Short())
	}
	for i, v := range gridDeltaValues(t, chained, gd) {
		if math.Abs(float64(v)-float64(ckpt[3][i])) > tau {
			t.Fatalf("GridDelta of c3: element %d is %v, want within %v of %v", i, v, tau, ckpt[3][i])
		}
	}
	mustVerify(t, chained)

	// removing checkpoints in the middle keeps the later ones whole
	for _, k := range []int{2, 5} {
		if err := chained.Remove(ref(k)); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []int{3, 4, 6, n - 1} {
		checkWithin(t, chained, ref(k), models[k], tau)
	}
	mustVerify(t, chained)
	for k := range n {
		if k != 2 && k != 5 {
			if err := chained.Remove(ref(k)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st, err := chained.Stats(); err != nil || st.Tensors != 0 {
		t.Fatalf("after removing every checkpoint: %v tensors, %v", st.Tensors, err)
	}
}

// checkBreakdown checks that st's breakdown adds up: its parts to the kept bytes,
// its records to the tensors, deltas and stored bytes; and that it has each of
// encodings.
func checkBreakdown(t *testing.T, st *Stats, encodings ...string) {
	t.Helper()
	bd := st.Breakdown
	sum := bd.Pages + bd.Records + bd.Manifests + bd.Graphs + bd.Index + bd.Other
	var tensors, deltas int
	var stored int64
	for name, e := range bd.Encodings {
		sum += e.Stored
		if e.Tensors <= 0 || e.Elements <= 0 || e.Logical < e.Elements || e.Stored <= 0 {
			t.Errorf("breakdown of %s: %+v", name, e)
		}
		if name == EncInline.String() {
			continue
		}
		tensors += e.Tensors
		stored += e.Stored
		if name == EncXOR.String() || name == EncGridDelta.String() {
			deltas += e.Tensors
		}
	}
	if sum != st.KeptBytes || tensors != st.Tensors || deltas != st.Deltas || stored != st.StoredBytes || bd.Index != st.IndexBytes {
		t.Errorf("breakdown %+v sums to %d kept bytes, %d tensors, %d deltas, %d stored; stats say %d, %d, %d, %d",
			bd, sum, tensors, deltas, stored, st.KeptBytes, st.Tensors, st.Deltas, st.StoredBytes)
	}
	if bd.Pages <= 0 || bd.Records <= 0 || bd.Manifests <= 0 {
		t.Errorf("breakdown %+v: pages, records and manifests must cost bytes", bd)
	}
	for _, name := range encodings {
		if _, ok := bd.Encodings[name]; !ok {
			t.Errorf("breakdown %+v has no %s tensors", bd, name)
		}
	}
}

// A fine-tune's norm is a bit delta against its base's norm even where that norm
// is itself a bit delta (against another layer's norm, inside the base model): a
// lossless chain. Without chains it was a delta against the other layer's norm,
// about 4 bits per element larger on text-medium. At tau > 0 too, where 1-D
// tensors are kept exact.
func TestLosslessDeltaChain(t *testing.T) {
	const n = 512
	r := rand.New(rand.NewPCG(31, 4))
	norm1 := make([]float32, n)
	for i := range norm1 {
		norm1[i] = float32(1 + 0.05*r.NormFloat64())
	}
	norm2 := slices.Clone(norm1)
	for i := range norm2 {
		norm2[i] += float32(1e-4 * r.NormFloat64())
	}
	nudge := func(v []float32) []float32 {
		out := slices.Clone(v)
		for i := range out {
			out[i] += float32(1e-6 * r.NormFloat64())
		}
		return out
	}
	model := func(a, b []float32) *memModel {
		m := &memModel{}
		m.add("norm1", graph.F32, []int64{n}, f32bytes(a))
		m.add("norm2", graph.F32, []int64{n}, f32bytes(b))
		return m
	}
	for _, tau := range []float64{0, 1e-3} {
		s := openTest(t)
		base := model(norm1, norm2)
		importOpts(t, s, base, ImportOptions{Ref: "base", Tau: tau})
		bm := mustModel(t, s, "base")
		brec, err := s.Record(bm.Tensors[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		if id1 := bm.Tensors[0].ID; brec.Encoding != EncXOR || !bytes.Equal(brec.Base, id1[:]) {
			t.Fatalf("tau %g: base's norm2 is %s against %x; want a bit delta against norm1", tau, brec.Encoding, brec.Base)
		}

		ft := model(nudge(norm1), nudge(norm2))
		importOpts(t, s, ft, ImportOptions{Ref: "ft", Tau: tau, Base: "base"})
		rec, err := s.Record(mustModel(t, s, "ft").Tensors[1].ID)
		if err != nil {
			t.Fatal(err)
		}
		if id2 := bm.Tensors[1].ID; rec.Encoding != EncXOR || !bytes.Equal(rec.Base, id2[:]) {
			t.Fatalf("tau %g: ft's norm2 is %s against %x; want a bit delta against the base's norm2 %s", tau, rec.Encoding, rec.Base, id2.Short())
		}
		checkModel(t, s, "ft", ft)
		mustVerify(t, s)
		// the chain outlives the model that started it
		if err := s.Remove("base"); err != nil {
			t.Fatal(err)
		}
		checkModel(t, s, "ft", ft)
		mustVerify(t, s)
	}
}

// A delta's base may be a delta only of its own kind: a bit delta against a grid
// delta (or the other way round) is corruption, never decoded.
func TestMixedChainIsCorrupt(t *testing.T) {
	var a, b, c TensorID
	a[0], b[0], c[0] = 1, 2, 3
	shape := []int64{4}
	raw := &Record{Encoding: EncRaw, DType: graph.F32, Shape: shape, Size: 16, Stored: 16, Blob: 1, PageSize: 64, Pages: 1, Refs: 1}
	grid := &Record{Encoding: EncGridDelta, DType: graph.F32, Shape: shape, Size: 16, Blob: 2, PageSize: 64, Refs: 1, Base: a[:], Params: gridParams{Tau: 1e-3}.encode()}
	xor := &Record{Encoding: EncXOR, DType: graph.F32, Shape: shape, Size: 16, Blob: 3, PageSize: 64, Refs: 1, Base: b[:]}
	m := memReader{string(recordKey(a)): raw.encode(), string(recordKey(b)): grid.encode(), string(recordKey(c)): xor.encode()}
	if _, _, err := loadBase(m, c, xor); !IsCorruption(err) || !strings.Contains(err.Error(), "another kind") {
		t.Fatalf("bit delta against a grid delta: %v, want corruption", err)
	}
	grid2 := *grid
	grid2.Base = c[:]
	if _, _, err := loadBase(m, b, &grid2); !IsCorruption(err) {
		t.Fatalf("grid delta against a bit delta: %v, want corruption", err)
	}
}

// A fine-tune's matrix is stored as a delta only where that is smaller than
// storing it as a new base: checked against the size the same matrix takes
// imported on its own, for deltas far cheaper than a base (taken on the base's
// size or on quant.PlaneBytes' estimate, without encoding the base), close to
// one, and dearer than one.
func TestDeltaOnlyWhereSmaller(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	const n = 256 * 256
	base := make([]float32, n)
	for i := range base {
		base[i] = float32(r.NormFloat64() * 0.02)
	}
	for _, tau := range []float64{1e-4, 1e-3} {
		deltas, bases := 0, 0
		// a fine-tune moved by N(0, moved) from the base, or (kept < 1) kept times
		// the base plus noise: a delta against the base then costs more than the
		// tensor on its own
		for _, c := range []struct{ kept, moved float64 }{
			{1, 0.0005}, {1, 0.002}, {1, 0.004}, {1, 0.008}, {1, 0.016}, {1, 0.06},
			{0, 0.005}, {0, 0.03}, {0.5, 0.01}, {-1, 0.001},
		} {
			moved := c.moved
			ft := make([]float32, n)
			for i := range ft {
				ft[i] = float32(c.kept*float64(base[i]) + r.NormFloat64()*moved)
			}
			bm, fm := &memModel{}, &memModel{}
			bm.add("w", graph.F32, []int64{256, 256}, f32bytes(base))
			fm.add("w", graph.F32, []int64{256, 256}, f32bytes(ft))

			s := openTest(t)
			importOpts(t, s, bm, ImportOptions{Ref: "base", Tau: tau})
			importOpts(t, s, fm, ImportOptions{Ref: "ft", Tau: tau, Base: "base"})
			rec := mustRecord(t, s, mustModel(t, s, "ft").Tensors[0].ID)

			alone := openTest(t)
			importOpts(t, alone, fm, ImportOptions{Ref: "ft", Tau: tau})
			own := mustRecord(t, alone, mustModel(t, alone, "ft").Tensors[0].ID)

			t.Logf("tau %g, %+v: %s %d bytes, alone %d", tau, c, rec.Encoding, rec.Stored, own.Stored)
			if rec.Encoding == EncGridDelta {
				deltas++
				if rec.Stored > own.Stored {
					t.Errorf("tau %g, %+v: a delta of %d bytes where a base takes %d", tau, c, rec.Stored, own.Stored)
				}
			} else {
				bases++
			}
		}
		if deltas == 0 || bases == 0 {
			t.Errorf("tau %g: %d deltas and %d bases; the distances should give both", tau, deltas, bases)
		}
	}
}

func mustRecord(t *testing.T, s *Store, id TensorID) *Record {
	t.Helper()
	rec, err := s.Record(id)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestFiniteAll(t *testing.T) {
	for _, c := range []struct {
		v    []float32
		want bool
	}{
		{nil, true},
		{[]float32{0, -1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}, true},
		{[]float32{1, float32(math.Inf(1))}, false},
		{[]float32{float32(math.Inf(-1)), 1}, false},
		{[]float32{2, float32(math.NaN()), 3}, false},
		{[]float32{math.Float32frombits(0xffc00001)}, false}, // a negative NaN
	} {
		if got := finiteAll(c.v); got != c.want {
			t.Errorf("finiteAll(%v) = %v", c.v, got)
		}
	}
}
