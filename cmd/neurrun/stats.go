package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

func statsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print the store's sizes and compression ratio",
		Long: `Stats prints logical bytes (the tensor bytes of every model, as imported),
physical bytes (every byte the store keeps on disk: data, indexes and logs) and
their ratio.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Stats()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			fmt.Fprintf(out, "models          %d\n", st.Models)
			fmt.Fprintf(out, "tensors         %d distinct, %d of them deltas\n", st.Tensors, st.Deltas)
			fmt.Fprintf(out, "logical bytes   %d (%s)   the models' tensors as imported\n", st.LogicalBytes, humanBytes(st.LogicalBytes))
			fmt.Fprintf(out, "stored bytes    %d (%s)   tensor payloads\n", st.StoredBytes, humanBytes(st.StoredBytes))
			fmt.Fprintf(out, "index bytes     %d (%s)   HNSW nodes\n", st.IndexBytes, humanBytes(st.IndexBytes))
			fmt.Fprintf(out, "kept bytes      %d (%s)   every key and value: payloads, checksums, records, manifests, graphs, index\n", st.KeptBytes, humanBytes(st.KeptBytes))
			fmt.Fprintf(out, "physical bytes  %d (%s)   on disk, with the database's logs and overhead\n", st.PhysicalBytes, humanBytes(st.PhysicalBytes))
			fmt.Fprintf(out, "ratio           %.2fx   logical / kept\n", st.Ratio)
			fmt.Fprintf(out, "disk ratio      %.2fx   logical / physical\n", st.DiskRatio)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
