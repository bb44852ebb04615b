package main

import (
	"fmt"
	"strings"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/store"
	"github.com/spf13/cobra"
)

func exportCmd() *cobra.Command {
	var force bool
	var dtype string
	cmd := &cobra.Command{
		Use:   "export NAME[:TAG] OUT",
		Short: "Write a model back out as a file",
		Long: `Export writes a stored model to OUT, bit for bit as it was imported.

OUT ending in .safetensors writes one safetensors file; OUT ending in .onnx writes
an ONNX model (for models imported from ONNX); any other OUT writes the model in
the form it was imported in (a sharded model as a folder of shards). OUT appears
atomically, and an existing OUT is replaced only with --force.

--dtype F32, F16 or BF16 converts every tensor of those float types to it (to
nearest, ties to even, where it narrows; other tensors as they are), for
safetensors output: an ONNX graph would keep its old types. A lossy model's
export is within its tau before this rounding, not after it.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			opts := store.ExportOptions{Force: force}
			if dtype != "" {
				if opts.DType, err = graph.ParseDType(strings.ToUpper(dtype)); err != nil {
					return fmt.Errorf("--dtype: %w", err)
				}
			}
			bar := newProgress("export " + args[0])
			opts.Progress = bar.Set
			err = s.Export(args[0], args[1], opts)
			bar.Done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "exported %s to %s\n", args[0], args[1])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing OUT")
	cmd.Flags().StringVar(&dtype, "dtype", "", "convert float tensors to F32, F16 or BF16 (safetensors output)")
	return cmd
}

func rmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME[:TAG]...",
		Short: "Remove models from the store",
		Long: `Rm removes models. Tensors no other model uses are deleted with them; their
space comes back at the next compaction (neurrun compact).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			for _, ref := range args {
				if err := s.Remove(ref); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", ref)
			}
			return nil
		},
	}
}
