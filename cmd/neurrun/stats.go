package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/neurstore/neurstore/store"

	"github.com/spf13/cobra"
)

func statsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Print the store's sizes and compression ratio",
		Long: `Stats prints logical bytes (the tensor bytes of every model, as imported),
physical bytes (every byte the store keeps on disk: data, indexes and logs) and
their ratio, then where the kept bytes go: the payloads of the distinct stored
tensors by encoding (as "show" names them; inline tensors are counted in each
manifest that holds one) and everything around them (page keys and checksums,
tensor records, manifests, graphs, the index). The parts sum to kept bytes.`,
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
			printBreakdown(out, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printBreakdown prints where st's kept bytes go, largest encodings first.
func printBreakdown(out io.Writer, st *store.Stats) {
	bd := st.Breakdown
	share := func(n int64) string {
		if st.KeptBytes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(st.KeptBytes))
	}
	fmt.Fprintf(out, "\nwhere the kept bytes go\n")
	row := "%-22s %7s %10s %10s %6s %7s\n"
	fmt.Fprintf(out, row, "", "tensors", "logical", "kept", "share", "bits/el")
	encs := bd.ByStored()
	for _, name := range encs {
		e := bd.Encodings[name]
		bits := "-"
		if e.Elements > 0 {
			bits = fmt.Sprintf("%.2f", e.BitsPerElement())
		}
		fmt.Fprintf(out, row, name, fmt.Sprint(e.Tensors), humanBytes(e.Logical), humanBytes(e.Stored), share(e.Stored), bits)
	}
	for _, p := range []struct {
		name string
		n    int64
	}{
		{"page keys, checksums", bd.Pages},
		{"tensor records", bd.Records},
		{"manifests", bd.Manifests},
		{"graphs", bd.Graphs},
		{"index", bd.Index},
		{"other", bd.Other},
	} {
		fmt.Fprintf(out, row, p.name, "", "", humanBytes(p.n), share(p.n), "")
	}
}
