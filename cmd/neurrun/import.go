package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/store"
	"github.com/spf13/cobra"
)

func importCmd() *cobra.Command {
	var (
		name  string
		tau   float64
		base  string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "import [--name NAME[:TAG]] FILE...",
		Short: "Import models into the store",
		Long: `Import stores each FILE as a model: a .safetensors file, a sharded Hugging Face
folder (with model.safetensors.index.json), or an .onnx model (external data
files are read from beside it). Tensors already in the store are not stored again.

The model is named after the file (without extension) unless --name is given;
the tag defaults to "latest". An existing model is replaced only with --force.
A failed import leaves the store exactly as it was.

Tensors of up to 512 bytes are kept in the model's manifest. Each larger float
tensor is compared with the most similar tensor already stored (an HNSW index
per element count) and kept as whichever is smallest: its raw bytes, a new
base, or a delta against that tensor. "neurrun show" says which, per tensor.

--tau 0 (the default) stores every tensor bit for bit: bases as entropy-coded
byte planes, deltas as the difference of each element's bit pattern from the
base's. --tau T > 0 stores float
tensors of two or more dimensions within T of the original, element by element
(checked after rounding to the tensor's dtype): values go onto a grid of step
2T and only the entropy-coded codes are kept. Biases, norms and other
one-dimensional or non-float tensors stay exact. Typical values: 1e-4 (no
measurable change), 1e-3, 1e-2 (check your metric; "neurrun bench compress"
measures it on model families). Check an export against its original with
"neurrun compare --tol T".

--base MODEL also tries MODEL's tensor of the same name as the base of each
tensor (for example the model a fine-tune started from, or the checkpoint
before this one: a delta may have a delta as its base, 8 deep at most).

Several files in one import go faster than one import each: the process starts
once, and a base that keeps being subtracted (the fine-tunes of one model) is
kept decoded from its second use on, up to 256 MiB.

Float tensors above 1 GiB are not held whole: they are encoded as they are read,
on their own or, with --base, as a delta against MODEL's tensor of the same
name, and are not added to the index.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name != "" && len(args) > 1 {
				return errors.New("--name names one model: import one FILE at a time with it")
			}
			if err := store.CheckTau(tau); err != nil {
				return fmt.Errorf("--tau: %w", err)
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			for _, path := range args {
				ref := name
				if ref == "" {
					ref = modelNameFromPath(path)
				}
				opts := store.ImportOptions{Ref: ref, Force: force, Tau: tau, Base: base}
				if err := importOne(cmd, s, path, opts); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "model name[:tag] (default: the file name)")
	cmd.Flags().Float64Var(&tau, "tau", 0, "per-element error bound for float matrices; 0 stores bit for bit")
	cmd.Flags().StringVar(&base, "base", "", "a stored model NAME[:TAG] whose tensors to try as delta bases")
	cmd.Flags().BoolVar(&force, "force", false, "replace a model of the same name")
	return cmd
}

func importOne(cmd *cobra.Command, s *store.Store, path string, opts store.ImportOptions) error {
	start := time.Now()
	src, err := graph.OpenFile(path)
	if err != nil {
		return err
	}
	defer src.Close()
	bar := newProgress("import " + opts.Ref)
	opts.Progress = bar.Set
	res, err := s.Import(cmd.Context(), src, opts)
	bar.Done()
	if err != nil {
		return err
	}
	m := res.Manifest
	secs := time.Since(start).Seconds()
	fmt.Fprintf(cmd.OutOrStdout(), "imported %s: %d tensors (%d new, %d of them deltas, %d already stored), %s, %s written, %.2fs (%s/s)\n",
		m.Ref(), len(m.Tensors), res.NewTensors, res.DeltaTensors, res.DedupTensors, humanBytes(m.LogicalBytes()),
		humanBytes(res.StoredBytes), secs, humanBytes(int64(float64(m.LogicalBytes())/max(secs, 1e-9))))
	return nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// modelNameFromPath derives a model name from a file or folder name.
func modelNameFromPath(path string) string {
	base := filepath.Base(filepath.Clean(path))
	if base == graph.SafetensorsIndexName {
		base = filepath.Base(filepath.Dir(filepath.Clean(path)))
	}
	for _, ext := range []string{".safetensors", ".onnx"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.Trim(unsafeName.ReplaceAllString(base, "-"), "-._")
	if base == "" {
		base = "model"
	}
	if len(base) > 128 {
		base = base[:128]
	}
	return base
}
