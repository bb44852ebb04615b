package runtime

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/quant"
)

// Helpers for building nodes and tensors.

func aInt(v int64) graph.Attr           { return graph.Attr{Type: graph.AttrInt, I: v} }
func aInts(v ...int64) graph.Attr       { return graph.Attr{Type: graph.AttrInts, Ints: v} }
func aFloat(v float32) graph.Attr       { return graph.Attr{Type: graph.AttrFloat, F: v} }
func aString(v string) graph.Attr       { return graph.Attr{Type: graph.AttrString, S: v} }
func aTensor(c *graph.Const) graph.Attr { return graph.Attr{Type: graph.AttrTensor, T: c} }

type opAttrs = map[string]graph.Attr

// opNode returns a node of op with outs outputs named y0, y1, ...
func opNode(op string, a opAttrs, outs int) *graph.Node {
	n := &graph.Node{Name: "/test/" + op, Op: op, Attrs: a}
	for i := range outs {
		n.Outputs = append(n.Outputs, "y"+string(rune('0'+i)))
	}
	return n
}

func tf32(shape []int, v ...float32) *Tensor {
	return &Tensor{DType: graph.F32, Shape: shape, F32: v}
}

func tf64(shape []int, v ...float64) *Tensor {
	return &Tensor{DType: graph.F64, Shape: shape, F64: v}
}

func tInt(dt graph.DType, shape []int, v ...int64) *Tensor {
	return &Tensor{DType: dt, Shape: shape, I64: v}
}

func ti64(shape []int, v ...int64) *Tensor { return tInt(graph.I64, shape, v...) }

func tbool(shape []int, v ...int64) *Tensor { return tInt(graph.Bool, shape, v...) }

// seqF32 returns a float32 tensor of shape holding 1, 2, 3, ...
func seqF32(shape ...int) *Tensor {
	t := heapAlloc{}.New(graph.F32, shape)
	for i := range t.F32 {
		t.F32[i] = float32(i + 1)
	}
	return t
}

func randF32(r *rand.Rand, shape ...int) *Tensor {
	t := heapAlloc{}.New(graph.F32, shape)
	for i := range t.F32 {
		t.F32[i] = float32(r.NormFloat64())
	}
	return t
}

func runOp(t *testing.T, opset int64, n *graph.Node, in ...*Tensor) []*Tensor {
	t.Helper()
	fn, ok := ops[n.Op]
	if !ok {
		t.Fatalf("no op %s", n.Op)
	}
	out, err := fn(&opCtx{alloc: heapAlloc{}, opset: opset}, n, in)
	if err != nil {
		t.Fatalf("%s: %v", n.Op, err)
	}
	return out
}

func runFirst(t *testing.T, opset int64, n *graph.Node, in ...*Tensor) *Tensor {
	t.Helper()
	return runOp(t, opset, n, in...)[0]
}

// opFails runs n and checks that it fails with an error containing want.
func opFails(t *testing.T, opset int64, n *graph.Node, want string, in ...*Tensor) {
	t.Helper()
	_, err := ops[n.Op](&opCtx{alloc: heapAlloc{}, opset: opset}, n, in)
	if err == nil {
		t.Fatalf("%s: no error, want %q", n.Op, want)
	}
	if !strings.HasPrefix(err.Error(), "runtime: "+n.Op+" \""+n.Name+"\": ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: error %q, want %q", n.Op, err, want)
	}
}

func wantShape(t *testing.T, got *Tensor, shape []int) {
	t.Helper()
	if !slices.Equal(got.Shape, shape) && !(len(got.Shape) == 0 && len(shape) == 0) {
		t.Fatalf("shape %v, want %v", got.Shape, shape)
	}
}

func wantF32(t *testing.T, got *Tensor, shape []int, want ...float32) {
	t.Helper()
	wantF32Tol(t, got, shape, 1e-6, want...)
}

func wantF32Tol(t *testing.T, got *Tensor, shape []int, tol float64, want ...float32) {
	t.Helper()
	wantShape(t, got, shape)
	if len(got.F32) != len(want) {
		t.Fatalf("%d values %v, want %v", len(got.F32), got.F32, want)
	}
	for i := range want {
		g, w := float64(got.F32[i]), float64(want[i])
		if math.IsNaN(w) && math.IsNaN(g) || g == w {
			continue
		}
		if math.Abs(g-w) > tol*(1+math.Abs(w)) {
			t.Fatalf("got %v, want %v (element %d)", got.F32, want, i)
		}
	}
}

func wantF64(t *testing.T, got *Tensor, shape []int, want ...float64) {
	t.Helper()
	wantShape(t, got, shape)
	if len(got.F64) != len(want) {
		t.Fatalf("%d values %v, want %v", len(got.F64), got.F64, want)
	}
	for i := range want {
		if math.Abs(got.F64[i]-want[i]) > 1e-12*(1+math.Abs(want[i])) {
			t.Fatalf("got %v, want %v", got.F64, want)
		}
	}
}

func wantI64(t *testing.T, got *Tensor, dt graph.DType, shape []int, want ...int64) {
	t.Helper()
	wantShape(t, got, shape)
	if got.DType != dt {
		t.Fatalf("type %s, want %s", got.DType, dt)
	}
	if !slices.Equal(got.I64, want) && !(len(got.I64) == 0 && len(want) == 0) {
		t.Fatalf("got %v, want %v", got.I64, want)
	}
}

