package runtime

import (
	"context"
	"fmt"
	"math/bits"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
)

// Session runs a Model. It owns an arena of activation buffers reused from run to
// run; a Session is not safe for concurrent use (make one per goroutine).
type Session struct {
	m     *Model
	arena *arena
	vals  []*Tensor
}

// NewSession returns a session over md.
func (md *Model) NewSession() *Session {
	return &Session{m: md, arena: newArena(), vals: make([]*Tensor, md.nslots)}
}

// Inputs and Outputs describe the model's graph inputs and outputs.
func (md *Model) Inputs() []graph.ValueInfo  { return md.Graph.Inputs }
func (md *Model) Outputs() []graph.ValueInfo { return md.Graph.Outputs }

// Run computes the graph outputs for the given inputs (one per graph input, by
// name). The returned tensors belong to the caller; inputs are not modified.
func (s *Session) Run(ctx context.Context, inputs map[string]*Tensor) (map[string]*Tensor, error) {
	md := s.m
	vals := s.vals
	copy(vals, md.static)
	defer clear(vals)
	if err := md.bindInputs(vals, inputs); err != nil {
		return nil, err
	}
	for i := range md.packed {
		p := &md.packed[i]
		if p.dense != nil { // a small weight's decoded copy, multiplied as in f32 mode
			vals[p.slot] = p.dense
			continue
		}
		t, err := md.resolve(p)
		if err != nil {
			return nil, err
		}
		vals[p.slot] = t
	}
	c := &opCtx{alloc: s.arena, opset: md.Graph.Opset}
	ins := make([]*Tensor, 0, 8)
	for i, st := range md.steps {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		ins = ins[:0]
		for _, sl := range st.in {
			if sl < 0 {
				ins = append(ins, nil)
				continue
			}
			ins = append(ins, vals[sl])
		}
		outs, err := st.fn(c, st.node, ins)
		if err != nil {
			s.arena.reset()
			return nil, err
		}
		for j, sl := range st.out {
			if sl >= 0 && j < len(outs) {
				vals[sl] = outs[j]
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
		s.arena.forget(t) // the caller owns it now
		out[md.Graph.Outputs[i].Name] = t
	}
	s.arena.reset()
	return out, nil
}

// bindInputs checks inputs against the graph's and puts them in their slots.
func (md *Model) bindInputs(vals []*Tensor, inputs map[string]*Tensor) error {
	for i, in := range md.Graph.Inputs {
		t, ok := inputs[in.Name]
		if !ok {
			return fmt.Errorf("runtime: %s: missing input %q", md.Ref, in.Name)
		}
		if err := checkInput(in, t); err != nil {
			return fmt.Errorf("runtime: %s: %w", md.Ref, err)
		}
		vals[md.inputs[i]] = t
	}
	if len(inputs) != len(md.Graph.Inputs) {
		for name := range inputs {
			if _, ok := md.names[name]; !ok || !isInput(md.Graph, name) {
				return fmt.Errorf("runtime: %s: unknown input %q", md.Ref, name)
			}
		}
	}
	return nil
}

func isInput(g *graph.Graph, name string) bool {
	for _, in := range g.Inputs {
		if in.Name == name {
			return true
		}
	}
	return false
}

// checkInput checks t against the declared type of graph input in.
func checkInput(in graph.ValueInfo, t *Tensor) error {
	if t == nil {
		return fmt.Errorf("input %q is nil", in.Name)
	}
	if in.DType.Valid() && t.DType != in.DType {
		return fmt.Errorf("input %q: got %s, the model takes %s", in.Name, t.DType, in.DType)
	}
	if in.Shape != nil {
		if len(t.Shape) != len(in.Shape) {
			return fmt.Errorf("input %q: got shape %v, the model takes %s", in.Name, t.Shape, shapeString(in.Shape))
		}
		for i, d := range in.Shape {
			if d.Value >= 0 && int(d.Value) != t.Shape[i] {
				return fmt.Errorf("input %q: got shape %v, the model takes %s", in.Name, t.Shape, shapeString(in.Shape))
			}
		}
	}
	n := t.Len()
	switch storageOf(t.DType) {
	case storeF32:
		if len(t.F32) != n {
			return fmt.Errorf("input %q: %d values for shape %v", in.Name, len(t.F32), t.Shape)
		}
	case storeF64:
		if len(t.F64) != n {
			return fmt.Errorf("input %q: %d values for shape %v", in.Name, len(t.F64), t.Shape)
		}
	default:
		if len(t.I64) != n {
			return fmt.Errorf("input %q: %d values for shape %v", in.Name, len(t.I64), t.Shape)
		}
	}
	return nil
}

func shapeString(s []graph.Dim) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ',')
		}
		switch {
		case d.Value >= 0:
			b = fmt.Appendf(b, "%d", d.Value)
		case d.Param != "":
			b = append(b, d.Param...)
		default:
			b = append(b, '?')
		}
	}
	return string(append(b, ']'))
}

