package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/quant"
)

// Cross-model runs.
//
// Fine-tunes of one base share its graph and, in compressed mode, the base codes of
// their packed weights. A cross-model run takes one batch whose rows belong to
// several such models (Part) and computes it in one pass: for a MatMul or Gemm on a
// packed weight the base product is computed once for every row and each model's
// delta product (kernels.Packed without a base) is added to its own rows, the idea
// of DeltaZip's and Punica's batched fine-tune kernels (on the CPU only while the
// batch is small; see splitRowsPerPart). Steps that read a weight
// that differs between the models (a fine-tuned bias, a norm's scale) run once per
// part on that part's rows; every other step runs once for the whole batch.
//
// Running a step on a part's rows needs to know which rows of its inputs belong to
// which sample. The run tracks, for every value, whether it is "rows": its first
// dimension is the batch times some k, sample b owning rows [b*k, (b+1)*k). Graph
// inputs are rows; ops that work row by row keep it (rowState says which, checked
// at run time on the real shapes); anything else loses it. A part step or a graph
// output that is not rows ends the run with ErrNotJoinable, and the caller runs the
// requests model by model instead.

// Part is a share of a cross-model run: the next Rows samples (first-dimension
// entries of every input) belong to Model.
type Part struct {
	Model *Model
	Rows  int
}

// ErrNotJoinable reports that models or a graph cannot share a run; the requests
// must run model by model.
var ErrNotJoinable = errors.New("runtime: the models cannot share a run")

// joinInfo says how model o differs from the model that holds it.
type joinInfo struct {
	err  error
	diff []bool // per slot: o's static value differs
}

// Joinable reports whether md and o can share cross-model runs: the same graph and
// load mode, and packed weights on the same bases.
func (md *Model) Joinable(o *Model) error { return md.join(o).err }

func (md *Model) join(o *Model) *joinInfo {
	if v, ok := md.joins.Load(o); ok {
		return v.(*joinInfo)
	}
	j := &joinInfo{}
	j.diff, j.err = md.compare(o)
	if j.err != nil {
		j.err = fmt.Errorf("%w: %s and %s: %v", ErrNotJoinable, md.Ref, o.Ref, j.err)
	}
	v, _ := md.joins.LoadOrStore(o, j)
	return v.(*joinInfo)
}

// compare checks that o runs the same program as md and returns the slots whose
// weights differ.
func (md *Model) compare(o *Model) ([]bool, error) {
	if md.Mode != o.Mode {
		return nil, fmt.Errorf("load modes %s and %s", md.Mode, o.Mode)
	}
	if md.cache != o.cache {
		return nil, errors.New("different base caches")
	}
	if md.nslots != o.nslots || len(md.steps) != len(o.steps) || !slices.Equal(md.inputs, o.inputs) ||
		!slices.Equal(md.outputs, o.outputs) || !reflect.DeepEqual(md.Graph.Inputs, o.Graph.Inputs) {
		return nil, errors.New("different graphs")
	}
	for i := range md.steps {
		a, b := &md.steps[i], &o.steps[i]
		if a.node.Op != b.node.Op || a.node.Domain != b.node.Domain || !slices.Equal(a.in, b.in) ||
			!slices.Equal(a.out, b.out) || !sameAttrs(a.node.Attrs, b.node.Attrs) {
			return nil, fmt.Errorf("different graphs (node %d: %s and %s)", i, a.node.Op, b.node.Op)
		}
	}
	if len(md.packed) != len(o.packed) {
		return nil, errors.New("different packed weights")
	}
	diff := make([]bool, md.nslots)
	for i := range md.packed {
		a, b := &md.packed[i], &o.packed[i]
		if a.slot != b.slot || a.key != b.key || a.rows != b.rows || a.cols != b.cols {
			return nil, fmt.Errorf("weight %s is not on the same base", a.name)
		}
		diff[a.slot] = a.delta != nil || b.delta != nil
	}
	for s := range md.static {
		a, b := md.static[s], o.static[s]
		switch {
		case a == nil && b == nil:
		case a == nil || b == nil:
			return nil, errors.New("different weights")
		case !sameTensor(a, b):
			diff[s] = true
		}
	}
	return diff, nil
}