func closeF32(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i])-float64(want[i])) > tol*(1+math.Abs(float64(want[i]))) {
			t.Fatalf("element %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func shp(d ...int) []int { return d }

// Elementwise.

func TestOpBinaryBroadcast(t *testing.T) {
	add := opNode("Add", nil, 1)
	wantF32(t, runFirst(t, 17, add, seqF32(2, 3), tf32(shp(3), 10, 20, 30)), shp(2, 3), 11, 22, 33, 14, 25, 36)
	wantF32(t, runFirst(t, 17, add, tf32(shp(2, 1), 1, 2), tf32(shp(1, 3), 10, 20, 30)), shp(2, 3), 11, 21, 31, 12, 22, 32)
	wantF32(t, runFirst(t, 17, opNode("Sub", nil, 1), seqF32(2, 2), tf32(nil, 1)), shp(2, 2), 0, 1, 2, 3)
	wantF32(t, runFirst(t, 17, opNode("Mul", nil, 1), tf32(nil, 2), tf32(nil, 3)), nil, 6)
	wantF32(t, runFirst(t, 17, opNode("Div", nil, 1), seqF32(1, 2, 2), tf32(shp(2, 1), 2, 4)), shp(1, 2, 2), 0.5, 1, 0.75, 1)
	// [2,3,4] + [3,1] broadcasts the middle
	x := seqF32(2, 3, 4)
	y := runFirst(t, 17, add, x, tf32(shp(3, 1), 100, 200, 300))
	for i, v := range y.F32 {
		if want := x.F32[i] + float32(100*(i/4%3+1)); v != want {
			t.Fatalf("element %d: %v, want %v", i, v, want)
		}
	}
	// integers: division truncates, division by zero gives 0, narrow types wrap
	div := opNode("Div", nil, 1)
	wantI64(t, runFirst(t, 17, div, ti64(shp(4), 7, -7, 7, 5), ti64(shp(4), 2, 2, -2, 0)), graph.I64, shp(4), 3, -3, -3, 0)
	wantI64(t, runFirst(t, 17, add, tInt(graph.U8, shp(2), 200, 5), tInt(graph.U8, shp(2), 100, 5)), graph.U8, shp(2), 44, 10)
	wantI64(t, runFirst(t, 17, opNode("Mul", nil, 1), tInt(graph.I32, shp(1), 1<<30), tInt(graph.I32, shp(1), 4)), graph.I32, shp(1), 0)
	// f16 results are rounded to f16
	h := runFirst(t, 17, add, &Tensor{DType: graph.F16, Shape: shp(1), F32: []float32{1}}, &Tensor{DType: graph.F16, Shape: shp(1), F32: []float32{0.0003}})
	if h.DType != graph.F16 || h.F32[0] != 1 {
		t.Fatalf("f16 1 + 0.0003 = %v %s, want 1", h.F32, h.DType)
	}
	opFails(t, 17, add, "do not broadcast", seqF32(2, 3), seqF32(4))
	opFails(t, 17, add, "input types F32 and F64 differ", seqF32(2), tf64(shp(2), 1, 2))
	opFails(t, 17, add, "needs 2 inputs", seqF32(2))
}

// Broadcasts large enough to be split over threads give, element for element,
// what an index-by-index reference gives, for every float32 arith op, Pow by 2
// and Transpose, with thread counts that cut rows at odd places.
func TestOpLargeBroadcastParallel(t *testing.T) {
	defer kernels.SetThreads(0)
	r := rand.New(rand.NewPCG(7, 7))
	x := randF32(r, 3, 701, 50)
	ref := func(op string, a, b float32) float32 {
		switch op {
		case "Add":
			return a + b
		case "Sub":
			return a - b
		case "Mul":
			return a * b
		}
		return a / b
	}
	for _, th := range []int{1, 2, 3, 7} {
		kernels.SetThreads(th)
		for _, op := range []string{"Add", "Sub", "Mul", "Div"} {
			for _, y := range []*Tensor{randF32(r, 701, 1), randF32(r, 3, 1, 50), randF32(r, 3, 701, 50), tf32(nil, 1.5)} {
				got := runFirst(t, 17, opNode(op, nil, 1), x, y)
				wantShape(t, got, shp(3, 701, 50))
				for i, v := range got.F32 {
					a, b, c := i/(701*50), i/50%701, i%50
					var yv float32
					switch len(y.F32) {
					case 1:
						yv = y.F32[0]
					case 701:
						yv = y.F32[b]
					case 150:
						yv = y.F32[a*50+c]
					default:
						yv = y.F32[i]
					}
					if want := ref(op, x.F32[i], yv); v != want && !(v != v && want != want) {
						t.Fatalf("threads %d: %s with %v: element %d = %v, want %v", th, op, y.Shape, i, v, want)
					}
				}
			}
		}
		sq := runFirst(t, 17, opNode("Pow", nil, 1), x, tf32(nil, 2))
		for i, v := range sq.F32 {
			if want := float32(math.Pow(float64(x.F32[i]), 2)); v != want {
				t.Fatalf("threads %d: Pow(x, 2) element %d = %v, want %v", th, i, v, want)
			}
		}
		tr := runFirst(t, 17, opNode("Transpose", opAttrs{"perm": aInts(2, 0, 1)}, 1), x)
		wantShape(t, tr, shp(50, 3, 701))
		for i, v := range tr.F32 {
			c, a, b := i/(3*701), i/701%3, i%701
			if want := x.F32[(a*701+b)*50+c]; v != want {
				t.Fatalf("threads %d: transposed element %d = %v, want %v", th, i, v, want)
			}
		}
	}
}

func TestOpCompareLogic(t *testing.T) {
	a, b := tf32(shp(4), 1, 2, 3, float32(math.NaN())), tf32(shp(4), 2, 2, 2, 1)
	for op, want := range map[string][]int64{
		"Equal":          {0, 1, 0, 0},
		"Less":           {1, 0, 0, 0},
		"LessOrEqual":    {1, 1, 0, 0},
		"Greater":        {0, 0, 1, 0},
		"GreaterOrEqual": {0, 1, 1, 0},
	} {
		wantI64(t, runFirst(t, 17, opNode(op, nil, 1), a, b), graph.Bool, shp(4), want...)
	}
	wantI64(t, runFirst(t, 17, opNode("Less", nil, 1), ti64(shp(2, 1), 1, 5), ti64(shp(2), 3, 6)), graph.Bool, shp(2, 2), 1, 1, 0, 1)
	// unsigned 64-bit compares as unsigned
	wantI64(t, runFirst(t, 17, opNode("Greater", nil, 1), tInt(graph.U64, shp(1), -1), tInt(graph.U64, shp(1), 1)), graph.Bool, shp(1), 1)
	p, q := tbool(shp(4), 0, 0, 1, 1), tbool(shp(4), 0, 1, 0, 1)
	wantI64(t, runFirst(t, 17, opNode("And", nil, 1), p, q), graph.Bool, shp(4), 0, 0, 0, 1)
	wantI64(t, runFirst(t, 17, opNode("Or", nil, 1), p, q), graph.Bool, shp(4), 0, 1, 1, 1)
	wantI64(t, runFirst(t, 17, opNode("Xor", nil, 1), p, q), graph.Bool, shp(4), 0, 1, 1, 0)
	wantI64(t, runFirst(t, 17, opNode("Xor", nil, 1), p, tbool(nil, 1)), graph.Bool, shp(4), 1, 1, 0, 0)
	wantI64(t, runFirst(t, 17, opNode("Not", nil, 1), p), graph.Bool, shp(4), 1, 1, 0, 0)
	opFails(t, 17, opNode("And", nil, 1), "not supported", ti64(shp(1), 1), ti64(shp(1), 1))
}

func TestOpUnary(t *testing.T) {
	x := tf32(shp(6), -2.5, -1, -0.5, 0.5, 1.5, 2.5)
	cases := []struct {
		op string
		a  opAttrs
		f  func(float64) float64
	}{
		{"Abs", nil, math.Abs},
		{"Neg", nil, func(v float64) float64 { return -v }},
		{"Ceil", nil, math.Ceil},
		{"Floor", nil, math.Floor},
		{"Round", nil, math.RoundToEven},
		{"Exp", nil, math.Exp},
		{"Sin", nil, math.Sin},
		{"Cos", nil, math.Cos},
		{"Tanh", nil, math.Tanh},
		{"Erf", nil, math.Erf},
		{"Reciprocal", nil, func(v float64) float64 { return 1 / v }},
		{"Sigmoid", nil, func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }},
		{"Softplus", nil, func(v float64) float64 { return math.Log(math.Exp(v) + 1) }},
		{"Relu", nil, func(v float64) float64 { return math.Max(v, 0) }},
		{"Sign", nil, func(v float64) float64 { return math.Copysign(1, v) }},
		{"Elu", opAttrs{"alpha": aFloat(2)}, func(v float64) float64 {
			if v < 0 {
				return 2 * (math.Exp(v) - 1)
			}
			return v
		}},
		{"LeakyRelu", nil, func(v float64) float64 { return math.Max(v, float64(float32(0.01))*v) }},
		{"HardSigmoid", opAttrs{"alpha": aFloat(0.5)}, func(v float64) float64 { return math.Max(0, math.Min(1, 0.5*v+0.5)) }},
		{"HardSwish", nil, func(v float64) float64 { return v * math.Max(0, math.Min(1, v/6+0.5)) }},
		{"Gelu", nil, func(v float64) float64 { return v / 2 * (1 + math.Erf(v/math.Sqrt2)) }},
		{"Gelu", opAttrs{"approximate": aString("tanh")}, func(v float64) float64 {
			return v / 2 * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
		}},
	}
	for _, tc := range cases {
		want := make([]float32, len(x.F32))
		for i, v := range x.F32 {
			want[i] = float32(tc.f(float64(v)))
		}
		wantF32Tol(t, runFirst(t, 20, opNode(tc.op, tc.a, 1), x), shp(6), 1e-6, want...)
		// the float64 path
		x64 := floatsF64(x)
		want64 := make([]float64, len(x64))
		for i, v := range x64 {
			want64[i] = tc.f(v)
		}
		wantF64(t, runFirst(t, 20, opNode(tc.op, tc.a, 1), tf64(shp(6), x64...)), shp(6), want64...)
	}
	sq := runFirst(t, 17, opNode("Sqrt", nil, 1), tf32(shp(3), 4, -1, 2))
	if sq.F32[0] != 2 || !math.IsNaN(float64(sq.F32[1])) || sq.F32[2] != float32(math.Sqrt2) {
		t.Fatalf("Sqrt: %v", sq.F32)
	}
	wantF32(t, runFirst(t, 17, opNode("Log", nil, 1), tf32(shp(2), 1, float32(math.E))), shp(2), 0, 1)
	// integer variants: Abs and Neg wrap in their type
	wantI64(t, runFirst(t, 17, opNode("Abs", nil, 1), tInt(graph.I8, shp(3), -128, -3, 4)), graph.I8, shp(3), -128, 3, 4)
	wantI64(t, runFirst(t, 17, opNode("Neg", nil, 1), tInt(graph.I8, shp(2), -128, 3)), graph.I8, shp(2), -128, -3)
	wantI64(t, runFirst(t, 17, opNode("Sign", nil, 1), ti64(shp(3), -7, 0, 9)), graph.I64, shp(3), -1, 0, 1)
	wantI64(t, runFirst(t, 17, opNode("Relu", nil, 1), tInt(graph.I32, shp(2), -7, 9)), graph.I32, shp(2), 0, 9)
	opFails(t, 17, opNode("Exp", nil, 1), "element type I64 is not supported", ti64(shp(1), 1))
}

func TestOpPowMod(t *testing.T) {
	pow := opNode("Pow", nil, 1)
	wantF32(t, runFirst(t, 15, pow, tf32(shp(3), 1, 2, 3), tf32(shp(3), 4, 5, 6)), shp(3), 1, 32, 729)
	wantF32(t, runFirst(t, 15, pow, tf32(shp(3), 1, 2, 3), tf32(nil, 2)), shp(3), 1, 4, 9)
	wantF32(t, runFirst(t, 15, pow, tf32(shp(2), 4, 9), ti64(nil, 2)), shp(2), 16, 81)
	wantF32(t, runFirst(t, 15, pow, tf32(shp(2), 4, 9), tf64(nil, 0.5)), shp(2), 2, 3)
	wantI64(t, runFirst(t, 15, pow, ti64(shp(4), 1, 2, 3, 2), ti64(shp(4), 4, 5, 6, -1)), graph.I64, shp(4), 1, 32, 729, 0)
	wantI64(t, runFirst(t, 15, pow, tInt(graph.I32, shp(2), 2, 3), tf32(shp(2), 3, 0.5)), graph.I32, shp(2), 8, 1)

	mod := opNode("Mod", nil, 1)
	a, b := ti64(shp(6), -4, 7, 5, 4, -7, 8), ti64(shp(6), 3, -3, 8, -2, -3, 0)
	wantI64(t, runFirst(t, 13, mod, a, b), graph.I64, shp(6), 2, -2, 5, 0, -1, 0)
	fmod := opNode("Mod", opAttrs{"fmod": aInt(1)}, 1)
	wantI64(t, runFirst(t, 13, fmod, a, b), graph.I64, shp(6), -1, 1, 5, 0, -1, 0)
	wantF32(t, runFirst(t, 13, fmod, tf32(shp(3), -4.5, 7.5, 5), tf32(shp(3), 3, -3, 8)), shp(3), -1.5, 1.5, 5)
	wantF32(t, runFirst(t, 13, mod, tf32(shp(2), -4.5, 7.5), tf32(shp(2), 3, -3)), shp(2), 1.5, -1.5)
}

func TestOpVariadic(t *testing.T) {
	a, b, c := tf32(shp(3), 3, 2, 1), tf32(shp(3), 1, 4, 4), tf32(shp(3), 2, 5, 3)
	wantF32(t, runFirst(t, 13, opNode("Max", nil, 1), a, b, c), shp(3), 3, 5, 4)
	wantF32(t, runFirst(t, 13, opNode("Min", nil, 1), a, b, c), shp(3), 1, 2, 1)
	wantF32(t, runFirst(t, 13, opNode("Sum", nil, 1), a, b, c), shp(3), 6, 11, 8)
	wantF32(t, runFirst(t, 13, opNode("Mean", nil, 1), a, b, c), shp(3), 2, 11.0/3, 8.0/3)
	wantF32(t, runFirst(t, 13, opNode("Sum", nil, 1), a), shp(3), 3, 2, 1)
	// broadcasting: [3] with [2,1] with scalar
	wantF32(t, runFirst(t, 13, opNode("Sum", nil, 1), a, tf32(shp(2, 1), 10, 20), tf32(nil, 100)), shp(2, 3), 113, 112, 111, 123, 122, 121)
	wantF32(t, runFirst(t, 13, opNode("Max", nil, 1), tf32(shp(2), float32(math.NaN()), 1), tf32(shp(2), 0, 2)), shp(2), float32(math.NaN()), 2)
	wantI64(t, runFirst(t, 13, opNode("Max", nil, 1), tInt(graph.U64, shp(1), -1), tInt(graph.U64, shp(1), 5)), graph.U64, shp(1), -1)
	wantI64(t, runFirst(t, 13, opNode("Min", nil, 1), tInt(graph.I8, shp(2), -5, 7), tInt(graph.I8, shp(2), 3, 2)), graph.I8, shp(2), -5, 2)
}

func TestOpWhere(t *testing.T) {
	cond := tbool(shp(2, 2), 1, 0, 1, 1)
	wantF32(t, runFirst(t, 16, opNode("Where", nil, 1), cond, seqF32(2, 2), tf32(shp(2, 2), 9, 8, 7, 6)), shp(2, 2), 1, 8, 3, 4)
	// broadcast condition, x and y
	wantI64(t, runFirst(t, 16, opNode("Where", nil, 1), tbool(shp(2, 1), 1, 0), ti64(shp(3), 1, 2, 3), ti64(nil, -1)), graph.I64, shp(2, 3), 1, 2, 3, -1, -1, -1)
	opFails(t, 16, opNode("Where", nil, 1), "condition must be BOOL", ti64(shp(1), 1), seqF32(1), seqF32(1))
}

func TestOpClip(t *testing.T) {
	x := tf32(shp(5), -3, -1, 0, 1, 3)
	clip := opNode("Clip", nil, 1)
	wantF32(t, runFirst(t, 13, clip, x, tf32(nil, -1), tf32(nil, 2)), shp(5), -1, -1, 0, 1, 2)
	wantF32(t, runFirst(t, 13, clip, x, nil, tf32(nil, 0)), shp(5), -3, -1, 0, 0, 0)
	wantF32(t, runFirst(t, 13, clip, x), shp(5), -3, -1, 0, 1, 3)
	// min > max: everything becomes max
	wantF32(t, runFirst(t, 13, clip, x, tf32(nil, 2), tf32(nil, 1)), shp(5), 1, 1, 1, 1, 1)
	// opset 6: attributes
	wantF32(t, runFirst(t, 6, opNode("Clip", opAttrs{"min": aFloat(-2), "max": aFloat(0.5)}, 1), x), shp(5), -2, -1, 0, 0.5, 0.5)
	wantI64(t, runFirst(t, 13, clip, tInt(graph.I8, shp(3), -100, 5, 100), tInt(graph.I8, nil, -10), tInt(graph.I8, nil, 10)), graph.I8, shp(3), -10, 5, 10)
}

func TestOpCast(t *testing.T) {
	cast := func(to int64) *graph.Node { return opNode("Cast", opAttrs{"to": aInt(to)}, 1) }
	// f32 -> f16 rounds to nearest even and overflows to Inf
	h := runFirst(t, 13, cast(10), tf32(shp(5), 0.1, 1+1.0/2048, 1+3.0/2048, 65520, 70000))
	want := []float32{0.0999755859375, 1, 1 + 2.0/1024, float32(math.Inf(1)), float32(math.Inf(1))}
	if h.DType != graph.F16 || !slices.Equal(h.F32, want) {
		t.Fatalf("f16: %v %s, want %v", h.F32, h.DType, want)
	}
	// f64 -> f16 rounds once: just above a tie goes up (through float32 it would tie to even)
	h = runFirst(t, 13, cast(10), tf64(shp(1), 1+0x1p-11+0x1p-40))
	if h.F32[0] != 1+0x1p-10 {
		t.Fatalf("f64 -> f16: %v, want %v", h.F32[0], 1+0x1p-10)
	}
	b := runFirst(t, 13, cast(16), tf32(shp(2), 1+0x1p-8, 1+3*0x1p-8))
	if b.DType != graph.BF16 || b.F32[0] != 1 || b.F32[1] != 1+0x1p-6 {
		t.Fatalf("bf16: %v", b.F32)
	}
	// float -> int truncates toward zero, then wraps like numpy's astype
	wantI64(t, runFirst(t, 13, cast(2), tf32(shp(3), 300.7, -1.5, 2.9)), graph.U8, shp(3), 44, 255, 2)
	wantI64(t, runFirst(t, 13, cast(3), tf64(shp(3), -1.5, -129, 127.9)), graph.I8, shp(3), -1, 127, 127)
	wantI64(t, runFirst(t, 13, cast(7), tf32(shp(2), -2.5, float32(math.NaN()))), graph.I64, shp(2), -2, 0)
	// int -> narrower int wraps
	wantI64(t, runFirst(t, 13, cast(2), ti64(shp(3), 256, -1, 257)), graph.U8, shp(3), 0, 255, 1)
	wantI64(t, runFirst(t, 13, cast(6), ti64(shp(2), 1<<31, -(1<<31)-1)), graph.I32, shp(2), -(1 << 31), 1<<31-1)
	wantI64(t, runFirst(t, 13, cast(4), tInt(graph.I8, shp(1), -1)), graph.U16, shp(1), 65535)
	// bool
	wantI64(t, runFirst(t, 13, cast(9), tf32(shp(3), 0, -0.5, float32(math.NaN()))), graph.Bool, shp(3), 0, 1, 1)
	wantF32(t, runFirst(t, 13, cast(1), tbool(shp(2), 1, 0)), shp(2), 1, 0)
	// widening
	wantF64(t, runFirst(t, 13, cast(11), tf32(shp(1), 0.1)), shp(1), float64(float32(0.1)))
	wantF32(t, runFirst(t, 13, cast(1), tInt(graph.U64, shp(1), -1)), shp(1), float32(math.MaxUint64))
	wantF32(t, runFirst(t, 13, cast(1), &Tensor{DType: graph.F16, Shape: shp(1), F32: []float32{0.5}}), shp(1), 0.5)
	// CastLike takes the type of its second input
	wantI64(t, runFirst(t, 15, opNode("CastLike", nil, 1), tf32(shp(2), 1.9, -1.9), tInt(graph.I16, shp(0))), graph.I16, shp(2), 1, -1)
	opFails(t, 13, cast(8), "ONNX data type 8", tf32(shp(1), 1))
}

// Shape ops.

func TestOpShapeSize(t *testing.T) {
	x := seqF32(2, 3, 4)
	shape := func(a opAttrs) *Tensor { return runFirst(t, 15, opNode("Shape", a, 1), x) }
	wantI64(t, shape(nil), graph.I64, shp(3), 2, 3, 4)
	wantI64(t, shape(opAttrs{"start": aInt(1)}), graph.I64, shp(2), 3, 4)
	wantI64(t, shape(opAttrs{"end": aInt(-1)}), graph.I64, shp(2), 2, 3)
	wantI64(t, shape(opAttrs{"start": aInt(-10), "end": aInt(10)}), graph.I64, shp(3), 2, 3, 4)
	wantI64(t, shape(opAttrs{"start": aInt(2), "end": aInt(1)}), graph.I64, shp(0))
	wantI64(t, runFirst(t, 13, opNode("Size", nil, 1), x), graph.I64, nil, 24)
}

func TestOpReshapeFlatten(t *testing.T) {
	x := seqF32(2, 3, 4)
	r := opNode("Reshape", nil, 1)
	wantF32(t, runFirst(t, 14, r, x, ti64(shp(3), 0, -1, 2)), shp(2, 6, 2), x.F32...)
	wantF32(t, runFirst(t, 14, r, x, ti64(shp(2), -1, 4)), shp(6, 4), x.F32...)
	wantF32(t, runFirst(t, 14, r, x, ti64(shp(1), -1)), shp(24), x.F32...)
	wantF32(t, runFirst(t, 14, r, seqF32(1), ti64(shp(0))), nil, 1)
	// allowzero keeps a 0 as a dimension
	empty := heapAlloc{}.New(graph.F32, shp(0, 3))
	wantShape(t, runFirst(t, 14, opNode("Reshape", opAttrs{"allowzero": aInt(1)}, 1), empty, ti64(shp(2), 3, 0)), shp(3, 0))
	opFails(t, 14, r, "cannot reshape", x, ti64(shp(2), 5, -1))
	opFails(t, 14, r, "more than one -1", x, ti64(shp(2), -1, -1))

	f := func(axis int64) *Tensor { return runFirst(t, 13, opNode("Flatten", opAttrs{"axis": aInt(axis)}, 1), x) }
	wantShape(t, f(0), shp(1, 24))
	wantShape(t, f(2), shp(6, 4))
	wantShape(t, f(-1), shp(6, 4))
	wantShape(t, f(3), shp(24, 1))
	wantShape(t, runFirst(t, 13, opNode("Flatten", nil, 1), x), shp(2, 12))
}

func TestOpSqueezeUnsqueeze(t *testing.T) {
	x := seqF32(1, 3, 1, 2)
	// opset 11: axes attribute; 13: axes input; none: every 1
	wantShape(t, runFirst(t, 11, opNode("Squeeze", opAttrs{"axes": aInts(-2)}, 1), x), shp(1, 3, 2))
	wantShape(t, runFirst(t, 13, opNode("Squeeze", nil, 1), x, ti64(shp(2), 0, 2)), shp(3, 2))
	wantF32(t, runFirst(t, 13, opNode("Squeeze", nil, 1), x), shp(3, 2), x.F32...)
	opFails(t, 13, opNode("Squeeze", nil, 1), "cannot squeeze axis 1", x, ti64(shp(1), 1))

	y := seqF32(3, 4)
	wantShape(t, runFirst(t, 11, opNode("Unsqueeze", opAttrs{"axes": aInts(0, 3)}, 1), y), shp(1, 3, 4, 1))
	wantShape(t, runFirst(t, 13, opNode("Unsqueeze", nil, 1), y, ti64(shp(2), -1, 1)), shp(3, 1, 4, 1))
	wantShape(t, runFirst(t, 13, opNode("Unsqueeze", nil, 1), tf32(nil, 5), ti64(shp(1), 0)), shp(1))
	opFails(t, 13, opNode("Unsqueeze", nil, 1), "repeated", y, ti64(shp(2), 0, 0))
}

func TestOpTranspose(t *testing.T) {
	x := seqF32(2, 3)
	wantF32(t, runFirst(t, 13, opNode("Transpose", nil, 1), x), shp(3, 2), 1, 4, 2, 5, 3, 6)
	y := seqF32(2, 3, 4)
	got := runFirst(t, 13, opNode("Transpose", opAttrs{"perm": aInts(1, 2, 0)}, 1), y)
	wantShape(t, got, shp(3, 4, 2))
	for i := range 3 {
		for j := range 4 {
			for k := range 2 {
				if g, w := got.F32[(i*4+j)*2+k], y.F32[(k*3+i)*4+j]; g != w {
					t.Fatalf("[%d,%d,%d] = %v, want %v", i, j, k, g, w)
				}
			}
		}
	}
	wantI64(t, runFirst(t, 13, opNode("Transpose", opAttrs{"perm": aInts(0, 1)}, 1), ti64(shp(1, 2), 7, 8)), graph.I64, shp(1, 2), 7, 8)
	opFails(t, 13, opNode("Transpose", opAttrs{"perm": aInts(0, 0)}, 1), "repeated", x)
}

func TestOpConcat(t *testing.T) {
	a, b := seqF32(2, 2), tf32(shp(2, 1), 9, 8)
	wantF32(t, runFirst(t, 13, opNode("Concat", opAttrs{"axis": aInt(-1)}, 1), a, b), shp(2, 3), 1, 2, 9, 3, 4, 8)
	wantF32(t, runFirst(t, 13, opNode("Concat", opAttrs{"axis": aInt(0)}, 1), a, seqF32(1, 2), heapAlloc{}.New(graph.F32, shp(0, 2))), shp(3, 2), 1, 2, 3, 4, 1, 2)
	wantI64(t, runFirst(t, 13, opNode("Concat", nil, 1), ti64(shp(1), 1), ti64(shp(2), 2, 3)), graph.I64, shp(3), 1, 2, 3)
	opFails(t, 13, opNode("Concat", opAttrs{"axis": aInt(0)}, 1), "differ off axis", a, b)
}

func TestOpSplit(t *testing.T) {
	x := seqF32(2, 6)
	check := func(outs []*Tensor, widths ...int) {
		t.Helper()
		if len(outs) != len(widths) {
			t.Fatalf("%d outputs, want %d", len(outs), len(widths))
		}
		start := 0
		for k, w := range widths {
			var want []float32
			for i := range 2 {
				want = append(want, x.F32[i*6+start:i*6+start+w]...)
			}
			wantF32(t, outs[k], shp(2, w), want...)
			start += w
		}
	}
	check(runOp(t, 11, opNode("Split", opAttrs{"axis": aInt(1), "split": aInts(1, 2, 3)}, 3), x), 1, 2, 3)
	check(runOp(t, 13, opNode("Split", opAttrs{"axis": aInt(-1)}, 2), x, ti64(shp(2), 4, 2)), 4, 2)
	check(runOp(t, 13, opNode("Split", opAttrs{"axis": aInt(1)}, 3), x), 2, 2, 2)
	check(runOp(t, 18, opNode("Split", opAttrs{"axis": aInt(1), "num_outputs": aInt(4)}, 4), x), 2, 2, 2, 0)
	y := seqF32(5)
	outs := runOp(t, 18, opNode("Split", opAttrs{"num_outputs": aInt(3)}, 3), y)
	wantF32(t, outs[0], shp(2), 1, 2)
	wantF32(t, outs[1], shp(2), 3, 4)
	wantF32(t, outs[2], shp(1), 5)
	opFails(t, 13, opNode("Split", nil, 2), "do not add up", y, ti64(shp(2), 2, 2))
}

func TestOpSlice(t *testing.T) {
	x := seqF32(3, 4)
	slice := opNode("Slice", nil, 1)
	wantF32(t, runFirst(t, 13, slice, x, ti64(shp(2), 1, 0), ti64(shp(2), 2, 3)), shp(1, 3), 5, 6, 7)
	// negative start, end past the end (clamped), axes and steps
	wantF32(t, runFirst(t, 13, slice, x, ti64(shp(1), -3), ti64(shp(1), math.MaxInt64), ti64(shp(1), -1), ti64(shp(1), 2)), shp(3, 2), 2, 4, 6, 8, 10, 12)
	// negative steps: reverse the rows, every other column backwards
	wantF32(t, runFirst(t, 13, slice, x, ti64(shp(2), -1, 3), ti64(shp(2), math.MinInt64, -10), ti64(shp(2), 0, 1), ti64(shp(2), -1, -2)), shp(3, 2),
		12, 10, 8, 6, 4, 2)
	wantF32(t, runFirst(t, 13, slice, seqF32(5), ti64(shp(1), 10), ti64(shp(1), 1), ti64(shp(1), 0), ti64(shp(1), -2)), shp(2), 5, 3)
	// steps too large to add to anything
	wantF32(t, runFirst(t, 13, slice, seqF32(5), ti64(shp(1), 1), ti64(shp(1), 5), ti64(shp(1), 0), ti64(shp(1), math.MaxInt64)), shp(1), 2)
	wantF32(t, runFirst(t, 13, slice, seqF32(5), ti64(shp(1), -1), ti64(shp(1), math.MinInt64), ti64(shp(1), 0), ti64(shp(1), math.MinInt64)), shp(1), 5)
	// empty results
	wantShape(t, runFirst(t, 13, slice, x, ti64(shp(1), 2), ti64(shp(1), 1), ti64(shp(1), 1)), shp(3, 0))
	wantShape(t, runFirst(t, 13, slice, x, ti64(shp(1), 0), ti64(shp(1), 3), ti64(shp(1), 0), ti64(shp(1), -1)), shp(0, 4))
	// opset 9: attributes
	wantF32(t, runFirst(t, 9, opNode("Slice", opAttrs{"starts": aInts(1), "ends": aInts(3), "axes": aInts(1)}, 1), x), shp(3, 2), 2, 3, 6, 7, 10, 11)
	opFails(t, 13, slice, "step 0", x, ti64(shp(1), 0), ti64(shp(1), 1), ti64(shp(1), 0), ti64(shp(1), 0))
}

func TestOpGather(t *testing.T) {
	x := seqF32(3, 2)
	g := opNode("Gather", nil, 1)
	wantF32(t, runFirst(t, 13, g, x, ti64(shp(2, 2), 0, 1, -1, 0)), shp(2, 2, 2), 1, 2, 3, 4, 5, 6, 1, 2)
	wantF32(t, runFirst(t, 13, g, x, ti64(nil, 2)), shp(2), 5, 6)
	wantF32(t, runFirst(t, 13, opNode("Gather", opAttrs{"axis": aInt(-1)}, 1), x, tInt(graph.I32, shp(3), 1, 0, 1)), shp(3, 3), 2, 1, 2, 4, 3, 4, 6, 5, 6)
	opFails(t, 13, g, "index 3 is out of range", x, ti64(shp(1), 3))
}

func TestOpExpandTile(t *testing.T) {
	e := opNode("Expand", nil, 1)
	wantF32(t, runFirst(t, 13, e, tf32(shp(3, 1), 1, 2, 3), ti64(shp(3), 2, 1, 2)), shp(2, 3, 2), 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3)
	// the shape may be smaller than the input's: numpy broadcasting both ways
	wantF32(t, runFirst(t, 13, e, tf32(shp(1, 2), 1, 2), ti64(shp(2), 2, 1)), shp(2, 2), 1, 2, 1, 2)
	opFails(t, 13, e, "do not broadcast", seqF32(3), ti64(shp(1), 2))

	tile := opNode("Tile", nil, 1)
	wantF32(t, runFirst(t, 13, tile, seqF32(2, 2), ti64(shp(2), 2, 3)), shp(4, 6),
		1, 2, 1, 2, 1, 2,
		3, 4, 3, 4, 3, 4,
		1, 2, 1, 2, 1, 2,
		3, 4, 3, 4, 3, 4)
	wantI64(t, runFirst(t, 13, tile, ti64(shp(2), 5, 6), ti64(shp(1), 2)), graph.I64, shp(4), 5, 6, 5, 6)
	wantShape(t, runFirst(t, 13, tile, seqF32(2), ti64(shp(1), 0)), shp(0))
}

func TestOpRange(t *testing.T) {
	r := opNode("Range", nil, 1)
	wantF32(t, runFirst(t, 11, r, tf32(nil, 1), tf32(nil, 2), tf32(nil, 0.25)), shp(4), 1, 1.25, 1.5, 1.75)
	wantI64(t, runFirst(t, 11, r, ti64(nil, 10), ti64(nil, 4), ti64(nil, -3)), graph.I64, shp(2), 10, 7)
	wantI64(t, runFirst(t, 11, r, tInt(graph.I32, nil, 0), tInt(graph.I32, nil, 7), tInt(graph.I32, nil, 3)), graph.I32, shp(3), 0, 3, 6)
	wantShape(t, runFirst(t, 11, r, ti64(nil, 5), ti64(nil, 1), ti64(nil, 2)), shp(0))
	opFails(t, 11, r, "delta is 0", ti64(nil, 0), ti64(nil, 1), ti64(nil, 0))
}

func TestOpConstant(t *testing.T) {
	c := &graph.Const{Name: "c", DType: graph.I32, Shape: []int64{2}, Data: []byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}}
	wantI64(t, runFirst(t, 13, opNode("Constant", opAttrs{"value": aTensor(c)}, 1)), graph.I32, shp(2), 1, -1)
	wantI64(t, runFirst(t, 13, opNode("Constant", opAttrs{"value_ints": aInts(3, 4)}, 1)), graph.I64, shp(2), 3, 4)
	wantF32(t, runFirst(t, 13, opNode("Constant", opAttrs{"value_float": aFloat(2.5)}, 1)), nil, 2.5)

	cs := opNode("ConstantOfShape", nil, 1)
	wantF32(t, runFirst(t, 13, cs, ti64(shp(2), 2, 1)), shp(2, 1), 0, 0)
	v := &graph.Const{DType: graph.I64, Shape: []int64{1}, Data: []byte{7, 0, 0, 0, 0, 0, 0, 0}}
	wantI64(t, runFirst(t, 13, opNode("ConstantOfShape", opAttrs{"value": aTensor(v)}, 1), ti64(shp(1), 3)), graph.I64, shp(3), 7, 7, 7)
	wantShape(t, runFirst(t, 13, cs, ti64(shp(0))), nil)
	opFails(t, 13, cs, "negative dimension", ti64(shp(1), -1))
}

