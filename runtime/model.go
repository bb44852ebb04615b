package runtime

import (
	"bytes"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/quant"
	"github.com/neurstore/neurstore/store"
)

// Mode is how a model's weights are loaded.
type Mode string

const (
	// ModeF32 rebuilds every weight in float32 (for tau > 0 models: the stored
	// reconstruction, within tau of the imported weights).
	ModeF32 Mode = "f32"
	// ModeF16 rounds every float weight to float16 precision. On the CPU the values
	// are kept widened to float32: it shows the accuracy of an f16 load, not its
	// memory.
	ModeF16 Mode = "f16"
	// ModeInt8 keeps only the base of each delta weight and drops the delta; the
	// base is held as int8 codes with one symmetric per-tensor scale, shared
	// through the base cache. Lossy (the fine-tune is gone), opt-in.
	ModeInt8 Mode = "int8"
	// ModeCompressed keeps each delta weight as its base's codes (shared through the
	// base cache) plus its own packed delta codes, and computes on them directly.
	ModeCompressed Mode = "compressed"
)

// Modes lists the load modes.
var Modes = []Mode{ModeF32, ModeF16, ModeInt8, ModeCompressed}

// ParseMode checks a mode name; "" means the default for the model (see Load).
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	if s == "" {
		return "", nil
	}
	return "", fmt.Errorf("runtime: unknown load mode %q (want f32, f16, int8 or compressed)", s)
}

// Options configure Load.
type Options struct {
	// Mode is the load mode; "" picks compressed for models imported with tau > 0
	// and f32 otherwise.
	Mode Mode
	// Cache holds shared base tensors (compressed and int8 modes). Nil: a private
	// cache of DefaultCacheBytes.
	Cache *BaseCache
	// Group is the delta group size of the packed form; 0 means 64.
	Group int
}

// Model is a loaded model, ready to run. It is safe for concurrent use: each
// goroutine runs it through its own Session.
type Model struct {
	Ref   string
	Mode  Mode
	Graph *graph.Graph

	st      *store.Store
	cache   *BaseCache
	names   map[string]int // value name -> slot
	nslots  int
	static  []*Tensor // per slot: weights and constants, nil for computed values
	packed  []packedWeight
	steps   []step
	outputs []int // slots of the graph outputs
	inputs  []int // slots of the graph inputs
	release [][]int
	bytes   int64 // weight bytes held by the model itself (bases excluded)

	joins       sync.Map // *Model -> *joinInfo: how another model differs (cross-model runs)
	joinKeyOnce sync.Once
	joinKey     string
}

// packedWeight is a weight whose base lives in the cache: each run fetches the
// base and builds the kernels' view.
type packedWeight struct {
	slot  int
	name  string // the model's tensor name
	key   string // the base's cache key: base id, grid, form
	shape []int
	rows  int
	cols  int
	delta *quant.GroupPacked // nil in int8 mode
	// deltaOnly is delta for a product apart from the base's (cross-model runs):
	// its exceptions hold whole weight minus base value. delta itself when it has
	// no exceptions.
	deltaOnly *quant.GroupPacked
	scale     float32
	load      func() (*baseEntry, error)
	dtype     graph.DType
	wantI8    bool
	// dense, for a compressed-mode weight of at most denseWeightElements, is the
	// weight decoded once at load (shared by the sessions, never written):
	// single-model runs multiply it as f32 mode does; cross-model runs use the
	// packed form.
	dense *Tensor
}

// denseWeightElements is the size up to which a compressed-mode weight also
// keeps its decoded float32s (see packedWeight.dense). A weight this small (256
// KiB as float32) stays in the core's caches, where decoding the delta on every
// product costs more than reading 4 bytes an element (bench infer's small
// families ran 0.73-0.98x of f32 mode without it), and its copy is no memory
// that matters. `go test ./kernels -bench SmallWeights` (2026-12-04, warm):
// the dense copy took 0.44-0.73x the packed product's time at 128 x 128 and
// 256 x 256 (1, 8 and 32 rows), 0.50-0.95x at 512 x 512, and at 1024 x 1024
// 0.86x, 1.28x and 0.78x. Larger weights, which stream from memory, are
// multiplied packed.
var denseWeightElements = 1 << 16