// sameAttrs reports whether two nodes' attributes are the same.
func sameAttrs(a, b map[string]graph.Attr) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !reflect.DeepEqual(v, w) {
			return false
		}
	}
	return true
}

// sameTensor reports whether two weights hold the same values.
func sameTensor(a, b *Tensor) bool {
	if a == b {
		return true
	}
	if a.DType != b.DType || !slices.Equal(a.Shape, b.Shape) || a.Packed != nil || b.Packed != nil {
		return false
	}
	return bytes.Equal(a.Bytes(), b.Bytes())
}

// JoinKey is a digest of what Joinable compares but the weights' values: models
// with different keys never join; models with equal keys usually do (Joinable
// and RunParts decide). "" for a model without packed weights, for which a
// cross-model run saves nothing over running the models one by one.
func (md *Model) JoinKey() string {
	md.joinKeyOnce.Do(func() {
		if len(md.packed) == 0 {
			return
		}
		h := sha256.New()
		fmt.Fprintf(h, "%s %p %d %v %v\n", md.Mode, md.cache, md.nslots, md.inputs, md.outputs)
		for _, st := range md.steps {
			fmt.Fprintf(h, "%s %s %v %v", st.node.Op, st.node.Domain, st.in, st.out)
			for _, k := range slices.Sorted(maps.Keys(st.node.Attrs)) {
				fmt.Fprintf(h, " %s=%v", k, st.node.Attrs[k])
			}
			h.Write([]byte{'\n'})
		}
		for _, p := range md.packed {
			fmt.Fprintf(h, "%d %s %d %d\n", p.slot, p.key, p.rows, p.cols)
		}
		md.joinKey = hex.EncodeToString(h.Sum(nil))
	})
	return md.joinKey
}

// rowState is what a run knows of a value's layout.
type rowState uint8

const (
	stateStatic rowState = iota // a weight or constant, the same for every sample
	stateMeta                   // computed without the samples' values (shapes, ranges)
	stateRows                   // dim 0 is the batch times k, per-sample blocks in order
	stateOther                  // depends on the samples, layout unknown
)

