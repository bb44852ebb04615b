package serve

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/store"
)

// fakeBackend is a backend of in-memory fake models, so that the HTTP layer, the
// manager and the batching can be tested without the runtime.
type fakeBackend struct {
	mu        sync.Mutex
	manifests map[string]*store.Manifest
	models    map[string]*fakeModel
	imports   []fakeImport
	loadGate  chan struct{} // when set, Load waits for it
	stats     runtime.CacheStats
}

type fakeImport struct {
	path    string
	content string // the file's bytes, read during Import
	opts    store.ImportOptions
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{manifests: map[string]*store.Manifest{}, models: map[string]*fakeModel{},
		stats: runtime.CacheStats{Hits: 7, Misses: 3, Bytes: 1024, MaxBytes: 4096}}
}

// add stores fm under ref.
func (f *fakeBackend) add(ref string, fm *fakeModel) *fakeModel {
	name, tag, err := store.ParseRef(ref)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.manifests[name+":"+tag] = &store.Manifest{
		Name: name, Tag: tag, Format: graph.FormatONNX, Created: time.Now(),
		Params:     store.ImportParams{Mode: "lossless"},
		Tensors:    []store.ManifestTensor{{Name: "w", DType: graph.F32, Shape: []int64{4, 4}}},
		GraphBytes: 100,
	}
	f.models[name+":"+tag] = fm
	return fm
}

func (f *fakeBackend) Models() ([]*store.Manifest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*store.Manifest
	for _, m := range f.manifests {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref() < out[j].Ref() })
	return out, nil
}

func (f *fakeBackend) Model(ref string) (*store.Manifest, error) {
	ref, err := canonical(ref)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.manifests[ref]
	if m == nil {
		return nil, fmt.Errorf("%w: model %s", store.ErrNotFound, ref)
	}
	return m, nil
}

func (f *fakeBackend) Signature(ref string) ([]graph.ValueInfo, []graph.ValueInfo, error) {
	if _, err := f.Model(ref); err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fm := f.models[ref]
	return fm.inputs, fm.outputs, nil
}

func (f *fakeBackend) Load(ref string) (model, error) {
	if _, err := f.Model(ref); err != nil {
		return nil, err
	}
	f.mu.Lock()
	gate, fm := f.loadGate, f.models[ref]
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	fm.mu.Lock()
	fm.loads++
	fm.mu.Unlock()
	return fm, nil
}

func (f *fakeBackend) Import(ctx context.Context, path string, opts store.ImportOptions) (*store.ImportResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.imports = append(f.imports, fakeImport{path: path, content: string(b), opts: opts})
	ref, _ := canonical(opts.Ref)
	_, exists := f.manifests[ref]
	f.mu.Unlock()
	if exists && !opts.Force {
		return nil, fmt.Errorf("%w: %s", store.ErrExists, ref)
	}
	f.add(ref, doubler())
	m, _ := f.Model(ref)
	return &store.ImportResult{Manifest: m, NewTensors: 1}, nil
}

func (f *fakeBackend) Remove(ref string) error {
	ref, err := canonical(ref)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.manifests[ref] == nil {
		return fmt.Errorf("%w: model %s", store.ErrNotFound, ref)
	}
	delete(f.manifests, ref)
	delete(f.models, ref)
	return nil
}

func (f *fakeBackend) CacheStats() runtime.CacheStats { return f.stats }

func (f *fakeBackend) lastImport() fakeImport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.imports[len(f.imports)-1]
}

// fakeModel computes y from its first input: 2x for floats, x+1 for integers. It
// records the rows (first dimension) of every run; the first run (the warm-up)
// is never held, later ones wait for gate when it is set.
type fakeModel struct {
	inputs, outputs []graph.ValueInfo
	bytes           int64
	gate            chan struct{}
	collapse        bool // y is the column sums of 2x, shape [1, n]: not per row

	mu        sync.Mutex
	runs      []int // rows per run, the warm-up first
	cancelled int   // runs ended by their context
	loads     int
}