type step struct {
	node *graph.Node
	fn   opFunc
	in   []int // slot per input, -1 for omitted
	out  []int
}

// Load reads model ref from st and prepares it for running: it parses the stored
// architecture, checks that every op is supported (failing with their names),
// folds shape arithmetic, infers shapes, and loads the weights in the chosen mode.
func Load(st *store.Store, ref string, opts Options) (*Model, error) {
	m, err := st.Model(ref)
	if err != nil {
		return nil, err
	}
	arch, err := st.Graph(m.Ref())
	if err != nil {
		return nil, err
	}
	if len(arch) == 0 {
		return nil, fmt.Errorf("runtime: model %s has no architecture (imported from %s); import an ONNX file of it to run it", m.Ref(), m.Format)
	}
	g, err := graph.ParseModel(arch)
	if err != nil {
		return nil, fmt.Errorf("runtime: model %s: %w", m.Ref(), err)
	}
	mode := opts.Mode
	if mode == "" {
		mode = ModeF32
		if m.Params.Tau > 0 {
			mode = ModeCompressed
		}
	}
	if opts.Cache == nil {
		if opts.Cache, err = NewBaseCache(DefaultCacheBytes); err != nil {
			return nil, err
		}
	}
	if opts.Group == 0 {
		opts.Group = 64
	}
	md := &Model{Ref: m.Ref(), Mode: mode, st: st, cache: opts.Cache}
	weights := make(map[string]*Tensor)
	var packed []packedWeight
	use := weightUses(g)
	for i := range m.Tensors {
		t := &m.Tensors[i]
		if (mode == ModeCompressed || mode == ModeInt8) && !t.Inline() && use[t.Name] {
			pw, ok, err := md.packedWeight(t, mode, opts.Group)
			if err != nil {
				return nil, fmt.Errorf("runtime: model %s: tensor %s: %w", m.Ref(), t.Name, err)
			}
			if ok {
				packed = append(packed, pw)
				weights[t.Name] = nil
				continue
			}
		}
		w, err := readWeight(st, m, i, mode)
		if err != nil {
			return nil, fmt.Errorf("runtime: model %s: tensor %s: %w", m.Ref(), t.Name, err)
		}
		weights[t.Name] = w
		md.bytes += tensorBytes(w)
	}
	if err := md.plan(g, weights, packed); err != nil {
		return nil, fmt.Errorf("runtime: model %s: %w", m.Ref(), err)
	}
	return md, nil
}

// Compile prepares an in-memory graph whose initializers carry their data (an .onnx
// file, a conformance case) for running in f32 mode, without a store.
func Compile(g *graph.Graph) (*Model, error) {
	md := &Model{Ref: "(file)", Mode: ModeF32}
	weights := make(map[string]*Tensor)
	for _, c := range g.Initializers {
		if c.Data == nil {
			return nil, fmt.Errorf("runtime: initializer %s has no data", c.Name)
		}
		t, err := constTensor(c)
		if err != nil {
			return nil, err
		}
		weights[c.Name] = t
	}
	if err := md.plan(g, weights, nil); err != nil {
		return nil, err
	}
	return md, nil
}

