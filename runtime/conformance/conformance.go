// Package conformance runs ONNX backend node test cases against the runtime: each
// case is a folder holding model.onnx and test_data_set_*/input_*.pb, output_*.pb
// (serialized TensorProtos), as onnx's backend test generator writes them.
//
// It judges outputs the way onnx's own backend test runner does: same element
// type and shape, and |got - want| <= atol + rtol*|want| elementwise (NaN equal to
// NaN). It must never change the cases it reads.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
)

// Tolerances of onnx's backend test runner.
const (
	RTol = 1e-3
	ATol = 1e-7
)

// Status is a case's outcome.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Result is one case's outcome. MaxErr is the largest |got - want| seen (fail and
// pass); Reason says why a case failed or was skipped.
type Result struct {
	Name   string
	Status Status
	MaxErr float64
	Reason string
}

// Summary counts outcomes.
type Summary struct {
	Passed, Failed, Skipped int
}

// Cases lists the case folders under dir (those holding a model.onnx), sorted.
func Cases(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "model.onnx")); err == nil {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("conformance: no test cases (folders with model.onnx) in %s", dir)
	}
	sort.Strings(out)
	return out, nil
}

// Run runs every case under dir, calling report after each, and returns the counts.
func Run(ctx context.Context, dir string, report func(Result)) (Summary, error) {
	cases, err := Cases(dir)
	if err != nil {
		return Summary{}, err
	}
	var s Summary
	for _, c := range cases {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		r := RunCase(ctx, c)
		switch r.Status {
		case Pass:
			s.Passed++
		case Fail:
			s.Failed++
		default:
			s.Skipped++
		}
		report(r)
	}
	return s, nil
}

// unsupported marks a case skipped because the runtime lacks something it needs.
type unsupported struct{ msg string }

func (u unsupported) Error() string { return u.msg }

// RunCase runs one case folder.
func RunCase(ctx context.Context, dir string) Result {
	r := Result{Name: filepath.Base(dir)}
	maxErr, err := runCase(ctx, dir)
	r.MaxErr = maxErr
	var u unsupported
	switch {
	case errors.As(err, &u):
		r.Status, r.Reason = Skip, u.msg
	case err != nil:
		r.Status, r.Reason = Fail, err.Error()
	default:
		r.Status = Pass
	}
	return r
}

func runCase(ctx context.Context, dir string) (float64, error) {
	g, err := graph.OpenModel(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return 0, err
	}
	if err := g.Check(); err != nil {
		return 0, unsupported{strings.TrimPrefix(err.Error(), "graph: ")}
	}
	m, err := runtime.Compile(g)
	if err != nil {
		return 0, err
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		return 0, errors.New("no test_data_set_* folder")
	}
	sort.Strings(sets)
	var worst float64
	for _, set := range sets {
		feeds := map[string]*runtime.Tensor{}
		for i, in := range m.Inputs() {
			t, err := readPB(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				return 0, err
			}
			feeds[in.Name] = t
		}
		got, err := m.NewSession().Run(ctx, feeds)
		if errors.Is(err, runtime.ErrUnsupported) {
			return 0, unsupported{strings.TrimPrefix(err.Error(), "runtime: ")}
		}
		if err != nil {
			return 0, err
		}
		for i, out := range m.Outputs() {
			want, err := readPB(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
			if err != nil {
				return worst, err
			}
			e, err := compare(out.Name, got[out.Name], want)
			worst = max(worst, e)
			if err != nil {
				return worst, err
			}
		}
	}
	return worst, nil
}

func readPB(path string) (*runtime.Tensor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := graph.ParseTensorProto(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	shape := make([]int, len(c.Shape))
	for i, d := range c.Shape {
		shape[i] = int(d)
	}
	t, err := runtime.FromBytes(c.DType, shape, c.Data)
	if err != nil {
		return nil, unsupported{fmt.Sprintf("%s: %v", filepath.Base(path), err)}
	}
	return t, nil
}

// compare checks got against want and returns the largest absolute difference.
func compare(name string, got, want *runtime.Tensor) (float64, error) {
	if got == nil {
		return 0, fmt.Errorf("output %s not computed", name)
	}
	if got.DType != want.DType {
		return 0, fmt.Errorf("output %s: type %s, want %s", name, got.DType, want.DType)
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		return 0, fmt.Errorf("output %s: shape %v, want %v", name, got.Shape, want.Shape)
	}
	n := want.Len()
	at := func(t *runtime.Tensor, i int) float64 {
		switch {
		case t.F64 != nil:
			return t.F64[i]
		case t.I64 != nil:
			return float64(t.I64[i])
		}
		return float64(t.Floats()[i])
	}
	var worst float64
	bad := -1
	for i := range n {
		g, w := at(got, i), at(want, i)
		if math.IsNaN(w) || math.IsNaN(g) {
			if math.IsNaN(w) != math.IsNaN(g) && bad < 0 {
				bad = i
			}
			continue
		}
		if g == w { // equal infinities too
			continue
		}
		d := math.Abs(g - w)
		worst = max(worst, d)
		if !(d <= ATol+RTol*math.Abs(w)) && bad < 0 {
			bad = i
		}
	}
	if bad >= 0 {
		return worst, fmt.Errorf("output %s: element %d is %g, want %g (max abs error %.3g)", name, bad, at(got, bad), at(want, bad), worst)
	}
	return worst, nil
}