func TestOpTrilu(t *testing.T) {
	x := seqF32(3, 4)
	tri := func(upper int64, k ...int64) *Tensor {
		in := []*Tensor{x}
		if k != nil {
			in = append(in, ti64(nil, k[0]))
		}
		return runFirst(t, 14, opNode("Trilu", opAttrs{"upper": aInt(upper)}, 1), in...)
	}
	wantF32(t, tri(1), shp(3, 4), 1, 2, 3, 4, 0, 6, 7, 8, 0, 0, 11, 12)
	wantF32(t, tri(1, 1), shp(3, 4), 0, 2, 3, 4, 0, 0, 7, 8, 0, 0, 0, 12)
	wantF32(t, tri(1, -1), shp(3, 4), 1, 2, 3, 4, 5, 6, 7, 8, 0, 10, 11, 12)
	wantF32(t, tri(0), shp(3, 4), 1, 0, 0, 0, 5, 6, 0, 0, 9, 10, 11, 0)
	wantF32(t, tri(0, -1), shp(3, 4), 0, 0, 0, 0, 5, 0, 0, 0, 9, 10, 0, 0)
	wantF32(t, tri(0, 2), shp(3, 4), 1, 2, 3, 0, 5, 6, 7, 8, 9, 10, 11, 12)
	// batched
	wantI64(t, runFirst(t, 14, opNode("Trilu", nil, 1), ti64(shp(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)), graph.I64, shp(2, 2, 2), 1, 2, 0, 4, 5, 6, 0, 8)
}

func TestOpIdentityDropout(t *testing.T) {
	x := seqF32(2, 2)
	y := runFirst(t, 13, opNode("Identity", nil, 1), x)
	wantF32(t, y, shp(2, 2), x.F32...)
	if &y.F32[0] == &x.F32[0] {
		t.Fatal("Identity shares its input's buffer")
	}
	outs := runOp(t, 13, opNode("Dropout", nil, 2), x, tf32(nil, 0.5))
	wantF32(t, outs[0], shp(2, 2), x.F32...)
	wantI64(t, outs[1], graph.Bool, shp(2, 2), 1, 1, 1, 1)
	if outs := runOp(t, 13, opNode("Dropout", nil, 1), x); len(outs) < 1 || outs[0] == nil {
		t.Fatal("Dropout without mask")
	}
	opFails(t, 13, opNode("Dropout", nil, 1), "training mode", x, tf32(nil, 0.5), tbool(nil, 1))
}

// Reductions.

func TestOpReduce(t *testing.T) {
	x := seqF32(2, 3, 2) // 1..12
	red := func(op string, opset int64, a opAttrs, axes ...int64) *Tensor {
		in := []*Tensor{x}
		if axes != nil {
			in = append(in, ti64(shp(len(axes)), axes...))
		}
		return runFirst(t, opset, opNode(op, a, 1), in...)
	}
	wantF32(t, red("ReduceSum", 13, nil, 1), shp(2, 1, 2), 9, 12, 27, 30)
	wantF32(t, red("ReduceSum", 13, opAttrs{"keepdims": aInt(0)}, 0, -1), shp(3), 1+2+7+8, 3+4+9+10, 5+6+11+12)
	wantF32(t, red("ReduceSum", 13, opAttrs{"keepdims": aInt(0)}), nil, 78)
	wantF32(t, red("ReduceSum", 11, opAttrs{"axes": aInts(2)}), shp(2, 3, 1), 3, 7, 11, 15, 19, 23)
	// no axes with noop_with_empty_axes: nothing is reduced
	wantF32(t, red("ReduceSum", 13, opAttrs{"noop_with_empty_axes": aInt(1)}), shp(2, 3, 2), x.F32...)
	wantF32(t, runFirst(t, 13, opNode("ReduceSum", opAttrs{"noop_with_empty_axes": aInt(1)}, 1), x, ti64(shp(0))), shp(2, 3, 2), x.F32...)
	sq := make([]float32, 12)
	for i, v := range x.F32 {
		sq[i] = v * v
	}
	wantF32(t, red("ReduceSumSquare", 18, opAttrs{"noop_with_empty_axes": aInt(1)}), shp(2, 3, 2), sq...)
	// opset 11 takes the axes attribute, 18 the input
	wantF32(t, red("ReduceMean", 11, opAttrs{"axes": aInts(1)}), shp(2, 1, 2), 3, 4, 9, 10)
	wantF32(t, red("ReduceMean", 18, nil, 1), shp(2, 1, 2), 3, 4, 9, 10)
	wantF32(t, red("ReduceMax", 18, opAttrs{"keepdims": aInt(0)}, -2), shp(2, 2), 5, 6, 11, 12)
	wantF32(t, red("ReduceMin", 18, opAttrs{"keepdims": aInt(0)}, 0), shp(3, 2), 1, 2, 3, 4, 5, 6)
	wantF32(t, red("ReduceProd", 18, opAttrs{"keepdims": aInt(0)}, 2), shp(2, 3), 2, 12, 30, 56, 90, 132)
	wantF32(t, red("ReduceSumSquare", 18, opAttrs{"keepdims": aInt(0)}, 2), shp(2, 3), 5, 25, 61, 113, 181, 265)
	wantF32Tol(t, red("ReduceL2", 18, opAttrs{"keepdims": aInt(0)}, 2), shp(2, 3), 1e-6,
		float32(math.Sqrt(5)), float32(math.Sqrt(25)), float32(math.Sqrt(61)), float32(math.Sqrt(113)), float32(math.Sqrt(181)), float32(math.Sqrt(265)))
	wantF32(t, runFirst(t, 18, opNode("ReduceL1", nil, 1), tf32(shp(2), -1, 2)), shp(1), 3)
	lse := red("ReduceLogSumExp", 18, opAttrs{"keepdims": aInt(0)}, 2)
	for i := range 6 {
		a, b := float64(2*i+1), float64(2*i+2)
		if w := math.Log(math.Exp(a) + math.Exp(b)); math.Abs(float64(lse.F32[i])-w) > 1e-5 {
			t.Fatalf("ReduceLogSumExp: %v", lse.F32)
		}
	}
	big := runFirst(t, 18, opNode("ReduceLogSumExp", nil, 1), tf32(shp(2), 1000, 1000))
	wantF32Tol(t, big, shp(1), 1e-6, float32(1000+math.Ln2))
	// empty reductions give the identity of the operation
	empty := heapAlloc{}.New(graph.F32, shp(2, 0))
	for op, w := range map[string]float32{
		"ReduceSum": 0, "ReduceProd": 1, "ReduceMax": float32(math.Inf(-1)), "ReduceMin": float32(math.Inf(1)),
		"ReduceLogSumExp": float32(math.Inf(-1)), "ReduceL2": 0, "ReduceSumSquare": 0,
	} {
		wantF32(t, runFirst(t, 18, opNode(op, opAttrs{"keepdims": aInt(0)}, 1), empty, ti64(shp(1), 1)), shp(2), w, w)
	}
	// integers reduce exactly
	wantI64(t, runFirst(t, 13, opNode("ReduceSum", opAttrs{"keepdims": aInt(0)}, 1), ti64(shp(2, 2), 1<<60, 1, 1<<60, 2), ti64(shp(1), 0)), graph.I64, shp(2), 1<<61, 3)
	wantI64(t, runFirst(t, 18, opNode("ReduceMax", opAttrs{"keepdims": aInt(0)}, 1), tInt(graph.I32, shp(3), -5, 9, 2)), graph.I32, nil, 9)
	opFails(t, 13, opNode("ReduceSum", nil, 1), "out of range", x, ti64(shp(1), 3))
}

func TestOpArgMaxMin(t *testing.T) {
	x := tf32(shp(2, 3), 1, 5, 5, 7, 2, 7)
	arg := func(op string, a opAttrs) *Tensor { return runFirst(t, 13, opNode(op, a, 1), x) }
	wantI64(t, arg("ArgMax", nil), graph.I64, shp(1, 3), 1, 0, 1)
	wantI64(t, arg("ArgMax", opAttrs{"axis": aInt(-1), "keepdims": aInt(0)}), graph.I64, shp(2), 1, 0)
	wantI64(t, arg("ArgMax", opAttrs{"axis": aInt(1), "select_last_index": aInt(1)}), graph.I64, shp(2, 1), 2, 2)
	wantI64(t, arg("ArgMin", opAttrs{"axis": aInt(1)}), graph.I64, shp(2, 1), 0, 1)
	wantI64(t, arg("ArgMin", opAttrs{"axis": aInt(0), "keepdims": aInt(0)}), graph.I64, shp(3), 0, 1, 0)
	wantI64(t, runFirst(t, 13, opNode("ArgMin", opAttrs{"select_last_index": aInt(1)}, 1), ti64(shp(4), 3, 1, 4, 1)), graph.I64, shp(1), 3)
}

// MatMul and Gemm.

// refMatMul multiplies a [m×k] by b [k×n] in float64.
func refMatMul(a, b []float32, m, k, n int) []float32 {
	c := make([]float32, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			c[i*n+j] = float32(s)
		}
	}
	return c
}

func TestOpMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	mm := opNode("MatMul", nil, 1)
	a, b := randF32(r, 3, 4), randF32(r, 4, 5)
	wantF32Tol(t, runFirst(t, 13, mm, a, b), shp(3, 5), 1e-5, refMatMul(a.F32, b.F32, 3, 4, 5)...)
	// 1-D operands: the dimension is dropped from the result
	v := randF32(r, 4)
	wantF32Tol(t, runFirst(t, 13, mm, v, b), shp(5), 1e-5, refMatMul(v.F32, b.F32, 1, 4, 5)...)
	wantF32Tol(t, runFirst(t, 13, mm, a, v), shp(3), 1e-5, refMatMul(a.F32, v.F32, 3, 4, 1)...)
	wantF32Tol(t, runFirst(t, 13, mm, v, v), nil, 1e-5, refMatMul(v.F32, v.F32, 1, 4, 1)...)
	// batch broadcasting: [2,1,3,4] x [3,4,2] -> [2,3,3,2]
	x, y := randF32(r, 2, 1, 3, 4), randF32(r, 3, 4, 2)
	got := runFirst(t, 13, mm, x, y)
	wantShape(t, got, shp(2, 3, 3, 2))
	for i := range 2 {
		for j := range 3 {
			want := refMatMul(x.F32[i*12:(i+1)*12], y.F32[j*8:(j+1)*8], 3, 4, 2)
			closeF32(t, got.F32[(i*3+j)*6:(i*3+j+1)*6], want, 1e-5)
		}
	}
	// batched A with a single B is one tall product
	z := randF32(r, 2, 3, 4)
	got = runFirst(t, 13, mm, z, b)
	wantShape(t, got, shp(2, 3, 5))
	closeF32(t, got.F32, refMatMul(z.F32, b.F32, 6, 4, 5), 1e-5)
	// 1-D A against batched B
	got = runFirst(t, 13, mm, v, y)
	wantShape(t, got, shp(3, 2))
	for j := range 3 {
		closeF32(t, got.F32[j*2:(j+1)*2], refMatMul(v.F32, y.F32[j*8:(j+1)*8], 1, 4, 2), 1e-5)
	}
	// integers and float64
	wantI64(t, runFirst(t, 13, mm, ti64(shp(2, 2), 1, 2, 3, 4), ti64(shp(2), 5, 6)), graph.I64, shp(2), 17, 39)
	wantF64(t, runFirst(t, 13, mm, tf64(shp(1, 2), 1, 2), tf64(shp(2, 1), 3, 4)), shp(1, 1), 11)
	// K = 0 gives zeros
	wantF32(t, runFirst(t, 13, mm, heapAlloc{}.New(graph.F32, shp(2, 0)), heapAlloc{}.New(graph.F32, shp(0, 2))), shp(2, 2), 0, 0, 0, 0)
	mm.Name = "/l1/MatMul"
	opFails(t, 13, mm, "inner dimensions 4 and 5 differ", a, randF32(r, 5, 2))
	opFails(t, 13, mm, "do not broadcast", randF32(r, 2, 3, 4), randF32(r, 3, 4, 2))
}