// plan checks and prepares g, binds weights and orders the steps.
func (md *Model) plan(g *graph.Graph, weights map[string]*Tensor, packed []packedWeight) error {
	if err := g.Check(); err != nil {
		return err
	}
	if _, err := g.Fold(); err != nil {
		return err
	}
	if err := g.Infer(); err != nil {
		return err
	}
	if g.Fuse() > 0 { // decomposed LayerNorm and Gelu chains become one op each
		if err := g.Infer(); err != nil {
			return err
		}
	}
	md.Graph = g
	md.names = map[string]int{}
	slot := func(name string) int {
		if s, ok := md.names[name]; ok {
			return s
		}
		md.names[name] = md.nslots
		md.static = append(md.static, nil)
		md.nslots++
		return md.nslots - 1
	}
	for _, c := range g.Initializers {
		w, ok := weights[c.Name]
		if !ok {
			return fmt.Errorf("the graph's initializer %s is not among the model's tensors", c.Name)
		}
		if w != nil {
			if err := checkShape(c, w); err != nil {
				return err
			}
		}
		md.static[slot(c.Name)] = w
	}
	for i := range packed {
		packed[i].slot = slot(packed[i].name)
	}
	md.packed = packed
	// in name order: slots are numbered the same in every load of one graph
	// (cross-model runs compare models slot by slot)
	for _, name := range slices.Sorted(maps.Keys(g.Constants)) {
		c := g.Constants[name]
		t, err := constTensor(c)
		if err != nil {
			return fmt.Errorf("constant %s: %w", name, err)
		}
		md.static[slot(name)] = t
	}
	for _, in := range g.Inputs {
		md.inputs = append(md.inputs, slot(in.Name))
	}
	for _, n := range g.Nodes {
		fn, ok := ops[n.Op]
		if !ok || n.Domain != "" && n.Domain != "ai.onnx" {
			return fmt.Errorf("unsupported op %s", n.Op)
		}
		st := step{node: n, fn: fn}
		for _, name := range n.Inputs {
			if name == "" {
				st.in = append(st.in, -1)
				continue
			}
			s, ok := md.names[name]
			if !ok {
				return fmt.Errorf("node %s (%s): input %s is never produced", n.Name, n.Op, name)
			}
			st.in = append(st.in, s)
		}
		for _, name := range n.Outputs {
			if name == "" {
				st.out = append(st.out, -1)
				continue
			}
			st.out = append(st.out, slot(name))
		}
		md.steps = append(md.steps, st)
	}
	for _, out := range g.Outputs {
		s, ok := md.names[out.Name]
		if !ok {
			return fmt.Errorf("graph output %s is never produced", out.Name)
		}
		md.outputs = append(md.outputs, s)
	}
	packedSlot := map[int]bool{}
	for _, p := range md.packed {
		packedSlot[p.slot] = true
	}
	// release[i]: computed values whose last reader is step i (never graph outputs)
	last := make([]int, md.nslots)
	for i := range last {
		last[i] = -1
	}
	for i, st := range md.steps {
		for _, s := range st.in {
			if s >= 0 {
				last[s] = i
			}
		}
	}
	for _, s := range md.outputs {
		last[s] = len(md.steps)
	}
	md.release = make([][]int, len(md.steps))
	for i, st := range md.steps {
		for _, s := range st.out {
			if s >= 0 && last[s] == -1 {
				md.release[i] = append(md.release[i], s) // never read: free at once
			}
		}
		for _, s := range st.in {
			if s >= 0 && last[s] == i && md.static[s] == nil && !packedSlot[s] {
				md.release[i] = append(md.release[i], s)
			}
		}
	}
	return nil
}

func checkShape(c *graph.Const, w *Tensor) error {
	if len(c.Shape) != len(w.Shape) {
		return fmt.Errorf("initializer %s: graph says shape %v, stored tensor has %v", c.Name, c.Shape, w.Shape)
	}
	for i := range c.Shape {
		if int(c.Shape[i]) != w.Shape[i] {
			return fmt.Errorf("initializer %s: graph says shape %v, stored tensor has %v", c.Name, c.Shape, w.Shape)
		}
	}
	return nil
}

