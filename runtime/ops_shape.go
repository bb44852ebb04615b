package runtime

import (
	"math"

	"github.com/neurstore/neurstore/graph"
)

// Shape and data-movement ops. They copy: an output never shares its input's
// buffer, since the session's arena recycles buffers by tensor.

// maxElems bounds the size of a tensor an op builds from run-time values
// (Range, ConstantOfShape, Expand, Tile), so that a bad value gives an error
// rather than an enormous allocation.
const maxElems = 1 << 34

// shapeFrom converts a shape given as int64 values, refusing negative dims and
// overflowing sizes.
func shapeFrom(n *graph.Node, v []int64) ([]int, error) {
	s := make([]int, len(v))
	total := int64(1)
	for i, d := range v {
		if d < 0 {
			return nil, opErr(n, "negative dimension %d in shape %v", d, v)
		}
		if d > 0 && total > maxElems/d {
			return nil, opErr(n, "shape %v is too large", v)
		}
		total *= max(d, 1)
		s[i] = int(d)
	}
	return s, nil
}

func opIdentity(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	return one(cloneTensor(c, in[0], in[0].Shape))
}

func opDropout(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	if t := optIn(in, 2); t != nil && c.opset >= 12 {
		_, train, err := scalarOf(n, t, "training_mode")
		if err != nil {
			return nil, err
		}
		ratio := 0.5
		if r := optIn(in, 1); r != nil {
			if ratio, _, err = scalarOf(n, r, "ratio"); err != nil {
				return nil, err
			}
		}
		if train != 0 && ratio != 0 {
			return nil, unsupported(n, "training mode is not supported")
		}
	}
	outs := []*Tensor{cloneTensor(c, x, x.Shape), nil}
	if wantOut(n, 1) {
		mask := c.alloc.New(graph.Bool, x.Shape)
		for i := range mask.I64 {
			mask.I64[i] = 1
		}
		outs[1] = mask
	}
	return outs, nil
}

func opShape(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	shape := in[0].Shape
	r := int64(len(shape))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end := clamp(attrInt(n, "start", 0)), clamp(attrInt(n, "end", r))
	end = max(end, start)
	out := c.alloc.New(graph.I64, []int{int(end - start)})
	for i := range out.I64 {
		out.I64[i] = int64(shape[int(start)+i])
	}
	return one(out)
}

func opSize(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	out := c.alloc.New(graph.I64, nil)
	out.I64[0] = int64(in[0].Len())
	return one(out)
}

func opReshape(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	spec, err := intsOf(n, in[1], "shape")
	if err != nil {
		return nil, err
	}
	allowZero := attrInt(n, "allowzero", 0) != 0
	shape := make([]int, len(spec))
	infer, known := -1, 1
	for i, d := range spec {
		switch {
		case d == -1:
			if infer >= 0 {
				return nil, opErr(n, "shape %v has more than one -1", spec)
			}
			infer = i
			continue
		case d == 0 && !allowZero:
			if i >= len(x.Shape) {
				return nil, opErr(n, "shape %v copies dimension %d of a rank-%d input", spec, i, len(x.Shape))
			}
			shape[i] = x.Shape[i]
		case d < 0:
			return nil, opErr(n, "invalid dimension %d in shape %v", d, spec)
		case d > int64(x.Len()) && x.Len() > 0:
			return nil, opErr(n, "cannot reshape %v to %v", x.Shape, spec)
		default:
			shape[i] = int(d)
		}
		known *= shape[i]
	}
	if infer >= 0 {
		if known == 0 || x.Len()%known != 0 {
			return nil, opErr(n, "cannot reshape %v to %v", x.Shape, spec)
		}
		shape[infer] = x.Len() / known
	}
	if numel(shape) != x.Len() {
		return nil, opErr(n, "cannot reshape %v (%d elements) to %v", x.Shape, x.Len(), spec)
	}
	return one(cloneTensor(c, x, shape))
}