func TestOpGemm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const m, k, n = 3, 4, 5
	for _, transA := range []int64{0, 1} {
		for _, transB := range []int64{0, 1} {
			for _, cShape := range [][]int{nil, {}, {n}, {m, 1}, {1, n}, {m, n}} {
				a, b := randF32(r, m, k), randF32(r, k, n)
				want := refMatMul(a.F32, b.F32, m, k, n)
				aIn, bIn := a, b
				if transA == 1 {
					aIn = runFirst(t, 13, opNode("Transpose", nil, 1), a)
				}
				if transB == 1 {
					bIn = runFirst(t, 13, opNode("Transpose", nil, 1), b)
				}
				alpha, beta := float32(0.5), float32(2)
				in := []*Tensor{aIn, bIn}
				if cShape != nil {
					c := randF32(r, cShape...)
					in = append(in, c)
					st := broadcastStrides(cShape, shp(m, n))
					for i := range m {
						for j := range n {
							want[i*n+j] = alpha*want[i*n+j] + beta*c.F32[i*st[0]+j*st[1]]
						}
					}
				} else {
					for i := range want {
						want[i] *= alpha
					}
				}
				node := opNode("Gemm", opAttrs{"transA": aInt(transA), "transB": aInt(transB), "alpha": aFloat(alpha), "beta": aFloat(beta)}, 1)
				wantF32Tol(t, runFirst(t, 13, node, in...), shp(m, n), 1e-5, want...)
				// the same through the float64 loops
				in64 := make([]*Tensor, len(in))
				for i, x := range in {
					in64[i] = tf64(x.Shape, floatsF64(x)...)
				}
				got := runFirst(t, 13, node, in64...)
				closeF32(t, func() []float32 {
					f := make([]float32, len(got.F64))
					for i, v := range got.F64 {
						f[i] = float32(v)
					}
					return f
				}(), want, 1e-5)
			}
		}
	}
	wantI64(t, runFirst(t, 13, opNode("Gemm", nil, 1), ti64(shp(1, 2), 1, 2), ti64(shp(2, 1), 3, 4), ti64(nil, 100)), graph.I64, shp(1, 1), 111)
	opFails(t, 13, opNode("Gemm", nil, 1), "does not broadcast", randF32(r, 2, 3), randF32(r, 3, 4), randF32(r, 3, 4))
	opFails(t, 13, opNode("Gemm", opAttrs{"transB": aInt(1)}, 1), "inner dimensions", randF32(r, 2, 3), randF32(r, 3, 4))
}

