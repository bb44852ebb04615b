package main

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/quant"
	"github.com/neurstore/neurstore/store"
	"github.com/spf13/cobra"
)

func compareCmd() *cobra.Command {
	var tol float64
	cmd := &cobra.Command{
		Use:   "compare [--tol T] A B",
		Short: "Check that two model files hold the same tensors, bit for bit or within T",
		Long: `Compare opens two model files or folders (any format neurrun imports) and checks
that they hold the same tensors: same names, dtypes, shapes and bytes. It prints
each difference and exits non-zero if there is any. Tensor order and file layout
may differ.

With --tol T, float tensors (f32, f16, bf16) may differ by at most T in every
element (NaN and Inf must still match bit for bit); compare then prints the
largest error found. Use it to check a model exported from an import at --tau T
against the original.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := graph.OpenFile(args[0])
			if err != nil {
				return err
			}
			defer a.Close()
			b, err := graph.OpenFile(args[1])
			if err != nil {
				return err
			}
			defer b.Close()
			if err := store.CheckTau(tol); err != nil {
				return fmt.Errorf("--tol: %w", err)
			}
			diffs, worst, err := compareSources(a, b, tol)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, d := range diffs {
				fmt.Fprintln(out, d)
			}
			if len(diffs) > 0 {
				return fmt.Errorf("compare: %d differences", len(diffs))
			}
			if tol > 0 {
				fmt.Fprintf(out, "within %g: %d tensors, %s, largest error %.3g\n", tol, len(a.Tensors), humanBytes(a.TotalBytes()), worst)
				return nil
			}
			fmt.Fprintf(out, "same: %d tensors, %s\n", len(a.Tensors), humanBytes(a.TotalBytes()))
			return nil
		},
	}
	cmd.Flags().Float64Var(&tol, "tol", 0, "largest absolute difference allowed per float element (0: bit for bit)")
	return cmd
}

// compareSources lists the differences between a's and b's tensors: any byte for
// tol 0, else float elements further apart than tol. It also returns the largest
// float error seen.
func compareSources(a, b *graph.Source, tol float64) ([]string, float64, error) {
	var diffs []string
	var worst float64
	index := map[string]int{}
	for i, t := range b.Tensors {
		index[t.Name] = i
	}
	for i, ta := range a.Tensors {
		j, ok := index[ta.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only in A", ta.Name))
			continue
		}
		delete(index, ta.Name)
		tb := b.Tensors[j]
		if ta.DType != tb.DType || !slices.Equal(ta.Shape, tb.Shape) {
			diffs = append(diffs, fmt.Sprintf("%s: %s%v in A, %s%v in B", ta.Name, ta.DType, ta.Shape, tb.DType, tb.Shape))
			continue
		}
		if tol > 0 && isFloat(ta.DType) {
			e, bad, err := maxError(a, i, b, j)
			if err != nil {
				return nil, 0, err
			}
			worst = max(worst, e)
			switch {
			case bad >= 0:
				diffs = append(diffs, fmt.Sprintf("%s: element %d is NaN or Inf in one model only, or differently", ta.Name, bad))
			case e > tol:
				diffs = append(diffs, fmt.Sprintf("%s: differs by up to %.3g, more than %g", ta.Name, e, tol))
			}
			continue
		}
		ha, err := hashTensor(a, i)
		if err != nil {
			return nil, 0, err
		}
		hb, err := hashTensor(b, j)
		if err != nil {
			return nil, 0, err
		}
		if !bytes.Equal(ha, hb) {
			diffs = append(diffs, fmt.Sprintf("%s: bytes differ", ta.Name))
		}
	}
	for _, t := range b.Tensors {
		if _, ok := index[t.Name]; ok {
			diffs = append(diffs, fmt.Sprintf("%s: only in B", t.Name))
		}
	}
	return diffs, worst, nil
}

func isFloat(dt graph.DType) bool { return dt == graph.F32 || dt == graph.F16 || dt == graph.BF16 }

// floatReader reads a float tensor's elements as float32, a block at a time.
type floatReader struct {
	r    io.Reader
	t    graph.TensorInfo
	left int64 // bytes
	buf  []byte
}

func openFloats(s *graph.Source, i int) (*floatReader, error) {
	r, err := s.Open(i)
	if err != nil {
		return nil, err
	}
	t := s.Tensors[i]
	return &floatReader{r: r, t: t, left: t.Size}, nil
}

// next fills v with the next len(v) elements (fewer at the end) and returns how
// many.
func (f *floatReader) next(v []float32) (int, error) {
	es := f.t.DType.Size()
	n := int(min(int64(len(v)), f.left/int64(es)))
	if cap(f.buf) < n*es {
		f.buf = make([]byte, n*es)
	}
	b := f.buf[:n*es]
	if _, err := io.ReadFull(f.r, b); err != nil {
		return 0, fmt.Errorf("compare: %s: %v", f.t.Name, err)
	}
	f.left -= int64(len(b))
	switch f.t.DType {
	case graph.F32:
		quant.DecodeF32(v[:n], b)
	case graph.F16:
		quant.DecodeF16(v[:n], b)
	case graph.BF16:
		quant.DecodeBF16(v[:n], b)
	}
	return n, nil
}

// compareBlock is how many elements maxError holds of each tensor at a time.
const compareBlock = 1 << 20

// maxError returns the largest |a - b| over the finite elements of two float
// tensors of the same element count, and the first element where a NaN or Inf
// does not match bit for bit (-1 if none). It reads both a block at a time.
func maxError(a *graph.Source, i int, b *graph.Source, j int) (float64, int, error) {
	fa, err := openFloats(a, i)
	if err != nil {
		return 0, -1, err
	}
	fb, err := openFloats(b, j)
	if err != nil {
		return 0, -1, err
	}
	va, vb := make([]float32, compareBlock), make([]float32, compareBlock)
	var worst float64
	for off := 0; ; off += compareBlock {
		n, err := fa.next(va)
		if err != nil {
			return 0, -1, err
		}
		if m, err := fb.next(vb[:n]); err != nil || m != n {
			return 0, -1, cmp.Or(err, fmt.Errorf("compare: %s: element counts differ", fa.t.Name))
		}
		if n == 0 {
			return worst, -1, nil
		}
		for k, x := range va[:n] {
			y := vb[k]
			fx, fy := !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0), !math.IsNaN(float64(y)) && !math.IsInf(float64(y), 0)
			if !fx || !fy {
				if math.Float32bits(x) != math.Float32bits(y) {
					return worst, off + k, nil
				}
				continue
			}
			worst = max(worst, math.Abs(float64(x)-float64(y)))
		}
	}
}

func hashTensor(s *graph.Source, i int) ([]byte, error) {
	r, err := s.Open(i)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return nil, err
	}
	if n != s.Tensors[i].Size {
		return nil, fmt.Errorf("compare: %s: read %d bytes, want %d", s.Tensors[i].Name, n, s.Tensors[i].Size)
	}
	return h.Sum(nil), nil
}
