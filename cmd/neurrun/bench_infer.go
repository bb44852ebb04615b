package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/neurstore/neurstore/bench/infer"
	"github.com/neurstore/neurstore/runtime"
	"github.com/spf13/cobra"
)

func benchInferCmd() *cobra.Command {
	var (
		dir     string
		tau     float64
		batches string
		dur     time.Duration
		threads int
		python  string
		big     bool
		asJSON  bool
		out     string
	)
	cmd := &cobra.Command{
		Use:   "infer",
		Short: "Measure inference throughput: f32 and compressed mode against torch",
		Long: `Infer imports the bench families' base and first fine-tune (ONNX) into a
scratch store at --tau, then times the fine-tune in f32 and compressed mode at
each batch size (samples/s and median latency), and torch on the same weights
and thread count in the same run (bench/infer/torch_infer.py, with --python).

With --big (the default when torch is available) it also generates big-mlp, a
synthetic 42 MB MLP with six fine-tunes (bench/infer/make_big.py), times it the
same way, and measures the resident memory of one fine-tune in f32 mode against
all six in compressed mode, each in a fresh process.

It also measures the fused base + delta GEMV at batch 1 on a 4096 x 4096 layer
against the memory copy bandwidth, in the same run.

Run it from the repository root. The user's store is not touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := infer.Config{Families: dir, Tau: tau, Duration: dur, Threads: threads, Log: cmd.ErrOrStderr()}
			for _, b := range strings.Split(batches, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(b))
				if err != nil || n < 1 {
					return fmt.Errorf("--batches: %q is not a positive integer", b)
				}
				cfg.Batches = append(cfg.Batches, n)
			}
			if !(tau > 0) {
				return fmt.Errorf("--tau must be > 0 (compressed mode needs a lossy import)")
			}
			if python != "none" {
				if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "torch not timed: %s cannot import torch (apt-get install python3-torch, or --python none)\n", python)
				} else {
					cfg.Python = python
				}
			}
			cfg.Big = big && cfg.Python != ""
			if bin, err := os.Executable(); err == nil {
				cfg.Bin = bin
			}
			scratch, err := os.MkdirTemp("", "neurrun-bench-infer-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(scratch)
			cfg.Scratch = scratch
			rep, err := infer.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return writeReport(cmd.OutOrStdout(), out, asJSON, rep, func(w io.Writer) { infer.Markdown(w, rep) })
		},
	}
	cmd.Flags().StringVar(&dir, "families", "testdata/family", "folder of the bench families")
	cmd.Flags().Float64Var(&tau, "tau", 1e-4, "error bound the fine-tunes are imported with")
	cmd.Flags().StringVar(&batches, "batches", "1,8,64", "comma-separated batch sizes")
	cmd.Flags().DurationVar(&dur, "duration", 2*time.Second, "timed run per model, engine and batch size")
	cmd.Flags().IntVar(&threads, "threads", 0, "threads for our kernels and torch (0: all cores)")
	cmd.Flags().StringVar(&python, "python", "/usr/bin/python3", `python with torch for the baseline; "none" to skip torch`)
	cmd.Flags().BoolVar(&big, "big", true, "also time big-mlp and measure resident memory (needs torch to generate it)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of Markdown tables")
	cmd.Flags().StringVar(&out, "out", "", "write the report to this file instead of standard output")
	return cmd
}

// benchRSSCmd is the child process of bench infer's memory measurement.
func benchRSSCmd() *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:    "rss --mode M NAME...",
		Short:  "Load models and print this process's resident memory (used by bench infer)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := runtime.ParseMode(mode)
			if err != nil {
				return err
			}
			s, err := openStore()
			if err != nil {
				return err
			}
			defer s.Close()
			rss, err := infer.ChildRSS(cmd.Context(), s, m, args)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rss_bytes %d\n", rss)
			return nil
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "f32", "load mode")
	return cmd
}
