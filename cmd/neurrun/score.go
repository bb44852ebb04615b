package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/runtime"
	"github.com/neurstore/neurstore/runtime/npy"
	"github.com/spf13/cobra"
)

// scoreFlags are the flags of score besides the load flags.
type scoreFlags struct {
	inputs     []string
	output     string
	outputName string
	batch      int
	force      bool
}

func scoreCmd() *cobra.Command {
	var lf loadFlags
	var sf scoreFlags
	cmd := &cobra.Command{
		Use:   "score NAME[:TAG] --input FILE.npy|DIR [--input ...] --output FILE.npy [--batch N]",
		Short: "Run a stored model over many rows of .npy inputs, in batches, into one .npy file",
		Long: `Score runs a stored model over many rows: it reads the inputs --batch rows at a
time (default 64), runs the model on each batch and appends the output rows to
one .npy file, so that no more than a batch is held in memory.

A row is a slice of an array along its first dimension: a [1000, 64] array is
1000 rows of 64 values. Each graph input must take a batch of rows: its first
dimension must be symbolic (for example [batch, 64]), and the rows' shape must
match the rest of the input's declared shape where that is fixed. Values are
converted to the input's element type as run converts them.

--input FILE.npy reads one array (C order). --input DIR reads every *.npy file
in DIR in lexical order (hidden files skipped), their rows concatenated: all
must have the same element type and row shape. A model with several graph
inputs takes one --input per input, in the graph's input order, or NAME=PATH
to bind one by name; every input must have the same number of rows.

--output FILE.npy receives one output row per input row, in the input order.
Only one graph output is written: the first one, or the one --output-name
names. The file is written under a temporary name in the same folder and
renamed once complete: a failed or interrupted (Ctrl-C) score leaves no output
file and no temporary file behind. An existing file is replaced only with
--force.

Progress goes to stderr: on a terminal a bar with rows/s and time left,
otherwise a line every few seconds; at the end one summary line (rows,
batches, elapsed time, rows/s).

--mode, --cache-bytes and --threads load the model as for run.

Examples:
  neurrun score digits-mlp --input digits.npy --output scores.npy
  neurrun score digits-mlp:v2 --input shards/ --output scores.npy --batch 256 --output-name logits
  neurrun score two-tower --input query=q.npy --input doc=d.npy --output sim.npy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return score(cmd, args[0], &lf, &sf)
		},
	}
	lf.add(cmd)
	cmd.Flags().StringArrayVar(&sf.inputs, "input", nil, "input .npy file or folder of .npy files, or NAME=PATH (repeat for several inputs)")
	cmd.Flags().StringVar(&sf.output, "output", "", "output .npy file")
	cmd.Flags().StringVar(&sf.outputName, "output-name", "", "graph output to write (default: the first graph output)")
	cmd.Flags().IntVar(&sf.batch, "batch", 64, "rows per model run")
	cmd.Flags().BoolVar(&sf.force, "force", false, "replace an existing output file")
	return cmd
}

// score is the score command: it checks everything it can before the first
// batch runs, then streams the batches through one session into a temporary
// file that becomes sf.output only when every row is written.
func score(cmd *cobra.Command, ref string, lf *loadFlags, sf *scoreFlags) (err error) {
	ctx := cmd.Context()
	switch {
	case len(sf.inputs) == 0:
		return errors.New("no --input given")
	case sf.output == "":
		return errors.New("no --output given")
	case sf.batch < 1:
		return fmt.Errorf("--batch must be at least 1, got %d", sf.batch)
	}
	if err := checkOutputPath(sf.output, sf.force); err != nil {
		return err
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
	m, err := runtime.Load(s, ref, opts)
	if err != nil {
		return err
	}
	out, err := pickOutput(m, sf.outputName)
	if err != nil {
		return err
	}
	srcs, err := bindSources(m, sf.inputs)
	if err != nil {
		return err
	}
	defer func() {
		for _, src := range srcs {
			src.Close()
		}
	}()
	rows := srcs[0].rows
	for _, src := range srcs[1:] {
		if src.rows != rows {
			return fmt.Errorf("input %q has %d rows (%s) but input %q has %d (%s): every input needs one row per scored example",
				srcs[0].input.Name, rows, srcs[0].path, src.input.Name, src.rows, src.path)
		}
	}
	if rows == 0 {
		return fmt.Errorf("%s holds no rows: nothing to score", srcs[0].path)
	}

	tmp, err := createTemp(sf.output)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("%w (%s not written)", err, sf.output)
		}
	}()

	bar := newCountProgress("score "+m.Ref, "rows")
	start := time.Now()
	st, err := scoreRows(ctx, m, out, srcs, rows, sf.batch, tmp, bar)
	bar.Done()
	if err != nil {
		return err
	}
	if err := finishOutput(tmp, sf.output, sf.force); err != nil {
		return err
	}
	elapsed := time.Since(start)
	batches := fmt.Sprintf("%d batches of up to %d", st.batches, sf.batch)
	if st.batches == 1 {
		batches = "1 batch"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "scored %d rows in %s in %s, %.0f rows/s: %s %s %v -> %s\n",
		rows, batches, elapsed.Round(time.Millisecond), float64(rows)/max(elapsed.Seconds(), 1e-9),
		out.Name, st.dtype, st.shape, sf.output)
	return nil
}

// scoreStats describes a finished scoring run.
type scoreStats struct {
	batches int
	dtype   graph.DType // of the output array
	shape   []int       // of the output array
}

// scoreRows runs m over all rows of srcs, batch rows at a time, and writes
// output out's rows to w as one .npy array.
func scoreRows(ctx context.Context, m *runtime.Model, out graph.ValueInfo, srcs []*rowSource, rows, batch int, w io.Writer, bar *progress) (scoreStats, error) {
	var (
		st   scoreStats
		npyW *npy.Writer
		sess = m.NewSession()
		done = 0
	)
	for done < rows {
		k := min(batch, rows-done)
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("interrupted after %d of %d rows: %w", done, rows, err)
		}
		feeds := make(map[string]*runtime.Tensor, len(srcs))
		for _, src := range srcs {
			t, err := src.next(k)
			if err != nil {
				return st, err
			}
			feeds[src.input.Name] = t
		}
		res, err := sess.Run(ctx, feeds)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return st, fmt.Errorf("interrupted after %d of %d rows: %w", done, rows, ctxErr)
			}
			return st, fmt.Errorf("rows %d to %d: %w", done, done+k-1, err)
		}
		t := res[out.Name]
		if len(t.Shape) == 0 || t.Shape[0] != k {
			return st, fmt.Errorf("output %q has shape %v for a batch of %d rows: its first dimension is not the batch, so it cannot be split into rows", out.Name, t.Shape, k)
		}
		if npyW == nil {
			// The first batch tells the output's element type and row shape.
			st.dtype = t.DType
			st.shape = append([]int{rows}, t.Shape[1:]...)
			if npyW, err = npy.NewWriter(w, st.dtype, st.shape); err != nil {
				return st, fmt.Errorf("output %q: %w", out.Name, err)
			}
		} else if t.DType != st.dtype || !slices.Equal(t.Shape[1:], st.shape[1:]) {
			return st, fmt.Errorf("output %q: rows %d to %d are %s of shape %v, earlier rows %s of shape %v: score needs one row shape",
				out.Name, done, done+k-1, t.DType, t.Shape[1:], st.dtype, st.shape[1:])
		}
		if err := npyW.WriteRows(&npy.Array{DType: t.DType, Shape: t.Shape, Data: t.Bytes()}); err != nil {
			return st, err
		}
		done += k
		st.batches++
		bar.Set(int64(done), int64(rows))
	}
	return st, npyW.Close()
}

// checkOutputPath refuses an output path that exists, unless force is set,
// and one that is a folder.
func checkOutputPath(path string, force bool) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--output: %w", err)
	case fi.IsDir():
		return fmt.Errorf("--output %s is a folder: give a file name", path)
	case !force:
		return fmt.Errorf("--output %s already exists: use --force to replace it", path)
	}
	return nil
}

// createTemp creates the temporary file that becomes path, in path's folder.
func createTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("--output: %w", err)
	}
	return f, nil
}

// finishOutput makes the complete temporary file tmp the file at path: synced,
// mode 0644, renamed over path (which may exist only with force).
func finishOutput(tmp *os.File, path string, force bool) error {
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	// Check again: the file may have appeared while scoring.
	if err := checkOutputPath(path, force); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}

// pickOutput returns the graph output named name, or the first one when name
// is empty.
func pickOutput(m *runtime.Model, name string) (graph.ValueInfo, error) {
	outs := m.Outputs()
	if len(outs) == 0 {
		return graph.ValueInfo{}, fmt.Errorf("%s has no graph outputs", m.Ref)
	}
	if name == "" {
		return outs[0], nil
	}
	for _, o := range outs {
		if o.Name == name {
			return o, nil
		}
	}
	return graph.ValueInfo{}, fmt.Errorf("--output-name: the model has no output %q (outputs: %s)", name, valueNames(outs))
}

// bindSources opens the --input specs as row sources, one per graph input in
// the graph's input order, and checks each against its input: positional
// specs bind the graph inputs in order, NAME=PATH binds input NAME.
func bindSources(m *runtime.Model, specs []string) (srcs []*rowSource, err error) {
	ins := m.Inputs()
	bound := make([]*rowSource, len(ins))
	defer func() {
		if err != nil {
			for _, src := range bound {
				if src != nil {
					src.Close()
				}
			}
		}
	}()
	for i, spec := range specs {
		idx, path := -1, spec
		if name, p, ok := strings.Cut(spec, "="); ok {
			for j := range ins {
				if ins[j].Name == name {
					idx, path = j, p
				}
			}
			if idx < 0 {
				// Not an input's name: a path with '=' in it, if there is one.
				if _, statErr := os.Stat(spec); statErr != nil {
					return nil, fmt.Errorf("--input %s: the model has no input %q (inputs: %s)", spec, name, valueNames(ins))
				}
			}
		}
		if idx < 0 {
			if i >= len(ins) {
				return nil, fmt.Errorf("%d --input given for %d graph inputs (%s)", len(specs), len(ins), valueNames(ins))
			}
			idx = i
		}
		if bound[idx] != nil {
			return nil, fmt.Errorf("input %q given twice", ins[idx].Name)
		}
		src, err := openRowSource(ins[idx], path)
		if err != nil {
			return nil, err
		}
		bound[idx] = src
		if err := src.check(); err != nil {
			return nil, err
		}
	}
	var missing []string
	for j, src := range bound {
		if src == nil {
			missing = append(missing, ins[j].Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no --input for %s (the model's inputs: %s)", strings.Join(missing, ", "), valueNames(ins))
	}
	return bound, nil
}

// rowSource streams the rows of one graph input from a .npy file, or from the
// .npy files of a folder one after the other. Every file's header is read when
// it is opened; the files are then reopened one at a time as their rows are
// needed.
type rowSource struct {
	input    graph.ValueInfo
	path     string   // the file or folder given
	files    []string // the .npy files, in order
	shapes   [][]int  // each file's shape, as first read
	dtype    graph.DType
	rowShape []int
	rows     int // of all files

	cur   *npy.Reader // the file being read; nil between files
	fileN int         // index of the next file to open
}

// openRowSource reads the headers of the .npy file at path, or of the .npy
// files in the folder at path, and checks that they agree on element type and
// row shape.
func openRowSource(in graph.ValueInfo, path string) (*rowSource, error) {
	src := &rowSource{input: in, path: path}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	if fi.IsDir() {
		ents, err := os.ReadDir(path) // sorted by name
		if err != nil {
			return nil, fmt.Errorf("--input: %w", err)
		}
		for _, e := range ents {
			if name := e.Name(); !e.IsDir() && strings.HasSuffix(name, ".npy") && !strings.HasPrefix(name, ".") {
				src.files = append(src.files, filepath.Join(path, name))
			}
		}
		if len(src.files) == 0 {
			return nil, fmt.Errorf("--input %s: no .npy files in the folder", path)
		}
	} else {
		src.files = []string{path}
	}
	for i, f := range src.files {
		rd, err := npy.OpenReader(f)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", in.Name, err)
		}
		rd.Close()
		if i == 0 {
			src.dtype, src.rowShape = rd.DType(), rd.RowShape()
		} else if rd.DType() != src.dtype || !slices.Equal(rd.RowShape(), src.rowShape) {
			return nil, fmt.Errorf("input %q: %s holds %s rows of shape %v, but %s holds %s rows of shape %v: the files of a folder must agree",
				in.Name, f, rd.DType(), rd.RowShape(), src.files[0], src.dtype, src.rowShape)
		}
		src.shapes = append(src.shapes, rd.Shape())
		src.rows += rd.Rows()
	}
	return src, nil
}

// check checks the source's rows against the graph input's declared type:
// a batchable first dimension, the row shape where the model fixes it, and an
// element type that converts to the input's.
func (src *rowSource) check() error {
	in := src.input
	if in.Shape != nil {
		if len(in.Shape) == 0 {
			return fmt.Errorf("input %q is a scalar: score runs models on batches of rows (use run)", in.Name)
		}
		if d := in.Shape[0]; d.Value >= 0 {
			return fmt.Errorf("input %q has shape %s: its first dimension is fixed at %d, so the model cannot take batches of rows (score needs a symbolic first dimension, such as [batch, ...]; use run)",
				in.Name, dimsString(in.Shape), d.Value)
		}
		want := in.Shape[1:]
		ok := len(src.rowShape) == len(want)
		for i := 0; ok && i < len(want); i++ {
			ok = want[i].Value < 0 || int64(src.rowShape[i]) == want[i].Value
		}
		if !ok {
			return fmt.Errorf("input %q: rows have shape %v, model wants %s (rows of %s)", in.Name, src.rowShape, dimsString(want), src.path)
		}
	}
	if _, err := runtime.ConvertInput(&runtime.Tensor{DType: src.dtype, Shape: []int{0}}, in.DType); err != nil {
		return fmt.Errorf("input %q: %s: %w", in.Name, src.path, err)
	}
	return nil
}

// next reads the next n rows, crossing from file to file as needed, and
// returns them as a tensor of the graph input's element type.
func (src *rowSource) next(n int) (*runtime.Tensor, error) {
	var parts []*npy.Array
	got := 0
	for got < n {
		if src.cur == nil {
			if src.fileN == len(src.files) {
				return nil, fmt.Errorf("input %q: %s: files ended %d rows early", src.input.Name, src.path, n-got)
			}
			f := src.files[src.fileN]
			rd, err := npy.OpenReader(f)
			if err != nil {
				return nil, fmt.Errorf("input %q: %w", src.input.Name, err)
			}
			if rd.DType() != src.dtype || !slices.Equal(rd.Shape(), src.shapes[src.fileN]) {
				rd.Close()
				return nil, fmt.Errorf("input %q: %s changed while scoring", src.input.Name, f)
			}
			src.cur = rd
			src.fileN++
		}
		a, err := src.cur.ReadRows(n - got)
		if err == io.EOF {
			src.cur.Close()
			src.cur = nil
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", src.input.Name, err)
		}
		parts = append(parts, a)
		got += a.Shape[0]
	}
	a := parts[0]
	if len(parts) > 1 {
		a = &npy.Array{DType: src.dtype, Shape: append([]int{n}, src.rowShape...)}
		a.Data = make([]byte, 0, a.Len()*a.DType.Size())
		for _, p := range parts {
			a.Data = append(a.Data, p.Data...)
		}
	}
	t, err := runtime.FromBytes(a.DType, a.Shape, a.Data)
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", src.input.Name, err)
	}
	if t, err = runtime.ConvertInput(t, src.input.DType); err != nil {
		return nil, fmt.Errorf("input %q: %w", src.input.Name, err)
	}
	return t, nil
}

// Close closes the file being read, if any.
func (src *rowSource) Close() {
	if src.cur != nil {
		src.cur.Close()
		src.cur = nil
	}
}

// dimsString formats declared dimensions as %v formats a shape, symbolic ones
// by name ("?" when unnamed): [batch 64].
func dimsString(ds []graph.Dim) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		switch {
		case d.Value >= 0:
			parts[i] = fmt.Sprint(d.Value)
		case d.Param != "":
			parts[i] = d.Param
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}