// RunParts runs one batch whose rows belong to the parts' models, in order: the
// first parts[0].Rows samples of every input are parts[0].Model's, and so on.
// Every part's model must be Joinable with the session's. It returns the joint
// outputs (rows in input order), or an error wrapping ErrNotJoinable when the graph
// cannot be split by rows; the caller then runs the parts one by one.
func (s *Session) RunParts(ctx context.Context, inputs map[string]*Tensor, parts []Part) (map[string]*Tensor, error) {
	md := s.m
	samples := 0
	for _, p := range parts {
		if p.Rows < 1 {
			return nil, fmt.Errorf("runtime: a part of %d rows", p.Rows)
		}
		samples += p.Rows
	}
	if len(parts) == 0 {
		return nil, errors.New("runtime: no parts")
	}
	infos := make([]*joinInfo, len(parts))
	diff := make([]bool, md.nslots)
	for i, p := range parts {
		if p.Model == md {
			infos[i] = &joinInfo{diff: make([]bool, md.nslots)}
			continue
		}
		if infos[i] = md.join(p.Model); infos[i].err != nil {
			return nil, infos[i].err
		}
		for sl, d := range infos[i].diff {
			diff[sl] = diff[sl] || d
		}
	}
	vals := s.vals
	copy(vals, md.static)
	defer clear(vals)
	state := make([]rowState, md.nslots)
	if err := md.bindInputs(vals, inputs); err != nil {
		return nil, err
	}
	for i, in := range md.Graph.Inputs {
		if t := vals[md.inputs[i]]; len(t.Shape) == 0 || t.Shape[0] != samples {
			return nil, fmt.Errorf("runtime: %s: input %q has shape %v for %d samples", md.Ref, in.Name, t.Shape, samples)
		}
		state[md.inputs[i]] = stateRows
	}
	if len(parts) == 1 && parts[0].Model == md {
		clear(vals)
		return s.Run(ctx, inputs)
	}
	// per part: its model's packed weights, resolved once
	resolved := make([][]*Tensor, len(parts))
	byModel := make(map[*Model][]*Tensor, len(parts))
	for i, p := range parts {
		if r, ok := byModel[p.Model]; ok {
			resolved[i] = r
			continue
		}
		resolved[i] = make([]*Tensor, len(md.packed))
		byModel[p.Model] = resolved[i]
		for k := range md.packed {
			t, err := p.Model.resolve(&p.Model.packed[k])
			if err != nil {
				return nil, err
			}
			resolved[i][k] = t
		}
	}
	packedIndex := make(map[int]int, len(md.packed))
	for k := range md.packed {
		sl := md.packed[k].slot
		packedIndex[sl] = k
		vals[sl] = resolved[0][k]
		if d := md.packed[k].dense; d != nil && !diff[sl] {
			vals[sl] = d // a small weight every part shares: its decoded copy, as Run uses
		}
		if diff[sl] {
			j, err := md.jointWeight(k, parts, resolved)
			if err != nil {
				return nil, err
			}
			vals[sl] = j
		}
	}
	c := &opCtx{alloc: s.arena, opset: md.Graph.Opset}
	defer s.arena.reset()
	ins := make([]*Tensor, 0, 8)
	insState := make([]rowState, 0, 8)
	for i, st := range md.steps {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ins, insState = ins[:0], insState[:0]
		perPart, joint := false, false
		for _, sl := range st.in {
			if sl < 0 {
				ins, insState = append(ins, nil), append(insState, stateStatic)
				continue
			}
			ins, insState = append(ins, vals[sl]), append(insState, state[sl])
			if diff[sl] {
				if _, ok := packedIndex[sl]; ok {
					joint = true
				} else {
					perPart = true
				}
			}
		}
		var outs []*Tensor
		var err error
		switch {
		case perPart && st.node.Op == "Gemm" && gemmBiasOnly(diff, st.in, packedIndex):
			outs, err = s.gemmParts(c, st, ins, insState, parts, infos, samples)
		case perPart:
			outs, err = s.stepParts(c, st, ins, insState, parts, samples, packedIndex, resolved)
		default:
			if joint && (insState[0] != stateRows || attrInt(st.node, "transA", 0) != 0) {
				return nil, fmt.Errorf("%w: %s (%s) multiplies a value whose rows are not the samples'", ErrNotJoinable, st.node.Name, st.node.Op)
			}
			outs, err = st.fn(c, st.node, ins)
		}
		if err != nil {
			return nil, err
		}
		for j, sl := range st.out {
			if sl >= 0 && j < len(outs) {
				vals[sl] = outs[j]
				if perPart {
					state[sl] = stateRows // stepParts and gemmParts checked it
				} else {
					state[sl] = outState(st.node, ins, insState, outs[j], samples, md.Graph.Opset)
				}
			}
		}
		for _, sl := range md.release[i] {
			s.arena.put(vals[sl])
			vals[sl] = nil
		}
	}
	out := make(map[string]*Tensor, len(md.outputs))
	for i, sl := range md.outputs {
		t := vals[sl]
		if t == nil {
			return nil, fmt.Errorf("runtime: %s: output %s was not computed", md.Ref, md.Graph.Outputs[i].Name)
		}
		if state[sl] != stateRows || t.Shape[0] != samples {
			return nil, fmt.Errorf("%w: output %s is not one row per sample", ErrNotJoinable, md.Graph.Outputs[i].Name)
		}
		s.arena.forget(t)
		out[md.Graph.Outputs[i].Name] = t
	}
	return out, nil
}

