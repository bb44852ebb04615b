package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func verifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Re-read every page and check checksums, hashes and refcounts",
		Long: `Verify reads the whole store: every page's checksum, every tensor's content
hash, every manifest entry against its record, every refcount. It prints each
fault found and exits non-zero if there is any. Orphan pages (left by a crash,
unreachable by readers) are reported but are not faults: neurrun gc removes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			start := time.Now()
			bar := newProgress("verify")
			rep, err := s.Verify(bar.Set)
			bar.Done()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "verified %d models, %d tensors, %d pages, %s in %.2fs\n",
				rep.Models, rep.Tensors, rep.Pages, humanBytes(rep.Bytes), time.Since(start).Seconds())
			if rep.OrphanPages > 0 {
				fmt.Fprintf(out, "%d orphan pages (from an interrupted import); neurrun gc removes them\n", rep.OrphanPages)
			}
			for _, f := range rep.Faults {
				fmt.Fprintln(out, "FAULT:", f)
			}
			if !rep.OK() {
				return fmt.Errorf("verify: %d faults", len(rep.Faults))
			}
			fmt.Fprintln(out, "ok")
			return nil
		},
	}
}

func gcCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Delete pages no tensor refers to (left by interrupted imports)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			n, err := s.GC()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d orphan pages\n", n)
			return nil
		},
	}
}

func compactCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compact",
		Short: "Reclaim the disk space of deleted models and pages",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			before, _ := s.Backend().DiskBytes()
			if err := s.Compact(); err != nil {
				return err
			}
			after, _ := s.Backend().DiskBytes()
			fmt.Fprintf(cmd.OutOrStdout(), "compacted: %s -> %s on disk\n", humanBytes(before), humanBytes(after))
			return nil
		},
	}
}
