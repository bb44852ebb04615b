package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/kernels"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/runtime/npy"
	"github.com/spf13/cobra"
)

// loadFlags are the flags of every command that loads a model for running.
type loadFlags struct {
	mode       string
	cacheBytes int64
	threads    int
}

func (f *loadFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.mode, "mode", "", "load mode: f32, f16, int8 (base only, lossy) or compressed (default: compressed for models imported with --tau > 0, else f32)")
	cmd.Flags().Int64Var(&f.cacheBytes, "cache-bytes", runtime.DefaultCacheBytes, "memory budget of the shared base-tensor cache, in bytes")
	cmd.Flags().IntVar(&f.threads, "threads", 0, "threads the kernels use (0: all cores)")
}

func (f *loadFlags) options() (runtime.Options, error) {
	mode, err := runtime.ParseMode(f.mode)
	if err != nil {
		return runtime.Options{}, err
	}
	if f.threads < 0 {
		return runtime.Options{}, fmt.Errorf("--threads must be >= 0, got %d", f.threads)
	}
	kernels.SetThreads(f.threads)
	cache, err := runtime.NewBaseCache(f.cacheBytes)
	if err != nil {
		return runtime.Options{}, err
	}
	return runtime.Options{Mode: mode, Cache: cache}, nil
}

func runCmd() *cobra.Command {
	var lf loadFlags
	var inputs, outputs []string
	cmd := &cobra.Command{
		Use:   "run NAME[:TAG] --input X.npy [--input X2.npy] [--output Y.npy]",
		Short: "Run a stored model on inputs read from .npy files",
		Long: `Run loads a model from the store and computes its outputs for the given inputs.

Inputs are NumPy .npy files (C order), one per graph input in the graph's order,
or NAME=FILE to bind them by input name. Integer arrays are accepted for integer
inputs and float arrays for float inputs (converted to the input's type).

Outputs are written as .npy files with --output, one per graph output in order;
without --output, run prints each output's shape and first values.

Load modes: f32 rebuilds every weight in float32; f16 rounds them to float16
precision; compressed (the default for models imported with --tau > 0) keeps each
delta weight as its base's codes plus its own packed delta and computes on them
directly; int8 runs on the bases alone (lossy: the fine-tune is dropped).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(inputs) == 0 {
				return fmt.Errorf("no --input given")
			}
			opts, err := lf.options()
			if err != nil {
				return err
			}
			defer opts.Cache.Close()
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			t0 := time.Now()
			m, err := runtime.Load(s, args[0], opts)
			if err != nil {
				return err
			}
			loaded := time.Since(t0)
			feeds, err := readInputs(m, inputs)
			if err != nil {
				return err
			}
			if len(outputs) > 0 && len(outputs) != len(m.Outputs()) {
				return fmt.Errorf("%d --output files for %d graph outputs (%s)", len(outputs), len(m.Outputs()), valueNames(m.Outputs()))
			}
			t1 := time.Now()
			res, err := m.NewSession().Run(cmd.Context(), feeds)
			if err != nil {
				return err
			}
			ran := time.Since(t1)
			w := cmd.OutOrStdout()
			for i, o := range m.Outputs() {
				t := res[o.Name]
				if len(outputs) > 0 {
					a := &npy.Array{DType: t.DType, Shape: t.Shape, Data: t.Bytes()}
					if err := npy.WriteFile(outputs[i], a); err != nil {
						return err
					}
					fmt.Fprintf(w, "%s: %s %v -> %s\n", o.Name, t.DType, t.Shape, outputs[i])
					continue
				}
				printTensor(w, o.Name, t)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s loaded in %s (mode %s), ran in %s\n", m.Ref, loaded.Round(time.Microsecond), m.Mode, ran.Round(time.Microsecond))
			return nil
		},
	}
	lf.add(cmd)
	cmd.Flags().StringArrayVar(&inputs, "input", nil, "input .npy file, or NAME=FILE (repeat for several inputs)")
	cmd.Flags().StringArrayVar(&outputs, "output", nil, "output .npy file (repeat for several outputs)")
	return cmd
}

func valueNames(vs []graph.ValueInfo) string {
	var names []string
	for _, v := range vs {
		names = append(names, v.Name)
	}
	return strings.Join(names, ", ")
}

// readInputs reads the --input files and binds them to m's graph inputs.
func readInputs(m *runtime.Model, specs []string) (map[string]*runtime.Tensor, error) {
	ins := m.Inputs()
	feeds := map[string]*runtime.Tensor{}
	for i, spec := range specs {
		name, path, named := strings.Cut(spec, "=")
		var want *graph.ValueInfo
		if named {
			for j := range ins {
				if ins[j].Name == name {
					want = &ins[j]
				}
			}
			if want == nil {
				return nil, fmt.Errorf("--input %s: the model has no input %q (inputs: %s)", spec, name, valueNames(ins))
			}
		} else {
			path = spec
			if i >= len(ins) {
				return nil, fmt.Errorf("%d --input files for %d graph inputs (%s)", len(specs), len(ins), valueNames(ins))
			}
			want = &ins[i]
		}
		if _, dup := feeds[want.Name]; dup {
			return nil, fmt.Errorf("input %q given twice", want.Name)
		}
		a, err := npy.ReadFile(path)
		if err != nil {
			return nil, err
		}
		t, err := runtime.FromBytes(a.DType, a.Shape, a.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if t, err = runtime.ConvertInput(t, want.DType); err != nil {
			return nil, fmt.Errorf("%s: input %q: %w", path, want.Name, err)
		}
		feeds[want.Name] = t
	}
	if len(feeds) != len(ins) {
		return nil, fmt.Errorf("%d of the model's %d inputs given (inputs: %s)", len(feeds), len(ins), valueNames(ins))
	}
	return feeds, nil
}

// printTensor prints a tensor's type, shape and its first values.
func printTensor(w io.Writer, name string, t *runtime.Tensor) {
	fmt.Fprintf(w, "%s: %s %v\n", name, t.DType, t.Shape)
	const show = 10
	var vals []string
	switch {
	case t.F64 != nil:
		for _, v := range t.F64[:min(show, len(t.F64))] {
			vals = append(vals, fmt.Sprintf("%.6g", v))
		}
	case t.I64 != nil:
		for _, v := range t.I64[:min(show, len(t.I64))] {
			vals = append(vals, fmt.Sprint(v))
		}
	default:
		f := t.Floats()
		for _, v := range f[:min(show, len(f))] {
			vals = append(vals, fmt.Sprintf("%.6g", v))
		}
	}
	more := ""
	if t.Len() > show {
		more = fmt.Sprintf(" ... (%d values)", t.Len())
	}
	fmt.Fprintf(w, "  [%s%s]\n", strings.Join(vals, " "), more)
}