// weightUses reports the initializers that every consumer reads as the weight
// input of a MatMul (B, 2-D) or Gemm (B): those can stay packed.
func weightUses(g *graph.Graph) map[string]bool {
	ok := map[string]bool{}
	bad := map[string]bool{}
	init := map[string]*graph.Const{}
	for _, c := range g.Initializers {
		init[c.Name] = c
	}
	for _, n := range g.Nodes {
		for i, name := range n.Inputs {
			c := init[name]
			if c == nil {
				continue
			}
			weight := i == 1 && (n.Op == "MatMul" && len(c.Shape) == 2 || n.Op == "Gemm")
			if weight {
				ok[name] = true
			} else {
				bad[name] = true
			}
		}
	}
	for _, o := range g.Outputs {
		bad[o.Name] = true
	}
	for name := range bad {
		delete(ok, name)
	}
	return ok
}

// readWeight reads model tensor i densely for the f32 and f16 modes (and for the
// weights the packed modes keep dense).
func readWeight(st *store.Store, m *store.Manifest, i int, mode Mode) (*Tensor, error) {
	t := &m.Tensors[i]
	var buf bytes.Buffer
	if err := st.ReadModelTensor(m, i, &buf); err != nil {
		return nil, err
	}
	c := &graph.Const{Name: t.Name, DType: t.DType, Shape: t.Shape, Data: buf.Bytes()}
	w, err := constTensor(c)
	if err != nil {
		return nil, err
	}
	if mode == ModeF16 && w.DType == graph.F32 {
		for i, v := range w.F32 {
			w.F32[i] = quant.F16ToF32(quant.F32ToF16(v))
		}
	}
	return w, nil
}

func tensorBytes(t *Tensor) int64 {
	return int64(len(t.F32))*4 + int64(len(t.F64))*8 + int64(len(t.I64))*8
}

// packedWeight prepares model tensor t to stay packed when it is a grid delta.
func (md *Model) packedWeight(t *store.ManifestTensor, mode Mode, group int) (packedWeight, bool, error) {
	gd, ok, err := md.st.GridDelta(t.ID)
	if err != nil {
		return packedWeight{}, false, err
	}
	if !ok {
		// In compressed mode a base stored on a grid stays as its codes too, shared
		// through the cache with its fine-tunes (a delta-free packed weight).
		if mode != ModeCompressed {
			return packedWeight{}, false, nil
		}
		tau, ok, err := md.st.GridBase(t.ID)
		if err != nil || !ok {
			return packedWeight{}, false, err
		}
		gd = &store.GridDelta{Base: t.ID, Tau: tau}
	}
	shape := make([]int, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int(d)
	}
	rows, cols := 1, 1
	if len(shape) > 0 {
		rows = shape[0]
		for _, d := range shape[1:] {
			cols *= d
		}
	}
	pw := packedWeight{
		name:  t.Name,
		key:   fmt.Sprintf("%s@%g%s", gd.Base, gd.Tau, map[bool]string{true: "/int8"}[mode == ModeInt8]),
		shape: shape, rows: rows, cols: cols,
		scale: float32(2 * gd.Tau), dtype: t.DType,
	}
	base, tau, st := gd.Base, gd.Tau, md.st
	pw.wantI8 = mode == ModeInt8
	wantI8 := pw.wantI8
	pw.load = func() (*baseEntry, error) { return loadBase(st, base, tau, wantI8) }
	switch {
	case mode == ModeInt8:
	case gd.Delta == nil:
		e, err := md.cache.get(pw.key, pw.load)
		if err != nil || e.exceptions > 0 {
			return packedWeight{}, false, err // NaN or Inf in the base: keep it dense
		}
		return pw, true, nil
	default:
		bits := min(quant.ChooseGroupBits(gd.Delta, group), 8)
		if pw.delta, err = gd.Delta.PackGroups(bits, group); err != nil {
			return packedWeight{}, false, err
		}
		md.bytes += int64(len(pw.delta.Data)) + int64(len(pw.delta.Zero))*4 + int64(len(pw.delta.Exceptions))*8
	}
	if pw.delta != nil && len(pw.delta.Exceptions) > len(gd.Delta.Exceptions) {
		// Codes outside their group's window became exceptions holding the delta's
		// value; the kernels override with the whole weight, so add the base's.
		e, err := md.cache.get(pw.key, pw.load)
		if err != nil {
			return packedWeight{}, false, err
		}
		absoluteExceptions(pw.delta, gd.Delta, e, 2*tau)
	}
	if pw.delta != nil {
		pw.deltaOnly = pw.delta
		if len(pw.delta.Exceptions) > 0 {
			e, err := md.cache.get(pw.key, pw.load)
			if err != nil {
				return packedWeight{}, false, err
			}
			pw.deltaOnly = relativeDelta(pw.delta, e)
			md.bytes += int64(len(pw.delta.Exceptions)) * 8
		}
	}
	if mode == ModeCompressed && rows*cols <= denseWeightElements {
		t, err := md.resolve(&pw)
		if err != nil {
			return packedWeight{}, false, err
		}
		pw.dense = &Tensor{DType: t.DType, Shape: t.Shape, F32: make([]float32, rows*cols)}
		kernels.Dense(pw.dense.F32, t.Packed)
		md.bytes += int64(rows*cols) * 4
	}
	return pw, true, nil
}