// packedOf returns a packed form of the k×n weight w (base plus quantized
// delta) and its dense values.
func packedOf(t *testing.T, r *rand.Rand, w *Tensor) (*Tensor, *Tensor) {
	t.Helper()
	base := make([]float32, len(w.F32))
	diff := make([]float32, len(w.F32))
	for i, v := range w.F32 {
		base[i] = v + float32(r.NormFloat64()*0.01)
		diff[i] = v - base[i]
	}
	codes, err := quant.Quantize(diff, 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	gp, err := codes.PackGroups(8, 16)
	if err != nil {
		t.Fatal(err)
	}
	p := &kernels.Packed{Rows: w.Shape[0], Cols: w.Shape[1], BaseF32: base, Delta: gp}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	dense := heapAlloc{}.New(graph.F32, w.Shape)
	kernels.Dense(dense.F32, p)
	return &Tensor{DType: graph.F32, Shape: w.Shape, Packed: p}, dense
}

func TestOpPackedMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	w := randF32(r, 8, 6)
	packed, dense := packedOf(t, r, w)
	mm := opNode("MatMul", nil, 1)
	for _, x := range []*Tensor{randF32(r, 3, 8), randF32(r, 2, 3, 8), randF32(r, 8)} {
		closeF32(t, runFirst(t, 13, mm, x, packed).F32, runFirst(t, 13, mm, x, dense).F32, 1e-6)
	}
	if packed.F32 != nil {
		t.Fatal("MatMul expanded the packed weight")
	}
	// Gemm with transB: the packed weight is [n×k]
	wt, denseT := packedOf(t, r, randF32(r, 6, 8))
	gemm := opNode("Gemm", opAttrs{"transB": aInt(1), "alpha": aFloat(2)}, 1)
	x, bias := randF32(r, 3, 8), randF32(r, 6)
	closeF32(t, runFirst(t, 13, gemm, x, wt, bias).F32, runFirst(t, 13, gemm, x, denseT, bias).F32, 1e-6)
	gemm = opNode("Gemm", nil, 1)
	y := randF32(r, 2, 8)
	closeF32(t, runFirst(t, 13, gemm, y, packed).F32, runFirst(t, 13, gemm, y, dense).F32, 1e-6)
	if wt.F32 != nil || packed.F32 != nil {
		t.Fatal("Gemm expanded the packed weight")
	}
	// other ops see the dense values
	wantF32(t, runFirst(t, 13, opNode("Identity", nil, 1), packed), shp(8, 6), dense.F32...)
}