func opFlatten(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	r := len(x.Shape)
	axis := attrInt(n, "axis", 1)
	if axis < -int64(r) || axis > int64(r) {
		return nil, opErr(n, "axis %d is out of range for rank %d", axis, r)
	}
	if axis < 0 {
		axis += int64(r)
	}
	shape := []int{numel(x.Shape[:axis]), numel(x.Shape[axis:])}
	return one(cloneTensor(c, x, shape))
}

func opSqueeze(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	axes, ok, err := axesArg(c, n, in, 1, 13)
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(x.Shape))
	if ok && len(axes) > 0 {
		ax, err := normAxes(n, axes, len(x.Shape))
		if err != nil {
			return nil, err
		}
		for _, a := range ax {
			if x.Shape[a] != 1 {
				return nil, opErr(n, "cannot squeeze axis %d of size %d", a, x.Shape[a])
			}
			drop[a] = true
		}
	} else {
		for i, d := range x.Shape {
			drop[i] = d == 1
		}
	}
	var shape []int
	for i, d := range x.Shape {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	return one(cloneTensor(c, x, shape))
}

func opUnsqueeze(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	axes, ok, err := axesArg(c, n, in, 1, 13)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, opErr(n, "axes are missing")
	}
	rank := len(x.Shape) + len(axes)
	ax, err := normAxes(n, axes, rank)
	if err != nil {
		return nil, err
	}
	shape := make([]int, rank)
	for _, a := range ax {
		shape[a] = -1
	}
	j := 0
	for i := range shape {
		if shape[i] == -1 {
			shape[i] = 1
			continue
		}
		shape[i] = x.Shape[j]
		j++
	}
	return one(cloneTensor(c, x, shape))
}

func opTranspose(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	r := len(x.Shape)
	perm := attrInts(n, "perm", nil)
	if perm == nil {
		perm = make([]int64, r)
		for i := range perm {
			perm[i] = int64(r - 1 - i)
		}
	}
	if len(perm) != r {
		return nil, opErr(n, "perm %v for rank %d", perm, r)
	}
	p, err := normAxes(n, perm, r)
	if err != nil {
		return nil, err
	}
	st := stridesOf(x.Shape)
	shape, strides := make([]int, r), make([]int, r)
	for i, a := range p {
		shape[i], strides[i] = x.Shape[a], st[a]
	}
	out := c.alloc.New(x.DType, shape)
	viewCopy(out, x, shape, 0, strides)
	return one(out)
}

func opConcat(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if len(in) == 0 {
		return nil, opErr(n, "needs at least one input")
	}
	if err := need(n, in, len(in)); err != nil {
		return nil, err
	}
	if err := sameType(n, in); err != nil {
		return nil, err
	}
	first := in[0]
	r := len(first.Shape)
	axis, err := normAxis(n, attrInt(n, "axis", 0), r)
	if err != nil {
		return nil, err
	}
	shape := append([]int(nil), first.Shape...)
	shape[axis] = 0
	for _, t := range in {
		if len(t.Shape) != r {
			return nil, opErr(n, "inputs of rank %d and %d", r, len(t.Shape))
		}
		for i, d := range t.Shape {
			if i != axis && d != first.Shape[i] {
				return nil, opErr(n, "input shapes %v and %v differ off axis %d", first.Shape, t.Shape, axis)
			}
		}
		shape[axis] += t.Shape[axis]
	}
	out := c.alloc.New(first.DType, shape)
	outer, inner := numel(shape[:axis]), numel(shape[axis+1:])
	o := 0
	for i := range outer {
		for _, t := range in {
			k := t.Shape[axis] * inner
			copyElems(out, o, t, i*k, k)
			o += k
		}
	}
	return one(out)
}