// absoluteExceptions rewrites the exceptions of packed delta p that PackGroups
// made for codes outside their group's window (d's own exceptions, NaN and the
// like, already hold whole values) into whole weights: base code + delta code.
func absoluteExceptions(p *quant.GroupPacked, d *quant.Codes, base *baseEntry, step float64) {
	own := make(map[uint32]bool, len(d.Exceptions))
	for _, e := range d.Exceptions {
		own[e.Index] = true
	}
	for k := range p.Exceptions {
		ex := &p.Exceptions[k]
		if own[ex.Index] {
			continue
		}
		var bq int64
		if base.i16 != nil {
			bq = int64(base.i16[ex.Index])
		} else {
			bq = int64(math.Round(float64(base.f32[ex.Index]) / step))
		}
		ex.Bits = math.Float32bits(float32(float64(bq+d.Q[ex.Index]) * step))
	}
}

// loadBase reads a base's codes on the grid of tau and keeps them in the smallest
// form the kernels take: int8 codes (int8 mode, when they fit), int16 codes when
// they fit, float32 values otherwise.
func loadBase(st *store.Store, id store.TensorID, tau float64, i8 bool) (*baseEntry, error) {
	c, err := st.GridCodes(id, tau)
	if err != nil {
		return nil, err
	}
	lo, hi := int64(0), int64(0)
	for _, q := range c.Q {
		lo, hi = min(lo, q), max(hi, q)
	}
	e := &baseEntry{exceptions: len(c.Exceptions)}
	switch {
	case i8:
		// int8 mode: the base alone, rescaled to int8 codes with one symmetric
		// per-tensor scale (lossy by design)
		v := make([]float32, len(c.Q))
		c.Dequantize(v)
		var amax float64
		for _, x := range v {
			if a := math.Abs(float64(x)); a > amax && !math.IsInf(a, 0) {
				amax = a
			}
		}
		e.scale = 1
		if amax > 0 {
			e.scale = amax / 127
		}
		e.i8 = make([]int8, len(v))
		for i, x := range v {
			e.i8[i] = int8(max(-127, min(127, math.Round(float64(x)/e.scale))))
		}
		e.zero = zeroDelta(len(v), e.scale)
	case lo >= math.MinInt16 && hi <= math.MaxInt16:
		e.i16 = make([]int16, len(c.Q))
		for i, q := range c.Q {
			e.i16[i] = int16(q)
		}
	default:
		// codes too wide for int16: float values of the codes (exceptions are 0, the
		// delta overrides them)
		e.f32 = make([]float32, len(c.Q))
		step := 2 * tau
		for i, q := range c.Q {
			e.f32[i] = float32(float64(q) * step)
		}
	}
	return e, nil
}

// WeightBytes is the memory the model's own weights hold (shared bases excluded).
func (md *Model) WeightBytes() int64 { return md.bytes }