// gemmBiasOnly reports whether a Gemm's inputs that differ between the parts are
// its C and, packed, its B: gemmParts runs those.
func gemmBiasOnly(diff []bool, in []int, packed map[int]int) bool {
	if len(in) < 3 || in[2] < 0 || !diff[in[2]] {
		return false
	}
	if _, ok := packed[in[1]]; diff[in[1]] && !ok {
		return false
	}
	return !diff[in[0]]
}

// jointWeight builds packed weight k's tensor for a cross-model run: the shared
// base for every row and each part's delta alone for its rows.
func (md *Model) jointWeight(k int, parts []Part, resolved [][]*Tensor) (*Tensor, error) {
	p0 := resolved[0][k].Packed
	base := &kernels.Packed{Rows: p0.Rows, Cols: p0.Cols}
	switch {
	case p0.BaseI16 != nil:
		e, err := md.cache.get(md.packed[k].key, md.packed[k].load)
		if err != nil {
			return nil, err
		}
		base.BaseI16, base.Delta = p0.BaseI16, e.zeroFor(len(p0.BaseI16), md.packed[k].scale)
	case p0.BaseF32 != nil:
		base.BaseF32 = p0.BaseF32
	default:
		return nil, fmt.Errorf("%w: weight %s has an int8 base", ErrNotJoinable, md.packed[k].name)
	}
	j := &jointWeight{base: base}
	for i, p := range parts {
		jp := jointPart{s0: j.samples, s1: j.samples + p.Rows, whole: resolved[i][k].Packed}
		if d := p.Model.packed[k].deltaOnly; d != nil { // nil: the base model itself
			jp.delta = &kernels.Packed{Rows: p0.Rows, Cols: p0.Cols, Delta: d}
		}
		j.parts = append(j.parts, jp)
		j.samples += p.Rows
	}
	return &Tensor{DType: resolved[0][k].DType, Shape: resolved[0][k].Shape, Packed: p0, joint: j}, nil
}

// jointWeight is a packed weight in a cross-model run.
type jointWeight struct {
	base    *kernels.Packed // the shared base, for every row
	parts   []jointPart
	samples int
}

// jointPart is the weight of samples [s0, s1).
type jointPart struct {
	s0, s1 int
	delta  *kernels.Packed // the part's delta alone (kernels.Packed without a base); nil: none
	whole  *kernels.Packed // the part's base + delta
}

// When a shared base product pays. The split computes the base product once
// for every row and adds each part's delta-only product to its rows: it reads
// the base once instead of once per part, but decodes V+1 times (V parts)
// where each part's fused base + delta decodes V times. On the CPU it pays only
// where the base streams from memory rather than cache, and with about one row
// per part: `go test ./kernels -bench CrossModelSplit` (6 parts sharing one
// int16 base, 2 cores, 2026-12-04) gave split/fused times of 1.03-1.42x from
// 1024 x 1024 to 4096 x 4096 (a 2-32 MiB base) and, at 8192 x 8192 (128 MiB),
// 0.80x with one row per part, 0.98x with two, 1.12x with four. (A GPU's
// ratio of arithmetic to bandwidth is far higher: there the split always
// pays.) Tests lower splitMinBaseBytes to run the split on the small families.
var splitMinBaseBytes int64 = 64 << 20

// splitRowsPerPart is the most rows per part, on average, that a split run
// takes.
const splitRowsPerPart = 1