func opSplit(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	axis, err := normAxis(n, attrInt(n, "axis", 0), len(x.Shape))
	if err != nil {
		return nil, err
	}
	d := x.Shape[axis]
	var sizes []int64
	if t := optIn(in, 1); t != nil && c.opset >= 13 {
		if sizes, err = intsOf(n, t, "split"); err != nil {
			return nil, err
		}
	} else if c.opset < 13 {
		sizes = attrInts(n, "split", nil)
	}
	k := len(n.Outputs)
	if c.opset >= 18 && hasAttr(n, "num_outputs") {
		k = int(attrInt(n, "num_outputs", 0))
		if k < 1 || len(n.Outputs) > 0 && k != len(n.Outputs) {
			return nil, opErr(n, "num_outputs %d for %d outputs", k, len(n.Outputs))
		}
	}
	if len(sizes) == 0 {
		if k < 1 {
			return nil, opErr(n, "the number of outputs is unknown")
		}
		chunk := (d + k - 1) / k
		sizes = make([]int64, k)
		left := d
		for i := range sizes {
			sizes[i] = int64(min(chunk, left))
			left -= int(sizes[i])
		}
	}
	if len(n.Outputs) > 0 && len(sizes) != len(n.Outputs) {
		return nil, opErr(n, "%d split sizes for %d outputs", len(sizes), len(n.Outputs))
	}
	total := int64(0)
	for _, s := range sizes {
		if s < 0 {
			return nil, opErr(n, "negative split size in %v", sizes)
		}
		total += s
	}
	if total != int64(d) {
		return nil, opErr(n, "split sizes %v do not add up to dimension %d", sizes, d)
	}
	outer, inner := numel(x.Shape[:axis]), numel(x.Shape[axis+1:])
	outs := make([]*Tensor, len(sizes))
	start := 0
	for j, s := range sizes {
		shape := append([]int(nil), x.Shape...)
		shape[axis] = int(s)
		out := c.alloc.New(x.DType, shape)
		k := int(s) * inner
		for i := range outer {
			copyElems(out, i*k, x, (i*d+start)*inner, k)
		}
		start += int(s)
		outs[j] = out
	}
	return outs, nil
}

func opSlice(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	r := len(x.Shape)
	var starts, ends, axes, steps []int64
	if c.opset < 10 {
		starts, ends, axes = attrInts(n, "starts", nil), attrInts(n, "ends", nil), attrInts(n, "axes", nil)
	} else {
		if err := need(n, in, 3); err != nil {
			return nil, err
		}
		var err error
		if starts, err = intsOf(n, in[1], "starts"); err != nil {
			return nil, err
		}
		if ends, err = intsOf(n, in[2], "ends"); err != nil {
			return nil, err
		}
		if t := optIn(in, 3); t != nil {
			if axes, err = intsOf(n, t, "axes"); err != nil {
				return nil, err
			}
		}
		if t := optIn(in, 4); t != nil {
			if steps, err = intsOf(n, t, "steps"); err != nil {
				return nil, err
			}
		}
	}
	if len(ends) != len(starts) || axes != nil && len(axes) != len(starts) || steps != nil && len(steps) != len(starts) {
		return nil, opErr(n, "starts, ends, axes and steps differ in length")
	}
	if axes == nil {
		if len(starts) > r {
			return nil, opErr(n, "%d starts for rank %d", len(starts), r)
		}
		axes = make([]int64, len(starts))
		for i := range axes {
			axes[i] = int64(i)
		}
	}
	ax, err := normAxes(n, axes, r)
	if err != nil {
		return nil, err
	}
	st := stridesOf(x.Shape)
	shape := append([]int(nil), x.Shape...)
	strides := append([]int(nil), st...)
	base := 0
	for i, a := range ax {
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step == 0 {
			return nil, opErr(n, "step 0 on axis %d", a)
		}
		dim := int64(x.Shape[a])
		start, end := starts[i], ends[i]
		if start < 0 {
			start += dim
		}
		if end < 0 {
			end += dim
		}
		var count int64
		// (written so that no step, however large, overflows)
		if step > 0 {
			start, end = min(max(start, 0), dim), min(max(end, 0), dim)
			if end > start {
				count = (end-start-1)/step + 1
			}
		} else {
			start, end = min(max(start, 0), dim-1), min(max(end, -1), dim-1)
			if start > end {
				count = (start-end-1)/-step + 1 // -MinInt64 stays negative: count 1
			}
		}
		shape[a] = int(count)
		if count > 0 {
			base += int(start) * st[a]
			strides[a] = int(step) * st[a]
		}
	}
	out := c.alloc.New(x.DType, shape)
	if out.Len() > 0 {
		viewCopy(out, x, shape, base, strides)
	}
	return one(out)
}