func (m *fakeModel) Inputs() []graph.ValueInfo  { return m.inputs }
func (m *fakeModel) Outputs() []graph.ValueInfo { return m.outputs }
func (m *fakeModel) WeightBytes() int64         { return m.bytes }
func (m *fakeModel) NewRunner() runner          { return fakeRunner{m} }

// hold makes the runs after the warm-up wait until the returned func is called.
func (m *fakeModel) hold() (release func()) {
	gate := make(chan struct{})
	m.mu.Lock()
	m.gate = gate
	m.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(gate) }) }
}

func (m *fakeModel) loadCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loads
}

// snapshot returns the rows of the runs so far.
func (m *fakeModel) snapshot() (runs []int, cancelled int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.runs...), m.cancelled
}

type fakeRunner struct{ m *fakeModel }

func (r fakeRunner) Run(ctx context.Context, in map[string]*runtime.Tensor) (map[string]*runtime.Tensor, error) {
	m := r.m
	x := in[m.inputs[0].Name]
	if x == nil {
		return nil, fmt.Errorf("fake: missing input %s", m.inputs[0].Name)
	}
	rows := 1
	if len(x.Shape) > 0 {
		rows = x.Shape[0]
	}
	m.mu.Lock()
	m.runs = append(m.runs, rows)
	gate := m.gate
	held := len(m.runs) > 1 && gate != nil
	m.mu.Unlock()
	if held {
		select {
		case <-gate:
		case <-ctx.Done():
			m.mu.Lock()
			m.cancelled++
			m.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	y := &runtime.Tensor{DType: x.DType, Shape: append([]int(nil), x.Shape...)}
	for _, v := range x.F32 {
		y.F32 = append(y.F32, 2*v)
	}
	for _, v := range x.F64 {
		y.F64 = append(y.F64, 2*v)
	}
	for _, v := range x.I64 {
		y.I64 = append(y.I64, v+1)
	}
	if m.collapse && len(y.Shape) == 2 {
		cols := y.Shape[1]
		sums := make([]float32, cols)
		for i, v := range y.F32 {
			sums[i%cols] += v
		}
		y = &runtime.Tensor{DType: y.DType, Shape: []int{1, cols}, F32: sums}
	}
	return map[string]*runtime.Tensor{m.outputs[0].Name: y}, nil
}

func vi(name string, dt graph.DType, dims ...int64) graph.ValueInfo {
	v := graph.ValueInfo{Name: name, DType: dt, Shape: []graph.Dim{}}
	for _, d := range dims {
		if d < 0 {
			v.Shape = append(v.Shape, graph.Dim{Value: -1, Param: "batch"})
		} else {
			v.Shape = append(v.Shape, graph.Dim{Value: d})
		}
	}
	return v
}

// doubler takes x FP32 [batch, 4] and gives y = 2x.
func doubler() *fakeModel {
	return &fakeModel{inputs: []graph.ValueInfo{vi("x", graph.F32, -1, 4)}, outputs: []graph.ValueInfo{vi("y", graph.F32, -1, 4)}, bytes: 10}
}

// fixed takes ids INT64 [1, 3] (no batch dimension) and gives y = ids + 1.
func fixed() *fakeModel {
	return &fakeModel{inputs: []graph.ValueInfo{vi("ids", graph.I64, 1, 3)}, outputs: []graph.ValueInfo{vi("y", graph.I64, 1, 3)}, bytes: 10}
}

// flex takes x FP32 [batch, n] and gives y = 2x.
func flex() *fakeModel {
	return &fakeModel{inputs: []graph.ValueInfo{vi("x", graph.F32, -1, -1)}, outputs: []graph.ValueInfo{vi("y", graph.F32, -1, -1)}, bytes: 10}
}

// pair takes a INT8 [batch, 2] and b BOOL [batch, 2] and gives y = a + 1.
func pair() *fakeModel {
	return &fakeModel{inputs: []graph.ValueInfo{vi("a", graph.I8, -1, 2), vi("b", graph.Bool, -1, 2)},
		outputs: []graph.ValueInfo{vi("y", graph.I8, -1, 2)}, bytes: 10}
}
