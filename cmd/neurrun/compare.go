package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"slices"

	"github.com/neurstore/neurstore/graph"
	"github.com/spf13/cobra"
)

func compareCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compare A B",
		Short: "Check that two model files hold the same tensors, bit for bit",
		Long: `Compare opens two model files or folders (any format neurrun imports) and checks
that they hold the same tensors: same names, dtypes, shapes and bytes. It prints
each difference and exits non-zero if there is any. Tensor order and file layout
may differ.`,
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
			diffs, err := compareSources(a, b)
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
			fmt.Fprintf(out, "same: %d tensors, %s\n", len(a.Tensors), humanBytes(a.TotalBytes()))
			return nil
		},
	}
}

// compareSources lists the differences between a's and b's tensors.
func compareSources(a, b *graph.Source) ([]string, error) {
	var diffs []string
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
		ha, err := hashTensor(a, i)
		if err != nil {
			return nil, err
		}
		hb, err := hashTensor(b, j)
		if err != nil {
			return nil, err
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
	return diffs, nil
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
