package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/neurstore/neurstore/graph"
	"github.com/neurstore/neurstore/store"
	"github.com/spf13/cobra"
)

func lsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the models in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			ms, err := s.Models()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tFORMAT\tTENSORS\tSIZE\tIMPORTED")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.Ref(), m.Format, len(m.Tensors),
					humanBytes(m.LogicalBytes()), m.Created.Local().Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
}

func showCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show NAME[:TAG]",
		Short: "Show a model: its origin, parameters and tensors",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			m, err := s.Model(args[0])
			if err != nil {
				return err
			}
			storage := make([]*store.Storage, len(m.Tensors))
			for i, t := range m.Tensors {
				if t.Inline() {
					storage[i] = &store.Storage{Encoding: store.EncInline, Stored: int64(len(t.Data))}
					continue
				}
				if storage[i], err = s.Storage(t.ID); err != nil {
					return fmt.Errorf("tensor %q: %w", t.Name, err)
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					*store.Manifest
					Storage []*store.Storage `json:"storage"`
				}{m, storage})
			}
			mode := m.Params.Mode
			if m.Params.Tau > 0 {
				mode = fmt.Sprintf("%s, tau %g", mode, m.Params.Tau)
			}
			fmt.Fprintf(out, "model     %s\nformat    %s\nimported  %s\nmode      %s\n", m.Ref(), m.Format,
				m.Created.Local().Format("2006-01-02 15:04:05"), mode)
			for _, f := range m.Lineage.Files {
				fmt.Fprintf(out, "from      %s\n", f)
			}
			if m.Lineage.Base != "" {
				fmt.Fprintf(out, "base      %s\n", m.Lineage.Base)
			}
			fmt.Fprintf(out, "tensors   %d, %s\ngraph     %s\n\n", len(m.Tensors), humanBytes(m.LogicalBytes()), humanBytes(m.GraphBytes))
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tSIZE\tID\tENCODING\tBASE\tWIDTH\tBITS/EL\tSTORED")
			for i, t := range m.Tensors {
				size, _ := graph.ByteSize(t.DType, t.Shape)
				n, _ := graph.NumElements(t.Shape)
				st := storage[i]
				base, width, bits := "-", "-", "-"
				if st.Base != nil {
					base = st.Base.Short()
				}
				if st.Width > 0 {
					width = fmt.Sprint(st.Width)
				}
				stored, enc := st.Stored+st.FactorBytes, st.Encoding.String()
				if st.Rank > 0 {
					enc += fmt.Sprintf("+r%d", st.Rank) // a low-rank prediction of that rank
				}
				if n > 0 {
					bits = fmt.Sprintf("%.2f", float64(stored)*8/float64(n))
				}
				id := "-"
				if !t.Inline() {
					id = t.ID.Short()
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.DType, t.Shape, humanBytes(size),
					id, enc, base, width, bits, humanBytes(stored))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON")
	return cmd
}