func opGather(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	if len(x.Shape) == 0 {
		return nil, opErr(n, "cannot gather from a scalar")
	}
	axis, err := normAxis(n, attrInt(n, "axis", 0), len(x.Shape))
	if err != nil {
		return nil, err
	}
	idx, err := intsOf(n, in[1], "indices")
	if err != nil {
		return nil, err
	}
	d := x.Shape[axis]
	for _, v := range idx {
		if v < -int64(d) || v >= int64(d) {
			return nil, opErr(n, "index %d is out of range for dimension %d", v, d)
		}
	}
	shape := append(append(append([]int(nil), x.Shape[:axis]...), in[1].Shape...), x.Shape[axis+1:]...)
	out := c.alloc.New(x.DType, shape)
	outer, inner := numel(x.Shape[:axis]), numel(x.Shape[axis+1:])
	o := 0
	for i := range outer {
		for _, v := range idx {
			if v < 0 {
				v += int64(d)
			}
			copyElems(out, o, x, (i*d+int(v))*inner, inner)
			o += inner
		}
	}
	return one(out)
}

func opExpand(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	spec, err := intsOf(n, in[1], "shape")
	if err != nil {
		return nil, err
	}
	want, err := shapeFrom(n, spec)
	if err != nil {
		return nil, err
	}
	shape, err := broadcastShape(n, x.Shape, want)
	if err != nil {
		return nil, err
	}
	if numel(shape) > maxElems {
		return nil, opErr(n, "shape %v is too large", shape)
	}
	out := c.alloc.New(x.DType, shape)
	viewCopy(out, x, shape, 0, broadcastStrides(x.Shape, shape))
	return one(out)
}

func opTile(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 2); err != nil {
		return nil, err
	}
	x := in[0]
	reps, err := intsOf(n, in[1], "repeats")
	if err != nil {
		return nil, err
	}
	r := len(x.Shape)
	if len(reps) != r {
		return nil, opErr(n, "%d repeats for rank %d", len(reps), r)
	}
	// Read x as the view [reps[0], d0, reps[1], d1, ...] with stride 0 along the
	// repeats: in C order that is the tiled tensor.
	st := stridesOf(x.Shape)
	view, strides := make([]int, 2*r), make([]int, 2*r)
	shape := make([]int, r)
	total := int64(1)
	for i, k := range reps {
		if k < 0 || k > maxElems {
			return nil, opErr(n, "invalid repeat %d", k)
		}
		view[2*i], view[2*i+1], strides[2*i+1] = int(k), x.Shape[i], st[i]
		shape[i] = int(k) * x.Shape[i]
		if total = total * max(1, k*int64(x.Shape[i])); total > maxElems {
			return nil, opErr(n, "output of %v times %v is too large", x.Shape, reps)
		}
	}
	out := c.alloc.New(x.DType, shape)
	if out.Len() > 0 {
		viewCopy(out, x, view, 0, strides)
	}
	return one(out)
}

func opRange(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 3); err != nil {
		return nil, err
	}
	if err := sameType(n, in[:3]); err != nil {
		return nil, err
	}
	dt := in[0].DType
	if !supported(dt) || dt == graph.Bool {
		return nil, errType(n, dt)
	}
	var f [3]float64
	var v [3]int64
	for i, name := range []string{"start", "limit", "delta"} {
		var err error
		if f[i], v[i], err = scalarOf(n, in[i], name); err != nil {
			return nil, err
		}
	}
	var count int64
	if isFloat(dt) {
		if f[2] == 0 {
			return nil, opErr(n, "delta is 0")
		}
		cnt := math.Ceil((f[1] - f[0]) / f[2])
		if cnt > maxElems {
			return nil, opErr(n, "range of %g elements is too large", cnt)
		}
		if cnt > 0 { // false for NaN
			count = int64(cnt)
		}
	} else {
		start, limit, delta := v[0], v[1], v[2]
		switch {
		case delta == 0:
			return nil, opErr(n, "delta is 0")
		case delta > 0 && limit > start:
			count = int64((uint64(limit-start) + uint64(delta) - 1) / uint64(delta))
		case delta < 0 && limit < start:
			count = int64((uint64(start-limit) + uint64(-delta) - 1) / uint64(-delta))
		}
		if count > maxElems {
			return nil, opErr(n, "range of %d elements is too large", count)
		}
	}
	out := c.alloc.New(dt, []int{int(count)})
	switch storageOf(dt) {
	case storeF32:
		for i := range out.F32 {
			out.F32[i] = float32(f[0] + float64(i)*f[2])
		}
	case storeF64:
		for i := range out.F64 {
			out.F64[i] = f[0] + float64(i)*f[2]
		}
	default:
		for i := range out.I64 {
			out.I64[i] = v[0] + int64(i)*v[2]
		}
	}
	return one(finish(out))
}