// packedProduct computes out = a·W (W [k×n]) or a·Wᵀ for rows rows of a, W a
// packed weight. For a joint weight the base product covers every row and each
// part's delta product is added to its rows (the rows of a per sample are
// rows/samples, a being rows-ordered: RunParts checks it).
func packedProduct(c *opCtx, out, a []float32, rows int, w *Tensor, transposed bool) error {
	j := w.joint
	if j == nil {
		kernels.MatMulPacked(out, a, rows, w.Packed, transposed)
		return nil
	}
	if rows%j.samples != 0 {
		return fmt.Errorf("%w: %d rows for %d samples", ErrNotJoinable, rows, j.samples)
	}
	per := rows / j.samples
	k, n := j.base.Rows, j.base.Cols
	if transposed {
		k, n = n, k
	}
	if rows > splitRowsPerPart*len(j.parts) || j.base.Bytes() < splitMinBaseBytes {
		for _, p := range j.parts {
			r0, r1 := p.s0*per, p.s1*per
			kernels.MatMulPacked(out[r0*n:r1*n], a[r0*k:r1*k], r1-r0, p.whole, transposed)
		}
		return nil
	}
	kernels.MatMulPacked(out, a, rows, j.base, transposed)
	most := 0
	for _, p := range j.parts {
		most = max(most, p.s1-p.s0)
	}
	tmp := c.alloc.New(graph.F32, []int{most * per * n})
	for _, p := range j.parts {
		if p.delta == nil {
			continue
		}
		r0, r1 := p.s0*per, p.s1*per
		t := tmp.F32[:(r1-r0)*n]
		kernels.MatMulPacked(t, a[r0*k:r1*k], r1-r0, p.delta, transposed)
		o := out[r0*n : r1*n]
		for i, v := range t {
			o[i] += v
		}
	}
	return nil
}

// gemmParts runs a Gemm whose B (packed, joint) and C differ between the parts:
// the product for every row at once (base once, deltas per part), then each part's
// C on its rows.
func (s *Session) gemmParts(c *opCtx, st step, ins []*Tensor, insState []rowState, parts []Part, infos []*joinInfo, samples int) ([]*Tensor, error) {
	n := st.node
	if insState[0] != stateRows || attrInt(n, "transA", 0) != 0 {
		return nil, fmt.Errorf("%w: %s (Gemm) on a value whose rows are not the samples'", ErrNotJoinable, n.Name)
	}
	outs, err := st.fn(c, st.node, ins[:2])
	if err != nil || ins[2] == nil {
		return outs, err
	}
	y := outs[0]
	if storageOf(y.DType) != storeF32 {
		return nil, fmt.Errorf("%w: %s (Gemm) of %s", ErrNotJoinable, n.Name, y.DType)
	}
	m, cols := y.Shape[0], y.Shape[1]
	if m%samples != 0 {
		return nil, fmt.Errorf("%w: %s (Gemm): %d rows for %d samples", ErrNotJoinable, n.Name, m, samples)
	}
	per := m / samples
	alpha, beta := float64(attrFloat(n, "alpha", 1)), float64(attrFloat(n, "beta", 1))
	if alpha != 1 {
		for i, v := range y.F32 {
			y.F32[i] = float32(alpha * float64(v))
		}
	}
	cSlot := st.in[2]
	at := 0
	for _, p := range parts {
		cv := p.Model.static[cSlot]
		if cv == nil || len(cv.Shape) > 2 || len(cv.Shape) == 2 && cv.Shape[0] != 1 {
			return nil, fmt.Errorf("%w: %s (Gemm): C of shape %v", ErrNotJoinable, n.Name, ins[2].Shape)
		}
		cf := cv.Floats()
		if len(cf) != 1 && len(cf) != cols {
			return nil, fmt.Errorf("%w: %s (Gemm): C of shape %v", ErrNotJoinable, n.Name, cv.Shape)
		}
		for r := at * per; r < (at+p.Rows)*per; r++ {
			row := y.F32[r*cols : (r+1)*cols]
			for j := range row {
				cc := cf[min(j, len(cf)-1)]
				if beta == 1 {
					row[j] += cc
				} else {
					row[j] = float32(float64(row[j]) + beta*float64(cc))
				}
			}
		}
		at += p.Rows
	}
	return outs, nil
}