// resolve builds the run-time tensor of a packed weight, fetching its base from
// the cache.
func (md *Model) resolve(p *packedWeight) (*Tensor, error) {
	e, err := md.cache.get(p.key, p.load)
	if err != nil {
		return nil, fmt.Errorf("runtime: %s: base of %s: %w", md.Ref, p.name, err)
	}
	k := &kernels.Packed{Rows: p.rows, Cols: p.cols, Delta: p.delta}
	switch {
	case e.i8 != nil:
		// the kernels take an integer base with a delta that carries the scale:
		// an all-zero 1-bit delta in one group (N/8 bytes)
		k.BaseI8, k.Delta = e.i8, e.zero
	case e.i16 != nil:
		k.BaseI16 = e.i16
		if k.Delta == nil {
			// a base used alone: an all-zero delta carries the grid step
			k.Delta = e.zeroFor(len(e.i16), p.scale)
		}
	default:
		k.BaseF32 = e.f32
	}
	return &Tensor{DType: p.dtype, Shape: p.shape, Packed: k}, nil
}

// arena hands out activation buffers and takes them back after their last reader,
// so a session's steady state allocates only tensor headers.
type arena struct {
	f32  [40][][]float32
	f64  [40][][]float64
	i64  [40][][]int64
	live map[*Tensor]bool
}

func newArena() *arena { return &arena{live: map[*Tensor]bool{}} }

func sizeClass(n int) int { return bits.Len(uint(max(n, 1) - 1)) }

// New implements Alloc.
func (a *arena) New(dt graph.DType, shape []int) *Tensor {
	t := &Tensor{DType: dt, Shape: append([]int(nil), shape...)}
	n := t.Len()
	c := sizeClass(n)
	switch storageOf(dt) {
	case storeF32:
		if l := a.f32[c]; len(l) > 0 {
			t.F32, a.f32[c] = l[len(l)-1][:n], l[:len(l)-1]
		} else {
			t.F32 = make([]float32, n, 1<<c)
		}
	case storeF64:
		if l := a.f64[c]; len(l) > 0 {
			t.F64, a.f64[c] = l[len(l)-1][:n], l[:len(l)-1]
		} else {
			t.F64 = make([]float64, n, 1<<c)
		}
	default:
		if l := a.i64[c]; len(l) > 0 {
			t.I64, a.i64[c] = l[len(l)-1][:n], l[:len(l)-1]
		} else {
			t.I64 = make([]int64, n, 1<<c)
		}
	}
	a.live[t] = true
	return t
}

// put takes back t's buffer if the arena handed it out and it is still live.
func (a *arena) put(t *Tensor) {
	if t == nil || !a.live[t] {
		return
	}
	delete(a.live, t)
	switch {
	case t.F32 != nil:
		c := sizeClass(cap(t.F32))
		a.f32[c] = append(a.f32[c], t.F32)
	case t.F64 != nil:
		c := sizeClass(cap(t.F64))
		a.f64[c] = append(a.f64[c], t.F64)
	case t.I64 != nil:
		c := sizeClass(cap(t.I64))
		a.i64[c] = append(a.i64[c], t.I64)
	}
}

// forget hands t to the caller: the arena never reuses its buffer.
func (a *arena) forget(t *Tensor) { delete(a.live, t) }

// reset takes back every buffer still live (after a run).
func (a *arena) reset() {
	for t := range a.live {
		a.put(t)
	}
}