// Convolution and pooling.

// refConv is a direct convolution of x [N,C,H,W] with w [M,C/group,KH,KW].
func refConv(x, w *Tensor, bias []float32, group, shp, sw, dh, dw, pt, pl, oh, ow int) []float32 {
	nb, c, h, wd := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	m, cg, kh, kw := w.Shape[0], w.Shape[1], w.Shape[2], w.Shape[3]
	out := make([]float32, nb*m*oh*ow)
	for n := range nb {
		for o := range m {
			g := o / (m / group)
			for y := range oh {
				for xo := range ow {
					var s float64
					if bias != nil {
						s = float64(bias[o])
					}
					for ci := range cg {
						for ky := range kh {
							for kx := range kw {
								iy, ix := y*shp-pt+ky*dh, xo*sw-pl+kx*dw
								if iy < 0 || iy >= h || ix < 0 || ix >= wd {
									continue
								}
								s += float64(x.F32[((n*c+g*cg+ci)*h+iy)*wd+ix]) * float64(w.F32[((o*cg+ci)*kh+ky)*kw+kx])
							}
						}
					}
					out[((n*m+o)*oh+y)*ow+xo] = float32(s)
				}
			}
		}
	}
	return out
}

func TestOpConv(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		name                   string
		n, c, h, w, m, kh, kw  int
		group, shp, sw, dh, dw int
		pads                   []int64 // t, l, b, r
		autoPad                string
		bias                   bool
		wantOH, wantOW, pt, pl int
	}{
		{"plain", 1, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, nil, "", false, 3, 3, 0, 0},
		{"pads+bias", 2, 3, 4, 5, 2, 3, 3, 1, 1, 1, 1, 1, []int64{1, 1, 1, 1}, "", true, 4, 5, 1, 1},
		{"stride", 1, 2, 7, 6, 4, 3, 2, 2, 2, 3, 1, 1, []int64{0, 1, 1, 0}, "", true, 3, 2, 0, 1},
		{"dilation", 1, 4, 7, 7, 4, 3, 3, 4, 1, 1, 2, 2, []int64{2, 2, 2, 2}, "", false, 7, 7, 2, 2},
		{"group", 2, 4, 5, 6, 6, 2, 2, 2, 1, 2, 1, 1, nil, "", true, 4, 3, 0, 0},
		{"same_upper", 1, 1, 5, 6, 2, 3, 4, 1, 2, 2, 1, 1, nil, "SAME_UPPER", false, 3, 3, 1, 1},
		{"same_lower", 1, 1, 5, 5, 2, 3, 4, 1, 2, 2, 1, 1, nil, "SAME_LOWER", false, 3, 3, 1, 2},
		{"valid", 1, 2, 5, 5, 1, 2, 2, 1, 2, 2, 1, 1, []int64{9, 9, 9, 9}, "VALID", false, 2, 2, 0, 0},
	}
	for _, tc := range cases {
		x := randF32(r, tc.n, tc.c, tc.h, tc.w)
		w := randF32(r, tc.m, tc.c/tc.group, tc.kh, tc.kw)
		a := opAttrs{"group": aInt(int64(tc.group)), "strides": aInts(int64(tc.shp), int64(tc.sw)), "dilations": aInts(int64(tc.dh), int64(tc.dw))}
		if tc.pads != nil {
			a["pads"] = aInts(tc.pads...)
		}
		if tc.autoPad != "" {
			a["auto_pad"] = aString(tc.autoPad)
		}
		in := []*Tensor{x, w}
		var bias []float32
		if tc.bias {
			in = append(in, randF32(r, tc.m))
			bias = in[2].F32
		}
		want := refConv(x, w, bias, tc.group, tc.shp, tc.sw, tc.dh, tc.dw, tc.pt, tc.pl, tc.wantOH, tc.wantOW)
		got := runFirst(t, 11, opNode("Conv", a, 1), in...)
		wantShape(t, got, shp(tc.n, tc.m, tc.wantOH, tc.wantOW))
		closeF32(t, got.F32, want, 1e-5)
		// float64 goes through the plain loop
		in64 := make([]*Tensor, len(in))
		for i, v := range in {
			in64[i] = tf64(v.Shape, floatsF64(v)...)
		}
		got64 := runFirst(t, 11, opNode("Conv", a, 1), in64...)
		for i, v := range got64.F64 {
			if math.Abs(v-float64(want[i])) > 1e-5 {
				t.Fatalf("%s f64: element %d = %v, want %v", tc.name, i, v, want[i])
			}
		}
	}
	// 1-D is 2-D with H = 1
	x, w := randF32(r, 2, 3, 9), randF32(r, 4, 3, 3)
	got := runFirst(t, 11, opNode("Conv", opAttrs{"strides": aInts(2), "pads": aInts(1, 2), "dilations": aInts(2)}, 1), x, w)
	x4 := &Tensor{DType: graph.F32, Shape: shp(2, 3, 1, 9), F32: x.F32}
	w4 := &Tensor{DType: graph.F32, Shape: shp(4, 3, 1, 3), F32: w.F32}
	wantShape(t, got, shp(2, 4, 4))
	closeF32(t, got.F32, refConv(x4, w4, nil, 1, 1, 2, 1, 2, 0, 1, 1, 4), 1e-5)
	// kernel_shape must agree with the weight; 3-D is refused
	opFails(t, 11, opNode("Conv", opAttrs{"kernel_shape": aInts(2)}, 1), "kernel_shape", x, w)
	opFails(t, 11, opNode("Conv", nil, 1), "only 1-D and 2-D", randF32(r, 1, 1, 2, 2, 2), randF32(r, 1, 1, 1, 1, 1))
	opFails(t, 11, opNode("Conv", opAttrs{"group": aInt(2)}, 1), "groups", x, w)
}

func TestOpMaxPool(t *testing.T) {
	x := seqF32(1, 1, 4, 4) // 1..16
	pool := func(a opAttrs, outs int) []*Tensor { return runOp(t, 12, opNode("MaxPool", a, outs), x) }
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(2, 2)}, 1)[0], shp(1, 1, 3, 3), 6, 7, 8, 10, 11, 12, 14, 15, 16)
	// ceil_mode adds the partial window at the end
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(3, 3), "strides": aInts(2, 2), "ceil_mode": aInt(1)}, 1)[0], shp(1, 1, 2, 2), 11, 12, 15, 16)
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(3, 3), "strides": aInts(2, 2)}, 1)[0], shp(1, 1, 1, 1), 11)
	// ...unless it would start in the padding
	wantF32(t, runFirst(t, 12, opNode("MaxPool", opAttrs{"kernel_shape": aInts(1, 1), "strides": aInts(2, 2), "ceil_mode": aInt(1)}, 1), seqF32(1, 1, 2, 2)), shp(1, 1, 1, 1), 1)
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(2, 2), "dilations": aInts(2, 2)}, 1)[0], shp(1, 1, 2, 2), 11, 12, 15, 16)
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(3, 3), "pads": aInts(1, 1, 1, 1), "strides": aInts(2, 2)}, 1)[0], shp(1, 1, 2, 2), 6, 8, 14, 16)
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(2, 2), "auto_pad": aString("SAME_UPPER"), "strides": aInts(3, 3)}, 1)[0], shp(1, 1, 2, 2), 6, 8, 14, 16)
	// Indices, row-major and column-major
	outs := pool(opAttrs{"kernel_shape": aInts(2, 2), "strides": aInts(2, 2)}, 2)
	wantF32(t, outs[0], shp(1, 1, 2, 2), 6, 8, 14, 16)
	wantI64(t, outs[1], graph.I64, shp(1, 1, 2, 2), 5, 7, 13, 15)
	outs = pool(opAttrs{"kernel_shape": aInts(2, 2), "strides": aInts(2, 2), "storage_order": aInt(1)}, 2)
	wantI64(t, outs[1], graph.I64, shp(1, 1, 2, 2), 5, 13, 7, 15)
	// 1-D and integers
	wantF32(t, runFirst(t, 12, opNode("MaxPool", opAttrs{"kernel_shape": aInts(2)}, 1), tf32(shp(1, 1, 4), 3, 1, 4, 1)), shp(1, 1, 3), 3, 4, 4)
	wantI64(t, runFirst(t, 12, opNode("MaxPool", opAttrs{"kernel_shape": aInts(2, 2)}, 1), tInt(graph.U8, shp(1, 1, 2, 2), 1, 200, 3, 4)), graph.U8, shp(1, 1, 1, 1), 200)
	opFails(t, 12, opNode("MaxPool", opAttrs{"kernel_shape": aInts(2)}, 1), "kernel_shape", x)
}