func opConstant(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	for name, a := range n.Attrs {
		var t *Tensor
		switch name {
		case "value":
			if a.T == nil {
				return nil, opErr(n, "value has no tensor")
			}
			v, err := constTensor(a.T)
			if err != nil {
				return nil, opErr(n, "%v", err)
			}
			t = v
		case "value_float":
			t = &Tensor{DType: graph.F32, F32: []float32{a.F}}
		case "value_floats":
			t = &Tensor{DType: graph.F32, Shape: []int{len(a.Floats)}, F32: a.Floats}
		case "value_int":
			t = &Tensor{DType: graph.I64, I64: []int64{a.I}}
		case "value_ints":
			t = &Tensor{DType: graph.I64, Shape: []int{len(a.Ints)}, I64: a.Ints}
		default:
			return nil, unsupported(n, "attribute %s is not supported", name)
		}
		return one(cloneTensor(c, t, t.Shape))
	}
	return nil, opErr(n, "no value attribute")
}

func opConstantOfShape(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	spec, err := intsOf(n, in[0], "shape")
	if err != nil {
		return nil, err
	}
	shape, err := shapeFrom(n, spec)
	if err != nil {
		return nil, err
	}
	val := &Tensor{DType: graph.F32, F32: []float32{0}}
	if a, ok := n.Attrs["value"]; ok && a.T != nil {
		if val, err = constTensor(a.T); err != nil {
			return nil, opErr(n, "%v", err)
		}
		if val.Len() != 1 {
			return nil, opErr(n, "value must have one element, got shape %v", val.Shape)
		}
	}
	if !supported(val.DType) {
		return nil, errType(n, val.DType)
	}
	out := c.alloc.New(val.DType, shape)
	switch storageOf(val.DType) {
	case storeF32:
		for i := range out.F32 {
			out.F32[i] = val.F32[0]
		}
	case storeF64:
		for i := range out.F64 {
			out.F64[i] = val.F64[0]
		}
	default:
		for i := range out.I64 {
			out.I64[i] = val.I64[0]
		}
	}
	return one(out)
}

func opTrilu(c *opCtx, n *graph.Node, in []*Tensor) ([]*Tensor, error) {
	if err := need(n, in, 1); err != nil {
		return nil, err
	}
	x := in[0]
	r := len(x.Shape)
	if r < 2 {
		return nil, opErr(n, "input of rank %d; Trilu needs at least 2", r)
	}
	k := int64(0)
	if t := optIn(in, 1); t != nil {
		var err error
		if _, k, err = scalarOf(n, t, "k"); err != nil {
			return nil, err
		}
	}
	upper := attrInt(n, "upper", 1) != 0
	rows, cols := x.Shape[r-2], x.Shape[r-1]
	out := cloneTensor(c, x, x.Shape)
	if rows == 0 || cols == 0 {
		return one(out)
	}
	for m := 0; m < out.Len(); m += rows * cols {
		for i := range rows {
			for j := range cols {
				d := int64(j - i)
				if upper && d < k || !upper && d > k {
					zeroElem(out, m+i*cols+j)
				}
			}
		}
	}
	return one(out)
}

// zeroElem sets element i of t to zero.
func zeroElem(t *Tensor, i int) {
	switch storageOf(t.DType) {
	case storeF32:
		t.F32[i] = 0
	case storeF64:
		t.F64[i] = 0
	default:
		t.I64[i] = 0
	}
}