// stepParts runs a step once per part, on the part's rows and with the part's
// weights, and joins the outputs along the first dimension.
func (s *Session) stepParts(c *opCtx, st step, ins []*Tensor, insState []rowState, parts []Part, samples int, packedIndex map[int]int, resolved [][]*Tensor) ([]*Tensor, error) {
	n := st.node
	for i, t := range ins {
		switch {
		case t == nil:
		case insState[i] == stateRows:
			if t.Shape[0]%samples != 0 {
				return nil, fmt.Errorf("%w: %s (%s): input of shape %v for %d samples", ErrNotJoinable, n.Name, n.Op, t.Shape, samples)
			}
		case insState[i] == stateStatic || insState[i] == stateMeta:
		default:
			return nil, fmt.Errorf("%w: %s (%s) reads a fine-tuned weight and a value whose rows are not the samples'", ErrNotJoinable, n.Name, n.Op)
		}
	}
	var pieces [][]*Tensor
	at := 0
	own := make([]*Tensor, len(ins))
	for pi, p := range parts {
		for i, t := range ins {
			sl := -1
			if i < len(st.in) {
				sl = st.in[i]
			}
			switch {
			case t == nil:
				own[i] = nil
			case insState[i] == stateRows:
				own[i] = rowSlice(t, at, at+p.Rows, samples)
			case sl >= 0 && p.Model.static[sl] != nil:
				own[i] = p.Model.static[sl]
			default:
				if k, ok := packedIndex[sl]; ok {
					own[i] = resolved[pi][k]
				} else {
					own[i] = t
				}
			}
		}
		outs, err := st.fn(c, n, own)
		if err != nil {
			return nil, err
		}
		pieces = append(pieces, outs)
		at += p.Rows
	}
	joined := make([]*Tensor, len(pieces[0]))
	for j := range joined {
		if pieces[0][j] == nil {
			continue
		}
		t, err := joinRows(c, n, pieces, j, parts)
		if err != nil {
			return nil, err
		}
		joined[j] = t
	}
	for _, outs := range pieces {
		for _, t := range outs {
			s.arena.put(t)
		}
	}
	return joined, nil
}

// rowSlice is samples [s0, s1) of a rows value, sharing its storage.
func rowSlice(t *Tensor, s0, s1, samples int) *Tensor {
	per := t.Shape[0] / samples
	inner := 1
	for _, d := range t.Shape[1:] {
		inner *= d
	}
	lo, hi := s0*per*inner, s1*per*inner
	v := &Tensor{DType: t.DType, Shape: append([]int{(s1 - s0) * per}, t.Shape[1:]...)}
	switch storageOf(t.DType) {
	case storeF32:
		f := t.Floats()
		v.F32 = f[lo:hi:hi]
	case storeF64:
		v.F64 = t.F64[lo:hi:hi]
	default:
		v.I64 = t.I64[lo:hi:hi]
	}
	return v
}

// joinRows concatenates output j of every part along the first dimension; each
// part's output must hold the same number of rows per sample.
func joinRows(c *opCtx, n *graph.Node, pieces [][]*Tensor, j int, parts []Part) (*Tensor, error) {
	first := pieces[0][j]
	if len(first.Shape) == 0 || first.Shape[0]%parts[0].Rows != 0 {
		return nil, fmt.Errorf("%w: %s (%s): output of shape %v is not rows", ErrNotJoinable, n.Name, n.Op, first.Shape)
	}
	per := first.Shape[0] / parts[0].Rows
	rows := 0
	for i, outs := range pieces {
		t := outs[j]
		if t == nil || t.DType != first.DType || len(t.Shape) != len(first.Shape) ||
			!slices.Equal(t.Shape[1:], first.Shape[1:]) || t.Shape[0] != per*parts[i].Rows {
			return nil, fmt.Errorf("%w: %s (%s): parts give outputs of different shapes", ErrNotJoinable, n.Name, n.Op)
		}
		rows += t.Shape[0]
	}
	out := c.alloc.New(first.DType, append([]int{rows}, first.Shape[1:]...))
	at := 0
	for _, outs := range pieces {
		t := outs[j]
		switch storageOf(t.DType) {
		case storeF32:
			at += copy(out.F32[at:], t.Floats())
		case storeF64:
			at += copy(out.F64[at:], t.F64)
		default:
			at += copy(out.I64[at:], t.I64)
		}
	}
	return out, nil
}