func TestOpAveragePool(t *testing.T) {
	x := seqF32(1, 1, 4, 4)
	pool := func(a opAttrs) *Tensor { return runFirst(t, 11, opNode("AveragePool", a, 1), x) }
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(2, 2), "strides": aInts(2, 2)}), shp(1, 1, 2, 2), 3.5, 5.5, 11.5, 13.5)
	// ceil_mode: partial windows average what they cover
	wantF32(t, pool(opAttrs{"kernel_shape": aInts(3, 3), "strides": aInts(2, 2), "ceil_mode": aInt(1)}), shp(1, 1, 2, 2), 6, 7.5, 12, 13.5)
	// padding: excluded from the count by default, included with count_include_pad
	p := opAttrs{"kernel_shape": aInts(2, 2), "pads": aInts(1, 1, 1, 1), "strides": aInts(2, 2)}
	wantF32(t, pool(p), shp(1, 1, 3, 3), 1, 2.5, 4, 7, 8.5, 10, 13, 14.5, 16)
	p["count_include_pad"] = aInt(1)
	wantF32(t, pool(p), shp(1, 1, 3, 3), 0.25, 1.25, 1, 3.5, 8.5, 5, 3.25, 7.25, 4)
	// with ceil_mode, windows running past the end padding count only up to it
	q := opAttrs{"kernel_shape": aInts(3), "strides": aInts(2), "pads": aInts(1, 0), "ceil_mode": aInt(1), "count_include_pad": aInt(1)}
	wantF32(t, runFirst(t, 11, opNode("AveragePool", q, 1), tf32(shp(1, 1, 5), 1, 2, 3, 4, 5)), shp(1, 1, 3), 1, 3, 4.5)
	wantF32(t, runFirst(t, 11, opNode("AveragePool", opAttrs{"kernel_shape": aInts(2)}, 1), tf32(shp(1, 1, 3), 1, 2, 4)), shp(1, 1, 2), 1.5, 3)
	opFails(t, 11, opNode("AveragePool", opAttrs{"kernel_shape": aInts(2, 2)}, 1), "element type", tInt(graph.I32, shp(1, 1, 2, 2), 1, 2, 3, 4))
}

func TestOpGlobalPool(t *testing.T) {
	x := seqF32(1, 2, 2, 2)
	wantF32(t, runFirst(t, 11, opNode("GlobalAveragePool", nil, 1), x), shp(1, 2, 1, 1), 2.5, 6.5)
	wantF32(t, runFirst(t, 11, opNode("GlobalMaxPool", nil, 1), x), shp(1, 2, 1, 1), 4, 8)
	wantF32(t, runFirst(t, 11, opNode("GlobalAveragePool", nil, 1), seqF32(1, 1, 3)), shp(1, 1, 1), 2)
}

// Normalization and softmax.

func TestOpBatchNorm(t *testing.T) {
	x := seqF32(2, 2, 1, 2)
	scale, bias, mean, vr := tf32(shp(2), 1, 2), tf32(shp(2), 0, 1), tf32(shp(2), 1, 2), tf32(shp(2), 4, 1)
	eps := 0.5
	y := runFirst(t, 15, opNode("BatchNormalization", opAttrs{"epsilon": aFloat(float32(eps))}, 1), x, scale, bias, mean, vr)
	want := make([]float32, 8)
	for i, v := range x.F32 {
		c := i / 2 % 2
		want[i] = float32((float64(v)-float64(mean.F32[c]))/math.Sqrt(float64(vr.F32[c])+eps)*float64(scale.F32[c]) + float64(bias.F32[c]))
	}
	wantF32Tol(t, y, shp(2, 2, 1, 2), 1e-6, want...)
	opFails(t, 15, opNode("BatchNormalization", opAttrs{"training_mode": aInt(1)}, 1), "training mode", x, scale, bias, mean, vr)
	opFails(t, 15, opNode("BatchNormalization", nil, 3), "not supported", x, scale, bias, mean, vr)
}

func TestOpLayerNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	x := randF32(r, 2, 3, 4)
	for _, axis := range []int64{-1, 1} {
		rows, cols := 6, 4
		if axis == 1 {
			rows, cols = 2, 12
		}
		norm := x.Shape[(axis+3)%3:]
		scale, bias := randF32(r, norm...), randF32(r, norm...)
		outs := runOp(t, 17, opNode("LayerNormalization", opAttrs{"axis": aInt(axis), "epsilon": aFloat(1e-3)}, 3), x, scale, bias)
		want := make([]float32, len(x.F32))
		means, invs := make([]float32, rows), make([]float32, rows)
		for i := range rows {
			var m, v float64
			for j := range cols {
				m += float64(x.F32[i*cols+j])
			}
			m /= float64(cols)
			for j := range cols {
				d := float64(x.F32[i*cols+j]) - m
				v += d * d
			}
			inv := 1 / math.Sqrt(v/float64(cols)+1e-3)
			means[i], invs[i] = float32(m), float32(inv)
			for j := range cols {
				want[i*cols+j] = float32((float64(x.F32[i*cols+j])-m)*inv*float64(scale.F32[j]) + float64(bias.F32[j]))
			}
		}
		wantF32Tol(t, outs[0], x.Shape, 1e-5, want...)
		statShape := shp(2, 1, 1)
		if axis == -1 {
			statShape = shp(2, 3, 1)
		}
		wantF32Tol(t, outs[1], statShape, 1e-6, means...)
		wantF32Tol(t, outs[2], statShape, 1e-6, invs...)
	}
	// a broadcast scale, no bias, and only Y requested
	y := runFirst(t, 17, opNode("LayerNormalization", nil, 1), tf32(shp(1, 2), 1, 3), tf32(shp(1), 2))
	wantF32Tol(t, y, shp(1, 2), 1e-4, -2, 2)
	y64 := runFirst(t, 17, opNode("LayerNormalization", nil, 1), tf64(shp(1, 2), 1, 3), tf64(shp(2), 2, 1), tf64(shp(2), 0, 1))
	if math.Abs(y64.F64[0]+2) > 1e-4 || math.Abs(y64.F64[1]-2) > 1e-4 {
		t.Fatalf("f64 LayerNorm: %v", y64.F64)
	}
}

func TestOpSoftmax(t *testing.T) {
	x := seqF32(2, 3, 2)
	soft := func(v []float32) []float32 {
		var s float64
		for _, e := range v {
			s += math.Exp(float64(e))
		}
		out := make([]float32, len(v))
		for i, e := range v {
			out[i] = float32(math.Exp(float64(e)) / s)
		}
		return out
	}
	// opset 13, axis 1: along the middle dimension
	got := runFirst(t, 13, opNode("Softmax", opAttrs{"axis": aInt(1)}, 1), x)
	for b := range 2 {
		for j := range 2 {
			col := []float32{x.F32[b*6+j], x.F32[b*6+2+j], x.F32[b*6+4+j]}
			w := soft(col)
			for k := range 3 {
				if g := got.F32[b*6+2*k+j]; math.Abs(float64(g-w[k])) > 1e-6 {
					t.Fatalf("axis 1: %v", got.F32)
				}
			}
		}
	}
	// opset 11, axis 1: coerced to 2-D, rows of 6
	got = runFirst(t, 11, opNode("Softmax", opAttrs{"axis": aInt(1)}, 1), x)
	closeF32(t, got.F32, append(soft(x.F32[:6]), soft(x.F32[6:])...), 1e-6)
	// default axes: last (13), 1 (11)
	got = runFirst(t, 13, opNode("Softmax", nil, 1), x)
	var want []float32
	for i := 0; i < 12; i += 2 {
		want = append(want, soft(x.F32[i:i+2])...)
	}
	closeF32(t, got.F32, want, 1e-6)
	closeF32(t, runFirst(t, 11, opNode("Softmax", nil, 1), x).F32, append(soft(x.F32[:6]), soft(x.F32[6:])...), 1e-6)
	// LogSoftmax
	got = runFirst(t, 13, opNode("LogSoftmax", nil, 1), x)
	for i := range want {
		if math.Abs(float64(got.F32[i])-math.Log(float64(want[i]))) > 1e-6 {
			t.Fatalf("LogSoftmax: %v", got.F32)
		}
	}
	got = runFirst(t, 13, opNode("LogSoftmax", opAttrs{"axis": aInt(0)}, 1), tf64(shp(2), 1000, 1000))
	wantF64(t, got, shp(2), -math.Ln2, -math.Ln2)
	opFails(t, 13, opNode("Softmax", opAttrs{"axis": aInt(3)}, 1), "out of range", x)
}

// Every op the runtime promises is registered.
func TestOpRegistry(t *testing.T) {
	for _, op := range strings.Fields(`Abs Add And ArgMax ArgMin AveragePool BatchNormalization Cast CastLike Ceil
		Clip Concat Constant ConstantOfShape Conv Cos Div Dropout Elu Equal Erf Exp Expand Flatten Floor Gather
		Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual HardSigmoid HardSwish Identity
		LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul Max MaxPool Mean Min Mod Mul Neg Not
		Or Pow Range Reciprocal ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
		ReduceSumSquare Relu Reshape Round Shape Sigmoid Sign Sin Size Slice Softmax Softplus Split Sqrt Squeeze
		Sub Sum Tanh Tile Transpose Trilu Unsqueeze Where Xor`) {
		if ops[op] == nil {
			t.Errorf("op %s is missing", op)
		}
	}
}

// No op panics on bad or empty inputs: every one either computes or errs.
func TestOpNoPanic(t *testing.T) {
	inputs := [][]*Tensor{
		nil,
		{nil},
		{tf32(nil, 1)},
		{heapAlloc{}.New(graph.F32, shp(0))},
		{seqF32(2, 3), seqF32(3)},
		{seqF32(1, 1, 2, 2), seqF32(1, 1, 3, 3)},
		{ti64(shp(2), 1, 2), ti64(shp(1), 5), ti64(shp(1), -1)},
		{tbool(shp(1), 1), seqF32(1), tf64(shp(1), 1)},
		{seqF32(2, 2), ti64(shp(2), -1, 0), ti64(shp(2), 9, 9), ti64(shp(2), 0, 5)},
	}
	for op := range ops {
		for i, in := range inputs {
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Errorf("%s on inputs %d panics: %v", op, i, p)
					}
				}()
				ops[op](&opCtx{alloc: heapAlloc{}, opset: 17}, opNode(op, nil, 1), in)
			}()
		}
	}
}
