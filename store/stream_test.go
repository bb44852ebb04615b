package store

import (
	"bytes"
	"context"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/neurstore/neurstore/graph"
)

// streamModel returns a model whose float tensors are all above testMaxDedup: a
// matrix of more than one batch of chunks (with NaN, Inf and a huge value), a bf16
// matrix, and a 1-D tensor, which stays exact at any tau.
func streamModel(seed uint64) *memModel {
	r := rand.New(rand.NewPCG(seed, 9))
	normal := func(n int, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	m := &memModel{}
	rows, cols := 1100, 2000 // 2.2M elements: 9 chunks, two batches
	if raceEnabled {
		rows = 300 // 3 chunks: one batch, still encoded in parallel
	}
	w := normal(rows*cols, 0.02)
	w[5], w[rows*cols-1], w[rows*cols-100] = float32(math.NaN()), float32(math.Inf(1)), 3e38
	m.add("w", graph.F32, []int64{int64(rows), int64(cols)}, f32bytes(w))
	h := normal(700*1000, 0.05)
	hb := make([]byte, 2*len(h))
	fromFloat32(hb, h, graph.BF16)
	m.add("h", graph.BF16, []int64{700, 1000}, hb)
	m.add("v", graph.F32, []int64{300000}, f32bytes(normal(300000, 1)))
	m.add("small", graph.F32, []int64{64, 64}, f32bytes(normal(64*64, 0.02)))
	return m
}

const testMaxDedup = 1 << 20

// Float tensors above the dedup engine's limit are encoded on their own as they
// stream in: byte planes, or with --tau a matrix on the grid, read back exactly or
// within tau, verified, deduplicated when imported again, never deltas.
func TestStreamedTensors(t *testing.T) {
	for _, tau := range []float64{0, 1e-3} {
		s := openTest(t)
		s.maxDedup = testMaxDedup
		m := streamModel(1)
		var raw int64
		for _, d := range m.data {
			raw += int64(len(d))
		}
		res := importOpts(t, s, m, ImportOptions{Ref: "a", Tau: tau})
		if res.StoredBytes >= raw {
			t.Errorf("tau %g: %d stored bytes for %d raw", tau, res.StoredBytes, raw)
		}
		t.Logf("tau %g: %d stored bytes for %d raw", tau, res.StoredBytes, raw)
		checkWithin(t, s, "a", m, tau)
		man := mustModel(t, s, "a")
		for i, mt := range man.Tensors {
			st, err := s.Storage(mt.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := EncPlanes
			if tau > 0 && len(mt.Shape) >= 2 {
				want = EncGrid
			}
			if st.Encoding != want {
				t.Errorf("tau %g: %s is %s, want %s", tau, m.tensors[i].Name, st.Encoding, want)
			}
		}
		mustVerify(t, s)
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		checkBreakdown(t, st)

		// the same model again adds no tensor
		if again := importOpts(t, s, m, ImportOptions{Ref: "b", Tau: tau}); again.NewTensors != 0 {
			t.Errorf("tau %g: importing the same model again stored %d tensors", tau, again.NewTensors)
		}
		// an unrelated model with --base is no delta; a fine-tune is, and so is
		// a fine-tune of the fine-tune (a chain); each outlives its base
		other := streamModel(2)
		if res := importOpts(t, s, other, ImportOptions{Ref: "other", Tau: tau, Base: "a"}); res.DeltaTensors != 0 {
			t.Errorf("tau %g: %d deltas against an unrelated model", tau, res.DeltaTensors)
		}
		ft, ft2 := nudged(m, 1), nudged(nudged(m, 1), 2)
		res1 := importOpts(t, s, ft, ImportOptions{Ref: "ft", Tau: tau, Base: "a"})
		res2 := importOpts(t, s, ft2, ImportOptions{Ref: "ft2", Tau: tau, Base: "ft"})
		for _, r := range []*ImportResult{res1, res2} {
			if r.DeltaTensors != len(m.tensors) || r.StoredBytes >= res.StoredBytes {
				t.Errorf("tau %g: a fine-tune: %d deltas of %d tensors, %d stored bytes (its base %d)", tau, r.DeltaTensors, len(m.tensors), r.StoredBytes, res.StoredBytes)
			}
		}
		t.Logf("tau %g: fine-tunes as deltas: %d and %d stored bytes", tau, res1.StoredBytes, res2.StoredBytes)
		rec, err := s.Record(mustModel(t, s, "ft2").Tensors[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if ftID := mustModel(t, s, "ft").Tensors[0].ID; !bytes.Equal(rec.Base, ftID[:]) {
			t.Errorf("tau %g: ft2's w is against %x, want ft's", tau, rec.Base)
		}
		for _, ref := range []string{"a", "b", "ft"} {
			if err := s.Remove(ref); err != nil {
				t.Fatal(err)
			}
		}
		checkWithin(t, s, "ft2", ft2, tau)
		checkWithin(t, s, "other", other, tau)
		mustVerify(t, s)
	}
}

// nudged returns m with every float element moved by about 1e-3 of N(0, 1)
// (seeded): a fine-tune of m.
func nudged(m *memModel, seed uint64) *memModel {
	r := rand.New(rand.NewPCG(seed, 77))
	out := &memModel{}
	for i, ti := range m.tensors {
		v := make([]float32, len(m.data[i])/ti.DType.Size())
		toFloat32(v, m.data[i], ti.DType)
		for j := range v {
			if !math.IsNaN(float64(v[j])) && !math.IsInf(float64(v[j]), 0) && math.Abs(float64(v[j])) < 1e30 {
				v[j] += float32(r.NormFloat64() * 1e-3)
			}
		}
		b := make([]byte, len(m.data[i]))
		fromFloat32(b, v, ti.DType)
		out.add(ti.Name, ti.DType, ti.Shape, b)
	}
	return out
}

// A streamed tensor whose bytes change between the two passes fails the import
// and leaves nothing behind.
func TestStreamedTensorChanged(t *testing.T) {
	s := openTest(t)
	s.maxDedup = testMaxDedup
	m := streamModel(3)
	opens := 0
	src := graph.NewSource(graph.FormatSafetensors, m.tensors, nil, func(i int) (io.Reader, error) {
		data := m.data[i]
		if i == 0 {
			if opens++; opens > 1 {
				data = bytes.Clone(data)
				data[len(data)/2]++
			}
		}
		return bytes.NewReader(data), nil
	})
	before := snapshotKeys(t, s)
	if _, err := s.Import(context.Background(), src, ImportOptions{Ref: "m", Tau: 1e-3}); err == nil {
		t.Fatal("import of a file that changed under it succeeded")
	}
	if after := snapshotKeys(t, s); after != before {
		t.Errorf("a failed import changed the store")
	}
	mustVerify(t, s)
}

// normalReader yields n bytes of f32 normal values without holding them.
type normalReader struct {
	n, off int64
	r      *rand.Rand
}

func (r *normalReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)&^3]
	for i := 0; i < len(p); i += 4 {
		v := float32(r.r.NormFloat64() * 0.02)
		p[i], p[i+1], p[i+2], p[i+3] = byte(math.Float32bits(v)), byte(math.Float32bits(v)>>8), byte(math.Float32bits(v)>>16), byte(math.Float32bits(v)>>24)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// A float tensor above the dedup limit is encoded at tau with a few chunks in
// memory, not the whole tensor.
func TestStreamedTensorMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("memory is measured without the race detector")
	}
	s := openTest(t)
	s.smallTensor = defaultSmallTensor
	s.maxDedup = 16 << 20
	const size = 64 << 20
	tensors := []graph.TensorInfo{{Name: "w", DType: graph.F32, Shape: []int64{4096, size / 4 / 4096}, Size: size}}
	src := graph.NewSource(graph.FormatSafetensors, tensors, nil, func(i int) (io.Reader, error) {
		return &normalReader{n: size, r: rand.New(rand.NewPCG(5, 5))}, nil
	})
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := peakHeap()
	res, err := s.Import(context.Background(), src, ImportOptions{Ref: "big", Tau: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(stop()) - int64(base.HeapInuse)
	t.Logf("%d MiB tensor at tau 1e-3: %d stored bytes, live heap grew by at most %.1f MiB", size>>20, res.StoredBytes, float64(grew)/(1<<20))
	// a batch of chunks (8 MiB), their reconstructions (8 MiB), each worker's
	// codes and a page: well under the tensor's 64 MiB (the dedup engine: 6x it)
	if limit := int64(40 << 20); grew > limit {
		t.Fatalf("live heap grew by %d bytes importing a %d-byte tensor; limit %d", grew, size, limit)
	}
	mustVerify(t, s)
}

// Decoding a delta streams its base chunk by chunk: reading a 36 MiB fine-tune
// (a grid delta, or a bit delta, against its base) holds a few chunks and their
// garbage, not the base's 72 MiB of codes or 36 MiB of bytes.
func TestDeltaDecodeMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("memory is measured without the race detector")
	}
	const rows, cols = 3072, 3072
	r := rand.New(rand.NewPCG(8, 8))
	w := make([]float32, rows*cols)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	ft := make([]float32, len(w))
	for i := range ft {
		ft[i] = w[i] + float32(r.NormFloat64()*0.002)
	}
	for _, tau := range []float64{1e-3, 0} {
		s := openTest(t)
		importOpts(t, s, matrixModel(rows, cols, w), ImportOptions{Ref: "base", Tau: tau})
		res := importOpts(t, s, matrixModel(rows, cols, ft), ImportOptions{Ref: "ft", Tau: tau, Base: "base"})
		if res.DeltaTensors != 1 {
			t.Fatalf("tau %g: %d deltas", tau, res.DeltaTensors)
		}
		id := mustModel(t, s, "ft").Tensors[0].ID
		func() {
			defer debug.SetGCPercent(debug.SetGCPercent(10))
			runtime.GC()
			var base runtime.MemStats
			runtime.ReadMemStats(&base)
			stop := peakHeap()
			if err := s.ReadTensor(id, io.Discard); err != nil {
				t.Fatal(err)
			}
			grew := int64(stop()) - int64(base.HeapInuse)
			t.Logf("tau %g: reading a %d MiB delta grew the live heap by %.1f MiB", tau, 4*rows*cols>>20, float64(grew)/(1<<20))
			if limit := int64(40 << 20); grew > limit {
				t.Errorf("tau %g: live heap grew by %d bytes reading a delta; limit %d", tau, grew, limit)
			}
		}()
		checkWithin(t, s, "ft", matrixModel(rows, cols, ft), tau)
	}
}

// A tensor reads back the same whether it was streamed or went through the dedup
// engine: both put each chunk on the same grid.
func TestStreamedMatchesDedupEngine(t *testing.T) {
	m := streamModel(4)
	streamed, engine := openTest(t), openTest(t)
	streamed.maxDedup = testMaxDedup
	for _, s := range []*Store{streamed, engine} {
		importOpts(t, s, m, ImportOptions{Ref: "m", Tau: 1e-3})
	}
	a, b := mustModel(t, streamed, "m"), mustModel(t, engine, "m")
	for i, mt := range a.Tensors {
		if mt.ID != b.Tensors[i].ID {
			t.Errorf("%s: id %s streamed, %s through the engine", mt.Name, mt.ID.Short(), b.Tensors[i].ID.Short())
		}
		var x, y bytes.Buffer
		if err := streamed.ReadModelTensor(a, i, &x); err != nil {
			t.Fatal(err)
		}
		if err := engine.ReadModelTensor(b, i, &y); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x.Bytes(), y.Bytes()) {
			t.Errorf("%s: streamed and engine reconstructions differ", mt.Name)
		}
	}
}