// Ops that keep rows: they work on each first-dimension entry on its own.
var (
	// unary ops (and those whose other inputs are weights): out follows input 0
	rowwiseOps = setOf("Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Neg", "Abs",
		"Reciprocal", "Cast", "CastLike", "Identity", "Dropout", "Clip", "LeakyRelu", "Elu", "Selu",
		"Celu", "Softplus", "Softsign", "HardSigmoid", "HardSwish", "Gelu", "Sin", "Cos", "Floor",
		"Ceil", "Round", "Sign", "Not", "IsNaN", "IsInf", "Mish", "ThresholdedRelu", "Shrink",
		"BatchNormalization", "InstanceNormalization", "Conv", "ConvTranspose", "MaxPool",
		"AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN", "Tan", "Atan", "Asin", "Acos",
		"Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "BitwiseNot")
	// broadcasting elementwise ops
	broadcastOps = setOf("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Equal",
		"Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Where", "Mod",
		"PRelu", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
	// ops along an axis (attribute "axis" or "axes"), rows unless it is axis 0
	axisOps = setOf("Softmax", "LogSoftmax", "Hardmax", "LayerNormalization", "Concat", "Split",
		"ArgMax", "ArgMin", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
		"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "CumSum",
		"Gather", "Slice", "Trilu", "Flatten")
	// reshapes of row-major data: rows when the output's dim 0 is a multiple of the samples
	reshapeOps = setOf("Reshape", "Squeeze", "Unsqueeze")
	metaOps    = setOf("Shape", "Size", "Range", "ConstantOfShape")
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, s := range names {
		m[s] = true
	}
	return m
}

// outState is the state of a step's output t from its inputs'.
func outState(n *graph.Node, ins []*Tensor, st []rowState, t *Tensor, samples int, opset int64) rowState {
	if t == nil {
		return stateOther
	}
	anyOther, allFixed := false, true
	for i, s := range st {
		if ins[i] == nil {
			continue
		}
		switch s {
		case stateRows:
			allFixed = false
		case stateOther:
			anyOther, allFixed = true, false
		}
	}
	if metaOps[n.Op] || allFixed {
		return stateMeta
	}
	if anyOther || len(t.Shape) == 0 || t.Shape[0]%samples != 0 {
		return stateOther
	}
	x := ins[0]
	rows0 := st[0] == stateRows && len(x.Shape) > 0
	switch {
	case rowwiseOps[n.Op]:
		if rows0 && t.Shape[0] == x.Shape[0] && fixedAfter(st, 1) {
			return stateRows
		}
	case broadcastOps[n.Op]:
		if broadcastRows(ins, st, t) {
			return stateRows
		}
	case reshapeOps[n.Op]:
		if rows0 && fixedAfter(st, 1) {
			return stateRows // t.Shape[0] % samples == 0, checked above
		}
	case n.Op == "MatMul":
		b := ins[1]
		if rows0 && len(x.Shape) >= 2 && len(t.Shape) == len(x.Shape) && t.Shape[0] == x.Shape[0] &&
			(st[1] != stateRows && len(b.Shape) <= 2 || st[1] == stateRows && len(b.Shape) == len(x.Shape) && len(x.Shape) >= 3 && b.Shape[0] == x.Shape[0]) {
			return stateRows
		}
	case n.Op == "Gemm":
		if rows0 && attrInt(n, "transA", 0) == 0 && fixedAfter(st, 1) {
			return stateRows
		}
	case n.Op == "Transpose":
		perm := attrInts(n, "perm", nil)
		if rows0 && len(perm) > 0 && perm[0] == 0 {
			return stateRows
		}
	case n.Op == "Expand":
		if rows0 && len(t.Shape) == len(x.Shape) && t.Shape[0] == x.Shape[0] {
			return stateRows
		}
	case n.Op == "Gather" && st[0] != stateRows:
		// an embedding lookup: rows of indices become rows of vectors
		idx := ins[1]
		if st[1] == stateRows && attrInt(n, "axis", 0) == 0 && len(idx.Shape) > 0 && t.Shape[0] == idx.Shape[0] {
			return stateRows
		}
	case axisOps[n.Op]:
		if rows0 && fixedAfter(st, 1) && !touchesAxis0(n, ins, x, opset) && t.Shape[0] == x.Shape[0] {
			return stateRows
		}
	}
	return stateOther
}

// fixedAfter reports whether inputs from..end are weights or shape values.
func fixedAfter(st []rowState, from int) bool {
	for _, s := range st[from:] {
		if s == stateRows || s == stateOther {
			return false
		}
	}
	return true
}

// broadcastRows reports whether an elementwise op's output is rows: every
// sample-dependent input is rows of the output's rank and first dimension, and
// every other input broadcasts along the first dimension.
func broadcastRows(ins []*Tensor, st []rowState, t *Tensor) bool {
	rows := false
	for i, x := range ins {
		if x == nil {
			continue
		}
		if st[i] == stateRows {
			if len(x.Shape) != len(t.Shape) || x.Shape[0] != t.Shape[0] {
				return false
			}
			rows = true
			continue
		}
		if len(x.Shape) == len(t.Shape) && x.Shape[0] != 1 && t.Shape[0] != 1 {
			return false
		}
	}
	return rows
}

// touchesAxis0 reports whether an axis op works along (or removes) the first
// dimension of x.
func touchesAxis0(n *graph.Node, ins []*Tensor, x *Tensor, opset int64) bool {
	rank := len(x.Shape)
	isZero := func(a int64) bool { return a == 0 || a == -int64(rank) }
	switch n.Op {
	case "Softmax", "LogSoftmax", "Hardmax":
		def := int64(-1)
		if opset < 13 {
			def = 1
		}
		return isZero(attrInt(n, "axis", def))
	case "LayerNormalization":
		return isZero(attrInt(n, "axis", -1))
	case "Flatten":
		return isZero(attrInt(n, "axis", 1))
	case "Trilu":
		return rank < 3
	case "Concat", "Split", "ArgMax", "ArgMin", "Gather":
		return isZero(attrInt(n, "axis", 0))
	case "CumSum":
		if len(ins) < 2 || ins[1] == nil || len(ins[1].I64) != 1 {
			return true
		}
		return isZero(ins[1].I64[0])
	case "Slice":
		if len(ins) < 4 || ins[3] == nil {
			return true
		}
		return slices.ContainsFunc(ins[3].I64, isZero)
	}
	// Reduce*: axes from the attribute or (opset 18, ReduceSum 13) input 1
	axes := attrInts(n, "axes", nil)
	if axes == nil && len(ins) > 1 && ins[1] != nil {
		axes = ins[1].I64
	}
	if axes == nil {
		return true // every axis
	}
	return slices.ContainsFunc(axes, isZero)
}

// relativeDelta returns d for a product that adds it to a base product computed
// apart (the delta alone, kernels.Packed without a base): the exceptions, which
// hold whole weights, become whole weight minus the base's value.
func relativeDelta(d *quant.GroupPacked, e *baseEntry) *quant.GroupPacked {
	if len(d.Exceptions) == 0 {
		return d
	}
	r := *d
	r.Exceptions = make([]quant.Exception, len(d.Exceptions))
	for i, ex := range d.Exceptions {
		var b float32
		switch {
		case e.i16 != nil:
			b = float32(int32(e.i16[ex.Index])) * d.Scale
		case e.f32 != nil:
			b = e.f32[ex.Index]
		}
		r.Exceptions[i] = quant.Exception{Index: ex.Index, Bits: math.Float32bits(math.Float32frombits(ex.Bits) - b)}
	}
	return &r
}
