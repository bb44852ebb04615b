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
A failed import leaves the store exactly as it was.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name != "" && len(args) > 1 {
				return errors.New("--name names one model: import one FILE at a time with it")
			}
			if tau != 0 {
				return fmt.Errorf("--tau %g: lossy import is not available in this version; omit --tau (or use 0) to store losslessly", tau)
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
				if err := importOne(cmd, s, path, ref, force); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "model name[:tag] (default: the file name)")
	cmd.Flags().Float64Var(&tau, "tau", 0, "per-element error bound; 0 stores losslessly (the only mode in this version)")
	cmd.Flags().BoolVar(&force, "force", false, "replace a model of the same name")
	return cmd
}

func importOne(cmd *cobra.Command, s *store.Store, path, ref string, force bool) error {
	start := time.Now()
	src, err := graph.OpenFile(path)
	if err != nil {
		return err
	}
	defer src.Close()
	bar := newProgress("import " + ref)
	res, err := s.Import(cmd.Context(), src, store.ImportOptions{Ref: ref, Force: force, Progress: bar.Set})
	bar.Done()
	if err != nil {
		return err
	}
	m := res.Manifest
	secs := time.Since(start).Seconds()
	fmt.Fprintf(cmd.OutOrStdout(), "imported %s: %d tensors (%d new, %d already stored), %s, %s new, %.2fs (%s/s)\n",
		m.Ref(), len(m.Tensors), res.NewTensors, res.DedupTensors, humanBytes(m.LogicalBytes()),
		humanBytes(res.NewBytes), secs, humanBytes(int64(float64(m.LogicalBytes())/max(secs, 1e-9))))
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
